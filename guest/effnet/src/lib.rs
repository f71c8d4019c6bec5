//! EfficientNet-Lite0 in pure Rust for WebAssembly: NHWC forward passes in FP32 (wasm simd128 kernels,
//! scalar fallbacks without `+simd128`) and INT8 (`q8`: C kernels on relaxed or plain SIMD, scalar Rust
//! otherwise), over packed weight images used in place (`image`) or EWT files (FP32, packed at load).

pub mod ewt;
pub mod image;
pub mod kernels;
pub mod model;
pub mod net;
pub mod q8;

pub use ewt::{BlockSpec, Ewt, EwtError};
pub use model::Net;
pub use net::Network;

/// Parses and validates an EWT file and builds a network for 224 x 224 x 3 inputs.
pub fn load(bytes: Vec<u8>) -> Result<(Ewt, Network), EwtError> {
    let ewt = Ewt::parse(bytes)?;
    let net = Network::new(&ewt, 224, 224)?;
    Ok((ewt, net))
}

/// Reads an open EWT file's header, validates it, and builds a network for 224 x 224 x 3 inputs, streaming
/// each tensor from the file straight into its packed form (the raw file is never held in memory).
pub fn load_file(file: std::fs::File) -> Result<(Ewt, Network), EwtError> {
    let ewt = Ewt::from_file(file)?;
    let net = Network::new(&ewt, 224, 224)?;
    Ok((ewt, net))
}
