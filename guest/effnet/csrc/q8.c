/* EfficientNet-Lite0's INT8 kernels for wasm SIMD, built with clang-19 into a static library that the Rust
 * guest links (guest/effnet/build.rs). One source, two builds:
 *   -msimd128 -mrelaxed-simd  the GEMM's inner product is i16x8.relaxed_dot_i8x16_i7x16 (int8 weights times
 *                             7-bit activations, exact on every host since the activations are 0..127), two
 *                             k groups summed in i16 and widened (the weights' lane bound, see SUM4)
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
/* A packed activation group (4 rows) holds, per 4 k groups (16 k), each row's 16 bytes (zero padded to whole
 * chunks); the microkernel splats each 4-byte group by shuffle. Weight panels are zero padded to whole
 * chunks too (their stride is a multiple of 128 bytes), so the k loop needs no tail. */
#define X_CHUNK 64
static size_t xtile_stride(size_t groups) { return ((groups + 3) / 4 * X_CHUNK + 255) / 256 * 256; }
#else
/* ... or, for dot_i16x8, per k group each row's (k0, k1) and (k2, k3) as i16 pairs splatted over 16 bytes. */
#define X_GROUP 128
static size_t xtile_stride(size_t groups) { return (groups * X_GROUP + 255) / 256 * 256; }
#endif

size_t effnet_q8_xtile_stride(size_t groups) { return xtile_stride(groups); }
size_t effnet_q8_panel_stride(size_t groups) { return panel_stride(groups); }

/* Pack rows [0, rv) (rv <= 4) of a u8 matrix, k values 0..4*groups (row stride lda), as the microkernel reads
 * them; rows past rv are zero. k values past the row's end must be readable (the caller pads). */
static void pack_rows(const uint8_t *a, size_t lda, size_t rv, size_t groups, uint8_t *dst) {
  for (size_t m = 0; m < 4; m++) {
    const uint8_t *row = a + m * lda;
#ifdef __wasm_relaxed_simd__
    size_t g = 0;
    for (; g + 4 <= groups; g += 4)
      wasm_v128_store(dst + g / 4 * X_CHUNK + m * 16, m < rv ? wasm_v128_load(row + 4 * g) : wasm_i32x4_splat(0));
    if (g < groups) {
      uint8_t t[16] = {0};
      for (size_t j = 0; m < rv && j < 4 * (groups - g); j++) t[j] = row[4 * g + j];
      wasm_v128_store(dst + g / 4 * X_CHUNK + m * 16, wasm_v128_load(t));
    }
#else
    for (size_t g = 0; g < groups; g++) {
      v128_t v = m < rv ? wasm_v128_load32_zero(row + 4 * g) : wasm_i32x4_splat(0);
      v128_t h = wasm_u16x8_extend_low_u8x16(v);
      wasm_v128_store(dst + g * X_GROUP + m * 32, wasm_i32x4_shuffle(h, h, 0, 0, 0, 0));
      wasm_v128_store(dst + g * X_GROUP + m * 32 + 16, wasm_i32x4_shuffle(h, h, 1, 1, 1, 1));
    }
#endif
  }
}

#ifdef __wasm_relaxed_simd__
/* Two k groups' pair products summed in i16, then widened: the i16 sums are exact because the packed weights
 * keep |w| summed over the 4 weights of one i16 lane of two groups <= 256 (checked when packing), so
 * 256 * 127 < 2^15. It saves one widening multiply per two groups against the i32 relaxed dot-add, which
 * Cranelift lowers to pmaddubsw + pmaddwd + paddd (no VNNI). */
#define DOT16(w, x) wasm_i16x8_relaxed_dot_i8x16_i7x16((w), (x))
#define WIDEN2(p, q) wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(p, q))
#define SUM4(wa, wb, wc, wd, acc)                                                                      \
  wasm_i32x4_add(wasm_i32x4_add(acc, WIDEN2(DOT16(wa, xa), DOT16(wb, xb))), WIDEN2(DOT16(wc, xc), DOT16(wd, xd)))

/* 4 rows x 8 channels over `groups` k groups: acc[2m + h] (i32x4, channels 4h..4h+3 of row m). Per chunk of
 * 4 groups: the 8 weight vectors, then per row one 16-byte load, its 4 groups splatted by shuffle. */
static void micro(const uint8_t *xs, const int8_t *w, size_t groups, v128_t *acc) {
  size_t chunks = (groups + 3) / 4;
#define CHUNK(i, ACC)                                                                                  \
  {                                                                                                    \
    const int8_t *wq = ALIGN_DOWN(w + (i)*4 * W_GROUP, 128);                                           \
    const uint8_t *xq = ALIGN_DOWN(xs + (i)*X_CHUNK, 64);                                              \
    v128_t a0 = VL(wq), a1 = VL(wq + 16), b0 = VL(wq + 32), b1 = VL(wq + 48);                          \
    v128_t c0 = VL(wq + 64), c1 = VL(wq + 80), d0 = VL(wq + 96), d1 = VL(wq + 112);                    \
    ROW(0, ACC) ROW(1, ACC) ROW(2, ACC) ROW(3, ACC)                                                    \
  }
#define ROW(m, ACC)                                                                                   \
  {                                                                                                   \
    v128_t x = VL(xq + (m)*16);                                                                       \
    v128_t xa = wasm_i32x4_shuffle(x, x, 0, 0, 0, 0), xb = wasm_i32x4_shuffle(x, x, 1, 1, 1, 1);      \
    v128_t xc = wasm_i32x4_shuffle(x, x, 2, 2, 2, 2), xd = wasm_i32x4_shuffle(x, x, 3, 3, 3, 3);      \
    VS(acc + 2 * (m), SUM4(a0, b0, c0, d0, ACC(2 * (m))));                                            \
    VS(acc + 2 * (m) + 1, SUM4(a1, b1, c1, d1, ACC(2 * (m) + 1)));                                    \
  }
#define FIRST(j) wasm_i32x4_splat(0)
#define NEXT(j) VL(acc + (j))
  /* the first chunk starts from zero (no accumulator stores and loads before it) */
  CHUNK(0, FIRST)
#pragma clang loop unroll(disable)
  for (size_t i = 1; i < chunks; i++) CHUNK(i, NEXT)
#undef FIRST
#undef NEXT
#undef ROW
#undef CHUNK
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

/* Float outputs -> u8 clip(rint(v), 0, 127): the lower clip in float, then adding 1.5 * 2^23 rounds to an
 * integer (ties to even) held in the low mantissa bits, cheaper than nearest + trunc_sat (which Cranelift
 * expands); subtracting the constant's bits leaves rint(v) for v < 2^22 and a larger nonnegative integer above
 * (the bits of nonnegative floats are monotonic), which the saturating narrows and a byte min clip to 127.
 * to_q7 and q7x2 give what clip-then-round gives, for every float (NaN: 127, as the clip's pmin/pmax). */
static v128_t q7_bits(v128_t v) {
  const v128_t zero = wasm_f32x4_splat(0.0f), magic = wasm_f32x4_splat(12582912.0f);
  return wasm_i32x4_sub(wasm_f32x4_add(wasm_f32x4_pmax(v, zero), magic), magic);
}
/* 16 outputs (a, b, c, d: 4 each) -> 16 u8 */
static v128_t q7x2(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t q = wasm_u8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(q7_bits(a), q7_bits(b)),
                                     wasm_i16x8_narrow_i32x4(q7_bits(c), q7_bits(d)));
  return wasm_u8x16_min(q, wasm_u8x16_splat(127));
}
/* 8 outputs -> the low 8 u8 */
static v128_t to_q7(v128_t lo, v128_t hi) {
  v128_t n = wasm_i16x8_narrow_i32x4(q7_bits(lo), q7_bits(hi));
  return wasm_u8x16_min(wasm_u8x16_narrow_i16x8(n, n), wasm_u8x16_splat(127));
}

static v128_t widen_f32(v128_t u16, int high) {
  v128_t u32 = high ? wasm_u32x4_extend_high_u16x8(u16) : wasm_u32x4_extend_low_u16x8(u16);
  return wasm_f32x4_convert_i32x4(u32);
}

/* acc * s + c with s, c loaded */
static v128_t affine_v(v128_t acc, v128_t s, v128_t c) {
  return wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc), s), c);
}

enum { EPI_Q, EPI_RES, EPI_F };

/* One call of effnet_q8_gemm with its epilogue kind a constant (one copy per kind, no test of it per output). */
static inline __attribute__((always_inline)) void gemm_kind(
    const uint8_t *a, size_t rows, size_t lda, size_t groups, const int8_t *w, size_t cout, const float *s,
    const float *c, uint8_t *out, size_t ldo, const uint8_t *res, size_t ldr, float r, float *fout, size_t ldf,
    uint8_t *scratch, size_t scratch_len, int kind) {
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
        if (kind != EPI_F && nv == 4 && nw == 8) {
          /* the common case: four whole rows, two per 16-byte result */
          v128_t sl = wasm_v128_load(s + n0), sh = wasm_v128_load(s + n0 + 4);
          v128_t cl = wasm_v128_load(c + n0), ch = wasm_v128_load(c + n0 + 4);
          for (size_t m = 0; m < 4; m += 2) {
            v128_t l0 = affine_v(VL(acc + 2 * m), sl, cl), h0 = affine_v(VL(acc + 2 * m + 1), sh, ch);
            v128_t l1 = affine_v(VL(acc + 2 * m + 2), sl, cl), h1 = affine_v(VL(acc + 2 * m + 3), sh, ch);
            if (kind == EPI_RES) {
              v128_t x0 = wasm_u16x8_load8x8(res + (r0 + m) * ldr + n0);
              v128_t x1 = wasm_u16x8_load8x8(res + (r0 + m + 1) * ldr + n0);
              l0 = wasm_f32x4_add(l0, wasm_f32x4_mul(widen_f32(x0, 0), rv4));
              h0 = wasm_f32x4_add(h0, wasm_f32x4_mul(widen_f32(x0, 1), rv4));
              l1 = wasm_f32x4_add(l1, wasm_f32x4_mul(widen_f32(x1, 0), rv4));
              h1 = wasm_f32x4_add(h1, wasm_f32x4_mul(widen_f32(x1, 1), rv4));
            }
            v128_t q = q7x2(l0, h0, l1, h1);
            wasm_v128_store64_lane(out + (r0 + m) * ldo + n0, q, 0);
            wasm_v128_store64_lane(out + (r0 + m + 1) * ldo + n0, q, 1);
          }
          continue;
        }
        for (size_t m = 0; m < nv; m++) {
          v128_t lo = affine(VL(acc + 2 * m), s + n0, c + n0);
          v128_t hi = affine(VL(acc + 2 * m + 1), s + n0 + 4, c + n0 + 4);
          if (kind == EPI_F) {
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
          if (kind == EPI_RES) {
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

/* out[m][n] = q7(f32(sum_k a[m][k] * w[k][n]) * s[n] + c[n] [+ f32(res[m][n]) * r]) for m < rows, n < cout,
 * or fout[m][n] = f32(acc) * s[n] + c[n] when fout is given (the logits). a: u8 rows (stride lda) of k values,
 * readable up to 4 * groups (zero padded by the caller past k); w: packed panels (panel_stride apart, 128-byte
 * aligned); s, c: whole panels; scratch: 256-byte aligned, scratch_len bytes (at least one row group). */
void effnet_q8_gemm(const uint8_t *a, size_t rows, size_t lda, size_t groups, const int8_t *w, size_t cout,
                    const float *s, const float *c, uint8_t *out, size_t ldo, const uint8_t *res, size_t ldr,
                    float r, float *fout, size_t ldf, uint8_t *scratch, size_t scratch_len) {
  if (fout)
    gemm_kind(a, rows, lda, groups, w, cout, s, c, out, ldo, res, ldr, r, fout, ldf, scratch, scratch_len, EPI_F);
  else if (res)
    gemm_kind(a, rows, lda, groups, w, cout, s, c, out, ldo, res, ldr, r, fout, ldf, scratch, scratch_len, EPI_RES);
  else
    gemm_kind(a, rows, lda, groups, w, cout, s, c, out, ldo, res, ldr, r, fout, ldf, scratch, scratch_len, EPI_Q);
}

/* Depthwise kxk (TensorFlow SAME padding given as pad_top/pad_left), u8 NHWC in and out, requantized like
 * the GEMM. The k*k taps (row-major) are taken in pairs, the last one paired with a zero weight: wts is
 * i16 [pairs][ch][2], so one i32x4.dot_i16x8_s sums two taps of four channels (the two taps' inputs
 * interleaved by one byte shuffle). Taps that hang over the padding read a row of zeros, so every pixel
 * runs the same code. ch is a multiple of 8 and at most DW_MAX_CH. */
#define DW_MAX_CH 2048
#define DW_MAX_TAPS 26
static const uint8_t dw_zeros[DW_MAX_CH + 16];

/* acc[0..n/4) += the pair (p1, p2) of n channels at c0, weights w (n*2 i16). n is 16 or 8. */
#define PAIR16(p1, p2, w, acc)                                                                        \
  {                                                                                                   \
    v128_t a = VL(p1), b = VL(p2);                                                                    \
    v128_t lo = wasm_i8x16_shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);      \
    v128_t hi = wasm_i8x16_shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31); \
    acc##0 = wasm_i32x4_add(acc##0, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(lo), VL(w)));       \
    acc##1 = wasm_i32x4_add(acc##1, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(lo), VL((w) + 8))); \
    acc##2 = wasm_i32x4_add(acc##2, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(hi), VL((w) + 16))); \
    acc##3 = wasm_i32x4_add(acc##3, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(hi), VL((w) + 24))); \
  }

void effnet_q8_depthwise(const uint8_t *in, size_t h, size_t w, size_t ch, size_t k, size_t stride, size_t oh,
                         size_t ow, size_t pad_top, size_t pad_left, const int16_t *wts, const float *s,
                         const float *c, uint8_t *out) {
  size_t taps = k * k, pairs = (taps + 1) / 2;
  const uint8_t *tap[DW_MAX_TAPS];
  v128_t acc[4];
  size_t off[DW_MAX_TAPS];
  for (size_t ky = 0, t = 0; ky < k; ky++)
    for (size_t kx = 0; kx < k; kx++, t++) off[t] = (ky * w + kx) * ch;
  for (size_t oy = 0; oy < oh; oy++) {
    for (size_t ox = 0; ox < ow; ox++) {
      long iy0 = (long)(oy * stride) - (long)pad_top, ix0 = (long)(ox * stride) - (long)pad_left;
      if (iy0 >= 0 && ix0 >= 0 && iy0 + (long)k <= (long)h && ix0 + (long)k <= (long)w) {
        /* interior: every tap at a fixed offset from the window's corner */
        const uint8_t *corner = in + ((size_t)iy0 * w + (size_t)ix0) * ch;
        for (size_t t = 0; t < taps; t++) tap[t] = corner + off[t];
      } else
      for (size_t ky = 0, t = 0; ky < k; ky++) {
        long iy = iy0 + (long)ky;
        int row_in = iy >= 0 && iy < (long)h;
        const uint8_t *row = in + (size_t)(row_in ? iy : 0) * w * ch;
        for (size_t kx = 0; kx < k; kx++, t++) {
          long ix = ix0 + (long)kx;
          tap[t] = row_in && ix >= 0 && ix < (long)w ? row + (size_t)ix * ch : dw_zeros;
        }
      }
      tap[taps] = dw_zeros; /* the odd tap's partner: weight 0 */
      uint8_t *o = out + (oy * ow + ox) * ch;
      size_t c0 = 0;
      if (pairs == 5 || pairs == 13) {
        /* 3x3 and 5x5: every pair unrolled, the accumulators in registers. A volatile store of their xor
           after each pair makes Cranelift place that pair's arithmetic there, so only one pair's loads are
           live at a time (it would otherwise hoist all of them above the arithmetic). */
#pragma clang loop unroll(disable)
        for (; c0 + 16 <= ch; c0 += 16) {
          v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
          const int16_t *wp = wts + c0 * 2;
#define STEP(p)                                                                                    \
  PAIR16(tap[2 * (p)] + c0, tap[2 * (p) + 1] + c0, wp + (p) * 2 * ch, a);                          \
  VS(acc, wasm_v128_xor(wasm_v128_xor(a0, a1), wasm_v128_xor(a2, a3)));
          STEP(0) STEP(1) STEP(2) STEP(3) STEP(4)
          if (pairs == 13) {
            STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11) STEP(12)
          }
#undef STEP
          wasm_v128_store(o + c0, q7x2(affine(a0, s + c0, c + c0), affine(a1, s + c0 + 4, c + c0 + 4),
                                       affine(a2, s + c0 + 8, c + c0 + 8), affine(a3, s + c0 + 12, c + c0 + 12)));
        }
      }
#pragma clang loop unroll(disable)
      for (; c0 + 16 <= ch; c0 += 16) {
        for (int i = 0; i < 4; i++) VS(acc + i, wasm_i32x4_splat(0));
        size_t p = 0;
#pragma clang loop unroll(disable)
        for (; p + 2 <= pairs; p += 2) {
          /* two pairs per iteration, accumulators through memory: Cranelift would hoist every load of a
             longer unrolled window ahead of the arithmetic (see the top of this file) */
          v128_t a0 = VL(acc), a1 = VL(acc + 1), a2 = VL(acc + 2), a3 = VL(acc + 3);
          const int16_t *wp = wts + (p * ch + c0) * 2;
          PAIR16(tap[2 * p] + c0, tap[2 * p + 1] + c0, wp, a);
          PAIR16(tap[2 * p + 2] + c0, tap[2 * p + 3] + c0, wp + 2 * ch, a);
          VS(acc, a0);
          VS(acc + 1, a1);
          VS(acc + 2, a2);
          VS(acc + 3, a3);
        }
        if (p < pairs) {
          v128_t a0 = VL(acc), a1 = VL(acc + 1), a2 = VL(acc + 2), a3 = VL(acc + 3);
          PAIR16(tap[2 * p] + c0, tap[2 * p + 1] + c0, wts + (p * ch + c0) * 2, a);
          VS(acc, a0);
          VS(acc + 1, a1);
          VS(acc + 2, a2);
          VS(acc + 3, a3);
        }
        wasm_v128_store(o + c0, q7x2(affine(VL(acc), s + c0, c + c0), affine(VL(acc + 1), s + c0 + 4, c + c0 + 4),
                                     affine(VL(acc + 2), s + c0 + 8, c + c0 + 8),
                                     affine(VL(acc + 3), s + c0 + 12, c + c0 + 12)));
      }
      if (c0 < ch) { /* 8 channels left: the low half of a 16-channel pair */
        for (int i = 0; i < 2; i++) VS(acc + i, wasm_i32x4_splat(0));
        for (size_t p = 0; p < pairs; p++) {
          v128_t a0 = VL(acc), a1 = VL(acc + 1);
          const int16_t *wp = wts + (p * ch + c0) * 2;
          v128_t x1 = wasm_v128_load64_zero(tap[2 * p] + c0), x2 = wasm_v128_load64_zero(tap[2 * p + 1] + c0);
          v128_t lo = wasm_i8x16_shuffle(x1, x2, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
          a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(lo), VL(wp)));
          a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(lo), VL(wp + 8)));
          VS(acc, a0);
          VS(acc + 1, a1);
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
