//! The request map both classifier guests read, and its decode stage.

use std::fmt;

use edgewasm_guest::{GuestError, NdArrayRef};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use vision::{Pixels, RgbImage};

use crate::{vision_error, DEFAULT_MODEL, SIDE};

/// Exactly one input of `image`, `pixels`, `image_data` (+ `width`, `height`) or `tensor`; the rest are options.
/// Everything large borrows from the request bytes. Read from a msgpack map only, with every value checked as
/// it is read (see [`Request::deserialize`]); nil counts as absent.
#[derive(Default)]
pub struct Request<'a> {
    pub image: Option<Bin<'a>>,
    pub pixels: Option<NdArrayRef<'a>>,
    pub image_data: Option<Levels>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub tensor: Option<NdArrayRef<'a>>,
    pub model_id: Option<&'a str>,
    pub top_k: Option<i64>,
    pub return_logits: Option<bool>,
    pub return_tensor: Option<bool>,
    /// The WASI-NN guest's load mode (`"name"` or `"bytes"`); the pure guest refuses it.
    pub load: Option<&'a str>,
}

/// The request's keys, in the order messages list them.
pub const FIELDS: &[&str] = &[
    "image",
    "pixels",
    "image_data",
    "width",
    "height",
    "tensor",
    "model_id",
    "top_k",
    "return_logits",
    "return_tensor",
    "load",
];

/// Longest user-supplied text echoed in a message (a 1 MB model_id is not sent back whole).
const SHOWN: usize = 48;

/// `s` quoted for a message, cut to [`SHOWN`] characters.
pub fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        None => format!("{:?}", s),
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Request<'a> {
    /// A map of known keys: an unknown key (a typo such as `topk` would otherwise be ignored in silence), a key
    /// given twice or a value of the wrong type is refused, naming the key and what it takes.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Request<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a request map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request<'de>, A::Error> {
                let mut req = Request::default();
                let mut seen = 0u32;
                while let Some(Key(i)) = map.next_key::<Key>()? {
                    let name = FIELDS[i];
                    if seen & (1 << i) != 0 {
                        return Err(de::Error::custom(format!("{} is given twice", name)));
                    }
                    seen |= 1 << i;
                    match i {
                        0 => req.image = value(&mut map, name)?,
                        1 => req.pixels = value(&mut map, name)?,
                        2 => req.image_data = value(&mut map, name)?,
                        3 => req.width = value(&mut map, name)?,
                        4 => req.height = value(&mut map, name)?,
                        5 => req.tensor = value(&mut map, name)?,
                        6 => req.model_id = value::<_, Option<Text>>(&mut map, name)?.map(|t| t.0),
                        7 => req.top_k = value(&mut map, name)?,
                        8 => req.return_logits = value(&mut map, name)?,
                        9 => req.return_tensor = value(&mut map, name)?,
                        _ => req.load = value::<_, Option<Text>>(&mut map, name)?.map(|t| t.0),
                    }
                }
                Ok(req)
            }
        }
        d.deserialize_map(V)
    }
}

/// The value of key `name`, its errors prefixed with the key.
fn value<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A, name: &str) -> Result<T, A::Error> {
    map.next_value().map_err(|e| {
        let e = e.to_string();
        let sep = if e.starts_with('[') { "" } else { ": " };
        de::Error::custom(format!("{}{}{}", name, sep, e))
    })
}

/// A request key: the index of a known field.
struct Key(usize);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a field name (a string: one of {})", FIELDS.join(", "))
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
                match FIELDS.iter().position(|&f| f == k) {
                    Some(i) => Ok(Key(i)),
                    None => Err(E::custom(format!(
                        "unknown key {}: a request takes only {}",
                        shown(k),
                        FIELDS.join(", ")
                    ))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// A msgpack string, borrowed from the request (serde's `&str` would also take a `bin` holding UTF-8).
struct Text<'a>(&'a str);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = &'de str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        d.deserialize_str(V).map(Text)
    }
}

/// Image bytes: a msgpack `bin`, borrowed from the request. A string is refused (serde_bytes would take it).
pub struct Bin<'a>(pub &'a [u8]);

impl<'de: 'a, 'a> Deserialize<'de> for Bin<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JPEG or PNG bytes (msgpack bin)")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V).map(Bin)
    }
}

/// `image_data`: 8-bit RGB levels, each checked as it is read (a whole number 0..255, given as an integer or a
/// float) and kept as a byte. Memory grows with the values actually present (never with a length header), and
/// fallibly: when the guest's memory runs out the levels read so far are dropped, the rest still checked and
/// counted, and [`Request::input`] answers `out_of_memory` (Rust would abort, a trap, on an infallible push).
pub enum Levels {
    Read(Vec<u8>),
    TooMany(usize),
}

/// What to send instead of a bad `image_data` value.
const LEVELS_HINT: &str =
    "image_data holds 8-bit RGB levels, whole numbers 0..255 (send other values as a preprocessed float32 tensor)";

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Levels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of RGB levels 0..255 (send a uint8 numpy array as pixels)")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Levels, S::Error> {
                let mut out = Some(Vec::<u8>::new());
                let mut i = 0;
                while let Some(level) = seq.next_element_seed(LevelAt(i))? {
                    i += 1;
                    if let Some(v) = out.as_mut() {
                        if v.len() == v.capacity() && v.try_reserve(1).is_err() {
                            out = None; // freed: the error map needs memory too
                        } else {
                            v.push(level);
                        }
                    }
                }
                Ok(match out {
                    Some(v) => Levels::Read(v),
                    None => Levels::TooMany(i),
                })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Reads `image_data[i]`.
struct LevelAt(usize);

impl<'de> de::DeserializeSeed<'de> for LevelAt {
    type Value = u8;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u8, D::Error> {
        d.deserialize_any(self)
    }
}

impl LevelAt {
    fn refuse<E: de::Error>(&self, value: impl fmt::Display, why: &str) -> E {
        E::custom(format!("[{}] is {}, {}: {}", self.0, value, why, LEVELS_HINT))
    }
}

impl<'de> Visitor<'de> for LevelAt {
    type Value = u8;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image_data[{}] to be an RGB level, one of the whole numbers 0..255", self.0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u8, E> {
        u8::try_from(v).map_err(|_| self.refuse(v, "outside 0..255"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u8, E> {
        u8::try_from(v).map_err(|_| self.refuse(v, "outside 0..255"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u8, E> {
        let shown = format!("{:?}", v); // 1e300, not 301 digits
        if !v.is_finite() {
            Err(self.refuse(shown, "not a finite number"))
        } else if !(0.0..=255.0).contains(&v) {
            Err(self.refuse(shown, "outside 0..255"))
        } else if v.fract() != 0.0 {
            Err(self.refuse(shown, "not a whole number"))
        } else {
            Ok(v as u8)
        }
    }
}

/// Decodes the msgpack request in place (a request that does not fit is `bad_request`).
pub fn parse(bytes: &[u8]) -> Result<Request<'_>, GuestError> {
    edgewasm_guest::decode(bytes)
}

/// The one input a request carries.
pub enum Input<'a> {
    Image(&'a [u8]),
    Pixels(NdArrayRef<'a>),
    Levels(Vec<u8>, usize, usize),
    Tensor(NdArrayRef<'a>),
}

/// An input after the decode stage: pixels for guest/vision's preprocessing, or a checked tensor's bytes
/// (little-endian f32, `[224, 224, 3]`, already preprocessed).
pub enum Decoded<'s> {
    Pixels(Pixels<'s>, usize, usize),
    Tensor(&'s [u8]),
}

impl<'a> Request<'a> {
    pub fn model_id(&self) -> &'a str {
        self.model_id.unwrap_or(DEFAULT_MODEL)
    }

    pub fn top_k(&self) -> i64 {
        self.top_k.unwrap_or(5)
    }

    pub fn return_logits(&self) -> bool {
        self.return_logits.unwrap_or(false)
    }

    pub fn return_tensor(&self) -> bool {
        self.return_tensor.unwrap_or(false)
    }

    /// Takes the request's input out of it: exactly one must be given.
    pub fn input(&mut self) -> Result<Input<'a>, GuestError> {
        let given = [
            self.image.is_some(),
            self.pixels.is_some(),
            self.image_data.is_some(),
            self.tensor.is_some(),
        ];
        match given.iter().filter(|&&g| g).count() {
            1 => {}
            0 => {
                return Err(GuestError::bad_request(
                    "the request needs one input: image (JPEG/PNG bytes), pixels (uint8 HxWx3), image_data (+ width, height) or tensor (float32 224x224x3)",
                ))
            }
            _ => return Err(GuestError::bad_request("give only one of image, pixels, image_data, tensor")),
        }
        if self.image_data.is_none() && (self.width.is_some() || self.height.is_some()) {
            return Err(GuestError::bad_request(
                "width and height go with image_data only (image, pixels and tensor carry their own size): remove them",
            ));
        }
        if let Some(b) = self.image.take() {
            return Ok(Input::Image(b.0));
        }
        if let Some(p) = self.pixels.take() {
            return Ok(Input::Pixels(p));
        }
        if let Some(levels) = self.image_data.take() {
            let w = dim(self.width, "width")?;
            let h = dim(self.height, "height")?;
            return match levels {
                Levels::Read(d) => Ok(Input::Levels(d, w, h)),
                Levels::TooMany(n) => Err(GuestError::out_of_memory(format!(
                    "image_data's {} levels do not fit in the guest's memory: send the image as JPEG/PNG bytes (image) or uint8 pixels, or raise the guest's memory limit",
                    n
                ))),
            };
        }
        Ok(Input::Tensor(self.tensor.take().expect("one input is present")))
    }
}

/// An image_data dimension: present and 1..=MAX_DIM.
fn dim(v: Option<i64>, name: &str) -> Result<usize, GuestError> {
    match v {
        None => Err(GuestError::bad_request(format!(
            "image_data needs width and height ({} is missing)",
            name
        ))),
        Some(x) if x <= 0 || x > vision::MAX_DIM as i64 => Err(GuestError::bad_request(format!(
            "{} must be 1..{}, got {}",
            name,
            vision::MAX_DIM,
            x
        ))),
        Some(x) => Ok(x as usize),
    }
}

/// A shape for a message (a shape of a million dimensions is not echoed whole).
fn shape_shown(shape: &[u64]) -> String {
    if shape.len() <= 8 {
        format!("{:?}", shape)
    } else {
        format!("{:?}... ({} dimensions)", &shape[..8], shape.len())
    }
}

/// The decode stage: image bytes are decoded into `image` (which the result borrows), arrays are checked.
pub fn decode_input<'s>(input: &'s Input<'_>, image: &'s mut Option<RgbImage>) -> Result<Decoded<'s>, GuestError> {
    match input {
        Input::Image(b) => {
            let img: &'s RgbImage = image.insert(vision::decode(b).map_err(vision_error)?);
            Ok(Decoded::Pixels(Pixels::U8(&img.data), img.width, img.height))
        }
        Input::Pixels(a) => {
            let data = a
                .as_u8()
                .map_err(|e| GuestError::bad_request(format!("pixels: {}", e.message)))?;
            if a.shape.len() != 3 || a.shape[2] != 3 {
                return Err(GuestError::bad_request(format!(
                    "pixels must have shape [height, width, 3], got {}",
                    shape_shown(&a.shape)
                )));
            }
            let (h, w) = (a.shape[0] as usize, a.shape[1] as usize);
            vision::check_size(w, h, data.len(), "pixels").map_err(vision_error)?;
            Ok(Decoded::Pixels(Pixels::U8(data), w, h))
        }
        Input::Levels(d, w, h) => {
            vision::check_size(*w, *h, d.len(), "image_data").map_err(vision_error)?;
            Ok(Decoded::Pixels(Pixels::U8(d), *w, *h))
        }
        Input::Tensor(a) => {
            let side = SIDE as u64;
            let ok_shape = a.shape == [side, side, 3] || a.shape == [1, side, side, 3];
            if a.dtype != "float32" || !ok_shape {
                return Err(GuestError::bad_request(format!(
                    "tensor must be float32 [224, 224, 3] (NHWC, preprocessed), got {} {}",
                    shown(a.dtype),
                    shape_shown(&a.shape)
                )));
            }
            a.validate()
                .map_err(|e| GuestError::bad_request(format!("tensor: {}", e.message)))?;
            check_finite(a.data)?;
            Ok(Decoded::Tensor(a.data))
        }
    }
}

/// A `tensor`'s little-endian f32 values must all be finite: NaN or an infinity would come back as a
/// confidence of NaN.
fn check_finite(data: &[u8]) -> Result<(), GuestError> {
    // All exponent bits set: an infinity or NaN. One pass without an early exit, which the compiler vectorizes;
    // the index is looked for only when something is wrong.
    const EXP: u32 = 0x7f80_0000;
    let any_bad = data
        .chunks_exact(4)
        .fold(false, |acc, v| acc | (u32::from_le_bytes([v[0], v[1], v[2], v[3]]) & EXP == EXP));
    if !any_bad {
        return Ok(());
    }
    let bad = data
        .chunks_exact(4)
        .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        .enumerate()
        .find(|(_, v)| !v.is_finite());
    match bad {
        None => Ok(()),
        Some((i, v)) => Err(GuestError::bad_request(format!(
            "tensor[{}] is not a finite number ({}): send the preprocessed image, (level - 127) / 128 per RGB level (values within -1..1)",
            i, v
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A msgpack map with one key.
    fn map1(key: &str, value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x81, 0xa0 | key.len() as u8];
        v.extend_from_slice(key.as_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn image_must_be_bin_and_is_borrowed() {
        let bytes = map1("image", &[0xc4, 2, b'a', b'b']);
        let mut req = parse(&bytes).unwrap();
        match req.input().unwrap() {
            Input::Image(b) => assert_eq!(b, b"ab"),
            _ => panic!("not an image"),
        }
        let text = map1("image", &[0xa2, b'a', b'b']);
        let err = parse(&text).err().unwrap();
        assert_eq!(err.kind, "bad_request");
    }

    #[test]
    fn exactly_one_input_and_defaults() {
        let top_k = map1("top_k", &[3]);
        let mut req = parse(&top_k).unwrap();
        assert_eq!(
            (req.model_id(), req.top_k(), req.return_logits()),
            ("efficientnet-lite0", 3, false)
        );
        assert!(req.input().err().unwrap().message.contains("needs one input"));
        let mut two = vec![0x82, 0xa5];
        two.extend_from_slice(b"image");
        two.extend_from_slice(&[0xc4, 0]);
        two.push(0xaa);
        two.extend_from_slice(b"image_data");
        two.push(0x90);
        assert!(parse(&two).unwrap().input().err().unwrap().message.contains("only one"));
        let floats = map1("image_data", &[0x90]);
        let mut no_height = parse(&floats).unwrap();
        assert!(no_height.input().err().unwrap().message.contains("width and height"));
    }
}
