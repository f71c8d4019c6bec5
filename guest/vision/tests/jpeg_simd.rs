//! guest/vendor/jpeg-decoder's simd128 IDCT and colour conversion give the pixels jpeg-decoder's SSSE3 path gives
//! on x86-64: the same digest of the decoded cat natively (SSSE3, `make guest-test`) and in wasmtime (simd128,
//! `make guest-test-wasm`). The scalar path (a wasm build without simd128) decodes slightly differently.

/// FNV-1a over the decoded bytes.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
fn digest(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[test]
fn simd_decode_is_the_ssse3_decode() {
    let img = vision::decode(include_bytes!("../../../examples/cat.jpg")).unwrap();
    assert_eq!((img.width, img.height), (451, 300));
    assert_eq!(digest(&img.data), 2227659829908575585, "digest of the decoded cat");
}

/// Small 4:2:0 JPEGs (tests/data, see README.md there) whose chroma rows are 1 to 24 samples wide: the simd128
/// H2V2 upsampler's block loop, its scalar tail and the one-sample row all give the scalar upsampler's pixels.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[test]
fn simd_upsampling_is_the_scalar_upsampling() {
    let cases: [(&str, &[u8], u64); 7] = [
        ("1x5", include_bytes!("data/h2v2_1x5.jpg"), 706383588228052536),
        ("2x2", include_bytes!("data/h2v2_2x2.jpg"), 16202169299619704922),
        ("9x3", include_bytes!("data/h2v2_9x3.jpg"), 8279172739496394532),
        ("17x17", include_bytes!("data/h2v2_17x17.jpg"), 10710315030435872851),
        ("18x9", include_bytes!("data/h2v2_18x9.jpg"), 631564143660723142),
        ("33x16", include_bytes!("data/h2v2_33x16.jpg"), 2223423434668230847),
        ("47x31", include_bytes!("data/h2v2_47x31.jpg"), 9958711483409329703),
    ];
    let mut got = Vec::new();
    for (name, bytes, _) in cases.iter() {
        let img = vision::decode(bytes).unwrap();
        assert_eq!(format!("{}x{}", img.width, img.height), *name);
        got.push(digest(&img.data));
    }
    let want: Vec<u64> = cases.iter().map(|c| c.2).collect();
    assert_eq!(got, want, "digests of the decoded test JPEGs");
}
