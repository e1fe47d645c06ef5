//! Many machines, one list: a work queue in PostgreSQL, with no coordinator of fanout's own.
//! [`enqueue`] loads requests into a queue's jobs (streamed with COPY, keys already queued or
//! done skipped), [`work`] is one worker of any number (leases judged by the database's clock,
//! exactly-once completion, politeness shared by the fleet), [`status`] says where a queue
//! stands. Outcomes land in the same `outcomes` table as `fanout fetch --db postgres://...`
//! writes, so `fanout report` reads a queue's results as it reads a run's. Owns the queue's
//! tables and their use; the engine, the outcome schema and connecting are borrowed
//! ([`crate::engine`], [`crate::sink::schema`], [`crate::pg`]). docs/scale-out.md explains the
//! design and what happens in each failure.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fanout::queue::QueueError> {
//! use fanout::pg::PgUrl;
//! use fanout::queue::{EnqueueConfig, WorkConfig};
//! use fanout::source::{Input, SourceConfig};
//!
//! let db = PgUrl::parse("postgres://app@db.internal/crawl").unwrap();
//! let source = SourceConfig {
//!     inputs: vec![Input::from_arg("urls.txt")],
//!     ..SourceConfig::default()
//! };
//! let loaded = fanout::queue::enqueue(EnqueueConfig::new(db.clone(), "default", source)).await?;
//! println!("{} queued, {} skipped", loaded.queued, loaded.skipped);
//!
//! // On every machine: drains the queue together with the others, then returns.
//! let stats = fanout::stats::Stats::new();
//! let done = fanout::queue::work(WorkConfig::new(db.clone(), "default"), stats, std::future::pending()).await?;
//! println!("{} outcomes recorded by worker {}", done.summary.total, done.worker);
//! println!("{}", fanout::queue::status(&db, "default").await?);
//! # Ok(()) }
//! ```

mod db;
mod gate;
mod sql;
mod work;

use std::fmt;

use futures_util::SinkExt;
use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

pub use self::work::{DEFAULT_MAX_LOST_LEASES, WorkConfig, WorkSummary, in_hand, work};
use crate::config::ConfigError;
use crate::engine::client::ClientError;
use crate::outcome::Outcome;
use crate::pg::{PgUrl, Settings, connect, describe};
use crate::sink::postgres::{SCHEMA_LOCK, column_list, encode_copy, prepare_schema, wire_types};
use crate::source::{OpenError, Source, SourceConfig, SourceItem};

/// The queue used when none is named.
pub const DEFAULT_QUEUE: &str = "default";

/// Jobs written per COPY by [`enqueue`].
const ENQUEUE_BATCH: usize = 5000;

/// What went wrong with a queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The database could not be reached or prepared at the start, or a name is invalid:
    /// nothing was done.
    #[error("{0}")]
    Open(String),
    /// The database failed during the run (unreachable past the store timeout): what was
    /// committed stays; leases not completed run out and other workers take the jobs.
    #[error("{0}")]
    Db(String),
    /// An input could not be opened.
    #[error(transparent)]
    Input(#[from] OpenError),
    /// The engine settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A queue name: 1 to 64 ASCII letters, digits, `_`, `-` or `.`.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "queue name '{name}': use 1 to 64 letters, digits, '_', '-' or '.'"
        ))
    }
}

/// Connects, and creates (or migrates) the outcome store's tables and the queue's.
async fn open(url: &PgUrl) -> Result<(std::sync::Arc<Settings>, Client), QueueError> {
    let target = url.masked().to_owned();
    let settings = std::sync::Arc::new(url.settings().map_err(QueueError::Open)?);
    let client = connect(&settings)
        .await
        .map_err(|e| QueueError::Open(format!("{target}: {e}")))?;
    prepare_schema(&client, &target)
        .await
        .map_err(|e| QueueError::Open(e.to_string()))?;
    let err = |e: tokio_postgres::Error| QueueError::Open(format!("{target}: {}", describe(&e)));
    client.batch_execute(db::SESSION).await.map_err(err)?;
    // Tables there already: no DDL, which would wait for a lock on `queue_jobs` behind any
    // worker's open transaction.
    let present: bool = client
        .query_one(
            "SELECT to_regprocedure('fanout_acquire(text,text,text,integer,double precision)') \
             IS NOT NULL AND EXISTS (SELECT 1 FROM information_schema.columns WHERE \
             table_schema = current_schema() AND table_name = 'queue_jobs' \
             AND column_name = 'expired')",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    if present {
        return Ok((settings, client));
    }
    // One creator at a time: CREATE OR REPLACE FUNCTION races with itself otherwise.
    client.batch_execute("BEGIN").await.map_err(err)?;
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(err)?;
    client.batch_execute(sql::SCHEMA).await.map_err(err)?;
    client.batch_execute("COMMIT").await.map_err(err)?;
    Ok((settings, client))
}

/// A new `runs` row, its id above every other (taken under the schema lock, so workers starting
/// together get different ids).
async fn begin_run(
    client: &Client,
    target: &str,
    command: &str,
    mode: &str,
) -> Result<i64, QueueError> {
    let err = |e: tokio_postgres::Error| QueueError::Open(format!("{target}: {}", describe(&e)));
    let command = crate::pg::mask_secrets(command);
    client.batch_execute("BEGIN").await.map_err(err)?;
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(err)?;
    let id: i64 = client
        .query_one(
            "INSERT INTO runs (id, started_at, command, status, mode) \
             SELECT coalesce(max(id), 0) + 1, now(), $1, 'running', $2 FROM runs RETURNING id",
            &[&command, &mode],
        )
        .await
        .map_err(err)?
        .get(0);
    client.batch_execute("COMMIT").await.map_err(err)?;
    Ok(id)
}

/// This machine's name, for worker names.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// What [`enqueue`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnqueueConfig {
    /// The database holding the queue.
    pub db: PgUrl,
    /// The queue's name.
    pub queue: String,
    /// Where the requests come from (files, stdin, or a query's rows).
    pub source: SourceConfig,
    /// The command line, for the `runs` row of invalid lines (credentials masked).
    pub command: String,
}

impl EnqueueConfig {
    /// Enqueue `source` into `queue` at `db`.
    pub fn new(db: PgUrl, queue: impl Into<String>, source: SourceConfig) -> EnqueueConfig {
        EnqueueConfig {
            db,
            queue: queue.into(),
            source,
            command: String::new(),
        }
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Enqueued {
    /// Requests read.
    pub read: u64,
    /// Jobs added.
    pub queued: u64,
    /// Requests whose key was already in the queue or already has an outcome.
    pub skipped: u64,
    /// Lines that are not requests (recorded as `invalid-input` outcomes).
    pub invalid: u64,
    /// The first few invalid lines' messages (`file:line: reason`).
    pub invalid_lines: Vec<String>,
}

/// Messages of invalid lines kept for the caller.
const INVALID_SHOWN: usize = 20;

/// Loads the requests of `config.source` into the queue: streamed, in batches of a COPY each;
/// a key already queued (in this queue) or already recorded in `outcomes` is skipped. Lines
/// that are not requests become `invalid-input` outcomes, as in a fetch.
pub async fn enqueue(config: EnqueueConfig) -> Result<Enqueued, QueueError> {
    check_queue_name(&config.queue).map_err(QueueError::Open)?;
    let target = config.db.masked().to_owned();
    let mut source = Source::open(config.source).await?;
    let (_, client) = open(&config.db).await?;
    let db_err = |e: tokio_postgres::Error| QueueError::Db(format!("{target}: {}", describe(&e)));
    client
        .batch_execute(
            "CREATE TEMP TABLE fanout_jobs_stage (key text, host text, method text, url text, \
             headers text, body bytea, origin text, line bigint); \
             CREATE TEMP TABLE fanout_stage (LIKE outcomes)",
        )
        .await
        .map_err(db_err)?;
    let insert = "INSERT INTO queue_jobs (queue, key, host, method, url, headers, body, origin, line) \
         SELECT $1, key, host, method, url, headers, body, origin, line FROM fanout_jobs_stage s \
         WHERE NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.key = s.key) \
         ON CONFLICT (queue, key) DO NOTHING";
    let mut done = Enqueued::default();
    let mut jobs = Vec::with_capacity(ENQUEUE_BATCH);
    let mut invalid: Vec<Outcome> = Vec::new();
    let mut run_id = None;
    loop {
        let item = source.next().await;
        let end = item.is_none();
        match item {
            Some(SourceItem::Request(r)) => {
                done.read += 1;
                jobs.push(r);
            }
            Some(SourceItem::Invalid(o)) => {
                done.invalid += 1;
                if done.invalid_lines.len() < INVALID_SHOWN {
                    done.invalid_lines
                        .push(o.error_detail.clone().unwrap_or_default());
                }
                invalid.push(*o);
            }
            None => {}
        }
        if jobs.len() >= ENQUEUE_BATCH || (end && !jobs.is_empty()) {
            client.batch_execute("BEGIN").await.map_err(db_err)?;
            let sink = client
                .copy_in(
                    "COPY fanout_jobs_stage (key, host, method, url, headers, body, origin, line) \
                     FROM STDIN (FORMAT binary)",
                )
                .await
                .map_err(db_err)?;
            let types = [
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::TEXT,
                Type::INT8,
            ];
            let writer = BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            for r in jobs.drain(..) {
                // Keyed as the engine keys its hosts: the fleet's per-host rows use the same.
                let host = crate::engine::host_key(&r.url);
                let headers = (!r.headers.is_empty()).then(|| {
                    let pairs: Vec<(&str, String)> = r
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes()).into()))
                        .collect();
                    serde_json::to_string(&pairs).unwrap_or_default()
                });
                let body: Option<&[u8]> = (!r.body.is_empty()).then_some(&r.body[..]);
                let line = i64::try_from(r.origin.line).unwrap_or(i64::MAX);
                writer
                    .as_mut()
                    .write(&[
                        &r.key,
                        &&*host,
                        &r.method.as_str(),
                        &r.url.as_str(),
                        &headers,
                        &body,
                        &&*r.origin.input,
                        &line,
                    ])
                    .await
                    .map_err(db_err)?;
            }
            let staged = writer.finish().await.map_err(db_err)?;
            let added = client
                .execute(insert, &[&config.queue])
                .await
                .map_err(db_err)?;
            client
                .batch_execute("TRUNCATE fanout_jobs_stage; COMMIT")
                .await
                .map_err(db_err)?;
            done.queued += added;
            done.skipped += staged - added;
        }
        if !invalid.is_empty() && (invalid.len() >= ENQUEUE_BATCH || end) {
            let id = match run_id {
                Some(id) => id,
                None => {
                    let id = begin_run(&client, &target, &config.command, "enqueue").await?;
                    run_id = Some(id);
                    id
                }
            };
            let data = encode_copy(&invalid, id, &wire_types())
                .map_err(|e| QueueError::Internal(e.to_string()))?;
            invalid.clear();
            let cols = column_list();
            client.batch_execute("BEGIN").await.map_err(db_err)?;
            let sink = client
                .copy_in(&format!(
                    "COPY fanout_stage ({cols}) FROM STDIN (FORMAT binary)"
                ))
                .await
                .map_err(db_err)?;
            let mut sink = std::pin::pin!(sink);
            sink.send(data).await.map_err(db_err)?;
            sink.as_mut().finish().await.map_err(db_err)?;
            client
                .execute(
                    &format!(
                        "INSERT INTO outcomes ({cols}) SELECT {cols} FROM fanout_stage \
                         ON CONFLICT (key) DO NOTHING"
                    ),
                    &[],
                )
                .await
                .map_err(db_err)?;
            client
                .batch_execute("TRUNCATE fanout_stage; COMMIT")
                .await
                .map_err(db_err)?;
        }
        if end {
            break;
        }
    }
    if let Some(id) = run_id {
        let n = done.invalid as i64;
        client
            .execute(
                "UPDATE runs SET finished_at = now(), status = 'completed', outcomes = $2, \
                 errors = $2 WHERE id = $1",
                &[&id, &n],
            )
            .await
            .map_err(db_err)?;
    }
    Ok(done)
}

/// A worker as [`status`] reports it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// `host:pid:run`.
    pub worker: String,
    /// Its run id.
    pub run_id: i64,
    /// `working`, `finished`, `stopped`, or `lost` (still working by its row, but not heard from
    /// for longer than its lease: it died or is frozen, and its jobs go to the others).
    pub state: String,
    /// Jobs it completed.
    pub done: i64,
    /// Of those, jobs whose outcome is an error kind.
    pub failed: i64,
    /// Completions refused because its lease had been taken away.
    pub stale: i64,
    /// Seconds since it was last heard from.
    pub seen_secs_ago: f64,
}

/// A paused host.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PausedHost {
    /// `host:port`.
    pub host: String,
    /// Seconds left of its `Retry-After` pause.
    pub secs_left: f64,
}

/// Where a queue stands.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct QueueStatus {
    /// The queue's name.
    pub queue: String,
    /// Jobs waiting (of which `later` are not due yet).
    pub queued: i64,
    /// Jobs waiting that are due later (handed back with a not-before).
    pub later: i64,
    /// Jobs leased to a worker now.
    pub leased: i64,
    /// Jobs done with a response (any status).
    pub done: i64,
    /// Jobs done with an error kind (no response).
    pub failed: i64,
    /// Jobs done in the last minute, per second.
    pub rate_last_minute: f64,
    /// Age of the oldest lease, in seconds.
    pub oldest_lease_secs: Option<f64>,
    /// Workers heard from in the last ten minutes.
    pub workers: Vec<WorkerStatus>,
    /// Hosts paused by a `Retry-After`.
    pub paused_hosts: Vec<PausedHost>,
}

/// Reads where `queue` stands (it scans the queue's jobs: a count, not an estimate).
pub async fn status(db: &PgUrl, queue: &str) -> Result<QueueStatus, QueueError> {
    check_queue_name(queue).map_err(QueueError::Open)?;
    let target = db.masked().to_owned();
    let (_, client) = open(db).await?;
    let err = |e: tokio_postgres::Error| QueueError::Db(format!("{target}: {}", describe(&e)));
    let r = client
        .query_one(sql::STATUS, &[&queue])
        .await
        .map_err(err)?;
    let workers = client
        .query(sql::WORKERS, &[&queue])
        .await
        .map_err(err)?
        .iter()
        .map(|w| WorkerStatus {
            worker: w.get(0),
            run_id: w.get(1),
            state: w.get(2),
            done: w.get(3),
            failed: w.get(4),
            stale: w.get(5),
            seen_secs_ago: w.get(6),
        })
        .collect();
    let paused_hosts = client
        .query(sql::PAUSED_HOSTS, &[&queue])
        .await
        .map_err(err)?
        .iter()
        .map(|h| PausedHost {
            host: h.get(0),
            secs_left: h.get(1),
        })
        .collect();
    Ok(QueueStatus {
        queue: queue.to_owned(),
        queued: r.get(0),
        later: r.get(1),
        leased: r.get(2),
        done: r.get(3),
        failed: r.get(4),
        rate_last_minute: r.get::<_, i64>(5) as f64 / 60.0,
        oldest_lease_secs: r.get(6),
        workers,
        paused_hosts,
    })
}

impl fmt::Display for QueueStatus {
    /// The human form `fanout status` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "queue {}: {} queued ({} due later), {} leased, {} done, {} failed",
            self.queue, self.queued, self.later, self.leased, self.done, self.failed
        )?;
        writeln!(
            f,
            "rate over the last minute: {:.1} jobs/s",
            self.rate_last_minute
        )?;
        match self.oldest_lease_secs {
            Some(s) => writeln!(f, "oldest lease: {s:.1}s old")?,
            None => writeln!(f, "oldest lease: none")?,
        }
        if self.workers.is_empty() {
            writeln!(f, "workers: none seen in the last 10 minutes")?;
        } else {
            writeln!(f, "workers (seen in the last 10 minutes):")?;
            for w in &self.workers {
                writeln!(
                    f,
                    "  {:<32} {:<9} {:>9} done {:>7} failed {:>5} stale  seen {:.0}s ago",
                    w.worker, w.state, w.done, w.failed, w.stale, w.seen_secs_ago
                )?;
            }
        }
        if self.paused_hosts.is_empty() {
            writeln!(f, "paused hosts: none")?;
        } else {
            writeln!(f, "paused hosts (Retry-After):")?;
            for h in &self.paused_hosts {
                writeln!(f, "  {:<40} {:.1}s left", h.host, h.secs_left)?;
            }
        }
        Ok(())
    }
}
