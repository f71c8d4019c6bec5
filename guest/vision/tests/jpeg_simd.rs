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
