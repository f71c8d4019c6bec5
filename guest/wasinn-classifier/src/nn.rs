//! Raw `wasi_ephemeral_nn` imports (witx / preview1 ABI; docs/wasi-nn.md) and a thin safe layer.

#[link(wasm_import_module = "wasi_ephemeral_nn")]
extern "C" {
    fn load(builders: *const u32, n: u32, encoding: u32, target: u32, graph: *mut u32) -> u32;
    fn load_by_name(name: *const u8, len: u32, graph: *mut u32) -> u32;
    fn init_execution_context(graph: u32, ctx: *mut u32) -> u32;
    fn set_input(ctx: u32, index: u32, tensor: *const Tensor) -> u32;
    fn compute(ctx: u32) -> u32;
    fn get_output(ctx: u32, index: u32, out: *mut u8, out_max: u32, written: *mut u32) -> u32;
}

pub const ENCODING_ONNX: u32 = 1;
pub const TARGET_CPU: u32 = 0;
const TYPE_F32: u32 = 1; // the same value in both tensor-type numberings
pub const NOT_FOUND: u32 = 8;
const TOO_LARGE: u32 = 7;

/// witx `tensor`: 20 bytes; the type as a zero-extended u32 at offset 8 satisfies every host.
#[repr(C)]
struct Tensor {
    dims_ptr: *const u32,
    dims_len: u32,
    ty: u32,
    data_ptr: *const u8,
    data_len: u32,
}

/// The name of a non-zero `nn_errno`, for messages.
pub fn errno_name(rc: u32) -> &'static str {
    match rc {
        1 => "invalid_argument",
        2 => "invalid_encoding",
        3 => "missing_memory",
        4 => "busy",
        5 => "runtime_error",
        6 => "unsupported_operation",
        7 => "too_large",
        8 => "not_found",
        _ => "unknown error",
    }
}

fn check(rc: u32) -> Result<(), u32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

/// A graph the host preloaded under `name`.
pub fn graph_by_name(name: &str) -> Result<u32, u32> {
    let mut graph = 0u32;
    check(unsafe { load_by_name(name.as_ptr(), name.len() as u32, &mut graph) })?;
    Ok(graph)
}

/// A graph from model bytes (one builder: ONNX, TFLite).
pub fn graph_from_bytes(model: &[u8], encoding: u32) -> Result<u32, u32> {
    let builders = [model.as_ptr() as u32, model.len() as u32];
    let mut graph = 0u32;
    check(unsafe { load(builders.as_ptr(), 1, encoding, TARGET_CPU, &mut graph) })?;
    Ok(graph)
}

pub fn context(graph: u32) -> Result<u32, u32> {
    let mut ctx = 0u32;
    check(unsafe { init_execution_context(graph, &mut ctx) })?;
    Ok(ctx)
}

/// Runs the graph on one f32 input and returns output 0 as f32s (growing the buffer if the host says
/// `too_large` and reports the size it needs).
pub fn run_f32(ctx: u32, dims: &[u32], input: &[f32], out: &mut Vec<f32>) -> Result<(), u32> {
    let t = Tensor {
        dims_ptr: dims.as_ptr(),
        dims_len: dims.len() as u32,
        ty: TYPE_F32,
        data_ptr: input.as_ptr() as *const u8,
        data_len: (input.len() * 4) as u32,
    };
    check(unsafe { set_input(ctx, 0, &t) })?;
    check(unsafe { compute(ctx) })?; // `input` is alive until here: the host reads it in place
    for _ in 0..2 {
        let mut written = 0u32;
        let rc = unsafe { get_output(ctx, 0, out.as_mut_ptr() as *mut u8, (out.len() * 4) as u32, &mut written) };
        if rc == TOO_LARGE && written as usize > out.len() * 4 {
            out.resize((written as usize + 3) / 4, 0.0);
            continue;
        }
        check(rc)?;
        out.truncate(written as usize / 4);
        return Ok(());
    }
    Err(TOO_LARGE)
}
