//! The guest-reported error, encoded as `{"error": {"kind": ..., "message": ...}}` (docs/abi.md).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A guest-reported error; the host raises it as `edgewasm.GuestError(kind, message)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestError {
    /// One of `bad_request`, `not_found`, `model_unavailable`, `decode`, `out_of_memory`, `internal` (others are
    /// allowed).
    pub kind: String,
    /// A one-line, human-readable explanation.
    pub message: String,
}

/// `Result<T, GuestError>`.
pub type Result<T> = std::result::Result<T, GuestError>;

impl GuestError {
    /// An error of any kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        GuestError { kind: kind.into(), message: message.into() }
    }
    /// A malformed or incomplete request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }
    /// An unknown model id (or other named thing).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }
    /// The model store is not mounted or is incomplete.
    pub fn model_unavailable(message: impl Into<String>) -> Self {
        Self::new("model_unavailable", message)
    }
    /// An input (an image, ...) that cannot be decoded.
    pub fn decode(message: impl Into<String>) -> Self {
        Self::new("decode", message)
    }
    /// A bug or resource failure inside the guest.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", message)
    }
    /// An input whose handling needs more memory than the guest can get (found before the allocation that would
    /// abort the guest); the message says how much and what to do.
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new("out_of_memory", message)
    }
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for GuestError {}

/// The wire form: a map whose only key is `error`.
#[derive(Serialize)]
pub(crate) struct ErrorEnvelope<'a> {
    pub(crate) error: &'a GuestError,
}
