//! Image decoding and the classifier's preprocessing, implementing the "Preprocessing spec" of
//! docs/models.md exactly: shorter side to 256 (rounded half up), centre crop 224, separable antialiased
//! bicubic (a = -0.5, PIL's coefficients computed in f64), horizontal pass first, clamp 0..255 once at the
//! end, then `(x - 127) / 128`. Output: f32 HWC `[224][224][3]`.
//!
//! Pixels travel as RGBX f32 (4 lanes per pixel, the 4th ignored) between the passes so that one pixel is
//! one `f32x4` in the simd128 build; the scalar build runs the same arithmetic lane by lane.

use std::fmt;

/// Side of the square network input.
pub const CROP: usize = 224;
/// The shorter side after resizing.
pub const RESIZE_SHORTER: usize = 256;
/// Largest accepted width or height (a guard against requests that would exhaust guest memory).
pub const MAX_DIM: usize = 8192;
/// Normalisation constants from tensorflow/tpu's EfficientNet-Lite builder.
pub const MEAN: f32 = 127.0;
pub const STD: f32 = 128.0;

/// Why an image was refused: a malformed request (sizes, values), undecodable bytes, or an image whose decoding
/// or preprocessing needs more memory than the guest can get (found before allocating, so the guest answers
/// instead of aborting: Rust aborts, a wasm trap, when an infallible allocation fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionError {
    BadRequest(String),
    Decode(String),
    OutOfMemory(String),
}

impl fmt::Display for VisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VisionError::BadRequest(m) | VisionError::Decode(m) | VisionError::OutOfMemory(m) => f.write_str(m),
        }
    }
}

/// What to do about an image the guest's memory cannot hold.
const MEMORY_HINT: &str = "send a smaller image (the network sees 224x224) or raise the guest's memory limit";

/// Fails unless `bytes` more can be allocated now. Freed at once: what the probe grew stays with the allocator,
/// so the allocations it stood for then succeed.
fn probe(bytes: usize, what: impl FnOnce() -> String) -> Result<(), VisionError> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes).map_err(|_| {
        VisionError::OutOfMemory(format!("{} needs about {} MB, more than the guest's memory allows: {}", what(), bytes >> 20, MEMORY_HINT))
    })
}

/// `v` resized to `n` zeros, fallibly.
fn resize_or_fail<T: Clone + Default>(v: &mut Vec<T>, n: usize, what: &str) -> Result<(), VisionError> {
    if n > v.len() && v.try_reserve(n - v.len()).is_err() {
        let mb = (n * std::mem::size_of::<T>()) >> 20;
        return Err(VisionError::OutOfMemory(format!("{} needs {} MB more than the guest's memory allows: {}", what, mb, MEMORY_HINT)));
    }
    v.resize(n, T::default());
    Ok(())
}

/// Whether a JPEG is progressive (its decoder then keeps every coefficient: more memory). Walks the markers up
/// to the frame header; anything unreadable counts as progressive (the larger estimate).
fn jpeg_is_progressive(b: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xff {
            return true;
        }
        let m = b[i + 1];
        match m {
            0xff => i += 1,
            0x01 | 0xd0..=0xd8 => i += 2,
            0xc2 | 0xc6 | 0xca | 0xce => return true,
            0xc0 | 0xc1 | 0xc3 | 0xc5 | 0xc7 | 0xc9 | 0xcb | 0xcd | 0xcf => return false,
            0xda => return true,
            _ => i += 2 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]])),
        }
    }
    true
}

/// The decode's peak memory beyond the request: the decoded buffer (`total` bytes) plus the decoder's own (for
/// JPEG: its output and component planes, and a progressive image's coefficients), or the 8-bit RGB copy made
/// afterwards, whichever is more, plus 1 MiB of working buffers.
fn decode_peak(format: image::ImageFormat, bytes: &[u8], total: usize, rgb: usize) -> usize {
    let during = match format {
        image::ImageFormat::Jpeg if jpeg_is_progressive(bytes) => total.saturating_mul(6),
        image::ImageFormat::Jpeg => total.saturating_mul(4),
        _ => total.saturating_add(total / 8),
    };
    during.max(total.saturating_add(rgb)).saturating_add(1 << 20)
}

/// Decodes with the limits of [`decode`], after checking that the guest can hold what decoding will allocate.
fn decode_checked<'a, D: image::ImageDecoder<'a>>(
    mut decoder: D,
    format: image::ImageFormat,
    bytes: &[u8],
) -> image::ImageResult<Result<image::DynamicImage, VisionError>> {
    if let Err(e) = check_limits(&mut decoder, format, bytes)? {
        return Ok(Err(e));
    }
    image::DynamicImage::from_decoder(decoder).map(Ok)
}

/// [`decode_checked`] for a JPEG: an 8-bit RGB one (every colour JPEG) is taken in the decoder's own buffer, which
/// `into_reader` hands over as it is; `DynamicImage::from_decoder` would zero a buffer of the image's size and copy
/// the decoder's into it. The same pixels, the same checks.
fn decode_jpeg_checked(
    mut decoder: image::codecs::jpeg::JpegDecoder<std::io::Cursor<&[u8]>>,
    bytes: &[u8],
) -> image::ImageResult<Result<image::DynamicImage, VisionError>> {
    use image::ImageDecoder;
    use std::io::Read;
    if decoder.color_type() != image::ColorType::Rgb8 {
        return decode_checked(decoder, image::ImageFormat::Jpeg, bytes);
    }
    if let Err(e) = check_limits(&mut decoder, image::ImageFormat::Jpeg, bytes)? {
        return Ok(Err(e));
    }
    let (w, h) = decoder.dimensions();
    let mut data = Vec::new();
    decoder.into_reader()?.read_to_end(&mut data).map_err(image::ImageError::IoError)?;
    match image::RgbImage::from_raw(w, h, data) {
        Some(buf) => Ok(Ok(image::DynamicImage::ImageRgb8(buf))),
        None => Err(image::ImageError::Decoding(image::error::DecodingError::new(
            image::ImageFormat::Jpeg.into(),
            "the decoded image is smaller than its size says",
        ))),
    }
}

/// The limits of [`decode`] set on `decoder`, then whether the guest can hold what decoding will allocate.
fn check_limits<'a, D: image::ImageDecoder<'a>>(
    decoder: &mut D,
    format: image::ImageFormat,
    bytes: &[u8],
) -> image::ImageResult<Result<(), VisionError>> {
    let (w, h) = decoder.dimensions();
    let mut limits = image::io::Limits::default();
    limits.max_image_width = Some(MAX_DIM as u32);
    limits.max_image_height = Some(MAX_DIM as u32);
    limits.max_alloc = Some(512 * 1024 * 1024);
    limits.reserve(decoder.total_bytes())?;
    decoder.set_limits(limits)?;
    let total = usize::try_from(decoder.total_bytes()).unwrap_or(usize::MAX);
    let rgb = (w as usize).saturating_mul(h as usize).saturating_mul(3);
    let rgb8 = decoder.color_type() == image::ColorType::Rgb8;
    let peak = decode_peak(format, bytes, total, if rgb8 { 0 } else { rgb });
    Ok(probe(peak, || format!("decoding this {}x{} {:?} image", w, h, format)))
}

impl std::error::Error for VisionError {}

/// A decoded 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Checks `width x height x 3 == len` and the size limits.
pub fn check_size(width: usize, height: usize, len: usize, what: &str) -> Result<(), VisionError> {
    if width == 0 || height == 0 {
        return Err(VisionError::BadRequest(format!("{}: image size {}x{} must be nonzero", what, width, height)));
    }
    if width > MAX_DIM || height > MAX_DIM {
        return Err(VisionError::BadRequest(format!(
            "{}: image size {}x{} exceeds the limit of {}x{}",
            what, width, height, MAX_DIM, MAX_DIM
        )));
    }
    if width * height * 3 != len {
        return Err(VisionError::BadRequest(format!(
            "{}: width * height * 3 = {} * {} * 3 = {} but {} values were given",
            what,
            width,
            height,
            width * height * 3,
            len
        )));
    }
    Ok(())
}

/// Decodes JPEG or PNG bytes to 8-bit RGB: gray is replicated, alpha dropped, 16-bit samples keep their
/// high byte, EXIF orientation ignored (as the spec says).
pub fn decode(bytes: &[u8]) -> Result<RgbImage, VisionError> {
    use image::{DynamicImage, ImageFormat};
    if bytes.is_empty() {
        return Err(VisionError::Decode("image is empty (0 bytes)".to_string()));
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ ImageFormat::Jpeg) | Ok(f @ ImageFormat::Png) => f,
        Ok(f) => return Err(VisionError::Decode(format!("unsupported image format {:?}: only JPEG and PNG are accepted", f))),
        Err(_) => return Err(VisionError::Decode("image is neither JPEG nor PNG (unrecognised signature)".to_string())),
    };
    let cursor = std::io::Cursor::new(bytes);
    let decoded = match format {
        ImageFormat::Png => image::codecs::png::PngDecoder::new(cursor).and_then(|d| decode_checked(d, format, bytes)),
        _ => image::codecs::jpeg::JpegDecoder::new(cursor).and_then(|d| decode_jpeg_checked(d, bytes)),
    };
    let img = decoded.map_err(|e| VisionError::Decode(format!("cannot decode {:?} image: {}", format, e)))??;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 || w > MAX_DIM || h > MAX_DIM {
        return Err(VisionError::Decode(format!("image size {}x{} outside 1..{}", w, h, MAX_DIM)));
    }
    let img = match img {
        // Already 8-bit RGB (every colour JPEG, most PNGs): kept as it is, no copy.
        DynamicImage::ImageRgb8(b) => return Ok(RgbImage { width: w, height: h, data: b.into_raw() }),
        other => other,
    };
    let n = w * h;
    let mut data = Vec::new();
    resize_or_fail(&mut data, n * 3, "converting the image to 8-bit RGB")?;
    fn fill<T: Copy, F: Fn(&[T]) -> [u8; 3]>(src: &[T], ch: usize, out: &mut [u8], f: F) {
        for (px, o) in src.chunks_exact(ch).zip(out.chunks_exact_mut(3)) {
            o.copy_from_slice(&f(px));
        }
    }
    match &img {
        DynamicImage::ImageRgba8(b) => fill(b.as_raw(), 4, &mut data, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(b) => fill(b.as_raw(), 1, &mut data, |p| [p[0], p[0], p[0]]),
        DynamicImage::ImageLumaA8(b) => fill(b.as_raw(), 2, &mut data, |p| [p[0], p[0], p[0]]),
        DynamicImage::ImageRgb16(b) => fill(b.as_raw(), 3, &mut data, |p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]),
        DynamicImage::ImageRgba16(b) => fill(b.as_raw(), 4, &mut data, |p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]),
        DynamicImage::ImageLuma16(b) => fill(b.as_raw(), 1, &mut data, |p| [(p[0] >> 8) as u8; 3]),
        DynamicImage::ImageLumaA16(b) => fill(b.as_raw(), 2, &mut data, |p| [(p[0] >> 8) as u8; 3]),
        other => data.copy_from_slice(other.to_rgb8().as_raw()),
    }
    Ok(RgbImage { width: w, height: h, data })
}

/// `(new_width, new_height)`: the shorter side becomes 256, the longer one is rounded half up.
pub fn resized_size(width: usize, height: usize) -> (usize, usize) {
    let s = RESIZE_SHORTER as u64;
    let (w, h) = (width as u64, height as u64);
    if width <= height {
        (RESIZE_SHORTER, ((2 * h * s + w) / (2 * w)) as usize)
    } else {
        (((2 * w * s + h) / (2 * h)) as usize, RESIZE_SHORTER)
    }
}

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Resampling weights for output indices `first..first+count` of an `in_size -> out_size` resize:
/// for output `o`, the input window starts at `starts[o]` and its weights are
/// `weights[offs[o]..offs[o + 1]]` (normalised in f64, stored as f32).
#[derive(Debug, Default, Clone)]
pub struct AxisWeights {
    pub starts: Vec<usize>,
    pub offs: Vec<usize>,
    pub weights: Vec<f32>,
}

impl AxisWeights {
    pub fn compute(&mut self, in_size: usize, out_size: usize, first: usize, count: usize) {
        self.starts.clear();
        self.offs.clear();
        self.weights.clear();
        self.offs.push(0);
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 2.0 * filterscale;
        let mut tmp: Vec<f64> = Vec::new();
        for o in first..first + count {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size);
            tmp.clear();
            for i in lo..hi {
                tmp.push(bicubic((i as f64 - center + 0.5) / filterscale));
            }
            let total: f64 = tmp.iter().sum();
            for &w in &tmp {
                self.weights.push(if total != 0.0 { (w / total) as f32 } else { w as f32 });
            }
            self.starts.push(lo);
            self.offs.push(self.weights.len());
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))] // the scalar build's
    fn window(&self, o: usize) -> (usize, &[f32]) {
        (self.starts[o], &self.weights[self.offs[o]..self.offs[o + 1]])
    }
}

/// Where [`Preprocessor::run_into`] writes the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[224][224][3]`, pixel after pixel (the pure-Wasm guest's kernels read this).
    Hwc,
    /// `[3][224][224]`, one plane per channel (what the ONNX / OpenVINO models take): written directly, so the
    /// WASI-NN guest needs no transposing pass of its own.
    Chw,
}

/// Reusable scratch space for the preprocessing of one image after another. The resampling weights are kept for
/// the next image of the same size (the same camera, the same photo again), which skips their f64 computation.
#[derive(Debug, Default)]
pub struct Preprocessor {
    wx: AxisWeights,
    wy: AxisWeights,
    // Every weight repeated 4 times (one `f32x4` per tap, no splat in the inner loops); same order as `weights`.
    wx4: Vec<f32>,
    wy4: Vec<f32>,
    size: Option<(usize, usize)>, // the (width, height) the weights are for
    row: Vec<f32>,   // one input row as RGBX f32
    horiz: Vec<f32>, // a ring of horizontally filtered rows, [widest vertical window][224][4]
    slots: Vec<usize>, // where in `horiz` the rows of the current vertical window start
    vert: Vec<f32>,  // [224][4], one output row before normalisation
}

/// Source pixels: either 8-bit or float RGB, `width x height x 3`, row-major.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

fn splat4(ws: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(ws.iter().flat_map(|&w| [w; 4]));
}

impl Preprocessor {
    pub fn new() -> Preprocessor {
        Preprocessor::default()
    }

    /// Resize + crop + normalise `width x height` RGB pixels into `out` (f32 `[224][224][3]`).
    pub fn run(&mut self, px: Pixels<'_>, width: usize, height: usize, out: &mut [f32]) -> Result<(), VisionError> {
        self.run_into(px, width, height, out, Layout::Hwc)
    }

    /// [`Preprocessor::run`] writing `out` in `layout`. Every value is the same f32 whichever the layout, and the
    /// same in the simd128 and the scalar build: each output sums its taps in the spec's order, from 0.
    pub fn run_into(&mut self, px: Pixels<'_>, width: usize, height: usize, out: &mut [f32], layout: Layout) -> Result<(), VisionError> {
        let (len, what) = match px {
            Pixels::U8(d) => (d.len(), "pixels"),
            Pixels::F32(d) => (d.len(), "image_data"),
        };
        check_size(width, height, len, what)?;
        if let Pixels::F32(d) = px {
            if let Some(i) = d.iter().position(|v| !v.is_finite()) {
                return Err(VisionError::BadRequest(format!("image_data[{}] is not a finite number", i)));
            }
        }
        if out.len() != CROP * CROP * 3 {
            return Err(VisionError::BadRequest(format!("output buffer has {} values, expected {}", out.len(), CROP * CROP * 3)));
        }
        if self.size != Some((width, height)) {
            self.size = None;
            let (new_w, new_h) = resized_size(width, height);
            self.wx.compute(width, new_w, (new_w - CROP) / 2, CROP);
            self.wy.compute(height, new_h, (new_h - CROP) / 2, CROP);
            // The SIMD horizontal pass bounds every window by the last one's end: true of `compute`'s windows.
            let wx = &self.wx;
            let end = |o: usize| wx.starts[o] + wx.offs[o + 1] - wx.offs[o];
            assert!((0..CROP).all(|o| end(o) <= end(CROP - 1) && end(o) <= width));
            splat4(&self.wx.weights, &mut self.wx4);
            splat4(&self.wy.weights, &mut self.wy4);
            self.size = Some((width, height));
        }
        // Output rows in order, each from the horizontally filtered input rows of its window, kept in a ring of
        // as many rows as the widest window (windows only move down): a few rows stay in cache, not the image.
        let wy = &self.wy;
        let cap = (0..CROP).map(|o| wy.offs[o + 1] - wy.offs[o]).max().unwrap_or(1).max(1);
        let y_lo = wy.starts[0];
        let row_len = CROP * 4;
        resize_or_fail(&mut self.row, width * 4, "preprocessing")?;
        resize_or_fail(&mut self.horiz, cap * row_len, "preprocessing")?;
        resize_or_fail(&mut self.vert, row_len, "preprocessing")?;
        self.slots.clear();
        self.slots.reserve(cap);
        let plane = CROP * CROP;
        let mut next = y_lo; // the next input row to filter
        for y in 0..CROP {
            let (start, o0, o1) = (self.wy.starts[y], self.wy.offs[y], self.wy.offs[y + 1]);
            while next < start + (o1 - o0) {
                match px {
                    Pixels::U8(d) => imp::widen_u8(&d[next * width * 3..(next + 1) * width * 3], &mut self.row),
                    Pixels::F32(d) => {
                        for (o, p) in self.row.chunks_exact_mut(4).zip(d[next * width * 3..(next + 1) * width * 3].chunks_exact(3)) {
                            o[0] = p[0];
                            o[1] = p[1];
                            o[2] = p[2];
                            o[3] = 0.0;
                        }
                    }
                }
                let slot = (next - y_lo) % cap;
                imp::horizontal(&self.row, &self.wx, &self.wx4, &mut self.horiz[slot * row_len..(slot + 1) * row_len]);
                next += 1;
            }
            self.slots.clear();
            self.slots.extend((start..start + (o1 - o0)).map(|r| ((r - y_lo) % cap) * row_len));
            imp::weighted_sum_rows(&self.horiz, &self.slots, &self.wy4[o0 * 4..o1 * 4], &mut self.vert);
            match layout {
                Layout::Hwc => imp::clamp_normalise(&self.vert, &mut out[y * CROP * 3..(y + 1) * CROP * 3]),
                Layout::Chw => {
                    let (r, rest) = out.split_at_mut(plane);
                    let (g, b) = rest.split_at_mut(plane);
                    let row = y * CROP..(y + 1) * CROP;
                    imp::clamp_normalise_planes(&self.vert, &mut r[row.clone()], &mut g[row.clone()], &mut b[row]);
                }
            }
        }
        Ok(())
    }
}

/// Convenience: preprocess 8-bit RGB pixels into a new `[224][224][3]` vector.
pub fn preprocess_u8(data: &[u8], width: usize, height: usize) -> Result<Vec<f32>, VisionError> {
    let mut out = vec![0.0f32; CROP * CROP * 3];
    Preprocessor::new().run(Pixels::U8(data), width, height, &mut out)?;
    Ok(out)
}

/// `(x - 127) / 128` as a multiplication: 128 is a power of two, so both round to the same f32 (no result here
/// is subnormal: the clamped value is 0..255 and the nearest nonzero f32 difference from 127 is 2^-17).
const INV_STD: f32 = 1.0 / STD;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    use super::{AxisWeights, CROP, INV_STD, MEAN};

    /// RGB bytes -> RGBX f32 (X = 0).
    #[inline]
    pub fn widen_u8(src: &[u8], dst: &mut [f32]) {
        for (o, p) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
            o[0] = p[0] as f32;
            o[1] = p[1] as f32;
            o[2] = p[2] as f32;
            o[3] = 0.0;
        }
    }

    /// The horizontal pass of one RGBX row into `dst` (`[224][4]`): `dst[x] = sum_i w_i * row[start_x + i]`.
    #[inline]
    pub fn horizontal(row: &[f32], wx: &AxisWeights, _wx4: &[f32], dst: &mut [f32]) {
        for x in 0..CROP {
            let (start, ws) = wx.window(x);
            let src = &row[start * 4..(start + ws.len()) * 4];
            let mut acc = [0.0f32; 4];
            for (p, &w) in src.chunks_exact(4).zip(ws) {
                for l in 0..4 {
                    acc[l] += w * p[l];
                }
            }
            dst[x * 4..x * 4 + 4].copy_from_slice(&acc);
        }
    }

    /// `dst[k] = sum_j w_j * src[rows[j] + k]` for k < dst.len(); `ws4` holds every w_j 4 times.
    #[inline]
    pub fn weighted_sum_rows(src: &[f32], rows: &[usize], ws4: &[f32], dst: &mut [f32]) {
        for v in dst.iter_mut() {
            *v = 0.0;
        }
        for (&at, w) in rows.iter().zip(ws4.chunks_exact(4)) {
            let w = w[0];
            let row = &src[at..at + dst.len()];
            for (d, &s) in dst.iter_mut().zip(row) {
                *d += w * s;
            }
        }
    }

    #[inline]
    fn normalise(v: f32) -> f32 {
        (v.max(0.0).min(255.0) - MEAN) * INV_STD
    }

    /// RGBX row -> clamp to 0..255 -> (x - 127) / 128 -> RGB row.
    #[inline]
    pub fn clamp_normalise(src: &[f32], dst: &mut [f32]) {
        for (p, o) in src.chunks_exact(4).zip(dst.chunks_exact_mut(3)) {
            for l in 0..3 {
                o[l] = normalise(p[l]);
            }
        }
    }

    /// RGBX row -> clamp, normalise -> one row of each of the R, G and B planes.
    #[inline]
    pub fn clamp_normalise_planes(src: &[f32], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
        for (i, p) in src.chunks_exact(4).enumerate().take(r.len()) {
            r[i] = normalise(p[0]);
            g[i] = normalise(p[1]);
            b[i] = normalise(p[2]);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use super::{AxisWeights, CROP, INV_STD, MEAN};
    use core::arch::wasm32::*;

    /// RGB bytes -> RGBX f32 (X = 0), four pixels (12 bytes, read as 16) at a time, eight a loop iteration.
    /// Each level goes to the low byte of a 32-bit lane by a swizzle, and becomes a float as `bits(2^23 | v) -
    /// 2^23`, which is exactly `v` (v < 2^23). The plain integer conversion after two extends is what LLVM
    /// turns into one scalar conversion per lane, and that was 40% of the preprocessing.
    #[inline]
    pub fn widen_u8(src: &[u8], dst: &mut [f32]) {
        let n = src.len() / 3;
        assert!(dst.len() >= n * 4);
        let mut i = 0;
        // SAFETY: a 16-byte load at byte 3i needs 3i + 16 <= src.len(); stores stay below 4n <= dst.len().
        unsafe {
            #[inline(always)]
            unsafe fn four(s: *const u8, d: *mut f32) {
                // RGB RGB RGB RGB -> R000 G000 B000 0000 per pixel (a swizzle index >= 16 gives 0).
                const Z: u8 = 16;
                let v = v128_load(s as *const v128);
                let magic = u32x4_splat(0x4B00_0000);
                let two23 = f32x4_splat(8388608.0);
                let px = |p: v128| f32x4_sub(v128_or(p, magic), two23);
                v128_store(d as *mut v128, px(u8x16_swizzle(v, u8x16(0, Z, Z, Z, 1, Z, Z, Z, 2, Z, Z, Z, Z, Z, Z, Z))));
                v128_store(d.add(4) as *mut v128, px(u8x16_swizzle(v, u8x16(3, Z, Z, Z, 4, Z, Z, Z, 5, Z, Z, Z, Z, Z, Z, Z))));
                v128_store(d.add(8) as *mut v128, px(u8x16_swizzle(v, u8x16(6, Z, Z, Z, 7, Z, Z, Z, 8, Z, Z, Z, Z, Z, Z, Z))));
                v128_store(d.add(12) as *mut v128, px(u8x16_swizzle(v, u8x16(9, Z, Z, Z, 10, Z, Z, Z, 11, Z, Z, Z, Z, Z, Z, Z))));
            }
            while 3 * i + 28 <= src.len() {
                four(src.as_ptr().add(3 * i), dst.as_mut_ptr().add(4 * i));
                four(src.as_ptr().add(3 * i + 12), dst.as_mut_ptr().add(4 * i + 16));
                i += 8;
            }
            while 3 * i + 16 <= src.len() {
                four(src.as_ptr().add(3 * i), dst.as_mut_ptr().add(4 * i));
                i += 4;
            }
        }
        for (o, p) in dst[4 * i..4 * n].chunks_exact_mut(4).zip(src[3 * i..].chunks_exact(3)) {
            o[0] = p[0] as f32;
            o[1] = p[1] as f32;
            o[2] = p[2] as f32;
            o[3] = 0.0;
        }
    }

    /// The horizontal pass of one RGBX row: four output pixels at once when their windows have the same number
    /// of taps (all but a few near the borders), so that four independent sums are in flight. Windows of up to 8
    /// taps (every photo up to about 1.8x the network's resize) run fully unrolled: no loop inside, so no
    /// interrupt check either (the host's timeout adds one at every loop head, and spills the sums around it).
    #[inline]
    pub fn horizontal(row: &[f32], wx: &AxisWeights, wx4: &[f32], dst: &mut [f32]) {
        // The last window ends furthest right (`run_into` checked it when it computed the weights).
        let end = wx.starts[CROP - 1] + wx.offs[CROP] - wx.offs[CROP - 1];
        assert!(dst.len() >= CROP * 4 && wx4.len() == wx.weights.len() * 4 && wx.offs.len() > CROP && end * 4 <= row.len());
        let r = row.as_ptr();
        let w = wx4.as_ptr();
        let mut x = 0;
        // SAFETY: every window lies inside `row` (asserted above), weights inside `wx4`, outputs inside `dst`.
        unsafe {
            while x + 4 <= CROP {
                let n = wx.offs[x + 1] - wx.offs[x];
                if (1..4).all(|k| wx.offs[x + k + 1] - wx.offs[x + k] == n) {
                    let d = dst.as_mut_ptr().add(x * 4);
                    match n {
                        4 => quad::<4>(r, w, wx, x, d),
                        5 => quad::<5>(r, w, wx, x, d),
                        6 => quad::<6>(r, w, wx, x, d),
                        7 => quad::<7>(r, w, wx, x, d),
                        8 => quad::<8>(r, w, wx, x, d),
                        _ => quad_n(r, w, wx, x, n, d),
                    }
                    x += 4;
                } else {
                    one(r, w, wx, x, dst);
                    x += 1;
                }
            }
            while x < CROP {
                one(r, w, wx, x, dst);
                x += 1;
            }
        }
    }

    /// Four output pixels of the horizontal pass, windows of `N` taps each: the tap loop is unrolled.
    #[inline(always)]
    unsafe fn quad<const N: usize>(r: *const f32, w: *const f32, wx: &AxisWeights, x: usize, d: *mut f32) {
        let (s0, s1, s2, s3) = (wx.starts[x] * 4, wx.starts[x + 1] * 4, wx.starts[x + 2] * 4, wx.starts[x + 3] * 4);
        let (w0, w1, w2, w3) = (wx.offs[x] * 4, wx.offs[x + 1] * 4, wx.offs[x + 2] * 4, wx.offs[x + 3] * 4);
        let (mut a0, mut a1, mut a2, mut a3) = (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
        let mut t = 0;
        while t < N {
            let t4 = t * 4;
            a0 = f32x4_add(a0, f32x4_mul(v128_load(w.add(w0 + t4) as *const v128), v128_load(r.add(s0 + t4) as *const v128)));
            a1 = f32x4_add(a1, f32x4_mul(v128_load(w.add(w1 + t4) as *const v128), v128_load(r.add(s1 + t4) as *const v128)));
            a2 = f32x4_add(a2, f32x4_mul(v128_load(w.add(w2 + t4) as *const v128), v128_load(r.add(s2 + t4) as *const v128)));
            a3 = f32x4_add(a3, f32x4_mul(v128_load(w.add(w3 + t4) as *const v128), v128_load(r.add(s3 + t4) as *const v128)));
            t += 1;
        }
        v128_store(d as *mut v128, a0);
        v128_store(d.add(4) as *mut v128, a1);
        v128_store(d.add(8) as *mut v128, a2);
        v128_store(d.add(12) as *mut v128, a3);
    }

    /// [`quad`] for any number of taps (a loop).
    #[inline(never)]
    unsafe fn quad_n(r: *const f32, w: *const f32, wx: &AxisWeights, x: usize, n: usize, d: *mut f32) {
        let (s0, s1, s2, s3) = (wx.starts[x] * 4, wx.starts[x + 1] * 4, wx.starts[x + 2] * 4, wx.starts[x + 3] * 4);
        let (w0, w1, w2, w3) = (wx.offs[x] * 4, wx.offs[x + 1] * 4, wx.offs[x + 2] * 4, wx.offs[x + 3] * 4);
        let (mut a0, mut a1, mut a2, mut a3) = (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
        for t in 0..n {
            let t4 = t * 4;
            a0 = f32x4_add(a0, f32x4_mul(v128_load(w.add(w0 + t4) as *const v128), v128_load(r.add(s0 + t4) as *const v128)));
            a1 = f32x4_add(a1, f32x4_mul(v128_load(w.add(w1 + t4) as *const v128), v128_load(r.add(s1 + t4) as *const v128)));
            a2 = f32x4_add(a2, f32x4_mul(v128_load(w.add(w2 + t4) as *const v128), v128_load(r.add(s2 + t4) as *const v128)));
            a3 = f32x4_add(a3, f32x4_mul(v128_load(w.add(w3 + t4) as *const v128), v128_load(r.add(s3 + t4) as *const v128)));
        }
        v128_store(d as *mut v128, a0);
        v128_store(d.add(4) as *mut v128, a1);
        v128_store(d.add(8) as *mut v128, a2);
        v128_store(d.add(12) as *mut v128, a3);
    }

    /// One output pixel of the horizontal pass.
    #[inline]
    unsafe fn one(r: *const f32, w: *const f32, wx: &AxisWeights, x: usize, dst: &mut [f32]) {
        let (s, w0, n) = (wx.starts[x] * 4, wx.offs[x] * 4, wx.offs[x + 1] - wx.offs[x]);
        let mut acc = f32x4_splat(0.0);
        for t in 0..n {
            acc = f32x4_add(acc, f32x4_mul(v128_load(w.add(w0 + t * 4) as *const v128), v128_load(r.add(s + t * 4) as *const v128)));
        }
        v128_store(dst.as_mut_ptr().add(x * 4) as *mut v128, acc);
    }

    /// `dst[k] = sum_j w_j * src[rows[j] + k]`, 16 values (four sums in flight) at a time; up to 8 taps with
    /// the tap loop unrolled (see [`horizontal`]).
    #[inline]
    pub fn weighted_sum_rows(src: &[f32], rows: &[usize], ws4: &[f32], dst: &mut [f32]) {
        let n = dst.len();
        let taps = ws4.len() / 4;
        assert!(n % 16 == 0 && rows.len() == taps && rows.iter().all(|&r| r + n <= src.len()));
        // SAFETY: bounds asserted above.
        unsafe {
            match taps {
                4 => sum_rows::<4>(src, rows, ws4, dst),
                5 => sum_rows::<5>(src, rows, ws4, dst),
                6 => sum_rows::<6>(src, rows, ws4, dst),
                7 => sum_rows::<7>(src, rows, ws4, dst),
                8 => sum_rows::<8>(src, rows, ws4, dst),
                _ => sum_rows_n(src, rows, ws4, dst),
            }
        }
    }

    /// [`weighted_sum_rows`] for `N` taps: the row pointers and weights held across the whole row.
    #[inline(always)]
    unsafe fn sum_rows<const N: usize>(src: &[f32], rows: &[usize], ws4: &[f32], dst: &mut [f32]) {
        let mut p = [src.as_ptr(); N];
        let mut wv = [f32x4_splat(0.0); N];
        let mut j = 0;
        while j < N {
            p[j] = src.as_ptr().add(*rows.get_unchecked(j));
            wv[j] = v128_load(ws4.as_ptr().add(j * 4) as *const v128);
            j += 1;
        }
        let n = dst.len();
        let mut k = 0;
        while k < n {
            let (mut a0, mut a1, mut a2, mut a3) = (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
            let mut j = 0;
            while j < N {
                let q = p[j].add(k);
                a0 = f32x4_add(a0, f32x4_mul(wv[j], v128_load(q as *const v128)));
                a1 = f32x4_add(a1, f32x4_mul(wv[j], v128_load(q.add(4) as *const v128)));
                a2 = f32x4_add(a2, f32x4_mul(wv[j], v128_load(q.add(8) as *const v128)));
                a3 = f32x4_add(a3, f32x4_mul(wv[j], v128_load(q.add(12) as *const v128)));
                j += 1;
            }
            let d = dst.as_mut_ptr().add(k);
            v128_store(d as *mut v128, a0);
            v128_store(d.add(4) as *mut v128, a1);
            v128_store(d.add(8) as *mut v128, a2);
            v128_store(d.add(12) as *mut v128, a3);
            k += 16;
        }
    }

    #[inline(never)]
    unsafe fn sum_rows_n(src: &[f32], rows: &[usize], ws4: &[f32], dst: &mut [f32]) {
        let n = dst.len();
        let taps = ws4.len() / 4;
        let mut k = 0;
        while k < n {
            let (mut a0, mut a1, mut a2, mut a3) = (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
            for j in 0..taps {
                let wv = v128_load(ws4.as_ptr().add(j * 4) as *const v128);
                let p = src.as_ptr().add(*rows.get_unchecked(j) + k);
                a0 = f32x4_add(a0, f32x4_mul(wv, v128_load(p as *const v128)));
                a1 = f32x4_add(a1, f32x4_mul(wv, v128_load(p.add(4) as *const v128)));
                a2 = f32x4_add(a2, f32x4_mul(wv, v128_load(p.add(8) as *const v128)));
                a3 = f32x4_add(a3, f32x4_mul(wv, v128_load(p.add(12) as *const v128)));
            }
            let d = dst.as_mut_ptr().add(k);
            v128_store(d as *mut v128, a0);
            v128_store(d.add(4) as *mut v128, a1);
            v128_store(d.add(8) as *mut v128, a2);
            v128_store(d.add(12) as *mut v128, a3);
            k += 16;
        }
    }

    #[inline]
    fn normalise(v: v128) -> v128 {
        let v = f32x4_min(f32x4_max(v, f32x4_splat(0.0)), f32x4_splat(255.0));
        f32x4_mul(f32x4_sub(v, f32x4_splat(MEAN)), f32x4_splat(INV_STD))
    }

    #[inline]
    pub fn clamp_normalise(src: &[f32], dst: &mut [f32]) {
        assert!(src.len() / 4 * 3 <= dst.len());
        let mut t = [0.0f32; 4];
        for (i, o) in dst.chunks_exact_mut(3).enumerate().take(src.len() / 4) {
            // SAFETY: i * 4 + 4 <= src.len() by the `take` bound.
            unsafe {
                v128_store(t.as_mut_ptr() as *mut v128, normalise(v128_load(src.as_ptr().add(i * 4) as *const v128)));
            }
            o.copy_from_slice(&t[..3]);
        }
    }

    /// RGBX row -> clamp, normalise -> a row of each plane: four pixels at a time, transposed with shuffles,
    /// eight a loop iteration.
    #[inline]
    pub fn clamp_normalise_planes(src: &[f32], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
        let n = r.len();
        assert!(n % 8 == 0 && g.len() == n && b.len() == n && src.len() >= 4 * n);
        #[inline(always)]
        unsafe fn four(s: *const f32, r: *mut f32, g: *mut f32, b: *mut f32) {
            let p0 = normalise(v128_load(s as *const v128));
            let p1 = normalise(v128_load(s.add(4) as *const v128));
            let p2 = normalise(v128_load(s.add(8) as *const v128));
            let p3 = normalise(v128_load(s.add(12) as *const v128));
            let rg01 = i32x4_shuffle::<0, 4, 1, 5>(p0, p1); // r0 r1 g0 g1
            let rg23 = i32x4_shuffle::<0, 4, 1, 5>(p2, p3);
            let bx01 = i32x4_shuffle::<2, 6, 3, 7>(p0, p1); // b0 b1 x0 x1
            let bx23 = i32x4_shuffle::<2, 6, 3, 7>(p2, p3);
            v128_store(r as *mut v128, i32x4_shuffle::<0, 1, 4, 5>(rg01, rg23));
            v128_store(g as *mut v128, i32x4_shuffle::<2, 3, 6, 7>(rg01, rg23));
            v128_store(b as *mut v128, i32x4_shuffle::<0, 1, 4, 5>(bx01, bx23));
        }
        // SAFETY: bounds asserted above.
        unsafe {
            let mut i = 0;
            while i < n {
                let s = src.as_ptr().add(4 * i);
                four(s, r.as_mut_ptr().add(i), g.as_mut_ptr().add(i), b.as_mut_ptr().add(i));
                four(s.add(16), r.as_mut_ptr().add(i + 4), g.as_mut_ptr().add(i + 4), b.as_mut_ptr().add(i + 4));
                i += 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_spec() {
        assert_eq!(resized_size(451, 300), (385, 256));
        assert_eq!(resized_size(640, 427), (384, 256));
        assert_eq!(resized_size(512, 512), (256, 256));
        assert_eq!(resized_size(3, 2), (384, 256));
    }

    #[test]
    fn weights_match_the_spec_vectors() {
        let mut a = AxisWeights::default();
        a.compute(451, 385, 80, 1);
        assert_eq!(a.starts[0], 92);
        let want = [-0.04921853, 0.26634524, 0.79836641, -0.00991559, -0.00557752];
        assert_eq!(a.weights.len(), want.len());
        for (g, w) in a.weights.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-7, "{} vs {}", g, w);
        }
        a.compute(100, 256, 0, 1);
        assert_eq!(a.starts[0], 0);
        assert!((a.weights[0] as f64 - 1.09997696).abs() < 1e-7 && (a.weights[1] as f64 + 0.09997696).abs() < 1e-7);
    }

    #[test]
    fn synthetic_image_matches_the_spec_values() {
        let (w, h) = (451usize, 300usize);
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    px[(y * w + x) * 3 + c] = ((7 * x + 13 * y + 101 * c) % 256) as u8;
                }
            }
        }
        let out = preprocess_u8(&px, w, h).unwrap();
        let at = |y: usize, x: usize, c: usize| out[(y * CROP + x) * 3 + c] as f64;
        for (y, x, c, v) in [(0, 0, 0, 0.05192363), (0, 0, 1, 0.85896266), (100, 37, 2, -0.09959018), (223, 223, 0, 0.92905402), (111, 200, 1, 0.88602388)] {
            assert!((at(y, x, c) - v).abs() < 1e-4, "({},{},{}) {} vs {}", y, x, c, at(y, x, c), v);
        }
        let sum: f64 = out.iter().map(|&v| v as f64).sum();
        assert!((sum - 588.2135183).abs() < 0.05, "sum {}", sum);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(preprocess_u8(&[0; 9], 2, 2), Err(VisionError::BadRequest(_))));
        assert!(matches!(preprocess_u8(&[], 0, 5), Err(VisionError::BadRequest(_))));
        assert!(matches!(preprocess_u8(&[0; 3], 9000, 1), Err(VisionError::BadRequest(_))));
        assert!(matches!(decode(b"not an image"), Err(VisionError::Decode(_))));
    }

    #[test]
    fn memory_the_guest_cannot_get_is_an_error_not_an_abort() {
        let e = probe(usize::MAX / 2, || "decoding this 8192x8192 Png image".to_string()).unwrap_err();
        match e {
            VisionError::OutOfMemory(m) => {
                assert!(m.starts_with("decoding this 8192x8192 Png image needs about"), "{}", m);
                assert!(m.ends_with("raise the guest's memory limit"), "{}", m);
            }
            other => panic!("{:?}", other),
        }
        assert!(probe(1 << 20, String::new).is_ok());
        let mut v: Vec<f32> = vec![1.0];
        assert!(matches!(resize_or_fail(&mut v, usize::MAX / 8, "preprocessing"), Err(VisionError::OutOfMemory(_))));
        resize_or_fail(&mut v, 3, "preprocessing").unwrap();
        assert_eq!(v, [1.0, 0.0, 0.0]);
    }

    #[test]
    fn decode_peaks_cover_what_the_decoders_allocate() {
        // SOI, APP0 (length 16), then SOF0 (baseline) or SOF2 (progressive).
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend([0u8; 14]);
        let baseline = [&jpeg[..], &[0xff, 0xc0, 0x00, 0x11]].concat();
        let progressive = [&jpeg[..], &[0xff, 0xc2, 0x00, 0x11]].concat();
        assert!(!jpeg_is_progressive(&baseline));
        assert!(jpeg_is_progressive(&progressive));
        assert!(jpeg_is_progressive(&jpeg[..5]), "unreadable: the larger estimate");
        let (jpg, png) = (image::ImageFormat::Jpeg, image::ImageFormat::Png);
        assert_eq!(decode_peak(jpg, &baseline, 300, 0), 1200 + (1 << 20));
        assert_eq!(decode_peak(jpg, &progressive, 300, 0), 1800 + (1 << 20));
        // A gray PNG: the 8-bit RGB copy (3x) outweighs the decoder's buffer.
        assert_eq!(decode_peak(png, b"", 100, 300), 400 + (1 << 20));
        assert_eq!(decode_peak(png, b"", usize::MAX, 1), usize::MAX);
    }
}
