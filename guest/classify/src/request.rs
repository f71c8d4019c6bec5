//! The request map both classifier guests read, and its decode stage.

use edgewasm_guest::{GuestError, NdArrayRef};
use serde::Deserialize;
use vision::{Pixels, RgbImage};

use crate::{vision_error, DEFAULT_MODEL, SIDE};

/// Exactly one input of `image`, `pixels`, `image_data` (+ `width`, `height`) or `tensor`; the rest are options.
/// Everything large borrows from the request bytes. Unknown keys are ignored.
#[derive(Deserialize)]
pub struct Request<'a> {
    #[serde(default, borrow)]
    pub image: Option<Bin<'a>>,
    #[serde(default, borrow)]
    pub pixels: Option<NdArrayRef<'a>>,
    #[serde(default)]
    pub image_data: Option<Vec<f32>>,
    #[serde(default)]
    pub width: Option<i64>,
    #[serde(default)]
    pub height: Option<i64>,
    #[serde(default, borrow)]
    pub tensor: Option<NdArrayRef<'a>>,
    #[serde(default, borrow)]
    pub model_id: Option<&'a str>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub return_logits: Option<bool>,
    #[serde(default)]
    pub return_tensor: Option<bool>,
    /// The WASI-NN guest's load mode (`"name"` or `"bytes"`); the pure guest ignores it.
    #[serde(default, borrow)]
    pub load: Option<&'a str>,
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

/// Decodes the msgpack request in place (a request that does not fit is `bad_request`).
pub fn parse(bytes: &[u8]) -> Result<Request<'_>, GuestError> {
    edgewasm_guest::decode(bytes)
}

/// The one input a request carries.
pub enum Input<'a> {
    Image(&'a [u8]),
    Pixels(NdArrayRef<'a>),
    Floats(Vec<f32>, usize, usize),
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
        if let Some(b) = self.image.take() {
            return Ok(Input::Image(b.0));
        }
        if let Some(p) = self.pixels.take() {
            return Ok(Input::Pixels(p));
        }
        if let Some(d) = self.image_data.take() {
            let w = dim(self.width, "width")?;
            let h = dim(self.height, "height")?;
            return Ok(Input::Floats(d, w, h));
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
                    "pixels must have shape [height, width, 3], got {:?}",
                    a.shape
                )));
            }
            let (h, w) = (a.shape[0] as usize, a.shape[1] as usize);
            vision::check_size(w, h, data.len(), "pixels").map_err(vision_error)?;
            Ok(Decoded::Pixels(Pixels::U8(data), w, h))
        }
        Input::Floats(d, w, h) => Ok(Decoded::Pixels(Pixels::F32(d), *w, *h)),
        Input::Tensor(a) => {
            let side = SIDE as u64;
            let ok_shape = a.shape == [side, side, 3] || a.shape == [1, side, side, 3];
            if a.dtype != "float32" || !ok_shape {
                return Err(GuestError::bad_request(format!(
                    "tensor must be float32 [224, 224, 3] (NHWC, preprocessed), got {} {:?}",
                    a.dtype, a.shape
                )));
            }
            a.validate()
                .map_err(|e| GuestError::bad_request(format!("tensor: {}", e.message)))?;
            Ok(Decoded::Tensor(a.data))
        }
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
