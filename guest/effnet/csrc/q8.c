/* EfficientNet-Lite0's INT8 kernels for wasm SIMD, built with clang-19 into a static library that the Rust
 * guest links (guest/effnet/build.rs). One source, two builds:
 *   -msimd128 -mrelaxed-simd  the GEMM's inner product is i32x4.relaxed_dot_i8x16_i7x16_add (int8 weights
 *                             times 7-bit activations, exact on every host since the activations are 0..127)
 *   -msimd128                 plain SIMD: i32x4.dot_i16x8_s on widened operands, for engines without relaxed SIMD
 * Both compute exactly what guest/effnet/src/q8.rs's scalar kernels and edgewasm.models._int8.forward compute:
 * integer accumulation, then q = clip(rint(f32(acc) * s + c [+ f32(x) * r]), 0, 127) in float32 with every
 * multiply and add rounded apart (-ffp-contract=off).
 *
 * The shapes of the loops are chosen for Cranelift, which compiles them under epoch interruption: a check on
 * every loop back-edge whose slow path is a call clobbering every vector register, so vectors carried around
 * a loop live in stack slots; and pure arithmetic is placed at its first use by a load or store, after every
 * load before that. So accumulators live in small arrays explicitly, one load and one store per update of
 * several k steps; volatile accesses pin that order through LLVM; and masking an aligned pointer's low bits
 * lets LLVM fold the per-load offsets into the loads instead of computing each address apart.
 */
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

#define VL(p) (*(const volatile v128_t *)(const void *)(p))
#define VS(p, v) (*(volatile v128_t *)(void *)(p) = (v))
#define ALIGN_DOWN(p, a) ((const void *)((uintptr_t)(p) & ~(uintptr_t)((a)-1)))

/* Bytes per k group (4 k values) of one 8-channel weight panel, and a panel's stride (128-byte multiple). */
#define W_GROUP 32
static size_t panel_stride(size_t groups) { return (groups * W_GROUP + 127) / 128 * 128; }

#ifdef __wasm_relaxed_simd__
/* A packed activation group (4 rows) holds, per k group, each row's 4 bytes splatted over 16 bytes. */
#define X_GROUP 64
#else
/* ... or, for dot_i16x8, each row's (k0, k1) and (k2, k3) as i16 pairs splatted over 16 bytes each. */
#define X_GROUP 128
#endif
static size_t xtile_stride(size_t groups) { return (groups * X_GROUP + 255) / 256 * 256; }

size_t effnet_q8_xtile_stride(size_t groups) { return xtile_stride(groups); }
size_t effnet_q8_panel_stride(size_t groups) { return panel_stride(groups); }

/* Pack rows [0, rv) (rv <= 4) of a u8 matrix, k values 0..4*groups (row stride lda), as the microkernel reads
 * them; rows past rv are zero. k values past the row's end must be readable (the caller pads). */
static void pack_rows(const uint8_t *a, size_t lda, size_t rv, size_t groups, uint8_t *dst) {
  for (size_t m = 0; m < 4; m++) {
    const uint8_t *row = a + m * lda;
    for (size_t g = 0; g < groups; g++) {
      v128_t v = m < rv ? wasm_v128_load32_zero(row + 4 * g) : wasm_i32x4_splat(0);
#ifdef __wasm_relaxed_simd__
      wasm_v128_store(dst + g * X_GROUP + m * 16, wasm_i32x4_shuffle(v, v, 0, 0, 0, 0));
#else
      v128_t h = wasm_u16x8_extend_low_u8x16(v);
      wasm_v128_store(dst + g * X_GROUP + m * 32, wasm_i32x4_shuffle(h, h, 0, 0, 0, 0));
      wasm_v128_store(dst + g * X_GROUP + m * 32 + 16, wasm_i32x4_shuffle(h, h, 1, 1, 1, 1));
#endif
    }
  }
}

#ifdef __wasm_relaxed_simd__
#define DOT(w, x, acc) wasm_i32x4_relaxed_dot_i8x16_i7x16_add((w), (x), (acc))

/* 4 rows x 8 channels over `groups` k groups: acc[2m + h] (i32x4, channels 4h..4h+3 of row m). */
static void micro(const uint8_t *xs, const int8_t *w, size_t groups, v128_t *acc) {
  for (int i = 0; i < 8; i++) VS(acc + i, wasm_i32x4_splat(0));
  size_t g = 0;
#pragma clang loop unroll(disable)
  for (; g + 4 <= groups; g += 4) {
    const int8_t *wq = ALIGN_DOWN(w + g * W_GROUP, 128);
    const uint8_t *xq = ALIGN_DOWN(xs + g * X_GROUP, 256);
    v128_t a0 = VL(wq), a1 = VL(wq + 16), b0 = VL(wq + 32), b1 = VL(wq + 48);
    v128_t c0 = VL(wq + 64), c1 = VL(wq + 80), d0 = VL(wq + 96), d1 = VL(wq + 112);
#define ROW(m)                                                                      \
  {                                                                                 \
    v128_t xa = VL(xq + (m)*16), xb = VL(xq + 64 + (m)*16);                         \
    v128_t xc = VL(xq + 128 + (m)*16), xd = VL(xq + 192 + (m)*16);                  \
    VS(acc + 2 * (m), DOT(d0, xd, DOT(c0, xc, DOT(b0, xb, DOT(a0, xa, VL(acc + 2 * (m)))))));     \
    VS(acc + 2 * (m) + 1, DOT(d1, xd, DOT(c1, xc, DOT(b1, xb, DOT(a1, xa, VL(acc + 2 * (m) + 1)))))); \
  }
    ROW(0) ROW(1) ROW(2) ROW(3)
#undef ROW
  }
#pragma clang loop unroll(disable)
  for (; g < groups; g++) {
    const int8_t *wg = w + g * W_GROUP;
    const uint8_t *xg = xs + g * X_GROUP;
    v128_t a0 = VL(wg), a1 = VL(wg + 16);
    for (int m = 0; m < 4; m++) {
      v128_t x = VL(xg + m * 16);
      VS(acc + 2 * m, DOT(a0, x, VL(acc + 2 * m)));
      VS(acc + 2 * m + 1, DOT(a1, x, VL(acc + 2 * m + 1)));
    }
  }
}
#else
/* The 16 weight bytes of 4 channels x 4 k, regrouped as (k0, k1) pairs then (k2, k3) pairs per channel. */
static v128_t pairs(v128_t w) { return wasm_i8x16_shuffle(w, w, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15); }
#define DOT2(lo, hi, x, acc) \
  wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, VL(x)), wasm_i32x4_dot_i16x8(hi, VL((x) + 16))))

static void micro(const uint8_t *xs, const int8_t *w, size_t groups, v128_t *acc) {
  for (int i = 0; i < 8; i++) VS(acc + i, wasm_i32x4_splat(0));
  size_t g = 0;
#pragma clang loop unroll(disable)
  for (; g + 2 <= groups; g += 2) {
    const int8_t *wq = ALIGN_DOWN(w + g * W_GROUP, 64);
    const uint8_t *xq = ALIGN_DOWN(xs + g * X_GROUP, 256);
    v128_t p;
    p = pairs(VL(wq));      v128_t a0l = wasm_i16x8_extend_low_i8x16(p), a0h = wasm_i16x8_extend_high_i8x16(p);
    p = pairs(VL(wq + 16)); v128_t a1l = wasm_i16x8_extend_low_i8x16(p), a1h = wasm_i16x8_extend_high_i8x16(p);
    p = pairs(VL(wq + 32)); v128_t b0l = wasm_i16x8_extend_low_i8x16(p), b0h = wasm_i16x8_extend_high_i8x16(p);
    p = pairs(VL(wq + 48)); v128_t b1l = wasm_i16x8_extend_low_i8x16(p), b1h = wasm_i16x8_extend_high_i8x16(p);
#define ROW(m)                                                                                  \
  {                                                                                             \
    const uint8_t *xa = xq + (m)*32, *xb = xq + 128 + (m)*32;                                   \
    VS(acc + 2 * (m), DOT2(b0l, b0h, xb, DOT2(a0l, a0h, xa, VL(acc + 2 * (m)))));               \
    VS(acc + 2 * (m) + 1, DOT2(b1l, b1h, xb, DOT2(a1l, a1h, xa, VL(acc + 2 * (m) + 1))));       \
  }
    ROW(0) ROW(1) ROW(2) ROW(3)
#undef ROW
  }
#pragma clang loop unroll(disable)
  for (; g < groups; g++) {
    const int8_t *wg = w + g * W_GROUP;
    const uint8_t *xg = xs + g * X_GROUP;
    v128_t p;
    p = pairs(VL(wg));      v128_t a0l = wasm_i16x8_extend_low_i8x16(p), a0h = wasm_i16x8_extend_high_i8x16(p);
    p = pairs(VL(wg + 16)); v128_t a1l = wasm_i16x8_extend_low_i8x16(p), a1h = wasm_i16x8_extend_high_i8x16(p);
    for (int m = 0; m < 4; m++) {
      const uint8_t *x = xg + m * 32;
      VS(acc + 2 * m, DOT2(a0l, a0h, x, VL(acc + 2 * m)));
      VS(acc + 2 * m + 1, DOT2(a1l, a1h, x, VL(acc + 2 * m + 1)));
    }
  }
}
#endif

/* f32(acc) * s + c, then + f32(x) * r when x is given (x: 4 u8 widened to f32). */
static v128_t affine(v128_t acc, const float *s, const float *c) {
  v128_t v = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc), wasm_v128_load(s));
  return wasm_f32x4_add(v, wasm_v128_load(c));
}

/* 8 float outputs -> 8 u8: clip(rint(v), 0, 127). */
static v128_t to_q7(v128_t lo, v128_t hi) {
  v128_t a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(lo));
  v128_t b = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(hi));
  v128_t q = wasm_u8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(a, b), wasm_i16x8_splat(0));
  return wasm_u8x16_min(q, wasm_u8x16_splat(127));
}

static v128_t widen_f32(v128_t u16, int high) {
  v128_t u32 = high ? wasm_u32x4_extend_high_u16x8(u16) : wasm_u32x4_extend_low_u16x8(u16);
  return wasm_f32x4_convert_i32x4(u32);
}

/* out[m][n] = q7(f32(sum_k a[m][k] * w[k][n]) * s[n] + c[n] [+ f32(res[m][n]) * r]) for m < rows, n < cout,
 * or fout[m][n] = f32(acc) * s[n] + c[n] when fout is given (the logits). a: u8 rows (stride lda) of k values,
 * readable up to 4 * groups (zero padded by the caller past k); w: packed panels (panel_stride apart, 128-byte
 * aligned); s, c: whole panels; scratch: 256-byte aligned, scratch_len bytes (at least one row group). */
void effnet_q8_gemm(const uint8_t *a, size_t rows, size_t lda, size_t groups, const int8_t *w, size_t cout,
                    const float *s, const float *c, uint8_t *out, size_t ldo, const uint8_t *res, size_t ldr,
                    float r, float *fout, size_t ldf, uint8_t *scratch, size_t scratch_len) {
  size_t xstride = xtile_stride(groups), pstride = panel_stride(groups);
  size_t tile_groups = scratch_len / xstride;
  if (tile_groups > 64) tile_groups = 64;
  size_t panels = (cout + 7) / 8;
  v128_t acc[8];
  v128_t rv4 = wasm_f32x4_splat(r);
  for (size_t m0 = 0; m0 < rows; m0 += 4 * tile_groups) {
    size_t m1 = m0 + 4 * tile_groups < rows ? m0 + 4 * tile_groups : rows;
    size_t ng = (m1 - m0 + 3) / 4;
    for (size_t gi = 0; gi < ng; gi++) {
      size_t r0 = m0 + 4 * gi, nv = m1 - r0 < 4 ? m1 - r0 : 4;
      pack_rows(a + r0 * lda, lda, nv, groups, scratch + gi * xstride);
    }
    for (size_t p = 0; p < panels; p++) {
      size_t n0 = 8 * p, nw = cout - n0 < 8 ? cout - n0 : 8;
      const int8_t *wp = w + p * pstride;
      for (size_t gi = 0; gi < ng; gi++) {
        size_t r0 = m0 + 4 * gi, nv = m1 - r0 < 4 ? m1 - r0 : 4;
        micro(scratch + gi * xstride, wp, groups, acc);
        for (size_t m = 0; m < nv; m++) {
          v128_t lo = affine(VL(acc + 2 * m), s + n0, c + n0);
          v128_t hi = affine(VL(acc + 2 * m + 1), s + n0 + 4, c + n0 + 4);
          if (fout) {
            float *o = fout + (r0 + m) * ldf + n0;
            if (nw == 8) {
              wasm_v128_store(o, lo);
              wasm_v128_store(o + 4, hi);
            } else {
              float t[8];
              wasm_v128_store(t, lo);
              wasm_v128_store(t + 4, hi);
              for (size_t j = 0; j < nw; j++) o[j] = t[j];
            }
            continue;
          }
          if (res) {
            const uint8_t *x = res + (r0 + m) * ldr + n0;
            v128_t u16;
            if (nw == 8) {
              u16 = wasm_u16x8_load8x8(x);
            } else {
              uint8_t t[8] = {0};
              for (size_t j = 0; j < nw; j++) t[j] = x[j];
              u16 = wasm_u16x8_load8x8(t);
            }
            lo = wasm_f32x4_add(lo, wasm_f32x4_mul(widen_f32(u16, 0), rv4));
            hi = wasm_f32x4_add(hi, wasm_f32x4_mul(widen_f32(u16, 1), rv4));
          }
          v128_t q = to_q7(lo, hi);
          uint8_t *o = out + (r0 + m) * ldo + n0;
          if (nw == 8) {
            wasm_v128_store64_lane(o, q, 0);
          } else {
            uint8_t t[16];
            wasm_v128_store(t, q);
            for (size_t j = 0; j < nw; j++) o[j] = t[j];
          }
        }
      }
    }
  }
}

/* Depthwise kxk (TensorFlow SAME padding given as pad_top/pad_left), u8 NHWC in and out, i16 weights
 * [k*k][ch], requantized like the GEMM; ch a multiple of 8. */
void effnet_q8_depthwise(const uint8_t *in, size_t h, size_t w, size_t ch, size_t k, size_t stride, size_t oh,
                         size_t ow, size_t pad_top, size_t pad_left, const int16_t *wts, const float *s,
                         const float *c, uint8_t *out) {
  v128_t acc[2];
  for (size_t oy = 0; oy < oh; oy++) {
    long iy0 = (long)(oy * stride) - (long)pad_top;
    size_t ky0 = iy0 < 0 ? (size_t)(-iy0) : 0;
    size_t ky1 = (long)h - iy0 < (long)k ? (size_t)((long)h - iy0) : k;
    for (size_t ox = 0; ox < ow; ox++) {
      long ix0 = (long)(ox * stride) - (long)pad_left;
      size_t kx0 = ix0 < 0 ? (size_t)(-ix0) : 0;
      size_t kx1 = (long)w - ix0 < (long)k ? (size_t)((long)w - ix0) : k;
      uint8_t *o = out + (oy * ow + ox) * ch;
#pragma clang loop unroll(disable)
      for (size_t c0 = 0; c0 < ch; c0 += 8) {
        VS(acc, wasm_i32x4_splat(0));
        VS(acc + 1, wasm_i32x4_splat(0));
#pragma clang loop unroll(disable)
        for (size_t ky = ky0; ky < ky1; ky++) {
          const uint8_t *row = in + ((size_t)(iy0 + (long)ky) * w) * ch + c0;
          const int16_t *wr = wts + ky * k * ch + c0;
          v128_t lo = VL(acc), hi = VL(acc + 1);
          if (kx0 == 0 && kx1 == k && (k == 3 || k == 5)) {
            /* a whole row of taps, unrolled: its products are summed in registers, then stored */
            const uint8_t *px = row + (size_t)ix0 * ch;
#define TAP(kx)                                                                   \
  {                                                                               \
    v128_t x = wasm_u16x8_load8x8(px + (kx)*ch);                                  \
    v128_t wt = VL(wr + (kx)*ch);                                                 \
    lo = wasm_i32x4_add(lo, wasm_i32x4_extmul_low_i16x8(x, wt));                  \
    hi = wasm_i32x4_add(hi, wasm_i32x4_extmul_high_i16x8(x, wt));                 \
  }
            TAP(0) TAP(1) TAP(2)
            if (k == 5) { TAP(3) TAP(4) }
#undef TAP
          } else {
#pragma clang loop unroll(disable)
            for (size_t kx = kx0; kx < kx1; kx++) {
              v128_t x = wasm_u16x8_load8x8(row + (size_t)(ix0 + (long)kx) * ch);
              v128_t wt = VL(wr + kx * ch);
              lo = wasm_i32x4_add(lo, wasm_i32x4_extmul_low_i16x8(x, wt));
              hi = wasm_i32x4_add(hi, wasm_i32x4_extmul_high_i16x8(x, wt));
            }
          }
          VS(acc, lo);
          VS(acc + 1, hi);
        }
        v128_t q = to_q7(affine(VL(acc), s + c0, c + c0), affine(VL(acc + 1), s + c0 + 4, c + c0 + 4));
        wasm_v128_store64_lane(o + c0, q, 0);
      }
    }
  }
}

/* The network input: q = clip(rint(x * inv + zero), 0, 127) for n floats (n a multiple of 4). */
void effnet_q8_quantize(const float *x, size_t n, float inv, float zero, uint8_t *q) {
  v128_t vi = wasm_f32x4_splat(inv), vz = wasm_f32x4_splat(zero);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t lo = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(x + i), vi), vz);
    v128_t hi = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(x + i + 4), vi), vz);
    wasm_v128_store64_lane(q + i, to_q7(lo, hi), 0);
  }
  for (; i < n; i += 4) {
    v128_t lo = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(x + i), vi), vz);
    v128_t qq = to_q7(lo, lo);
    wasm_v128_store32_lane(q + i, qq, 0);
  }
}
