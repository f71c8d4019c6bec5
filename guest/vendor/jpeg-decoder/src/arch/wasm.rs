//! simd128 port of ssse3.rs (same arithmetic: q15mulr_sat is mulhrs for every constant used).
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use core::arch::wasm32::*;

#[inline(always)]
fn m(a: v128, c: i16) -> v128 { i16x8_q15mulr_sat(a, i16x8_splat(c)) }
#[inline(always)]
fn add(a: v128, b: v128) -> v128 { i16x8_add_sat(a, b) }
#[inline(always)]
fn sub(a: v128, b: v128) -> v128 { i16x8_sub_sat(a, b) }

#[inline(always)]
fn idct8(data: &mut [v128; 8]) {
    let p2 = data[2];
    let p3 = data[6];
    let p1 = m(add(p2, p3), 17734);
    let t2 = sub(sub(p1, p3), m(p3, 27779));
    let t3 = add(p1, m(p2, 25079));
    let p2 = data[0];
    let p3 = data[4];
    let t0 = add(p2, p3);
    let t1 = sub(p2, p3);
    let x0 = add(t0, t3);
    let x3 = sub(t0, t3);
    let x1 = add(t1, t2);
    let x2 = sub(t1, t2);
    let t0 = data[7];
    let t1 = data[5];
    let t2 = data[3];
    let t3 = data[1];
    let p3 = add(t0, t2);
    let p4 = add(t1, t3);
    let p1 = add(t0, t3);
    let p2 = add(t1, t2);
    let p5 = add(p3, p4);
    let p5 = add(p5, m(p5, 5763));
    let t0 = m(t0, 9786);
    let t1 = add(add(t1, t1), m(t1, 1741));
    let t2 = add(add(t2, add(t2, t2)), m(t2, 2383));
    let t3 = add(t3, m(t3, 16427));
    let p1 = sub(p5, m(p1, 29490));
    let p2 = sub(sub(sub(p5, p2), p2), m(p2, 18446));
    let p3 = sub(m(p3, -31509), p3);
    let p4 = m(p4, -12785);
    let t3 = add(add(p1, p4), t3);
    let t2 = add(add(p2, p3), t2);
    let t1 = add(add(p2, p4), t1);
    let t0 = add(add(p1, p3), t0);
    data[0] = add(x0, t3);
    data[7] = sub(x0, t3);
    data[1] = add(x1, t2);
    data[6] = sub(x1, t2);
    data[2] = add(x2, t1);
    data[5] = sub(x2, t1);
    data[3] = add(x3, t0);
    data[4] = sub(x3, t0);
}

#[inline(always)]
fn transpose8(d: &mut [v128; 8]) {
    let d01l = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(d[0], d[1]);
    let d23l = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(d[2], d[3]);
    let d45l = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(d[4], d[5]);
    let d67l = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(d[6], d[7]);
    let d01h = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(d[0], d[1]);
    let d23h = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(d[2], d[3]);
    let d45h = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(d[4], d[5]);
    let d67h = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(d[6], d[7]);
    let d0123ll = i32x4_shuffle::<0, 4, 1, 5>(d01l, d23l);
    let d0123lh = i32x4_shuffle::<2, 6, 3, 7>(d01l, d23l);
    let d4567ll = i32x4_shuffle::<0, 4, 1, 5>(d45l, d67l);
    let d4567lh = i32x4_shuffle::<2, 6, 3, 7>(d45l, d67l);
    let d0123hl = i32x4_shuffle::<0, 4, 1, 5>(d01h, d23h);
    let d0123hh = i32x4_shuffle::<2, 6, 3, 7>(d01h, d23h);
    let d4567hl = i32x4_shuffle::<0, 4, 1, 5>(d45h, d67h);
    let d4567hh = i32x4_shuffle::<2, 6, 3, 7>(d45h, d67h);
    d[0] = i64x2_shuffle::<0, 2>(d0123ll, d4567ll);
    d[1] = i64x2_shuffle::<1, 3>(d0123ll, d4567ll);
    d[2] = i64x2_shuffle::<0, 2>(d0123lh, d4567lh);
    d[3] = i64x2_shuffle::<1, 3>(d0123lh, d4567lh);
    d[4] = i64x2_shuffle::<0, 2>(d0123hl, d4567hl);
    d[5] = i64x2_shuffle::<1, 3>(d0123hl, d4567hl);
    d[6] = i64x2_shuffle::<0, 2>(d0123hh, d4567hh);
    d[7] = i64x2_shuffle::<1, 3>(d0123hh, d4567hh);
}

pub unsafe fn dequantize_and_idct_block_8x8(coefficients: &[i16; 64], quantization_table: &[u16; 64], output_linestride: usize, output: &mut [u8]) {
    assert!(output.len() > output_linestride.checked_mul(7).unwrap().checked_add(7).unwrap());
    const SHIFT: u32 = 3;
    let mut data = [i16x8_splat(0); 8];
    for i in 0..8 {
        data[i] = i16x8_shl(
            i16x8_mul(v128_load(coefficients.as_ptr().add(i * 8) as *const v128), v128_load(quantization_table.as_ptr().add(i * 8) as *const v128)),
            SHIFT,
        );
    }
    idct8(&mut data);
    transpose8(&mut data);
    idct8(&mut data);
    transpose8(&mut data);
    const OFFSET: i16 = 128 << (SHIFT + 3);
    const ROUNDING_BIAS: i16 = (1 << (SHIFT + 3)) >> 1;
    for i in 0..8 {
        let v = add(data[i], i16x8_splat(OFFSET + ROUNDING_BIAS));
        let packed = u8x16_narrow_i16x8(i16x8_shr(v, SHIFT + 3), i16x8_splat(0));
        v128_store64_lane::<0>(packed, output.as_mut_ptr().add(output_linestride * i) as *mut u64);
    }
}

pub unsafe fn color_convert_line_ycbcr(y: &[u8], cb: &[u8], cr: &[u8], output: &mut [u8]) -> usize {
    assert!(output.len() % 3 == 0);
    let num = output.len() / 3;
    assert!(num <= y.len() && num <= cb.len() && num <= cr.len());
    // As many vectors as ssse3.rs converts (it leaves the last full vector to the scalar code too), so that every
    // pixel comes out as on x86-64.
    let num_vecs = (num / 8).saturating_sub(1);
    const SHIFT: u32 = 6;
    for i in 0..num_vecs {
        let yv = i16x8_shl(u16x8_extend_low_u8x16(v128_load64_zero(y.as_ptr().add(i * 8) as *const u64)), SHIFT);
        let cbv = i16x8_shl(u16x8_extend_low_u8x16(v128_load64_zero(cb.as_ptr().add(i * 8) as *const u64)), SHIFT);
        let crv = i16x8_shl(u16x8_extend_low_u8x16(v128_load64_zero(cr.as_ptr().add(i * 8) as *const u64)), SHIFT);
        let c128 = i16x8_splat(128 << SHIFT);
        let yv = add(yv, i16x8_splat((1 << SHIFT) >> 1));
        let cbv = sub(cbv, c128);
        let crv = sub(crv, c128);
        let cr_140200 = add(m(crv, 13173), crv);
        let cb_034414 = m(cbv, 11276);
        let cr_071414 = m(crv, 23401);
        let cb_177200 = add(m(cbv, 25297), cbv);
        let r = add(yv, cr_140200);
        let g = sub(yv, add(cb_034414, cr_071414));
        let b = add(yv, cb_177200);
        let r = u8x16_narrow_i16x8(i16x8_shr(r, SHIFT), i16x8_splat(0));
        let g = u8x16_narrow_i16x8(i16x8_shr(g, SHIFT), i16x8_splat(0));
        let b = u8x16_narrow_i16x8(i16x8_shr(b, SHIFT), i16x8_splat(0));
        let rg = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(r, g);
        let lo = i8x16_shuffle::<0, 1, 16, 2, 3, 17, 4, 5, 18, 6, 7, 19, 8, 9, 20, 10>(rg, b);
        let hi = i8x16_shuffle::<11, 21, 12, 13, 22, 14, 15, 23, 0, 0, 0, 0, 0, 0, 0, 0>(rg, b);
        let o = output.as_mut_ptr().add(24 * i);
        v128_store(o as *mut v128, lo);
        v128_store64_lane::<0>(hi, o.add(16) as *mut u64);
    }
    num_vecs * 8
}

/// edgewasm: the inner loop of `UpsamplerH2V2::upsample_row` (src/upsampler.rs), eight input samples at a time.
/// With `t[i] = 3 * near[i] + far[i]` it writes `output[2i - 1] = (3 t[i-1] + t[i] + 8) >> 4` and
/// `output[2i] = (3 t[i] + t[i-1] + 8) >> 4` for i = 1, 2, ... as long as eight of them fit in `input_width`, in
/// 16-bit lanes (t <= 1020, every sum <= 4088: no overflow, the same integers as the scalar loop). Returns the
/// first i it did not do (the scalar loop does the rest).
pub unsafe fn upsample_row_h2v2(near: &[u8], far: &[u8], input_width: usize, output: &mut [u8]) -> usize {
    assert!(near.len() >= input_width && far.len() >= input_width && output.len() >= 2 * input_width);
    // Output bytes 2i-1 .. 2i+15: odd lane k to byte 2k, even lane k to byte 2k+1.
    let interleave = u8x16(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    let eight = i16x8_splat(8);
    let t = |p: *const u8, q: *const u8| {
        let n = u16x8_extend_low_u8x16(v128_load64_zero(p as *const u64));
        let f = u16x8_extend_low_u8x16(v128_load64_zero(q as *const u64));
        i16x8_add(i16x8_add(i16x8_add(n, n), n), f)
    };
    let mut i = 1;
    while i + 8 <= input_width {
        let t_cur = t(near.as_ptr().add(i), far.as_ptr().add(i));
        let t_prev = t(near.as_ptr().add(i - 1), far.as_ptr().add(i - 1));
        let odd = i16x8_shr(i16x8_add(i16x8_add(i16x8_add(i16x8_add(t_prev, t_prev), t_prev), t_cur), eight), 4);
        let even = i16x8_shr(i16x8_add(i16x8_add(i16x8_add(i16x8_add(t_cur, t_cur), t_cur), t_prev), eight), 4);
        let packed = u8x16_narrow_i16x8(odd, even); // odd lanes in bytes 0..8, even in 8..16 (all 0..255)
        v128_store(output.as_mut_ptr().add(2 * i - 1) as *mut v128, u8x16_swizzle(packed, interleave));
        i += 8;
    }
    i
}
