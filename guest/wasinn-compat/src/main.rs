//! WASI-NN image classification, written the way the public WasmEdge WASI-NN examples are
//! (second-state/WasmEdge-WASINN-examples, `openvino-mobilenet-raw`): read a raw f32 tensor file,
//! load the graph, set input [1,3,224,224] F32, compute, read up to 1001 floats, sort, print the top 5.
//!
//!   wasinn-compat.wasm TENSOR                      load_by_name("default") (the host's --nn-preload default:...)
//!   wasinn-compat.wasm MODEL.xml MODEL.bin TENSOR  load, OpenVINO IR (the example's own command line)
//!   wasinn-compat.wasm MODEL.onnx TENSOR           load, ONNX
//!
//! TENSOR: 1*3*224*224 little-endian f32, NCHW (602,112 bytes).

use std::env;
use std::fs;

mod imagenet_classes;
mod wasi_nn;

use wasi_nn::{ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

pub fn main() {
    if let Err(e) = run() {
        eprintln!("wasinn-compat: {}", e);
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = env::args().collect();
    let (graph, tensor_name) = match args.len() {
        2 => {
            print!("Load graph by name default ...");
            (GraphBuilder::new(GraphEncoding::Openvino, ExecutionTarget::CPU).build_from_cache("default")?, &args[1])
        }
        3 => {
            print!("Load graph (ONNX) ...");
            (GraphBuilder::new(GraphEncoding::Onnx, ExecutionTarget::CPU).build_from_files(&[&args[1]])?, &args[2])
        }
        4 => {
            print!("Load graph ...");
            let graph = GraphBuilder::new(GraphEncoding::Openvino, ExecutionTarget::CPU)
                .build_from_files(&[&args[1], &args[2]])?;
            (graph, &args[3])
        }
        _ => return Err("usage: wasinn-compat [MODEL.xml MODEL.bin | MODEL.onnx] TENSOR".into()),
    };
    println!("done");

    print!("Init execution context ...");
    let mut context = graph.init_execution_context()?;
    println!("done");

    print!("Set input tensor ...");
    let input_dims = vec![1, 3, 224, 224];
    let tensor_data = fs::read(tensor_name).map_err(|e| format!("cannot read {}: {}", tensor_name, e))?;
    context.set_input(0, TensorType::F32, &input_dims, &tensor_data)?;
    println!("done");

    print!("Perform graph inference ...");
    context.compute()?;
    println!("done");

    print!("Retrieve the output ...");
    // Copy output to a buffer: 1001 floats fits MobileNet's background + 1000 classes or any 1000-class model.
    let mut output_buffer = vec![0f32; 1001];
    let size_in_bytes = context.get_output(0, &mut output_buffer)?;
    println!("done");
    println!("The size of the output buffer is {} bytes", size_in_bytes);

    let results = sort_results(&output_buffer[..size_in_bytes / 4]);
    for i in 0..5.min(results.len()) {
        println!(
            "   {}.) [{}]({:.4}){}",
            i + 1,
            results[i].0,
            results[i].1,
            imagenet_classes::IMAGENET_CLASSES.get(results[i].0).copied().unwrap_or("?")
        );
    }

    Ok(())
}

// Sort the buffer of scores. A 1001-entry output (MobileNet) has a background class at index 0, which the
// example skips; a 1000-entry output (EfficientNet-Lite0) is indexed by class id directly.
fn sort_results(buffer: &[f32]) -> Vec<InferenceResult> {
    let skip = if buffer.len() == 1001 { 1 } else { 0 };
    let mut results: Vec<InferenceResult> =
        buffer.iter().skip(skip).enumerate().map(|(c, p)| InferenceResult(c, *p)).collect();
    results.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    results
}

// A wrapper for class ID and match probabilities.
#[derive(Debug, PartialEq)]
struct InferenceResult(usize, f32);
