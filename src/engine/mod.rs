//! The engine: admits requests from a [`Source`] under the global and per-host limits, fetches them
//! with the [`Client`], retries what is worth retrying, and hands every outcome to the store
//! recorder. Owns admission, shutdown and the deadline; never writes to a store itself, never prints.
//!
//! Shape: the [resume filter](resume) reads the source and drops keys already recorded; a single
//! dispatcher task owns all admission state (global limit and rate, [per-host state](hosts), jobs
//! waiting for a host or a retry), so none of it is locked. Attempts run on worker tasks, at most
//! one per unit of concurrency, each spawned the first time every limit allows one more attempt
//! and no worker is idle (never ahead of time); the dispatcher hands an idle worker one job at a
//! time, and the worker reports back over a channel whose capacity is the concurrency, so it never
//! blocks. Outcomes go to the store thread over a bounded channel; an attempt keeps its slot until
//! the store accepts its outcome, so a slow store slows admission.

pub mod adaptive;
pub mod client;
pub mod hosts;
pub mod resume;
pub mod retry;
mod worker;

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::adaptive::Signal;
pub use self::client::{BodyMode, Client, ClientConfig, ClientError};
use self::hosts::{Bucket, HostLimits, Hosts};
use self::resume::{InProgress, ResumePolicy};
use self::retry::RetryPolicy;
use self::worker::{Mailbox, WorkerHandle};
use crate::outcome::{ErrorKind, Outcome};
use crate::request::Request;
use crate::sink::{self, Recorder, RunInfo, StoreConfig, StoreError};
use crate::source::{OpenError, Source, SourceConfig, SourceItem};
pub use crate::stats::RunEnd;
use crate::stats::{Stats, Summary};

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
    /// Per-host limits, rate limits and adaptive concurrency.
    pub limits: HostLimits,
    /// Retries and backoff.
    pub retry: RetryPolicy,
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
            limits: HostLimits::default(),
            retry: RetryPolicy::default(),
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
    /// A thread or task of the run could not start or failed unexpectedly.
    #[error("{0}")]
    Thread(#[source] std::io::Error),
}

/// Runs the whole job: every request read from the source ends as one recorded outcome.
///
/// `shutdown` is the stop signal (the CLI passes Ctrl-C; tests pass anything): when it resolves,
/// admission stops, in-flight requests get `config.grace` to finish and are then recorded as
/// `cancelled`, the stores are flushed, and the summary says `interrupted`.
///
/// Must be called within a tokio runtime; the engine's tasks are spawned onto it.
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
    let started = Instant::now();
    // Never fewer idle connections kept than could be busy at once.
    let client = Client::new(ClientConfig {
        max_idle: config.client.max_idle.max(config.concurrency),
        ..config.client.clone()
    })?;
    let info = RunInfo {
        command: config.command.clone(),
        started_at: SystemTime::now(),
        fresh: config.resume.fresh,
    };
    let store_configs = config.stores.clone();
    let (stores, journal) =
        tokio::task::spawn_blocking(move || sink::open_all(&store_configs, &info))
            .await
            .expect("store opening panicked")
            .map_err(RunError::StoreOpen)?;
    let failed = CancellationToken::new();
    // Stored bodies can be large: keep fewer outcomes queued for the store (memory is then bounded
    // by about (concurrency + queue + batch) × --max-body in the worst case).
    let capacity = if config.client.body == BodyMode::Store {
        config.concurrency.clamp(16, 256)
    } else {
        (config.concurrency * 2).clamp(1024, 65536)
    };
    let in_progress = Arc::new(InProgress::default());
    let on_commit = {
        let in_progress = in_progress.clone();
        Box::new(move |batch: &[Outcome]| {
            in_progress.committed(batch.iter().map(|o| o.key.as_str()))
        })
    };
    let recorder = Recorder::spawn(stores, stats.clone(), capacity, failed.clone(), on_commit)
        .map_err(|e| {
            RunError::Thread(std::io::Error::other(format!(
                "cannot start the store thread: {e}"
            )))
        })?;
    let (items, filter) = resume::spawn(
        source,
        journal,
        in_progress,
        config.resume.clone(),
        stats.clone(),
        config.concurrency.clamp(256, 4096),
    );
    let concurrency = config.concurrency.max(1);
    let (done_tx, done_rx) = mpsc::channel(concurrency);
    let shared = Arc::new(Shared {
        client,
        retry: config.retry.clone(),
        out: recorder.sender(),
        done: done_tx,
        stop_kind: OnceLock::new(),
    });
    let now = Instant::now();
    let mut dispatcher = Dispatcher {
        shared,
        stats: stats.clone(),
        done_rx,
        hosts: Hosts::new(config.limits.clone(), concurrency),
        global: config
            .limits
            .rate
            .map(|r| Bucket::new(r, config.limits.burst_for(r), now)),
        in_flight: 0,
        workers: Vec::new(),
        idle: Vec::new(),
        concurrency,
        max_parked: (concurrency * 8).max(1024),
        stopping: None,
    };
    // The dispatcher runs as a task of its own: attempt tasks it spawns then start on the same
    // worker's queue, where a caller's `block_on` thread would push each through the shared queue
    // and wake another worker.
    // Aborted if the caller drops this future, as the dispatcher itself was before.
    let task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let end = dispatcher.drive(items, &config, shutdown, failed).await;
        (dispatcher, end)
    }));
    let (dispatcher, end) = match task.await {
        Ok(done) => done,
        Err(e) => {
            // A bug: keep what was recorded (the run is marked interrupted, so a rerun resumes).
            filter.abort();
            let _ = recorder
                .finish(
                    RunEnd::Interrupted,
                    stats.skipped.load(Relaxed),
                    move || started.elapsed(),
                )
                .await;
            return Err(RunError::Thread(std::io::Error::other(format!(
                "internal error: the dispatcher failed: {e}"
            ))));
        }
    };
    let skipped = stats.skipped.load(Relaxed);
    let retries = stats.retries.load(Relaxed);
    let hosts = dispatcher.hosts.report();
    drop(dispatcher.shared);
    // The filter may be blocked on a silent stdin; it has nothing more to give either way.
    filter.abort();
    let lookup = match filter.await {
        Ok(Err(e)) => Some(RunError::Store(e)),
        Err(e) if e.is_panic() => Some(RunError::Thread(std::io::Error::other(
            "internal error: the resume filter panicked",
        ))),
        _ => None,
    };
    let end = if lookup.is_some() {
        RunEnd::StoreError
    } else {
        end
    };
    let mut summary = recorder
        .finish(end, skipped, move || started.elapsed())
        .await?;
    summary.retries = retries;
    summary.hosts = hosts;
    match lookup {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// A request on its way through the engine, with what its attempts so far have left.
pub(crate) struct Job {
    /// Shared with the attempt task, so an attempt that panics can still be recorded.
    pub(crate) req: Arc<Request>,
    /// `host:port`, the key of the host's state.
    pub(crate) host: Arc<str>,
    attempts: u32,
    /// Wall-clock and monotonic start of the first attempt.
    first: Option<(SystemTime, Instant)>,
    /// The outcome of the last failed attempt, while the job waits to be retried (boxed: a job
    /// moves through queues and the mailbox, and is rarely retried).
    last: Option<Box<Outcome>>,
}

impl Job {
    fn new(req: Arc<Request>) -> Job {
        Job {
            host: host_key(&req.url),
            req,
            attempts: 0,
            first: None,
            last: None,
        }
    }

    /// The outcome of a job stopped by shutdown or the deadline before it could finish.
    fn stopped(&self, kind: ErrorKind, what: &str) -> Outcome {
        let detail = match &self.last {
            Some(last) => format!(
                "{kind} while {what}; last attempt: {}",
                match (last.status, &last.error_detail) {
                    (Some(s), _) => format!("HTTP {s}"),
                    (None, Some(d)) => d.clone(),
                    (None, None) => "no response".into(),
                }
            ),
            None => format!("{kind} while {what}"),
        };
        let mut o = Outcome::failed(
            self.req.key.clone(),
            self.req.url.as_str().to_owned(),
            self.req.method.as_str().to_owned(),
            kind,
            detail,
        );
        o.attempts = self.attempts;
        if let Some((sys, mono)) = self.first {
            o.started_at = sys;
            o.total = mono.elapsed();
        }
        o
    }
}

/// The key of a URL's host state: `host:port`.
fn host_key(url: &url::Url) -> Arc<str> {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(0);
    // Built by hand: `format!` was a measurable share of the dispatcher's time per request.
    let mut key = String::with_capacity(host.len() + 6);
    key.push_str(host);
    key.push(':');
    let mut digits = [0u8; 5];
    let mut n = port;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    key.extend(digits[i..].iter().map(|&d| d as char));
    key.into()
}

impl Done {
    /// A report that changes nothing but the worker's and the host's counts (an attempt stopped,
    /// or one that panicked).
    fn neutral(worker: usize, host: Arc<str>) -> Done {
        Done {
            worker,
            host,
            signal: Signal::Neutral,
            pause: None,
            retry: None,
        }
    }
}

/// What a finished attempt reports to the dispatcher.
struct Done {
    /// The worker that ran it, idle again.
    worker: usize,
    host: Arc<str>,
    signal: Signal,
    /// A `Retry-After` pause, for the host that sent it (after redirects, not always `host`).
    pause: Option<(Arc<str>, Duration)>,
    /// The job and its backoff, when it is to be tried again. Boxed: a job is ~300 bytes, and
    /// every `Done` is copied into and out of the channel.
    retry: Option<Box<(Job, Duration)>>,
}

/// Messages taken from one channel per turn of the dispatcher's loop at most.
const DRAIN: usize = 64;

/// The store thread has stopped taking outcomes.
struct StoreGone;

/// What every attempt task shares.
struct Shared {
    client: Client,
    retry: RetryPolicy,
    /// Bounded channel into the store thread.
    out: mpsc::Sender<Outcome>,
    /// Back to the dispatcher; capacity ≥ concurrency, and each job sends exactly once.
    done: mpsc::Sender<Done>,
    /// What attempts stopped in flight are recorded as (set before the workers' stop flags).
    stop_kind: OnceLock<ErrorKind>,
}

/// Admission: owns the global limit and rate, every host's state, and the jobs waiting. A single
/// task, so none of this state is shared or locked; workers talk to it through `Done`.
struct Dispatcher {
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    done_rx: mpsc::Receiver<Done>,
    hosts: Hosts,
    global: Option<Bucket>,
    in_flight: usize,
    /// Every worker spawned so far (never more than `concurrency`), by index.
    workers: Vec<WorkerHandle>,
    /// Indices of workers with no job; the most recently idle is used first.
    idle: Vec<usize>,
    concurrency: usize,
    /// Jobs that may wait for their host before input reading pauses.
    max_parked: usize,
    /// Set once the run is stopping: what unfinished jobs are recorded as.
    stopping: Option<ErrorKind>,
}

impl Dispatcher {
    async fn drive(
        &mut self,
        mut items: mpsc::Receiver<SourceItem>,
        config: &RunConfig,
        shutdown: impl Future<Output = ()>,
        failed: CancellationToken,
    ) -> RunEnd {
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        // Ten years stands in for "no deadline" so that one select! serves both cases.
        let far = Duration::from_secs(10 * 365 * 86400);
        let deadline = tokio::time::sleep(config.deadline.unwrap_or(far));
        tokio::pin!(deadline);
        let timer = tokio::time::sleep(far);
        tokio::pin!(timer);
        let mut timer_at: Option<Instant> = None;
        let mut input_open = true;
        let mut closing = false;
        // Made once: a new one each turn would register with the token's waiter list each time.
        let failed = failed.cancelled();
        tokio::pin!(failed);

        // Every arm is cancel-safe (mpsc recv, sleeps, a fused future).
        let mut end = loop {
            let now = Instant::now();
            self.hosts.fire_timers(now);
            self.start_ready(now);
            let nothing_left = !input_open && self.hosts.parked() == 0;
            if nothing_left && self.in_flight == 0 {
                break RunEnd::Completed;
            }
            if nothing_left != closing {
                // Nothing more to send: close each connection as its last response ends, while
                // the others are still awaited. Until a retry is queued: then keep them again.
                self.shared.client.keep_connections(!nothing_left);
                closing = nothing_left;
            }
            let wake = self.next_wake();
            if wake != timer_at {
                timer_at = wake;
                timer
                    .as_mut()
                    .reset(wake.unwrap_or_else(|| now + far).into());
            }
            let can_read = input_open && self.hosts.parked() < self.max_parked;
            tokio::select! {
                biased;
                _ = &mut shutdown => break RunEnd::Interrupted,
                _ = &mut deadline => break RunEnd::Deadline,
                _ = &mut failed => break RunEnd::StoreError,
                Some(done) = self.done_rx.recv() => {
                    self.on_done(done).await;
                    // Whatever else has finished meanwhile, without another turn of the loop.
                    for _ in 0..DRAIN {
                        match self.done_rx.try_recv() {
                            Ok(done) => self.on_done(done).await,
                            Err(_) => break,
                        }
                    }
                }
                item = items.recv(), if can_read => match self.take_items(item, &mut items).await {
                    Ok(open) => input_open = open,
                    Err(StoreGone) => break RunEnd::StoreError,
                },
                _ = &mut timer, if timer_at.is_some() => timer_at = None,
            }
        };

        if end == RunEnd::Interrupted {
            // Grace: in-flight attempts may finish; nothing new starts, retries are not made.
            self.stopping = Some(ErrorKind::Cancelled);
            let grace = tokio::time::sleep(config.grace);
            tokio::pin!(grace);
            while self.in_flight > 0 {
                tokio::select! {
                    _ = &mut grace => break,
                    Some(done) = self.done_rx.recv() => self.on_done(done).await,
                }
            }
        }
        let kind = match end {
            RunEnd::Deadline => ErrorKind::Deadline,
            _ => ErrorKind::Cancelled,
        };
        self.stopping = Some(kind);
        let _ = self.shared.stop_kind.set(kind);
        for w in &self.workers {
            w.mailbox.stop.stop();
        }
        if end != RunEnd::StoreError {
            for job in self.hosts.drain() {
                // Jobs never attempted are left for a rerun, except at the deadline, which
                // accounts for every line read.
                if job.attempts > 0 || end == RunEnd::Deadline {
                    let what = if job.attempts > 0 {
                        "waiting to retry"
                    } else {
                        "waiting for its host"
                    };
                    let _ = self.shared.out.send(job.stopped(kind, what)).await;
                }
            }
        }
        if end == RunEnd::Deadline {
            tokio::select! {
                _ = self.record_unstarted(&mut items) => {}
                _ = &mut shutdown => end = RunEnd::Interrupted,
            }
        }
        drop(items);
        while self.in_flight > 0 {
            match self.done_rx.recv().await {
                Some(done) => self.on_done(done).await,
                None => break,
            }
        }
        // Idle workers end when their channel closes, dropping their handle on the store channel.
        self.workers.clear();
        self.idle.clear();
        end
    }

    /// Takes `first` from the input, then lines already read (up to [`DRAIN`], while jobs may
    /// wait): requests wait for their host, invalid lines go to the store. Whether the input is
    /// still open.
    async fn take_items(
        &mut self,
        first: Option<SourceItem>,
        items: &mut mpsc::Receiver<SourceItem>,
    ) -> Result<bool, StoreGone> {
        let mut next = first;
        for taken in 1.. {
            match next {
                None => return Ok(false),
                Some(SourceItem::Invalid(o)) => {
                    self.shared.out.send(*o).await.map_err(|_| StoreGone)?
                }
                Some(SourceItem::Request(r)) => self.hosts.push(Job::new(r), Instant::now()),
            }
            if taken == DRAIN || self.hosts.parked() >= self.max_parked {
                break;
            }
            next = match items.try_recv() {
                Ok(item) => Some(item),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => break,
            };
        }
        Ok(true)
    }

    /// The next instant something waiting may become startable.
    fn next_wake(&self) -> Option<Instant> {
        let global = self
            .global
            .as_ref()
            .filter(|_| self.hosts.has_ready() && self.in_flight < self.concurrency)
            .map(Bucket::ready_at);
        [self.hosts.next_wake(), global].into_iter().flatten().min()
    }

    /// Starts jobs while the global limit and rate allow and some host can take one.
    fn start_ready(&mut self, now: Instant) {
        while self.in_flight < self.concurrency && self.hosts.has_ready() {
            if self.global.as_ref().is_some_and(|b| b.ready_at() > now) {
                return;
            }
            let Some(job) = self.hosts.next_startable(now) else {
                return;
            };
            if let Some(b) = self.global.as_mut() {
                b.take(now);
            }
            self.in_flight += 1;
            self.stats.admitted.fetch_add(1, Relaxed);
            self.hand_out(job);
        }
    }

    /// Gives `job` to an idle worker, spawning one if none is idle (there are then fewer workers
    /// than jobs in flight allow). An idle worker's mailbox is empty.
    fn hand_out(&mut self, mut job: Job) {
        loop {
            let w = match self.idle.pop() {
                Some(w) => w,
                None => self.spawn_worker(),
            };
            match self.workers[w].mailbox.put(job) {
                None => return,
                // Not idle after all (a bug): leave it out of the idle list and try another.
                Some(j) => job = j,
            }
        }
    }

    /// Starts a worker task; its index.
    fn spawn_worker(&mut self) -> usize {
        let mailbox = Arc::new(Mailbox::default());
        let w = self.workers.len();
        tokio::spawn(worker::worker(self.shared.clone(), w, mailbox.clone()));
        self.workers.push(WorkerHandle { mailbox });
        w
    }

    async fn on_done(&mut self, done: Done) {
        self.in_flight -= 1;
        self.idle.push(done.worker);
        self.stats.finished.fetch_add(1, Relaxed);
        let now = Instant::now();
        // The retry is queued first, so the host does not look idle (and get forgotten) meanwhile.
        let mut stopped = None;
        if let Some(retry) = done.retry {
            let (job, delay) = *retry;
            match self.stopping {
                Some(kind) => stopped = Some(job.stopped(kind, "waiting to retry")),
                None => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    self.hosts.push_delayed(job, now + delay);
                }
            }
        }
        if let Some((host, pause)) = done.pause {
            self.hosts.pause(&host, pause, now);
        }
        self.hosts.completed(&done.host, done.signal, now);
        if let Some(o) = stopped {
            let _ = self.shared.out.send(o).await;
        }
    }

    /// Records as `deadline` the requests already read but not started. Lines not read yet have
    /// no outcome and are fetched by a rerun: waiting for them could take as long as the input
    /// (or forever, on a pipe that stays open).
    async fn record_unstarted(&self, items: &mut mpsc::Receiver<SourceItem>) {
        while let Ok(item) = items.try_recv() {
            let o = match item {
                SourceItem::Invalid(o) => *o,
                SourceItem::Request(r) => Outcome::failed(
                    r.key.clone(),
                    r.url.as_str().to_owned(),
                    r.method.as_str().to_owned(),
                    ErrorKind::Deadline,
                    "not started: the run's deadline passed",
                ),
            };
            if self.shared.out.send(o).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_key;

    #[test]
    fn host_key_is_host_and_port_with_the_default_filled_in() {
        let k = |s: &str| host_key(&url::Url::parse(s).unwrap()).to_string();
        assert_eq!(k("http://a.test/x"), "a.test:80");
        assert_eq!(k("https://a.test/"), "a.test:443");
        assert_eq!(k("http://a.test:8080/"), "a.test:8080");
        assert_eq!(k("http://127.0.0.1:0/"), "127.0.0.1:0");
        assert_eq!(k("http://[::1]:65535/"), "[::1]:65535");
    }
}
