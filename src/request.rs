//! The request type handed from sources to the engine, and the key that names a request for resume.
//! Owns no I/O; anything that builds a [`Request`] goes through here.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use url::Url;

/// Where a request came from: the input's name and its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The input's name as the user gave it (`-` is shown as `<stdin>`).
    pub input: Arc<str>,
    /// 1-based line number in that input.
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.input, self.line)
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// Names the request in the store; an explicit `id` or [`default_key`].
    pub key: String,
    /// HTTP method.
    pub method: Method,
    /// Absolute http or https URL.
    pub url: Url,
    /// Headers sent as given (Host, User-Agent and Content-Length are added when absent).
    pub headers: HeaderMap,
    /// Request body; empty for none.
    pub body: Bytes,
    /// Where the request was read from.
    pub origin: Origin,
}

/// The key of a request that has no explicit id: a stable hash of method, URL and body.
///
/// The same method, URL and body give the same key in every run, which is what makes resume work.
///
/// ```
/// use http::Method;
/// let a = fanout::request::default_key(&Method::GET, "http://127.0.0.1/a", b"");
/// let b = fanout::request::default_key(&Method::GET, "http://127.0.0.1/a", b"");
/// let c = fanout::request::default_key(&Method::POST, "http://127.0.0.1/a", b"");
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// assert_eq!(a.len(), 32);
/// ```
pub fn default_key(method: &Method, url: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(url.as_bytes());
    h.update(b"\n");
    h.update(body);
    let digest = h.finalize();
    to_hex(&digest[..16])
}

/// Lower-case hex of `bytes`. (The `hex` crate's encoder goes through a `char` iterator and was
/// ~1% of a request's CPU.)
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = vec![0u8; bytes.len() * 2];
    // Pairs written in place: no capacity check per byte, as `push` has.
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    // Only ASCII digits and letters were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_matches_the_usual_spelling() {
        assert_eq!(super::to_hex(&[0x00, 0x0f, 0xa0, 0xff, 0x12]), "000fa0ff12");
        assert_eq!(super::to_hex(&[]), "");
    }
}
