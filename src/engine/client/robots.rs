//! Fetching an origin's `/robots.txt` for `--robots` (RFC 9309 §2.3): one GET on the run's
//! connections (same pool, proxy, TLS settings, timeout and User-Agent), redirects followed up to
//! five, at most 500 KiB kept. Owns only the fetch and what its answer means (rules, no rules,
//! unreachable); parsing the rules and gating requests is the engine's `robots` module's.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Full};
use url::Url;

use super::{BodyMode, Client, body, parse_retry_after};

/// Redirects followed for a robots.txt (RFC 9309 §2.3.1.2: at least five).
pub const ROBOTS_MAX_REDIRECTS: u32 = 5;

/// Bytes of a robots.txt kept: the RFC's 500 KiB parsing limit, and one more so that the parser
/// can tell whether the last line was cut (it then drops that line).
const KEEP: usize = robotxt::BYTE_LIMIT + 1;

/// A body labelled with a content coding (sent although none was asked for) is decoded up to
/// this much; past it, the fetch counts as unreachable.
const MAX_ENCODED: u64 = 4 << 20;

/// What fetching a robots.txt came to (RFC 9309 §2.3.1).
#[derive(Debug)]
#[non_exhaustive]
pub enum RobotsFetch {
    /// A 2xx answer: the file's first 500 KiB (and a byte).
    Rules(Bytes),
    /// A 4xx answer other than 429, or more redirects than [`ROBOTS_MAX_REDIRECTS`], or a redirect
    /// that cannot be followed: no rules apply (the RFC's "unavailable"). Why, for people.
    Unavailable(String),
    /// A 5xx or 429 answer, or none (connection, TLS, timeout): nothing may be fetched for now
    /// (the RFC's "unreachable"). Why, and the server's `Retry-After` if it sent one.
    Unreachable {
        /// What happened, for people.
        detail: String,
        /// The answer's `Retry-After`, as a delay from now.
        retry_after: Option<Duration>,
    },
}

fn unreachable(detail: String) -> RobotsFetch {
    RobotsFetch::Unreachable {
        detail,
        retry_after: None,
    }
}

impl Client {
    /// Fetches `url` (an origin's `/robots.txt`) within the run's `--timeout`.
    pub async fn fetch_robots(&self, url: &Url) -> RobotsFetch {
        match tokio::time::timeout(self.config.timeout, self.robots_attempt(url)).await {
            Ok(r) => r,
            Err(_) => unreachable(format!(
                "timeout: no complete response within {:?}",
                self.config.timeout
            )),
        }
    }

    async fn robots_attempt(&self, first: &Url) -> RobotsFetch {
        let mut url = first.clone();
        for _ in 0..=ROBOTS_MAX_REDIRECTS {
            let Ok(uri) = super::origin_uri(&url) else {
                return RobotsFetch::Unavailable(format!("{url} is not a usable URL"));
            };
            let mut req = Box::new(http::Request::new(Full::new(Bytes::new())));
            *req.uri_mut() = uri;
            let h = req.headers_mut();
            if let Some(agent) = self.defaults.get(header::USER_AGENT) {
                h.insert(header::USER_AGENT, agent.clone());
            }
            // Plain text is asked for: a coded body is still decoded below.
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            let (resp, conn) = match self.send(&url, req).await {
                Ok(sent) => sent,
                Err(f) => return unreachable(format!("{}: {}", f.kind, f.detail)),
            };
            let status = resp.status();
            if status.is_redirection()
                && let Some(location) = resp.headers().get(header::LOCATION)
            {
                let next = location.to_str().ok().and_then(|l| url.join(l).ok());
                match next {
                    Some(next) if matches!(next.scheme(), "http" | "https") => {
                        url = next;
                        continue;
                    }
                    _ => {
                        return RobotsFetch::Unavailable(format!(
                            "HTTP {} with an unusable Location {location:?}",
                            status.as_u16()
                        ));
                    }
                }
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return RobotsFetch::Unreachable {
                    detail: format!("HTTP {}", status.as_u16()),
                    retry_after: resp
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after),
                };
            }
            if !status.is_success() {
                return RobotsFetch::Unavailable(format!("HTTP {}", status.as_u16()));
            }
            let codings = body::codings(resp.headers()).unwrap_or_default();
            if !codings.is_empty() {
                return match body::read(
                    resp.into_body(),
                    &codings,
                    MAX_ENCODED,
                    BodyMode::Store,
                    None,
                    // Not an attempt: no --speed-limit watches it (--timeout bounds it).
                    &std::sync::atomic::AtomicU64::new(0),
                )
                .await
                {
                    Ok(b) => {
                        let mut kept = b.kept.unwrap_or_default();
                        kept.truncate(KEEP);
                        RobotsFetch::Rules(kept)
                    }
                    Err(f) => unreachable(format!("{}: {}", f.kind, f.detail)),
                };
            }
            // Read to the end or to the limit, whichever comes first: the rest is not parsed.
            let mut body = resp.into_body();
            let mut kept = BytesMut::new();
            while kept.len() < KEEP {
                match body.frame().await {
                    None => {
                        if let Some(conn) = conn {
                            self.pool.give_back(&url[..url::Position::AfterPort], conn);
                        }
                        break;
                    }
                    Some(Err(e)) => {
                        let f = super::classify(&e, false);
                        return unreachable(format!("{}: {}", f.kind, f.detail));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = KEEP - kept.len();
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                }
            }
            return RobotsFetch::Rules(kept.freeze());
        }
        RobotsFetch::Unavailable(format!(
            "more than {ROBOTS_MAX_REDIRECTS} redirects (last to {url})"
        ))
    }
}
