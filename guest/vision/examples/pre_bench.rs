//! Times decode and preprocessing of one photo in the guests' build, under wasmtime:
//!
//!     cargo build --release --target wasm32-wasi -p vision --example pre_bench   (RUSTFLAGS=-C target-feature=+simd128)
//!     python guest/wasi_test_runner.py .../pre_bench.wasm /tmp/photo.jpg [ROUNDS]
//!
//! Prints the median milliseconds of each. With COLD_CACHE set, 16 MiB are written between rounds, as an
//! inference between two requests would evict the caches.
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("photo");
    let rounds: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(50);
    let cold = std::env::var("COLD_CACHE").is_ok();
    let mut junk = vec![0u8; if cold { 16 << 20 } else { 0 }];
    let mut pre = vision::Preprocessor::new();
    let mut out = vec![0.0f32; vision::CROP * vision::CROP * 3];
    let (mut dec, mut prep) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        for (i, b) in junk.iter_mut().enumerate().step_by(64) {
            *b = (i + r) as u8;
        }
        let t = Instant::now();
        let img = vision::decode(&bytes).unwrap();
        dec.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        pre.run_into(vision::Pixels::U8(&img.data), img.width, img.height, &mut out, vision::Layout::Chw).unwrap();
        prep.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let sum: f64 = out.iter().map(|&v| v as f64).sum();
    println!("decode {:.3} ms  preprocess {:.3} ms  (output sum {:.6})", median(dec), median(prep), sum);
}
