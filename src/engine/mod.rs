//! The engine: admits requests from a [`Source`] under the concurrency limit, fetches them with the
//! [`Client`], and hands every outcome to the store recorder. Owns admission, shutdown and the
//! deadline; it never writes to a store itself and never prints.
//!
//! Admission takes an owned semaphore permit *before* reading the next input line, so at most
//! `concurrency` fetch tasks exist at any time and nothing is spawned ahead of need. Each task holds
//! its permit until its outcome is in the (bounded) store channel, so a slow store slows admission.

pub mod client;
pub mod resume;

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::client::{BodyMode, Client, ClientConfig, ClientError};
use self::resume::{InProgress, ResumePolicy};
use crate::outcome::{ErrorKind, Outcome};
use crate::request::Request;
use crate::source::{OpenError, Source, SourceConfig, SourceItem};
pub use crate::stats::RunEnd;
use crate::stats::{Stats, Summary};
use crate::store::{self, Recorder, RunInfo, StoreConfig, StoreError};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where requests come from.
    pub source: SourceConfig,
    /// Where outcomes go (none is allowed: outcomes are then only counted).
    pub stores: Vec<StoreConfig>,
    /// HTTP client settings.
    pub client: ClientConfig,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Whole-run limit: when it passes, admission stops and unfinished requests end as `deadline`.
    pub deadline: Option<Duration>,
    /// After shutdown, how long in-flight requests may finish before they are recorded `cancelled`.
    pub grace: Duration,
    /// Which recorded outcomes let a rerun skip a request.
    pub resume: ResumePolicy,
    /// The command line, recorded in the `runs` table.
    pub command: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            source: SourceConfig::default(),
            stores: Vec::new(),
            client: ClientConfig::default(),
            concurrency: 64,
            deadline: None,
            grace: Duration::from_secs(2),
            resume: ResumePolicy::default(),
            command: String::new(),
        }
    }
}

/// A run that could not start, or whose store failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input could not be opened.
    #[error(transparent)]
    Input(#[from] OpenError),
    /// A store could not be opened; nothing was fetched.
    #[error(transparent)]
    StoreOpen(StoreError),
    /// A store failed during the run; what was committed before stays, and a rerun resumes.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Runs the whole job: every request read from the source ends as one recorded outcome.
///
/// `shutdown` is the stop signal (the CLI passes Ctrl-C; tests pass anything): when it resolves,
/// admission stops, in-flight requests get `config.grace` to finish and are then recorded as
/// `cancelled`, the stores are flushed, and the summary says `interrupted`.
pub async fn run(
    config: RunConfig,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, RunError> {
    let source = Source::open(config.source.clone()).await?;
    run_source(source, config, stats, shutdown).await
}

/// Like [`run`], over an already opened source (`config.source` is ignored).
pub async fn run_source(
    source: Source,
    config: RunConfig,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let client = Client::new(config.client.clone())?;
    let info = RunInfo {
        command: config.command.clone(),
        started_at: SystemTime::now(),
        fresh: config.resume.fresh,
    };
    let store_configs = config.stores.clone();
    let (stores, journal) =
        tokio::task::spawn_blocking(move || store::open_all(&store_configs, &info))
            .await
            .expect("store opening panicked")
            .map_err(RunError::StoreOpen)?;
    let failed = CancellationToken::new();
    let capacity = (config.concurrency * 2).clamp(1024, 65536);
    let in_progress = Arc::new(InProgress::default());
    let on_commit = {
        let in_progress = in_progress.clone();
        Box::new(move |batch: &[Outcome]| {
            in_progress.committed(batch.iter().map(|o| o.key.as_str()))
        })
    };
    let recorder = Recorder::spawn(stores, stats.clone(), capacity, failed.clone(), on_commit)
        .map_err(RunError::Thread)?;
    let (items, filter) = resume::spawn(
        source,
        journal,
        in_progress,
        config.resume.clone(),
        stats.clone(),
        config.concurrency.clamp(256, 4096),
    );
    let engine = Engine {
        client,
        stats,
        tx: recorder.sender(),
        limit: Arc::new(Semaphore::new(config.concurrency.max(1))),
        tasks: TaskTracker::new(),
        stop_inflight: CancellationToken::new(),
        stop_kind: Arc::new(OnceLock::new()),
    };
    let end = engine.drive(items, &config, shutdown, failed).await;
    let skipped = engine.stats.skipped.load(Relaxed);
    drop(engine);
    // The filter may be blocked on a silent stdin; it has nothing more to give either way.
    filter.abort();
    let lookup = match filter.await {
        Ok(Err(e)) => Some(e),
        _ => None,
    };
    let end = if lookup.is_some() {
        RunEnd::StoreError
    } else {
        end
    };
    let summary = recorder
        .finish(end, skipped, move || started.elapsed())
        .await?;
    match lookup {
        Some(e) => Err(RunError::Store(e)),
        None => Ok(summary),
    }
}

/// The state of one run's fetching side.
struct Engine {
    client: Client,
    stats: Arc<Stats>,
    /// Bounded channel into the store thread.
    tx: mpsc::Sender<Outcome>,
    /// The global concurrency limit; a permit is owned by each fetch task.
    limit: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Cancelled to abort every in-flight fetch; `stop_kind` says what to record them as.
    stop_inflight: CancellationToken,
    stop_kind: Arc<OnceLock<ErrorKind>>,
}

impl Engine {
    async fn drive(
        &self,
        mut items: mpsc::Receiver<SourceItem>,
        config: &RunConfig,
        shutdown: impl Future<Output = ()>,
        failed: CancellationToken,
    ) -> RunEnd {
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        // Ten years stands in for "no deadline" so that one select! serves both cases.
        let deadline = tokio::time::sleep(
            config
                .deadline
                .unwrap_or(Duration::from_secs(10 * 365 * 86400)),
        );
        tokio::pin!(deadline);

        // Every arm of these selects is cancel-safe (mpsc::Receiver::recv and acquire_owned are).
        let mut end = loop {
            let permit = tokio::select! {
                biased;
                _ = &mut shutdown => break RunEnd::Interrupted,
                _ = &mut deadline => break RunEnd::Deadline,
                _ = failed.cancelled() => break RunEnd::StoreError,
                p = self.limit.clone().acquire_owned() => p.expect("the limit is never closed"),
            };
            let item = tokio::select! {
                biased;
                _ = &mut shutdown => break RunEnd::Interrupted,
                _ = &mut deadline => break RunEnd::Deadline,
                _ = failed.cancelled() => break RunEnd::StoreError,
                item = items.recv() => item,
            };
            match item {
                None => break RunEnd::Completed,
                Some(SourceItem::Invalid(o)) => {
                    drop(permit);
                    if self.tx.send(o).await.is_err() {
                        break RunEnd::StoreError;
                    }
                }
                Some(SourceItem::Request(req)) => self.spawn_fetch(req, permit),
            }
        };
        self.tasks.close();

        if end == RunEnd::Completed {
            tokio::select! {
                _ = self.tasks.wait() => {}
                _ = &mut shutdown => end = RunEnd::Interrupted,
                _ = &mut deadline => end = RunEnd::Deadline,
                _ = failed.cancelled() => end = RunEnd::StoreError,
            }
        }
        match end {
            RunEnd::Completed => {}
            RunEnd::Interrupted => {
                let _ = tokio::time::timeout(config.grace, self.tasks.wait()).await;
                self.cancel_inflight(ErrorKind::Cancelled);
            }
            RunEnd::StoreError => self.cancel_inflight(ErrorKind::Cancelled),
            RunEnd::Deadline => {
                self.cancel_inflight(ErrorKind::Deadline);
                // Requests never admitted are recorded too, so the store accounts for every line.
                tokio::select! {
                    _ = self.record_unstarted(&mut items) => {}
                    _ = &mut shutdown => end = RunEnd::Interrupted,
                }
            }
        }
        self.tasks.wait().await;
        end
    }

    fn spawn_fetch(&self, req: Request, permit: OwnedSemaphorePermit) {
        self.stats.admitted.fetch_add(1, Relaxed);
        let client = self.client.clone();
        let tx = self.tx.clone();
        let stats = self.stats.clone();
        let stop = self.stop_inflight.clone();
        let stop_kind = self.stop_kind.clone();
        self.tasks.spawn(async move {
            let started_at = SystemTime::now();
            let t0 = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    let kind = *stop_kind.get().unwrap_or(&ErrorKind::Cancelled);
                    let mut o = Outcome::failed(
                        req.key.clone(),
                        req.url.to_string(),
                        req.method.to_string(),
                        kind,
                        format!("{kind} while in flight"),
                    );
                    o.attempts = 1;
                    o.started_at = started_at;
                    o.total = t0.elapsed();
                    o
                }
                a = client.fetch(&req) => a.outcome,
            };
            stats.finished.fetch_add(1, Relaxed);
            // Send before releasing the permit: a full store channel holds admission back.
            let _ = tx.send(outcome).await;
            drop(permit);
        });
    }

    fn cancel_inflight(&self, kind: ErrorKind) {
        let _ = self.stop_kind.set(kind);
        self.stop_inflight.cancel();
    }

    async fn record_unstarted(&self, items: &mut mpsc::Receiver<SourceItem>) {
        while let Some(item) = items.recv().await {
            let o = match item {
                SourceItem::Invalid(o) => o,
                SourceItem::Request(r) => Outcome::failed(
                    r.key,
                    r.url.to_string(),
                    r.method.to_string(),
                    ErrorKind::Deadline,
                    "not started: the run's deadline passed",
                ),
            };
            if self.tx.send(o).await.is_err() {
                return;
            }
        }
    }
}
