//! The EWT weight file: `b"EWT1"`, u32 LE header length, a text header, then f32 LE tensors.
//!
//! The loader checks everything the network relies on (the block table chain, every tensor's shape,
//! offsets inside the file) so that a wrong or truncated file is a clear error, never a panic.

use std::collections::HashMap;
use std::fmt;

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

/// A parsed and validated EWT file; tensors are read out as `Vec<f32>` on demand.
#[derive(Debug)]
pub struct Ewt {
    meta: Vec<(String, String)>,
    blocks: Vec<BlockSpec>,
    tensors: HashMap<String, TensorInfo>,
    data: Vec<u8>,
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
        if data.len() < 8 {
            return err(format!(
                "not an EWT weight file: {} bytes, too short for the 8-byte preamble",
                data.len()
            ));
        }
        if &data[0..4] != b"EWT1" {
            return err(format!(
                "not an EWT weight file: magic {:?}, expected \"EWT1\"",
                String::from_utf8_lossy(&data[0..4])
            ));
        }
        let header_len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if 8 + header_len > data.len() {
            return err(format!(
                "truncated EWT file: header of {} bytes but the file has only {} bytes after the preamble",
                header_len,
                data.len() - 8
            ));
        }
        let header = std::str::from_utf8(&data[8..8 + header_len])
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
                        Some(end) if end <= data.len() => {}
                        _ => {
                            return err(format!(
                                "truncated EWT file: tensor {} needs bytes {}..{} but the file has {} bytes",
                                name,
                                offset,
                                offset.saturating_add(nbytes),
                                data.len()
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
        let ewt = Ewt {
            meta,
            blocks,
            tensors,
            data,
        };
        ewt.validate()?;
        Ok(ewt)
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

    /// A tensor's shape and its values (copied out, so the raw file can be dropped afterwards).
    pub fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), EwtError> {
        let t = match self.tensors.get(name) {
            Some(t) => t,
            None => return err(format!("EWT file lacks tensor {}", name)),
        };
        let bytes = &self.data[t.offset..t.offset + t.nbytes];
        let vals = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape.clone(), vals))
    }
}
