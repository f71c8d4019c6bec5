//! Developer tool: `infer_image weights.ewp input.f32 [iterations]` runs the network a packed image holds
//! (FP32 or INT8) on a raw little-endian f32 [224,224,3] tensor and prints the best time and its profile.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: infer_image weights.ewp input.f32 [iterations]");
        std::process::exit(2);
    }
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let img = effnet::model::read_image(std::fs::File::open(&args[1]).expect("open image")).expect("image");
    let mut net = effnet::Net::from_image(&img).expect("network");
    let raw = std::fs::read(&args[2]).expect("read input");
    let input: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (mut best, mut prof) = (f64::MAX, [0.0; 5]);
    for _ in 0..iters {
        let t = Instant::now();
        net.forward(&input).expect("forward");
        let el = t.elapsed().as_secs_f64() * 1e3;
        if el < best {
            best = el;
            prof = net.profile();
        }
    }
    eprintln!("{} min {:.2} ms, stem/expand/dw/project/head {:.2?}", effnet::q8::KERNELS, best, prof);
}
