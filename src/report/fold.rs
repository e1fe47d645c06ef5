//! The model-building code both stores' queries share: folding the rows of the main `GROUP BY`
//! (time bucket, status, fine latency key, error kind) and of the host `GROUP BY` (host, fine
//! latency key) into a [`Report`]. Knows no SQL and no database; each store's module runs its own
//! queries and hands their rows here.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use super::{
    Classes, Fine, HostRow, Hosts, KindCount, Latency, MAX_BUCKETS, Report, Scope, StatusCount,
    TABLE_HOSTS, TOP_HOSTS, TimeBucket, Timeline, coarse_histogram, fine_percentiles, rank,
};

/// The code of an outcome without a status in the main query's packed group.
pub(super) const NO_STATUS: i64 = 1000;

/// The percentiles the report gives exactly.
pub(super) const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Host of input that is not a URL.
pub(super) const NO_HOST: &str = "(none)";

/// A report with nothing counted yet.
pub(super) fn empty_report(
    store: String,
    scope: Scope,
    run_id: Option<i64>,
    first_started_at: Option<String>,
) -> Report {
    Report {
        format: super::FORMAT,
        store,
        scope: match scope {
            Scope::Latest => "latest",
            Scope::Run(_) => "run",
            Scope::All => "all",
        },
        run_id: if scope == Scope::All { None } else { run_id },
        outcomes: 0,
        responses: 0,
        errors: 0,
        status_classes: Classes::default(),
        statuses: Vec::new(),
        error_kinds: Vec::new(),
        latency_ms: None,
        first_started_at,
        elapsed_s: 0.0,
        throughput_rps: 0.0,
        bytes: 0,
        attempts: 0,
        retries: 0,
        runs: Vec::new(),
        hosts: Hosts::default(),
        latency_histogram: Vec::new(),
        timeline: Timeline::default(),
    }
}

/// One row of the main query: the group is one packed integer (time bucket << 24, status or
/// [`NO_STATUS`] << 14, fine latency key) and the error kind.
pub(super) struct MainRow {
    pub packed: i64,
    pub kind: Option<String>,
    pub n: u64,
    pub bytes: u64,
    pub attempts: u64,
    pub retries: u64,
    pub max_ms: f64,
    pub sum_ms: f64,
}

/// What the main query folds into, per time bucket.
#[derive(Default)]
struct BucketAcc {
    outcomes: u64,
    classes: Classes,
    errors: BTreeMap<String, u64>,
    fine: Fine,
}

/// The main query's rows, folded.
#[derive(Default)]
pub(super) struct MainFold {
    statuses: BTreeMap<i64, u64>,
    kinds: BTreeMap<String, u64>,
    pub fine: Fine,
    buckets: Vec<BucketAcc>,
    sum_ms: f64,
    max_ms: f64,
    /// The largest latency of any outcome (responses or not).
    pub max_any_ms: f64,
}

impl MainFold {
    pub fn add(&mut self, r: &mut Report, row: MainRow) {
        let packed = row.packed;
        let (tb, code, key) = (packed >> 24, (packed >> 14) & 1023, packed & 16383);
        let status = (code != NO_STATUS).then_some(code);
        let n = row.n;
        r.outcomes += n;
        r.bytes += row.bytes;
        r.attempts += row.attempts;
        r.retries += row.retries;
        let max = row.max_ms;
        self.max_any_ms = self.max_any_ms.max(max);
        let i = usize::try_from(tb).unwrap_or(0).min(MAX_BUCKETS - 1);
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, BucketAcc::default);
        }
        let b = &mut self.buckets[i];
        b.outcomes += n;
        match (status, row.kind) {
            (Some(s), _) => {
                r.responses += n;
                r.status_classes.add(s, n);
                b.classes.add(s, n);
                *self.statuses.entry(s).or_default() += n;
                self.sum_ms += row.sum_ms;
                self.max_ms = self.max_ms.max(max);
                for f in [&mut self.fine, &mut b.fine] {
                    let e = f.entry(key).or_insert((0, 0.0));
                    e.0 += n;
                    e.1 = e.1.max(max);
                }
            }
            (None, kind) => {
                r.errors += n;
                let kind = kind.unwrap_or_else(|| "io".into());
                *b.errors.entry(kind.clone()).or_default() += n;
                *self.kinds.entry(kind).or_default() += n;
            }
        }
    }

    /// Fills in the counts, the latency (`exact`: p50, p90, p99; asked only with responses), the
    /// histogram and the timeline of buckets `bucket` ms wide.
    pub fn finish(self, r: &mut Report, bucket: i64, exact: Option<[f64; 3]>) {
        r.statuses = self
            .statuses
            .into_iter()
            .map(|(status, count)| StatusCount { status, count })
            .collect();
        r.error_kinds = self
            .kinds
            .into_iter()
            .map(|(kind, count)| KindCount { kind, count })
            .collect();
        if let (true, Some([p50, p90, p99])) = (r.responses > 0, exact) {
            r.latency_ms = Some(Latency {
                p50,
                p90,
                p99,
                max: self.max_ms,
                mean: self.sum_ms / r.responses as f64,
            });
        }
        r.latency_histogram = coarse_histogram(&self.fine);
        r.timeline = Timeline {
            bucket_s: bucket as f64 / 1000.0,
            buckets: self
                .buckets
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    let [p50_ms, p90_ms, p99_ms] = fine_percentiles(&b.fine, QUANTILES);
                    TimeBucket {
                        t_s: (i as i64 * bucket) as f64 / 1000.0,
                        outcomes: b.outcomes,
                        rps: b.outcomes as f64 * 1000.0 / bucket as f64,
                        status_classes: b.classes,
                        errors: b.errors,
                        p50_ms,
                        p90_ms,
                        p99_ms,
                    }
                })
                .collect(),
        };
    }
}

/// For each quantile of [`QUANTILES`], the fine bucket holding its rank and the index of the
/// rank within it.
pub(super) fn wanted_ranks(fine: &Fine) -> [(i64, u64); 3] {
    let n: u64 = fine.values().map(|v| v.0).sum();
    let mut wanted = [(0i64, 0u64); 3];
    for (w, q) in wanted.iter_mut().zip(QUANTILES) {
        let rank = rank(&q, n);
        let mut below = 0;
        for (&key, &(count, _)) in fine {
            if below + count >= rank {
                *w = (key, rank - below - 1);
                break;
            }
            below += count;
        }
    }
    wanted
}

/// The wall time of a report: the run's (from `runs`) for one finished run, else from `t0` to
/// `end_ms`; and the throughput from it.
pub(super) fn set_elapsed(r: &mut Report, scope: Scope, run_id: Option<i64>, t0: i64, end_ms: i64) {
    let run_elapsed = match (scope, run_id) {
        (Scope::All, _) | (_, None) => None,
        (_, Some(id)) => r
            .runs
            .iter()
            .find(|run| run.id == id)
            .and_then(|run| elapsed(&run.started_at, run.finished_at.as_deref()?)),
    };
    r.elapsed_s = run_elapsed.unwrap_or((end_ms - t0) as f64 / 1000.0);
    if r.elapsed_s > 0.0 {
        r.throughput_rps = r.outcomes as f64 / r.elapsed_s;
    }
}

/// One row of the host query (rows come ordered by host, then latency key).
pub(super) struct HostGroup {
    pub host: String,
    /// The fine latency key; `None` for outcomes without a response.
    pub key: Option<i64>,
    pub n: u64,
    pub responses: u64,
    pub errors: u64,
    pub http_errors: u64,
    pub bytes: u64,
    pub max_ms: f64,
}

type KeyFn = fn(&HostRow) -> (u64, f64);

/// The host query's rows, streamed host by host into bounded top lists.
pub(super) struct HostFold {
    hosts: Hosts,
    busiest: Top<KeyFn>,
    failing: Top<KeyFn>,
    slowest: Top<KeyFn>,
    current: Option<(HostRow, Fine)>,
}

impl HostFold {
    pub fn new() -> HostFold {
        HostFold {
            hosts: Hosts::default(),
            busiest: Top::new(TABLE_HOSTS, |h| (h.outcomes, 0.0)),
            failing: Top::new(TOP_HOSTS, |h| (h.failures(), 0.0)),
            slowest: Top::new(TOP_HOSTS, |h| (0, h.p99_ms.unwrap_or(0.0))),
            current: None,
        }
    }

    fn finish_host(&mut self, row: HostRow, fine: Fine) {
        let [p50, p99] = fine_percentiles(&fine, [0.5, 0.99]);
        let row = HostRow {
            p50_ms: p50,
            p99_ms: p99,
            max_ms: fine.values().map(|v| v.1).reduce(f64::max),
            ..row
        };
        self.hosts.count += 1;
        if row.failures() > 0 {
            self.failing.offer(&row);
        }
        if row.p99_ms.is_some() {
            self.slowest.offer(&row);
        }
        self.busiest.offer(&row);
    }

    pub fn add(&mut self, g: HostGroup) {
        if self.current.as_ref().is_some_and(|c| c.0.host != g.host)
            && let Some((row, fine)) = self.current.take()
        {
            self.finish_host(row, fine);
        }
        let (row, fine) = self
            .current
            .get_or_insert_with(|| (empty_host(g.host), Fine::new()));
        row.outcomes += g.n;
        row.responses += g.responses;
        row.errors += g.errors;
        row.http_errors += g.http_errors;
        row.bytes += g.bytes;
        if let Some(key) = g.key {
            fine.insert(key, (g.n, g.max_ms));
        }
    }

    /// The hosts, with the engine's figures (`run_hosts`: host → attempts, limit, overloads)
    /// for those shown.
    pub fn finish(mut self, engine: &HashMap<String, (u64, u64, u64)>) -> Hosts {
        if let Some((row, fine)) = self.current.take() {
            self.finish_host(row, fine);
        }
        let (busiest, failing, slowest) = (
            self.busiest.done(),
            self.failing.done(),
            self.slowest.done(),
        );
        let with_engine = |mut rows: Vec<HostRow>| {
            for row in &mut rows {
                if let Some(&(attempts, limit, overloads)) = engine.get(&row.host) {
                    row.attempts = Some(attempts);
                    row.limit = Some(limit);
                    row.overloads = Some(overloads);
                }
            }
            rows
        };
        let mut table = busiest.clone();
        for h in failing.iter().chain(&slowest) {
            if !table.iter().any(|t| t.host == h.host) {
                table.push(h.clone());
            }
        }
        table.sort_by(|a, b| b.outcomes.cmp(&a.outcomes).then(a.host.cmp(&b.host)));
        let mut hosts = self.hosts;
        hosts.by_volume = with_engine(busiest.into_iter().take(TOP_HOSTS).collect());
        hosts.by_errors = with_engine(failing);
        hosts.by_p99 = with_engine(slowest);
        hosts.table = with_engine(table);
        hosts
    }
}

fn empty_host(host: String) -> HostRow {
    HostRow {
        host,
        outcomes: 0,
        responses: 0,
        errors: 0,
        http_errors: 0,
        bytes: 0,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        attempts: None,
        limit: None,
        overloads: None,
    }
}

/// The `n` largest rows by a key, in memory bounded by 2n rows.
struct Top<F> {
    n: usize,
    key: F,
    rows: Vec<HostRow>,
}

impl<F: Fn(&HostRow) -> (u64, f64)> Top<F> {
    fn new(n: usize, key: F) -> Self {
        Top {
            n,
            key,
            rows: Vec::new(),
        }
    }

    fn offer(&mut self, row: &HostRow) {
        self.rows.push(row.clone());
        if self.rows.len() >= 2 * self.n {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let key = &self.key;
        self.rows.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            kb.0.cmp(&ka.0)
                .then(kb.1.total_cmp(&ka.1))
                .then(a.host.cmp(&b.host))
        });
        self.rows.truncate(self.n);
    }

    fn done(mut self) -> Vec<HostRow> {
        self.trim();
        self.rows
    }
}

/// Seconds between two RFC 3339 instants.
pub(super) fn elapsed(started: &str, finished: &str) -> Option<f64> {
    let ms = |s: &str| {
        humantime::parse_rfc3339_weak(s)
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()
    };
    Some(ms(finished)?.checked_sub(ms(started)?)?.as_secs_f64())
}
