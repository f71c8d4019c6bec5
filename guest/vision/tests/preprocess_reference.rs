//! The fast preprocessing (simd128 in the wasm build, the same arithmetic lane by lane natively) against a
//! plain transcription of the spec (docs/models.md), bit for bit: every output sums its taps in order from 0,
//! clamps once, then `(x - 127) / 128`. `make guest-test` runs this natively, `make guest-test-wasm` in wasmtime.

use vision::{AxisWeights, Layout, Pixels, Preprocessor, CROP};

/// The spec, one value at a time: horizontal pass over every input row, vertical pass, clamp, normalise; HWC.
fn reference(px: &[f32], width: usize, height: usize) -> Vec<f32> {
    let (new_w, new_h) = vision::resized_size(width, height);
    let (mut wx, mut wy) = (AxisWeights::default(), AxisWeights::default());
    wx.compute(width, new_w, (new_w - CROP) / 2, CROP);
    wy.compute(height, new_h, (new_h - CROP) / 2, CROP);
    let mut horiz = vec![0.0f32; height * CROP * 3];
    for y in 0..height {
        for x in 0..CROP {
            let (start, ws) = (wx.starts[x], &wx.weights[wx.offs[x]..wx.offs[x + 1]]);
            for c in 0..3 {
                let mut acc = 0.0f32;
                for (i, &w) in ws.iter().enumerate() {
                    acc += w * px[(y * width + start + i) * 3 + c];
                }
                horiz[(y * CROP + x) * 3 + c] = acc;
            }
        }
    }
    let mut out = vec![0.0f32; CROP * CROP * 3];
    for y in 0..CROP {
        let (start, ws) = (wy.starts[y], &wy.weights[wy.offs[y]..wy.offs[y + 1]]);
        for x in 0..CROP {
            for c in 0..3 {
                let mut acc = 0.0f32;
                for (j, &w) in ws.iter().enumerate() {
                    acc += w * horiz[((start + j) * CROP + x) * 3 + c];
                }
                out[(y * CROP + x) * 3 + c] = (acc.max(0.0).min(255.0) - 127.0) / 128.0;
            }
        }
    }
    out
}

/// Deterministic pseudo-random bytes (an LCG): edges, flat areas and noise all show up.
fn pixels(width: usize, height: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..width * height * 3)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            if (i / 3) % 97 < 20 { 255 } else { (s >> 24) as u8 }
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn to_hwc(chw: &[f32]) -> Vec<f32> {
    let p = CROP * CROP;
    (0..p * 3).map(|i| chw[(i % 3) * p + i / 3]).collect()
}

/// Downscaling (photo sizes, odd sizes, a long thin image) and upscaling (smaller than 256, down to 1 pixel),
/// each in both layouts, through one Preprocessor (reused scratch and cached weights) and a fresh one.
const SIZES: [(usize, usize); 10] = [(451, 300), (300, 451), (640, 427), (256, 256), (257, 999), (1023, 301), (224, 224), (100, 37), (3, 2), (1, 1)];

#[test]
fn fast_preprocessing_is_the_reference_bit_for_bit() {
    let mut pre = Preprocessor::new();
    for (k, &(w, h)) in SIZES.iter().enumerate() {
        let px = pixels(w, h, k as u32);
        let want = bits(&reference(&px.iter().map(|&v| v as f32).collect::<Vec<_>>(), w, h));
        for _ in 0..2 {
            let mut hwc = vec![f32::NAN; CROP * CROP * 3];
            pre.run_into(Pixels::U8(&px), w, h, &mut hwc, Layout::Hwc).unwrap();
            assert!(bits(&hwc) == want, "HWC differs from the reference for {}x{}", w, h);
            let mut chw = vec![f32::NAN; CROP * CROP * 3];
            pre.run_into(Pixels::U8(&px), w, h, &mut chw, Layout::Chw).unwrap();
            assert!(bits(&to_hwc(&chw)) == want, "CHW differs from the reference for {}x{}", w, h);
        }
        let mut fresh = vec![0.0f32; CROP * CROP * 3];
        Preprocessor::new().run(Pixels::U8(&px), w, h, &mut fresh).unwrap();
        assert!(bits(&fresh) == want, "a fresh Preprocessor differs for {}x{}", w, h);
    }
}

#[test]
fn float_pixels_follow_the_reference_too() {
    let (w, h) = (451, 300);
    let px: Vec<f32> = pixels(w, h, 7).iter().enumerate().map(|(i, &v)| v as f32 * 1.5 - 60.0 + (i % 7) as f32 * 0.25).collect();
    let want = bits(&reference(&px, w, h));
    let mut pre = Preprocessor::new();
    let mut chw = vec![0.0f32; CROP * CROP * 3];
    pre.run_into(Pixels::F32(&px), w, h, &mut chw, Layout::Chw).unwrap();
    assert!(bits(&to_hwc(&chw)) == want);
    let mut hwc = vec![0.0f32; CROP * CROP * 3];
    pre.run(Pixels::F32(&px), w, h, &mut hwc).unwrap();
    assert!(bits(&hwc) == want);
}

#[test]
fn the_reference_is_the_spec() {
    // The spec vectors of the unit tests (lib.rs), through the reference: it is the spec, not a copy of the code.
    let (w, h) = (451usize, 300usize);
    let mut px = vec![0.0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                px[(y * w + x) * 3 + c] = ((7 * x + 13 * y + 101 * c) % 256) as f32;
            }
        }
    }
    let out = reference(&px, w, h);
    let at = |y: usize, x: usize, c: usize| out[(y * CROP + x) * 3 + c] as f64;
    for (y, x, c, v) in [(0, 0, 0, 0.05192363), (0, 0, 1, 0.85896266), (100, 37, 2, -0.09959018), (223, 223, 0, 0.92905402)] {
        assert!((at(y, x, c) - v).abs() < 1e-4, "({},{},{}) {} vs {}", y, x, c, at(y, x, c), v);
    }
}
