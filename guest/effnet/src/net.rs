//! The EfficientNet-Lite forward pass over a validated EWT file, with every buffer allocated once.

use std::borrow::Cow;

use crate::ewt::{BlockSpec, Ewt, EwtError};
use crate::image::Image;
use crate::kernels::{
    depthwise, gemm, im2col, im2col_width, mean_pool, stem_direct, DwShape, Epilogue, PackedGemm, NR,
    TILE_SCRATCH,
};

/// The `layout` meta value of a packed FP32 image.
pub const LAYOUT_FP32: &str = "fp32-v1";

/// Packs a `[cin][cout]` weight tensor (read in row chunks through `scratch`, straight into the panels)
/// and its bias; `cin_padded >= cin` rows, the extra ones zero (the stem's im2col width).
fn packed(
    ewt: &Ewt,
    w: &str,
    b: &str,
    cin_padded: usize,
    cout: usize,
    scratch: &mut Vec<f32>,
) -> Result<PackedGemm, EwtError> {
    let mut g = PackedGemm::zeroed(cin_padded, cout);
    ewt.read_rows(w, scratch, &mut |k0, rows| g.set_rows(k0, rows))?;
    let mut bias = vec![0.0f32; cout];
    ewt.read_into(b, &mut bias)?;
    g.set_bias(&bias);
    Ok(g)
}

/// A whole (small) tensor as a Vec, read in one go.
fn vector(ewt: &Ewt, name: &str, len: usize) -> Result<Vec<f32>, EwtError> {
    let mut v = vec![0.0f32; len];
    ewt.read_into(name, &mut v)?;
    Ok(v)
}

/// The block table chains (each block's cin is the previous block's cout) and is not empty.
pub fn check_chain(specs: &[BlockSpec]) -> Result<(), EwtError> {
    if specs.is_empty() {
        return Err(EwtError("the weights have no block table".to_string()));
    }
    for (i, w) in specs.windows(2).enumerate() {
        if w[1].cin != w[0].cout {
            return Err(EwtError(format!("block {} has cin {} after cout {}", i + 1, w[1].cin, w[0].cout)));
        }
    }
    for (i, b) in specs.iter().enumerate() {
        if !(b.kernel == 3 || b.kernel == 5) || !(b.stride == 1 || b.stride == 2) || b.expand == 0
            || b.cin == 0 || b.cout == 0 || b.cin * b.expand > 1 << 16 || b.cout > 1 << 16
        {
            return Err(EwtError(format!("block {} has unusable sizes {:?}", i, b)));
        }
    }
    Ok(())
}

/// A block's depthwise geometry on an `h x w` input.
pub fn dw_shape(h: usize, w: usize, c: usize, spec: &BlockSpec) -> DwShape {
    let (oh, pad_top) = same_pad(h, spec.kernel, spec.stride);
    let (ow, pad_left) = same_pad(w, spec.kernel, spec.stride);
    DwShape {
        h,
        w,
        c,
        k: spec.kernel,
        stride: spec.stride,
        oh,
        ow,
        pad_top,
        pad_left,
    }
}

/// TensorFlow SAME padding: (output size, padding before).
pub fn same_pad(input: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = (input + stride - 1) / stride;
    let total = ((out - 1) * stride + k).saturating_sub(input);
    (out, total / 2)
}

/// The activation buffers' lengths (f32s), each the largest value its role takes in this network (computed from
/// the layer shapes): `x` the block inputs and outputs (the stem's output, every project conv's output, written
/// in place over the input when the block is residual), `e` the expand convs' and the head's outputs and the
/// stem's im2col rows (free until the first expand; an expand output larger than `x` and `d` is computed in
/// strips of depthwise output rows, see `strip`), `d` the depthwise outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActSizes {
    pub x: usize,
    pub e: usize,
    pub d: usize,
}

/// Sizes while the blocks are added: the largest expand output and the least an expanded strip needs.
#[derive(Debug, Clone, Copy, Default)]
struct Sizing {
    sizes: ActSizes,
    expand: usize,
    strip: usize,
}

impl Sizing {
    /// For the stem's `stem_out` values and its `cols` im2col values.
    fn stem(stem_out: usize, cols: usize) -> Sizing {
        Sizing {
            sizes: ActSizes { x: stem_out, e: cols, d: 0 },
            expand: 0,
            strip: 0,
        }
    }
    /// Grows the sizes for a block on an `s.h x s.w` input.
    fn block(&mut self, spec: &BlockSpec, s: &DwShape) {
        let z = &mut self.sizes;
        let (pin, pout) = (s.h * s.w, s.oh * s.ow);
        z.x = z.x.max(pin * spec.cin).max(pout * spec.cout);
        if spec.expand != 1 {
            self.expand = self.expand.max(pin * spec.cmid());
            self.strip = self.strip.max(s.k.min(s.h) * s.w * spec.cmid());
        }
        z.d = z.d.max(pout * spec.cmid());
    }
    /// Grows them for the head's `pixels x feat` output.
    fn head(&mut self, pixels: usize, feat: usize) {
        self.sizes.e = self.sizes.e.max(pixels * feat);
    }
    /// The sizes: an expand output larger than both other buffers is computed in strips (`strip_rows`), so
    /// the expanded buffer need not exceed them (nor be less than one strip of `k` input rows).
    fn done(self) -> ActSizes {
        let mut z = self.sizes;
        z.e = z.e.max(self.expand.min(z.x.max(z.d))).max(self.strip);
        z
    }
}

/// Output rows per strip of a depthwise conv whose expanded input is computed `budget` input rows at a time
/// (at least one).
pub fn strip_rows(s: &DwShape, budget: usize) -> usize {
    (budget.saturating_sub(s.k) / s.stride + 1).max(1)
}

/// Output rows `oy0..oy1` of a depthwise conv as a conv of their own: the first input row their windows read
/// (`r0`) and the geometry over input rows `r0..r0 + h`; each window is clipped exactly as in the whole conv.
pub fn strip(s: &DwShape, oy0: usize, oy1: usize) -> (usize, DwShape) {
    let r0 = (oy0 * s.stride).saturating_sub(s.pad_top);
    let r1 = ((oy1 - 1) * s.stride + s.k - s.pad_top).min(s.h);
    let sub = DwShape {
        h: r1 - r0,
        oh: oy1 - oy0,
        pad_top: s.pad_top.saturating_sub(oy0 * s.stride),
        ..*s
    };
    (r0, sub)
}

struct Block {
    spec: BlockSpec,
    expand: Option<PackedGemm>,
    dw_w: Cow<'static, [f32]>,
    dw_b: Cow<'static, [f32]>,
    dw: DwShape,
    project: PackedGemm,
}

/// A ready-to-run network: packed weights plus preallocated activations for one input size.
pub struct Network {
    in_h: usize,
    in_w: usize,
    stem_k: usize,
    stem_shape: (usize, usize, usize, usize), // oh, ow, pad_top, pad_left
    stem: PackedGemm,
    blocks: Vec<Block>,
    head: PackedGemm,
    fc: PackedGemm,
    final_pixels: usize,
    /// Activation buffers, each sized for its role (`ActSizes`: block input/output, expanded, depthwise
    /// output; 5.2 MB for EfficientNet-Lite0 at 224 x 224, where three buffers of the largest activation took
    /// 14.5 MB and the im2col rows 1.4 MB more); allocated by the first forward pass, so that a network over
    /// mapped weights is ready without touching fresh memory.
    sizes: ActSizes,
    cols_len: usize,
    buf_x: Vec<f32>,
    buf_e: Vec<f32>,
    buf_d: Vec<f32>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
    apack: Vec<f32>,
    /// Milliseconds spent per layer kind in the last forward pass: stem, expand, depthwise, project, head+pool+fc.
    pub profile: [f64; 5],
}

impl Network {
    /// Builds the network for `in_h x in_w x 3` NHWC inputs (224 x 224 for EfficientNet-Lite0).
    pub fn new(ewt: &Ewt, in_h: usize, in_w: usize) -> Result<Network, EwtError> {
        if in_h == 0 || in_w == 0 {
            return Err(EwtError("input size must be nonzero".to_string()));
        }
        // Tensor shapes were checked against the block table by `Ewt`'s validation.
        let mut scratch: Vec<f32> = Vec::new();
        let sw_shape = ewt.shape("stem.w")?.to_vec();
        let stem_k = sw_shape[0];
        let c0 = sw_shape[3];
        // The im2col rows are padded to a multiple of 4 columns; the extra weight rows are zero.
        let cols_w = im2col_width(stem_k, 3);
        let stem = packed(ewt, "stem.w", "stem.b", cols_w, c0, &mut scratch)?;
        let (oh, pt) = same_pad(in_h, stem_k, 2);
        let (ow, pl) = same_pad(in_w, stem_k, 2);
        let mut sizes = Sizing::stem(oh * ow * c0, oh * ow * cols_w);
        let (mut h, mut w) = (oh, ow);
        let mut blocks = Vec::new();
        for (i, spec) in ewt.blocks().iter().enumerate() {
            let cmid = spec.cmid();
            let expand = if spec.expand != 1 {
                Some(packed(
                    ewt,
                    &format!("blocks.{}.expand.w", i),
                    &format!("blocks.{}.expand.b", i),
                    spec.cin,
                    cmid,
                    &mut scratch,
                )?)
            } else {
                None
            };
            let dw_w = vector(ewt, &format!("blocks.{}.dw.w", i), spec.kernel * spec.kernel * cmid)?;
            let dw_b = vector(ewt, &format!("blocks.{}.dw.b", i), cmid)?;
            let project = packed(
                ewt,
                &format!("blocks.{}.project.w", i),
                &format!("blocks.{}.project.b", i),
                cmid,
                spec.cout,
                &mut scratch,
            )?;
            let (doh, dpt) = same_pad(h, spec.kernel, spec.stride);
            let (dow, dpl) = same_pad(w, spec.kernel, spec.stride);
            let dw = DwShape {
                h,
                w,
                c: cmid,
                k: spec.kernel,
                stride: spec.stride,
                oh: doh,
                ow: dow,
                pad_top: dpt,
                pad_left: dpl,
            };
            sizes.block(spec, &dw);
            blocks.push(Block {
                spec: *spec,
                expand,
                dw_w: Cow::Owned(dw_w),
                dw_b: Cow::Owned(dw_b),
                dw,
                project,
            });
            h = doh;
            w = dow;
        }
        let hs = ewt.shape("head.w")?.to_vec();
        let head = packed(ewt, "head.w", "head.b", hs[0], hs[1], &mut scratch)?;
        sizes.head(h * w, hs[1]);
        let fs = ewt.shape("fc.w")?.to_vec();
        let fc = packed(ewt, "fc.w", "fc.b", fs[0], fs[1], &mut scratch)?;
        drop(scratch);
        Ok(Network {
            in_h,
            in_w,
            stem_k,
            stem_shape: (oh, ow, pt, pl),
            stem,
            blocks,
            final_pixels: h * w,
            sizes: sizes.done(),
            cols_len: oh * ow * cols_w,
            buf_x: Vec::new(),
            buf_e: Vec::new(),
            buf_d: Vec::new(),
            pooled: vec![0.0; hs[1]],
            logits: vec![0.0; fs[1]],
            profile: [0.0; 5],
            apack: Vec::with_capacity(TILE_SCRATCH),
            head,
            fc,
        })
    }

    /// Builds the network over a packed FP32 image (`layout fp32-v1`), using its panels in place: nothing is
    /// read or repacked, so a mapped image makes this take microseconds.
    pub fn from_image(img: &Image, in_h: usize, in_w: usize) -> Result<Network, EwtError> {
        if img.meta("layout") != Some(LAYOUT_FP32) {
            return Err(EwtError(format!(
                "packed weight image has layout {:?}, this network reads {}",
                img.meta("layout").unwrap_or("none"),
                LAYOUT_FP32
            )));
        }
        let specs = img.blocks().to_vec();
        check_chain(&specs)?;
        let gemm_of = |name: &str, cin: usize, cout: usize| -> Result<PackedGemm, EwtError> {
            let panels = (cout + NR - 1) / NR;
            let w = img.f32s(&format!("{}.w", name), panels * cin * NR)?;
            let b = img.f32s(&format!("{}.b", name), panels * NR)?;
            PackedGemm::mapped(cin, cout, w, b)
                .ok_or_else(|| EwtError(format!("packed weight image: {} is not aligned for the kernels", name)))
        };
        let stem_k = 3;
        let c0 = specs[0].cin;
        let cols_w = im2col_width(stem_k, 3);
        let stem = gemm_of("stem", cols_w, c0)?;
        let (oh, pt) = same_pad(in_h, stem_k, 2);
        let (ow, pl) = same_pad(in_w, stem_k, 2);
        let mut sizes = Sizing::stem(oh * ow * c0, oh * ow * cols_w);
        let (mut h, mut w) = (oh, ow);
        let mut blocks = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let cmid = spec.cmid();
            let p = format!("blocks.{}", i);
            let expand = if spec.expand != 1 {
                Some(gemm_of(&format!("{}.expand", p), spec.cin, cmid)?)
            } else {
                None
            };
            let dw_w = img.f32s(&format!("{}.dw.w", p), spec.kernel * spec.kernel * cmid)?;
            let dw_b = img.f32s(&format!("{}.dw.b", p), (cmid + NR - 1) / NR * NR)?;
            let project = gemm_of(&format!("{}.project", p), cmid, spec.cout)?;
            let dw = dw_shape(h, w, cmid, spec);
            sizes.block(spec, &dw);
            blocks.push(Block {
                spec: *spec,
                expand,
                dw_w: Cow::Borrowed(dw_w),
                dw_b: Cow::Borrowed(&dw_b[..cmid]),
                dw,
                project,
            });
            h = dw.oh;
            w = dw.ow;
        }
        let last = specs[specs.len() - 1].cout;
        let feat = img.count("head.b").unwrap_or(0);
        let head = gemm_of("head", last, feat)?;
        sizes.head(h * w, feat);
        let classes = img.meta("classes").and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
        let fc = gemm_of("fc", feat, classes)?;
        Ok(Network {
            in_h,
            in_w,
            stem_k,
            stem_shape: (oh, ow, pt, pl),
            stem,
            blocks,
            final_pixels: h * w,
            sizes: sizes.done(),
            cols_len: oh * ow * cols_w,
            buf_x: Vec::new(),
            buf_e: Vec::new(),
            buf_d: Vec::new(),
            pooled: vec![0.0; feat],
            logits: vec![0.0; classes],
            profile: [0.0; 5],
            apack: Vec::with_capacity(TILE_SCRATCH),
            head,
            fc,
        })
    }

    /// Input shape `(h, w, 3)`.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        (self.in_h, self.in_w, 3)
    }

    /// The activation buffers' lengths (f32s) the forward pass allocates.
    pub fn act_sizes(&self) -> ActSizes {
        self.sizes
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.logits.len()
    }

    /// Runs one image (`h x w x 3` f32 NHWC, already normalised) and returns the logits.
    pub fn forward(&mut self, input: &[f32]) -> Result<&[f32], EwtError> {
        let need = self.in_h * self.in_w * 3;
        if input.len() != need {
            return Err(EwtError(format!(
                "input has {} values, the network expects {}x{}x3 = {}",
                input.len(),
                self.in_h,
                self.in_w,
                need
            )));
        }
        if self.buf_x.is_empty() {
            let s = self.sizes;
            self.buf_x = vec![0.0; s.x];
            self.buf_e = vec![0.0; s.e];
            self.buf_d = vec![0.0; s.d];
        }
        let mut prof = [0.0f64; 5];
        let mut clock = std::time::Instant::now();
        let mut lap = |slot: usize, prof: &mut [f64; 5]| {
            let now = std::time::Instant::now();
            prof[slot] += (now - clock).as_secs_f64() * 1e3;
            clock = now;
        };
        let (oh, ow, pt, pl) = self.stem_shape;
        // The stem: one direct conv read from the image (csrc/f32.c, SIMD builds), else im2col rows and the GEMM.
        let direct = self.stem_k == 3
            && stem_direct(input, self.in_h, self.in_w, pt, pl, oh, ow, &self.stem, &mut self.buf_x);
        if !direct {
            im2col(
                input,
                self.in_h,
                self.in_w,
                3,
                self.stem_k,
                2,
                oh,
                ow,
                pt,
                pl,
                &mut self.buf_e[..self.cols_len],
            );
            gemm(
                &self.buf_e[..self.cols_len],
                oh * ow,
                &self.stem,
                &mut self.buf_x,
                None,
                Epilogue::Relu6,
                &mut self.apack,
            );
        }
        lap(0, &mut prof);
        for b in &self.blocks {
            let s = &b.dw;
            let pixels_in = s.h * s.w;
            let pixels_out = s.oh * s.ow;
            // expand: x -> e (or read x directly when there is no expand conv)
            match &b.expand {
                Some(g) if pixels_in * g.cout > self.buf_e.len() => {
                    // Larger than the expanded buffer: in strips of output rows, each from the expanded input
                    // rows its windows read (`strip`); every value is computed as in one pass.
                    let cin = b.spec.cin;
                    let n = strip_rows(s, self.buf_e.len() / (s.w * g.cout));
                    let mut oy0 = 0;
                    while oy0 < s.oh {
                        let oy1 = (oy0 + n).min(s.oh);
                        let (r0, sub) = strip(s, oy0, oy1);
                        let x = &self.buf_x[r0 * s.w * cin..(r0 + sub.h) * s.w * cin];
                        gemm(x, sub.h * s.w, g, &mut self.buf_e, None, Epilogue::Relu6, &mut self.apack);
                        lap(1, &mut prof);
                        let d = &mut self.buf_d[oy0 * s.ow * s.c..];
                        depthwise(&self.buf_e, &sub, &b.dw_w, &b.dw_b, d);
                        lap(2, &mut prof);
                        oy0 = oy1;
                    }
                }
                Some(g) => {
                    gemm(&self.buf_x, pixels_in, g, &mut self.buf_e, None, Epilogue::Relu6, &mut self.apack);
                    lap(1, &mut prof);
                    depthwise(&self.buf_e, s, &b.dw_w, &b.dw_b, &mut self.buf_d);
                    lap(2, &mut prof);
                }
                None => {
                    depthwise(&self.buf_x, s, &b.dw_w, &b.dw_b, &mut self.buf_d);
                    lap(2, &mut prof);
                }
            }
            // project: d -> x, added in place to x (the block's input) when the block is residual, else over
            // it (x is dead once the expand or depthwise conv has read it).
            let ep = if b.spec.residual() {
                Epilogue::ResidualInPlace
            } else {
                Epilogue::Linear
            };
            gemm(&self.buf_d, pixels_out, &b.project, &mut self.buf_x, None, ep, &mut self.apack);
            lap(3, &mut prof);
        }
        gemm(
            &self.buf_x,
            self.final_pixels,
            &self.head,
            &mut self.buf_e,
            None,
            Epilogue::Relu6,
            &mut self.apack,
        );
        mean_pool(&self.buf_e, self.final_pixels, self.head.cout, &mut self.pooled);
        gemm(
            &self.pooled,
            1,
            &self.fc,
            &mut self.logits,
            None,
            Epilogue::Linear,
            &mut self.apack,
        );
        lap(4, &mut prof);
        self.profile = prof;
        Ok(&self.logits)
    }
}
