//! `fanout bench`: the classic "sync vs async" comparison, on this machine. Starts the [`serve`]
//! API in-process with a fixed latency, fetches N URLs one at a time and then concurrently through
//! the real engine, and reports both against the ideal. Owns nothing but its own server.
//!
//! [`serve`]: crate::serve

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, Method};

use crate::pipeline::{self, RunConfig, RunError};
use crate::request::{Origin, Request, default_key};
use crate::serve::{ServeConfig, Server};
use crate::source::Source;
use crate::stats::Stats;

/// Bench settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Requests per mode.
    pub requests: usize,
    /// Server latency per request.
    pub latency: Duration,
    /// In-flight limit for the concurrent mode.
    pub concurrency: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            requests: 10,
            latency: Duration::from_secs(1),
            concurrency: 64,
        }
    }
}

/// One measured mode.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// `sequential` or `concurrent`.
    pub mode: &'static str,
    /// In-flight limit used.
    pub concurrency: usize,
    /// Wall-clock time for all requests.
    pub elapsed: Duration,
    /// The best possible time: latency × number of waves.
    pub ideal: Duration,
    /// Responses with status 200 (anything else means the comparison is off).
    pub ok: u64,
}

/// Both modes' results.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Requests per mode.
    pub requests: usize,
    /// Sequential, then concurrent.
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    /// Sequential elapsed divided by concurrent elapsed.
    pub fn speedup(&self) -> f64 {
        self.rows[0].elapsed.as_secs_f64() / self.rows[1].elapsed.as_secs_f64()
    }
}

/// Runs the comparison.
pub async fn run(config: BenchConfig) -> Result<BenchReport, RunError> {
    let server = Server::start(ServeConfig {
        latency: config.latency,
        ..ServeConfig::default()
    })
    .await
    .map_err(|e| RunError::Internal(format!("cannot start the bench server: {e}")))?;
    let mut rows = Vec::new();
    for (mode, c) in [("sequential", 1), ("concurrent", config.concurrency.max(1))] {
        let base = server.url("/item/");
        let requests = (0..config.requests).map(move |i| {
            let url = url::Url::parse(&format!("{base}{i}")).expect("bench URLs are valid");
            Request {
                key: default_key(&Method::GET, url.as_str(), b""),
                method: Method::GET,
                url,
                headers: HeaderMap::new(),
                body: bytes::Bytes::new(),
                origin: Origin {
                    input: "bench".into(),
                    line: i as u64 + 1,
                },
            }
        });
        let run_config = RunConfig {
            concurrency: c,
            command: "fanout bench".into(),
            ..RunConfig::default()
        };
        let summary = pipeline::run_source(
            Source::from_requests(requests),
            run_config,
            Stats::new(),
            std::future::pending(),
        )
        .await?;
        let waves = config.requests.div_ceil(c) as u32;
        rows.push(BenchRow {
            mode,
            concurrency: c,
            elapsed: summary.elapsed,
            ideal: config.latency * waves,
            ok: summary.status_classes[2],
        });
    }
    Ok(BenchReport {
        requests: config.requests,
        rows,
    })
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<11} {:>5} {:>10} {:>10} {:>9} {:>10} {:>8}",
            "mode", "c", "elapsed", "req/s", "speed-up", "ideal", "ok"
        )?;
        let base = self.rows[0].elapsed.as_secs_f64();
        for r in &self.rows {
            let secs = r.elapsed.as_secs_f64();
            writeln!(
                f,
                "{:<11} {:>5} {:>9.3}s {:>10.1} {:>8.2}x {:>9.3}s {:>8}",
                r.mode,
                r.concurrency,
                secs,
                self.requests as f64 / secs,
                base / secs,
                r.ideal.as_secs_f64(),
                r.ok
            )?;
        }
        let ideal = self.rows[0].ideal.as_secs_f64() / self.rows[1].ideal.as_secs_f64();
        write!(
            f,
            "speed-up {:.2}x of an ideal {:.2}x ({} requests, each {} of server latency)",
            self.speedup(),
            ideal,
            self.requests,
            humantime::format_duration(self.rows[0].ideal / self.requests.max(1) as u32)
        )
    }
}
