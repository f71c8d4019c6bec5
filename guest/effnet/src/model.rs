//! A network of either precision behind one interface, built from a packed image (mapped or read from a
//! file) or, for FP32, from an EWT file.

use std::io::Read;

use crate::ewt::EwtError;
use crate::image::{leak_aligned, Image};
use crate::net::{Network, LAYOUT_FP32};
use crate::q8::{QNetwork, LAYOUT_INT8};

pub enum Net {
    Fp32(Network),
    Int8(QNetwork),
}

impl Net {
    /// The network an image describes (its `layout` meta), for 224 x 224 x 3 inputs.
    pub fn from_image(img: &Image) -> Result<Net, EwtError> {
        match img.meta("layout") {
            Some(LAYOUT_FP32) => Ok(Net::Fp32(Network::from_image(img, 224, 224)?)),
            Some(LAYOUT_INT8) => Ok(Net::Int8(QNetwork::from_image(img, 224, 224)?)),
            other => Err(EwtError(format!("packed weight image of unknown layout {:?}", other.unwrap_or("none")))),
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Net::Fp32(n) => n.classes(),
            Net::Int8(n) => n.classes(),
        }
    }

    pub fn forward(&mut self, input: &[f32]) -> Result<&[f32], EwtError> {
        match self {
            Net::Fp32(n) => n.forward(input),
            Net::Int8(n) => n.forward(input),
        }
    }

    /// Milliseconds per layer kind in the last forward pass: stem, expand, depthwise, project, head+pool+fc.
    pub fn profile(&self) -> [f64; 5] {
        match self {
            Net::Fp32(n) => n.profile,
            Net::Int8(n) => n.profile,
        }
    }
}

/// Bytes per read of a packed image file.
pub const READ_CHUNK: usize = 1 << 20;

/// Reads a packed image file, whole, into an aligned buffer kept for the program's life, and parses it.
pub fn read_image(file: std::fs::File) -> Result<Image, EwtError> {
    read_image_into(file, |_| None)
}

/// Like `read_image`, reading into the buffer `place(len)` gives (`ALIGN`-aligned, exactly `len` bytes) when it
/// gives one, else into a fresh one.
pub fn read_image_into(
    mut file: std::fs::File,
    place: impl FnOnce(usize) -> Option<&'static mut [u8]>,
) -> Result<Image, EwtError> {
    let len = file
        .metadata()
        .map_err(|e| EwtError(format!("cannot read the packed weight image: {}", e)))?
        .len();
    let len = usize::try_from(len).map_err(|_| EwtError("packed weight image too large".to_string()))?;
    if len > 1 << 30 {
        return Err(EwtError(format!("packed weight image of {} bytes is too large", len)));
    }
    let buf = match place(len) {
        Some(b) => b,
        None => leak_aligned(len),
    };
    // In 1 MiB reads: the host serves each read through a buffer of its own as large as the read, so reading the
    // image whole would hold a second copy of it (18.5 MB for FP32) outside the guest while it loads.
    for chunk in buf.chunks_mut(READ_CHUNK) {
        file.read_exact(chunk).map_err(|e| EwtError(format!("cannot read the packed weight image: {}", e)))?;
    }
    Image::parse(buf)
}

/// The labels an image carries (`labels`: UTF-8 lines), if any.
pub fn image_labels(img: &Image) -> Result<Option<Vec<String>>, EwtError> {
    if img.count("labels").is_none() {
        return Ok(None);
    }
    let text = std::str::from_utf8(img.u8s("labels")?)
        .map_err(|_| EwtError("packed weight image: labels are not UTF-8".to_string()))?;
    Ok(Some(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect()))
}
