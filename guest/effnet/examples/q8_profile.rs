//! Developer tool: `q8_profile image.ewp input.f32 [passes]` runs the INT8 network of a packed image
//! (`pure-int8.ewp`) on a raw little-endian f32 [224,224,3] tensor and prints, per layer, the minimum time over
//! the passes, the layer kinds' sums, and the minimum and median forward pass (native or under WASI; run it
//! under wasmtime with epoch interruption on to see what a served guest sees).

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: q8_profile image.ewp input.f32 [passes]");
        std::process::exit(2);
    }
    let passes: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let file = std::fs::File::open(&args[1]).expect("open image");
    let img = effnet::model::read_image(file).expect("read image");
    let mut net = effnet::q8::QNetwork::from_image(&img, 224, 224).expect("INT8 network");
    let raw = std::fs::read(&args[2]).expect("read input");
    let input: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let names = net.layer_names();
    let mut best = vec![f64::MAX; names.len()];
    let mut kinds = [f64::MAX; 5];
    let mut times = Vec::new();
    for _ in 0..passes {
        let t = Instant::now();
        net.forward(&input).expect("forward");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        for (b, &v) in best.iter_mut().zip(&net.layers) {
            *b = b.min(v);
        }
        for (k, &v) in kinds.iter_mut().zip(&net.profile) {
            *k = k.min(v);
        }
    }
    for (n, b) in names.iter().zip(&best) {
        println!("{:14} {:7.3} ms", n, b);
    }
    println!("kinds (min each) stem/expand/dw/project/head {:.2?}", kinds);
    println!("sum of layer minima {:.2} ms", best.iter().sum::<f64>());
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("forward min {:.2} ms median {:.2} ms", times[0], times[times.len() / 2]);
}
