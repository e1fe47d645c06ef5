//! Reports of a store: the [`Report`] model, computed by SQL from an SQLite store ([`open_sqlite`])
//! or a PostgreSQL one ([`open_postgres`]), and its renderers: [`text`] (the terminal), JSON (serde: the model's field names are the stable
//! JSON names, documented in README.md) and [`html`] (one self-contained page with charts). Owns the
//! aggregation queries and the report formats; writes nothing to a store, prints nothing.
//!
//! Every figure is aggregated in the database (`GROUP BY` over the outcome columns of
//! [`crate::sink::schema`]), never by loading rows: memory is flat in the size of the store, and
//! the model itself is bounded (at most [`MAX_BUCKETS`] time buckets, [`TABLE_HOSTS`] hosts in the
//! table, [`TOP_HOSTS`] in each top list, the last [`RUNS_SHOWN`] runs).
//!
//! Latencies are `total_ms` of responses (outcomes with a status), as in the end-of-run summary.
//! The report's p50/p90/p99 and max are exact (nearest rank: the value at rank ⌈q·n⌉). Percentiles
//! per host and per time bucket come from a log histogram with 3 significant digits (buckets at most
//! 1% wide): each is the largest latency in the bucket that holds the rank, so it is at least the
//! exact value and less than 1% above it.

mod fold;
mod html;
mod postgres;
mod sqlite;
mod text;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use html::html;
pub use text::text;

/// Time buckets of the time series at most: a report of a long run stays small.
pub const MAX_BUCKETS: usize = 120;
/// Hosts listed in each top list (by volume, by errors, by p99 latency).
pub const TOP_HOSTS: usize = 10;
/// Hosts in the per-host table, the busiest first.
pub const TABLE_HOSTS: usize = 200;
/// Runs listed in the history, the latest last.
pub const RUNS_SHOWN: usize = 50;
/// The value of [`Report::format`]; changes when a field changes meaning or goes away.
pub const FORMAT: &str = "fanout-report/1";

/// Which outcomes a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Those recorded by the latest run.
    Latest,
    /// Those recorded by one run (outcomes later fetched again belong to the later run).
    Run(i64),
    /// Every outcome in the store.
    All,
}

/// A report that could not be made: the store, and what went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store {store}: {message}")]
pub struct ReportError {
    store: String,
    kind: ReportErrorKind,
    message: String,
}

/// What went wrong with a report, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportErrorKind {
    /// There is no such file.
    NotFound,
    /// The file is not a fanout store (or not a database).
    NotAStore,
    /// The run asked for is not in the store.
    NoSuchRun,
    /// Reading failed.
    Io,
}

impl ReportError {
    pub(crate) fn new(
        store: impl Into<String>,
        kind: ReportErrorKind,
        message: impl Into<String>,
    ) -> Self {
        ReportError {
            store: store.into(),
            kind,
            message: message.into(),
        }
    }

    /// The store the report was asked of.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// What went wrong, broadly.
    pub fn kind(&self) -> ReportErrorKind {
        self.kind
    }
}

/// The report of a store: what the end-of-run summary says and more, as one JSON object.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// [`FORMAT`].
    pub format: &'static str,
    /// The store reported on (a path, or a PostgreSQL URL without its password).
    pub store: String,
    /// `latest`, `run` or `all`.
    pub scope: &'static str,
    /// The run reported on; `None` for `all`, or a store with no run.
    pub run_id: Option<i64>,
    /// Outcomes covered.
    pub outcomes: u64,
    /// Outcomes with an HTTP response (any status).
    pub responses: u64,
    /// Outcomes without a response (an error kind).
    pub errors: u64,
    /// Responses by status class.
    pub status_classes: Classes,
    /// Responses by status code, in code order.
    pub statuses: Vec<StatusCount>,
    /// Outcomes without a response by error kind, in name order.
    pub error_kinds: Vec<KindCount>,
    /// Latency of responses (exact); `None` without responses.
    pub latency_ms: Option<Latency>,
    /// Start of the first outcome (RFC 3339); `None` without outcomes.
    pub first_started_at: Option<String>,
    /// Wall time: the run's, from the `runs` table, for one finished run; otherwise from the
    /// first outcome's start to the last one's end.
    pub elapsed_s: f64,
    /// `outcomes / elapsed_s`.
    pub throughput_rps: f64,
    /// Body bytes received.
    pub bytes: u64,
    /// Attempts made, over every outcome.
    pub attempts: u64,
    /// Attempts after the first (`attempts - 1` summed over outcomes that were sent).
    pub retries: u64,
    /// The store's runs, the last [`RUNS_SHOWN`], oldest first.
    pub runs: Vec<RunRow>,
    /// Per-host figures.
    pub hosts: Hosts,
    /// Latency of responses on a log scale: 10 buckets per decade, empty ones inside the range
    /// included.
    pub latency_histogram: Vec<HistogramBucket>,
    /// The run over time.
    pub timeline: Timeline,
}

/// Counts by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Classes {
    /// 1xx.
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    /// 2xx.
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub c5xx: u64,
    /// Any other status.
    pub other: u64,
}

impl Classes {
    /// The class names, in [`Classes::counts`] order.
    pub const NAMES: [&'static str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

    fn add(&mut self, status: i64, n: u64) {
        match status / 100 {
            1 => self.c1xx += n,
            2 => self.c2xx += n,
            3 => self.c3xx += n,
            4 => self.c4xx += n,
            5 => self.c5xx += n,
            _ => self.other += n,
        }
    }

    /// The counts, in [`Classes::NAMES`] order.
    pub fn counts(&self) -> [u64; 6] {
        [
            self.c1xx, self.c2xx, self.c3xx, self.c4xx, self.c5xx, self.other,
        ]
    }
}

/// Responses with one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    /// The status code.
    pub status: i64,
    /// Responses with it.
    pub count: u64,
}

/// Outcomes with one error kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// The error kind's name (`timeout`, `connect`, ...).
    pub kind: String,
    /// Outcomes with it.
    pub count: u64,
}

/// Latency figures, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One row of the `runs` table.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: i64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended, if it did.
    pub finished_at: Option<String>,
    /// `running`, `completed`, `interrupted`, `deadline` or `store-error`.
    pub status: String,
    /// `resume` or `fresh`.
    pub mode: String,
    /// The command line (secrets removed when it was recorded).
    pub command: String,
    /// Outcomes it recorded.
    pub outcomes: u64,
    /// Of which responses.
    pub responses: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests it skipped as already recorded.
    pub skipped: u64,
}

/// Per-host figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hosts {
    /// Distinct hosts among the outcomes.
    pub count: u64,
    /// The busiest hosts (most outcomes).
    pub by_volume: Vec<HostRow>,
    /// The hosts with the most failures (error kinds plus 4xx/5xx responses); none without.
    pub by_errors: Vec<HostRow>,
    /// The slowest hosts by p99 latency of responses.
    pub by_p99: Vec<HostRow>,
    /// The table: the [`TABLE_HOSTS`] busiest, plus any in a top list, busiest first.
    pub table: Vec<HostRow>,
}

/// One host's figures. `host` is `host:port` (the default port filled in), as the engine keys
/// its per-host state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRow {
    /// `host:port`; `(none)` for input that was not a URL.
    pub host: String,
    /// Outcomes.
    pub outcomes: u64,
    /// Of which responses.
    pub responses: u64,
    /// Of which without a response (error kinds).
    pub errors: u64,
    /// Responses with a 4xx or 5xx status.
    pub http_errors: u64,
    /// Body bytes.
    pub bytes: u64,
    /// Median latency of responses (histogram, see the module doc).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of responses (histogram).
    pub p99_ms: Option<f64>,
    /// Largest latency of a response.
    pub max_ms: Option<f64>,
    /// Attempts the engine started (from `run_hosts`; the engine reports its busiest hosts, and
    /// with `--adaptive` every host it learned a limit for).
    pub attempts: Option<u64>,
    /// Its concurrency limit at the end of the run (the learned one with `--adaptive`).
    pub limit: Option<u64>,
    /// Attempts that signalled overload (429, 503, timeouts, refused or reset connections).
    pub overloads: Option<u64>,
}

impl HostRow {
    /// Error kinds plus 4xx/5xx responses.
    pub fn failures(&self) -> u64 {
        self.errors + self.http_errors
    }
}

/// One bucket of the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HistogramBucket {
    /// Lower bound, milliseconds (inclusive).
    pub lo_ms: f64,
    /// Upper bound, milliseconds (exclusive).
    pub hi_ms: f64,
    /// Responses in it.
    pub count: u64,
}

/// The run over time, by start time of the outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// Width of a bucket, seconds.
    pub bucket_s: f64,
    /// The buckets from the first outcome's start on, at most [`MAX_BUCKETS`], empty ones
    /// included.
    pub buckets: Vec<TimeBucket>,
}

/// One time bucket.
#[derive(Debug, Clone, Serialize)]
pub struct TimeBucket {
    /// Start of the bucket, seconds after the first outcome's start.
    pub t_s: f64,
    /// Outcomes started in it.
    pub outcomes: u64,
    /// `outcomes / bucket_s`.
    pub rps: f64,
    /// Responses by status class.
    pub status_classes: Classes,
    /// Outcomes without a response, by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Median latency of its responses (histogram).
    pub p50_ms: Option<f64>,
    /// 90th percentile (histogram).
    pub p90_ms: Option<f64>,
    /// 99th percentile (histogram).
    pub p99_ms: Option<f64>,
}

impl Report {
    /// The report as one JSON object (the field names above).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Reports on the SQLite store at `path`, opened read-only. Blocking: call it off the async
/// threads (`spawn_blocking`) when in a runtime.
pub fn open_sqlite(path: &Path, scope: Scope) -> Result<Report, ReportError> {
    sqlite::report(path, scope)
}

/// Reports on the PostgreSQL store at `url` (completed from the environment as [`crate::pg`]
/// says), on read-only connections. Call it within a Tokio runtime (the
/// connections' tasks run on it). The report's `store` and errors show the URL without its
/// password.
pub async fn open_postgres(url: &crate::pg::PgUrl, scope: Scope) -> Result<Report, ReportError> {
    postgres::report(url, scope).await
}

/// The first bucket width of 1, 2 or 5 × 10^k milliseconds (at least 10 ms) that fits `span_ms`
/// into [`MAX_BUCKETS`] buckets.
fn bucket_ms(span_ms: i64) -> i64 {
    let mut step = 10i64;
    loop {
        for m in [1, 2, 5] {
            let s = step * m;
            if span_ms / s < MAX_BUCKETS as i64 {
                return s;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// A latency's bucket in the fine log histogram: the microseconds rounded down to 3 significant
/// digits, as `digits * 1000 + first three digits` (monotone in the latency). The SQL in
/// `sqlite.rs` computes the same key; this is its inverse: the bucket's bounds in milliseconds.
fn fine_bounds(key: i64) -> (f64, f64) {
    let (len, digits) = (key / 1000, key % 1000);
    let shown = len.min(3);
    let scale = 10f64.powi((len - shown) as i32);
    (
        digits as f64 * scale / 1000.0,
        (digits + 1) as f64 * scale / 1000.0,
    )
}

/// A fine histogram: key → (count, largest value in it).
type Fine = BTreeMap<i64, (u64, f64)>;

/// The percentiles `qs` (nearest rank) of a fine histogram: the largest value of the bucket
/// holding each rank.
fn fine_percentiles<const N: usize>(fine: &Fine, qs: [f64; N]) -> [Option<f64>; N] {
    let n: u64 = fine.values().map(|v| v.0).sum();
    let mut out = [None; N];
    if n == 0 {
        return out;
    }
    for (i, q) in qs.iter().enumerate() {
        let rank = rank(q, n);
        let mut seen = 0;
        for (count, max) in fine.values() {
            seen += count;
            if seen >= rank {
                out[i] = Some(*max);
                break;
            }
        }
    }
    out
}

/// Nearest rank, 1-based: ⌈q·n⌉, at least 1.
fn rank(q: &f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n)
}

/// The coarse histogram shown: 10 log buckets per decade over the fine one's range.
fn coarse_histogram(fine: &Fine) -> Vec<HistogramBucket> {
    let index = |ms: f64| (ms.max(0.001).log10() * 10.0).floor() as i64;
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for (&key, &(count, _)) in fine {
        // The fine bucket's lower bound, nudged up: it lies wholly in one coarse bucket.
        let (lo, _) = fine_bounds(key);
        *counts.entry(index(lo * (1.0 + 1e-9))).or_default() += count;
    }
    let (Some(&first), Some(&last)) = (counts.keys().next(), counts.keys().next_back()) else {
        return Vec::new();
    };
    (first..=last)
        .map(|i| HistogramBucket {
            lo_ms: 10f64.powf(i as f64 / 10.0),
            hi_ms: 10f64.powf((i + 1) as f64 / 10.0),
            count: counts.get(&i).copied().unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fit_the_span() {
        assert_eq!(bucket_ms(0), 10);
        assert_eq!(bucket_ms(500), 10);
        assert_eq!(bucket_ms(1200), 20);
        assert_eq!(bucket_ms(3_600_000), 50_000);
        for span in [1, 999, 12_345, 86_400_000, 10_000_000_000] {
            assert!(span / bucket_ms(span) < MAX_BUCKETS as i64, "{span}");
        }
    }

    #[test]
    fn fine_bounds_invert_the_key() {
        // 1.234567 ms = 1234 µs: 4 digits, first three 123 → [1.230, 1.240) ms.
        assert_eq!(fine_bounds(4123), (1.23, 1.24));
        // 7 µs: one digit.
        assert_eq!(fine_bounds(1007), (0.007, 0.008));
        // 0 µs.
        assert_eq!(fine_bounds(1000), (0.0, 0.001));
    }

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let mut fine = Fine::new();
        fine.insert(1001, (50, 0.0015));
        fine.insert(1002, (49, 0.0025));
        fine.insert(4100, (1, 1.005));
        assert_eq!(
            fine_percentiles(&fine, [0.5, 0.51, 0.99, 1.0]),
            [Some(0.0015), Some(0.0025), Some(0.0025), Some(1.005)]
        );
        let h = coarse_histogram(&fine);
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), 100);
        assert!(h.len() > 20, "from 1 µs to 1 ms: {}", h.len());
    }
}
