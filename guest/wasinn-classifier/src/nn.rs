//! The safe layer this guest needs over the raw `wasi_ephemeral_nn` imports (guest/wasi-nn-sys): a graph by name
//! or from model bytes, its execution context, one f32 inference.

use wasi_nn_sys::{self as sys, errno, Context, Graph, GraphBuilder, Tensor};

/// A graph the host preloaded under `name`.
pub fn graph_by_name(name: &str) -> Result<Graph, sys::Errno> {
    let mut graph = 0;
    errno::check(unsafe { sys::load_by_name(name.as_ptr(), name.len() as u32, &mut graph) })?;
    Ok(graph)
}

/// A graph from model bytes (one builder: ONNX, TFLite), on the CPU.
pub fn graph_from_bytes(model: &[u8], encoding: u32) -> Result<Graph, sys::Errno> {
    let builders = [GraphBuilder::new(model)];
    let mut graph = 0;
    errno::check(unsafe { sys::load(builders.as_ptr(), 1, encoding, sys::target::CPU, &mut graph) })?;
    Ok(graph)
}

pub fn context(graph: Graph) -> Result<Context, sys::Errno> {
    let mut ctx = 0;
    errno::check(unsafe { sys::init_execution_context(graph, &mut ctx) })?;
    Ok(ctx)
}

/// Runs the graph on one f32 input and returns output 0 as f32s (growing the buffer if the host says
/// `too_large` and reports the size it needs).
pub fn run_f32(ctx: Context, dims: &[u32], input: &[f32], out: &mut Vec<f32>) -> Result<(), sys::Errno> {
    let t = Tensor {
        dims_ptr: dims.as_ptr(),
        dims_len: dims.len() as u32,
        ty: sys::tensor_type::F32,
        data_ptr: input.as_ptr() as *const u8,
        data_len: (input.len() * 4) as u32,
    };
    errno::check(unsafe { sys::set_input(ctx, 0, &t) })?;
    errno::check(unsafe { sys::compute(ctx) })?; // `input` is alive until here: the host reads it in place
    for _ in 0..2 {
        let mut written = 0u32;
        let rc = unsafe { sys::get_output(ctx, 0, out.as_mut_ptr() as *mut u8, (out.len() * 4) as u32, &mut written) };
        if rc == errno::TOO_LARGE && written as usize > out.len() * 4 {
            out.resize((written as usize + 3) / 4, 0.0);
            continue;
        }
        errno::check(rc)?;
        out.truncate(written as usize / 4);
        return Ok(());
    }
    Err(errno::TOO_LARGE)
}
