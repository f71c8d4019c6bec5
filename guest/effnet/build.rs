//! Builds the C SIMD kernels (csrc/q8.c: INT8; csrc/f32.c: FP32) with Debian's clang-19 into one static library
//! when the crate is compiled for wasm32 with simd128: relaxed SIMD with the `relaxed-simd` feature, plain SIMD
//! otherwise.
//! Other builds (native tests, the scalar wasm build) use the scalar Rust kernels and need no C compiler.
//! `EFFNET_CLANG` / `EFFNET_AR` name other binaries (default `clang-19`, `llvm-ar-19`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "effnet: cannot run {} ({}): install the wasm C toolchain with `make toolchain` \
             (apt-get install clang-19 lld-19 llvm-19 libclang-rt-19-dev-wasm32 wasi-libc)",
            what, e
        )
    });
    assert!(status.success(), "effnet: {} failed", what);
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/q8.c");
    println!("cargo:rerun-if-changed=csrc/f32.c");
    println!("cargo:rerun-if-env-changed=EFFNET_CLANG");
    println!("cargo:rerun-if-env-changed=EFFNET_AR");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if arch != "wasm32" || !features.split(',').any(|f| f == "simd128") {
        return;
    }
    let relaxed = env::var_os("CARGO_FEATURE_RELAXED_SIMD").is_some();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let src = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("csrc");
    let clang = env::var("EFFNET_CLANG").unwrap_or_else(|_| "clang-19".to_string());
    let ar = env::var("EFFNET_AR").unwrap_or_else(|_| "llvm-ar-19".to_string());
    let mut objs = Vec::new();
    for name in ["q8", "f32"] {
        let obj = out.join(format!("{}.o", name));
        let mut cc = Command::new(&clang);
        // -mcpu=mvp: only the features named here (LLVM 19's default CPU adds reference types and multivalue,
        // which Rust 1.63's linker and the rest of the module do not use). No -g: no paths in the object.
        cc.args(["--target=wasm32-wasi", "-mcpu=mvp", "-msimd128", "-O3", "-ffp-contract=off", "-fno-builtin"])
            .args(["-nostdlib", "-ffreestanding", "-Wall", "-Werror", "-c"])
            .arg(format!("-ffile-prefix-map={}=/edgewasm/guest/effnet/csrc", src.display()));
        if relaxed {
            cc.arg("-mrelaxed-simd");
        }
        if name == "f32" {
            // Constant tap offsets stay in the loads' offset fields (see csrc/f32.c).
            cc.args(["-mllvm", "-disable-lsr"]);
        }
        cc.arg(src.join(format!("{}.c", name))).arg("-o").arg(&obj);
        run(&mut cc, &clang);
        objs.push(obj);
    }
    let lib = out.join("libeffnet_c.a");
    let _ = std::fs::remove_file(&lib);
    run(Command::new(&ar).arg("rcsD").arg(&lib).args(&objs), &ar);
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-cfg=effnet_q8_c");
    println!("cargo:rustc-cfg=effnet_f32_c");
    // The FP32 GEMM in C, both builds (on relaxed madd in the relaxed one; the plain one's C kernel gives the
    // bits of the Rust microkernel `micro_mem`, which the 12-row C kernels outrun).
    println!("cargo:rustc-cfg=effnet_f32_gemm_c");
    if relaxed {
        println!("cargo:rustc-cfg=effnet_q8_relaxed");
    }
}
