//! Stores: where outcomes land. One small trait, one file per backend ([`sqlite`], [`jsonl`]), and the
//! recorder that feeds them in batches on a dedicated thread, so blocking writes (SQLite is
//! synchronous) never run on the async workers. Owns store files; never touches the network.

pub mod jsonl;
pub mod schema;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::outcome::Outcome;
use crate::stats::{RunEnd, Stats, Summary};

/// Largest batch written in one transaction. Large on purpose: keys are random, so every row dirties
/// a random page of the key index, and a commit writes each dirty page once; 8× the rows per commit
/// cut the store thread's CPU per row by about half (docs/performance.md).
pub const MAX_BATCH: usize = 8192;
/// How long a stream of outcomes may keep a batch open before it is written anyway.
pub const MAX_LINGER: Duration = Duration::from_millis(200);
/// Stored body bytes that end a batch early, so batches of large bodies stay small in memory.
pub const MAX_BATCH_BODY_BYTES: usize = 8 << 20;
/// A pause in outcomes this long after a write lets the stores tidy up ([`Store::idle`]).
pub const IDLE_AFTER: Duration = Duration::from_millis(20);

/// Which store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// An SQLite database file (created when missing).
    Sqlite(PathBuf),
    /// JSON lines appended to a file.
    Jsonl(PathBuf),
    /// JSON lines on standard output.
    JsonlStdout,
}

/// What a store knows about the run it records.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The command line, for the `runs` table.
    pub command: String,
    /// When the run started.
    pub started_at: SystemTime,
    /// `--fresh`: earlier outcomes are ignored (recorded in `runs.mode`).
    pub fresh: bool,
}

/// What a store holds for a key, as far as resume needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// The run that recorded it.
    pub run_id: i64,
    /// Its status, if it was a response.
    pub status: Option<u16>,
    /// Its error kind's name, if it was not.
    pub error: Option<String>,
}

/// Read access to recorded outcomes by key, for resume. Used from one task, on a blocking thread,
/// through its own connection so it never waits for the writer.
pub trait Journal: Send {
    /// The id of the current run (outcomes it records carry it).
    fn run_id(&self) -> i64;
    /// Whether a key may hold an outcome this run did not record. False only when the store held
    /// no outcome and no other run was marked running when this run began: then keys this run
    /// never admitted need no lookup. (A run started later on the same store is not seen; runs
    /// sharing a store at the same time are not coordinated.)
    fn others_may_have_recorded(&self) -> bool {
        true
    }
    /// For each key, what the store holds for it, if anything.
    fn lookup(&mut self, keys: &[String]) -> Result<Vec<Option<Prior>>, StoreError>;
}

/// A store that cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// True when the reader of a stream went away (`fanout fetch --jsonl - | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// A place outcomes are written to. Called from the recorder thread only.
pub trait Store: Send {
    /// Called once before any outcome, with the run's description.
    fn begin_run(&mut self, run: &RunInfo) -> Result<(), StoreError>;
    /// Writes a batch durably (one transaction, or one flush).
    fn write(&mut self, batch: &[Outcome]) -> Result<(), StoreError>;
    /// Called once after the last batch with the run's totals.
    fn end_run(&mut self, summary: &Summary) -> Result<(), StoreError>;
    /// Called when no outcome has arrived for [`IDLE_AFTER`] since the last write: a chance to do
    /// work that would otherwise wait for the end of the run. Best effort; does nothing by default.
    fn idle(&mut self) {}
}

/// The opened stores, and the journal of the first SQLite store (the one resume reads).
pub type Opened = (Vec<Box<dyn Store>>, Option<Box<dyn Journal>>);

/// Opens every configured store and begins the run in each.
pub fn open_all(configs: &[StoreConfig], run: &RunInfo) -> Result<Opened, StoreError> {
    let mut stores: Vec<Box<dyn Store>> = Vec::with_capacity(configs.len());
    let mut journal: Option<Box<dyn Journal>> = None;
    for c in configs {
        let mut s: Box<dyn Store> = match c {
            StoreConfig::Sqlite(p) => {
                let mut db = sqlite::SqliteStore::open(p)?;
                db.begin_run(run)?;
                if journal.is_none() {
                    journal = Some(Box::new(db.journal()?));
                }
                stores.push(Box::new(db));
                continue;
            }
            StoreConfig::Jsonl(p) => Box::new(jsonl::JsonlStore::file(p)?),
            StoreConfig::JsonlStdout => Box::new(jsonl::JsonlStore::stdout()),
        };
        s.begin_run(run)?;
        stores.push(s);
    }
    Ok((stores, journal))
}

/// Called on the store thread after each batch is committed to every store.
pub type OnCommit = Box<dyn Fn(&[Outcome]) + Send>;

/// What the store thread hands back: its stores, the run's totals, and the first write error.
type RecorderEnd = (Vec<Box<dyn Store>>, Summary, Option<StoreError>);

/// Feeds outcomes from a bounded channel into the stores on its own thread.
pub(crate) struct Recorder {
    tx: mpsc::Sender<Outcome>,
    thread: std::thread::JoinHandle<RecorderEnd>,
}

impl Recorder {
    /// Starts the thread. `failed` is cancelled when a write fails, so the engine stops admitting.
    pub(crate) fn spawn(
        mut stores: Vec<Box<dyn Store>>,
        stats: Arc<Stats>,
        capacity: usize,
        failed: CancellationToken,
        on_commit: OnCommit,
    ) -> std::io::Result<Recorder> {
        let (tx, mut rx) = mpsc::channel::<Outcome>(capacity);
        // Timers for the idle wait; without a runtime (not the CLI's case) there is no idle call.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let thread = std::thread::Builder::new()
            .name("fanout-store".into())
            .spawn(move || {
                let mut summary = Summary::default();
                let mut error = None;
                let mut batch = Vec::with_capacity(MAX_BATCH);
                // Set by a write, cleared by the idle call that follows the next pause.
                let mut written = false;
                loop {
                    let first = match (&runtime, written) {
                        (Some(rt), true) => {
                            // The timer is made inside block_on, where the runtime's clock is.
                            let next = rt.block_on(async {
                                tokio::time::timeout(IDLE_AFTER, rx.recv()).await
                            });
                            match next {
                                Ok(first) => first,
                                Err(_) => {
                                    stores.iter_mut().for_each(|s| s.idle());
                                    written = false;
                                    continue;
                                }
                            }
                        }
                        _ => rx.blocking_recv(),
                    };
                    let Some(first) = first else { break };
                    batch.push(first);
                    fill_batch(&mut rx, &mut batch);
                    if error.is_none() {
                        match stores.iter_mut().try_for_each(|s| s.write(&batch)) {
                            Ok(()) => {
                                written = true;
                                on_commit(&batch);
                                stats.count_recorded(&batch);
                                batch.iter().for_each(|o| summary.record(o));
                            }
                            Err(e) => {
                                // Keep draining so senders never block; nothing more is written.
                                error = Some(e);
                                failed.cancel();
                            }
                        }
                    }
                    batch.clear();
                }
                (stores, summary, error)
            })?;
        Ok(Recorder { tx, thread })
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Outcome> {
        self.tx.clone()
    }

    /// Waits for every sender to be dropped and the last batch written, then ends the run in every
    /// store. Returns the summary, or the first store error.
    pub(crate) async fn finish(
        self,
        end: RunEnd,
        skipped: u64,
        elapsed: impl FnOnce() -> Duration + Send + 'static,
    ) -> Result<Summary, StoreError> {
        let Recorder { tx, thread } = self;
        drop(tx);
        tokio::task::spawn_blocking(move || {
            let (mut stores, mut summary, error) = thread.join().expect("store thread panicked");
            summary.end = if error.is_some() {
                RunEnd::StoreError
            } else {
                end
            };
            summary.elapsed = elapsed();
            summary.skipped = skipped;
            // Record how the run ended even when a write failed; the first error wins.
            let ended: Result<(), StoreError> =
                stores.iter_mut().try_for_each(|s| s.end_run(&summary));
            match error {
                Some(e) => Err(e),
                None => ended.map(|()| summary),
            }
        })
        .await
        .expect("store finishing task panicked")
    }
}

/// Adds whatever is already queued to `batch`. While outcomes keep arriving it waits for more, up to
/// [`MAX_LINGER`], so commits stay large under load; after a lull it returns at once, so no outcome
/// sits unwritten for long.
fn fill_batch(rx: &mut mpsc::Receiver<Outcome>, batch: &mut Vec<Outcome>) {
    let start = Instant::now();
    let mut body_bytes: usize = batch
        .iter()
        .filter_map(|o| o.body.as_ref())
        .map(|b| b.len())
        .sum();
    loop {
        while batch.len() < MAX_BATCH && body_bytes < MAX_BATCH_BODY_BYTES {
            match rx.try_recv() {
                Ok(o) => {
                    body_bytes += o.body.as_ref().map_or(0, |b| b.len());
                    batch.push(o);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if batch.len() >= MAX_BATCH
            || body_bytes >= MAX_BATCH_BODY_BYTES
            || start.elapsed() >= MAX_LINGER
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
        if rx.is_empty() {
            return;
        }
    }
}
