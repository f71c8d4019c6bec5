//! The classifier request path (parse, the one-input rule, the decode stage and the preprocessing) on every kind
//! of bad input, then fuzzed: generated and mutated requests must each end in an answer or an error, never a
//! panic (in the guest a panic is a trap, which the host reports as a crashed guest).
//!
//! `EDGEWASM_FUZZ_CASES=N` sets the fuzz run's size (default 20,000; the long profile is 200,000) and
//! `EDGEWASM_FUZZ_SEED=S` its seed (a number; each seed is another run, reproducible).

use classifier_common::{decode_input, parse, Decoded, GuestError, Input, FIELDS};

/// A msgpack value, written in its smallest form (as msgpack-python writes it).
#[derive(Clone, Debug)]
enum V {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Arr(Vec<V>),
    Map(Vec<(V, V)>),
    Ext(i8, Vec<u8>),
}

fn s(text: &str) -> V {
    V::Str(text.to_string())
}

fn len_header(out: &mut Vec<u8>, n: usize, fix: Option<(u8, usize)>, m8: Option<u8>, m16: u8, m32: u8) {
    match fix {
        Some((base, max)) if n <= max => out.push(base | n as u8),
        _ if m8.is_some() && n <= 0xff => out.extend([m8.unwrap(), n as u8]),
        _ if n <= 0xffff => {
            out.push(m16);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m32);
            out.extend((n as u32).to_be_bytes());
        }
    }
}

fn enc(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Nil => out.push(0xc0),
        V::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        V::UInt(u) => match *u {
            0..=0x7f => out.push(*u as u8),
            0x80..=0xff => out.extend([0xcc, *u as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend((*u as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend((*u as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend(u.to_be_bytes());
            }
        },
        V::Int(i) if *i >= 0 => enc(&V::UInt(*i as u64), out),
        V::Int(i) => match *i {
            -32..=-1 => out.push(*i as i8 as u8),
            -128..=-33 => out.extend([0xd0, *i as i8 as u8]),
            -32768..=-129 => {
                out.push(0xd1);
                out.extend((*i as i16).to_be_bytes());
            }
            -2_147_483_648..=-32769 => {
                out.push(0xd2);
                out.extend((*i as i32).to_be_bytes());
            }
            _ => {
                out.push(0xd3);
                out.extend(i.to_be_bytes());
            }
        },
        V::F32(f) => {
            out.push(0xca);
            out.extend(f.to_be_bytes());
        }
        V::F64(f) => {
            out.push(0xcb);
            out.extend(f.to_be_bytes());
        }
        V::Str(t) => {
            len_header(out, t.len(), Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb);
            out.extend(t.as_bytes());
        }
        V::Bin(b) => {
            len_header(out, b.len(), None, Some(0xc4), 0xc5, 0xc6);
            out.extend(b);
        }
        V::Arr(items) => {
            len_header(out, items.len(), Some((0x90, 15)), None, 0xdc, 0xdd);
            items.iter().for_each(|x| enc(x, out));
        }
        V::Map(pairs) => {
            len_header(out, pairs.len(), Some((0x80, 15)), None, 0xde, 0xdf);
            for (k, x) in pairs {
                enc(k, out);
                enc(x, out);
            }
        }
        V::Ext(ty, data) => {
            match data.len() {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                n => len_header(out, n, None, Some(0xc7), 0xc8, 0xc9),
            }
            out.push(*ty as u8);
            out.extend(data);
        }
    }
}

fn bytes(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    enc(v, &mut out);
    out
}

fn request(pairs: &[(&str, V)]) -> Vec<u8> {
    bytes(&V::Map(pairs.iter().map(|(k, x)| (s(k), x.clone())).collect()))
}

fn array(dtype: &str, shape: &[u64], data: Vec<u8>) -> V {
    V::Map(vec![
        (s("dtype"), s(dtype)),
        (s("shape"), V::Arr(shape.iter().map(|&d| V::UInt(d)).collect())),
        (s("data"), V::Bin(data)),
    ])
}

fn f32_data(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn levels(values: &[V], w: i64, h: i64) -> Vec<u8> {
    request(&[("image_data", V::Arr(values.to_vec())), ("width", V::Int(w)), ("height", V::Int(h))])
}

/// The whole request path short of the network: parse, take the input, decode it, preprocess pixels.
fn run(bytes: &[u8]) -> Result<Option<Vec<f32>>, GuestError> {
    let mut req = parse(bytes)?;
    let input = req.input()?;
    let mut image = None;
    match decode_input(&input, &mut image)? {
        Decoded::Pixels(px, w, h) => {
            let mut out = vec![0.0; classifier_common::HWC];
            vision::Preprocessor::new().run(px, w, h, &mut out).map_err(classifier_common::vision_error)?;
            Ok(Some(out))
        }
        Decoded::Tensor(data) => {
            assert_eq!(data.len(), classifier_common::HWC * 4);
            Ok(None)
        }
    }
}

fn refused(bytes: &[u8]) -> GuestError {
    match run(bytes) {
        Ok(_) => panic!("accepted: {:02x?}", &bytes[bytes.len().saturating_sub(64)..]),
        Err(e) => {
            assert!(!e.message.contains('\n'), "{}", e.message);
            e
        }
    }
}

fn assert_refused(bytes: &[u8], words: &[&str]) {
    let e = refused(bytes);
    assert_eq!(e.kind, "bad_request", "{}", e.message);
    for w in words {
        assert!(e.message.contains(w), "{:?} not in {:?}", w, e.message);
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    let mut out = Vec::new();
    image::ImageEncoder::write_image(image::codecs::png::PngEncoder::new(&mut out), &px, w, h, image::ColorType::Rgb8)
        .unwrap();
    out
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 53 % 241) as u8).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60).encode(&px, w, h, image::ColorType::Rgb8).unwrap();
    out
}

#[test]
fn a_request_is_a_map_never_a_list() {
    // [<png>]: serde's derive alone reads a struct from an array by position, so this was classified.
    for list in [V::Arr(vec![V::Bin(png(4, 3))]), V::Arr(vec![]), V::Int(3), s("image"), V::Bin(png(4, 3)), V::Nil] {
        assert_refused(&bytes(&list), &["must be a msgpack map"]);
    }
    assert!(run(&request(&[("image", V::Bin(png(4, 3)))])).is_ok());
    // Arrays inside are maps too: ["uint8", [1, 1, 3], <bytes>] is not a pixels array.
    let positional = V::Arr(vec![s("uint8"), V::Arr(vec![V::UInt(1), V::UInt(1), V::UInt(3)]), V::Bin(vec![1, 2, 3])]);
    assert_refused(&request(&[("pixels", positional)]), &["pixels", "expected a numpy array map {dtype, shape, data}"]);
}

#[test]
fn unknown_repeated_and_non_string_keys_are_refused() {
    assert_refused(
        &request(&[("image", V::Bin(png(4, 3))), ("topk", V::Int(3))]),
        &["unknown key \"topk\"", "a request takes only image, pixels, image_data"],
    );
    let long = "k".repeat(10_000);
    let e = refused(&request(&[(long.as_str(), V::Nil)]));
    assert!(e.message.len() < 400, "a 10,000-character key is echoed: {} bytes", e.message.len());
    assert_refused(&request(&[("top_k", V::Int(3)), ("top_k", V::Int(4))]), &["top_k is given twice"]);
    assert_refused(&bytes(&V::Map(vec![(V::Int(1), V::Int(2))])), &["expected a field name"]);
    for key in FIELDS {
        assert!(parse(&request(&[(key, V::Nil)])).is_ok(), "{} = nil is absent", key);
    }
}

#[test]
fn image_data_holds_whole_levels_0_to_255() {
    let good: Vec<V> = (0..12).map(|i| if i % 2 == 0 { V::UInt(i * 23) } else { V::F64((i * 23) as f64) }).collect();
    let want: Vec<u8> = (0..12).map(|i| (i * 23) as u8).collect();
    let wire = levels(&good, 2, 2);
    let mut req = parse(&wire).unwrap();
    match req.input().unwrap() {
        Input::Levels(d, 2, 2) => assert_eq!(d, want),
        _ => panic!("not image_data"),
    }
    // The levels preprocess exactly as the same pixels do.
    let px = run(&request(&[("pixels", array("uint8", &[2, 2, 3], want.clone()))])).unwrap();
    assert_eq!(run(&levels(&good, 2, 2)).unwrap(), px);
    let cases: Vec<(V, &str)> = vec![
        (V::Int(300), "image_data[5] is 300, outside 0..255"),
        (V::Int(-1), "image_data[5] is -1, outside 0..255"),
        (V::UInt(u64::MAX), "outside 0..255"),
        (V::F64(12.5), "image_data[5] is 12.5, not a whole number"),
        (V::F32(254.5), "not a whole number"),
        (V::F32(255.5), "outside 0..255"),
        (V::F64(-0.5), "outside 0..255"),
        (V::F64(f64::NAN), "image_data[5] is NaN, not a finite number"),
        (V::F64(f64::INFINITY), "is inf, not a finite number"),
        (V::F32(f32::NEG_INFINITY), "is -inf, not a finite number"),
        (V::F64(1e300), "outside 0..255"),
        (s("7"), "expected image_data[5] to be an RGB level"),
        (V::Nil, "expected image_data[5] to be an RGB level"),
        (V::Arr(vec![V::Int(1)]), "expected image_data[5] to be an RGB level"),
    ];
    for (bad, words) in cases {
        let mut values = good.clone();
        values[5] = bad;
        assert_refused(&levels(&values, 2, 2), &[words, "whole numbers 0..255"]);
    }
    assert_refused(
        &request(&[("image_data", array("uint8", &[12], want)), ("width", V::Int(2)), ("height", V::Int(2))]),
        &["image_data", "send a uint8 numpy array as pixels"],
    );
    assert_refused(&levels(&good, 3, 2), &["image_data: width * height * 3 = 3 * 2 * 3 = 18 but 12 values"]);
}

#[test]
fn sizes_are_checked_before_anything_is_allocated_for_them() {
    let one = vec![V::UInt(0); 3];
    for (w, words) in [
        (V::Int(0), "width must be 1..8192, got 0"),
        (V::Int(-1), "width must be 1..8192, got -1"),
        (V::Int(8193), "width must be 1..8192, got 8193"),
        (V::Int(1 << 40), "width must be 1..8192"),
        (V::Int(i64::MAX), "width must be 1..8192"),
        (V::UInt(u64::MAX), "width: invalid value"),
        (V::F64(2.0), "width: invalid type"),
        (s("2"), "width: invalid type"),
    ] {
        assert_refused(&request(&[("image_data", V::Arr(one.clone())), ("width", w), ("height", V::Int(1))]), &[words]);
    }
    // A header claiming 4 billion levels over a few bytes: refused as truncated, nothing reserved for it.
    let mut huge = request(&[("width", V::Int(1)), ("height", V::Int(1))]);
    huge[0] += 1;
    huge.extend([0xaa]);
    huge.extend(b"image_data");
    huge.extend([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert_refused(&huge, &["truncated"]);
    // pixels whose shape claims more than their data, or more than the limit.
    assert_refused(&request(&[("pixels", array("uint8", &[1 << 31, 1 << 31, 3], vec![]))]), &["pixels"]);
    assert_refused(&request(&[("pixels", array("uint8", &[1, 9000, 3], vec![0; 27_000]))]), &["exceeds the limit"]);
    assert_refused(&request(&[("pixels", array("uint8", &[0, 10, 3], vec![]))]), &["must be nonzero"]);
    let dims = vec![1u64; 100_000];
    let e = refused(&request(&[("pixels", array("uint8", &dims, vec![0]))]));
    assert!(e.message.len() < 300, "a 100,000-dimension shape is echoed: {} bytes", e.message.len());
    // width and height belong to image_data.
    let px = array("uint8", &[2, 2, 3], vec![0; 12]);
    assert_refused(&request(&[("pixels", px), ("width", V::Int(2))]), &["width and height go with image_data only"]);
}

#[test]
fn a_tensor_is_finite_float32_224x224x3() {
    let zeros = vec![0.0f32; classifier_common::HWC];
    assert!(run(&request(&[("tensor", array("float32", &[224, 224, 3], f32_data(&zeros)))])).is_ok());
    assert!(run(&request(&[("tensor", array("float32", &[1, 224, 224, 3], f32_data(&zeros)))])).is_ok());
    for (i, bad) in [(7usize, f32::NAN), (3379, f32::INFINITY), (classifier_common::HWC - 1, f32::NEG_INFINITY)] {
        let mut t = zeros.clone();
        t[i] = bad;
        let want = format!("tensor[{}] is not a finite number ({})", i, bad);
        assert_refused(&request(&[("tensor", array("float32", &[224, 224, 3], f32_data(&t)))]), &[&want, "-1..1"]);
    }
    assert_refused(&request(&[("tensor", array("float64", &[224, 224, 3], vec![0; classifier_common::HWC * 8]))]), &["float32"]);
    assert_refused(&request(&[("tensor", array("float32", &[112, 112, 3], vec![0; 112 * 112 * 12]))]), &["[224, 224, 3]"]);
    assert_refused(&request(&[("tensor", array("float32", &[224, 224, 3], vec![0; 12]))]), &["tensor", "bytes of data"]);
}

#[test]
fn options_are_typed() {
    let image = ("image", V::Bin(png(4, 3)));
    for (pair, words) in [
        (("top_k", s("3")), "top_k: invalid type: string \"3\", expected i64"),
        (("top_k", V::F64(3.0)), "top_k: invalid type"),
        (("top_k", V::UInt(u64::MAX)), "top_k: invalid value"),
        (("return_logits", V::Int(1)), "return_logits: invalid type"),
        (("model_id", V::Int(1)), "model_id: invalid type"),
        (("model_id", V::Bin(b"m".to_vec())), "model_id: invalid type"),
        (("image", s("not bytes")), "image: invalid type: string \"not bytes\", expected JPEG or PNG bytes"),
        (("load", V::Bool(true)), "load: invalid type"),
        (("image", V::Ext(-1, vec![0; 8])), "image: invalid type"),
    ] {
        let (k, v) = pair;
        let bytes = if k == "image" { request(&[(k, v)]) } else { request(&[image.clone(), (k, v)]) };
        assert_refused(&bytes, &[words]);
    }
    let wire = request(&[image, ("top_k", V::Int(3)), ("model_id", s("m")), ("load", s("bytes"))]);
    let ok = parse(&wire).unwrap();
    assert_eq!((ok.top_k(), ok.model_id(), ok.load), (3, "m", Some("bytes")));
}

#[test]
fn malformed_msgpack_and_trailing_bytes() {
    let good = request(&[("image", V::Bin(png(4, 3)))]);
    assert_refused(&good[..good.len() - 1], &["truncated"]);
    let mut trailing = good.clone();
    trailing.push(0xc0);
    assert_refused(&trailing, &["1 bytes follow"]);
    assert_refused(b"", &["empty"]);
    assert_refused(b"\xc1", &["0xc1"]);
    // Nesting a million arrays deep costs no stack: refused by type at the first level serde reads.
    for key in ["image_data", "pixels", "top_k", "width"] {
        let mut deep = request(&[(key, V::Nil)]);
        deep.pop();
        deep.extend(std::iter::repeat(0x91).take(1_000_000));
        deep.push(0xc0);
        refused(&deep);
    }
    let mut deep: Vec<u8> = std::iter::repeat(0x91).take(1_000_000).collect();
    deep.push(0xc0);
    assert_refused(&deep, &["must be a msgpack map"]);
}

// ------------------------------------------------------------------------------------------------------ fuzzing

/// xorshift64*: deterministic, so a failing case is reproduced by its number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const EDGY_INTS: &[i64] = &[0, 1, 2, 3, 5, 224, 255, 256, 1000, 1001, 8192, 8193, -1, -32, -33, i32::MAX as i64, i64::MAX, i64::MIN];
const EDGY_FLOATS: &[f64] = &[0.0, -0.0, 0.5, 1.0, 127.0, 255.0, 255.5, 256.0, -1.0, 1e39, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

const WORDS: &[&str] = &["", "uint8", "float32", "efficientnet-lite0", "name", "bytes", "../etc", "é", "image"];

fn any_value(r: &mut Rng, depth: u32) -> V {
    match r.below(if depth == 0 { 9 } else { 11 }) {
        0 => V::Nil,
        1 => V::Bool(r.chance(50)),
        2 => V::Int(*r.pick(EDGY_INTS)),
        3 => V::UInt(r.next()),
        4 => V::F64(*r.pick(EDGY_FLOATS)),
        5 => V::F32(*r.pick(EDGY_FLOATS) as f32),
        6 => s(*r.pick(WORDS)),
        7 => V::Bin((0..r.below(40)).map(|_| r.next() as u8).collect()),
        8 => V::Ext(r.next() as i8, (0..*r.pick(&[1u64, 2, 3, 4, 8, 16, 20])).map(|_| r.next() as u8).collect()),
        9 => V::Arr((0..r.below(5)).map(|_| any_value(r, depth - 1)).collect()),
        _ => V::Map((0..r.below(4)).map(|_| (any_value(r, depth - 1), any_value(r, depth - 1))).collect()),
    }
}

fn dims(r: &mut Rng) -> Vec<u64> {
    let n = *r.pick(&[0u64, 1, 2, 3, 3, 3, 3, 4]);
    (0..n).map(|_| *r.pick(&[0u64, 1, 2, 3, 4, 5, 224, 8193, 1 << 32, u64::MAX])).collect()
}

fn plausible(r: &mut Rng, key: &str, images: &[Vec<u8>]) -> V {
    if r.chance(15) {
        return any_value(r, 2);
    }
    match key {
        "image" => V::Bin(r.pick(images).clone()),
        "pixels" | "tensor" => {
            let dtype = *r.pick(&["uint8", "uint8", "float32", "float32", "float64", "int64", "complex64", ""]);
            let shape = if key == "tensor" && r.chance(30) {
                vec![224, 224, 3]
            } else if r.chance(50) {
                vec![1 + r.below(6), 1 + r.below(6), 3]
            } else {
                dims(r)
            };
            let item = if dtype == "uint8" { 1 } else { 4 };
            let n = shape.iter().try_fold(item, |a: u64, &d| a.checked_mul(d)).filter(|&n| n <= 1 << 20);
            let len = match n {
                Some(n) if r.chance(80) => n,
                _ => r.below(64),
            };
            let special = [0.0f32, 1.0, -1.0, 1e30, f32::NAN, f32::INFINITY];
            let data = (0..len / 4 + 1)
                .flat_map(|_| if r.chance(2) { r.pick(&special).to_le_bytes() } else { ((r.below(256) as f32 - 127.0) / 128.0).to_le_bytes() })
                .take(len as usize)
                .collect();
            if r.chance(5) {
                return V::Arr(vec![s(dtype), V::Arr(shape.into_iter().map(V::UInt).collect()), V::Bin(data)]);
            }
            let mut fields = vec![
                (s("dtype"), s(dtype)),
                (s("shape"), V::Arr(shape.into_iter().map(V::UInt).collect())),
                (s("data"), V::Bin(data)),
            ];
            if r.chance(5) {
                fields.remove(r.below(3) as usize);
            }
            if r.chance(5) {
                fields.push((s("extra"), V::Nil));
            }
            V::Map(fields)
        }
        "image_data" => {
            let n = *r.pick(&[0u64, 3, 12, 27, 48, 300]);
            V::Arr(
                (0..n)
                    .map(|_| match r.below(20) {
                        0 => V::F64(*r.pick(EDGY_FLOATS)),
                        1 => V::Int(*r.pick(EDGY_INTS)),
                        2 => any_value(r, 1),
                        3..=8 => V::F64(r.below(256) as f64),
                        _ => V::UInt(r.below(256)),
                    })
                    .collect(),
            )
        }
        "width" | "height" => V::Int(if r.chance(70) { 1 + r.below(10) as i64 } else { *r.pick(EDGY_INTS) }),
        "top_k" => V::Int(*r.pick(EDGY_INTS)),
        "return_logits" | "return_tensor" => V::Bool(r.chance(50)),
        _ => any_value(r, 1),
    }
}

/// A request the guest answers: one input of consistent size, and options in range.
fn valid(r: &mut Rng, images: &[Vec<u8>]) -> Vec<(V, V)> {
    let (w, h) = (1 + r.below(7), 1 + r.below(7));
    let mut pairs = match r.below(10) {
        0..=3 => vec![(s("image"), V::Bin(r.pick(&images[..4]).clone()))],
        4..=6 => vec![(s("pixels"), array("uint8", &[h, w, 3], (0..w * h * 3).map(|_| r.next() as u8).collect()))],
        7 | 8 => vec![
            (s("image_data"), V::Arr((0..w * h * 3).map(|_| if r.chance(50) { V::UInt(r.below(256)) } else { V::F64(r.below(256) as f64) }).collect())),
            (s("width"), V::UInt(w)),
            (s("height"), V::UInt(h)),
        ],
        _ => vec![(s("tensor"), array("float32", &[224, 224, 3], (0..classifier_common::HWC).flat_map(|_| ((r.below(256) as f32 - 127.0) / 128.0).to_le_bytes()).collect()))],
    };
    if r.chance(50) {
        pairs.push((s("top_k"), V::UInt(1 + r.below(1000))));
    }
    for key in ["return_logits", "return_tensor", "model_id"] {
        if r.chance(20) {
            pairs.push((s(key), if key == "model_id" { s("efficientnet-lite0") } else { V::Bool(r.chance(50)) }));
        }
    }
    pairs
}

fn generated(r: &mut Rng, images: &[Vec<u8>]) -> Vec<u8> {
    let mut pairs = Vec::new();
    if r.chance(40) {
        pairs = valid(r, images);
        if r.chance(40) {
            let at = r.below(pairs.len() as u64) as usize;
            let key = match &pairs[at].0 {
                V::Str(k) => k.clone(),
                _ => unreachable!(),
            };
            pairs[at].1 = plausible(r, &key, images);
        }
    } else {
        for _ in 0..r.below(6) {
            let key = if r.chance(90) { r.pick(FIELDS).to_string() } else { r.pick(&["", "topk", "x", "image "]).to_string() };
            let value = plausible(r, &key, images);
            pairs.push((V::Str(key), value));
        }
    }
    let top = if r.chance(3) { V::Arr(pairs.into_iter().map(|(_, v)| v).collect()) } else { V::Map(pairs) };
    let mut b = bytes(&top);
    if r.chance(30) && !b.is_empty() {
        for _ in 0..1 + r.below(3) {
            let at = r.below(b.len() as u64) as usize;
            match r.below(4) {
                0 => b[at] ^= 1 << r.below(8),
                1 => b[at] = r.next() as u8,
                2 => b.truncate(at),
                _ => b.insert(at, r.next() as u8),
            }
            if b.is_empty() {
                break;
            }
        }
    }
    b
}

#[test]
fn fuzzed_requests_end_in_an_answer_or_an_error_never_a_panic() {
    let cases: u64 = std::env::var("EDGEWASM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let images = vec![png(4, 3), png(1, 1), jpeg(8, 5), jpeg(1, 1), png(3, 2)[..40].to_vec(), jpeg(8, 5)[..100].to_vec()];
    let seed: u64 = std::env::var("EDGEWASM_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xd1b5_4a32_d192_ed03));
    let (mut answered, mut kinds) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    for case in 0..cases {
        let b = generated(&mut r, &images);
        let outcome = std::panic::catch_unwind(|| run(&b));
        match outcome {
            Err(_) => panic!("seed {} case {} panicked on {:02x?}", seed, case, &b[..b.len().min(200)]),
            Ok(Ok(_)) => answered += 1,
            Ok(Err(e)) => {
                assert!(!e.message.is_empty() && !e.message.contains('\n'), "case {}: {:?}", case, e.message);
                assert!(e.message.len() < 1000, "case {}: a {}-byte message", case, e.message.len());
                *kinds.entry(e.kind).or_default() += 1;
            }
        }
    }
    eprintln!("fuzzed {} requests (seed {}): {} answered, errors {:?}", cases, seed, answered, kinds);
    // The generator must reach both ends, or it tests nothing.
    assert!(answered >= cases / 10 && kinds.get("bad_request").copied().unwrap_or(0) >= cases / 2, "{} {:?}", answered, kinds);
}
