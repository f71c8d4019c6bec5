//! The INT8 network (`layout int8-v1` images from `edgewasm.models._int8`): 7-bit activations, per-channel
//! int8 weights, float32 requantization, bit for bit the numpy reference `edgewasm.models._int8.forward`.
//!
//! Kernels: the SIMD builds call the C kernels of `csrc/q8.c` (relaxed or plain SIMD, chosen at build time:
//! `build.rs`), the others the scalar Rust ones below, which are also the native reference in the tests.
//! Either way every layer computes `acc = sum w * q` exactly in int32 and `q = clip(rint(f32(acc) * s + c
//! [+ f32(x) * r]), 0, 127)`, each float operation rounded apart, so the builds agree to the bit.

use crate::ewt::{BlockSpec, EwtError};
use crate::image::Image;
use crate::kernels::DwShape;
use crate::net::{check_chain, dw_shape, same_pad};

/// The `layout` meta value of a packed INT8 image.
pub const LAYOUT_INT8: &str = "int8-v1";
/// Output channels per packed panel, and k values per dot-product lane.
pub const NR: usize = 8;
pub const KSTEP: usize = 4;
/// Bytes of one panel per k group, and the alignment of panel strides (see `edgewasm.models._pack`).
const W_GROUP: usize = NR * KSTEP;
const PANEL_ALIGN: usize = 128;

/// Which kernels this build runs: "relaxed-simd", "simd128" (C, plain SIMD) or "scalar".
pub const KERNELS: &str = imp::KERNELS;

/// An int8 1x1 convolution (or the stem through im2col, or the classifier): packed panels and the
/// requantization `s`, `c` (whole panels) and `r` (residual input scale, 0 when none).
#[derive(Debug, Clone, Copy)]
pub struct QGemm {
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub w: &'static [i8],
    pub s: &'static [f32],
    pub c: &'static [f32],
    pub r: f32,
}

pub fn panel_stride(groups: usize) -> usize {
    (groups * W_GROUP + PANEL_ALIGN - 1) / PANEL_ALIGN * PANEL_ALIGN
}

fn panels(cout: usize) -> usize {
    (cout + NR - 1) / NR
}

impl QGemm {
    fn from_image(img: &Image, name: &str, cin: usize, cout: usize) -> Result<QGemm, EwtError> {
        let groups = (cin + KSTEP - 1) / KSTEP;
        let p = panels(cout);
        let w = img.i8s(&format!("{}.w", name), p * panel_stride(groups))?;
        if w.as_ptr() as usize % PANEL_ALIGN != 0 {
            return Err(EwtError(format!("packed weight image: {} is not aligned for the kernels", name)));
        }
        let s = img.f32s(&format!("{}.s", name), p * NR)?;
        let c = img.f32s(&format!("{}.c", name), p * NR)?;
        let r = match img.count(&format!("{}.r", name)) {
            Some(_) => img.f32s(&format!("{}.r", name), 1)?[0],
            None => 0.0,
        };
        Ok(QGemm {
            cin,
            cout,
            groups,
            w,
            s,
            c,
            r,
        })
    }

    /// The weight of input k for output channel n.
    pub fn weight(&self, k: usize, n: usize) -> i8 {
        let (p, h, c) = (n / NR, (n % NR) / 4, n % 4);
        self.w[p * panel_stride(self.groups) + (k / KSTEP) * W_GROUP + h * 16 + c * 4 + k % KSTEP]
    }
}

/// Where a GEMM writes: requantized u8 rows (`ldo` apart) or float rows (the logits).
pub enum Out<'a> {
    Q(&'a mut [u8], usize),
    F(&'a mut [f32], usize),
}

/// `clip(rint(v), 0, 127)` with ties to even, as wasm's `f32x4.nearest` and numpy's `rint`.
#[inline(always)]
pub fn q7(v: f32) -> u8 {
    let v = v.max(-1.0).min(128.0);
    // Adding and removing 1.5 * 2^23 rounds to an integer, ties to even, for |v| < 2^22.
    let r = (v + 12_582_912.0) - 12_582_912.0;
    r.max(0.0).min(127.0) as u8
}

/// The requantized output of one accumulator.
#[inline(always)]
pub fn requant(acc: i32, s: f32, c: f32, x: Option<(u8, f32)>) -> f32 {
    let mut v = acc as f32 * s + c;
    if let Some((q, r)) = x {
        v += q as f32 * r;
    }
    v
}

/// `a`: `rows` rows of at least `4 * g.groups` u8 values, `lda` apart (values past `cin` meet zero weights);
/// `res`: the residual input rows (`ldr` apart) for a layer with `g.r != 0`. `scratch` is used by the SIMD
/// build (grown once).
pub fn gemm(a: &[u8], rows: usize, lda: usize, g: &QGemm, out: Out<'_>, res: Option<(&[u8], usize)>, scratch: &mut Scratch) {
    let kk = g.groups * KSTEP;
    assert!(rows == 0 || a.len() >= (rows - 1) * lda + kk, "q8 gemm: input too short");
    assert!(g.w.len() >= panels(g.cout) * panel_stride(g.groups) && g.s.len() >= panels(g.cout) * NR);
    match &out {
        Out::Q(o, ldo) => assert!(*ldo >= g.cout && (rows == 0 || o.len() >= (rows - 1) * ldo + g.cout)),
        Out::F(o, ldo) => assert!(*ldo >= g.cout && (rows == 0 || o.len() >= (rows - 1) * ldo + g.cout)),
    }
    if let Some((r, ldr)) = res {
        assert!(ldr >= g.cout && (rows == 0 || r.len() >= (rows - 1) * ldr + g.cout), "q8 gemm: residual too short");
    }
    imp::gemm(a, rows, lda, g, out, res, scratch);
}

/// Depthwise weights: the k*k taps (row-major) in pairs, the odd last one paired with zero: `[pairs][c][2]`.
pub fn dw_pairs(k: usize) -> usize {
    (k * k + 1) / 2
}

/// The weight of tap `t` (row-major) for channel `ch` in the pair layout.
#[inline(always)]
pub fn dw_weight(w: &[i16], c: usize, t: usize, ch: usize) -> i16 {
    w[((t / 2) * c + ch) * 2 + t % 2]
}

/// Depthwise kxk, u8 NHWC in and out, weights `[pairs][c][2]` (i16, see `dw_pairs`), requantized per channel.
pub fn depthwise(inp: &[u8], s: &DwShape, w: &[i16], sc: &[f32], cc: &[f32], out: &mut [u8]) {
    assert!(inp.len() >= s.h * s.w * s.c && out.len() >= s.oh * s.ow * s.c);
    assert!(w.len() == dw_pairs(s.k) * s.c * 2 && sc.len() >= s.c && cc.len() >= s.c);
    imp::depthwise(inp, s, w, sc, cc, out);
}

/// The network input: `q = clip(rint(x * inv + zero), 0, 127)`.
pub fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]) {
    assert!(q.len() >= x.len());
    imp::quantize(x, inv, zero, q);
}

/// A 256-byte aligned byte buffer for the SIMD GEMM's packed tile.
#[derive(Debug, Default)]
#[cfg_attr(not(effnet_q8_c), allow(dead_code))]
pub struct Scratch {
    buf: Vec<u8>,
}

impl Scratch {
    #[cfg_attr(not(effnet_q8_c), allow(dead_code))]
    fn get(&mut self, len: usize) -> &mut [u8] {
        if self.buf.len() < len + 256 {
            self.buf = vec![0u8; len + 256];
        }
        let off = (256 - self.buf.as_ptr() as usize % 256) % 256;
        &mut self.buf[off..off + len]
    }
}

mod scalar {
    use super::*;

    pub fn gemm(a: &[u8], rows: usize, lda: usize, g: &QGemm, mut out: Out<'_>, res: Option<(&[u8], usize)>) {
        let kk = g.groups * KSTEP;
        for m in 0..rows {
            let row = &a[m * lda..m * lda + kk];
            for n in 0..g.cout {
                let mut acc = 0i32;
                for (k, &q) in row.iter().enumerate() {
                    acc += g.weight(k, n) as i32 * q as i32;
                }
                let x = res.map(|(r, ldr)| (r[m * ldr + n], g.r));
                let v = requant(acc, g.s[n], g.c[n], x);
                match &mut out {
                    Out::Q(o, ldo) => o[m * *ldo + n] = q7(v),
                    Out::F(o, ldo) => o[m * *ldo + n] = v,
                }
            }
        }
    }

    pub fn depthwise(inp: &[u8], s: &DwShape, w: &[i16], sc: &[f32], cc: &[f32], out: &mut [u8]) {
        for oy in 0..s.oh {
            for ox in 0..s.ow {
                for ch in 0..s.c {
                    let mut acc = 0i32;
                    for ky in 0..s.k {
                        let iy = (oy * s.stride + ky) as isize - s.pad_top as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..s.k {
                            let ix = (ox * s.stride + kx) as isize - s.pad_left as isize;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            let q = inp[(iy as usize * s.w + ix as usize) * s.c + ch];
                            acc += q as i32 * dw_weight(w, s.c, ky * s.k + kx, ch) as i32;
                        }
                    }
                    out[(oy * s.ow + ox) * s.c + ch] = q7(requant(acc, sc[ch], cc[ch], None));
                }
            }
        }
    }

    pub fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]) {
        for (o, &v) in q.iter_mut().zip(x) {
            *o = q7(v * inv + zero);
        }
    }
}

/// The scalar kernels, callable in every build: the reference the SIMD kernels are tested against.
pub mod reference {
    pub use super::scalar::{depthwise, gemm, quantize};
}

#[cfg(not(effnet_q8_c))]
mod imp {
    use super::*;

    pub const KERNELS: &str = "scalar";

    pub fn gemm(a: &[u8], rows: usize, lda: usize, g: &QGemm, out: Out<'_>, res: Option<(&[u8], usize)>, _s: &mut Scratch) {
        scalar::gemm(a, rows, lda, g, out, res)
    }
    pub fn depthwise(inp: &[u8], s: &DwShape, w: &[i16], sc: &[f32], cc: &[f32], out: &mut [u8]) {
        scalar::depthwise(inp, s, w, sc, cc, out)
    }
    pub fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]) {
        scalar::quantize(x, inv, zero, q)
    }
}

#[cfg(effnet_q8_c)]
mod imp {
    use super::*;

    /// Bytes of the packed activation tile the C GEMM works in (stays in L2 while the panels stream over it).
    const SCRATCH: usize = 128 * 1024;

    #[cfg(effnet_q8_relaxed)]
    pub const KERNELS: &str = "relaxed-simd";
    #[cfg(not(effnet_q8_relaxed))]
    pub const KERNELS: &str = "simd128";

    #[link(name = "effnet_c", kind = "static")]
    extern "C" {
        fn effnet_q8_xtile_stride(groups: usize) -> usize;
        fn effnet_q8_panel_stride(groups: usize) -> usize;
        #[allow(clippy::too_many_arguments)]
        fn effnet_q8_gemm(
            a: *const u8,
            rows: usize,
            lda: usize,
            groups: usize,
            w: *const i8,
            cout: usize,
            s: *const f32,
            c: *const f32,
            out: *mut u8,
            ldo: usize,
            res: *const u8,
            ldr: usize,
            r: f32,
            fout: *mut f32,
            ldf: usize,
            scratch: *mut u8,
            scratch_len: usize,
        );
        #[allow(clippy::too_many_arguments)]
        fn effnet_q8_depthwise(
            inp: *const u8,
            h: usize,
            w: usize,
            ch: usize,
            k: usize,
            stride: usize,
            oh: usize,
            ow: usize,
            pad_top: usize,
            pad_left: usize,
            wts: *const i16,
            s: *const f32,
            c: *const f32,
            out: *mut u8,
        );
        fn effnet_q8_quantize(x: *const f32, n: usize, inv: f32, zero: f32, q: *mut u8);
    }

    pub fn gemm(a: &[u8], rows: usize, lda: usize, g: &QGemm, out: Out<'_>, res: Option<(&[u8], usize)>, scratch: &mut Scratch) {
        // SAFETY: the lengths were checked by super::gemm, the panels' alignment and stride by QGemm.
        unsafe {
            assert_eq!(effnet_q8_panel_stride(g.groups), panel_stride(g.groups));
            let need = effnet_q8_xtile_stride(g.groups);
            let buf = scratch.get(SCRATCH.max(need));
            let (rp, ldr) = res.map_or((core::ptr::null(), 0), |(r, l)| (r.as_ptr(), l));
            let (qo, ldo, fo, ldf) = match out {
                Out::Q(o, l) => (o.as_mut_ptr(), l, core::ptr::null_mut(), 0),
                Out::F(o, l) => (core::ptr::null_mut(), 0, o.as_mut_ptr(), l),
            };
            effnet_q8_gemm(
                a.as_ptr(),
                rows,
                lda,
                g.groups,
                g.w.as_ptr(),
                g.cout,
                g.s.as_ptr(),
                g.c.as_ptr(),
                qo,
                ldo,
                rp,
                ldr,
                g.r,
                fo,
                ldf,
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
    }

    pub fn depthwise(inp: &[u8], s: &DwShape, w: &[i16], sc: &[f32], cc: &[f32], out: &mut [u8]) {
        if s.c % 8 != 0 || s.c > 2048 || s.k * s.k > 25 {
            return scalar::depthwise(inp, s, w, sc, cc, out);
        }
        // SAFETY: lengths checked by super::depthwise; the kernel reads only inside the image.
        unsafe {
            effnet_q8_depthwise(
                inp.as_ptr(),
                s.h,
                s.w,
                s.c,
                s.k,
                s.stride,
                s.oh,
                s.ow,
                s.pad_top,
                s.pad_left,
                w.as_ptr(),
                sc.as_ptr(),
                cc.as_ptr(),
                out.as_mut_ptr(),
            )
        }
    }

    pub fn quantize(x: &[f32], inv: f32, zero: f32, q: &mut [u8]) {
        let n = x.len() / 4 * 4;
        // SAFETY: n <= x.len() <= q.len().
        unsafe { effnet_q8_quantize(x.as_ptr(), n, inv, zero, q.as_mut_ptr()) };
        scalar::quantize(&x[n..], inv, zero, &mut q[n..]);
    }
}

struct QBlock {
    spec: BlockSpec,
    expand: Option<QGemm>,
    dw_w: &'static [i16],
    dw_s: &'static [f32],
    dw_c: &'static [f32],
    dw: DwShape,
    project: QGemm,
}

/// The INT8 network over a packed image, every weight used in place, buffers allocated once.
pub struct QNetwork {
    in_h: usize,
    in_w: usize,
    inv: f32,
    zero: f32,
    stem: QGemm,
    stem_shape: (usize, usize, usize, usize),
    blocks: Vec<QBlock>,
    head: QGemm,
    fc: QGemm,
    pool_s: f32,
    final_pixels: usize,
    /// Buffer sizes (input, im2col, activations): allocated by the first forward pass, so a network over
    /// mapped weights is ready without touching fresh memory.
    sizes: (usize, usize, usize),
    qin: Vec<u8>,
    cols: Vec<u8>,
    buf_x: Vec<u8>,
    buf_e: Vec<u8>,
    buf_d: Vec<u8>,
    pooled: Vec<u8>,
    logits: Vec<f32>,
    scratch: Scratch,
    /// Milliseconds per layer kind in the last forward pass: stem, expand, depthwise, project, head+pool+fc.
    pub profile: [f64; 5],
    /// Milliseconds per layer in the last forward pass, in order: stem, then per block [expand,] depthwise,
    /// project, then head + pool + fc (`layer_names` names them).
    pub layers: Vec<f64>,
}

/// The stem's im2col width: 27 values padded to whole k groups.
const STEM_K: usize = 3;
const COLS: usize = (STEM_K * STEM_K * 3 + KSTEP - 1) / KSTEP * KSTEP;

impl QNetwork {
    pub fn from_image(img: &Image, in_h: usize, in_w: usize) -> Result<QNetwork, EwtError> {
        if img.meta("layout") != Some(LAYOUT_INT8) {
            return Err(EwtError(format!(
                "packed weight image has layout {:?}, this network reads {}",
                img.meta("layout").unwrap_or("none"),
                LAYOUT_INT8
            )));
        }
        if in_h == 0 || in_w == 0 {
            return Err(EwtError("input size must be nonzero".to_string()));
        }
        let specs = img.blocks().to_vec();
        check_chain(&specs)?;
        let iq = img.f32s("input.q", 2)?;
        let (inv, zero) = (iq[0], iq[1]);
        if !(inv.is_finite() && inv > 0.0 && (0.0..=127.0).contains(&zero) && zero.fract() == 0.0) {
            return Err(EwtError("packed weight image: bad input quantization".to_string()));
        }
        let c0 = specs[0].cin;
        let stem = QGemm::from_image(img, "stem", COLS, c0)?;
        let (oh, pt) = same_pad(in_h, STEM_K, 2);
        let (ow, pl) = same_pad(in_w, STEM_K, 2);
        let mut max_act = oh * ow * c0;
        let (mut h, mut w) = (oh, ow);
        let mut blocks = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let cmid = spec.cmid();
            let p = format!("blocks.{}", i);
            let expand = if spec.expand != 1 {
                Some(QGemm::from_image(img, &format!("{}.expand", p), spec.cin, cmid)?)
            } else {
                None
            };
            let dw_w = img.i16s(&format!("{}.dw.w", p), dw_pairs(spec.kernel) * cmid * 2)?;
            let dw_s = img.f32s(&format!("{}.dw.s", p), panels(cmid) * NR)?;
            let dw_c = img.f32s(&format!("{}.dw.c", p), panels(cmid) * NR)?;
            let project = QGemm::from_image(img, &format!("{}.project", p), cmid, spec.cout)?;
            if spec.residual() != (project.r != 0.0) {
                return Err(EwtError(format!("packed weight image: {}.project.r does not match the block", p)));
            }
            let dw = dw_shape(h, w, cmid, spec);
            max_act = max_act.max(h * w * cmid).max(dw.oh * dw.ow * cmid).max(dw.oh * dw.ow * spec.cout);
            blocks.push(QBlock {
                spec: *spec,
                expand,
                dw_w,
                dw_s,
                dw_c,
                dw,
                project,
            });
            h = dw.oh;
            w = dw.ow;
        }
        let last = specs[specs.len() - 1].cout;
        let feat = img.count("head.s").unwrap_or(0);
        let classes = img.meta("classes").and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
        if feat == 0 || feat % KSTEP != 0 || classes == 0 {
            return Err(EwtError("packed weight image: bad head or classifier sizes".to_string()));
        }
        let head = QGemm::from_image(img, "head", last, feat)?;
        let fc = QGemm::from_image(img, "fc", feat, classes)?;
        max_act = max_act.max(h * w * feat);
        let pool_s = img.f32s("pool.s", 1)?[0];
        Ok(QNetwork {
            in_h,
            in_w,
            inv,
            zero,
            stem,
            stem_shape: (oh, ow, pt, pl),
            blocks,
            head,
            fc,
            pool_s,
            final_pixels: h * w,
            sizes: (in_h * in_w * 3, oh * ow * COLS, max_act),
            qin: Vec::new(),
            cols: Vec::new(),
            buf_x: Vec::new(),
            buf_e: Vec::new(),
            buf_d: Vec::new(),
            pooled: vec![0; feat],
            logits: vec![0.0; classes],
            scratch: Scratch::default(),
            profile: [0.0; 5],
            layers: Vec::new(),
        })
    }

    pub fn classes(&self) -> usize {
        self.logits.len()
    }

    /// The names of `layers`' entries.
    pub fn layer_names(&self) -> Vec<String> {
        let mut v = vec!["stem".to_string()];
        for (i, b) in self.blocks.iter().enumerate() {
            if b.expand.is_some() {
                v.push(format!("b{}.expand", i));
            }
            v.push(format!("b{}.dw", i));
            v.push(format!("b{}.project", i));
        }
        v.push("head+pool+fc".to_string());
        v
    }

    /// Runs one normalised `h x w x 3` f32 NHWC image and returns the logits.
    pub fn forward(&mut self, input: &[f32]) -> Result<&[f32], EwtError> {
        let need = self.in_h * self.in_w * 3;
        if input.len() != need {
            return Err(EwtError(format!("input has {} values, the network expects {}", input.len(), need)));
        }
        if self.qin.is_empty() {
            let (qin, cols, act) = self.sizes;
            self.qin = vec![0; qin];
            self.cols = vec![0; cols];
            self.buf_x = vec![0; act];
            self.buf_e = vec![0; act];
            self.buf_d = vec![0; act];
            self.layers = Vec::with_capacity(2 + 3 * self.blocks.len());
        }
        let mut prof = [0.0f64; 5];
        let mut clock = std::time::Instant::now();
        self.layers.clear();
        let layers = &mut self.layers;
        let mut lap = |slot: usize, prof: &mut [f64; 5]| {
            let now = std::time::Instant::now();
            let ms = (now - clock).as_secs_f64() * 1e3;
            prof[slot] += ms;
            layers.push(ms);
            clock = now;
        };
        quantize(input, self.inv, self.zero, &mut self.qin);
        let (oh, ow, pt, pl) = self.stem_shape;
        im2col_u8(&self.qin, self.in_h, self.in_w, oh, ow, pt, pl, self.zero as u8, &mut self.cols);
        let c0 = self.stem.cout;
        gemm(&self.cols, oh * ow, COLS, &self.stem, Out::Q(&mut self.buf_x, c0), None, &mut self.scratch);
        lap(0, &mut prof);
        for b in &self.blocks {
            let s = &b.dw;
            let cmid = s.c;
            let dw_in: &[u8] = match &b.expand {
                Some(g) => {
                    gemm(&self.buf_x, s.h * s.w, b.spec.cin, g, Out::Q(&mut self.buf_e, cmid), None, &mut self.scratch);
                    lap(1, &mut prof);
                    &self.buf_e
                }
                None => &self.buf_x,
            };
            depthwise(dw_in, s, b.dw_w, b.dw_s, b.dw_c, &mut self.buf_d);
            lap(2, &mut prof);
            let res = if b.spec.residual() { Some((&self.buf_x[..], b.spec.cin)) } else { None };
            let cout = b.spec.cout;
            gemm(&self.buf_d, s.oh * s.ow, cmid, &b.project, Out::Q(&mut self.buf_e, cout), res, &mut self.scratch);
            lap(3, &mut prof);
            std::mem::swap(&mut self.buf_x, &mut self.buf_e);
        }
        let feat = self.head.cout;
        let last = self.head.cin;
        gemm(&self.buf_x, self.final_pixels, last, &self.head, Out::Q(&mut self.buf_e, feat), None, &mut self.scratch);
        for (ch, p) in self.pooled.iter_mut().enumerate() {
            let mut sum = 0u32;
            for px in 0..self.final_pixels {
                sum += self.buf_e[px * feat + ch] as u32;
            }
            *p = q7(sum as f32 * self.pool_s);
        }
        let classes = self.logits.len();
        gemm(&self.pooled, 1, feat, &self.fc, Out::F(&mut self.logits, classes), None, &mut self.scratch);
        lap(4, &mut prof);
        self.profile = prof;
        Ok(&self.logits)
    }
}

/// The stem's im2col on the quantized image: 27 values per output pixel (`[ky][kx][c]`), the zero point
/// where the window hangs over the SAME padding, then the zero point again up to `COLS` (zero weights).
#[allow(clippy::too_many_arguments)]
fn im2col_u8(inp: &[u8], h: usize, w: usize, oh: usize, ow: usize, pt: usize, pl: usize, zero: u8, out: &mut [u8]) {
    for oy in 0..oh {
        for ox in 0..ow {
            let dst = &mut out[(oy * ow + ox) * COLS..(oy * ow + ox + 1) * COLS];
            for v in dst.iter_mut() {
                *v = zero;
            }
            for ky in 0..STEM_K {
                let iy = (oy * 2 + ky) as isize - pt as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..STEM_K {
                    let ix = (ox * 2 + kx) as isize - pl as isize;
                    if ix < 0 || ix >= w as isize {
                        continue;
                    }
                    let s = (iy as usize * w + ix as usize) * 3;
                    let d = (ky * STEM_K + kx) * 3;
                    dst[d..d + 3].copy_from_slice(&inp[s..s + 3]);
                }
            }
        }
    }
}
