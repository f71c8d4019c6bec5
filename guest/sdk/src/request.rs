//! Reading a request: exactly one msgpack value, and a map wherever a struct is expected.
//!
//! serde's derive reads a struct from a msgpack map *or* from an array (fields by position), and rmp_serde stops
//! after the first value. Left alone, `["Ada"]` would be read as `{"name": "Ada"}` and `{...}` followed by junk
//! would be accepted. [`decode`] refuses both before serde runs; [`map_only`] does the same for nested structs.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::error::GuestError;

/// Decodes a msgpack request (zero-copy where the target type borrows); failures are `bad_request`.
///
/// The bytes must hold exactly one msgpack value. When `T` reads a struct or a map (what the derive generates),
/// that value must be a map: an array is refused with a message saying so, not read by position.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, GuestError> {
    let refuse = |m: String| GuestError::bad_request(one_line(&format!("request does not decode: {}", m)));
    let end = value_end(bytes).map_err(refuse)?;
    if end != bytes.len() {
        return Err(refuse(format!(
            "{} bytes follow the request's msgpack value (send exactly one value)",
            bytes.len() - end
        )));
    }
    if asks_for_map::<T>() {
        let found = kind(bytes[0]);
        if found != "map" {
            return Err(refuse(format!(
                "the request must be a msgpack map of field names to values, got {}",
                found
            )));
        }
    }
    rmp_serde::from_slice(bytes).map_err(|e| refuse(e.to_string()))
}

/// Longest message [`decode`] reports: serde echoes keys and strings from the request, which may be huge.
const MAX_MESSAGE: usize = 400;

/// `m` as one line of at most [`MAX_MESSAGE`] characters: control characters (a newline in a key the request
/// sent, say) are escaped, and a longer text is cut with `...`.
pub(crate) fn one_line(m: &str) -> String {
    let mut out = String::with_capacity(m.len().min(4 * MAX_MESSAGE));
    let mut n = 0;
    for c in m.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }) {
        if n == MAX_MESSAGE {
            out.push_str("...");
            break;
        }
        out.push(c);
        n += 1;
    }
    out
}

/// For `#[serde(deserialize_with = "edgewasm_guest::map_only")]` on a field whose type is a derived struct:
/// reads it from a msgpack map only (the derive alone would also read it from an array, by position).
pub fn map_only<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    map_only_expecting(d, "a map")
}

/// [`map_only`] with the text the error message shows as what was expected.
pub(crate) fn map_only_expecting<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    expecting: &'static str,
) -> Result<T, D::Error> {
    struct MapVisitor<T>(PhantomData<T>, &'static str);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(MapVisitor(PhantomData, expecting))
}

/// What a msgpack marker byte starts, in words for messages.
fn kind(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "bin (bytes)",
        0xca | 0xcb => "a float",
        0xc7..=0xc9 | 0xd4..=0xd8 => "an extension type",
        _ => "the reserved marker 0xc1",
    }
}

/// The offset just past the first msgpack value of `bytes`. Iterative (a count of values still to read, no
/// recursion), so any nesting depth costs no stack; every step consumes at least one byte.
pub(crate) fn value_end(bytes: &[u8]) -> Result<usize, String> {
    let truncated = || "the msgpack data is truncated".to_string();
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        let marker = *bytes.get(pos).ok_or_else(|| {
            if pos == 0 {
                "the request is empty (0 bytes)".to_string()
            } else {
                truncated()
            }
        })?;
        pos += 1;
        pending -= 1;
        let be = |n: usize, pos: usize| -> Result<u64, String> {
            let b = bytes.get(pos..pos + n).ok_or_else(truncated)?;
            Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        };
        // (bytes of length field, payload bytes per unit, values contained per unit)
        let (skip, children): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err("invalid msgpack: the reserved marker 0xc1".to_string()),
            0xc4 | 0xd9 => (1 + be(1, pos)?, 0),
            0xc5 | 0xda => (2 + be(2, pos)?, 0),
            0xc6 | 0xdb => (4 + be(4, pos)?, 0),
            0xc7 => (2 + be(1, pos)?, 0),
            0xc8 => (3 + be(2, pos)?, 0),
            0xc9 => (5 + be(4, pos)?, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, be(2, pos)?),
            0xdd => (4, be(4, pos)?),
            0xde => (2, 2 * be(2, pos)?),
            0xdf => (4, 2 * be(4, pos)?),
        };
        let skip = usize::try_from(skip).map_err(|_| truncated())?;
        pos = pos.checked_add(skip).filter(|&p| p <= bytes.len()).ok_or_else(truncated)?;
        pending += children;
    }
    Ok(pos)
}

/// Whether `T`'s `Deserialize` asks for a struct or a map, found by offering it a deserializer that only
/// records the question.
fn asks_for_map<'de, T: Deserialize<'de>>() -> bool {
    matches!(T::deserialize(Probe), Err(Asked::Map))
}

#[derive(Debug)]
enum Asked {
    Map,
    Other,
}

impl fmt::Display for Asked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Asked {}

impl de::Error for Asked {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Asked::Other
    }
}

struct Probe;

impl<'de> Deserializer<'de> for Probe {
    type Error = Asked;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
        Err(Asked::Other)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
        Err(Asked::Map)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Asked> {
        Err(Asked::Map)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Named {
        name: String,
        #[serde(default)]
        n: u8,
    }

    #[test]
    fn a_struct_is_read_from_a_map_only() {
        let map = rmp_serde::to_vec_named(&BTreeMap::from([("name", "Ada")])).unwrap();
        assert_eq!(decode::<Named>(&map).unwrap(), Named { name: "Ada".into(), n: 0 });
        // ["Ada", 3]: serde's derive alone would read this as {"name": "Ada", "n": 3}.
        let list = b"\x92\xa3Ada\x03";
        assert_eq!(rmp_serde::from_slice::<Named>(list).unwrap().n, 3);
        let err = decode::<Named>(list).unwrap_err();
        assert_eq!(err.kind, "bad_request");
        assert!(err.message.contains("must be a msgpack map"), "{}", err.message);
        assert!(err.message.contains("got an array"), "{}", err.message);
        assert!(decode::<Named>(b"\xa3Ada").unwrap_err().message.contains("got a string"));
        // Types that are not structs keep reading what they read.
        assert_eq!(decode::<Vec<u8>>(b"\x92\x01\x02").unwrap(), vec![1, 2]);
        assert_eq!(decode::<Option<u8>>(b"\xc0").unwrap(), None);
    }

    #[test]
    fn messages_are_one_bounded_line() {
        // {"name": "x", "a\nb<1000 x>": nil}, refused by deny_unknown_fields, which echoes the key.
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Strict {
            #[allow(dead_code)]
            name: String,
        }
        let key = format!("a\nb{}", "x".repeat(1000));
        let map = rmp_serde::to_vec_named(&BTreeMap::from([("name", ""), (key.as_str(), "")])).unwrap();
        let m = decode::<Strict>(&map).unwrap_err().message;
        assert!(m.contains("unknown field `a\\nbxxx") && m.ends_with("...") && !m.contains('\n'), "{}", m);
        assert_eq!(m.chars().count(), MAX_MESSAGE + 3);
    }

    #[test]
    fn exactly_one_value() {
        let err = decode::<Named>(b"\x81\xa4name\xa1x\xc0").unwrap_err();
        assert!(err.message.contains("1 bytes follow"), "{}", err.message);
        assert!(decode::<Named>(b"").unwrap_err().message.contains("empty"));
        assert!(decode::<Named>(b"\x81\xa4name").unwrap_err().message.contains("truncated"));
        assert!(decode::<Named>(b"\xc1").unwrap_err().message.contains("0xc1"));
    }

    #[test]
    fn nested_structs_with_map_only() {
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            #[serde(deserialize_with = "map_only")]
            inner: Named,
        }
        assert_eq!(decode::<Outer>(b"\x81\xa5inner\x81\xa4name\xa1x").unwrap().inner.name, "x");
        let err = decode::<Outer>(b"\x81\xa5inner\x91\xa1x").unwrap_err();
        assert!(err.message.contains("expected a map"), "{}", err.message);
    }

    #[test]
    fn value_end_walks_every_marker() {
        let samples: Vec<Vec<u8>> = vec![
            rmp_serde::to_vec(&(1u8, -1i8, 300u16, -300i16, 70_000u32, -70_000i32, u64::MAX, i64::MIN)).unwrap(),
            rmp_serde::to_vec(&(1.5f32, 2.5f64, true, false, (), "s", "x".repeat(40), "y".repeat(300))).unwrap(),
            rmp_serde::to_vec(&(serde_bytes::Bytes::new(&[1; 300]), vec![0u8; 20], vec![7u16; 70_000])).unwrap(),
            rmp_serde::to_vec_named(&(0..20).map(|i| (i, vec![i; 3])).collect::<BTreeMap<u32, Vec<u32>>>()).unwrap(),
            b"\x95\xd4\x01\x02\xd5\x01\x02\x03\xd6\x01\0\0\0\0\xd7\x01\0\0\0\0\0\0\0\0\xd8\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
            b"\x93\xc7\x02\x05ab\xc8\x00\x01\x05a\xc9\x00\x00\x00\x00\x05".to_vec(),
            b"\x92\xde\x00\x01\xc0\xc0\xdf\x00\x00\x00\x01\xc0\xc0".to_vec(),
        ];
        for s in &samples {
            assert_eq!(value_end(s), Ok(s.len()), "{:02x?}", &s[..s.len().min(16)]);
            for cut in (0..s.len()).step_by(1 + s.len() / 500).chain([s.len() - 1]) {
                assert!(value_end(&s[..cut]).is_err(), "a {}-byte prefix of {:02x?}", cut, &s[..s.len().min(16)]);
            }
        }
        // A header claiming 4 billion elements over 3 bytes: an error, found without allocating anything.
        assert!(value_end(b"\xdd\xff\xff\xff\xff\x01").is_err());
        assert!(value_end(b"\xc6\xff\xff\xff\xff").is_err());
        // Deep nesting needs no stack.
        let deep: Vec<u8> = std::iter::repeat(0x91).take(1_000_000).chain([0xc0]).collect();
        assert_eq!(value_end(&deep), Ok(deep.len()));
    }
}
