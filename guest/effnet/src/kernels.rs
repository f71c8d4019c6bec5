//! The compute kernels: a packed, register-blocked GEMM for 1x1 convolutions (and the stem via im2col,
//! and the classifier), and the depthwise convolution. Activations are NHWC: one pixel's channels are
//! contiguous. Two implementations of the inner loops: wasm simd128 (`f32x4`) when the crate is built with
//! `-C target-feature=+simd128`, plain scalar Rust otherwise (the scalar wasm build and native tests).

/// Output channels per packed panel (the GEMM microkernel's width).
pub const NR: usize = 8;
/// Pixels per GEMM microkernel call.
pub const MR: usize = 4;

/// Weights of a 1x1 convolution / dense layer `[cin][cout]` in panels of `NR` output channels: panel `p`
/// holds `cin` rows of `NR` values (zero padded past `cout`), so the microkernel reads its weights with unit
/// stride. Packed at load time from an EWT file, or used in place from a packed image (`image`), where
/// `edgewasm.models._pack` laid them out the same way at install time.
#[derive(Debug, Clone)]
pub struct PackedGemm {
    pub cin: usize,
    pub cout: usize,
    panels: usize,
    w: Floats,
    b: Floats,
}

/// f32 storage: owned and aligned, or borrowed from a packed image for the program's life.
#[derive(Debug, Clone)]
pub enum Floats {
    Owned(Aligned),
    Mapped(&'static [f32]),
}

impl Floats {
    pub fn as_slice(&self) -> &[f32] {
        match self {
            Floats::Owned(a) => a.as_slice(),
            Floats::Mapped(s) => s,
        }
    }
    fn owned(&mut self) -> &mut [f32] {
        match self {
            Floats::Owned(a) => a.as_mut_slice(),
            Floats::Mapped(_) => panic!("mapped weights are read-only"),
        }
    }
}

/// Bytes to which packed weights and the splatted activation tile are aligned: the SIMD microkernel
/// masks its pointers' low bits so that LLVM folds the per-load offsets into the loads (see `micro_mem`).
pub const ALIGN: usize = 256;

/// `len` f32s whose first element is `ALIGN`-byte aligned (over-allocated, offset into the Vec).
#[derive(Debug, Clone)]
pub struct Aligned {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Aligned {
        let buf = vec![0.0f32; len + ALIGN / 4];
        let off = align_offset(buf.as_ptr());
        Aligned { buf, off, len }
    }
    pub fn as_slice(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Floats to skip from `p` to the next `ALIGN`-byte boundary.
fn align_offset(p: *const f32) -> usize {
    let mis = p as usize % ALIGN;
    if mis == 0 {
        0
    } else {
        (ALIGN - mis) / 4
    }
}

impl PackedGemm {
    /// Packs `w` (`cin * cout`, row-major `[cin][cout]`) and `b` (`cout`).
    pub fn new(w: &[f32], b: &[f32], cin: usize, cout: usize) -> PackedGemm {
        assert_eq!(w.len(), cin * cout);
        let mut g = PackedGemm::zeroed(cin, cout);
        g.set_rows(0, w);
        g.set_bias(b);
        g
    }

    /// All-zero weights and bias for `cin x cout`, to be filled with `set_rows` and `set_bias` (so a
    /// loader can pack a tensor chunk by chunk as it reads it; rows never set stay zero).
    pub fn zeroed(cin: usize, cout: usize) -> PackedGemm {
        let panels = (cout + NR - 1) / NR;
        PackedGemm {
            cin,
            cout,
            panels,
            w: Floats::Owned(Aligned::zeroed(panels * cin * NR)),
            b: Floats::Owned(Aligned::zeroed(panels * NR)),
        }
    }

    /// Weights already packed (`panels * cin * NR` values, `ALIGN`-aligned) and the bias padded to whole
    /// panels, used in place; None when the lengths or the alignment are not what the kernels need.
    pub fn mapped(cin: usize, cout: usize, w: &'static [f32], b: &'static [f32]) -> Option<PackedGemm> {
        let panels = (cout + NR - 1) / NR;
        if cin == 0 || cout == 0 || w.len() != panels * cin * NR || b.len() != panels * NR {
            return None;
        }
        if w.as_ptr() as usize % ALIGN != 0 {
            return None;
        }
        Some(PackedGemm {
            cin,
            cout,
            panels,
            w: Floats::Mapped(w),
            b: Floats::Mapped(b),
        })
    }

    /// Packs consecutive rows `k0..` of the `[cin][cout]` weights (`rows.len()` a multiple of `cout`).
    pub fn set_rows(&mut self, k0: usize, rows: &[f32]) {
        let (cin, cout) = (self.cin, self.cout);
        assert_eq!(rows.len() % cout, 0);
        assert!(k0 + rows.len() / cout <= cin);
        let full = cout / NR;
        let w = self.w.owned();
        for (dk, row) in rows.chunks_exact(cout).enumerate() {
            let k = k0 + dk;
            for p in 0..full {
                let dst = (p * cin + k) * NR;
                w[dst..dst + NR].copy_from_slice(&row[p * NR..p * NR + NR]);
            }
            let tail = cout - full * NR;
            if tail > 0 {
                let dst = (full * cin + k) * NR;
                w[dst..dst + tail].copy_from_slice(&row[full * NR..]);
            }
        }
    }

    /// Sets the bias (`cout` values).
    pub fn set_bias(&mut self, b: &[f32]) {
        assert_eq!(b.len(), self.cout);
        let cout = self.cout;
        self.b.owned()[..cout].copy_from_slice(b);
    }
}

/// How the GEMM finishes each output value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// `acc + bias`
    Linear,
    /// `min(max(acc + bias, 0), 6)`
    Relu6,
    /// `acc + bias + residual[same index]` (the MBConv skip connection, fused into the project conv)
    Residual,
    /// `acc + bias + out[same index]`: `Residual` with the skip input already in `out`, which the result
    /// overwrites (no second block-sized buffer; each value is read once, just before it is written).
    ResidualInPlace,
}

/// `out[m][n] = epilogue(sum_k a[m][k] * w[k][n] + b[n])` for `m < rows`; `a` is `rows x cin`,
/// `out` (and `residual`) are `rows x cout`, all row-major (NHWC pixels x channels). `scratch` holds the
/// packed tile of `a` in the SIMD build; it grows once to its largest size and is then reused.
pub fn gemm(
    a: &[f32],
    rows: usize,
    g: &PackedGemm,
    out: &mut [f32],
    residual: Option<&[f32]>,
    ep: Epilogue,
    scratch: &mut Vec<f32>,
) {
    let (cin, cout) = (g.cin, g.cout);
    assert!(a.len() >= rows * cin, "gemm: input too short");
    assert!(out.len() >= rows * cout, "gemm: output too short");
    if ep == Epilogue::Residual {
        assert!(
            residual.map_or(false, |r| r.len() >= rows * cout),
            "gemm: residual missing or too short"
        );
    }
    // In place: the kernels run the `Residual` epilogue reading the skip input from `out` itself (every output
    // value is read by the `finish` that then writes it, and by nothing else).
    // One raw pointer into `out` for every write (and the in-place residual's reads).
    let out_ptr = out.as_mut_ptr();
    let (res_ptr, ep) = if ep == Epilogue::ResidualInPlace {
        assert!(residual.is_none(), "gemm: ResidualInPlace reads the residual from out");
        (out_ptr as *const f32, Epilogue::Residual)
    } else {
        (residual.map_or(core::ptr::null(), |r| r.as_ptr()), ep)
    };
    let w = g.w.as_slice();
    // The SIMD build's main kernel reads a pre-splatted tile and needs whole k steps of 4 and aligned data
    // (every EfficientNet-Lite0 layer: the stem's im2col rows are padded to a multiple of 4).
    let splat = imp::PACK_A && cin % 4 == 0 && w.as_ptr() as usize % ALIGN == 0;
    // Rows per tile: the packed tile of `a` (mc * cin floats, 4x that splatted) stays in L2 while every
    // weight panel streams over it.
    let per_row = if splat { cin * MR } else { cin };
    let mc = ((TILE_FLOATS / per_row.max(1)) / MR * MR).max(MR);
    if imp::PACK_A && scratch.len() < mc * per_row + ALIGN / 4 {
        scratch.resize(mc * per_row + ALIGN / 4, 0.0);
    }
    let so = if imp::PACK_A { align_offset(scratch.as_ptr()) } else { 0 };
    let scratch = &mut scratch[so..];
    let mut m0 = 0;
    while m0 < rows {
        let m1 = (m0 + mc).min(rows);
        if imp::PACK_A {
            let groups = (m1 - m0 + MR - 1) / MR;
            let gsz = per_row * MR;
            for gi in 0..groups {
                let r0 = m0 + gi * MR;
                let rv = MR.min(m1 - r0);
                let dst = &mut scratch[gi * gsz..(gi + 1) * gsz];
                if splat {
                    // SAFETY: rows r0..r0+rv are inside `a`; dst holds cin * 16 floats.
                    unsafe { imp::pack_group_splat(a.as_ptr().add(r0 * cin), cin, rv, dst.as_mut_ptr()) };
                } else if cin % 4 == 0 {
                    // SAFETY: rows r0..r0+rv are inside `a`; dst holds cin * MR floats.
                    unsafe { imp::pack_group(a.as_ptr().add(r0 * cin), cin, rv, dst.as_mut_ptr()) };
                } else {
                    // k-major, dst[k][m], zero rows past rv.
                    for m in 0..MR {
                        for k in 0..cin {
                            dst[k * MR + m] = if m < rv { a[(r0 + m) * cin + k] } else { 0.0 };
                        }
                    }
                }
            }
            // The SIMD builds: the C microkernels (relaxed madd in the relaxed build) over the same tile and panels.
            #[cfg(effnet_f32_gemm_c)]
            {
                if splat {
                    let last_rv = m1 - m0 - (groups - 1) * MR;
                    let r = if res_ptr.is_null() { res_ptr } else { unsafe { res_ptr.add(m0 * cout) } };
                    let e = match ep {
                        Epilogue::Linear => 0,
                        Epilogue::Relu6 => 1,
                        _ => 2,
                    };
                    // SAFETY: as for micro_mem below: rows m0..m1 of out/residual, the whole packed tile.
                    unsafe {
                        f32c::effnet_f32_tile(
                            scratch.as_ptr(),
                            groups,
                            last_rv,
                            cin,
                            w.as_ptr(),
                            g.panels,
                            g.b.as_slice().as_ptr(),
                            out_ptr.add(m0 * cout),
                            cout,
                            r,
                            cout,
                            e,
                        )
                    };
                    m0 = m1;
                    continue;
                }
            }
            for p in 0..g.panels {
                let n0 = p * NR;
                let nw = NR.min(cout - n0);
                let wp = &w[p * cin * NR..(p + 1) * cin * NR];
                let bp = &g.b.as_slice()[p * NR..(p + 1) * NR];
                for gi in 0..groups {
                    let i = m0 + gi * MR;
                    let rv = MR.min(m1 - i);
                    // SAFETY: rows i..i+rv <= rows and columns n0..n0+nw <= cout are inside `out`/`residual`;
                    // the packed group holds per_row * MR values; `splat` checked the alignment micro_mem needs.
                    unsafe {
                        let r = if res_ptr.is_null() { res_ptr } else { res_ptr.add(i * cout + n0) };
                        let ap = scratch.as_ptr().add(gi * gsz);
                        let o = out_ptr.add(i * cout + n0);
                        if splat {
                            imp::micro_mem(ap, cin, wp.as_ptr(), bp.as_ptr(), o, cout, r, nw, rv, ep);
                        } else {
                            imp::micro_4p(ap, cin, wp.as_ptr(), bp.as_ptr(), o, cout, r, nw, rv, ep);
                        }
                    }
                }
            }
            m0 = m1;
            continue;
        }
        for p in 0..g.panels {
            let n0 = p * NR;
            let nw = NR.min(cout - n0);
            let wp = &w[p * cin * NR..(p + 1) * cin * NR];
            let bp = &g.b.as_slice()[p * NR..(p + 1) * NR];
            let mut i = m0;
            // SAFETY: all indices are within the asserted lengths: rows i..i+MR < rows, columns n0..n0+nw <= cout.
            unsafe {
                while i + MR <= m1 {
                    let r = if res_ptr.is_null() {
                        res_ptr
                    } else {
                        res_ptr.add(i * cout + n0)
                    };
                    imp::micro_4(
                        a.as_ptr().add(i * cin),
                        cin,
                        wp.as_ptr(),
                        bp.as_ptr(),
                        out_ptr.add(i * cout + n0),
                        cout,
                        r,
                        nw,
                        ep,
                    );
                    i += MR;
                }
                while i < m1 {
                    let r = if res_ptr.is_null() {
                        res_ptr
                    } else {
                        res_ptr.add(i * cout + n0)
                    };
                    imp::micro_1(
                        a.as_ptr().add(i * cin),
                        cin,
                        wp.as_ptr(),
                        bp.as_ptr(),
                        out_ptr.add(i * cout + n0),
                        r,
                        nw,
                        ep,
                    );
                    i += 1;
                }
            }
        }
        m0 = m1;
    }
}

/// csrc/f32.c (SIMD builds): the FP32 GEMM tile (on relaxed madd in the relaxed build) and the depthwise interior.
#[cfg(effnet_f32_c)]
mod f32c {
    #[link(name = "effnet_c", kind = "static")]
    extern "C" {
        #[cfg(effnet_f32_gemm_c)]
        #[allow(clippy::too_many_arguments)]
        pub fn effnet_f32_tile(
            tile: *const f32,
            ng: usize,
            last_rv: usize,
            k: usize,
            w: *const f32,
            panels: usize,
            b: *const f32,
            out: *mut f32,
            ldo: usize,
            res: *const f32,
            cout: usize,
            ep: i32,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn effnet_f32_stem(
            inp: *const f32,
            h: usize,
            w: usize,
            pt: usize,
            pl: usize,
            oh: usize,
            ow: usize,
            wts: *const f32,
            b: *const f32,
            out: *mut f32,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn effnet_f32_dw_border(
            inp: *const f32,
            rs: usize,
            c: usize,
            k: usize,
            ky0: usize,
            ky1: usize,
            kx0: usize,
            kx1: usize,
            w: *const f32,
            b: *const f32,
            out: *mut f32,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn effnet_f32_dw_run(
            inp: *const f32,
            rs: usize,
            c: usize,
            k: usize,
            stride: usize,
            n: usize,
            w: *const f32,
            b: *const f32,
            out: *mut f32,
        );
    }
}

/// Floats per packed activation tile (256 KiB: stays in L2 while the weight panels stream over it).
const TILE_FLOATS: usize = 65536;

/// The scratch `gemm` needs at most for its packed tile (layers of up to 4096 input channels), so that a
/// network reserves it once and never more: every MiB here is one more the guest's memory limit must allow.
pub const TILE_SCRATCH: usize = TILE_FLOATS + ALIGN / 4;

/// Geometry of a depthwise convolution (TensorFlow SAME padding, given as top/left offsets).
#[derive(Debug, Clone, Copy)]
pub struct DwShape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub oh: usize,
    pub ow: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// Depthwise kxk convolution + bias + ReLU6, NHWC. `wts` is `[k][k][c]`. Interior pixels of 3x3 and 5x5
/// kernels take a fully unrolled path; border pixels clip their window to the image (TF SAME padding).
pub fn depthwise(inp: &[f32], s: &DwShape, wts: &[f32], bias: &[f32], out: &mut [f32]) {
    assert!(inp.len() >= s.h * s.w * s.c && out.len() >= s.oh * s.ow * s.c);
    assert!(wts.len() == s.k * s.k * s.c && bias.len() == s.c);
    for oy in 0..s.oh {
        let iy0 = (oy * s.stride) as isize - s.pad_top as isize;
        let ky0 = (-iy0).max(0) as usize;
        let ky1 = ((s.h as isize - iy0).min(s.k as isize)).max(0) as usize;
        let mut ox = 0;
        while ox < s.ow {
            let ix0 = (ox * s.stride) as isize - s.pad_left as isize;
            let kx0 = (-ix0).max(0) as usize;
            let kx1 = ((s.w as isize - ix0).min(s.k as isize)).max(0) as usize;
            let o = (oy * s.ow + ox) * s.c;
            #[cfg(effnet_f32_c)]
            {
                // A run of interior pixels of a 3x3 or 5x5 conv: the C kernel (csrc/f32.c), pixels in pairs.
                let full = ky0 == 0 && kx0 == 0 && ky1 == s.k && kx1 == s.k;
                if full && (s.k == 3 || s.k == 5) && s.c % 8 == 0 {
                    // The run of interior pixels from here: ox * stride - pad_left + k <= w.
                    let end = ((s.w + s.pad_left - s.k) / s.stride + 1).min(s.ow);
                    let base = (iy0 as usize * s.w + ix0 as usize) * s.c;
                    // SAFETY: every window of pixels ox..end lies inside the input (checked above for ox,
                    // and by `end` for the last), and their outputs inside `out`.
                    unsafe {
                        f32c::effnet_f32_dw_run(
                            inp.as_ptr().add(base),
                            s.w * s.c,
                            s.c,
                            s.k,
                            s.stride,
                            end - ox,
                            wts.as_ptr(),
                            bias.as_ptr(),
                            out.as_mut_ptr().add(o),
                        )
                    };
                    ox = end;
                    continue;
                }
                // A border pixel with many channels: the C kernel, tap by tap over all channels (for few channels
                // the Rust loops below measured as fast).
                if !full && s.c % 8 == 0 && s.c >= 64 && ky0 < ky1 && kx0 < kx1 {
                    let base = ((iy0 + ky0 as isize) as usize * s.w + (ix0 + kx0 as isize) as usize) * s.c;
                    // SAFETY: taps ky0..ky1 x kx0..kx1 of this window are inside the input; o + c <= out.len().
                    unsafe {
                        f32c::effnet_f32_dw_border(
                            inp.as_ptr().add(base),
                            s.w * s.c,
                            s.c,
                            s.k,
                            ky0,
                            ky1,
                            kx0,
                            kx1,
                            wts.as_ptr(),
                            bias.as_ptr(),
                            out.as_mut_ptr().add(o),
                        )
                    };
                    ox += 1;
                    continue;
                }
            }
            // SAFETY: every (iy, ix) = (iy0 + ky, ix0 + kx) with ky in ky0..ky1, kx in kx0..kx1 is inside the
            // input, and o + c <= out.len().
            unsafe {
                let full = ky0 == 0 && kx0 == 0 && ky1 == s.k && kx1 == s.k;
                let (ip, wp, bp, op) = (inp.as_ptr(), wts.as_ptr(), bias.as_ptr(), out.as_mut_ptr().add(o));
                let (y, x) = (iy0 as usize, ix0 as usize);
                // Interior pixels with the common kernel sizes: every tap unrolled, no bounds logic; for
                // EfficientNet-Lite0's channel counts the tap offsets are compile-time constants.
                macro_rules! full {
                    ($($c:literal)*) => {
                        match (full, s.k, s.c) {
                            $((true, 3, $c) => imp::dw_pixel_full::<3, $c>(ip, s, y, x, wp, bp, op),
                              (true, 5, $c) => imp::dw_pixel_full::<5, $c>(ip, s, y, x, wp, bp, op),)*
                            (true, 3, _) => imp::dw_pixel_full::<3, 0>(ip, s, y, x, wp, bp, op),
                            (true, 5, _) => imp::dw_pixel_full::<5, 0>(ip, s, y, x, wp, bp, op),
                            _ => imp::dw_pixel(ip, s, iy0, ix0, (ky0, ky1, kx0, kx1), wp, bp, op),
                        }
                    };
                }
                // Blocking the channels (32 per pass) for L1 locality measured 40% slower: the per-pixel work
                // dominates, so each pixel is visited once with all its channels.
                full!(32 96 144 240 480 672 1152)
            }
            ox += 1;
        }
    }
}

/// Mean over `pixels` rows of a `pixels x c` matrix.
pub fn mean_pool(inp: &[f32], pixels: usize, c: usize, out: &mut [f32]) {
    assert!(inp.len() >= pixels * c && out.len() >= c);
    for v in out[..c].iter_mut() {
        *v = 0.0;
    }
    for p in 0..pixels {
        let row = &inp[p * c..(p + 1) * c];
        for (o, &x) in out[..c].iter_mut().zip(row) {
            *o += x;
        }
    }
    let inv = 1.0 / pixels as f32;
    for v in out[..c].iter_mut() {
        *v *= inv;
    }
}

/// The stem as one direct conv where the build has it (csrc/f32.c, both SIMD builds): a 3x3 stride-2 conv of an
/// `h x w x 3` image (SAME padding `pt`/`pl` before) to `oh x ow x 32`, + bias + ReLU6, with `g` the stem GEMM's
/// weights over the im2col columns (`[ky][kx][c]`, 28 rows). Returns false, touching nothing, when the build or
/// the shapes have no direct kernel (then the caller runs [`im2col`] and [`gemm`]).
#[allow(clippy::too_many_arguments)]
pub fn stem_direct(
    inp: &[f32],
    h: usize,
    w: usize,
    pt: usize,
    pl: usize,
    oh: usize,
    ow: usize,
    g: &PackedGemm,
    out: &mut [f32],
) -> bool {
    if g.cin != im2col_width(3, 3) || g.cout != 32 {
        return false;
    }
    assert!(inp.len() >= h * w * 3 && out.len() >= oh * ow * 32);
    #[cfg(effnet_f32_c)]
    {
        let (wp, bp) = (g.w.as_slice(), g.b.as_slice());
        assert!(wp.len() >= 4 * 28 * NR && bp.len() >= 32);
        // SAFETY: the kernel reads the image only inside h x w x 3 (windows clipped to it are copied first),
        // the 4 panels and 32 biases checked above, and writes oh x ow x 32 values of `out`.
        unsafe {
            f32c::effnet_f32_stem(inp.as_ptr(), h, w, pt, pl, oh, ow, wp.as_ptr(), bp.as_ptr(), out.as_mut_ptr())
        };
        true
    }
    #[cfg(not(effnet_f32_c))]
    {
        let _ = (inp, h, w, pt, pl, oh, ow, out);
        false
    }
}

/// Row length of the stem's im2col matrix: `k*k*c` rounded up to a multiple of 4 (zero columns, matched by
/// zero weight rows), so the SIMD GEMM packs it with whole-vector transposes.
pub fn im2col_width(k: usize, c: usize) -> usize {
    (k * k * c + 3) / 4 * 4
}

/// The stem's im2col: for each output pixel of a kxk stride-s conv on an `h x w x c` image, the `k*k*c`
/// input values in `[ky][kx][c]` order (then zeros up to [`im2col_width`]), zero where the window hangs
/// over the SAME padding.
#[allow(clippy::too_many_arguments)]
pub fn im2col(
    inp: &[f32],
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    pad_top: usize,
    pad_left: usize,
    out: &mut [f32],
) {
    let kk = im2col_width(k, c);
    assert!(inp.len() >= h * w * c && out.len() >= oh * ow * kk);
    for oy in 0..oh {
        for ox in 0..ow {
            let dst = &mut out[(oy * ow + ox) * kk..(oy * ow + ox + 1) * kk];
            for v in dst[k * k * c..].iter_mut() {
                *v = 0.0;
            }
            for ky in 0..k {
                let iy = (oy * stride + ky) as isize - pad_top as isize;
                for kx in 0..k {
                    let ix = (ox * stride + kx) as isize - pad_left as isize;
                    let d = &mut dst[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        d.iter_mut().for_each(|v| *v = 0.0);
                    } else {
                        let s = (iy as usize * w + ix as usize) * c;
                        d.copy_from_slice(&inp[s..s + c]);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn relu6(x: f32) -> f32 {
    x.max(0.0).min(6.0)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    use super::{relu6, DwShape, Epilogue, MR, NR};

    /// The scalar build reads `a` in place.
    pub const PACK_A: bool = false;

    pub unsafe fn pack_group(_a: *const f32, _cin: usize, _rv: usize, _dst: *mut f32) {
        unreachable!("the scalar build does not pack")
    }

    pub unsafe fn pack_group_splat(_a: *const f32, _cin: usize, _rv: usize, _dst: *mut f32) {
        unreachable!("the scalar build does not pack")
    }

    #[allow(clippy::too_many_arguments)]
    pub unsafe fn micro_mem(
        _ap: *const f32,
        _k: usize,
        _w: *const f32,
        _b: *const f32,
        _out: *mut f32,
        _ldo: usize,
        _res: *const f32,
        _nw: usize,
        _rv: usize,
        _ep: Epilogue,
    ) {
        unreachable!("the scalar build does not pack")
    }

    #[allow(clippy::too_many_arguments)]
    pub unsafe fn micro_4p(
        _ap: *const f32,
        _k: usize,
        _w: *const f32,
        _b: *const f32,
        _out: *mut f32,
        _ldo: usize,
        _res: *const f32,
        _nw: usize,
        _rv: usize,
        _ep: Epilogue,
    ) {
        unreachable!("the scalar build does not pack")
    }

    #[inline(always)]
    unsafe fn finish(acc: &[f32; NR], out: *mut f32, res: *const f32, nw: usize, ep: Epilogue) {
        for j in 0..nw {
            let v = acc[j];
            *out.add(j) = match ep {
                Epilogue::Linear => v,
                Epilogue::Relu6 => relu6(v),
                Epilogue::Residual | Epilogue::ResidualInPlace => v + *res.add(j),
            };
        }
    }

    /// MR pixels x NR channels.
    #[inline(always)]
    pub unsafe fn micro_4(
        a: *const f32,
        lda: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        ldo: usize,
        res: *const f32,
        nw: usize,
        ep: Epilogue,
    ) {
        let mut acc = [[0.0f32; NR]; MR];
        for r in acc.iter_mut() {
            for j in 0..NR {
                r[j] = *b.add(j);
            }
        }
        let k = lda;
        for kk in 0..k {
            let wr = w.add(kk * NR);
            for (m, r) in acc.iter_mut().enumerate() {
                let x = *a.add(m * lda + kk);
                for j in 0..NR {
                    r[j] += x * *wr.add(j);
                }
            }
        }
        for (m, r) in acc.iter().enumerate() {
            let rp = if res.is_null() { res } else { res.add(m * ldo) };
            finish(r, out.add(m * ldo), rp, nw, ep);
        }
    }

    #[inline(always)]
    pub unsafe fn micro_1(
        a: *const f32,
        k: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        res: *const f32,
        nw: usize,
        ep: Epilogue,
    ) {
        let mut acc = [0.0f32; NR];
        for j in 0..NR {
            acc[j] = *b.add(j);
        }
        for kk in 0..k {
            let x = *a.add(kk);
            let wr = w.add(kk * NR);
            for j in 0..NR {
                acc[j] += x * *wr.add(j);
            }
        }
        finish(&acc, out, res, nw, ep);
    }

    #[inline(always)]
    pub unsafe fn dw_pixel_full<const K: usize, const C: usize>(
        inp: *const f32,
        s: &DwShape,
        iy0: usize,
        ix0: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
    ) {
        dw_pixel(inp, s, iy0 as isize, ix0 as isize, (0, K, 0, K), w, b, out)
    }

    #[inline(always)]
    pub unsafe fn dw_pixel(
        inp: *const f32,
        s: &DwShape,
        iy0: isize,
        ix0: isize,
        r: (usize, usize, usize, usize),
        w: *const f32,
        b: *const f32,
        out: *mut f32,
    ) {
        let (ky0, ky1, kx0, kx1) = r;
        let c = s.c;
        for ch in 0..c {
            *out.add(ch) = *b.add(ch);
        }
        for ky in ky0..ky1 {
            let iy = (iy0 + ky as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (ix0 + kx as isize) as usize;
                let ip = inp.add((iy * s.w + ix) * c);
                let wp = w.add((ky * s.k + kx) * c);
                for ch in 0..c {
                    *out.add(ch) += *ip.add(ch) * *wp.add(ch);
                }
            }
        }
        for ch in 0..c {
            *out.add(ch) = relu6(*out.add(ch));
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use super::{relu6, DwShape, Epilogue, MR, NR};
    use core::arch::wasm32::*;

    /// The SIMD GEMM reads `a` packed k-major in groups of 4 rows: one load gives 4 pixels' values.
    pub const PACK_A: bool = true;

    /// Packs `rv` (<= 4) rows of `cin` (a multiple of 4) values k-major, `dst[k][m]`, zero rows past `rv`:
    /// 4 x 4 blocks transposed in registers.
    pub unsafe fn pack_group(a: *const f32, cin: usize, rv: usize, dst: *mut f32) {
        let z = f32x4_splat(0.0);
        let row = |m: usize, k: usize| if m < rv { ld(a.add(m * cin + k)) } else { z };
        let mut k = 0;
        while k < cin {
            let (r0, r1, r2, r3) = (row(0, k), row(1, k), row(2, k), row(3, k));
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(r0, r1);
            let t1 = i32x4_shuffle::<0, 4, 1, 5>(r2, r3);
            let t2 = i32x4_shuffle::<2, 6, 3, 7>(r0, r1);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(r2, r3);
            st(dst.add(k * MR), i32x4_shuffle::<0, 1, 4, 5>(t0, t1));
            st(dst.add(k * MR + 4), i32x4_shuffle::<2, 3, 6, 7>(t0, t1));
            st(dst.add(k * MR + 8), i32x4_shuffle::<0, 1, 4, 5>(t2, t3));
            st(dst.add(k * MR + 12), i32x4_shuffle::<2, 3, 6, 7>(t2, t3));
            k += 4;
        }
    }

    /// Packs `rv` (<= 4) rows of `cin` (a multiple of 4) values k-major and pre-splatted:
    /// `dst[k][m]` is a whole vector holding `a[m][k]` in every lane (zero rows past `rv`).
    pub unsafe fn pack_group_splat(a: *const f32, cin: usize, rv: usize, dst: *mut f32) {
        let z = f32x4_splat(0.0);
        macro_rules! group {
            ($k:expr) => {{
                let (k, d) = ($k, dst.add($k * 16));
                macro_rules! row {
                    ($m:literal) => {{
                        let r = if $m < rv { ld(a.add($m * cin + k)) } else { z };
                        st(d.add($m * 4), i32x4_shuffle::<0, 0, 0, 0>(r, r));
                        st(d.add(16 + $m * 4), i32x4_shuffle::<1, 1, 1, 1>(r, r));
                        st(d.add(32 + $m * 4), i32x4_shuffle::<2, 2, 2, 2>(r, r));
                        st(d.add(48 + $m * 4), i32x4_shuffle::<3, 3, 3, 3>(r, r));
                    }};
                }
                row!(0);
                row!(1);
                row!(2);
                row!(3);
            }};
        }
        // Two k groups per iteration (every layer's cin is a multiple of 8): half the loop's epoch checks.
        let mut k = 0;
        while k + 8 <= cin {
            group!(k);
            group!(k + 4);
            k += 8;
        }
        if k < cin {
            group!(k);
        }
    }

    /// 4 pre-splatted pixels x 8 channels, k in steps of 4 (`k % 4 == 0`; `w` 128-byte and `ap` 256-byte
    /// aligned). Written for Cranelift under epoch interruption: the interruption check on every loop
    /// back-edge ends in a call that clobbers every vector register, so vectors carried around the k loop
    /// live in stack slots whatever the source says, and Cranelift places pure arithmetic at its first use
    /// by a load or store, after every load of the loop body. So the accumulators live in a small array
    /// explicitly; each iteration loads the 4 steps' 8 weight vectors, then pixel by pixel its 4 splatted
    /// activations and adds a tree of 4 products to each of its two accumulators (a load and a store
    /// each). Volatile accesses keep this order through LLVM (which would otherwise hoist every load of
    /// the iteration and run out of registers), and masking the aligned pointers' low bits lets LLVM fold
    /// each constant offset into its load instead of computing every address apart.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn micro_mem(
        ap: *const f32,
        k: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        ldo: usize,
        res: *const f32,
        nw: usize,
        rv: usize,
        ep: Epilogue,
    ) {
        use core::ptr::{read_volatile, write_volatile};
        let mut acc = [f32x4_splat(0.0); 8];
        let accp = acc.as_mut_ptr();
        let b0 = ld(b);
        let b1 = ld(b.add(4));
        for m in 0..4 {
            write_volatile(accp.add(2 * m), b0);
            write_volatile(accp.add(2 * m + 1), b1);
        }
        let vl = |p: *const f32| read_volatile(p as *const v128);
        let (mut wp, mut xp) = (w, ap);
        let mut kk = 0;
        while kk < k {
            let wq = ((wp as usize) & !127) as *const f32;
            let xq = ((xp as usize) & !255) as *const f32;
            let (wa0, wa1, wb0, wb1) = (vl(wq), vl(wq.add(4)), vl(wq.add(8)), vl(wq.add(12)));
            let (wc0, wc1, wd0, wd1) = (vl(wq.add(16)), vl(wq.add(20)), vl(wq.add(24)), vl(wq.add(28)));
            macro_rules! pixel {
                ($m:literal) => {{
                    let p = xq.add($m * 4);
                    let (xa, xb, xc, xd) = (vl(p), vl(p.add(16)), vl(p.add(32)), vl(p.add(48)));
                    let t0 = f32x4_add(
                        f32x4_add(f32x4_mul(xa, wa0), f32x4_mul(xb, wb0)),
                        f32x4_add(f32x4_mul(xc, wc0), f32x4_mul(xd, wd0)),
                    );
                    let a0 = accp.add(2 * $m);
                    write_volatile(a0, f32x4_add(read_volatile(a0), t0));
                    let t1 = f32x4_add(
                        f32x4_add(f32x4_mul(xa, wa1), f32x4_mul(xb, wb1)),
                        f32x4_add(f32x4_mul(xc, wc1), f32x4_mul(xd, wd1)),
                    );
                    let a1 = accp.add(2 * $m + 1);
                    write_volatile(a1, f32x4_add(read_volatile(a1), t1));
                }};
            }
            pixel!(0);
            pixel!(1);
            pixel!(2);
            pixel!(3);
            kk += 4;
            wp = wp.add(4 * NR);
            xp = xp.add(4 * 16);
        }
        let r = |m: usize| if res.is_null() { res } else { res.add(m * ldo) };
        for m in 0..rv {
            let (lo, hi) = (read_volatile(accp.add(2 * m)), read_volatile(accp.add(2 * m + 1)));
            finish(lo, hi, out.add(m * ldo), r(m), nw, ep);
        }
    }

    /// 4 packed pixels x 8 channels: per k one load of 4 activations, two weight loads, four lane
    /// broadcasts by shuffle (no scalar loads), 8 f32x4 accumulators. Stores only `rv` rows.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn micro_4p(
        ap: *const f32,
        k: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        ldo: usize,
        res: *const f32,
        nw: usize,
        rv: usize,
        ep: Epilogue,
    ) {
        let b0 = ld(b);
        let b1 = ld(b.add(4));
        let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) = (b0, b1, b0, b1, b0, b1, b0, b1);
        let mut kk = 0;
        macro_rules! step {
            ($k:expr) => {{
                let va = ld(ap.add($k * MR));
                let w0 = ld(w.add($k * NR));
                let w1 = ld(w.add($k * NR + 4));
                let x0 = i32x4_shuffle::<0, 0, 0, 0>(va, va);
                c00 = f32x4_add(c00, f32x4_mul(x0, w0));
                c01 = f32x4_add(c01, f32x4_mul(x0, w1));
                let x1 = i32x4_shuffle::<1, 1, 1, 1>(va, va);
                c10 = f32x4_add(c10, f32x4_mul(x1, w0));
                c11 = f32x4_add(c11, f32x4_mul(x1, w1));
                let x2 = i32x4_shuffle::<2, 2, 2, 2>(va, va);
                c20 = f32x4_add(c20, f32x4_mul(x2, w0));
                c21 = f32x4_add(c21, f32x4_mul(x2, w1));
                let x3 = i32x4_shuffle::<3, 3, 3, 3>(va, va);
                c30 = f32x4_add(c30, f32x4_mul(x3, w0));
                c31 = f32x4_add(c31, f32x4_mul(x3, w1));
            }};
        }
        while kk + UNROLL <= k {
            step!(kk);
            if UNROLL > 1 {
                step!(kk + 1);
            }
            if UNROLL > 2 {
                step!(kk + 2);
                step!(kk + 3);
            }
            kk += UNROLL;
        }
        while kk < k {
            step!(kk);
            kk += 1;
        }
        let r = |m: usize| if res.is_null() { res } else { res.add(m * ldo) };
        finish(c00, c01, out, r(0), nw, ep);
        if rv > 1 {
            finish(c10, c11, out.add(ldo), r(1), nw, ep);
        }
        if rv > 2 {
            finish(c20, c21, out.add(2 * ldo), r(2), nw, ep);
        }
        if rv > 3 {
            finish(c30, c31, out.add(3 * ldo), r(3), nw, ep);
        }
    }


    const UNROLL: usize = 4;

    #[inline(always)]
    unsafe fn ld(p: *const f32) -> v128 {
        v128_load(p as *const v128)
    }

    #[inline(always)]
    unsafe fn st(p: *mut f32, v: v128) {
        v128_store(p as *mut v128, v)
    }

    #[inline(always)]
    unsafe fn finish(lo: v128, hi: v128, out: *mut f32, res: *const f32, nw: usize, ep: Epilogue) {
        let (mut lo, mut hi) = (lo, hi);
        match ep {
            Epilogue::Linear => {}
            Epilogue::Relu6 => {
                let z = f32x4_splat(0.0);
                let six = f32x4_splat(6.0);
                lo = f32x4_pmin(f32x4_pmax(lo, z), six);
                hi = f32x4_pmin(f32x4_pmax(hi, z), six);
            }
            Epilogue::Residual | Epilogue::ResidualInPlace => {
                if nw == NR {
                    lo = f32x4_add(lo, ld(res));
                    hi = f32x4_add(hi, ld(res.add(4)));
                } else {
                    let mut t = [0.0f32; NR];
                    st(t.as_mut_ptr(), lo);
                    st(t.as_mut_ptr().add(4), hi);
                    for j in 0..nw {
                        *out.add(j) = t[j] + *res.add(j);
                    }
                    return;
                }
            }
        }
        if nw == NR {
            st(out, lo);
            st(out.add(4), hi);
        } else {
            let mut t = [0.0f32; NR];
            st(t.as_mut_ptr(), lo);
            st(t.as_mut_ptr().add(4), hi);
            for j in 0..nw {
                *out.add(j) = t[j];
            }
        }
    }

    /// MR (4) pixels x NR (8) channels: 8 f32x4 accumulators, the cin loop innermost.
    #[inline(always)]
    pub unsafe fn micro_4(
        a: *const f32,
        lda: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        ldo: usize,
        res: *const f32,
        nw: usize,
        ep: Epilogue,
    ) {
        let _ = MR;
        let b0 = ld(b);
        let b1 = ld(b.add(4));
        let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) = (b0, b1, b0, b1, b0, b1, b0, b1);
        let a0 = a;
        let a1 = a.add(lda);
        let a2 = a.add(2 * lda);
        let a3 = a.add(3 * lda);
        let mut wp = w;
        let mut kk = 0;
        // One k step: two weight vectors against four broadcast activations. The loop is unrolled 4x:
        // wasmtime puts an epoch (timeout) check on every loop back-edge, and fewer back-edges are cheaper.
        macro_rules! step {
            ($k:expr, $wp:expr) => {{
                let w0 = ld($wp);
                let w1 = ld($wp.add(4));
                let x0 = v128_load32_splat(a0.add($k) as *const u32);
                c00 = f32x4_add(c00, f32x4_mul(x0, w0));
                c01 = f32x4_add(c01, f32x4_mul(x0, w1));
                let x1 = v128_load32_splat(a1.add($k) as *const u32);
                c10 = f32x4_add(c10, f32x4_mul(x1, w0));
                c11 = f32x4_add(c11, f32x4_mul(x1, w1));
                let x2 = v128_load32_splat(a2.add($k) as *const u32);
                c20 = f32x4_add(c20, f32x4_mul(x2, w0));
                c21 = f32x4_add(c21, f32x4_mul(x2, w1));
                let x3 = v128_load32_splat(a3.add($k) as *const u32);
                c30 = f32x4_add(c30, f32x4_mul(x3, w0));
                c31 = f32x4_add(c31, f32x4_mul(x3, w1));
            }};
        }
        while kk + 4 <= lda {
            step!(kk, wp);
            step!(kk + 1, wp.add(NR));
            step!(kk + 2, wp.add(2 * NR));
            step!(kk + 3, wp.add(3 * NR));
            wp = wp.add(4 * NR);
            kk += 4;
        }
        while kk < lda {
            step!(kk, wp);
            wp = wp.add(NR);
            kk += 1;
        }
        let r = |m: usize| if res.is_null() { res } else { res.add(m * ldo) };
        finish(c00, c01, out, r(0), nw, ep);
        finish(c10, c11, out.add(ldo), r(1), nw, ep);
        finish(c20, c21, out.add(2 * ldo), r(2), nw, ep);
        finish(c30, c31, out.add(3 * ldo), r(3), nw, ep);
    }

    #[inline(always)]
    pub unsafe fn micro_1(
        a: *const f32,
        k: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        res: *const f32,
        nw: usize,
        ep: Epilogue,
    ) {
        let mut c0 = ld(b);
        let mut c1 = ld(b.add(4));
        let mut wp = w;
        let mut kk = 0;
        macro_rules! step {
            ($k:expr, $wp:expr) => {{
                let x = v128_load32_splat(a.add($k) as *const u32);
                c0 = f32x4_add(c0, f32x4_mul(x, ld($wp)));
                c1 = f32x4_add(c1, f32x4_mul(x, ld($wp.add(4))));
            }};
        }
        while kk + 4 <= k {
            step!(kk, wp);
            step!(kk + 1, wp.add(NR));
            step!(kk + 2, wp.add(2 * NR));
            step!(kk + 3, wp.add(3 * NR));
            wp = wp.add(4 * NR);
            kk += 4;
        }
        while kk < k {
            step!(kk, wp);
            wp = wp.add(NR);
            kk += 1;
        }
        finish(c0, c1, out, res, nw, ep);
    }

    /// The K x K products of one channel vector summed as a balanced tree (row sums of 3 or 5 taps, then
    /// the rows): short add chains, and LLVM's expression-tree code generation keeps few values live.
    #[inline(always)]
    unsafe fn dw_tree<const K: usize>(base: *const f32, row_stride: usize, c: usize, w: *const f32) -> v128 {
        let p = |ky: usize, kx: usize| f32x4_mul(ld(base.add(ky * row_stride + kx * c)), ld(w.add((ky * K + kx) * c)));
        let row = |ky: usize| {
            if K == 3 {
                f32x4_add(f32x4_add(p(ky, 0), p(ky, 1)), p(ky, 2))
            } else {
                f32x4_add(
                    f32x4_add(f32x4_add(p(ky, 0), p(ky, 1)), f32x4_add(p(ky, 2), p(ky, 3))),
                    p(ky, 4),
                )
            }
        };
        if K == 3 {
            f32x4_add(f32x4_add(row(0), row(1)), row(2))
        } else {
            f32x4_add(f32x4_add(f32x4_add(row(0), row(1)), f32x4_add(row(2), row(3))), row(4))
        }
    }

    /// All K x K taps inside the image (K is 3 or 5): every tap unrolled, no bounds logic.
    #[inline(always)]
    /// `C` is the channel count when known at compile time (then every tap offset is a constant), else 0.
    pub unsafe fn dw_pixel_full<const K: usize, const C: usize>(
        inp: *const f32,
        s: &DwShape,
        iy0: usize,
        ix0: usize,
        w: *const f32,
        b: *const f32,
        out: *mut f32,
    ) {
        if K != 3 && K != 5 {
            return dw_pixel(inp, s, iy0 as isize, ix0 as isize, (0, K, 0, K), w, b, out);
        }
        let c = if C != 0 { C } else { s.c };
        let z = f32x4_splat(0.0);
        let six = f32x4_splat(6.0);
        let base = inp.add((iy0 * s.w + ix0) * c);
        let row_stride = s.w * c;
        let mut ch = 0;
        while ch + 8 <= c {
            let t0 = f32x4_add(ld(b.add(ch)), dw_tree::<K>(base.add(ch), row_stride, c, w.add(ch)));
            st(out.add(ch), f32x4_pmin(f32x4_pmax(t0, z), six));
            let t1 = f32x4_add(
                ld(b.add(ch + 4)),
                dw_tree::<K>(base.add(ch + 4), row_stride, c, w.add(ch + 4)),
            );
            st(out.add(ch + 4), f32x4_pmin(f32x4_pmax(t1, z), six));
            ch += 8;
        }
        if ch < c {
            dw_pixel(inp, s, iy0 as isize, ix0 as isize, (0, K, 0, K), w, b, out);
        }
    }

    #[inline(always)]
    pub unsafe fn dw_pixel(
        inp: *const f32,
        s: &DwShape,
        iy0: isize,
        ix0: isize,
        r: (usize, usize, usize, usize),
        w: *const f32,
        b: *const f32,
        out: *mut f32,
    ) {
        let (ky0, ky1, kx0, kx1) = r;
        let c = s.c;
        let z = f32x4_splat(0.0);
        let six = f32x4_splat(6.0);
        let mut ch = 0;
        while ch + 16 <= c {
            let mut s0 = ld(b.add(ch));
            let mut s1 = ld(b.add(ch + 4));
            let mut s2 = ld(b.add(ch + 8));
            let mut s3 = ld(b.add(ch + 12));
            for ky in ky0..ky1 {
                let iy = (iy0 + ky as isize) as usize;
                let row = inp.add((iy * s.w) * c + ch);
                let wrow = w.add(ky * s.k * c + ch);
                for kx in kx0..kx1 {
                    let ix = (ix0 + kx as isize) as usize;
                    let ip = row.add(ix * c);
                    let wp = wrow.add(kx * c);
                    s0 = f32x4_add(s0, f32x4_mul(ld(ip), ld(wp)));
                    s1 = f32x4_add(s1, f32x4_mul(ld(ip.add(4)), ld(wp.add(4))));
                    s2 = f32x4_add(s2, f32x4_mul(ld(ip.add(8)), ld(wp.add(8))));
                    s3 = f32x4_add(s3, f32x4_mul(ld(ip.add(12)), ld(wp.add(12))));
                }
            }
            st(out.add(ch), f32x4_pmin(f32x4_pmax(s0, z), six));
            st(out.add(ch + 4), f32x4_pmin(f32x4_pmax(s1, z), six));
            st(out.add(ch + 8), f32x4_pmin(f32x4_pmax(s2, z), six));
            st(out.add(ch + 12), f32x4_pmin(f32x4_pmax(s3, z), six));
            ch += 16;
        }
        while ch + 4 <= c {
            let mut s0 = ld(b.add(ch));
            for ky in ky0..ky1 {
                let iy = (iy0 + ky as isize) as usize;
                for kx in kx0..kx1 {
                    let ix = (ix0 + kx as isize) as usize;
                    let ip = inp.add((iy * s.w + ix) * c + ch);
                    let wp = w.add((ky * s.k + kx) * c + ch);
                    s0 = f32x4_add(s0, f32x4_mul(ld(ip), ld(wp)));
                }
            }
            st(out.add(ch), f32x4_pmin(f32x4_pmax(s0, z), six));
            ch += 4;
        }
        while ch < c {
            let mut acc = *b.add(ch);
            for ky in ky0..ky1 {
                let iy = (iy0 + ky as isize) as usize;
                for kx in kx0..kx1 {
                    let ix = (ix0 + kx as isize) as usize;
                    acc += *inp.add((iy * s.w + ix) * c + ch) * *w.add((ky * s.k + kx) * c + ch);
                }
            }
            *out.add(ch) = relu6(acc);
            ch += 1;
        }
    }
}
