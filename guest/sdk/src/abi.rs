//! The ABI v1 exports and the request/response plumbing behind `export_infer!`.
//!
//! Memory: every buffer the host sees (request buffers from `edge_alloc`, response buffers from `infer`) is
//! allocated through the global allocator with the layout `(size, ALIGN)`, so `edge_free(ptr, size)` can hand
//! the exact layout back. `edge_alloc(0)` returns `ALIGN` (a non-null, aligned, never-dereferenced address,
//! like Rust's dangling pointers), and `edge_free` ignores size 0, so 0 always means "could not allocate".

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ErrorEnvelope, GuestError};
use crate::request::{decode, one_line};

/// The ABI version `edge_abi_version` reports.
pub const ABI_VERSION: i32 = 1;
/// Alignment of every buffer handed to the host (enough for any numpy dtype, and for SIMD loads).
pub const ALIGN: usize = 16;

/// Sent when even the error map cannot be allocated:
/// `{"error": {"kind": "internal", "message": "guest out of memory"}}`. Static: `edge_free` ignores it.
static OOM_RESPONSE: [u8; 50] = *b"\x81\xa5error\x82\xa4kind\xa8internal\xa7message\xb3guest out of memory";

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, ALIGN).ok()
}

/// ABI export: a buffer of `size` bytes, or 0 when the guest cannot allocate (never aborts).
#[no_mangle]
pub extern "C" fn edge_alloc(size: i32) -> i32 {
    if size < 0 {
        return 0;
    }
    if size == 0 {
        return ALIGN as i32;
    }
    match layout(size as usize) {
        // SAFETY: the layout has a non-zero size; `alloc` returns null on failure, which we pass on as 0.
        Some(l) => unsafe { alloc(l) as usize as i32 },
        None => 0,
    }
}

/// ABI export: releases a buffer from `edge_alloc` or a response buffer from `infer`.
#[no_mangle]
pub extern "C" fn edge_free(ptr: i32, size: i32) {
    if ptr == 0 || size <= 0 {
        return;
    }
    let p = ptr as u32 as usize as *mut u8;
    if p as *const u8 == OOM_RESPONSE.as_ptr() {
        return;
    }
    if let Some(l) = layout(size as usize) {
        // SAFETY: the ABI says `ptr`/`size` come from edge_alloc or an infer response, both (size, ALIGN).
        unsafe { dealloc(p, l) }
    }
}

/// ABI export: the ABI version this guest speaks (1).
#[no_mangle]
pub extern "C" fn edge_abi_version() -> i32 {
    ABI_VERSION
}

/// A growable byte buffer allocated with the `(cap, ALIGN)` layout, so the host can free it by its length.
struct OutBuf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

impl OutBuf {
    fn new() -> Self {
        OutBuf { ptr: std::ptr::null_mut(), cap: 0, len: 0 }
    }

    fn grow(&mut self, need: usize) -> io::Result<()> {
        let oom = || io::Error::new(io::ErrorKind::OutOfMemory, "guest out of memory");
        let want = need.max(self.cap.saturating_mul(2)).max(256);
        let new_layout = layout(want).ok_or_else(oom)?;
        // SAFETY: `ptr` was allocated with `layout(cap)` (or is null with cap 0); `want` > 0.
        let p = unsafe {
            if self.cap == 0 {
                alloc(new_layout)
            } else {
                realloc(self.ptr, layout(self.cap).ok_or_else(oom)?, want)
            }
        };
        if p.is_null() {
            return Err(oom());
        }
        self.ptr = p;
        self.cap = want;
        Ok(())
    }

    /// Gives the buffer to the host: shrinks it to exactly `len` bytes so that `edge_free(ptr, len)` matches.
    fn into_raw(mut self) -> Option<(*mut u8, usize)> {
        if self.len == 0 {
            return None;
        }
        if self.cap != self.len {
            // SAFETY: shrinking a live (cap, ALIGN) allocation to a non-zero size.
            let p = unsafe { realloc(self.ptr, layout(self.cap)?, self.len) };
            if p.is_null() {
                return None;
            }
            self.ptr = p;
            self.cap = self.len;
        }
        let out = (self.ptr, self.len);
        std::mem::forget(self);
        Some(out)
    }
}

impl io::Write for OutBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let need = self.len.checked_add(buf.len()).ok_or(io::ErrorKind::OutOfMemory)?;
        if need > self.cap {
            self.grow(need)?;
        }
        // SAFETY: `need <= cap`, and `buf` cannot overlap our private allocation.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr.add(self.len), buf.len()) };
        self.len = need;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for OutBuf {
    fn drop(&mut self) {
        if self.cap != 0 {
            if let Some(l) = layout(self.cap) {
                // SAFETY: allocated with exactly this layout.
                unsafe { dealloc(self.ptr, l) }
            }
        }
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<OutBuf, rmp_serde::encode::Error> {
    let mut buf = OutBuf::new();
    rmp_serde::encode::write_named(&mut buf, value)?;
    Ok(buf)
}

fn pack(ptr: *const u8, len: usize) -> i64 {
    (((ptr as usize as u32 as u64) << 32) | (len as u32 as u64)) as i64
}

/// Encodes the handler's outcome; an answer that fails to encode becomes an `internal` error map. Every error
/// message leaves as one line of bounded length, whatever request text a handler quoted in it.
fn encode_result<Resp: Serialize>(result: Result<Resp, GuestError>) -> Option<OutBuf> {
    let encoded = match &result {
        Ok(resp) => encode(resp).map_err(|e| GuestError::internal(format!("response does not encode: {}", e))),
        Err(err) => Err(err.clone()),
    };
    encoded
        .or_else(|err| {
            let err = GuestError { kind: one_line(&err.kind), message: one_line(&err.message) };
            encode(&ErrorEnvelope { error: &err })
        })
        .ok()
}

/// Hands the encoded outcome to the host; when not even the error map fits in memory, a static one.
fn respond<Resp: Serialize>(result: Result<Resp, GuestError>) -> i64 {
    match encode_result(result).and_then(OutBuf::into_raw) {
        Some((ptr, len)) => pack(ptr, len),
        None => pack(OOM_RESPONSE.as_ptr(), OOM_RESPONSE.len()),
    }
}

/// The request bytes the host wrote at `[ptr, ptr+len)`.
///
/// # Safety
/// Only sound for the arguments the host passes to `infer`: a live buffer the guest does not touch while the
/// handler runs. The lifetime is the handler call (enforced by the higher-ranked closure bounds below).
unsafe fn request<'a>(ptr: i32, len: i32) -> &'a [u8] {
    if len <= 0 || ptr == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len as u32 as usize)
    }
}

/// Behind `export_infer!`: decode an owned request, call the handler, encode the answer.
#[doc(hidden)]
pub fn infer_owned<Req, Resp, F>(ptr: i32, len: i32, handler: F) -> i64
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Result<Resp, GuestError>,
{
    // SAFETY: called only from the generated `infer` export with the host's arguments.
    let bytes = unsafe { request(ptr, len) };
    respond(decode::<Req>(bytes).and_then(handler))
}

/// Behind `export_infer_bytes!`: hand the raw request bytes to the handler.
#[doc(hidden)]
pub fn infer_bytes<Resp, F>(ptr: i32, len: i32, handler: F) -> i64
where
    Resp: Serialize,
    F: for<'a> FnOnce(&'a [u8]) -> Result<Resp, GuestError>,
{
    // SAFETY: called only from the generated `infer` export with the host's arguments.
    let bytes = unsafe { request(ptr, len) };
    respond(handler(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_response_is_the_error_map() {
        let v: std::collections::BTreeMap<String, GuestError> = rmp_serde::from_slice(&OOM_RESPONSE).unwrap();
        assert_eq!(v["error"], GuestError::internal("guest out of memory"));
    }

    #[test]
    fn error_envelope_wire_form() {
        let buf = encode(&ErrorEnvelope { error: &GuestError::bad_request("x") }).unwrap();
        let (p, n) = buf.into_raw().unwrap();
        let bytes = unsafe { std::slice::from_raw_parts(p, n) }.to_vec();
        unsafe { dealloc(p, layout(n).unwrap()) };
        assert_eq!(bytes, b"\x81\xa5error\x82\xa4kind\xabbad_request\xa7message\xa1x".to_vec());
    }

    fn take(buf: OutBuf) -> Vec<u8> {
        let (p, n) = buf.into_raw().unwrap();
        let bytes = unsafe { std::slice::from_raw_parts(p, n) }.to_vec();
        unsafe { dealloc(p, layout(n).unwrap()) };
        bytes
    }

    /// A response whose serialization fails, as a buggy `Serialize` impl would.
    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no wire form"))
        }
    }

    #[test]
    fn unencodable_response_becomes_an_internal_error_map() {
        let bytes = take(encode_result(Ok(Unencodable)).unwrap());
        let v: std::collections::BTreeMap<String, GuestError> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(v["error"].kind, "internal");
        assert!(v["error"].message.contains("no wire form"), "{}", v["error"].message);
    }

    #[test]
    fn handler_error_and_bad_request_are_error_maps() {
        let bytes = take(encode_result::<()>(Err(GuestError::not_found("no model m"))).unwrap());
        let v: std::collections::BTreeMap<String, GuestError> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(v["error"], GuestError::not_found("no model m"));
        let err = decode::<std::collections::BTreeMap<String, u8>>(b"\xc1").unwrap_err();
        assert_eq!(err.kind, "bad_request");
    }

    #[test]
    fn error_messages_leave_as_one_bounded_line() {
        let long = format!("bad\r\n{}", "x".repeat(5000));
        let bytes = take(encode_result::<()>(Err(GuestError::bad_request(long))).unwrap());
        let v: std::collections::BTreeMap<String, GuestError> = rmp_serde::from_slice(&bytes).unwrap();
        assert!(v["error"].message.starts_with("bad\\r\\nxxx") && v["error"].message.ends_with("..."));
        assert!(v["error"].message.len() < 420);
    }

    #[test]
    fn structs_encode_as_named_maps() {
        #[derive(Serialize)]
        struct R {
            label: &'static str,
        }
        assert_eq!(take(encode_result(Ok(R { label: "cat" })).unwrap()), b"\x81\xa5label\xa3cat".to_vec());
    }

    #[test]
    fn outbuf_grows_and_shrinks() {
        use io::Write;
        let mut buf = OutBuf::new();
        for i in 0..10_000u32 {
            buf.write_all(&i.to_le_bytes()).unwrap();
        }
        let (p, n) = buf.into_raw().unwrap();
        assert_eq!(n, 40_000);
        assert_eq!(p as usize % ALIGN, 0);
        let bytes = unsafe { std::slice::from_raw_parts(p, n) };
        assert_eq!(&bytes[4 * 9_999..], &9_999u32.to_le_bytes());
        unsafe { dealloc(p, layout(n).unwrap()) };
    }
}
