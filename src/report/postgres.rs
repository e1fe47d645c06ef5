//! The report's queries on a PostgreSQL store, on read-only connections of their own (the
//! SQLite side's queries in PostgreSQL SQL, folded by [`super::fold`] into the same model). Every
//! figure is a `GROUP BY` in the database whose rows are streamed; the exact percentiles are the
//! database's `percentile_disc` (nearest rank, as the SQLite side computes them). Writes nothing.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use tokio_postgres::{Client, Row};

use super::fold::{
    HostFold, HostGroup, MainFold, MainRow, NO_HOST, NO_STATUS, QUANTILES, empty_report,
    set_elapsed,
};
use super::{
    Hosts, RUNS_SHOWN, Report, ReportError, ReportErrorKind as Kind, RunRow, Scope, bucket_ms,
};
use crate::pg::{PgUrl, connect, describe};

/// The outcome columns the report reads (the SQLite side's list; opening checks the store has
/// them).
const READS: &str = "run_id, url, status, error, attempts, started_at, total_ms, bytes";

/// `e` (a `timestamptz`) as milliseconds since the epoch, rounded down: the SQLite store keeps
/// milliseconds, cut.
fn t_ms(e: &str) -> String {
    format!("floor(extract(epoch FROM {e}) * 1000)::bigint")
}

/// `e` (a `timestamptz`) as RFC 3339 with milliseconds (cut), as the SQLite store writes times.
fn rfc3339(e: &str) -> String {
    format!("to_char({e} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// The fine log-histogram key of `total_ms`, as the SQLite side computes it (microseconds cut to
/// an integer, its number of digits × 1000 + its first three digits, at most 16383).
const FINE_KEY: &str = "least(length(trunc(total_ms * 1000)::bigint::text) * 1000 \
     + substr(trunc(total_ms * 1000)::bigint::text, 1, 3)::int, 16383)";

/// ASCII lowercase of `e` (as the engine's host key; `lower()` would follow the locale).
fn ascii_lower(e: &str) -> String {
    format!("translate({e}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
}

/// `host:port` of each outcome's URL as the SQLite side's `host_of` makes it: the authority after
/// `://` up to `/`, `?` or `#`, user information dropped, lowercased, the scheme's default port
/// (443, 80, else 0) filled in; `(none)` for input that is not a URL. Yields `host` and the
/// columns `cols` of outcomes matching `filter`.
fn hosts_of(cols: &str, filter: &str) -> String {
    let scheme = ascii_lower("left(url, p - 1)");
    let authority =
        ascii_lower("regexp_replace(substring(substr(url, p + 3) FROM '^[^/?#]*'), '^.*@', '')");
    format!(
        "SELECT (CASE WHEN a = '' THEN '{NO_HOST}' \
                 WHEN CASE WHEN left(a, 1) = '[' THEN strpos(a, ']:') > 0 \
                      ELSE strpos(a, ':') > 0 END THEN a \
                 ELSE a || CASE scheme WHEN 'https' THEN ':443' WHEN 'http' THEN ':80' \
                      ELSE ':0' END END) COLLATE \"C\" AS host, {cols} \
         FROM (SELECT CASE WHEN p > 0 THEN {scheme} END AS scheme, \
                      CASE WHEN p > 0 THEN {authority} ELSE '' END AS a, {cols} \
               FROM (SELECT strpos(url, '://') AS p, url, {cols} FROM outcomes \
                     WHERE {filter}) o) h"
    )
}

pub(super) async fn report(parsed: &PgUrl, scope: Scope) -> Result<Report, ReportError> {
    let store = parsed.masked().to_owned();
    let q = Queries::open(parsed, &store).await?;
    q.check_store().await?;
    let run_id = q.run_id(scope).await?;
    // Integers only go into the text: nothing from outside is spliced into SQL.
    let filter = match (scope, run_id) {
        (Scope::All, _) => "true".to_owned(),
        (_, Some(id)) => format!("run_id = {id}"),
        (_, None) => "false".to_owned(),
    };
    let host_run = if scope == Scope::All { None } else { run_id };
    // The host pass is the other long scan: on a connection of its own, beside the main pass.
    let h = Queries::open(parsed, &store).await?;
    let (report, hosts) =
        tokio::join!(q.report(scope, run_id, &filter), h.hosts(&filter, host_run));
    let mut report = report?;
    report.hosts = hosts?;
    Ok(report)
}

struct Queries {
    store: String,
    client: Client,
}

impl Queries {
    async fn open(url: &PgUrl, store: &str) -> Result<Queries, ReportError> {
        let io = |m: String| ReportError::new(store, Kind::Io, m);
        // The settings' error already names the URL.
        let settings = url
            .settings()
            .map_err(|e| io(e.replacen(&format!("{store}: "), "", 1)))?;
        let client = connect(&settings).await.map_err(|e| io(e.to_string()))?;
        let q = Queries {
            store: store.to_owned(),
            client,
        };
        // A report writes nothing; the server holds it to that.
        q.client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await
            .map_err(|e| q.io(e))?;
        Ok(q)
    }

    fn io(&self, e: tokio_postgres::Error) -> ReportError {
        ReportError::new(&self.store, Kind::Io, describe(&e))
    }

    fn not_a_store(&self, why: String) -> ReportError {
        ReportError::new(
            &self.store,
            Kind::NotAStore,
            format!("not a fanout store ({why})"),
        )
    }

    async fn check_store(&self) -> Result<(), ReportError> {
        let tables: bool = self
            .one("SELECT to_regclass('outcomes') IS NOT NULL AND to_regclass('runs') IS NOT NULL")
            .await?;
        if !tables {
            return Err(self.not_a_store("no outcomes and runs tables".into()));
        }
        self.client
            .prepare(&format!("SELECT {READS} FROM outcomes LIMIT 0"))
            .await
            .map_err(|e| self.not_a_store(describe(&e)))?;
        Ok(())
    }

    /// The single value of `sql`.
    async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
    ) -> Result<T, ReportError> {
        self.client
            .query_one(sql, &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(e))
    }

    /// Runs `sql` and hands each row to `f`, as they arrive.
    async fn each(
        &self,
        sql: &str,
        mut f: impl FnMut(&Row) -> Result<(), tokio_postgres::Error>,
    ) -> Result<(), ReportError> {
        let result = async {
            let rows = self
                .client
                .query_raw(sql, std::iter::empty::<i64>())
                .await?;
            let mut rows = std::pin::pin!(rows);
            while let Some(row) = rows.try_next().await? {
                f(&row)?;
            }
            Ok(())
        };
        result.await.map_err(|e| self.io(e))
    }

    /// The run a scope names: `None` for a store with no run yet.
    async fn run_id(&self, scope: Scope) -> Result<Option<i64>, ReportError> {
        match scope {
            Scope::All => Ok(None),
            // Outcomes written by the library without a run have run id 0.
            Scope::Latest => Ok(match self.one("SELECT max(id) FROM runs").await? {
                Some(id) => Some(id),
                None => self.one("SELECT max(run_id) FROM outcomes").await?,
            }),
            Scope::Run(id) => {
                let known: bool = self
                    .one(&format!(
                        "SELECT EXISTS (SELECT 1 FROM runs WHERE id = {id}) \
                         OR EXISTS (SELECT 1 FROM outcomes WHERE run_id = {id})"
                    ))
                    .await?;
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

    /// Everything but the hosts.
    async fn report(
        &self,
        scope: Scope,
        run_id: Option<i64>,
        filter: &str,
    ) -> Result<Report, ReportError> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT {}, {}, {} FROM (SELECT min(started_at) AS lo, \
                     max(started_at) AS hi FROM outcomes WHERE {filter}) m",
                    rfc3339("lo"),
                    t_ms("lo"),
                    t_ms("hi")
                ),
                &[],
            )
            .await
            .map_err(|e| self.io(e))?;
        let get = |i| row.try_get::<_, Option<i64>>(i).map_err(|e| self.io(e));
        let first_started_at: Option<String> = row.try_get(0).map_err(|e| self.io(e))?;
        let (t0, t1) = (get(1)?, get(2)?);
        let t0 = t0.unwrap_or(0);
        let bucket = bucket_ms(t1.unwrap_or(t0) - t0);
        let mut r = empty_report(self.store.clone(), scope, run_id, first_started_at);

        let sql = format!(
            "SELECT (({t} - {t0}) / {bucket}) * {TB} + CASE WHEN status IS NULL \
                    THEN {NO_STATUS} * {CODE} ELSE (status % 1000) * {CODE} + {FINE_KEY} END, \
                    CASE WHEN status IS NULL THEN coalesce(error, 'io') END, \
                    count(*), sum(bytes)::bigint, sum(attempts)::bigint, \
                    sum(greatest(attempts - 1, 0))::bigint, max(total_ms), sum(total_ms) \
             FROM outcomes WHERE {filter} GROUP BY 1, 2",
            t = t_ms("started_at"),
            TB = 1i64 << 24,
            CODE = 1i64 << 14,
        );
        let mut fold = MainFold::default();
        self.each(&sql, |row| {
            let int = |i| Ok::<_, tokio_postgres::Error>(row.try_get::<_, Option<i64>>(i)?.unwrap_or(0) as u64);
            let row = MainRow {
                packed: row.try_get(0)?,
                kind: row.try_get(1)?,
                n: int(2)?,
                bytes: int(3)?,
                attempts: int(4)?,
                retries: int(5)?,
                max_ms: row.try_get(6)?,
                sum_ms: row.try_get(7)?,
            };
            fold.add(&mut r, row);
            Ok(())
        })
        .await?;
        let exact = if r.responses > 0 {
            let qs: Vec<String> = QUANTILES.iter().map(|q| format!("{q:?}")).collect();
            let ps: Vec<f64> = self
                .one(&format!(
                    "SELECT percentile_disc(ARRAY[{}]::float8[]) WITHIN GROUP (ORDER BY total_ms) \
                     FROM outcomes WHERE {filter} AND status IS NOT NULL",
                    qs.join(", ")
                ))
                .await?;
            match ps[..] {
                [p50, p90, p99] => Some([p50, p90, p99]),
                _ => None,
            }
        } else {
            None
        };
        let max_any_ms = fold.max_any_ms;
        fold.finish(&mut r, bucket, exact);
        r.runs = self.runs().await?;
        let end_ms = match t1 {
            // Only outcomes started within the longest latency of the last start can end last.
            Some(t1) => {
                let from_ms = (t1 - max_any_ms.ceil() as i64 - 1).max(0);
                self.one::<Option<i64>>(&format!(
                    "SELECT trunc(max({t} + total_ms))::bigint FROM outcomes \
                     WHERE {filter} AND started_at >= to_timestamp({from_ms} / 1000.0)",
                    t = t_ms("started_at")
                ))
                .await?
                .unwrap_or(t1)
            }
            None => t0,
        };
        set_elapsed(&mut r, scope, run_id, t0, end_ms);
        Ok(r)
    }

    /// The last [`RUNS_SHOWN`] runs, oldest first.
    async fn runs(&self) -> Result<Vec<RunRow>, ReportError> {
        let mut runs = Vec::new();
        let sql = format!(
            "SELECT id, {}, {}, status, mode, command, outcomes, responses, errors, skipped \
             FROM runs ORDER BY id DESC LIMIT {RUNS_SHOWN}",
            rfc3339("started_at"),
            rfc3339("finished_at")
        );
        self.each(&sql, |r| {
            runs.push(RunRow {
                id: r.try_get(0)?,
                started_at: r.try_get(1)?,
                finished_at: r.try_get(2)?,
                status: r.try_get(3)?,
                mode: r.try_get(4)?,
                command: r.try_get(5)?,
                outcomes: r.try_get::<_, i64>(6)? as u64,
                responses: r.try_get::<_, i64>(7)? as u64,
                errors: r.try_get::<_, i64>(8)? as u64,
                skipped: r.try_get::<_, i64>(9)? as u64,
            });
            Ok(())
        })
        .await?;
        runs.reverse();
        Ok(runs)
    }

    /// Per-host figures: one `GROUP BY host, log bucket`, streamed host by host into bounded
    /// top lists; then the engine's figures from `run_hosts` for the hosts shown.
    async fn hosts(&self, filter: &str, run_id: Option<i64>) -> Result<Hosts, ReportError> {
        let sql = format!(
            "SELECT host, CASE WHEN status IS NULL THEN NULL ELSE {FINE_KEY} END, \
                    count(*), count(status), count(*) - count(status), \
                    count(*) FILTER (WHERE status >= 400), sum(bytes)::bigint, max(total_ms) \
             FROM ({}) h GROUP BY 1, 2 ORDER BY 1, 2",
            hosts_of("status, total_ms, bytes", filter)
        );
        let mut fold = HostFold::new();
        self.each(&sql, |r| {
            let count = |i| Ok::<_, tokio_postgres::Error>(r.try_get::<_, i64>(i)? as u64);
            let key: Option<i32> = r.try_get(1)?;
            fold.add(HostGroup {
                host: r.try_get(0)?,
                key: key.map(i64::from),
                n: count(2)?,
                responses: count(3)?,
                errors: count(4)?,
                http_errors: count(5)?,
                bytes: r.try_get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
                max_ms: r.try_get(7)?,
            });
            Ok(())
        })
        .await?;
        Ok(fold.finish(&self.run_hosts(run_id).await?))
    }

    /// The engine's per-host figures (`run_hosts`) for one run, or summed over every run (the
    /// limit then is the latest run's). Empty for a store made before the table existed.
    async fn run_hosts(
        &self,
        run_id: Option<i64>,
    ) -> Result<HashMap<String, (u64, u64, u64)>, ReportError> {
        let mut map = HashMap::new();
        if !self
            .one::<bool>("SELECT to_regclass('run_hosts') IS NOT NULL")
            .await?
        {
            return Ok(map);
        }
        let sql = match run_id {
            Some(id) => format!(
                "SELECT host, attempts, final_limit, overloads FROM run_hosts WHERE run_id = {id}"
            ),
            None => "SELECT host, sum(attempts)::bigint, \
                     (SELECT final_limit FROM run_hosts l WHERE l.host = h.host \
                      ORDER BY run_id DESC LIMIT 1), sum(overloads)::bigint \
                     FROM run_hosts h GROUP BY host"
                .to_owned(),
        };
        self.each(&sql, |r| {
            let int = |i| Ok::<_, tokio_postgres::Error>(r.try_get::<_, i64>(i)? as u64);
            map.insert(r.try_get(0)?, (int(1)?, int(2)?, int(3)?));
            Ok(())
        })
        .await?;
        Ok(map)
    }
}
