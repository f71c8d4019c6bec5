//! The subset of the `wasi-nn` 0.6 crate's high-level API that the WasmEdge examples use (`GraphBuilder`,
//! `Graph`, `GraphExecutionContext`), over raw `wasi_ephemeral_nn` externs: crates.io is unreachable here, and
//! the ABI is the same (docs/wasi-nn.md). Layouts: a builder is `{ptr, len}`, a tensor is 20 bytes with the
//! type as a zero-extended u32 at offset 8, exactly what the crate passes.

use std::fmt;

mod sys {
    #[link(wasm_import_module = "wasi_ephemeral_nn")]
    extern "C" {
        pub fn load(builders: *const u8, n: u32, encoding: u32, target: u32, graph: *mut u32) -> u32;
        pub fn load_by_name(name: *const u8, len: u32, graph: *mut u32) -> u32;
        pub fn init_execution_context(graph: u32, ctx: *mut u32) -> u32;
        pub fn set_input(ctx: u32, index: u32, tensor: *const u8) -> u32;
        pub fn compute(ctx: u32) -> u32;
        pub fn get_output(ctx: u32, index: u32, out: *mut u8, out_max: u32, written: *mut u32) -> u32;
    }
}

/// `graph_encoding` (witx numbering).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum GraphEncoding {
    Openvino = 0,
    Onnx = 1,
    Tensorflow = 2,
    Pytorch = 3,
    TensorflowLite = 4,
}

/// `execution_target`.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum ExecutionTarget {
    CPU = 0,
    GPU = 1,
    TPU = 2,
}

/// `tensor_type`, the wasi-nn 0.6 numbering (f32 = 1 in every version).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum TensorType {
    F16 = 0,
    F32 = 1,
    F64 = 2,
    U8 = 3,
    I32 = 4,
    I64 = 5,
}

/// A non-zero `nn_errno`.
#[derive(Debug)]
pub struct Error(pub u32);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "invalid_argument",
            2 => "invalid_encoding",
            3 => "missing_memory",
            4 => "busy",
            5 => "runtime_error",
            6 => "unsupported_operation",
            7 => "too_large",
            8 => "not_found",
            _ => "unknown",
        };
        write!(f, "wasi-nn error {} ({})", self.0, name)
    }
}

impl std::error::Error for Error {}

fn check(rc: u32) -> Result<(), Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error(rc))
    }
}

/// Builds a graph from files or from a name the host preloaded.
pub struct GraphBuilder {
    encoding: GraphEncoding,
    target: ExecutionTarget,
}

impl GraphBuilder {
    pub fn new(encoding: GraphEncoding, target: ExecutionTarget) -> Self {
        GraphBuilder { encoding, target }
    }

    /// `load` with each file's bytes as one builder (OpenVINO: xml then bin; ONNX: the .onnx).
    pub fn build_from_files<P: AsRef<std::path::Path>>(self, files: &[P]) -> Result<Graph, Box<dyn std::error::Error>> {
        let blobs: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
        Ok(self.build_from_bytes(&blobs)?)
    }

    pub fn build_from_bytes(self, blobs: &[Vec<u8>]) -> Result<Graph, Error> {
        let pairs: Vec<[u32; 2]> = blobs.iter().map(|b| [b.as_ptr() as u32, b.len() as u32]).collect();
        let mut graph = 0u32;
        check(unsafe {
            sys::load(pairs.as_ptr() as *const u8, pairs.len() as u32, self.encoding as u32, self.target as u32, &mut graph)
        })?;
        Ok(Graph(graph))
    }

    /// `load_by_name`: a model the host preloaded (`--nn-preload NAME:...`).
    pub fn build_from_cache(self, name: &str) -> Result<Graph, Error> {
        let mut graph = 0u32;
        check(unsafe { sys::load_by_name(name.as_ptr(), name.len() as u32, &mut graph) })?;
        Ok(Graph(graph))
    }
}

/// A loaded graph handle.
pub struct Graph(u32);

impl Graph {
    pub fn init_execution_context(&self) -> Result<GraphExecutionContext, Error> {
        let mut ctx = 0u32;
        check(unsafe { sys::init_execution_context(self.0, &mut ctx) })?;
        Ok(GraphExecutionContext(ctx))
    }
}

/// An execution context handle.
pub struct GraphExecutionContext(u32);

#[repr(C)]
struct Tensor {
    dims_ptr: *const u32,
    dims_len: u32,
    ty: u32,
    data_ptr: *const u8,
    data_len: u32,
}

impl GraphExecutionContext {
    pub fn set_input<T: AsRef<[u8]>>(&mut self, index: u32, ty: TensorType, dims: &[u32], data: T) -> Result<(), Error> {
        let data = data.as_ref();
        let t = Tensor {
            dims_ptr: dims.as_ptr(),
            dims_len: dims.len() as u32,
            ty: ty as u32,
            data_ptr: data.as_ptr(),
            data_len: data.len() as u32,
        };
        // The host reads the data during compute (zero copy): `data` must outlive compute, as in the examples.
        check(unsafe { sys::set_input(self.0, index, &t as *const Tensor as *const u8) })
    }

    pub fn compute(&mut self) -> Result<(), Error> {
        check(unsafe { sys::compute(self.0) })
    }

    /// Copies output `index` into `out`; returns the number of bytes written.
    pub fn get_output(&self, index: u32, out: &mut [f32]) -> Result<usize, Error> {
        let mut written = 0u32;
        check(unsafe {
            sys::get_output(self.0, index, out.as_mut_ptr() as *mut u8, (out.len() * 4) as u32, &mut written)
        })?;
        Ok(written as usize)
    }
}
