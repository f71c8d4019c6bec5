//! Developer tool: `gemm_bench [iters]` times the GEMM on EfficientNet-Lite0's 1x1-conv shapes (native or
//! under WASI) and prints GMAC/s per shape (the minimum time of `iters` runs).

use effnet::kernels::{gemm, Epilogue, PackedGemm};
use std::time::Instant;

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let shapes = [
        (12544, 16, 96),
        (3136, 24, 144),
        (3136, 144, 24),
        (784, 240, 40),
        (196, 112, 672),
        (196, 672, 112),
        (49, 1152, 192),
        (49, 192, 1152),
        (49, 320, 1280),
    ];
    for &(m, k, n) in &shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
        let b = vec![0.1f32; n];
        let g = PackedGemm::new(&w, &b, k, n);
        let mut out = vec![0.0f32; m * n];
        let mut scratch = Vec::new();
        let mut best = f64::MAX;
        for _ in 0..iters {
            let t = Instant::now();
            gemm(&a, m, &g, &mut out, None, Epilogue::Relu6, &mut scratch);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("M={:5} K={:4} N={:4}  {:6.2} GMAC/s", m, k, n, (m * k * n) as f64 / best / 1e9);
    }
}
