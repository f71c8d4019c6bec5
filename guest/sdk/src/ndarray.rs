//! numpy arrays as they travel in messages: a map of exactly `dtype`, `shape`, `data` (docs/abi.md).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::GuestError;
use crate::request::map_only_expecting;

/// What an array map was expected to be, for messages.
const ARRAY_MAP: &str = "a numpy array map {dtype, shape, data}";

/// Bytes per element of a numpy dtype name, `None` for dtypes the ABI does not carry.
pub(crate) fn itemsize(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "uint8" | "int8" | "bool" => 1,
        "uint16" | "int16" | "float16" => 2,
        "uint32" | "int32" | "float32" => 4,
        "uint64" | "int64" | "float64" => 8,
        _ => return None,
    })
}

fn element_count(shape: &[u64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

/// A dtype name for a message: the request chose it, so it is cut to 24 characters, control characters escaped.
fn dtype_shown(dtype: &str) -> String {
    let cut = dtype.char_indices().nth(24).map_or(dtype, |(cut, _)| &dtype[..cut]);
    cut.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

/// A shape for a message: at most 8 dimensions are listed.
fn shape_shown(shape: &[u64]) -> String {
    if shape.len() <= 8 {
        format!("{:?}", shape)
    } else {
        format!("{:?}... ({} dimensions)", &shape[..8], shape.len())
    }
}

fn check(dtype: &str, shape: &[u64], data: &[u8]) -> Result<(), GuestError> {
    let size = itemsize(dtype)
        .ok_or_else(|| GuestError::bad_request(format!("unsupported dtype {:?}", dtype_shown(dtype))))?;
    let want = element_count(shape).and_then(|n| n.checked_mul(size));
    if want != Some(data.len()) {
        return Err(GuestError::bad_request(format!(
            "{} array of shape {} needs {} bytes of data, got {}",
            dtype,
            shape_shown(shape),
            want.map_or_else(|| "too many".to_string(), |w| w.to_string()),
            data.len()
        )));
    }
    Ok(())
}

fn expect_dtype(dtype: &str, want: &str) -> Result<(), GuestError> {
    if dtype == want {
        Ok(())
    } else {
        Err(GuestError::bad_request(format!("expected a {} array, got {}", want, dtype_shown(dtype))))
    }
}

fn f32_view<'a>(dtype: &str, shape: &[u64], data: &'a [u8]) -> Result<Cow<'a, [f32]>, GuestError> {
    expect_dtype(dtype, "float32")?;
    check(dtype, shape, data)?;
    let n = data.len() / 4;
    if data.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0 {
        // SAFETY: aligned, `4 * n` bytes long, every bit pattern is a valid f32, little-endian target.
        Ok(Cow::Borrowed(unsafe { std::slice::from_raw_parts(data.as_ptr() as *const f32, n) }))
    } else {
        Ok(Cow::Owned(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }
}

fn f32_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte is initialised; the target is little-endian (checked in lib.rs).
    unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values)) }
}

/// An owned numpy array (request or response). Decoding checks only the map's shape; call
/// [`NdArray::validate`] or a typed view (`as_f32`, `as_u8`), which check dtype and data length.
///
/// Read from a map only: an array `[dtype, shape, data]` is refused (serde's derive would take it by position).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NdArray {
    /// numpy's dtype name (`float32`, `uint8`, ...).
    pub dtype: String,
    /// The shape; `[]` for a scalar.
    pub shape: Vec<u64>,
    /// The elements, C order, little-endian (msgpack `bin`).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl NdArray {
    /// A float32 array; fails if `values.len()` is not the product of `shape`.
    pub fn from_f32(shape: Vec<u64>, values: &[f32]) -> Result<Self, GuestError> {
        let a = NdArray { dtype: "float32".into(), shape, data: f32_bytes(values).to_vec() };
        a.validate()?;
        Ok(a)
    }

    /// A 1-D float32 array.
    pub fn from_f32_vec(values: Vec<f32>) -> Self {
        let shape = vec![values.len() as u64];
        NdArray { dtype: "float32".into(), shape, data: f32_bytes(&values).to_vec() }
    }

    /// A uint8 array; fails if `data.len()` is not the product of `shape`.
    pub fn from_u8(shape: Vec<u64>, data: Vec<u8>) -> Result<Self, GuestError> {
        let a = NdArray { dtype: "uint8".into(), shape, data };
        a.validate()?;
        Ok(a)
    }

    /// Checks that the dtype is known and `data` holds exactly `prod(shape)` elements.
    pub fn validate(&self) -> Result<(), GuestError> {
        check(&self.dtype, &self.shape, &self.data)
    }

    /// The elements as f32: borrowed when `data` is 4-byte aligned, copied otherwise.
    pub fn as_f32(&self) -> Result<Cow<'_, [f32]>, GuestError> {
        f32_view(&self.dtype, &self.shape, &self.data)
    }

    /// The elements of a uint8 array.
    pub fn as_u8(&self) -> Result<&[u8], GuestError> {
        expect_dtype(&self.dtype, "uint8")?;
        self.validate()?;
        Ok(&self.data)
    }

    /// A borrowed view (e.g. to serialize without copying).
    pub fn view(&self) -> NdArrayRef<'_> {
        NdArrayRef { dtype: &self.dtype, shape: self.shape.clone(), data: &self.data }
    }
}

/// A borrowed numpy array: decoded zero-copy from the request (with `export_infer_bytes!`), or built over a
/// slice to answer without copying it (`NdArrayRef::from_f32(shape, &logits)`).
///
/// Read from a map only, like [`NdArray`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NdArrayRef<'a> {
    /// numpy's dtype name.
    pub dtype: &'a str,
    /// The shape; `[]` for a scalar.
    pub shape: Vec<u64>,
    /// The elements, C order, little-endian (msgpack `bin`).
    #[serde(borrow, with = "serde_bytes")]
    pub data: &'a [u8],
}

impl<'a> NdArrayRef<'a> {
    /// A float32 view of `values`; fails if `values.len()` is not the product of `shape`.
    pub fn from_f32(shape: Vec<u64>, values: &'a [f32]) -> Result<Self, GuestError> {
        let a = NdArrayRef { dtype: "float32", shape, data: f32_bytes(values) };
        a.validate()?;
        Ok(a)
    }

    /// A uint8 view of `data`; fails if `data.len()` is not the product of `shape`.
    pub fn from_u8(shape: Vec<u64>, data: &'a [u8]) -> Result<Self, GuestError> {
        let a = NdArrayRef { dtype: "uint8", shape, data };
        a.validate()?;
        Ok(a)
    }

    /// Checks that the dtype is known and `data` holds exactly `prod(shape)` elements.
    pub fn validate(&self) -> Result<(), GuestError> {
        check(self.dtype, &self.shape, self.data)
    }

    /// The elements as f32: borrowed when `data` is 4-byte aligned, copied otherwise.
    pub fn as_f32(&self) -> Result<Cow<'a, [f32]>, GuestError> {
        f32_view(self.dtype, &self.shape, self.data)
    }

    /// The elements of a uint8 array.
    pub fn as_u8(&self) -> Result<&'a [u8], GuestError> {
        expect_dtype(self.dtype, "uint8")?;
        self.validate()?;
        Ok(self.data)
    }

    /// An owned copy.
    pub fn to_owned_array(&self) -> NdArray {
        NdArray { dtype: self.dtype.to_string(), shape: self.shape.clone(), data: self.data.to_vec() }
    }
}

/// The wire form of [`NdArray`]: exactly the three keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    dtype: String,
    shape: Vec<u64>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

impl<'de> Deserialize<'de> for NdArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: Wire = map_only_expecting(d, ARRAY_MAP)?;
        Ok(NdArray { dtype: w.dtype, shape: w.shape, data: w.data })
    }
}

/// The wire form of [`NdArrayRef`], borrowing from the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRef<'a> {
    #[serde(borrow)]
    dtype: &'a str,
    shape: Vec<u64>,
    #[serde(borrow, with = "serde_bytes")]
    data: &'a [u8],
}

impl<'de: 'a, 'a> Deserialize<'de> for NdArrayRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: WireRef<'de> = map_only_expecting(d, ARRAY_MAP)?;
        Ok(NdArrayRef { dtype: w.dtype, shape: w.shape, data: w.data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Python host sends for `numpy.array([1.5, -2.0], dtype=numpy.float32)`.
    const HOST_F32: &[u8] = b"\x83\xa5dtype\xa7float32\xa5shape\x91\x02\xa4data\xc4\x08\x00\x00\xc0\x3f\x00\x00\x00\xc0";

    #[test]
    fn decodes_the_host_encoding() {
        let a: NdArray = rmp_serde::from_slice(HOST_F32).unwrap();
        assert_eq!(a.shape, vec![2]);
        assert_eq!(&*a.as_f32().unwrap(), &[1.5, -2.0]);
        let r: NdArrayRef<'_> = rmp_serde::from_slice(HOST_F32).unwrap();
        assert_eq!(&*r.as_f32().unwrap(), &[1.5, -2.0]);
        assert!(a.as_u8().is_err());
    }

    #[test]
    fn encodes_like_the_host() {
        let a = NdArray::from_f32(vec![2], &[1.5, -2.0]).unwrap();
        assert_eq!(rmp_serde::to_vec_named(&a).unwrap(), HOST_F32);
        let v = [1.5f32, -2.0];
        assert_eq!(rmp_serde::to_vec_named(&NdArrayRef::from_f32(vec![2], &v).unwrap()).unwrap(), HOST_F32);
    }

    #[test]
    fn unaligned_data_is_copied() {
        let mut words = [0u32; 3]; // 4-byte aligned, so byte 1 is not
        // SAFETY: 12 initialised bytes of a [u32; 3].
        let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, 12) };
        bytes[1..5].copy_from_slice(&1.25f32.to_le_bytes());
        bytes[5..9].copy_from_slice(&3.0f32.to_le_bytes());
        let data = &bytes[1..9];
        assert_ne!(data.as_ptr().align_offset(4), 0);
        let v = f32_view("float32", &[2], data).unwrap();
        assert!(matches!(v, Cow::Owned(_)));
        assert_eq!(&*v, &[1.25, 3.0]);
        let aligned = f32_view("float32", &[1], &bytes[4..8]).unwrap();
        assert!(matches!(aligned, Cow::Borrowed(_)));
    }

    #[test]
    fn rejects_bad_arrays() {
        assert!(NdArray::from_f32(vec![3], &[1.0, 2.0]).is_err());
        assert!(NdArray::from_u8(vec![u64::MAX, u64::MAX], vec![]).is_err());
        let a = NdArray { dtype: "complex64".into(), shape: vec![], data: vec![0; 8] };
        assert_eq!(a.validate().unwrap_err().kind, "bad_request");
        let extra = b"\x84\xa5dtype\xa5uint8\xa5shape\x90\xa4data\xc4\x01\x07\xa1x\x00";
        assert!(rmp_serde::from_slice::<NdArray>(extra).is_err());
        let scalar: NdArray = rmp_serde::from_slice(&extra[..extra.len() - 3].iter().map(|&b| if b == 0x84 { 0x83 } else { b }).collect::<Vec<_>>()).unwrap();
        assert_eq!(scalar.as_u8().unwrap(), &[7]);
    }

    #[test]
    fn messages_do_not_echo_huge_shapes_or_dtypes() {
        let long = "u".repeat(10_000);
        let m = NdArrayRef { dtype: &long, shape: vec![1], data: &[] }.validate().unwrap_err().message;
        assert!(m.len() < 60, "{}", m);
        let m = NdArrayRef { dtype: &long, shape: vec![1], data: &[] }.as_u8().unwrap_err().message;
        assert!(m.len() < 60, "{}", m);
        let shape = vec![2u64; 100_000];
        let m = NdArrayRef { dtype: "uint8", shape, data: &[] }.validate().unwrap_err().message;
        assert!(m.contains("(100000 dimensions) needs too many bytes of data, got 0"), "{}", m);
        let m = NdArrayRef { dtype: "\nint8", shape: vec![], data: &[] }.as_u8().unwrap_err().message;
        assert_eq!(m, "expected a uint8 array, got \\nint8");
    }

    #[test]
    fn arrays_are_maps_never_lists() {
        // ["uint8", [1], b"\x07"]: serde's derive would read it by position.
        let list = b"\x93\xa5uint8\x91\x01\xc4\x01\x07";
        for err in [
            rmp_serde::from_slice::<NdArray>(list).unwrap_err().to_string(),
            rmp_serde::from_slice::<NdArrayRef<'_>>(list).unwrap_err().to_string(),
        ] {
            assert!(err.contains("expected a numpy array map {dtype, shape, data}"), "{}", err);
        }
        let map = b"\x83\xa5dtype\xa5uint8\xa5shape\x91\x01\xa4data\xc4\x01\x07";
        let r: NdArrayRef<'_> = rmp_serde::from_slice(map).unwrap();
        assert_eq!((r.dtype, r.as_u8().unwrap()), ("uint8", &[7u8][..]));
        assert!(std::ptr::eq(r.data.as_ptr(), &map[map.len() - 1]), "borrowed from the request");
    }
}
