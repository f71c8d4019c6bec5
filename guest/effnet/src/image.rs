//! The packed weight image (EWP, written by `edgewasm.models._pack`): the weights already in the layout the
//! kernels read, used where they lie: in a bundled module's data segment (mapped by wasmtime, never copied)
//! or in a buffer the file was read into.
//!
//! `b"EWP1"`, u32 LE header length, a text header (`meta <key> <value>`, `block <i> <k> <stride> <expand>
//! <cin> <cout>`, `tensor <name> <dtype> <offset> <nbytes> <d0>x<d1>...`), the tensors at 256-byte aligned
//! offsets. Everything the networks rely on is checked here or by them: a wrong or truncated image is an
//! error, never a panic or an out-of-bounds read.

use std::collections::HashMap;

use crate::ewt::{BlockSpec, EwtError};

/// Offsets of tensors (and the image's first byte in memory) are multiples of this.
pub const ALIGN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I32,
    I16,
    I8,
    U8,
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "f32" => Dtype::F32,
            "i32" => Dtype::I32,
            "i16" => Dtype::I16,
            "i8" => Dtype::I8,
            "u8" => Dtype::U8,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    offset: usize,
    count: usize,
}

/// A validated image over bytes that live as long as the program (a data segment, or a leaked buffer).
#[derive(Debug)]
pub struct Image {
    data: &'static [u8],
    meta: Vec<(String, String)>,
    blocks: Vec<BlockSpec>,
    tensors: HashMap<String, Entry>,
}

fn err<T>(msg: String) -> Result<T, EwtError> {
    Err(EwtError(msg))
}

/// Whether `data` starts with the image magic (a cheap test before parsing).
pub fn is_image(data: &[u8]) -> bool {
    data.len() >= 8 && &data[..4] == b"EWP1"
}

impl Image {
    /// Parses and checks the header; `data` must be `ALIGN`-byte aligned in memory.
    pub fn parse(data: &'static [u8]) -> Result<Image, EwtError> {
        if !is_image(data) {
            return err("not a packed weight image (no EWP1 magic)".to_string());
        }
        if data.as_ptr() as usize % ALIGN != 0 {
            return err("packed weight image is not 256-byte aligned in memory".to_string());
        }
        let hlen = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if hlen > data.len() - 8 {
            return err(format!(
                "truncated packed weight image: header of {} bytes, {} bytes in all",
                hlen,
                data.len()
            ));
        }
        let text = std::str::from_utf8(&data[8..8 + hlen])
            .map_err(|_| EwtError("packed weight image header is not UTF-8".to_string()))?;
        let mut img = Image {
            data,
            meta: Vec::new(),
            blocks: Vec::new(),
            tensors: HashMap::new(),
        };
        for (i, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            let bad = || EwtError(format!("packed weight image header line {}: {:?}", i + 1, line));
            let num = |s: &str| s.parse::<usize>().map_err(|_| bad());
            match f[0] {
                "meta" if f.len() >= 3 => img.meta.push((f[1].to_string(), f[2..].join(" "))),
                "block" if f.len() == 7 => {
                    if num(f[1])? != img.blocks.len() {
                        return Err(bad());
                    }
                    img.blocks.push(BlockSpec {
                        kernel: num(f[2])?,
                        stride: num(f[3])?,
                        expand: num(f[4])?,
                        cin: num(f[5])?,
                        cout: num(f[6])?,
                    });
                }
                "tensor" if f.len() == 6 => {
                    let dtype = Dtype::parse(f[2]).ok_or_else(bad)?;
                    let (offset, nbytes) = (num(f[3])?, num(f[4])?);
                    let mut count = 1usize;
                    for d in f[5].split('x') {
                        count = count.checked_mul(num(d)?).ok_or_else(bad)?;
                    }
                    let end = offset.checked_add(nbytes).ok_or_else(bad)?;
                    if offset % ALIGN != 0 || offset < 8 + hlen || count.checked_mul(dtype.size()) != Some(nbytes) {
                        return Err(bad());
                    }
                    if end > data.len() {
                        return err(format!(
                            "truncated packed weight image: tensor {} ends at byte {} of {}",
                            f[1],
                            end,
                            data.len()
                        ));
                    }
                    if img.tensors.insert(f[1].to_string(), Entry { dtype, offset, count }).is_some() {
                        return err(format!("packed weight image: tensor {} appears twice", f[1]));
                    }
                }
                _ => return Err(bad()),
            }
        }
        Ok(img)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn blocks(&self) -> &[BlockSpec] {
        &self.blocks
    }

    fn entry(&self, name: &str, dtype: Dtype, count: usize) -> Result<&Entry, EwtError> {
        match self.tensors.get(name) {
            None => err(format!("packed weight image lacks tensor {}", name)),
            Some(e) if e.dtype != dtype => err(format!("packed weight image: tensor {} has the wrong dtype", name)),
            Some(e) if e.count != count => err(format!(
                "packed weight image: tensor {} holds {} values, the network needs {}",
                name, e.count, count
            )),
            Some(e) => Ok(e),
        }
    }

    fn bytes(&self, name: &str, dtype: Dtype, count: usize) -> Result<&'static [u8], EwtError> {
        let e = self.entry(name, dtype, count)?;
        let data: &'static [u8] = self.data;
        Ok(&data[e.offset..e.offset + count * dtype.size()])
    }

    /// The number of values of a tensor (any dtype), if present.
    pub fn count(&self, name: &str) -> Option<usize> {
        self.tensors.get(name).map(|e| e.count)
    }

    pub fn f32s(&self, name: &str, count: usize) -> Result<&'static [f32], EwtError> {
        let b = self.bytes(name, Dtype::F32, count)?;
        // SAFETY: 4-byte aligned (the image is 256-aligned, offsets too), every bit pattern is an f32, and
        // the bytes live for 'static and are never written while the image exists.
        Ok(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, count) })
    }

    pub fn i16s(&self, name: &str, count: usize) -> Result<&'static [i16], EwtError> {
        let b = self.bytes(name, Dtype::I16, count)?;
        // SAFETY: as for f32s.
        Ok(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const i16, count) })
    }

    pub fn i8s(&self, name: &str, count: usize) -> Result<&'static [i8], EwtError> {
        let b = self.bytes(name, Dtype::I8, count)?;
        // SAFETY: as for f32s.
        Ok(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const i8, count) })
    }

    pub fn u8s(&self, name: &str) -> Result<&'static [u8], EwtError> {
        let n = self.count(name).unwrap_or(0);
        self.bytes(name, Dtype::U8, n)
    }
}

/// A buffer for an image read from a file: `len` zero bytes, `ALIGN`-aligned, alive for the program's life
/// (a model is loaded once per instance and kept).
pub fn leak_aligned(len: usize) -> &'static mut [u8] {
    let buf: &'static mut [u8] = Box::leak(vec![0u8; len + ALIGN].into_boxed_slice());
    let off = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
    &mut buf[off..off + len]
}
