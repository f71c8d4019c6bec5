//! The subset of the `wasi-nn` 0.6 crate's high-level API that the WasmEdge examples use (`GraphBuilder`,
//! `Graph`, `GraphExecutionContext`), so that main.rs is written exactly as an example is. crates.io is
//! unreachable here, so this module stands in for the crate over the raw imports of guest/wasi-nn-sys; what the
//! host sees is what the crate passes (docs/wasi-nn.md): builders as `{ptr, len}`, a 20-byte tensor with the type
//! as a zero-extended u32 at offset 8, output sizes in bytes.

use std::fmt;

use wasi_nn_sys::{self as sys, errno};

/// `graph_encoding`.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum GraphEncoding {
    Openvino = sys::encoding::OPENVINO,
    Onnx = sys::encoding::ONNX,
    Tensorflow = sys::encoding::TENSORFLOW,
    Pytorch = sys::encoding::PYTORCH,
    TensorflowLite = sys::encoding::TENSORFLOWLITE,
}

/// `execution_target`.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum ExecutionTarget {
    CPU = sys::target::CPU,
    GPU = sys::target::GPU,
    TPU = sys::target::TPU,
}

/// `tensor_type`, the wasi-nn 0.6 numbering (f32 = 1 in every version).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum TensorType {
    F16 = sys::tensor_type::F16,
    F32 = sys::tensor_type::F32,
    F64 = sys::tensor_type::F64,
    U8 = sys::tensor_type::U8,
    I32 = sys::tensor_type::I32,
    I64 = sys::tensor_type::I64,
}

/// A non-zero `nn_errno`.
#[derive(Debug)]
pub struct Error(pub sys::Errno);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasi-nn error {} ({})", self.0, errno::name(self.0).unwrap_or("unknown"))
    }
}

impl std::error::Error for Error {}

fn check(rc: sys::Errno) -> Result<(), Error> {
    errno::check(rc).map_err(Error)
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
        let builders: Vec<sys::GraphBuilder> = blobs.iter().map(|b| sys::GraphBuilder::new(b)).collect();
        let mut graph = 0;
        check(unsafe {
            sys::load(builders.as_ptr(), builders.len() as u32, self.encoding as u32, self.target as u32, &mut graph)
        })?;
        Ok(Graph(graph))
    }

    /// `load_by_name`: a model the host preloaded (`--nn-preload NAME:...`).
    pub fn build_from_cache(self, name: &str) -> Result<Graph, Error> {
        let mut graph = 0;
        check(unsafe { sys::load_by_name(name.as_ptr(), name.len() as u32, &mut graph) })?;
        Ok(Graph(graph))
    }
}

/// A loaded graph handle.
pub struct Graph(sys::Graph);

impl Graph {
    pub fn init_execution_context(&self) -> Result<GraphExecutionContext, Error> {
        let mut ctx = 0;
        check(unsafe { sys::init_execution_context(self.0, &mut ctx) })?;
        Ok(GraphExecutionContext(ctx))
    }
}

/// An execution context handle.
pub struct GraphExecutionContext(sys::Context);

impl GraphExecutionContext {
    pub fn set_input<T: AsRef<[u8]>>(&mut self, index: u32, ty: TensorType, dims: &[u32], data: T) -> Result<(), Error> {
        let data = data.as_ref();
        let t = sys::Tensor {
            dims_ptr: dims.as_ptr(),
            dims_len: dims.len() as u32,
            ty: ty as u32,
            data_ptr: data.as_ptr(),
            data_len: data.len() as u32,
        };
        // The host reads the data during compute (zero copy): `data` must outlive compute, as in the examples.
        check(unsafe { sys::set_input(self.0, index, &t) })
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
