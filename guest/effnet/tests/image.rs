//! The packed weight image parser: what it accepts, and that every damaged image is an error, not a panic.

use effnet::image::{leak_aligned, Image};

/// An image with the given header lines and `data_len` bytes after a 256-byte header block.
fn image(lines: &[&str], data: &[u8]) -> &'static [u8] {
    let header = lines.join("\n") + "\n";
    let mut bytes = vec![0u8; 256];
    bytes[..4].copy_from_slice(b"EWP1");
    bytes[4..8].copy_from_slice(&(header.len() as u32).to_le_bytes());
    bytes[8..8 + header.len()].copy_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let buf = leak_aligned(bytes.len());
    buf.copy_from_slice(&bytes);
    buf
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_good_image_gives_its_tensors_in_place() {
    let data = floats(&[1.0, 2.0, 3.0, 4.0]);
    let bytes = image(&["meta layout x", "block 0 3 1 1 32 16", "tensor t f32 256 16 2x2"], &data);
    let img = Image::parse(bytes).unwrap();
    assert_eq!(img.meta("layout"), Some("x"));
    assert_eq!(img.blocks().len(), 1);
    let t = img.f32s("t", 4).unwrap();
    assert_eq!(t, &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t.as_ptr() as usize, bytes.as_ptr() as usize + 256, "used in place, not copied");
    assert!(img.i8s("t", 16).is_err(), "wrong dtype");
    assert!(img.f32s("t", 5).is_err(), "wrong count");
    assert!(img.f32s("nope", 4).is_err());
}

#[test]
fn damaged_images_are_errors() {
    let data = floats(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let cases: Vec<(Vec<&str>, usize, &str)> = vec![
        (vec!["tensor t f32 256 16 2x2"], 8, "truncated"),
        (vec!["tensor t f32 260 16 2x2"], 20, "line"),
        (vec!["tensor t f32 256 12 2x2"], 16, "line"),
        (vec!["tensor t f99 256 16 2x2"], 16, "line"),
        (vec!["tensor t f32 256 16 2x2", "tensor t f32 256 16 2x2"], 16, "twice"),
        (vec!["block 3 3 1 1 32 16"], 0, "line"),
        (vec!["bogus"], 0, "line"),
        (vec!["tensor t f32 256 16 99999999999x99999999999"], 16, "line"),
    ];
    for (lines, n, what) in cases {
        let bytes = image(&lines, &data[..n]);
        let e = Image::parse(bytes).unwrap_err();
        assert!(e.0.contains(what), "{:?}: {}", lines, e.0);
    }
    // not aligned in memory
    let bytes = image(&["tensor t f32 256 16 2x2"], &data[..16]);
    let shifted = leak_aligned(bytes.len() + 1);
    shifted[1..].copy_from_slice(bytes);
    assert!(Image::parse(&shifted[1..]).unwrap_err().0.contains("aligned"));
    assert!(Image::parse(b"EWT1\0\0\0\0").is_err());
    assert!(Image::parse(&bytes[..6]).is_err());
    let huge = leak_aligned(bytes.len());
    huge.copy_from_slice(bytes);
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Image::parse(huge).unwrap_err().0.contains("truncated"));
}
