//! The EWT weight file: `b"EWT1"`, u32 LE header length, a text header, then f32 LE tensors.
//!
//! The loader checks everything the network relies on (the block table chain, every tensor's shape,
//! offsets inside the file) so that a wrong or truncated file is a clear error, never a panic.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// A wrong, truncated or inconsistent weight file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EwtError(pub String);

impl fmt::Display for EwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EwtError {}

fn err<T>(msg: String) -> Result<T, EwtError> {
    Err(EwtError(msg))
}

/// One MBConv block from the header's block table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub kernel: usize,
    pub stride: usize,
    pub expand: usize,
    pub cin: usize,
    pub cout: usize,
}

impl BlockSpec {
    /// Channels after the expand conv (cin when expand == 1, which has no expand conv).
    pub fn cmid(&self) -> usize {
        self.cin * self.expand
    }
    /// The block adds its input back (stride 1 and cin == cout).
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
}

#[derive(Debug, Clone)]
struct TensorInfo {
    offset: usize,
    nbytes: usize,
    shape: Vec<usize>,
}

/// Where the tensor data lives: a whole file held in memory, or an open file read tensor by tensor (so the
/// 18.5 MB of weights are never held twice: they go from the file straight into the network's packed panels).
#[derive(Debug)]
enum Source {
    Memory(Vec<u8>),
    File(RefCell<File>),
}

/// A parsed and validated EWT file; tensor values are read on demand (`read_into`, `read_rows`, `tensor`).
#[derive(Debug)]
pub struct Ewt {
    meta: Vec<(String, String)>,
    blocks: Vec<BlockSpec>,
    tensors: HashMap<String, TensorInfo>,
    src: Source,
}

/// Floats per chunk when a tensor is streamed through a scratch buffer (256 KiB: stays in cache while packed).
pub const CHUNK_FLOATS: usize = 1 << 16;

/// Views f32s as their bytes (every bit pattern is a valid f32, so filling them from a file is sound).
fn as_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: same allocation, 4 * len bytes, u8 has no alignment requirement and no invalid values.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 4) }
}

/// The file holds little-endian f32 (wasm's and x86's order); only a big-endian host has to swap.
fn from_le_in_place(v: &mut [f32]) {
    if cfg!(target_endian = "big") {
        for x in v.iter_mut() {
            *x = f32::from_bits(u32::from_le(x.to_bits()));
        }
    }
}

fn io_err(e: std::io::Error, what: &str) -> EwtError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        EwtError(format!("truncated EWT file: it ends inside {}", what))
    } else {
        EwtError(format!("cannot read the EWT file ({}): {}", what, e))
    }
}

fn parse_usize(field: &str, what: &str, line_no: usize) -> Result<usize, EwtError> {
    field.parse::<usize>().map_err(|_| {
        EwtError(format!(
            "EWT header line {}: {} {:?} is not a non-negative integer",
            line_no, what, field
        ))
    })
}

impl Ewt {
    /// Parses and validates a whole EWT file held in memory.
    pub fn parse(data: Vec<u8>) -> Result<Ewt, EwtError> {
        let header_len = Self::preamble(&data[..data.len().min(8)], data.len())?;
        let (meta, blocks, tensors) = Self::parse_header(&data[8..8 + header_len], data.len())?;
        Self::finish(meta, blocks, tensors, Source::Memory(data))
    }

    /// Reads and validates an EWT file's preamble and header from an open file; the tensors stay in the
    /// file until `Network::new` streams them into its packed weights (offsets are checked against the
    /// file's length now, and a file that shrinks later is still a clean "truncated" error).
    pub fn from_file(mut file: File) -> Result<Ewt, EwtError> {
        let file_len = file
            .metadata()
            .map_err(|e| EwtError(format!("cannot read the EWT file: {}", e)))?
            .len();
        let file_len = usize::try_from(file_len).unwrap_or(usize::MAX);
        let mut pre = [0u8; 8];
        let n = file_len.min(8);
        file.read_exact(&mut pre[..n]).map_err(|e| io_err(e, "the preamble"))?;
        let header_len = Self::preamble(&pre[..n], file_len)?;
        let mut header = vec![0u8; header_len];
        file.read_exact(&mut header).map_err(|e| io_err(e, "the header"))?;
        let (meta, blocks, tensors) = Self::parse_header(&header, file_len)?;
        Self::finish(meta, blocks, tensors, Source::File(RefCell::new(file)))
    }

    fn finish(
        meta: Vec<(String, String)>,
        blocks: Vec<BlockSpec>,
        tensors: HashMap<String, TensorInfo>,
        src: Source,
    ) -> Result<Ewt, EwtError> {
        let ewt = Ewt {
            meta,
            blocks,
            tensors,
            src,
        };
        ewt.validate()?;
        Ok(ewt)
    }

    /// Checks the magic and returns the header length; `pre` is the file's first min(8, len) bytes.
    fn preamble(pre: &[u8], file_len: usize) -> Result<usize, EwtError> {
        let data = pre;
        if file_len < 8 {
            return err(format!(
                "not an EWT weight file: {} bytes, too short for the 8-byte preamble",
                file_len
            ));
        }
        if &data[0..4] != b"EWT1" {
            return err(format!(
                "not an EWT weight file: magic {:?}, expected \"EWT1\"",
                String::from_utf8_lossy(&data[0..4])
            ));
        }
        let header_len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if header_len > file_len - 8 {
            return err(format!(
                "truncated EWT file: header of {} bytes but the file has only {} bytes after the preamble",
                header_len,
                file_len - 8
            ));
        }
        Ok(header_len)
    }

    /// Parses the header text; tensor offsets are checked against the file's length.
    #[allow(clippy::type_complexity)]
    fn parse_header(
        header_bytes: &[u8],
        file_len: usize,
    ) -> Result<(Vec<(String, String)>, Vec<BlockSpec>, HashMap<String, TensorInfo>), EwtError> {
        let header_len = header_bytes.len();
        let header = std::str::from_utf8(header_bytes)
            .map_err(|_| EwtError("EWT header is not UTF-8".to_string()))?;
        let mut meta = Vec::new();
        let mut blocks: Vec<BlockSpec> = Vec::new();
        let mut tensors = HashMap::new();
        for (idx, raw) in header.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.trim_end_matches('\r').trim_end_matches('\0');
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[0] {
                "meta" => {
                    if fields.len() < 3 {
                        return err(format!(
                            "EWT header line {}: meta needs a key and a value: {:?}",
                            line_no, line
                        ));
                    }
                    let rest = line.splitn(3, ' ').nth(2).unwrap_or("").trim().to_string();
                    meta.push((fields[1].to_string(), rest));
                }
                "block" => {
                    if fields.len() != 7 {
                        return err(format!(
                            "EWT header line {}: expected 'block <i> <kernel> <stride> <expand> <cin> <cout>', got {:?}",
                            line_no, line
                        ));
                    }
                    let i = parse_usize(fields[1], "block index", line_no)?;
                    if i != blocks.len() {
                        return err(format!(
                            "EWT header line {}: block {} out of order (expected block {})",
                            line_no,
                            i,
                            blocks.len()
                        ));
                    }
                    let b = BlockSpec {
                        kernel: parse_usize(fields[2], "kernel", line_no)?,
                        stride: parse_usize(fields[3], "stride", line_no)?,
                        expand: parse_usize(fields[4], "expand", line_no)?,
                        cin: parse_usize(fields[5], "cin", line_no)?,
                        cout: parse_usize(fields[6], "cout", line_no)?,
                    };
                    if b.kernel == 0 || b.kernel % 2 == 0 || b.kernel > 15 {
                        return err(format!(
                            "EWT header line {}: block {} kernel {} (must be odd, 1..15)",
                            line_no, i, b.kernel
                        ));
                    }
                    if b.stride != 1 && b.stride != 2 {
                        return err(format!(
                            "EWT header line {}: block {} stride {} (must be 1 or 2)",
                            line_no, i, b.stride
                        ));
                    }
                    if b.expand == 0 || b.cin == 0 || b.cout == 0 || b.cin * b.expand > 1 << 16 || b.cout > 1 << 16 {
                        return err(format!(
                            "EWT header line {}: block {} has unusable sizes {:?}",
                            line_no, i, line
                        ));
                    }
                    blocks.push(b);
                }
                "tensor" => {
                    if fields.len() != 6 {
                        return err(format!(
                            "EWT header line {}: expected 'tensor <name> f32 <offset> <nbytes> <d0>x<d1>...', got {:?}",
                            line_no, line
                        ));
                    }
                    let name = fields[1].to_string();
                    if fields[2] != "f32" {
                        return err(format!(
                            "EWT tensor {}: dtype {:?}, only f32 is supported",
                            name, fields[2]
                        ));
                    }
                    let offset = parse_usize(fields[3], "offset", line_no)?;
                    let nbytes = parse_usize(fields[4], "nbytes", line_no)?;
                    let mut shape = Vec::new();
                    for d in fields[5].split('x') {
                        shape.push(parse_usize(d, "dimension", line_no)?);
                    }
                    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
                    if count.and_then(|c| c.checked_mul(4)) != Some(nbytes) {
                        return err(format!(
                            "EWT tensor {}: {} bytes do not match shape {:?} of f32",
                            name, nbytes, shape
                        ));
                    }
                    if offset % 4 != 0 || offset < 8 + header_len {
                        return err(format!("EWT tensor {}: bad offset {}", name, offset));
                    }
                    match offset.checked_add(nbytes) {
                        Some(end) if end <= file_len => {}
                        _ => {
                            return err(format!(
                                "truncated EWT file: tensor {} needs bytes {}..{} but the file has {} bytes",
                                name,
                                offset,
                                offset.saturating_add(nbytes),
                                file_len
                            ))
                        }
                    }
                    if tensors
                        .insert(name.clone(), TensorInfo { offset, nbytes, shape })
                        .is_some()
                    {
                        return err(format!("EWT tensor {} appears twice", name));
                    }
                }
                // Unknown line kinds are skipped so that a newer converter can add information.
                _ => {}
            }
        }
        Ok((meta, blocks, tensors))
    }

    /// Checks the block chain and the shape of every tensor the network will read.
    fn validate(&self) -> Result<(), EwtError> {
        if self.blocks.is_empty() {
            return err("EWT header has no block table".to_string());
        }
        for w in self.blocks.windows(2) {
            if w[1].cin != w[0].cout {
                return err(format!(
                    "EWT block table: a block with cin {} follows one with cout {}",
                    w[1].cin, w[0].cout
                ));
            }
        }
        let c0 = self.blocks[0].cin;
        self.expect("stem.w", &[3, 3, 3, c0])?;
        self.expect("stem.b", &[c0])?;
        for (i, b) in self.blocks.iter().enumerate() {
            let cmid = b.cmid();
            if b.expand != 1 {
                self.expect(&format!("blocks.{}.expand.w", i), &[b.cin, cmid])?;
                self.expect(&format!("blocks.{}.expand.b", i), &[cmid])?;
            } else if self.tensors.contains_key(&format!("blocks.{}.expand.w", i)) {
                return err(format!(
                    "EWT tensor blocks.{}.expand.w present but block {} has expand 1",
                    i, i
                ));
            }
            self.expect(&format!("blocks.{}.dw.w", i), &[b.kernel, b.kernel, cmid])?;
            self.expect(&format!("blocks.{}.dw.b", i), &[cmid])?;
            self.expect(&format!("blocks.{}.project.w", i), &[cmid, b.cout])?;
            self.expect(&format!("blocks.{}.project.b", i), &[b.cout])?;
        }
        let last = self.blocks[self.blocks.len() - 1].cout;
        let head = self.shape_of("head.w")?;
        if head.len() != 2 || head[0] != last {
            return err(format!(
                "EWT tensor head.w has shape {:?}, expected [{}, features]",
                head, last
            ));
        }
        let feat = head[1];
        self.expect("head.b", &[feat])?;
        let fc = self.shape_of("fc.w")?;
        if fc.len() != 2 || fc[0] != feat || fc[1] == 0 {
            return err(format!(
                "EWT tensor fc.w has shape {:?}, expected [{}, classes]",
                fc, feat
            ));
        }
        let classes = fc[1];
        self.expect("fc.b", &[classes])?;
        if let Some(c) = self.meta("classes") {
            if c.parse::<usize>().ok() != Some(classes) {
                return err(format!("EWT meta classes {} but fc.w has {} outputs", c, classes));
            }
        }
        Ok(())
    }

    fn shape_of(&self, name: &str) -> Result<&[usize], EwtError> {
        match self.tensors.get(name) {
            Some(t) => Ok(&t.shape),
            None => err(format!("EWT file lacks tensor {}", name)),
        }
    }

    fn expect(&self, name: &str, shape: &[usize]) -> Result<(), EwtError> {
        let got = self.shape_of(name)?;
        if got != shape {
            return err(format!(
                "EWT tensor {} has shape {:?}, the block table implies {:?}",
                name, got, shape
            ));
        }
        Ok(())
    }

    /// A `meta` value from the header.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// All `meta` pairs in header order.
    pub fn meta_pairs(&self) -> &[(String, String)] {
        &self.meta
    }

    /// The block table.
    pub fn blocks(&self) -> &[BlockSpec] {
        &self.blocks
    }

    /// Whether the file holds a tensor of that name.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, EwtError> {
        match self.tensors.get(name) {
            Some(t) => Ok(t),
            None => err(format!("EWT file lacks tensor {}", name)),
        }
    }

    /// A tensor's shape.
    pub fn shape(&self, name: &str) -> Result<&[usize], EwtError> {
        self.shape_of(name)
    }

    /// Reads `dst.len()` floats starting `start` floats into tensor `t` (range checked by the caller).
    fn read_at(&self, t: &TensorInfo, start: usize, dst: &mut [f32], name: &str) -> Result<(), EwtError> {
        let off = t.offset + start * 4;
        match &self.src {
            Source::Memory(data) => {
                let bytes = &data[off..off + dst.len() * 4];
                for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                    *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Source::File(file) => {
                let mut f = file.borrow_mut();
                let what = format!("tensor {}", name);
                f.seek(SeekFrom::Start(off as u64)).map_err(|e| io_err(e, &what))?;
                f.read_exact(as_bytes_mut(dst)).map_err(|e| io_err(e, &what))?;
                from_le_in_place(dst);
            }
        }
        Ok(())
    }

    /// Reads a whole tensor into `dst`, which must hold exactly its element count (one read, no copies).
    pub fn read_into(&self, name: &str, dst: &mut [f32]) -> Result<(), EwtError> {
        let t = self.info(name)?;
        if dst.len() * 4 != t.nbytes {
            return err(format!(
                "EWT tensor {}: {} values wanted but it holds {}",
                name,
                dst.len(),
                t.nbytes / 4
            ));
        }
        self.read_at(t, 0, dst, name)
    }

    /// Streams a tensor as chunks of whole rows (a row is its last dimension) through `scratch`:
    /// `f(first_row, rows)` gets `rows.len() / row_len` consecutive rows. Keeps memory use at one chunk.
    pub fn read_rows(
        &self,
        name: &str,
        scratch: &mut Vec<f32>,
        f: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), EwtError> {
        let t = self.info(name)?;
        let count = t.nbytes / 4;
        let row = t.shape.last().copied().unwrap_or(1).max(1);
        let rows = count / row;
        let per = (CHUNK_FLOATS / row).max(1);
        if scratch.len() < per.min(rows.max(1)) * row {
            scratch.resize(per.min(rows.max(1)) * row, 0.0);
        }
        let mut r = 0;
        while r < rows {
            let n = per.min(rows - r);
            let buf = &mut scratch[..n * row];
            self.read_at(t, r * row, buf, name)?;
            f(r, buf);
            r += n;
        }
        Ok(())
    }

    /// A tensor's shape and its values as a fresh `Vec<f32>` (for small tensors and tests).
    pub fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), EwtError> {
        let t = self.info(name)?;
        let mut vals = vec![0.0f32; t.nbytes / 4];
        self.read_at(t, 0, &mut vals, name)?;
        Ok((t.shape.clone(), vals))
    }
}
