//! The outcome record every request ends as, and the public error kinds stored with failures.
//! Owns the stored vocabulary: renaming an [`ErrorKind`] changes what existing stores contain.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use crate::request::Request;
use crate::sink::schema::OUTCOME_COLUMNS;

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
    /// Not fetched: the origin's robots.txt disallows it for the run's User-Agent, or could not
    /// be fetched after every try (`--robots`).
    Robots,
    /// Not fetched again: a work-queue job whose lease ran out `--max-lost-leases` times, each
    /// time with its worker dead or frozen while holding it (a request that kills its workers).
    Abandoned,
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
            ErrorKind::Robots => "robots",
            ErrorKind::Abandoned => "abandoned",
        }
    }
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 16] = [
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
        ErrorKind::Robots,
        ErrorKind::Abandoned,
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
#[non_exhaustive]
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
    /// Path of the file the body was written to (with `--out-dir`).
    pub body_path: Option<String>,
}

impl Outcome {
    /// The one constructor of an outcome for a request: nothing recorded yet (no attempt, no
    /// response, no error), started now. The engine fills in what its attempts found.
    /// A password in the URL is masked (`user:***@`); the key was derived from the real URL.
    pub fn for_request(req: &Request) -> Outcome {
        Outcome::for_request_started(req, SystemTime::now())
    }

    /// [`Outcome::for_request`], started at `started_at` (no clock read: the engine has one).
    pub(crate) fn for_request_started(req: &Request, started_at: SystemTime) -> Outcome {
        let url = match req.url.password() {
            None => req.url.as_str().to_owned(),
            Some(_) => crate::secrets::mask_url(req.url.as_str()).into_owned(),
        };
        let mut o = Outcome::blank(req.key.clone(), url, req.method.as_str().to_owned());
        o.started_at = started_at;
        o
    }

    /// An outcome with no response and no attempt yet, for `error` with `detail` (input that never
    /// became a [`Request`]; for a request, use [`Outcome::for_request`]).
    pub fn failed(
        key: String,
        url: String,
        method: String,
        error: ErrorKind,
        detail: impl Into<String>,
    ) -> Outcome {
        Outcome::blank(key, url, method).with_error(error, detail)
    }

    /// This outcome as the error `kind` with `detail` (and no response).
    pub fn with_error(mut self, kind: ErrorKind, detail: impl Into<String>) -> Outcome {
        self.status = None;
        self.error = Some(kind);
        self.error_detail = Some(detail.into());
        self
    }

    fn blank(key: String, url: String, method: String) -> Outcome {
        Outcome {
            key,
            url,
            method,
            status: None,
            error: None,
            error_detail: None,
            attempts: 0,
            started_at: SystemTime::now(),
            ttfb: None,
            total: Duration::ZERO,
            bytes: 0,
            final_url: None,
            body_sha256: None,
            body: None,
            body_path: None,
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
        Rfc3339Millis::new(self.started_at).as_str().to_owned()
    }

    /// A JSON view with the same field names as the SQLite columns: every column of
    /// [`OUTCOME_COLUMNS`] marked `json`, in table order.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for c in OUTCOME_COLUMNS.iter().filter(|c| c.json) {
            if let Some(v) = c.value(self) {
                map.insert(c.name.to_owned(), v.to_json());
            }
        }
        serde_json::Value::Object(map)
    }
}

/// A UTC time written as RFC 3339 with milliseconds (`2026-11-25T16:13:15.123Z`), on the stack:
/// the store writes one per outcome, and general formatting was a measurable share of that.
/// Times before 1970 are written as 1970-01-01T00:00:00.000Z, times after 9999 as the end of 9999.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use fanout::outcome::Rfc3339Millis;
///
/// let t = UNIX_EPOCH + Duration::from_millis(1_795_277_595_123);
/// assert_eq!(Rfc3339Millis::new(t).as_str(), "2026-11-21T16:13:15.123Z");
/// ```
#[derive(Clone, Copy)]
pub struct Rfc3339Millis([u8; 24]);

impl Rfc3339Millis {
    /// Formats `t`.
    pub fn new(t: SystemTime) -> Rfc3339Millis {
        // 9999-12-31T23:59:59.999Z
        const MAX_MS: u64 = 253_402_300_799_999;
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(MAX_MS))
            .min(MAX_MS);
        let (secs, milli) = (ms / 1000, ms % 1000);
        let (days, day_secs) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, day_secs / 3600);
        put(14, 2, day_secs / 60 % 60);
        put(17, 2, day_secs % 60);
        put(20, 3, milli);
        Rfc3339Millis(b)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000Z")
    }
}

/// Year, month and day of the `days`-th day after 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{ErrorKind, Outcome, Rfc3339Millis};
    use std::time::{Duration, UNIX_EPOCH};

    fn round3(x: f64) -> f64 {
        (x * 1000.0).round() / 1000.0
    }

    /// The JSON the previous version wrote (its code, copied), plus `body_path`.
    fn old_json(o: &Outcome) -> serde_json::Value {
        serde_json::json!({
            "key": o.key,
            "url": o.url,
            "method": o.method,
            "status": o.status,
            "error": o.error,
            "error_detail": o.error_detail,
            "attempts": o.attempts,
            "started_at": o.started_at_rfc3339(),
            "ttfb_ms": o.ttfb_ms().map(round3),
            "total_ms": round3(o.total_ms()),
            "bytes": o.bytes,
            "final_url": o.final_url,
            "body_sha256": o.body_sha256,
            "body": o.body.as_ref().map(|b| String::from_utf8_lossy(b)),
            "body_path": o.body_path,
        })
    }

    #[test]
    fn json_is_what_the_previous_version_wrote() {
        let failed = Outcome::failed(
            "k".into(),
            "u".into(),
            "GET".into(),
            ErrorKind::Timeout,
            "slow",
        );
        let full = Outcome {
            status: Some(200),
            error: None,
            error_detail: None,
            attempts: 2,
            started_at: UNIX_EPOCH + Duration::from_millis(1_795_277_595_123),
            ttfb: Some(Duration::from_nanos(1_234_567_891)),
            total: Duration::from_nanos(9_876_543_219),
            bytes: u64::from(u32::MAX) + 7,
            final_url: Some("http://127.0.0.1/x".into()),
            body_sha256: Some("00ff".into()),
            body: Some(bytes::Bytes::from_static(b"b\xc3(ody")),
            body_path: Some("out/k".into()),
            ..failed.clone()
        };
        for o in [failed, full] {
            let (new, old) = (o.to_json(), old_json(&o));
            assert_eq!(new, old);
            // Same text too, field order included.
            assert_eq!(new.to_string(), old.to_string());
        }
    }

    #[test]
    fn rfc3339_matches_humantime_across_the_calendar() {
        // Leap days, century years (2000 is a leap year, 2100 is not), month and year ends.
        let fixed: [u64; 8] = [
            0,
            951_782_400_000,   // 2000-02-29
            951_868_799_999,   // 2000-02-29T23:59:59.999
            4_107_542_400_000, // 2100-03-01
            1_709_164_800_000, // 2024-02-29
            1_735_689_599_999, // 2024-12-31T23:59:59.999
            1_735_689_600_000, // 2025-01-01
            253_402_300_799_999,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let random = (0..20_000).map(|_| {
            // xorshift: spread over the years 1970 to 9999.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 253_402_300_800_000
        });
        for ms in fixed.into_iter().chain(random) {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(
                Rfc3339Millis::new(t).as_str(),
                humantime::format_rfc3339_millis(t).to_string(),
                "{ms} ms"
            );
        }
    }

    #[test]
    fn rfc3339_saturates_outside_its_years() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            Rfc3339Millis::new(before).as_str(),
            "1970-01-01T00:00:00.000Z"
        );
        let after = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(
            Rfc3339Millis::new(after).as_str(),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
