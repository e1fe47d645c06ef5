//! The pipeline: the one place that wires a run together, source → resume filter (the sinks'
//! journals) → [engine](crate::engine) → recorder → sinks, decides why a run stops (interrupt,
//! deadline, a failed sink: one [`StopReason`]), and assembles the [`Summary`]. Knows every
//! part; owns none of their internals. Dropping a run's future aborts every task it spawned, and
//! its sinks close the run as interrupted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use futures_util::Stream;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use crate::config::{ConfigError, RunConfig, RunConfigBuilder};
use crate::engine::client::ClientError;
use crate::engine::resume::{self, InProgress};
use crate::engine::{Engine, RunEnd, StopReason};
use crate::outcome::Outcome;
use crate::request::Request;
use crate::sink::recorder::{self, RecorderEnd};
use crate::sink::{self, Opened, RunInfo, Sink, SinkError};
use crate::source::{OpenError, Source};
use crate::stats::{Progress, Stats, Summary};

/// A run that could not start, or whose store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// An input could not be opened.
    #[error(transparent)]
    Input(#[from] OpenError),
    /// A store could not be opened; nothing was fetched.
    #[error(transparent)]
    SinkOpen(SinkError),
    /// A store failed during the run; what was committed before stays, and a rerun resumes.
    #[error(transparent)]
    Sink(SinkError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A task of the run failed unexpectedly (a bug); what was recorded stays.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs the whole job: opens `config.source` and `config.stores`, and every request read ends as
/// one recorded outcome.
///
/// `shutdown` is the stop signal (the CLI passes Ctrl-C; tests pass anything): when it resolves,
/// admission stops, in-flight requests get `config.grace` to finish and are then recorded as
/// `cancelled`, the stores are flushed, and the summary says `interrupted`.
///
/// Must be called within a tokio runtime; the run's tasks are spawned onto it.
pub async fn run(
    config: RunConfig,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Summary, RunError> {
    let source = Source::open(config.source.clone()).await?;
    run_source(source, config, stats, shutdown).await
}

/// Like [`run`], over an already opened source (`config.source` is ignored).
pub async fn run_source(
    source: Source,
    config: RunConfig,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Summary, RunError> {
    let sinks = sink::open_all_with_timeout(&config.stores, config.store_timeout)
        .await
        .map_err(RunError::SinkOpen)?;
    run_with_sinks(source, config, sinks, stats, shutdown).await
}

/// Like [`run_source`], into sinks already opened (`config.stores` is ignored): any [`Sink`],
/// with its journal if it has one.
pub async fn run_with_sinks(
    mut source: Source,
    config: RunConfig,
    sinks: Vec<Opened>,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    source.count_into(&stats);
    let engine_config = config.engine();
    let sizes = engine_config.sizes();
    let engine = Engine::new(engine_config)?;
    let mut journals = Vec::new();
    let mut sinks: Vec<Box<dyn Sink>> = sinks
        .into_iter()
        .map(|o| {
            journals.extend(o.journal);
            o.sink
        })
        .collect();
    let info = RunInfo {
        id: sinks.iter().map(|s| s.next_run_id()).max().unwrap_or(1),
        command: config.command.clone(),
        started_at: SystemTime::now(),
        fresh: config.resume.fresh,
    };
    let begun = join_all(sinks.iter_mut().map(|s| s.begin_run(&info))).await;
    if let Some(e) = begun.into_iter().find_map(Result::err) {
        close_all(sinks).await;
        return Err(RunError::SinkOpen(e));
    }

    let failed = CancellationToken::new();
    let in_progress = Arc::new(InProgress::default());
    let (items_tx, mut items_rx) = mpsc::channel(sizes.read_ahead);
    let (invalid_tx, invalid_rx) = mpsc::channel(64);
    let filter = AbortOnDropHandle::new(resume::spawn(
        source,
        journals,
        info.id,
        in_progress.clone(),
        config.resume.clone(),
        stats.clone(),
        resume::Outputs {
            items: items_tx,
            invalid: invalid_tx,
        },
    ));
    let items = futures_util::stream::poll_fn(move |cx| items_rx.poll_recv(cx));
    let stop = stop_reason(shutdown, config.deadline, failed.clone());
    let (events, running) = engine.run(stats.clone(), items, stop);
    let on_commit = Box::new(move |batch: &[Outcome]| {
        in_progress.committed(batch.iter().map(|o| o.key.as_str()))
    });
    let recorder = AbortOnDropHandle::new(tokio::spawn(recorder::record(
        events,
        invalid_rx,
        sinks,
        stats.clone(),
        failed,
        on_commit,
    )));

    let engine_end = running.await;
    // The filter may be blocked on a silent stdin; it has nothing more to give either way.
    filter.abort();
    let lookup = match filter.await {
        Ok(Err(e)) => Some(RunError::Sink(e)),
        Err(e) if e.is_panic() => Some(RunError::Internal("the resume filter panicked".into())),
        _ => None,
    };
    let RecorderEnd {
        sinks,
        mut summary,
        error,
    } = match recorder.await {
        Ok(end) => end,
        Err(e) => return Err(RunError::Internal(format!("the recorder failed: {e}"))),
    };
    let (end, hosts, internal) = match engine_end {
        Ok(e) => (e.end, e.hosts, None),
        // A bug: keep what was recorded (the run is marked interrupted, so a rerun resumes).
        Err(e) => (
            RunEnd::Interrupted,
            Vec::new(),
            Some(RunError::Internal(e.to_string())),
        ),
    };
    summary.end = if error.is_some() || lookup.is_some() {
        RunEnd::StoreError
    } else {
        end
    };
    summary.elapsed = started.elapsed();
    summary.skipped = stats.skipped.load(Relaxed);
    summary.retries = stats.retries.load(Relaxed);
    summary.hosts = hosts;
    summary.run_id = info.id;
    let mut sinks = sinks;
    // Record how the run ended even when a write failed; the first error wins.
    let ended = join_all(sinks.iter_mut().map(|s| s.end_run(&summary))).await;
    close_all(sinks).await;
    if let Some(e) = error {
        return Err(RunError::Sink(e));
    }
    if let Some(e) = ended.into_iter().find_map(Result::err) {
        return Err(RunError::Sink(e));
    }
    match lookup.or(internal) {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

async fn close_all(sinks: Vec<Box<dyn Sink>>) {
    join_all(sinks.into_iter().map(|s| s.close())).await;
}

/// The one reason a run stops early: the shutdown signal, the deadline, or a failed sink,
/// whichever comes first.
async fn stop_reason(
    shutdown: impl Future<Output = ()>,
    deadline: Option<Duration>,
    failed: CancellationToken,
) -> StopReason {
    let deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = shutdown => StopReason::Interrupted,
        _ = deadline => StopReason::Deadline,
        _ = failed.cancelled() => StopReason::SinkFailed,
    }
}

/// Fetches `requests` under `config` and yields their outcomes as they are recorded, also into
/// `config.stores` if any (resume then skips what they hold). A slow reader slows the run.
///
/// The returned [`Fetch`] is a `Stream` of outcomes; read it to the end, then ask for the
/// [`Fetch::summary`]. Dropping it stops the run at once. Must be called within a tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), fanout::RunError> {
/// use futures_util::StreamExt;
/// let requests = ["http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b"]
///     .map(|u| fanout::Request::get(u).unwrap());
/// let mut fetch = fanout::fetch(fanout::RunConfig::default(), futures_util::stream::iter(requests));
/// while let Some(outcome) = fetch.next().await {
///     println!("{} {:?} {:?}", outcome.url, outcome.status, outcome.error);
/// }
/// let summary = fetch.summary().await?;
/// assert_eq!(summary.total, 2);
/// # Ok(()) }
/// ```
pub fn fetch<S>(config: RunConfig, requests: S) -> Fetch
where
    S: Stream<Item = Request> + Send + 'static,
{
    let stats = Stats::new();
    let stop = CancellationToken::new();
    let capacity = config.engine().sizes().concurrency.max(64);
    let (channel, rx) = sink::channel::channel(capacity);
    let task = {
        let stats = stats.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sinks = sink::open_all_with_timeout(&config.stores, config.store_timeout)
                .await
                .map_err(RunError::SinkOpen)?;
            sinks.push(Opened {
                sink: Box::new(channel),
                journal: None,
            });
            let source = Source::from_stream(requests);
            run_with_sinks(source, config, sinks, stats, stop.cancelled_owned()).await
        })
    };
    Fetch {
        outcomes: rx,
        stats,
        stop,
        task: AbortOnDropHandle::new(task),
    }
}

/// A run started by [`fetch`]: a `Stream` of its outcomes, live progress, and its summary.
pub struct Fetch {
    outcomes: mpsc::Receiver<Outcome>,
    stats: Arc<Stats>,
    stop: CancellationToken,
    task: AbortOnDropHandle<Result<Summary, RunError>>,
}

impl Fetch {
    /// The run's live counters.
    pub fn progress(&self) -> Progress {
        self.stats.progress()
    }

    /// The shared counters, for a task that reports progress while the run goes.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Stops the run as Ctrl-C does: nothing new starts, requests in flight get the grace period,
    /// and those still unfinished then come out as `cancelled` outcomes.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A handle that stops the run from elsewhere (another task, a signal handler).
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits for the end of the run (outcomes not read yet are read and dropped) and returns
    /// its summary.
    pub async fn summary(mut self) -> Result<Summary, RunError> {
        while self.outcomes.recv().await.is_some() {}
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(RunError::Internal(format!("the run failed: {e}"))),
        }
    }
}

impl Stream for Fetch {
    type Item = Outcome;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outcome>> {
        self.outcomes.poll_recv(cx)
    }
}
