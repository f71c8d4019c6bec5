//! EfficientNet-Lite0 in pure Rust for WebAssembly: an EWT weight-file loader and an NHWC forward pass
//! with wasm simd128 kernels (scalar fallbacks when built without `+simd128`).

pub mod ewt;
pub mod kernels;
pub mod net;

pub use ewt::{BlockSpec, Ewt, EwtError};
pub use net::Network;

/// Parses and validates an EWT file and builds a network for 224 x 224 x 3 inputs.
pub fn load(bytes: Vec<u8>) -> Result<(Ewt, Network), EwtError> {
    let ewt = Ewt::parse(bytes)?;
    let net = Network::new(&ewt, 224, 224)?;
    Ok((ewt, net))
}

/// Reads an open EWT file's header, validates it, and builds a network for 224 x 224 x 3 inputs, streaming
/// each tensor from the file straight into its packed form (the raw file is never held in memory).
pub fn load_file(file: std::fs::File) -> Result<(Ewt, Network), EwtError> {
    let ewt = Ewt::from_file(file)?;
    let net = Network::new(&ewt, 224, 224)?;
    Ok((ewt, net))
}
