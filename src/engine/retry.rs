//! Retry policy: which attempts are tried again, and after how long. Exponential backoff with full
//! jitter, stretched to honour `Retry-After` (capped). Pure decisions; the engine does the waiting.

use std::time::Duration;

use http::Method;

use super::client::Attempt;
use super::resume::StatusRange;
use crate::outcome::ErrorKind;

/// What makes an attempt worth retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// Response statuses that are retried.
    pub statuses: Vec<StatusRange>,
    /// Error kinds that are retried.
    pub kinds: Vec<ErrorKind>,
}

impl Default for RetryOn {
    /// Connect and DNS errors, timeouts, resets, and HTTP 429, 502, 503, 504.
    fn default() -> Self {
        RetryOn {
            statuses: [429, 502, 503, 504]
                .into_iter()
                .map(|s| StatusRange { lo: s, hi: s })
                .collect(),
            kinds: vec![
                ErrorKind::Connect,
                ErrorKind::Dns,
                ErrorKind::Timeout,
                ErrorKind::Reset,
            ],
        }
    }
}

impl RetryOn {
    /// Parses a list such as `5xx,429,timeout,connect`: statuses, classes, ranges and error kinds.
    ///
    /// ```
    /// use fanout::engine::retry::RetryOn;
    /// let on = RetryOn::parse("5xx,429,timeout").unwrap();
    /// assert_eq!(on.statuses.len(), 2);
    /// assert_eq!(on.kinds, [fanout::ErrorKind::Timeout]);
    /// assert!(RetryOn::parse("sometimes").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<RetryOn, String> {
        let mut on = RetryOn {
            statuses: Vec::new(),
            kinds: Vec::new(),
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item.starts_with(|c: char| c.is_ascii_digit()) {
                on.statuses.push(StatusRange::parse(item)?);
            } else {
                let kind = ErrorKind::from_name(item).ok_or_else(|| {
                    format!(
                        "'{item}' is neither a status (429, 5xx, 500-504) nor an error kind \
                         (connect, dns, timeout, reset, tls, protocol, io, body-too-large)"
                    )
                })?;
                on.kinds.push(kind);
            }
        }
        Ok(on)
    }

    fn matches(&self, a: &Attempt) -> bool {
        match (a.status, a.error) {
            (Some(s), _) => self.statuses.iter().any(|r| r.contains(s)),
            (None, Some(k)) => self.kinds.contains(&k),
            (None, None) => false,
        }
    }
}

/// When and how often to try again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `retries + 1` attempts).
    pub retries: u32,
    /// What is retried.
    pub on: RetryOn,
    /// Retry POST, PATCH and other non-idempotent methods too.
    pub non_idempotent: bool,
    /// First backoff ceiling; doubles with each attempt.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// Largest `Retry-After` honoured; longer ones are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 2,
            on: RetryOn::default(),
            non_idempotent: false,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// After `attempts` attempts ending in `o`, the delay before the next one, or `None` to stop.
    /// `retry_after` is the server's `Retry-After`, already capped by the caller or not.
    pub fn next_delay(
        &self,
        method: &Method,
        attempts: u32,
        a: &Attempt,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempts > self.retries || !self.on.matches(a) {
            return None;
        }
        if !(self.non_idempotent || method.is_idempotent()) {
            return None;
        }
        let exp = attempts.saturating_sub(1).min(30);
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        // Full jitter: uniform in [0, ceiling], so retries of many requests spread out.
        let jitter = ceiling.mul_f64(fastrand::f64());
        Some(match retry_after {
            Some(ra) => jitter.max(ra.min(self.max_retry_after)),
            None => jitter,
        })
    }
}
