//! The INT8 kernels against the scalar reference (`effnet::q8::reference`), bit for bit, on awkward sizes:
//! row and channel tails, k tails, borders, both strides, extreme accumulators. Natively `cargo test` runs
//! the scalar kernels against themselves plus the hand-computed checks; under a wasm runner with +simd128
//! (and `--features relaxed-simd`) it checks the C kernels of csrc/q8.c.

use effnet::kernels::DwShape;
use effnet::net::same_pad;
use effnet::q8::{self, panel_stride, q7, reference, Out, QGemm, Scratch, KSTEP, NR};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn u7(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 128) as u8).collect()
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() % 256) as u8 as i8).collect()
    }
    /// GEMM weights as the packer makes them: |w| <= 64, so the four weights of one i16 lane of two k groups
    /// (k = 4g + 2p + {0, 1} and 4(g + 1) + 2p + {0, 1}) sum to at most 256 in absolute value.
    fn w7(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() % 129) as i8 - 64).collect()
    }
    fn f32s(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * (self.next() % 10000) as f32 / 10000.0).collect()
    }
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// 128-byte aligned, as the image guarantees.
fn leak_i8_aligned(v: Vec<i8>) -> &'static [i8] {
    let buf = effnet::image::leak_aligned(v.len());
    for (d, s) in buf.iter_mut().zip(&v) {
        *d = *s as u8;
    }
    // SAFETY: same bytes, i8 and u8 have the same layout.
    unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const i8, v.len()) }
}

fn qgemm(r: &mut Lcg, cin: usize, cout: usize, residual: bool, scale: f32) -> (QGemm, Vec<i8>) {
    let dense = r.w7(cin * cout);
    packed_gemm(r, dense, cin, cout, residual, scale)
}

fn packed_gemm(r: &mut Lcg, dense: Vec<i8>, cin: usize, cout: usize, residual: bool, scale: f32) -> (QGemm, Vec<i8>) {
    let groups = (cin + KSTEP - 1) / KSTEP;
    let panels = (cout + NR - 1) / NR;
    let mut w = vec![0i8; panels * panel_stride(groups)];
    for k in 0..cin {
        for n in 0..cout {
            let (p, h, c) = (n / NR, (n % NR) / 4, n % 4);
            w[p * panel_stride(groups) + (k / 4) * 32 + h * 16 + c * 4 + k % 4] = dense[k * cout + n];
        }
    }
    let g = QGemm {
        cin,
        cout,
        groups,
        w: leak_i8_aligned(w),
        s: leak(r.f32s(panels * NR, scale * 0.2, scale)),
        c: leak(r.f32s(panels * NR, -20.0, 90.0)),
        r: if residual { 0.7 } else { 0.0 },
    };
    (g, dense)
}

/// The INT8 GEMM with requantized (u7) outputs against the reference, byte for byte; returns the reference's.
fn check_gemm_q(a: &[u8], rows: usize, kk: usize, g: &QGemm, cout: usize, res: Option<(&[u8], usize)>,
                scratch: &mut Scratch, what: &str) -> Vec<u8> {
    let mut want = vec![0u8; rows * cout];
    reference::gemm(a, rows, kk, g, Out::Q(&mut want, cout), res);
    let mut got = vec![255u8; rows * cout];
    q8::gemm(a, rows, kk, g, Out::Q(&mut got, cout), res, scratch);
    assert_eq!(got, want, "{}", what);
    want
}

/// The INT8 GEMM with float outputs against the reference, bit for bit.
fn check_gemm_f(a: &[u8], rows: usize, kk: usize, g: &QGemm, cout: usize, scratch: &mut Scratch, what: &str) {
    let mut want = vec![0f32; rows * cout];
    reference::gemm(a, rows, kk, g, Out::F(&mut want, cout), None);
    let mut got = vec![f32::NAN; rows * cout];
    q8::gemm(a, rows, kk, g, Out::F(&mut got, cout), None, scratch);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want), "{}", what);
}

#[test]
fn q7_rounds_half_to_even_and_clips() {
    assert_eq!(q7(0.5), 0);
    assert_eq!(q7(1.5), 2);
    assert_eq!(q7(2.5), 2);
    assert_eq!(q7(-0.6), 0);
    assert_eq!(q7(126.5), 126);
    assert_eq!(q7(127.4), 127);
    assert_eq!(q7(1e30), 127);
    assert_eq!(q7(-1e30), 0);
}

#[test]
fn packed_weights_are_read_where_the_packer_puts_them() {
    let mut r = Lcg(7);
    let (g, dense) = qgemm(&mut r, 13, 19, false, 0.01);
    for k in 0..13 {
        for n in 0..19 {
            assert_eq!(g.weight(k, n), dense[k * 19 + n]);
        }
    }
}

#[test]
fn gemm_matches_reference() {
    let mut r = Lcg(1);
    let mut scratch = Scratch::default();
    for &(rows, cin, cout, residual) in &[
        (1, 4, 8, false),
        (7, 28, 32, false),
        (13, 24, 144, false),
        (9, 96, 24, true),
        (33, 40, 17, false),
        (49, 320, 1280, false),
        (5, 1152, 192, true),
        (1, 1280, 1000, false),
        (300, 16, 96, false),
        (6, 36, 8, false),
    ] {
        let kk = (cin + 3) / 4 * 4;
        let (g, _) = qgemm(&mut r, cin, cout, residual, 0.02);
        let mut a = r.u7(rows * kk);
        // the largest activations on the first row
        for v in a.iter_mut().take(kk) {
            *v = 127;
        }
        let res = r.u7(rows * cout);
        let resopt = if residual { Some((&res[..], cout)) } else { None };
        let what = format!("gemm {}x{}x{} residual {}", rows, cin, cout, residual);
        check_gemm_q(&a, rows, kk, &g, cout, resopt, &mut scratch, &what);
        check_gemm_f(&a, rows, kk, &g, cout, &mut scratch, &what);
    }
}

#[test]
fn gemm_is_exact_at_the_weight_bound() {
    // The relaxed build sums two k groups' pair products in i16 before widening: exact while the four weights
    // of a lane sum to <= 256 in absolute value. At the bound, all activations 127: 256 * 127 = 32512 per lane.
    let mut r = Lcg(5);
    let mut scratch = Scratch::default();
    let (cin, cout, rows) = (72, 16, 5);
    let patterns: [fn(usize, usize) -> i8; 4] = [
        |_, _| -64,
        |_, _| 64,
        |k, _| if k % 2 == 0 { -128 } else { 0 },
        |k, n| if (k + n) % 2 == 0 { 127 } else { 1 },
    ];
    for (i, pattern) in patterns.iter().enumerate() {
        let dense: Vec<i8> = (0..cin * cout).map(|j| pattern(j / cout, j % cout)).collect();
        let (g, _) = packed_gemm(&mut r, dense, cin, cout, false, 0.02);
        let a = vec![127u8; rows * cin];
        check_gemm_f(&a, rows, cin, &g, cout, &mut scratch, &format!("pattern {}", i));
    }
}

#[test]
fn gemm_reference_is_the_definition() {
    // By hand: acc = sum w * q over the dense weights, then q7(f32(acc) * s + c + f32(x) * r).
    let mut r = Lcg(3);
    let (g, dense) = qgemm(&mut r, 8, 8, true, 0.01);
    let a = r.u7(8);
    let res = r.u7(8);
    let mut out = vec![0u8; 8];
    reference::gemm(&a, 1, 8, &g, Out::Q(&mut out, 8), Some((&res, 8)));
    for n in 0..8 {
        let acc: i32 = (0..8).map(|k| dense[k * 8 + n] as i32 * a[k] as i32).sum();
        assert_eq!(out[n], q7(acc as f32 * g.s[n] + g.c[n] + res[n] as f32 * g.r));
    }
}

#[test]
fn simd_builds_run_the_c_kernels() {
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        assert_ne!(q8::KERNELS, "scalar");
    } else {
        assert_eq!(q8::KERNELS, "scalar");
    }
}

#[test]
fn depthwise_matches_reference() {
    let mut r = Lcg(2);
    for &(h, w, c, k, stride) in &[
        (7, 7, 16, 3, 1),
        (8, 9, 24, 3, 2),
        (14, 14, 48, 5, 1),
        (15, 11, 32, 5, 2),
        (3, 2, 8, 5, 1),
        (56, 56, 144, 3, 1),
        (7, 7, 1152, 5, 1),
        (14, 14, 672, 5, 2),
        (5, 6, 12, 3, 1),
    ] {
        let inp = r.u7(h * w * c);
        let mut wts: Vec<i16> = r.i8s(q8::dw_pairs(k) * c * 2).iter().map(|&v| v as i16).collect();
        if k * k % 2 == 1 {
            for ch in 0..c {
                wts[((k * k / 2) * c + ch) * 2 + 1] = 0; // the odd tap's partner
            }
        }
        let s = r.f32s(c, 0.0005, 0.01);
        let cc = r.f32s(c, -10.0, 60.0);
        let (oh, pt) = same_pad(h, k, stride);
        let (ow, pl) = same_pad(w, k, stride);
        let shape = DwShape { h, w, c, k, stride, oh, ow, pad_top: pt, pad_left: pl };
        let mut want = vec![0u8; oh * ow * c];
        reference::depthwise(&inp, &shape, &wts, &s, &cc, &mut want);
        let mut got = vec![255u8; oh * ow * c];
        q8::depthwise(&inp, &shape, &wts, &s, &cc, &mut got);
        assert_eq!(got, want, "depthwise {}x{}x{} k{} s{}", h, w, c, k, stride);
    }
}

#[test]
fn quantize_matches_reference() {
    let mut r = Lcg(4);
    let x = r.f32s(1003, -1.2, 1.2);
    let mut want = vec![0u8; x.len()];
    let mut got = vec![255u8; x.len()];
    reference::quantize(&x, 63.75, 63.0, &mut want);
    q8::quantize(&x, 63.75, 63.0, &mut got);
    assert_eq!(got, want);
}

#[test]
fn requantization_clips_extreme_values() {
    // Outputs far outside 0..127, up to overflow to infinity (dead channels' scales span 10^13): the SIMD
    // epilogues clip below in float and above after the saturating narrows, which must give the reference's bits.
    let mut r = Lcg(6);
    let mut scratch = Scratch::default();
    for &scale in &[3.0f32, 1e7, 1e30, 3e38] {
        for &(rows, cin, cout, residual) in &[(9, 16, 96, false), (8, 24, 144, true), (5, 72, 20, false)] {
            let kk = (cin + 3) / 4 * 4;
            let (g, _) = qgemm(&mut r, cin, cout, residual, scale);
            let a = r.u7(rows * kk);
            let res = r.u7(rows * cout);
            let resopt = if residual { Some((&res[..], cout)) } else { None };
            let what = format!("gemm {}x{}x{} scale {}", rows, cin, cout, scale);
            let want = check_gemm_q(&a, rows, kk, &g, cout, resopt, &mut scratch, &what);
            assert!(want.iter().any(|&v| v == 0) && want.iter().any(|&v| v == 127), "scale {}", scale);
        }
        let (h, w, c, k) = (9, 9, 32, 3);
        let inp = r.u7(h * w * c);
        let wts: Vec<i16> = (0..q8::dw_pairs(k) * c * 2)
            .map(|i| if i % 2 == 1 && i / 2 / c == k * k / 2 { 0 } else { (r.next() % 255) as i16 - 127 })
            .collect();
        let s = r.f32s(c, scale * 0.2, scale);
        let cc = r.f32s(c, -10.0, 60.0);
        let (oh, pt) = same_pad(h, k, 1);
        let shape = DwShape { h, w, c, k, stride: 1, oh, ow: oh, pad_top: pt, pad_left: pt };
        let mut want = vec![0u8; oh * oh * c];
        reference::depthwise(&inp, &shape, &wts, &s, &cc, &mut want);
        let mut got = vec![255u8; oh * oh * c];
        q8::depthwise(&inp, &shape, &wts, &s, &cc, &mut got);
        assert_eq!(got, want, "depthwise scale {}", scale);
    }
}
