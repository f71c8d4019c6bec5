//! Raw `wasi_ephemeral_nn`, the witx ("preview1") WASI-NN ABI (docs/wasi-nn.md): the six imports, the records
//! they read, the enum values and the errno table with names. Both WASI-NN guests build on it
//! (`wasinn-classifier`, `wasinn-compat`); each keeps its own safe layer.
//!
//! The values are the witx ones (wasi-nn 0.6, wasmtime >= v15, WasmEdge >= 0.15). The host's tables in
//! src/edgewasm/nn/_enums.py are the same; tests/test_nn_units.py reads this file and compares them.

#![no_std]

/// An `nn_errno`: what every function returns, [`errno::SUCCESS`] (0) on success.
pub type Errno = u32;
/// A graph handle, written by the host at `load`'s `graph` pointer.
pub type Graph = u32;
/// An execution context handle, written by the host at `init_execution_context`'s `ctx` pointer.
pub type Context = u32;

/// `graph_builder`: one model blob as `{ptr, len}` (8 bytes); `load` takes an array of them (OpenVINO: the xml,
/// then the weights; ONNX and TFLite: one).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GraphBuilder {
    pub ptr: *const u8,
    pub len: u32,
}

impl GraphBuilder {
    /// The builder for `bytes`, which must stay alive until `load` returns.
    pub fn new(bytes: &[u8]) -> Self {
        GraphBuilder { ptr: bytes.as_ptr(), len: bytes.len() as u32 }
    }
}

/// `tensor` (20 bytes): the dims (rank, not bytes), the type, the data (bytes). The type is written as a
/// zero-extended u32 at offset 8, as the wasi-nn crate writes it: wasmtime and WAMR read the byte at 8,
/// WasmEdge a u32, and both read it right.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Tensor {
    pub dims_ptr: *const u32,
    pub dims_len: u32,
    pub ty: u32,
    pub data_ptr: *const u8,
    pub data_len: u32,
}

// The witx layouts, on the wasm32 targets this crate is for.
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(core::mem::size_of::<Tensor>() == 20);
    assert!(core::mem::size_of::<GraphBuilder>() == 8);
};

#[link(wasm_import_module = "wasi_ephemeral_nn")]
extern "C" {
    pub fn load(builders: *const GraphBuilder, n: u32, encoding: u32, target: u32, graph: *mut Graph) -> Errno;
    pub fn load_by_name(name: *const u8, len: u32, graph: *mut Graph) -> Errno;
    pub fn init_execution_context(graph: Graph, ctx: *mut Context) -> Errno;
    pub fn set_input(ctx: Context, index: u32, tensor: *const Tensor) -> Errno;
    pub fn compute(ctx: Context) -> Errno;
    /// Copies output `index` into `out[..out_max]` and its size in bytes to `*written`; `too_large` when it does
    /// not fit (edgewasm then still writes the size it needs, as WasmEdge does; wasmtime writes nothing).
    pub fn get_output(ctx: Context, index: u32, out: *mut u8, out_max: u32, written: *mut u32) -> Errno;
}

/// `graph_encoding`.
pub mod encoding {
    pub const OPENVINO: u32 = 0;
    pub const ONNX: u32 = 1;
    pub const TENSORFLOW: u32 = 2;
    pub const PYTORCH: u32 = 3;
    pub const TENSORFLOWLITE: u32 = 4;
    pub const AUTODETECT: u32 = 5;
}

/// `execution_target`.
pub mod target {
    pub const CPU: u32 = 0;
    pub const GPU: u32 = 1;
    pub const TPU: u32 = 2;
}

/// `tensor_type`, the witx numbering of 2023-08 (wasi-nn 0.6). f32 is 1 in the older numbering too.
pub mod tensor_type {
    pub const F16: u32 = 0;
    pub const F32: u32 = 1;
    pub const F64: u32 = 2;
    pub const U8: u32 = 3;
    pub const I32: u32 = 4;
    pub const I64: u32 = 5;
}

/// `nn_errno`: the values and their witx names.
pub mod errno {
    use super::Errno;

    pub const SUCCESS: Errno = 0;
    pub const INVALID_ARGUMENT: Errno = 1;
    pub const INVALID_ENCODING: Errno = 2;
    pub const MISSING_MEMORY: Errno = 3;
    pub const BUSY: Errno = 4;
    pub const RUNTIME_ERROR: Errno = 5;
    pub const UNSUPPORTED_OPERATION: Errno = 6;
    pub const TOO_LARGE: Errno = 7;
    pub const NOT_FOUND: Errno = 8;

    /// The witx name of `rc` (`"not_found"`), for messages; `None` for a value outside the table.
    pub fn name(rc: Errno) -> Option<&'static str> {
        Some(match rc {
            SUCCESS => "success",
            INVALID_ARGUMENT => "invalid_argument",
            INVALID_ENCODING => "invalid_encoding",
            MISSING_MEMORY => "missing_memory",
            BUSY => "busy",
            RUNTIME_ERROR => "runtime_error",
            UNSUPPORTED_OPERATION => "unsupported_operation",
            TOO_LARGE => "too_large",
            NOT_FOUND => "not_found",
            _ => return None,
        })
    }

    /// `Ok(())` for success, else the errno.
    pub fn check(rc: Errno) -> Result<(), Errno> {
        if rc == SUCCESS {
            Ok(())
        } else {
            Err(rc)
        }
    }
}
