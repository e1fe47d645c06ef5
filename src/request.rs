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

/// A request that cannot be made (a bad URL, an unsupported scheme, a bad header).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub(crate) String);

impl Request {
    /// A `method` request for `url` (absolute, http or https), without headers or body, named by
    /// its [`default_key`].
    ///
    /// ```
    /// let r = fanout::Request::new(http::Method::DELETE, "https://example.com/item/7").unwrap();
    /// assert_eq!(r.url.as_str(), "https://example.com/item/7");
    /// assert!(fanout::Request::new(http::Method::GET, "ftp://example.com/").is_err());
    /// ```
    pub fn new(method: Method, url: &str) -> Result<Request, InvalidRequest> {
        let url = crate::source::parse_url(url).map_err(InvalidRequest)?;
        Ok(Request {
            key: default_key(&method, url.as_str(), b""),
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            origin: Origin {
                input: "<api>".into(),
                line: 0,
            },
        })
    }

    /// A GET request for `url`.
    pub fn get(url: &str) -> Result<Request, InvalidRequest> {
        Request::new(Method::GET, url)
    }

    /// The same request with `body` (the key is derived again, unless one was set with
    /// [`Request::with_key`] afterwards).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Request {
        self.body = body.into();
        self.key = default_key(&self.method, self.url.as_str(), &self.body);
        self
    }

    /// The same request with a header added.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Request, InvalidRequest> {
        let n = http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidRequest(format!("invalid header name '{name}'")))?;
        let v = http::header::HeaderValue::from_str(value)
            .map_err(|_| InvalidRequest(format!("invalid value for header '{name}'")))?;
        self.headers.append(n, v);
        Ok(self)
    }

    /// The same request named `key` in the stores (like a spec's `id`).
    pub fn with_key(mut self, key: impl Into<String>) -> Request {
        self.key = key.into();
        self
    }
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
