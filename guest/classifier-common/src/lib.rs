//! What the two classifier guests (`guest/pure-classifier`, pure wasm; `guest/wasinn-classifier`, WASI-NN) share, so
//! that they answer the same requests with the same responses and errors (docs/classifier.md):
//!
//! - [`request`]: the request map, the `image` bin, the choice of exactly one input, and the decode stage
//!   (image bytes decoded, arrays checked);
//! - [`response`]: the response map, `stages_ms`, softmax and top-k;
//! - [`store`]: model ids, `/models/<id>/` paths and `labels.txt`;
//! - [`pipeline`]: one call, stage by stage and timed, over a guest's [`Classifier`].
//!
//! What differs stays in the guests, behind [`Classifier`]: how the model is loaded and how the network runs
//! (guest/effnet in wasm, or the host through wasi_ephemeral_nn).

pub mod pipeline;
pub mod request;
pub mod response;
pub mod store;

pub use pipeline::{classify, Classifier, ModelInfo};
pub use request::{decode_input, parse, shown, Decoded, Input, Levels, Request, FIELDS};
pub use response::{check_top_k, ms, postprocess, Outputs, Response, Stages, Top};
pub use store::{check_known_model, check_model_id, install_hint, read_labels, store_file, DEFAULT_MODEL, STORE};

pub use edgewasm_guest::GuestError;

/// Side of the network input: tensors are `[SIDE, SIDE, 3]`.
pub const SIDE: usize = vision::CROP;
/// Values in one network input.
pub const HWC: usize = SIDE * SIDE * 3;

/// The error map for a failure of guest/vision: bad sizes are the caller's fault, bad bytes a decode error, an
/// image too large for the guest's memory `out_of_memory`.
pub fn vision_error(e: vision::VisionError) -> GuestError {
    match e {
        vision::VisionError::BadRequest(m) => GuestError::bad_request(m),
        vision::VisionError::Decode(m) => GuestError::decode(m),
        vision::VisionError::OutOfMemory(m) => GuestError::out_of_memory(m),
    }
}

/// Little-endian f32 bytes (a checked `tensor`) into `out`, whatever their alignment in the request.
pub fn read_f32_le(bytes: &[u8], out: &mut [f32]) {
    for (dst, src) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    }
}
