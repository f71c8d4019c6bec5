//! Developer tool: `q8_bench [iters]` times the INT8 GEMM on EfficientNet-Lite0's 1x1 shapes and the
//! depthwise convolutions (native or under WASI), GMAC/s per shape (the minimum of `iters` runs).

use effnet::kernels::DwShape;
use effnet::net::same_pad;
use effnet::q8::{self, panel_stride, Out, QGemm, Scratch, KSTEP, NR};
use std::time::Instant;

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    println!("kernels: {}", q8::KERNELS);
    let shapes = [(12544, 16, 96), (3136, 24, 144), (3136, 144, 24), (784, 240, 40), (196, 112, 672), (196, 672, 112), (49, 1152, 192), (49, 192, 1152), (49, 320, 1280)];
    let mut scratch = Scratch::default();
    for &(m, k, n) in &shapes {
        let groups = (k + KSTEP - 1) / KSTEP;
        let panels = (n + NR - 1) / NR;
        let wbuf = effnet::image::leak_aligned(panels * panel_stride(groups));
        for (i, v) in wbuf.iter_mut().enumerate() {
            *v = (i * 37 % 255) as u8;
        }
        // SAFETY: same bytes as i8.
        let w: &'static [i8] = unsafe { std::slice::from_raw_parts(wbuf.as_ptr() as *const i8, wbuf.len()) };
        let g = QGemm { cin: k, cout: n, groups, w, s: leak(vec![0.001; panels * NR]), c: leak(vec![3.0; panels * NR]), r: 0.0 };
        let a: Vec<u8> = (0..m * k).map(|i| (i * 7919 % 128) as u8).collect();
        let mut out = vec![0u8; m * n];
        let mut best = f64::MAX;
        for _ in 0..iters {
            let t = Instant::now();
            q8::gemm(&a, m, k, &g, Out::Q(&mut out, n), None, &mut scratch);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("gemm M={:5} K={:4} N={:4}  {:6.2} GMAC/s", m, k, n, (m * k * n) as f64 / best / 1e9);
    }
    for &(h, c, kk, stride) in &[(112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (56, 144, 5, 2), (28, 240, 5, 1), (14, 480, 3, 1), (14, 672, 5, 1), (7, 1152, 5, 1)] {
        let inp: Vec<u8> = (0..h * h * c).map(|i| (i * 31 % 128) as u8).collect();
        let w: Vec<i16> = (0..q8::dw_pairs(kk) * c * 2).map(|i| (i * 13 % 255) as i16 - 127).collect();
        let s = vec![0.001f32; c];
        let cc = vec![2.0f32; c];
        let (oh, pt) = same_pad(h, kk, stride);
        let shape = DwShape { h, w: h, c, k: kk, stride, oh, ow: oh, pad_top: pt, pad_left: pt };
        let mut out = vec![0u8; oh * oh * c];
        let mut best = f64::MAX;
        for _ in 0..iters {
            let t = Instant::now();
            q8::depthwise(&inp, &shape, &w, &s, &cc, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("dw {:3}x{:3}x{:4} k{} s{}  {:6.2} GMAC/s  {:.3} ms", h, h, c, kk, stride, (oh * oh * c * kk * kk) as f64 / best / 1e9, best * 1e3);
    }
}
