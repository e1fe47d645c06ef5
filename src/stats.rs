//! Live counters read by the progress display, and the [`Summary`] built from every recorded outcome.
//! Counters are atomics written by the engine and the store thread; the summary is owned by the store
//! thread while the run goes and handed back at the end, so no lock sits on the hot path.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::engine::hosts::HostReport;
use crate::outcome::{ErrorKind, Outcome};

/// Shared live counters for one run. Cheap to read from any thread at any time.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Requests handed to the client (admitted under the concurrency limit).
    pub(crate) admitted: AtomicU64,
    /// Requests whose fetch has ended (their outcome may still be on its way to the store).
    pub(crate) finished: AtomicU64,
    /// Outcomes committed to the stores.
    pub(crate) recorded: AtomicU64,
    /// Committed outcomes that carry an error kind.
    pub(crate) errors: AtomicU64,
    /// Committed outcomes with a 4xx or 5xx status.
    pub(crate) http_errors: AtomicU64,
    /// Requests skipped because the store already holds their outcome (or the key repeats).
    pub(crate) skipped: AtomicU64,
    /// Attempts scheduled again after a retryable failure.
    pub(crate) retries: AtomicU64,
    /// Bytes of the input files (or stdin) consumed by the line reader so far: added once per
    /// line (or per buffer, for a line longer than the buffer), never per request.
    pub(crate) input_bytes: AtomicU64,
    /// Items (requests and invalid lines) the line reader has handed out: with `input_bytes`,
    /// how many bytes an item takes on average, to discount what is read but not yet done.
    pub(crate) input_items: AtomicU64,
    /// The inputs' total size, set once when every input is a regular file.
    pub(crate) input_total: OnceLock<u64>,
}

/// A point-in-time copy of [`Stats`] for display.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Progress {
    /// Outcomes committed to the stores.
    pub recorded: u64,
    /// Requests currently being fetched.
    pub in_flight: u64,
    /// Committed outcomes with an error kind.
    pub errors: u64,
    /// Committed outcomes with a 4xx or 5xx status.
    pub http_errors: u64,
    /// Requests skipped as already recorded.
    pub skipped: u64,
    /// Retries scheduled so far.
    pub retries: u64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Bytes of the inputs read so far (0 for a source that is not read from files or stdin).
    pub input_bytes: u64,
    /// Requests and invalid lines read from the inputs so far.
    pub input_items: u64,
    /// The inputs' total size, known when every input is a regular file (not stdin, a pipe or
    /// a query): then `input_bytes / input_total` is the fraction of the job read.
    pub input_total: Option<u64>,
}

impl Progress {
    /// The bytes of the inputs whose requests are done (recorded or skipped), estimated: the
    /// bytes read, less those of the items read but not done yet at the average bytes per item
    /// (the reader runs thousands of requests ahead of the fetches). Equals the bytes read once
    /// everything read is done.
    pub fn input_bytes_done(&self) -> u64 {
        let done = self.recorded + self.skipped;
        if self.input_items == 0 || done >= self.input_items {
            return self.input_bytes;
        }
        (self.input_bytes as u128 * done as u128 / self.input_items as u128) as u64
    }
}

impl Stats {
    /// New counters, with the run's clock starting now.
    pub fn new() -> Arc<Stats> {
        Arc::new(Stats {
            started: Instant::now(),
            admitted: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            http_errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            input_bytes: AtomicU64::new(0),
            input_items: AtomicU64::new(0),
            input_total: OnceLock::new(),
        })
    }

    /// Reads the counters.
    pub fn progress(&self) -> Progress {
        let admitted = self.admitted.load(Relaxed);
        let finished = self.finished.load(Relaxed);
        Progress {
            recorded: self.recorded.load(Relaxed),
            in_flight: admitted.saturating_sub(finished),
            errors: self.errors.load(Relaxed),
            http_errors: self.http_errors.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            retries: self.retries.load(Relaxed),
            elapsed: self.started.elapsed(),
            input_bytes: self.input_bytes.load(Relaxed),
            input_items: self.input_items.load(Relaxed),
            input_total: self.input_total.get().copied(),
        }
    }

    pub(crate) fn count_recorded(&self, batch: &[Outcome]) {
        let mut errors = 0;
        let mut http_errors = 0;
        for o in batch {
            if o.error.is_some() {
                errors += 1;
            } else if o.status.is_some_and(|s| s >= 400) {
                http_errors += 1;
            }
        }
        self.recorded.fetch_add(batch.len() as u64, Relaxed);
        self.errors.fetch_add(errors, Relaxed);
        self.http_errors.fetch_add(http_errors, Relaxed);
    }
}

/// How a run ended. Stored in the `runs` table as the given name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every input line was read and every request recorded.
    Completed,
    /// Stopped by the shutdown signal (Ctrl-C).
    Interrupted,
    /// Stopped because `--deadline` passed; requests not finished are recorded as `deadline`.
    Deadline,
    /// Stopped because a store could not write.
    StoreError,
}

impl RunEnd {
    /// The stored name: `completed`, `interrupted`, `deadline` or `store-error`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Completed => "completed",
            RunEnd::Interrupted => "interrupted",
            RunEnd::Deadline => "deadline",
            RunEnd::StoreError => "store-error",
        }
    }
}

/// Totals over every outcome recorded in a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Outcomes recorded.
    pub total: u64,
    /// Requests skipped because their key was already recorded (resume) or repeated in the input.
    pub skipped: u64,
    /// Attempts made again after a retryable failure.
    pub retries: u64,
    /// The busiest hosts: with `--adaptive` their learned limits; otherwise hosts that pushed back.
    pub hosts: Vec<HostReport>,
    /// Responses by status class: index 1 is 1xx … index 5 is 5xx; index 0 counts anything else.
    pub status_classes: [u64; 6],
    /// Outcomes without a response, by error kind.
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
    /// Total time of responses, in microseconds.
    pub latency: Histogram<u64>,
    /// Body bytes received.
    pub bytes: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// How the run ended.
    pub end: RunEnd,
    /// The run's id in its stores (`runs.id`); 0 before the run is begun.
    pub run_id: i64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            total: 0,
            skipped: 0,
            retries: 0,
            hosts: Vec::new(),
            status_classes: [0; 6],
            errors_by_kind: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
            bytes: 0,
            elapsed: Duration::ZERO,
            end: RunEnd::Completed,
            run_id: 0,
        }
    }
}

impl Summary {
    /// Adds one outcome.
    pub fn record(&mut self, o: &Outcome) {
        self.total += 1;
        self.bytes += o.bytes;
        match (o.status, o.error) {
            (Some(s), _) => {
                let class = (s / 100) as usize;
                self.status_classes[if (1..=5).contains(&class) { class } else { 0 }] += 1;
                self.latency
                    .saturating_record((o.total.as_micros() as u64).max(1));
            }
            (None, Some(kind)) => *self.errors_by_kind.entry(kind).or_default() += 1,
            (None, None) => *self.errors_by_kind.entry(ErrorKind::Io).or_default() += 1,
        }
    }

    /// Outcomes with an HTTP response (any status).
    pub fn responses(&self) -> u64 {
        self.status_classes.iter().sum()
    }

    /// Outcomes with an error kind.
    pub fn errors(&self) -> u64 {
        self.errors_by_kind.values().sum()
    }

    /// Outcomes recorded per second of the run.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.total as f64 / secs
        } else {
            0.0
        }
    }

    /// A latency percentile of responses, if there were any.
    pub fn latency_at(&self, quantile: f64) -> Option<Duration> {
        (!self.latency.is_empty())
            .then(|| Duration::from_micros(self.latency.value_at_quantile(quantile)))
    }
}

impl fmt::Display for Summary {
    /// The human summary the CLI prints to stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} outcomes in {:.2}s ({:.0} req/s), {} body bytes; run {}",
            self.total,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.bytes,
            self.end.as_str()
        )?;
        if self.skipped > 0 {
            writeln!(
                f,
                "  skipped:  {} already recorded or repeated",
                self.skipped
            )?;
        }
        let classes = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
        let mut parts: Vec<String> = (1..=5)
            .chain(std::iter::once(0))
            .filter(|&i| self.status_classes[i] > 0)
            .map(|i| format!("{} {}", classes[i], self.status_classes[i]))
            .collect();
        parts.extend(self.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")));
        if parts.is_empty() {
            parts.push("none".into());
        }
        writeln!(f, "  outcomes: {}", parts.join(", "))?;
        if let (Some(p50), Some(p90), Some(p99)) = (
            self.latency_at(0.5),
            self.latency_at(0.9),
            self.latency_at(0.99),
        ) {
            let max = Duration::from_micros(self.latency.max());
            writeln!(
                f,
                "  latency:  p50 {}  p90 {}  p99 {}  max {}",
                ms(p50),
                ms(p90),
                ms(p99),
                ms(max)
            )?;
        }
        if self.retries > 0 {
            writeln!(f, "  retries:  {}", self.retries)?;
        }
        for h in &self.hosts {
            writeln!(
                f,
                "  host {}: limit {}, {} attempts, {} overloaded (429/503/timeout/refused)",
                h.host, h.limit, h.attempts, h.overloads
            )?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_bytes_done_discounts_what_is_read_but_not_done() {
        let stats = Stats::new();
        stats.input_bytes.store(1000, Relaxed);
        stats.input_items.store(100, Relaxed);
        stats.recorded.store(30, Relaxed);
        stats.skipped.store(20, Relaxed);
        assert_eq!(stats.progress().input_bytes_done(), 500);
        stats.recorded.store(80, Relaxed);
        assert_eq!(
            stats.progress().input_bytes_done(),
            1000,
            "all read is done"
        );
        stats.input_items.store(0, Relaxed);
        assert_eq!(stats.progress().input_bytes_done(), 1000, "comments only");
    }
}
