//! The report's queries on an SQLite store, on a read-only connection of their own. Every figure
//! is a `GROUP BY` in the database whose result is bounded by the number of time buckets, status
//! codes, error kinds and log-latency buckets (or streamed, host by host, into bounded top lists);
//! no query returns the outcomes themselves, except the rows of the three log buckets that hold
//! the exact percentiles, streamed in order and dropped as they are read.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::fold::{
    HostFold, HostGroup, MainFold, MainRow, NO_HOST, NO_STATUS, empty_report, set_elapsed,
    wanted_ranks,
};
use super::{
    Fine, Hosts, RUNS_SHOWN, Report, ReportError, ReportErrorKind as Kind, RunRow, Scope, bucket_ms,
};
use crate::outcome::Rfc3339Millis;

/// The outcome columns the report reads; each must be in the column table
/// ([`crate::sink::schema::OUTCOME_COLUMNS`]; a test checks it, and opening checks the store has them).
const READS: [&str; 7] = [
    "run_id",
    "url",
    "status",
    "error",
    "attempts",
    "started_at",
    "total_ms",
];

/// `started_at` as milliseconds since the epoch (SQLite keeps julianday as integer milliseconds).
const T_MS: &str = "CAST(round((julianday(started_at) - 2440587.5) * 86400000.0) AS INTEGER)";

/// The fine log-histogram key of `total_ms` (see `super::fine_bounds`): microseconds rounded down
/// to 3 significant digits, as number of digits × 1000 + the first three digits. Text functions
/// only: the bundled SQLite has no math functions. At most 16383 (14 bits; 115 days and more share
/// the last key).
const FINE_KEY: &str = "min(length(CAST(CAST(total_ms * 1000 AS INTEGER) AS TEXT)) * 1000 \
     + CAST(substr(CAST(CAST(total_ms * 1000 AS INTEGER) AS TEXT), 1, 3) AS INTEGER), 16383)";

pub(super) fn report(path: &Path, scope: Scope) -> Result<Report, ReportError> {
    let store = path.display().to_string();
    if !path.exists() {
        return Err(ReportError::new(store, Kind::NotFound, "no such file"));
    }
    let q = Queries::open(path, store.clone())?;
    let run_id = q.run_id(scope)?;
    // Integers only go into the text: nothing from outside is spliced into SQL.
    let filter = match (scope, run_id) {
        (Scope::All, _) => "1".to_owned(),
        (_, Some(id)) => format!("run_id = {id}"),
        (_, None) => "0".to_owned(),
    };
    let host_run = if scope == Scope::All { None } else { run_id };
    // The host pass is the other long scan: on a connection and a thread of its own, it runs
    // beside the main pass (each sorts in its own bounded memory).
    std::thread::scope(|threads| {
        let hosts = threads.spawn(|| Queries::open(path, store.clone())?.hosts(&filter, host_run));
        let report = q.report(scope, run_id, &filter);
        let hosts = hosts.join().unwrap_or_else(|_| {
            Err(ReportError::new(
                &store,
                Kind::Io,
                "the host query panicked",
            ))
        });
        let mut report = report?;
        report.hosts = hosts?;
        Ok(report)
    })
}

struct Queries {
    store: String,
    conn: Connection,
}

impl Queries {
    fn open(path: &Path, store: String) -> Result<Queries, ReportError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ReportError::new(&store, Kind::Io, e.to_string()))?;
        let q = Queries { store, conn };
        q.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| q.io(e))?;
        let tables: i64 = q
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('outcomes', 'runs')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| q.not_a_store(e.to_string()))?;
        if tables != 2 {
            return Err(q.not_a_store("no outcomes and runs tables".into()));
        }
        q.conn
            .prepare(&format!(
                "SELECT {} FROM outcomes LIMIT 0",
                READS.join(", ")
            ))
            .map_err(|e| q.not_a_store(e.to_string()))?;
        // The host key in SQL, as the engine keys its per-host state (`host:port`).
        q.conn
            .create_scalar_function(
                "fanout_host",
                1,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    Ok(match ctx.get_raw(0) {
                        ValueRef::Text(t) => host_of(&String::from_utf8_lossy(t)),
                        _ => NO_HOST.to_owned(),
                    })
                },
            )
            .map_err(|e| q.io(e))?;
        Ok(q)
    }

    fn io(&self, e: rusqlite::Error) -> ReportError {
        ReportError::new(&self.store, Kind::Io, e.to_string())
    }

    fn not_a_store(&self, why: String) -> ReportError {
        ReportError::new(
            &self.store,
            Kind::NotAStore,
            format!("not a fanout store ({why})"),
        )
    }

    /// Everything but the hosts.
    fn report(
        &self,
        scope: Scope,
        run_id: Option<i64>,
        filter: &str,
    ) -> Result<Report, ReportError> {
        let (first_started_at, t0, t1): (Option<String>, Option<i64>, Option<i64>) = self
            .conn
            .query_row(
                &format!(
                    "SELECT lo, {lo}, {hi} FROM (SELECT min(started_at) AS lo, \
                     max(started_at) AS hi FROM outcomes WHERE {filter})",
                    lo = T_MS.replace("started_at", "lo"),
                    hi = T_MS.replace("started_at", "hi"),
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.io(e))?;
        let t0 = t0.unwrap_or(0);
        let bucket = bucket_ms(t1.unwrap_or(t0) - t0);

        let mut r = empty_report(self.store.clone(), scope, run_id, first_started_at);

        // Counts, bytes, retries, the latency histogram and the time series: one pass. The
        // group is one packed integer (time bucket, status or 1000 for an error, fine latency
        // key) and the error kind: sorting one integer costs about half of sorting four columns.
        let sql = format!(
            "SELECT (({T_MS} - {t0}) / {bucket}) * {TB} + CASE WHEN status IS NULL \
                    THEN {NO_STATUS} * {CODE} ELSE (status % 1000) * {CODE} + {FINE_KEY} END, \
                    CASE WHEN status IS NULL THEN coalesce(error, 'io') END, \
                    count(*), sum(bytes), sum(attempts), sum(max(attempts - 1, 0)), \
                    max(total_ms), sum(total_ms) \
             FROM outcomes WHERE {filter} GROUP BY 1, 2",
            TB = 1i64 << 24,
            CODE = 1i64 << 14,
        );
        let mut fold = MainFold::default();
        self.each(&sql, |row| {
            let row = MainRow {
                packed: row.get(0)?,
                kind: row.get(1)?,
                n: row.get::<_, i64>(2)? as u64,
                bytes: row.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                attempts: row.get::<_, Option<i64>>(4)?.unwrap_or(0) as u64,
                retries: row.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64,
                max_ms: row.get(6)?,
                sum_ms: row.get(7)?,
            };
            fold.add(&mut r, row);
            Ok(())
        })?;
        let exact = if r.responses > 0 {
            Some(self.exact_percentiles(filter, &fold.fine)?)
        } else {
            None
        };
        let max_any_ms = fold.max_any_ms;
        fold.finish(&mut r, bucket, exact);
        r.runs = self.runs()?;
        let end_ms = match t1 {
            Some(t1) => self.last_end(filter, t1, max_any_ms)?.unwrap_or(t1),
            None => t0,
        };
        set_elapsed(&mut r, scope, run_id, t0, end_ms);
        Ok(r)
    }

    /// When the last outcome ended (ms since the epoch): only outcomes started within the longest
    /// latency of the last start can, so only their start times are parsed.
    fn last_end(&self, filter: &str, t1: i64, max_ms: f64) -> Result<Option<i64>, ReportError> {
        let from_ms = u64::try_from(t1 - max_ms.ceil() as i64 - 1).unwrap_or(0);
        let from = Rfc3339Millis::new(UNIX_EPOCH + Duration::from_millis(from_ms));
        self.conn
            .query_row(
                &format!(
                    "SELECT CAST(max({T_MS} + total_ms) AS INTEGER) FROM outcomes \
                     WHERE {filter} AND started_at >= ?1"
                ),
                [from.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| self.io(e))
    }

    /// Runs `sql` and hands each row to `f`.
    fn each(
        &self,
        sql: &str,
        mut f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), ReportError> {
        let result = (|| {
            let mut stmt = self.conn.prepare(sql)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                f(row)?;
            }
            Ok(())
        })();
        result.map_err(|e| self.io(e))
    }

    /// The run a scope names: `None` for a store with no run yet.
    fn run_id(&self, scope: Scope) -> Result<Option<i64>, ReportError> {
        let max = |sql: &str| -> Result<Option<i64>, ReportError> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| self.io(e))
        };
        match scope {
            Scope::All => Ok(None),
            // Outcomes written by the library without a run have run id 0.
            Scope::Latest => Ok(match max("SELECT max(id) FROM runs")? {
                Some(id) => Some(id),
                None => max("SELECT max(run_id) FROM outcomes")?,
            }),
            Scope::Run(id) => {
                let known: bool = self
                    .conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1) \
                         OR EXISTS (SELECT 1 FROM outcomes WHERE run_id = ?1)",
                        [id],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.io(e))?;
                if known {
                    Ok(Some(id))
                } else {
                    Err(ReportError::new(
                        &self.store,
                        Kind::NoSuchRun,
                        format!("--run {id}: no such run"),
                    ))
                }
            }
        }
    }

    /// p50, p90 and p99 exactly: the fine histogram says which bucket holds each rank and how
    /// many smaller values precede it; the rows of those buckets are read in order.
    fn exact_percentiles(&self, filter: &str, fine: &Fine) -> Result<[f64; 3], ReportError> {
        // (bucket key, index within the bucket), per quantile.
        let wanted = wanted_ranks(fine);
        let keys: Vec<String> = wanted.iter().map(|w| w.0.to_string()).collect();
        // A range test on total_ms first (a little wider than the buckets), so that the key is
        // computed only for rows near the three buckets.
        let ranges: Vec<String> = wanted
            .iter()
            .map(|w| {
                let (lo, hi) = super::fine_bounds(w.0);
                format!(
                    "total_ms BETWEEN {:?} AND {:?}",
                    lo * 0.999 - 1e-6,
                    hi * 1.001 + 1e-6
                )
            })
            .collect();
        let sql = format!(
            "SELECT {FINE_KEY} AS k, total_ms FROM outcomes \
             WHERE {filter} AND status IS NOT NULL AND ({}) AND k IN ({}) ORDER BY k, total_ms",
            ranges.join(" OR "),
            keys.join(", ")
        );
        let mut out = [f64::NAN; 3];
        let (mut key, mut index) = (i64::MIN, 0u64);
        self.each(&sql, |row| {
            let k: i64 = row.get(0)?;
            if k != key {
                (key, index) = (k, 0);
            }
            for (o, w) in out.iter_mut().zip(wanted) {
                if w == (k, index) {
                    *o = row.get(1)?;
                }
            }
            index += 1;
            Ok(())
        })?;
        Ok(out)
    }

    /// The last [`RUNS_SHOWN`] runs, oldest first.
    fn runs(&self) -> Result<Vec<RunRow>, ReportError> {
        let mut runs = Vec::new();
        self.each(
            &format!(
                "SELECT id, started_at, finished_at, status, mode, command, outcomes, responses, \
                 errors, skipped FROM runs ORDER BY id DESC LIMIT {RUNS_SHOWN}"
            ),
            |r| {
                runs.push(RunRow {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    status: r.get(3)?,
                    mode: r.get(4)?,
                    command: r.get(5)?,
                    outcomes: r.get::<_, i64>(6)? as u64,
                    responses: r.get::<_, i64>(7)? as u64,
                    errors: r.get::<_, i64>(8)? as u64,
                    skipped: r.get::<_, i64>(9)? as u64,
                });
                Ok(())
            },
        )?;
        runs.reverse();
        Ok(runs)
    }

    /// Per-host figures: one `GROUP BY host, log bucket`, streamed host by host into bounded
    /// top lists; then the engine's figures from `run_hosts` for the hosts shown.
    fn hosts(&self, filter: &str, run_id: Option<i64>) -> Result<Hosts, ReportError> {
        let sql = format!(
            "SELECT fanout_host(url), CASE WHEN status IS NULL THEN NULL ELSE {FINE_KEY} END, \
                    count(*), sum(status IS NOT NULL), sum(status IS NULL), \
                    sum(coalesce(status >= 400, 0)), sum(bytes), max(total_ms) \
             FROM outcomes WHERE {filter} GROUP BY 1, 2 ORDER BY 1, 2"
        );
        let mut fold = HostFold::new();
        self.each(&sql, |r| {
            let n = r.get::<_, i64>(2)? as u64;
            let key = r.get::<_, Option<i64>>(1)?;
            fold.add(HostGroup {
                host: r.get(0)?,
                key,
                n,
                responses: r.get::<_, i64>(3)? as u64,
                errors: r.get::<_, i64>(4)? as u64,
                http_errors: r.get::<_, i64>(5)? as u64,
                bytes: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
                max_ms: if key.is_some() { r.get(7)? } else { 0.0 },
            });
            Ok(())
        })?;
        Ok(fold.finish(&self.run_hosts(run_id)?))
    }

    /// The engine's per-host figures (`run_hosts`) for one run, or summed over every run (the
    /// limit then is the latest run's). Empty for a store made before the table existed.
    fn run_hosts(
        &self,
        run_id: Option<i64>,
    ) -> Result<HashMap<String, (u64, u64, u64)>, ReportError> {
        let mut map = HashMap::new();
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'run_hosts'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.io(e))?;
        if !exists {
            return Ok(map);
        }
        let sql = match run_id {
            Some(id) => format!(
                "SELECT host, attempts, final_limit, overloads FROM run_hosts WHERE run_id = {id}"
            ),
            None => "SELECT host, sum(attempts), \
                     (SELECT final_limit FROM run_hosts l WHERE l.host = h.host \
                      ORDER BY run_id DESC LIMIT 1), sum(overloads) \
                     FROM run_hosts h GROUP BY host"
                .to_owned(),
        };
        self.each(&sql, |r| {
            map.insert(
                r.get(0)?,
                (
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ),
            );
            Ok(())
        })?;
        Ok(map)
    }
}

/// `host:port` of a stored URL, with the scheme's default port filled in, as the engine's host
/// key (stored URLs are normalized: lowercase host, no default port written). User information
/// is dropped: a password never reaches a report.
fn host_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return NO_HOST.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return NO_HOST.to_owned();
    }
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host.contains(':'),
    };
    let mut key = host.to_ascii_lowercase();
    if !has_port {
        key.push_str(match scheme.to_ascii_lowercase().as_str() {
            "https" => ":443",
            "http" => ":80",
            _ => ":0",
        });
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::schema::OUTCOME_COLUMNS;

    #[test]
    fn the_columns_read_are_outcome_columns() {
        for name in READS {
            assert!(OUTCOME_COLUMNS.iter().any(|c| c.name == name), "{name}");
        }
    }

    #[test]
    fn host_is_the_engines_key() {
        assert_eq!(host_of("http://a.test/x"), "a.test:80");
        assert_eq!(host_of("https://a.test"), "a.test:443");
        assert_eq!(host_of("http://A.test:8080?q"), "a.test:8080");
        assert_eq!(host_of("http://u:secret@a.test/"), "a.test:80");
        assert_eq!(host_of("http://[::1]:9/"), "[::1]:9");
        assert_eq!(host_of("http://[::1]/"), "[::1]:80");
        assert_eq!(host_of("not a url"), NO_HOST);
    }

    #[test]
    fn fine_key_in_sql_matches_its_inverse() {
        let conn = Connection::open_in_memory().unwrap();
        for ms in [0.0, 0.0007, 0.007, 1.234567, 99.99, 12345.678] {
            let key: i64 = conn
                .query_row(
                    &format!("SELECT {FINE_KEY} FROM (SELECT ?1 AS total_ms)"),
                    [ms],
                    |r| r.get(0),
                )
                .unwrap();
            let (lo, hi) = super::super::fine_bounds(key);
            assert!(lo <= ms + 1e-12 && ms < hi, "{ms}: {key} [{lo}, {hi})");
            assert!(
                hi - lo <= (lo * 0.01).max(0.001) + 1e-12,
                "{ms}: [{lo}, {hi})"
            );
        }
    }

    #[test]
    fn elapsed_between_rfc3339_instants() {
        assert_eq!(
            super::super::fold::elapsed("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.500Z"),
            Some(1.5)
        );
    }
}
