//! The kernels against naive loops, on awkward sizes (row and channel tails, borders, both strides).
//! `cargo test` runs the scalar kernels natively; under a wasm runner with +simd128 it checks the SIMD ones.

use effnet::kernels::{depthwise, gemm, im2col, im2col_width, stem_direct, DwShape, Epilogue, PackedGemm};
use effnet::net::{same_pad, strip, strip_rows};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "index {}: {} vs {}", i, x, y);
    }
}

#[test]
fn gemm_matches_naive() {
    let mut r = Lcg(1);
    for &(rows, cin, cout) in &[
        (1, 1, 1),
        (7, 5, 3),
        (49, 320, 1280),
        (13, 27, 32),
        (9, 96, 24),
        (4, 16, 13),
        (33, 40, 17),
        (1, 64, 77),
        (1, 1280, 1000),
    ] {
        let a = r.vec(rows * cin);
        let w = r.vec(cin * cout);
        let b = r.vec(cout);
        let res = r.vec(rows * cout);
        let g = PackedGemm::new(&w, &b, cin, cout);
        for ep in [Epilogue::Linear, Epilogue::Relu6, Epilogue::Residual] {
            let mut want = vec![0.0f32; rows * cout];
            for m in 0..rows {
                for n in 0..cout {
                    let mut acc = b[n] as f64;
                    for k in 0..cin {
                        acc += a[m * cin + k] as f64 * w[k * cout + n] as f64;
                    }
                    let v = acc as f32;
                    want[m * cout + n] = match ep {
                        Epilogue::Linear => v,
                        Epilogue::Relu6 => v.max(0.0).min(6.0),
                        Epilogue::Residual | Epilogue::ResidualInPlace => v + res[m * cout + n],
                    };
                }
            }
            let mut got = vec![f32::NAN; rows * cout];
            gemm(
                &a,
                rows,
                &g,
                &mut got,
                if ep == Epilogue::Residual { Some(&res) } else { None },
                ep,
                &mut Vec::new(),
            );
            close(&got, &want, 1e-4);
        }
    }
}

/// The in-place residual (skip input already in `out`) gives the same bits as the residual read from its own
/// buffer, on every kernel path (packed splat tiles for cin % 4 == 0, the other packings, row and channel tails).
#[test]
fn gemm_residual_in_place_is_bit_identical() {
    let mut r = Lcg(5);
    for &(rows, cin, cout) in &[(1, 1, 1), (7, 5, 3), (49, 320, 1280), (9, 96, 24), (4, 16, 13), (33, 40, 17), (130, 24, 24)] {
        let a = r.vec(rows * cin);
        let g = PackedGemm::new(&r.vec(cin * cout), &r.vec(cout), cin, cout);
        let res = r.vec(rows * cout);
        let mut want = vec![f32::NAN; rows * cout];
        gemm(&a, rows, &g, &mut want, Some(&res), Epilogue::Residual, &mut Vec::new());
        let mut got = res.clone();
        gemm(&a, rows, &g, &mut got, None, Epilogue::ResidualInPlace, &mut Vec::new());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{}x{}x{}", rows, cin, cout);
    }
}

/// The direct stem (SIMD builds: csrc/f32.c) against im2col + the GEMM, on sizes with and without border pixels on
/// every side (odd and even, padding before and after); builds without it must say so and leave `out` alone.
#[test]
fn stem_direct_matches_im2col() {
    let mut r = Lcg(7);
    for &(h, w) in &[(224, 224), (9, 8), (8, 9), (3, 3), (1, 5), (2, 2), (17, 6), (6, 17)] {
        let img = r.vec(h * w * 3);
        let kk = im2col_width(3, 3);
        let mut wts = r.vec(kk * 32);
        wts[27 * 32..].iter_mut().for_each(|v| *v = 0.0);
        let g = PackedGemm::new(&wts, &r.vec(32), kk, 32);
        let (oh, pt) = same_pad(h, 3, 2);
        let (ow, pl) = same_pad(w, 3, 2);
        let mut cols = vec![0.0f32; oh * ow * kk];
        im2col(&img, h, w, 3, 3, 2, oh, ow, pt, pl, &mut cols);
        let mut want = vec![0.0f32; oh * ow * 32];
        gemm(&cols, oh * ow, &g, &mut want, None, Epilogue::Relu6, &mut Vec::new());
        let mut got = vec![f32::NAN; oh * ow * 32 + 5];
        if stem_direct(&img, h, w, pt, pl, oh, ow, &g, &mut got) {
            assert!(got[oh * ow * 32..].iter().all(|v| v.is_nan()), "{}x{}: wrote past its output", h, w);
            close(&got[..oh * ow * 32], &want, 1e-4);
        } else {
            assert!(got.iter().all(|v| v.is_nan()), "{}x{}: wrote without a direct kernel", h, w);
        }
    }
}

#[test]
fn depthwise_matches_naive() {
    let mut r = Lcg(2);
    for &(h, w, c, k, stride) in &[
        (7, 7, 16, 3, 1),
        (8, 9, 20, 3, 2),
        (14, 14, 48, 5, 1),
        (15, 11, 32, 5, 2),
        (3, 2, 5, 5, 1),
        (112, 112, 32, 3, 1),
        (7, 7, 1152, 5, 1),
        (14, 14, 672, 5, 2),
        (28, 28, 40, 3, 2),
        // EfficientNet-Lite0's channel counts (the C kernel's specialised copies; odd runs of interior
        // pixels end with a single pixel after the pairs) and a generic one
        (9, 11, 96, 3, 2),
        (10, 9, 144, 5, 2),
        (8, 7, 240, 3, 1),
        (6, 9, 480, 5, 1),
        (5, 8, 56, 3, 1),
        // border windows: 2..5 x 2..5 taps (csrc/f32.c dw_px, c % 16 == 8 for its tail), and 1 x n (the fallback)
        (6, 6, 72, 5, 2),
        (2, 3, 64, 5, 1),
        (1, 4, 72, 3, 1),
    ] {
        let inp = r.vec(h * w * c);
        let wts = r.vec(k * k * c);
        let bias = r.vec(c);
        let (oh, pt) = same_pad(h, k, stride);
        let (ow, pl) = same_pad(w, k, stride);
        let s = DwShape {
            h,
            w,
            c,
            k,
            stride,
            oh,
            ow,
            pad_top: pt,
            pad_left: pl,
        };
        let mut want = vec![0.0f32; oh * ow * c];
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut acc = bias[ch] as f64;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - pt as isize;
                            let ix = (ox * stride + kx) as isize - pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += inp[(iy as usize * w + ix as usize) * c + ch] as f64
                                    * wts[(ky * k + kx) * c + ch] as f64;
                            }
                        }
                    }
                    want[(oy * ow + ox) * c + ch] = (acc as f32).max(0.0).min(6.0);
                }
            }
        }
        let mut got = vec![f32::NAN; oh * ow * c];
        depthwise(&inp, &s, &wts, &bias, &mut got);
        close(&got, &want, 1e-5);
    }
}

/// A depthwise conv computed in strips of output rows, each from only the input rows its windows read (how the
/// network runs an expand output too large for its buffer), gives the same bits as the whole conv.
#[test]
fn depthwise_in_strips_is_bit_identical() {
    let mut r = Lcg(9);
    for &(h, w, c, k, stride) in &[(17, 9, 8, 3, 2), (16, 7, 16, 3, 1), (13, 6, 24, 5, 2), (12, 5, 32, 5, 1), (9, 9, 4, 3, 2)] {
        let (oh, pad_top) = same_pad(h, k, stride);
        let (ow, pad_left) = same_pad(w, k, stride);
        let s = DwShape { h, w, c, k, stride, oh, ow, pad_top, pad_left };
        let inp = r.vec(h * w * c);
        let wts = r.vec(k * k * c);
        let bias = r.vec(c);
        let mut want = vec![f32::NAN; oh * ow * c];
        depthwise(&inp, &s, &wts, &bias, &mut want);
        for budget in [k, k + 1, k + 3, 2 * k + 1, h] {
            let n = strip_rows(&s, budget);
            let mut got = vec![f32::NAN; oh * ow * c];
            let mut oy0 = 0;
            while oy0 < oh {
                let oy1 = (oy0 + n).min(oh);
                let (r0, sub) = strip(&s, oy0, oy1);
                assert!(sub.h <= budget.max(k).min(h), "strip of {} rows over a budget of {}", sub.h, budget);
                let part = &inp[r0 * w * c..(r0 + sub.h) * w * c];
                depthwise(part, &sub, &wts, &bias, &mut got[oy0 * ow * c..]);
                oy0 = oy1;
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{}x{}x{} k{} s{} budget {}", h, w, c, k, stride, budget);
        }
    }
}

#[test]
fn tf_same_padding() {
    assert_eq!(same_pad(224, 3, 2), (112, 0));
    assert_eq!(same_pad(112, 3, 2), (56, 0));
    assert_eq!(same_pad(56, 5, 2), (28, 1));
    assert_eq!(same_pad(14, 5, 1), (14, 2));
}
