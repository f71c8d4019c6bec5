/* EfficientNet-Lite0's FP32 kernels for wasm SIMD, built with clang-19 into the static library the Rust guest
 * links (guest/effnet/build.rs): the GEMM microkernel of the 1x1 convs (expand, project, head, the stem's im2col
 * rows and the classifier), and the interior pixels of the depthwise 3x3/5x5 convs. One source, two builds:
 *   -msimd128 -mrelaxed-simd  every product-and-add is one f32x4.relaxed_madd (an FMA on FMA hosts, mul then add
 *                             elsewhere: the last bits depend on the host; within 1e-3 of ONNX Runtime is the
 *                             contract). The relaxed guest uses both kernels.
 *   -msimd128                 mul then add (-ffp-contract=off). The plain guest uses both kernels too: its GEMM
 *                             gives the bits of the Rust kernel src/kernels.rs `micro_mem` (the same balanced
 *                             trees), and with up to 12 rows per weight load it runs 8-10% faster.
 * The GEMM reads the tile src/kernels.rs packs (`pack_group_splat`: groups of 4 rows, per 4 k steps j = 0..3 and
 * row m = 0..3 one vector holding a[m][k + j] in every lane) and the weight panels of 8 output channels
 * (`[k][8]`), and fuses the bias (the accumulators start from it) and the epilogue.
 *
 * Loop shapes for Cranelift under epoch interruption (see csrc/q8.c): accumulators live in a small array, one
 * load and one store per update of 4 k steps; volatile accesses pin the order of loads and stores through
 * LLVM; masked aligned pointers and constant tap offsets let the offsets fold into the loads. Built with
 * -mllvm -disable-lsr: LLVM's loop strength reduction otherwise rewrites every tap's address as base + index +
 * constant, which wasm cannot fold (an i32 add that may wrap), so Cranelift emits an lea per load.
 */
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

#define VL(p) (*(const volatile v128_t *)(const void *)(p))
#define VS(p, v) (*(volatile v128_t *)(void *)(p) = (v))
#define ALIGN_DOWN(p, a) ((const float *)((uintptr_t)(p) & ~(uintptr_t)((a)-1)))

#ifdef __wasm_relaxed_simd__
#define MADD(a, b, c) wasm_f32x4_relaxed_madd((a), (b), (c))
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul((a), (b)), (c))
#endif

/* xa*wa + xb*wb + xc*wc + xd*wd: a product then three madds (the accumulator is added after, so the chain carried
 * from one k step group to the next is one add, not four madds). Plain build: a balanced tree of mul and add. */
#ifdef __wasm_relaxed_simd__
#define SUM4(xa, xb, xc, xd, wa, wb, wc, wd) MADD(xd, wd, MADD(xc, wc, MADD(xb, wb, wasm_f32x4_mul(xa, wa))))
#else
#define SUM4(xa, xb, xc, xd, wa, wb, wc, wd) \
  wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(xa, wa), wasm_f32x4_mul(xb, wb)), \
                 wasm_f32x4_add(wasm_f32x4_mul(xc, wc), wasm_f32x4_mul(xd, wd)))
#endif

enum { EP_LINEAR = 0, EP_RELU6 = 1, EP_RESIDUAL = 2 };

/* Bias, epilogue and store of one row's 8 channels (nw of them valid). */
static void finish(v128_t lo, v128_t hi, float *out, const float *res, size_t nw, int ep) {
  if (ep == EP_RELU6) {
    const v128_t z = wasm_f32x4_splat(0.0f), six = wasm_f32x4_splat(6.0f);
    lo = wasm_f32x4_pmin(wasm_f32x4_pmax(lo, z), six);
    hi = wasm_f32x4_pmin(wasm_f32x4_pmax(hi, z), six);
  }
  if (nw == 8) {
    if (ep == EP_RESIDUAL) {
      lo = wasm_f32x4_add(lo, wasm_v128_load(res));
      hi = wasm_f32x4_add(hi, wasm_v128_load(res + 4));
    }
    wasm_v128_store(out, lo);
    wasm_v128_store(out + 4, hi);
    return;
  }
  float t[8];
  wasm_v128_store(t, lo);
  wasm_v128_store(t + 4, hi);
  for (size_t j = 0; j < nw; j++) out[j] = ep == EP_RESIDUAL ? t[j] + res[j] : t[j];
}

/* The GEMM microkernels: G packed groups of 4 rows (xs, xs + gsz, ...) x 8 channels, acc[2m + h] for row m and
 * channel half h, or one row (the first of one group). Per 4 k steps: the 8 weight vectors, then row by row its
 * 4 splatted activations and into each of its two accumulators a product then three madds (SUM4) added to the
 * accumulator, one load and one store. Every row sees the same operations whatever the kernel (so the same
 * bits); more rows per kernel share each weight load (12 rows measured 10% faster than 4 in the network). */
#define GEMM_ROW(q, m, am)                                                                                   \
  {                                                                                                          \
    v128_t xa = VL(q + (m)*4), xb = VL(q + 16 + (m)*4), xc = VL(q + 32 + (m)*4), xd = VL(q + 48 + (m)*4);     \
    VS(acc + 2 * (am), wasm_f32x4_add(VL(acc + 2 * (am)), SUM4(xa, xb, xc, xd, a0, b0, c0, d0)));            \
    VS(acc + 2 * (am) + 1, wasm_f32x4_add(VL(acc + 2 * (am) + 1), SUM4(xa, xb, xc, xd, a1, b1, c1, d1)));    \
  }
#define GEMM_GROUP(q, g) GEMM_ROW(q, 0, 4 * (g)) GEMM_ROW(q, 1, 4 * (g) + 1) GEMM_ROW(q, 2, 4 * (g) + 2) GEMM_ROW(q, 3, 4 * (g) + 3)
/* 4 k steps; 8 per loop iteration (every layer's k is a multiple of 8, the stem's im2col rows 28), which halves
 * the loop's back-edges and with them the epoch checks, each of which sends the loop's vectors to the stack. */
#define GEMM_STEP(K4, ...)                                                                                  \
  {                                                                                                          \
    const size_t kq = (K4);                                                                                  \
    const float *wq = ALIGN_DOWN(w + kq * 8, 128);                                                           \
    const float *xq = ALIGN_DOWN(xs + kq * 16, 256);                                                         \
    v128_t a0 = VL(wq), a1 = VL(wq + 4), b0 = VL(wq + 8), b1 = VL(wq + 12);                                  \
    v128_t c0 = VL(wq + 16), c1 = VL(wq + 20), d0 = VL(wq + 24), d1 = VL(wq + 28);                           \
    __VA_ARGS__                                                                                              \
  }
#define GEMM_KERNEL(name, ROWS, BODY)                                                                        \
  static void name(const float *xs, size_t gsz, const float *w, size_t k, const float *b, v128_t *acc) {     \
    (void)gsz;                                                                                               \
    v128_t bl = wasm_v128_load(b), bh = wasm_v128_load(b + 4);                                               \
    for (int m = 0; m < (ROWS); m++) {                                                                       \
      VS(acc + 2 * m, bl);                                                                                   \
      VS(acc + 2 * m + 1, bh);                                                                               \
    }                                                                                                        \
    size_t kk = 0;                                                                                           \
    _Pragma("clang loop unroll(disable)") for (; kk + 8 <= k; kk += 8) {                                     \
      GEMM_STEP(kk, BODY)                                                                                    \
      GEMM_STEP(kk + 4, BODY)                                                                                \
    }                                                                                                        \
    if (kk < k) GEMM_STEP(kk, BODY)                                                                          \
  }
GEMM_KERNEL(micro_row, 1, GEMM_ROW(xq, 0, 0))
GEMM_KERNEL(micro4, 4, GEMM_GROUP(xq, 0))
GEMM_KERNEL(micro8, 8, const float *yq = ALIGN_DOWN(xs + gsz + kq * 16, 256); GEMM_GROUP(xq, 0) GEMM_GROUP(yq, 1))
GEMM_KERNEL(micro12, 12, const float *yq = ALIGN_DOWN(xs + gsz + kq * 16, 256);
            const float *zq = ALIGN_DOWN(xs + 2 * gsz + kq * 16, 256);
            GEMM_GROUP(xq, 0) GEMM_GROUP(yq, 1) GEMM_GROUP(zq, 2))

/* One row against 8 panels at once (the classifier, M = 1, whose 5 MB of weights are the whole cost): eight weight
 * streams in flight, each splatted activation vector loaded once for the eight; acc[2q + h] for panel q, channel
 * half h. Per panel the same operations as micro_row (the same bits). 4 panels measured between 1 and 8. */
static void micro_row_p8(const float *xs, const float *w, size_t k, const float *b, v128_t *acc) {
  for (int q = 0; q < 8; q++) {
    VS(acc + 2 * q, wasm_v128_load(b + 8 * q));
    VS(acc + 2 * q + 1, wasm_v128_load(b + 8 * q + 4));
  }
#pragma clang loop unroll(disable)
  for (size_t k8 = 0; k8 < k; k8 += 8)
#pragma clang loop unroll(full)
  for (size_t kh = 0; kh < 8; kh += 4) {
    const size_t kk = k8 + kh;
    if (kk >= k) break;
    const float *xq = ALIGN_DOWN(xs + kk * 16, 256);
    v128_t xa = VL(xq), xb = VL(xq + 16), xc = VL(xq + 32), xd = VL(xq + 48);
#pragma clang loop unroll(full)
    for (int q = 0; q < 8; q++) {
      const float *wq = ALIGN_DOWN(w + q * k * 8 + kk * 8, 128);
      v128_t a0 = VL(wq), a1 = VL(wq + 4), b0 = VL(wq + 8), b1 = VL(wq + 12);
      v128_t c0 = VL(wq + 16), c1 = VL(wq + 20), d0 = VL(wq + 24), d1 = VL(wq + 28);
      VS(acc + 2 * q, wasm_f32x4_add(VL(acc + 2 * q), SUM4(xa, xb, xc, xd, a0, b0, c0, d0)));
      VS(acc + 2 * q + 1, wasm_f32x4_add(VL(acc + 2 * q + 1), SUM4(xa, xb, xc, xd, a1, b1, c1, d1)));
    }
  }
}

/* One tile of `ng` row groups (the last has `last_rv` valid rows), packed as above, k a multiple of 4,
 * against `panels` weight panels (k * 8 floats each, 128-byte aligned) and the bias padded to whole panels:
 * out[m][n] (row stride ldo, n < cout) = ep(acc + b[n]), res[m][n] added for EP_RESIDUAL (stride ldo; it may
 * be out itself: each value is read just before it is written). Per panel the groups three at a time, then
 * the rest by the smallest kernel that covers them; a tile of one row takes its panels eight at a time. */
void effnet_f32_tile(const float *tile, size_t ng, size_t last_rv, size_t k, const float *w, size_t panels,
                     const float *b, float *out, size_t ldo, const float *res, size_t cout, int ep) {
  v128_t acc[24];
  size_t gsz = k * 16, rows = 4 * (ng - 1) + last_rv, p = 0;
  if (rows == 1)
    for (; p + 8 <= panels; p += 8) {
      micro_row_p8(tile, w + p * k * 8, k, b + 8 * p, acc);
      for (size_t q = 0; q < 8; q++) {
        size_t n0 = 8 * (p + q), nw = cout - n0 < 8 ? cout - n0 : 8;
        finish(VL(acc + 2 * q), VL(acc + 2 * q + 1), out + n0, res ? res + n0 : res, nw, ep);
      }
    }
  for (; p < panels; p++) {
    size_t n0 = 8 * p, nw = cout - n0 < 8 ? cout - n0 : 8;
    const float *wp = w + p * k * 8;
    for (size_t r0 = 0; r0 < rows;) {
      size_t left = rows - r0, rv;
      const float *xs = tile + r0 / 4 * gsz;
      if (left >= 9) {
        rv = left < 12 ? left : 12;
        micro12(xs, gsz, wp, k, b + n0, acc);
      } else if (left >= 5) {
        rv = left;
        micro8(xs, gsz, wp, k, b + n0, acc);
      } else if (left >= 2) {
        rv = left;
        micro4(xs, gsz, wp, k, b + n0, acc);
      } else {
        rv = 1;
        micro_row(xs, gsz, wp, k, b + n0, acc);
      }
      for (size_t m = 0; m < rv; m++) {
        float *o = out + (r0 + m) * ldo + n0;
        const float *r = res ? res + (r0 + m) * ldo + n0 : res;
        finish(VL(acc + 2 * m), VL(acc + 2 * m + 1), o, r, nw, ep);
      }
      r0 += rv;
    }
  }
}

/* One output pixel of a depthwise conv (+ bias + ReLU6) whose window keeps NY x NX taps of a KxK kernel (NY, NX,
 * K constants in every copy): `in` points at its first tap (input row stride rs floats), `w` at that tap's weights
 * in [K][K][c], out at the pixel's c channels (c % 8 == 0). Per channel vector each window row's NX taps are one
 * chain (a product then madds) added to the sum, which stays in a register from the bias to ReLU6; a volatile
 * store of the sum after each row places that row's arithmetic there for Cranelift (which would otherwise put
 * every load of the pixel first). Plain build: the products and adds in the same order, so it is not
 * bit-identical to the Rust kernels' balanced trees either (within 1e-3 of ONNX Runtime is the contract; the
 * kernel tests use a tolerance).
 * The channel loop walks pointers (p, wq, bq, op) and every tap is an offset kx * c from one of them: where c is a
 * constant (the interior's specialised copies below) LLVM puts the offsets in the loads' offset fields and
 * Cranelift folds them into the x64 addressing, one address register per window row and none per tap; where it
 * is not (the border pixels), each load takes an add. */
#define DW_ROW(ip, wp)                                                                                      \
  ({                                                                                                        \
    v128_t u_ = wasm_f32x4_mul(VL(ip), VL(wp));                                                             \
    for (size_t kx = 1; kx < NX; kx++) u_ = MADD(VL((ip) + kx * c), VL((wp) + kx * c), u_);                 \
    u_;                                                                                                     \
  })
#define DW_VEC(j)                                                                                     \
  {                                                                                                   \
    const float *r = p + 4 * (j), *wr = wq + 4 * (j);                                                 \
    v128_t t = wasm_f32x4_add(VL(bq + 4 * (j)), DW_ROW(r, wr));                                       \
    for (size_t ky = 1; ky < NY; ky++) {                                                              \
      VS(sink + (j), t);                                                                              \
      r += rs;                                                                                        \
      wr += K * c;                                                                                    \
      t = wasm_f32x4_add(t, DW_ROW(r, wr));                                                           \
    }                                                                                                 \
    VS(op + 4 * (j), wasm_f32x4_pmin(wasm_f32x4_pmax(t, z), six));                                     \
  }
static inline __attribute__((always_inline)) void dw_px(const float *in, size_t rs, size_t c, size_t K,
                                                        const size_t NY, const size_t NX, const float *w,
                                                        const float *b, float *out) {
  const v128_t z = wasm_f32x4_splat(0.0f), six = wasm_f32x4_splat(6.0f);
  v128_t sink[4];
  const float *p = in, *end = in + c, *wq = w, *bq = b;
  float *op = out;
#pragma clang loop unroll(disable)
  for (; p + 16 <= end; p += 16, wq += 16, bq += 16, op += 16) { /* 16 channels: half the epoch checks */
    DW_VEC(0) DW_VEC(1) DW_VEC(2) DW_VEC(3)
  }
  if (p < end) {
    DW_VEC(0) DW_VEC(1)
  }
}
#undef DW_VEC
#undef DW_ROW

/* `n` consecutive output pixels of one row whose windows lie inside the input (K = 3 or 5): pixel x's window
 * starts at in + x * stride * c; out holds the n pixels' c channels. */
static inline __attribute__((always_inline)) void dw_run(const float *in, size_t rs, size_t c, size_t K,
                                                         size_t stride, size_t n, const float *w, const float *b,
                                                         float *out) {
#pragma clang loop unroll(disable)
  for (size_t x = 0; x < n; x++) dw_px(in + x * stride * c, rs, c, K, K, K, w, b, out + x * c);
}

/* Two pixels (x, x + 1) per iteration: each weight vector loaded once for both, and each input vector once
 * (the second window starts S * c further on: K + S input vectors per window row instead of 2K). Per pixel
 * the same operations in the same order as dw_run. U channel vectors per loop iteration (c % (4 U) == 0): under
 * epoch interruption every back-edge costs a check and the reloads it forces (U = 4: depthwise 3.6 -> 3.3 ms
 * with the border loops below). */
static inline __attribute__((always_inline)) void dw_run2(const float *in, size_t rs, size_t c, size_t K,
                                                          size_t S, size_t n, const float *w, const float *b,
                                                          float *out, const size_t U) {
  const v128_t z = wasm_f32x4_splat(0.0f), six = wasm_f32x4_splat(6.0f);
  v128_t sink[2];
  size_t x = 0;
#pragma clang loop unroll(disable)
  for (; x + 2 <= n; x += 2) {
    const float *p = in + x * S * c, *end = p + c, *wq = w, *bq = b;
    float *op = out + x * c;
#pragma clang loop unroll(disable)
    for (; p < end; p += 4 * U, wq += 4 * U, bq += 4 * U, op += 4 * U)
#pragma clang loop unroll(full)
    for (size_t u = 0; u < U; u++) {
      const float *r = p + 4 * u, *wr = wq + 4 * u;
      v128_t bv = VL(bq + 4 * u), t0 = bv, t1 = bv;
      for (size_t ky = 0; ky < K; ky++) {
        v128_t v[7], wv[5];
        for (size_t j = 0; j < K + S; j++) v[j] = VL(r + j * c);
        for (size_t kx = 0; kx < K; kx++) wv[kx] = VL(wr + kx * c);
        v128_t u0 = wasm_f32x4_mul(v[0], wv[0]), u1 = wasm_f32x4_mul(v[S], wv[0]);
        for (size_t kx = 1; kx < K; kx++) {
          u0 = MADD(v[kx], wv[kx], u0);
          u1 = MADD(v[S + kx], wv[kx], u1);
        }
        t0 = wasm_f32x4_add(t0, u0);
        t1 = wasm_f32x4_add(t1, u1);
        if (ky + 1 < K) {
          VS(sink, t0);
          VS(sink + 1, t1);
        }
        r += rs;
        wr += K * c;
      }
      VS(op + 4 * u, wasm_f32x4_pmin(wasm_f32x4_pmax(t0, z), six));
      VS(op + 4 * u + c, wasm_f32x4_pmin(wasm_f32x4_pmax(t1, z), six));
    }
  }
  if (x < n) dw_run(in + x * S * c, rs, c, K, S, n - x, w, b, out + x * c);
}

/* EfficientNet-Lite0's channel counts and both strides as constants, so that every tap's offset folds into its
 * load; each count a multiple of 16, so dw_run2 takes 4 channel vectors per loop iteration. */
#define DW_CASES(K, S) X(K, S, 32) X(K, S, 96) X(K, S, 144) X(K, S, 240) X(K, S, 480) X(K, S, 672) X(K, S, 1152)
#define DW_ALL DW_CASES(3, 1) DW_CASES(3, 2) DW_CASES(5, 1) DW_CASES(5, 2)
#define X(K, S, C)                                                                                     \
  static void dw##K##_##S##_##C(const float *in, size_t rs, size_t n, const float *w, const float *b,   \
                                float *out) {                                                          \
    _Static_assert(C % 16 == 0, "dw_run2 takes 16 channels per iteration");                            \
    dw_run2(in, rs, C, K, S, n, w, b, out, 4);                                                         \
  }
DW_ALL
#undef X

void effnet_f32_dw_run(const float *in, size_t rs, size_t c, size_t k, size_t stride, size_t n, const float *w,
                       const float *b, float *out) {
#define X(K, S, C) \
  if (k == K && stride == S && c == C) return dw##K##_##S##_##C(in, rs, n, w, b, out);
  DW_ALL
#undef X
  if (k == 3)
    dw_run(in, rs, c, 3, stride, n, w, b, out);
  else
    dw_run(in, rs, c, 5, stride, n, w, b, out);
}

/* The border pixels' windows, 2..5 x 2..5 taps, one copy of dw_px each (c not a constant). Against one pass over
 * all channels per tap (below: a load and a store of the output row per tap), a third of the memory operations
 * per multiply-add: the border pixels are 24% of the depthwise multiply-adds but took 40% of its time. */
#define BPX_CASES Y(2) Y(3) Y(4) Y(5)
#define Y(NY) X(NY, 2) X(NY, 3) X(NY, 4) X(NY, 5)
#define X(NY, NX)                                                                                     \
  static void dw_px_##NY##_##NX(const float *in, size_t rs, size_t c, size_t K, const float *w,         \
                                const float *b, float *out) {                                          \
    dw_px(in, rs, c, K, NY, NX, w, b, out);                                                            \
  }
BPX_CASES
#undef X

/* One border pixel of a depthwise conv: the window's taps ky0..ky1 x kx0..kx1 lie inside the input (in points at
 * tap (ky0, kx0), input row stride rs floats; w at tap (0, 0) of [K][K][c]), c % 8 == 0. Windows of 2..5 x 2..5
 * taps take dw_px; any other (inputs smaller than the kernel) the output row as the accumulator: bias, then tap
 * after tap over all channels (a long unit-stride loop per tap, not a loop per tap per channel vector), then
 * ReLU6. */
void effnet_f32_dw_border(const float *in, size_t rs, size_t c, size_t K, size_t ky0, size_t ky1, size_t kx0,
                          size_t kx1, const float *w, const float *b, float *out) {
  const size_t ny = ky1 - ky0, nx = kx1 - kx0;
  const float *w0 = w + (ky0 * K + kx0) * c;
#define X(NY, NX) \
  if (ny == NY && nx == NX) return dw_px_##NY##_##NX(in, rs, c, K, w0, b, out);
  BPX_CASES
#undef X
#undef Y
#pragma clang loop unroll(disable)
  for (size_t ch = 0; ch < c; ch += 8) {
    wasm_v128_store(out + ch, wasm_v128_load(b + ch));
    wasm_v128_store(out + ch + 4, wasm_v128_load(b + ch + 4));
  }
  for (size_t ky = ky0; ky < ky1; ky++)
    for (size_t kx = kx0; kx < kx1; kx++) {
      const float *ip = in + (ky - ky0) * rs + (kx - kx0) * c, *wp = w + (ky * K + kx) * c;
      size_t ch = 0;
#pragma clang loop unroll(disable)
      for (; ch + 32 <= c; ch += 32) {
#pragma clang loop unroll(full)
        for (size_t j = 0; j < 32; j += 4) VS(out + ch + j, MADD(VL(ip + ch + j), VL(wp + ch + j), VL(out + ch + j)));
      }
      if (ch + 16 <= c) {
#pragma clang loop unroll(full)
        for (size_t j = 0; j < 16; j += 4) VS(out + ch + j, MADD(VL(ip + ch + j), VL(wp + ch + j), VL(out + ch + j)));
        ch += 16;
      }
      if (ch < c) {
        VS(out + ch, MADD(VL(ip + ch), VL(wp + ch), VL(out + ch)));
        VS(out + ch + 4, MADD(VL(ip + ch + 4), VL(wp + ch + 4), VL(out + ch + 4)));
      }
    }
  const v128_t z = wasm_f32x4_splat(0.0f), six = wasm_f32x4_splat(6.0f);
#pragma clang loop unroll(disable)
  for (size_t ch = 0; ch < c; ch += 4)
    wasm_v128_store(out + ch, wasm_f32x4_pmin(wasm_f32x4_pmax(wasm_v128_load(out + ch), z), six));
}

/* The stem: 3x3 stride-2 conv of the HWC image (3 channels) to 32 channels, + bias + ReLU6, read straight from the
 * image (no im2col rows, no packed tile). Weights are the stem GEMM's panels ([4][28][8]: the im2col column
 * t = (ky * 3 + kx) * 3 + c of output channel 8p + q at p * 224 + t * 8 + q), the bias padded to 32. One output
 * pixel per iteration, its 32 channels (8 vectors) as the accumulators in the output row itself. Each window row's
 * 9 values are three vector loads, each value splatted by a shuffle; the 27 taps in groups of 6 (5 groups): per
 * group and channel vector a product then madds, added to the accumulator (the bias for the first group, ReLU6
 * after the last), one load and one store: the store places the arithmetic there for Cranelift, which otherwise
 * puts every weight load of the pixel first; 6 taps keep 6 splats and 6 weights in registers. */
#define VLU(p) (*(const volatile v128u_t *)(const void *)(p))
typedef v128_t v128u_t __attribute__((__aligned__(4)));
#define SPLAT(v, l) wasm_i32x4_shuffle((v), (v), (l), (l), (l), (l))
/* Lane l of v in every lane (l a constant once the loops are unrolled). */
static inline __attribute__((always_inline)) v128_t splat_lane(v128_t v, int l) {
  return l == 0 ? SPLAT(v, 0) : l == 1 ? SPLAT(v, 1) : l == 2 ? SPLAT(v, 2) : SPLAT(v, 3);
}

static inline __attribute__((always_inline)) void stem_px(const float *ip, size_t rs, const float *w, const float *b,
                                                          float *op) {
  const v128_t z = wasm_f32x4_splat(0.0f), six = wasm_f32x4_splat(6.0f);
  v128_t v[9];
#pragma clang loop unroll(full)
  for (int t0 = 0; t0 < 27; t0 += 6) {
    int t1 = t0 + 6 < 27 ? t0 + 6 : 27;
    /* the window rows this group reaches, loaded when first needed */
#pragma clang loop unroll(full)
    for (int ky = t0 / 9; ky <= (t1 - 1) / 9; ky++)
      if (ky * 9 >= t0 || t0 == 0) {
        const float *r = ip + ky * rs;
        v[3 * ky] = VLU(r);
        v[3 * ky + 1] = VLU(r + 4);
        v[3 * ky + 2] = VLU(r + 8);
      }
#pragma clang loop unroll(full)
    for (int j = 0; j < 8; j++) {
      const float *wq = w + (j >> 1) * 224 + (j & 1) * 4;
      v128_t t = wasm_f32x4_mul(VL(wq + t0 * 8), splat_lane(v[3 * (t0 / 9) + t0 % 9 / 4], t0 % 9 % 4));
#pragma clang loop unroll(full)
      for (int u = t0 + 1; u < t1; u++) t = MADD(VL(wq + u * 8), splat_lane(v[3 * (u / 9) + u % 9 / 4], u % 9 % 4), t);
      t = wasm_f32x4_add(VL((t0 == 0 ? b : op) + 4 * j), t);
      if (t1 == 27) t = wasm_f32x4_pmin(wasm_f32x4_pmax(t, z), six);
      VS(op + 4 * j, t);
    }
  }
}

/* The whole stem on an h x w x 3 image to oh x ow x 32 (TensorFlow SAME: pad_top / pad_left before, the rest
 * after). A pixel whose window (and the three values read past its last tap) lies inside the image reads it in
 * place; any other gets its window copied into a zero-padded 3 x 12 block first. */
void effnet_f32_stem(const float *in, size_t h, size_t w, size_t pt, size_t pl, size_t oh, size_t ow,
                     const float *wts, const float *b, float *out) {
  size_t rs = w * 3;
#pragma clang loop unroll(disable)
  for (size_t oy = 0; oy < oh; oy++) {
    ptrdiff_t iy0 = (ptrdiff_t)(oy * 2) - (ptrdiff_t)pt;
    int rows_in = iy0 >= 0 && iy0 + 3 <= (ptrdiff_t)h;
#pragma clang loop unroll(disable)
    for (size_t ox = 0; ox < ow; ox++) {
      ptrdiff_t ix0 = (ptrdiff_t)(ox * 2) - (ptrdiff_t)pl;
      float *op = out + (oy * ow + ox) * 32;
      if (rows_in && ix0 >= 0 && ix0 + 4 <= (ptrdiff_t)w) {
        stem_px(in + (size_t)iy0 * rs + (size_t)ix0 * 3, rs, wts, b, op);
        continue;
      }
      float win[36];
      for (int i = 0; i < 36; i++) win[i] = 0.0f;
      for (int ky = 0; ky < 3; ky++) {
        ptrdiff_t iy = iy0 + ky;
        if (iy < 0 || iy >= (ptrdiff_t)h) continue;
        for (int kx = 0; kx < 3; kx++) {
          ptrdiff_t ix = ix0 + kx;
          if (ix < 0 || ix >= (ptrdiff_t)w) continue;
          for (int c = 0; c < 3; c++) win[ky * 12 + kx * 3 + c] = in[((size_t)iy * w + (size_t)ix) * 3 + c];
        }
      }
      stem_px(win, 12, wts, b, op);
    }
  }
}
