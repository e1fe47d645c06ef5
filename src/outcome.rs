//! The outcome record every request ends as, and the public error kinds stored with failures.
//! Owns the stored vocabulary: renaming an [`ErrorKind`] changes what existing stores contain.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

/// Why a request has no HTTP response. The [`ErrorKind::as_str`] name is what stores record in the
/// `error` column, so these names are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input line could not be turned into a request (bad URL, bad JSON, unsupported scheme).
    InvalidInput,
    /// The host name could not be resolved.
    Dns,
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The attempt took longer than `--timeout`.
    Timeout,
    /// The run's `--deadline` passed before the request finished.
    Deadline,
    /// The body was larger than `--max-body` (after decoding).
    BodyTooLarge,
    /// The body could not be decoded as its `Content-Encoding` says (corrupt or truncated
    /// gzip, deflate, br or zstd data).
    Decode,
    /// More redirects than `--max-redirects`.
    TooManyRedirects,
    /// A redirect without a usable `Location` (missing, unparsable, or not http/https).
    BadRedirect,
    /// The connection was closed or reset before the response was complete.
    Reset,
    /// The peer spoke malformed HTTP.
    Protocol,
    /// The run was interrupted (Ctrl-C) while the request was in flight.
    Cancelled,
    /// Any other I/O failure.
    Io,
}

impl ErrorKind {
    /// The stable name stored in the `error` column, e.g. `body-too-large`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Deadline => "deadline",
            ErrorKind::BodyTooLarge => "body-too-large",
            ErrorKind::Decode => "decode",
            ErrorKind::TooManyRedirects => "too-many-redirects",
            ErrorKind::BadRedirect => "bad-redirect",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Io => "io",
        }
    }
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::InvalidInput,
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Deadline,
        ErrorKind::BodyTooLarge,
        ErrorKind::Decode,
        ErrorKind::TooManyRedirects,
        ErrorKind::BadRedirect,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::Cancelled,
        ErrorKind::Io,
    ];

    /// The kind stored under `name`, if any.
    ///
    /// ```
    /// assert_eq!(fanout::ErrorKind::from_name("timeout"), Some(fanout::ErrorKind::Timeout));
    /// assert_eq!(fanout::ErrorKind::from_name("nope"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What became of one request: an HTTP response (any status) or an error kind. Keeps raw timings;
/// the millisecond figures stores want are methods.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request's key.
    pub key: String,
    /// The requested URL (for invalid input: the offending text).
    pub url: String,
    /// The HTTP method.
    pub method: String,
    /// HTTP status of the final response; `None` when there was no response.
    pub status: Option<u16>,
    /// Why there is no response; `None` when there is one (a 404 or 500 is a response).
    pub error: Option<ErrorKind>,
    /// Human-readable detail of the error (for invalid input: `file:line: reason`).
    pub error_detail: Option<String>,
    /// Attempts made (0 when the request was never sent).
    pub attempts: u32,
    /// Wall-clock time at which the first attempt started.
    pub started_at: SystemTime,
    /// Time from the start of the final attempt to the final response's headers.
    pub ttfb: Option<Duration>,
    /// Time from the first attempt's start to the outcome.
    pub total: Duration,
    /// Body bytes received for the final response.
    pub bytes: u64,
    /// URL of the final response after redirects.
    pub final_url: Option<String>,
    /// Hex SHA-256 of the body (with `--body hash`).
    pub body_sha256: Option<String>,
    /// The body itself (with `--body store`).
    pub body: Option<Bytes>,
}

impl Outcome {
    /// An outcome with no response and no attempt yet, for `error` with `detail`.
    pub fn failed(
        key: String,
        url: String,
        method: String,
        error: ErrorKind,
        detail: impl Into<String>,
    ) -> Outcome {
        Outcome {
            key,
            url,
            method,
            status: None,
            error: Some(error),
            error_detail: Some(detail.into()),
            attempts: 0,
            started_at: SystemTime::now(),
            ttfb: None,
            total: Duration::ZERO,
            bytes: 0,
            final_url: None,
            body_sha256: None,
            body: None,
        }
    }

    /// Time to first byte in milliseconds.
    pub fn ttfb_ms(&self) -> Option<f64> {
        self.ttfb.map(|d| d.as_secs_f64() * 1000.0)
    }

    /// Total time in milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.total.as_secs_f64() * 1000.0
    }

    /// `started_at` as RFC 3339 with milliseconds, UTC (`2026-11-25T16:13:15.123Z`).
    pub fn started_at_rfc3339(&self) -> String {
        humantime::format_rfc3339_millis(self.started_at).to_string()
    }

    /// A JSON view with the same field names as the SQLite columns.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "key": self.key,
            "url": self.url,
            "method": self.method,
            "status": self.status,
            "error": self.error,
            "error_detail": self.error_detail,
            "attempts": self.attempts,
            "started_at": self.started_at_rfc3339(),
            "ttfb_ms": self.ttfb_ms().map(round3),
            "total_ms": round3(self.total_ms()),
            "bytes": self.bytes,
            "final_url": self.final_url,
            "body_sha256": self.body_sha256,
            "body": self.body.as_ref().map(|b| String::from_utf8_lossy(b)),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
