//! Sinks: where outcomes land. One async, object-safe trait ([`Sink`]) that every backend
//! implements: SQLite and JSON lines (blocking, each on a thread of its own behind the trait), and
//! an in-memory [`channel`] for programs that embed fanout; PostgreSQL natively async. A sink may also be a resume
//! [`Journal`]. Owns store files and their formats; knows nothing of HTTP or admission. The
//! crate-private recorder batches outcomes and writes every sink of a run concurrently.

pub mod channel;
mod jsonl;
pub(crate) mod postgres;
pub(crate) mod recorder;
pub mod schema;
mod sqlite;
mod threaded;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use crate::outcome::Outcome;
use crate::stats::Summary;

/// Largest batch written in one transaction. Large on purpose: keys are random, so every row dirties
/// a random page of the key index, and a commit writes each dirty page once; 8× the rows per commit
/// cut the store thread's CPU per row by about half (docs/performance.md).
pub(crate) const MAX_BATCH: usize = 8192;
/// How long a stream of outcomes may keep a batch open before it is written anyway.
pub(crate) const MAX_LINGER: Duration = Duration::from_millis(200);
/// Stored body bytes that end a batch early, so batches of large bodies stay small in memory.
pub(crate) const MAX_BATCH_BODY_BYTES: usize = 8 << 20;
/// A pause in outcomes this long after a write lets the sinks tidy up ([`Sink::idle`]).
pub(crate) const IDLE_AFTER: Duration = Duration::from_millis(20);

/// A sink the command line can name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreConfig {
    /// An SQLite database file (created when missing).
    Sqlite(PathBuf),
    /// JSON lines appended to a file.
    Jsonl(PathBuf),
    /// JSON lines on standard output.
    JsonlStdout,
    /// A PostgreSQL database (tables created when missing).
    Postgres(crate::pg::PgUrl),
}

/// How long a store may stay unreachable before its write fails (`--store-timeout`).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a sink knows about the run it records.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run's id, chosen by the pipeline (above every id the run's sinks have used).
    pub id: i64,
    /// The command line, for the `runs` table (secrets already removed).
    pub command: String,
    /// When the run started.
    pub started_at: SystemTime,
    /// `--fresh`: earlier outcomes are ignored (recorded in `runs.mode`).
    pub fresh: bool,
}

/// A batch of outcomes, shared by the sinks that write it at the same time.
pub type Batch = Arc<Vec<Outcome>>;

/// A place outcomes are written to. Object-safe: a run holds `Box<dyn Sink>`s and writes each
/// batch to all of them concurrently; a batch counts as recorded once every sink has it.
pub trait Sink: Send {
    /// What the sink writes to, for messages (a path, `<stdout>`; never a password).
    fn target(&self) -> &str;
    /// The lowest run id this sink has not used (runs get an id above every sink's).
    fn next_run_id(&self) -> i64 {
        1
    }
    /// Called once before any outcome, with the run's description.
    fn begin_run<'a>(&'a mut self, run: &'a RunInfo) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Writes a batch durably (one transaction, or one flush).
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>>;
    /// Called when no outcome has arrived for a short while since the last write: a chance to
    /// do work that would otherwise wait for the end of the run. Best effort.
    fn idle(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Called once after the last batch with the run's totals.
    fn end_run<'a>(&'a mut self, summary: &'a Summary) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Closes the sink, waiting until what it holds is released (files closed). A sink dropped
    /// without `end_run` marks its run as interrupted, if it records runs.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// What a journal holds for a key, as far as resume needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// The run that recorded it.
    pub run_id: i64,
    /// Its status, if it was a response.
    pub status: Option<u16>,
    /// Its error kind's name, if it was not.
    pub error: Option<String>,
}

/// Read access to recorded outcomes by key, for resume. Reads never wait for the sink's writer.
pub trait Journal: Send {
    /// Whether a key may hold an outcome the current run did not record. False only when the
    /// store held no outcome and no other run was marked running when it was opened: then keys
    /// the run never admitted need no lookup. (A run started later on the same store is not seen;
    /// runs sharing a store at the same time are not coordinated.)
    fn others_may_have_recorded(&self) -> bool {
        true
    }
    /// For each key, what the store holds for it, if anything.
    fn lookup(&mut self, keys: Vec<String>)
    -> BoxFuture<'_, Result<Vec<Option<Prior>>, SinkError>>;
}

/// An opened sink, with its resume journal if it has one.
pub struct Opened {
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// Its journal: keys it holds are not fetched again.
    pub journal: Option<Box<dyn Journal>>,
}

/// What went wrong with a sink, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// It could not be opened or begun.
    Open,
    /// The target exists but is not a fanout store.
    NotAStore,
    /// A write or read failed (disk full, file removed, database gone).
    Io,
    /// The reader of a stream went away (`fanout fetch --jsonl - | head`).
    BrokenPipe,
    /// The sink stopped taking outcomes (its thread ended, its receiver was dropped).
    Closed,
}

/// A sink that cannot be opened or written: the target, a kind, and what happened.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store {target}: {message}")]
pub struct SinkError {
    target: String,
    kind: SinkErrorKind,
    message: String,
}

impl SinkError {
    /// A new error for `target`.
    pub fn new(target: impl Into<String>, kind: SinkErrorKind, message: impl Into<String>) -> Self {
        SinkError {
            target: target.into(),
            kind,
            message: message.into(),
        }
    }

    /// What the sink writes to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// What went wrong, broadly.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }

    /// True when the reader of a stream went away (`fanout fetch --jsonl - | head`).
    pub fn is_broken_pipe(&self) -> bool {
        self.kind == SinkErrorKind::BrokenPipe
    }
}

/// A failure of a blocking backend, with its driver's error; becomes a [`SinkError`] at the
/// thread boundary, so no driver type is public.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// An SQLite failure on the named database.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database path.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A file or stream failure on the named target.
    #[error("store {path}: {source}")]
    Io {
        /// The file path, or `<stdout>`.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot be used by this fanout (a newer version wrote it).
    #[error("store {path}: {reason}")]
    Refused {
        /// The database path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The database exists but is not a fanout store.
    #[error("store {path}: not a fanout store ({reason})")]
    Foreign {
        /// The database path.
        path: String,
        /// What did not match.
        reason: String,
    },
}

impl StoreError {
    /// The public form, with `kind` unless the error says better.
    pub(crate) fn into_sink_error(self, kind: SinkErrorKind) -> SinkError {
        match self {
            StoreError::Sqlite { path, source } => SinkError::new(path, kind, source.to_string()),
            StoreError::Io { path, source } => {
                let kind = if source.kind() == std::io::ErrorKind::BrokenPipe {
                    SinkErrorKind::BrokenPipe
                } else {
                    kind
                };
                SinkError::new(path, kind, source.to_string())
            }
            StoreError::Refused { path, reason } => {
                SinkError::new(path, SinkErrorKind::Open, reason)
            }
            StoreError::Foreign { path, reason } => SinkError::new(
                path,
                SinkErrorKind::NotAStore,
                format!("not a fanout store ({reason})"),
            ),
        }
    }
}

/// A blocking backend, driven from its own thread by [`threaded`].
pub(crate) trait Store: Send + 'static {
    /// The lowest run id not used yet.
    fn next_run_id(&self) -> i64 {
        1
    }
    /// Called once before any outcome.
    fn begin_run(&mut self, run: &RunInfo) -> Result<(), StoreError>;
    /// Writes a batch durably.
    fn write(&mut self, batch: &[Outcome]) -> Result<(), StoreError>;
    /// Called after the last batch with the run's totals.
    fn end_run(&mut self, summary: &Summary) -> Result<(), StoreError>;
    /// Called when outcomes pause; does nothing by default.
    fn idle(&mut self) {}
    /// Called when the run was begun and is abandoned without `end_run` (its future dropped).
    fn abandon(&mut self) {}
}

/// A blocking journal, read on tokio's blocking threads.
pub(crate) trait BlockingJournal: Send + 'static {
    /// See [`Journal::others_may_have_recorded`].
    fn others_may_have_recorded(&self) -> bool;
    /// See [`Journal::lookup`].
    fn lookup(&mut self, keys: &[String]) -> Result<Vec<Option<Prior>>, StoreError>;
}

/// Opens a sink named on the command line (and its journal), with the default store timeout.
/// Blocking work runs off the async threads.
pub async fn open(config: &StoreConfig) -> Result<Opened, SinkError> {
    open_with_timeout(config, DEFAULT_STORE_TIMEOUT).await
}

/// Like [`open`]; a store that can reconnect (PostgreSQL) keeps trying for `store_timeout`
/// before a write fails.
pub async fn open_with_timeout(
    config: &StoreConfig,
    store_timeout: Duration,
) -> Result<Opened, SinkError> {
    if let StoreConfig::Postgres(url) = config {
        return postgres::open(url, store_timeout).await;
    }
    let config = config.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        Ok(match &config {
            StoreConfig::Sqlite(p) => {
                let db = sqlite::SqliteStore::open(p)?;
                let journal = db.journal()?;
                (
                    Box::new(db) as Box<dyn Store>,
                    Some(Box::new(journal) as Box<dyn BlockingJournal>),
                    p.display().to_string(),
                )
            }
            StoreConfig::Jsonl(p) => (
                Box::new(jsonl::JsonlStore::file(p)?) as Box<dyn Store>,
                None,
                p.display().to_string(),
            ),
            StoreConfig::JsonlStdout => (
                Box::new(jsonl::JsonlStore::stdout()) as Box<dyn Store>,
                None,
                "<stdout>".to_string(),
            ),
            StoreConfig::Postgres(_) => unreachable!("opened above"),
        })
    })
    .await
    .map_err(|e| SinkError::new("?", SinkErrorKind::Open, e.to_string()))?
    .map_err(|e| e.into_sink_error(SinkErrorKind::Open))?;
    let (store, journal, target) = opened;
    let sink = threaded::Threaded::spawn(target.clone(), store)?;
    Ok(Opened {
        sink: Box::new(sink),
        journal: journal.map(|j| Box::new(threaded::OffThread::new(target, j)) as Box<dyn Journal>),
    })
}

/// Opens every sink named, in order.
pub async fn open_all(configs: &[StoreConfig]) -> Result<Vec<Opened>, SinkError> {
    open_all_with_timeout(configs, DEFAULT_STORE_TIMEOUT).await
}

/// Like [`open_all`], with [`open_with_timeout`].
pub async fn open_all_with_timeout(
    configs: &[StoreConfig],
    store_timeout: Duration,
) -> Result<Vec<Opened>, SinkError> {
    let mut opened = Vec::with_capacity(configs.len());
    for c in configs {
        opened.push(open_with_timeout(c, store_timeout).await?);
    }
    Ok(opened)
}

/// Outcomes recorded in a database store (SQLite or PostgreSQL); `Ok(None)` when it holds no
/// outcomes table yet or is not a database.
pub async fn outcome_count(config: &StoreConfig) -> Result<Option<u64>, SinkError> {
    match config {
        StoreConfig::Sqlite(p) => sqlite_outcome_count(p),
        StoreConfig::Postgres(url) => postgres::count_outcomes(url).await,
        _ => Ok(None),
    }
}

/// Outcomes recorded in the SQLite store at `path`; `Ok(None)` when there is no such store yet.
pub fn sqlite_outcome_count(path: &Path) -> Result<Option<u64>, SinkError> {
    sqlite::SqliteStore::count_outcomes(path).map_err(|e| e.into_sink_error(SinkErrorKind::Io))
}
