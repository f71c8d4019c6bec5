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
