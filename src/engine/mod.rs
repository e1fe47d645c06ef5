//! The engine core: admits a stream of requests under the global and per-host limits, fetches them
//! with the [`Client`], retries what is worth retrying, and answers with a stream of [`Event`]s:
//! each request ends as one outcome, or is released (stopped before it could finish). Owns
//! admission, retries and stopping; knows nothing of files, stores, resume or terminals (those are
//! the [pipeline](crate::pipeline)'s), and never prints.
//!
//! Contract: [`Engine::run`] takes a `Stream` of [`Item`]s, each a request with a caller's ticket
//! that rides along untouched (`()` for file runs, a job lease for a work queue), and a stop
//! future that says why to stop. It yields [`Event::Outcome`] or [`Event::Released`] once per
//! item taken, over a bounded channel: a consumer that does not keep up slows admission.
//!
//! Shape: a single dispatcher task owns all admission state (global limit and rate,
//! [per-host state](hosts), jobs waiting for a host, a retry or, with `--robots`, their origin's
//! robots.txt: `robots.rs`, whose fetches run as tasks of their own, one per origin, each
//! reporting once over a channel), so none of it is locked. Attempts run on worker tasks, at most
//! one per unit of concurrency (two, over shards), each spawned the first time every limit allows
//! one more attempt and no worker is idle on the job's shard (never ahead of time); the
//! dispatcher hands an idle worker one job at a time, and the worker reports back over a channel
//! whose capacity is the concurrency, so it never blocks. An attempt keeps its slot until the
//! event channel accepts its outcome. Dropping the run's handle aborts the dispatcher, whose task
//! set aborts the workers.
//!
//! Shards ([`EngineConfig::shards`], [`Shards`]): the workers may run on other runtimes, one
//! thread each, every shard with its own connection pool, so a connection and the attempts on it
//! stay on one thread. Each host keeps to its home shard ([`hosts`]), unless it closes its
//! connection after every response, or is plain http keeping HTTP/1.1 connections alive with
//! more than a few requests in flight: then its requests go to the shards with the fewest jobs
//! in flight. (An HTTP/2 origin stays home: one connection carries all its requests.) The
//! dispatcher wakes a shard's workers once per turn through the shard's feeder task, not once
//! per job.
//!
//! Clock: admission, limits, rates, pauses, retries and the adaptive limit all read one clock,
//! tokio's [`Instant`], so a test can run the engine on tokio's paused clock. It costs nothing:
//! outside tokio's `test-util` feature, `tokio::time::Instant::now()` is std's. (The HTTP client
//! times its own attempts, ttfb and per-attempt total, on std's clock.)

pub(crate) mod adaptive;
pub mod client;
pub mod hosts;
pub mod resume;
pub mod retry;
mod robots;
mod shards;
mod soon;
mod woken;
mod worker;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::adaptive::Signal;
pub use self::client::{Attempt, BodyMode, Client, ClientConfig, ClientError};
use self::client::{Reuse, RobotsFetch};
use self::hosts::{Bucket, HostLimits, HostReport, Hosts};
use self::retry::RetryPolicy;
use self::robots::{Admit, RobotsGate};
pub use self::shards::Shards;
use self::worker::{Feed, Mailbox, WorkerHandle};
use crate::outcome::{ErrorKind, Outcome};
use crate::request::Request;
pub use crate::stats::RunEnd;
use crate::stats::Stats;

/// What the engine needs: the HTTP client's settings, the limits, retries and the grace period.
/// Sizes derived from these (idle connections, queue capacities) are computed in one place,
/// [`EngineConfig::sizes`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// HTTP client settings.
    pub client: ClientConfig,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// After an interrupt, how long in-flight requests may finish before they are released.
    pub grace: Duration,
    /// Per-host limits, rate limits and adaptive concurrency.
    pub limits: HostLimits,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// The process's open-file limit, if known: idle connections are kept within what it leaves.
    pub open_file_limit: Option<u64>,
    /// Obey each origin's robots.txt (`--robots`): fetched once before its other requests;
    /// disallowed requests end as [`ErrorKind::Robots`], never fetched.
    pub robots: bool,
    /// A retry due further off than this (a long `Retry-After`) is not waited for: the request
    /// is handed back as [`Event::Deferred`] (a work queue returns the job with a not-before
    /// instead of holding its lease). `None`: every retry is waited for.
    pub hand_back_after: Option<Duration>,
    /// The runtimes the attempts run on, one *shard* each (see [`Shards`]): the workers are
    /// spread over them, and each shard has its own connection pool, so a connection and the
    /// attempts on it stay on one thread. They must run until the run is over (a shard whose
    /// runtime is gone never reports its jobs). Empty (the default): everything runs on the
    /// caller's runtime, with one pool.
    pub shards: Vec<tokio::runtime::Handle>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            client: ClientConfig::default(),
            concurrency: 64,
            grace: Duration::from_secs(2),
            limits: HostLimits::default(),
            retry: RetryPolicy::default(),
            open_file_limit: None,
            robots: false,
            hand_back_after: None,
            shards: Vec::new(),
        }
    }
}

/// Descriptors a run needs besides its connections (stores, inputs, standard streams).
const OTHER_FILES: u64 = 64;

/// Idle connections worth keeping at concurrency `c` when the open-file limit is not known:
/// enough for a list of many hosts to keep one open to each of a few hundred (with 64, a list over
/// 300 hosts opened a connection for 99% of its requests).
fn idle_wanted(c: u64) -> u64 {
    (2 * c).max(256)
}

/// Idle connections kept at most when the open-file limit is known and allows them: one to each of
/// this many hosts. With 512, a list over 1,000 origins reconnected for most requests
/// (docs/performance.md, issue 17). An idle HTTP/1.1 connection costs a descriptor and about
/// 21 KB of memory (peak RSS of 8,000 origins × 2 URLs against 16,000 URLs to one origin, at
/// `-c 256`: 205 MB against 38 MB), so this many cost up to ~170 MB, and only on a list over that
/// many hosts: one host never has more idle than it had in use at once (at most `-c`).
const MANY_HOSTS_IDLE: u64 = 8192;

/// Open files a run at concurrency `c` would like: its connections in use and idle, and the rest.
/// A program raises its limit to this before starting the run (`fanout fetch` does).
pub fn open_files_wanted(c: usize) -> u64 {
    let c = c as u64;
    c + (2 * c).max(MANY_HOSTS_IDLE) + OTHER_FILES
}

/// Queue and pool sizes that follow from an [`EngineConfig`]; computed once, here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Requests in flight at most (at least 1).
    pub concurrency: usize,
    /// Idle connections kept: never fewer than could be busy at once.
    pub max_idle: usize,
    /// Events (outcomes) queued for the consumer. Stored bodies can be large: fewer are queued
    /// then (memory is bounded by about (concurrency + queue + batch) × `max_body`).
    pub events: usize,
    /// Requests that may wait for their host before the engine stops reading its input.
    pub max_parked: usize,
    /// Requests read ahead of admission by a pipeline's resume filter.
    pub read_ahead: usize,
}

impl EngineConfig {
    /// The derived sizes.
    pub fn sizes(&self) -> Sizes {
        let concurrency = self.concurrency.max(1);
        let c = concurrency as u64;
        let idle = match (self.client.max_idle, self.open_file_limit) {
            (0, Some(limit)) => (2 * c)
                .max(MANY_HOSTS_IDLE)
                .min(limit.saturating_sub(c + OTHER_FILES)),
            (0, None) => idle_wanted(c),
            (n, _) => n as u64,
        };
        Sizes {
            concurrency,
            // Never fewer than could be busy at once (a single host needs no more).
            max_idle: usize::try_from(idle).unwrap_or(usize::MAX).max(concurrency),
            events: if self.client.body == BodyMode::Store {
                concurrency.clamp(16, 256)
            } else {
                (concurrency * 2).clamp(1024, 65536)
            },
            max_parked: (concurrency * 8).max(1024),
            read_ahead: concurrency.clamp(256, 4096),
        }
    }
}

/// A request for the engine, with the caller's ticket.
#[derive(Debug)]
pub struct Item<T> {
    /// The request (shared: it is allocated once where it is read).
    pub request: Arc<Request>,
    /// Opaque to the engine; handed back with the request's event.
    pub ticket: T,
}

impl From<Request> for Item<()> {
    fn from(r: Request) -> Item<()> {
        Item {
            request: Arc::new(r),
            ticket: (),
        }
    }
}

/// What became of an item.
// Outcomes are the common case; boxing them would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event<T> {
    /// The request's outcome: a response of any status, or an error kind.
    Outcome(Outcome, T),
    /// The run stopped before the request could finish; the caller decides what that means
    /// (a file run records `cancelled` or `deadline`, a work queue hands the job back).
    Released(T, Stopped),
    /// Its next retry is due further off than [`EngineConfig::hand_back_after`]: the engine
    /// lets it go (only when that is set).
    Deferred(T, Deferred),
}

/// A request whose retry the engine did not wait for.
#[derive(Debug)]
pub struct Deferred {
    request: Arc<Request>,
    attempts: u32,
    after: Duration,
}

impl Deferred {
    /// The request.
    pub fn request(&self) -> &Arc<Request> {
        &self.request
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long from now it may be tried again.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// Why a run stops early. One reason, chosen by whoever drives the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Interrupted (Ctrl-C): in-flight requests get the grace period, then are released.
    Interrupted,
    /// The run's deadline passed: everything unfinished is released at once.
    Deadline,
    /// Outcomes can no longer be recorded: stop at once.
    SinkFailed,
}

impl StopReason {
    /// How a run stopped for this reason ends.
    pub fn end(self) -> RunEnd {
        match self {
            StopReason::Interrupted => RunEnd::Interrupted,
            StopReason::Deadline => RunEnd::Deadline,
            StopReason::SinkFailed => RunEnd::StoreError,
        }
    }

    /// The error kind a file run records for a request stopped for this reason.
    pub fn kind(self) -> ErrorKind {
        match self {
            StopReason::Deadline => ErrorKind::Deadline,
            _ => ErrorKind::Cancelled,
        }
    }
}

/// Where a released request was when the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// An attempt was in flight and was abandoned.
    InFlight,
    /// It had been attempted and was waiting for its retry.
    WaitingToRetry,
    /// Admitted, waiting for its host (limit, rate or pause); never attempted.
    WaitingForHost,
    /// Taken from the input, waiting for its origin's robots.txt (`--robots`); never attempted.
    WaitingForRobots,
    /// Taken from the input but not yet admitted; never attempted.
    NotStarted,
}

/// A request the run released unfinished, with what its attempts so far left.
#[derive(Debug)]
pub struct Stopped {
    request: Arc<Request>,
    attempts: u32,
    first: Option<(SystemTime, Instant)>,
    last: Option<Box<Attempt>>,
    phase: Phase,
    reason: StopReason,
}

impl Stopped {
    /// The request.
    pub fn request(&self) -> &Arc<Request> {
        &self.request
    }

    /// Whether it was sent at least once (a work queue may then count the attempt).
    pub fn attempted(&self) -> bool {
        self.attempts > 0
    }

    /// Where it was when the run stopped.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the run stopped.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// The outcome a file run records for it: error `cancelled` or `deadline`, with the attempts
    /// made, the start of the first, and the last attempt's result in the detail.
    pub fn outcome(&self) -> Outcome {
        let kind = self.reason.kind();
        let what = match self.phase {
            Phase::InFlight => "in flight",
            Phase::WaitingToRetry => "waiting to retry",
            Phase::WaitingForHost => "waiting for its host",
            Phase::WaitingForRobots => "waiting for robots.txt",
            Phase::NotStarted => {
                return Outcome::for_request(&self.request)
                    .with_error(kind, format!("not started: the run's {kind} passed"));
            }
        };
        let detail = match &self.last {
            Some(last) => format!("{kind} while {what}; last attempt: {}", last.describe()),
            None => format!("{kind} while {what}"),
        };
        let mut o = Outcome::for_request(&self.request).with_error(kind, detail);
        o.attempts = self.attempts;
        if let Some((sys, mono)) = self.first {
            o.started_at = sys;
            o.total = mono.elapsed();
        }
        o
    }
}

/// How the engine's part of a run ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineEnd {
    /// Completed, or why it stopped.
    pub end: RunEnd,
    /// The busiest hosts (adaptive runs list their learned limits).
    pub hosts: Vec<HostReport>,
}

/// The engine failed unexpectedly (a bug: its task panicked).
#[derive(Debug, thiserror::Error)]
#[error("internal error: the engine failed: {0}")]
pub struct EngineFailed(String);

/// A built client with its limits, ready to run over a stream.
pub struct Engine {
    config: EngineConfig,
    /// One per shard (at least one): the same settings, TLS sessions and DNS cache, each with its
    /// own pool.
    clients: Vec<Client>,
}

impl Engine {
    /// Builds the HTTP client (certificates, proxy) for `config`.
    pub fn new(config: EngineConfig) -> Result<Engine, ClientError> {
        let sizes = config.sizes();
        let client = Client::new(ClientConfig {
            max_idle: sizes.max_idle,
            ..config.client.clone()
        })?;
        // One pool per shard; their idle connections together stay within the budget.
        let mut clients = vec![client];
        while clients.len() < config.shards.len() {
            clients.push(clients[0].with_own_pool());
        }
        Ok(Engine { config, clients })
    }

    /// Runs over `items` until they end (and every request has its event) or `stop` resolves.
    ///
    /// Spawns the dispatcher onto the current tokio runtime, and the workers onto the shards'
    /// ([`EngineConfig::shards`]), or the current one without shards. The returned [`Events`]
    /// yields one event per item taken; [`Running`] resolves when the run is over. Dropping the
    /// `Running` stops the run at once (every task it spawned is aborted).
    pub fn run<T, S, F>(self, stats: Arc<Stats>, items: S, stop: F) -> (Events<T>, Running)
    where
        T: Send + 'static,
        S: Stream<Item = Item<T>> + Send + 'static,
        F: Future<Output = StopReason> + Send + 'static,
    {
        let sizes = self.config.sizes();
        let (out, events) = mpsc::channel(sizes.events);
        let (done_tx, done_rx) = mpsc::channel(sizes.concurrency);
        // A robots.txt fetch sends once, and at most `concurrency` run at once: never blocks.
        let (robots_tx, robots_rx) = mpsc::channel(sizes.concurrency);
        let robots = self.config.robots.then(|| {
            RobotsGate::new(
                &self.config.client.user_agent,
                self.config.retry.clone(),
                sizes.concurrency,
            )
        });
        let shared = Arc::new(Shared {
            clients: self.clients,
            shards: self.config.shards.clone(),
            retry: self.config.retry.clone(),
            out,
            done: done_tx,
            stop_reason: OnceLock::new(),
        });
        let now = Instant::now();
        let limits = self.config.limits.clone();
        let mut dispatcher = Dispatcher {
            shared,
            stats,
            done_rx,
            hosts: Hosts::new(limits.clone(), sizes.concurrency),
            global: limits
                .rate
                .map(|r| Bucket::new(r, limits.burst_for(r), now)),
            in_flight: 0,
            workers: Vec::new(),
            tasks: JoinSet::new(),
            idle: vec![Vec::new(); self.config.shards.len().max(1)],
            load: vec![0; self.config.shards.len().max(1)],
            feeds: Vec::new(),
            to_wake: Vec::new(),
            concurrency: sizes.concurrency,
            max_parked: sizes.max_parked,
            stopping: None,
            robots,
            robots_tx,
            robots_rx,
            robots_tasks: JoinSet::new(),
            denied: Vec::new(),
            hand_back_after: self.config.hand_back_after,
        };
        dispatcher.hosts.set_shards(dispatcher.shared.shards.len());
        dispatcher
            .hosts
            .set_http_version(self.config.client.http_version);
        if dispatcher.shared.shards.len() > 1 {
            for handle in &dispatcher.shared.shards {
                let feed = Arc::new(Feed::default());
                dispatcher
                    .tasks
                    .spawn_on(worker::feeder(feed.clone()), handle);
                dispatcher.feeds.push(feed);
                dispatcher.to_wake.push(Vec::new());
            }
        }
        let grace = self.config.grace;
        // The dispatcher runs as a task of its own: attempt tasks it spawns then start on the same
        // worker's queue, where a caller's `block_on` thread would push each through the shared
        // queue and wake another worker.
        let task = tokio::spawn(async move {
            let end = dispatcher.drive(Box::pin(items), grace, stop).await;
            EngineEnd {
                end,
                hosts: dispatcher.hosts.report(),
            }
        });
        (
            Events { rx: events },
            Running {
                task: tokio_util::task::AbortOnDropHandle::new(task),
            },
        )
    }
}

/// The events of a run, in the order they happen. Ends when the run is over.
pub struct Events<T> {
    rx: mpsc::Receiver<Event<T>>,
}

impl<T> Events<T> {
    /// Events already queued, without waiting; `Err(true)` once the run is over and all were taken.
    pub(crate) fn try_next(&mut self) -> Result<Event<T>, bool> {
        self.rx
            .try_recv()
            .map_err(|e| e == mpsc::error::TryRecvError::Disconnected)
    }

    /// Whether no event is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Stream for Events<T> {
    type Item = Event<T>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        self.rx.poll_recv(cx)
    }
}

/// The run in progress: resolves to how the engine's part ended. Dropping it stops the run.
pub struct Running {
    task: tokio_util::task::AbortOnDropHandle<EngineEnd>,
}

impl Future for Running {
    type Output = Result<EngineEnd, EngineFailed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.task
            .poll_unpin(cx)
            .map(|r| r.map_err(|e| EngineFailed(e.to_string())))
    }
}

/// A request on its way through the engine, with what its attempts so far have left.
pub(crate) struct Job<T> {
    /// Shared with the attempt, so an attempt that panics can still be recorded.
    pub(crate) req: Arc<Request>,
    /// `host:port`, the key of the host's state.
    pub(crate) host: Arc<str>,
    ticket: T,
    attempts: u32,
    /// Wall-clock and monotonic start of the first attempt.
    first: Option<(SystemTime, Instant)>,
    /// The last failed attempt, while the job waits to be retried (boxed: a job
    /// moves through queues and the mailbox, and is rarely retried).
    last: Option<Box<Attempt>>,
}

impl<T> Job<T> {
    fn new(req: Arc<Request>, ticket: T) -> Job<T> {
        let host = host_key(&req.url);
        Job::with_host(req, ticket, host)
    }

    /// A job whose host key is known (shared with the host's state: no allocation).
    fn with_host(req: Arc<Request>, ticket: T, host: Arc<str>) -> Job<T> {
        Job {
            host,
            req,
            ticket,
            attempts: 0,
            first: None,
            last: None,
        }
    }

    /// The event for a job the run stopped.
    fn release(self, phase: Phase, reason: StopReason) -> Event<T> {
        Event::Released(
            self.ticket,
            Stopped {
                request: self.req,
                attempts: self.attempts,
                first: self.first,
                last: self.last,
                phase,
                reason,
            },
        )
    }
}

/// The key of a URL's host state: `host:port`.
pub(crate) fn host_key(url: &url::Url) -> Arc<str> {
    let mut key = String::new();
    write_host_key(url, &mut key);
    key.into()
}

/// Writes `url`'s `host:port` into `key` (cleared first). Built by hand: `format!` was a
/// measurable share of the dispatcher's time per request.
fn write_host_key(url: &url::Url, key: &mut String) {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(0);
    key.clear();
    key.reserve(host.len() + 6);
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
}

impl<T> Done<T> {
    /// A report that changes nothing but the worker's and the host's counts (an attempt stopped,
    /// or one that panicked).
    fn neutral(worker: usize, host: Arc<str>) -> Done<T> {
        Done {
            worker,
            host,
            reuse: Reuse::Unknown,
            signal: Signal::Neutral,
            pause: None,
            retry: None,
        }
    }
}

/// What a finished attempt reports to the dispatcher.
struct Done<T> {
    /// The worker that ran it, idle again.
    worker: usize,
    host: Arc<str>,
    /// What its response showed of the connection (see [`Hosts::next_start`]).
    reuse: Reuse,
    signal: Signal,
    /// A `Retry-After` pause, for the host that sent it (after redirects, not always `host`).
    pause: Option<(Arc<str>, Duration)>,
    /// The job and its backoff, when it is to be tried again. Boxed: a job is ~100 bytes, and
    /// every `Done` is copied into and out of the channel.
    retry: Option<Box<(Job<T>, Duration)>>,
}

/// Messages taken from one channel per turn of the dispatcher's loop at most.
const DRAIN: usize = 64;

/// What every attempt task shares.
struct Shared<T> {
    /// One per shard (at least one).
    clients: Vec<Client>,
    /// The shards' runtimes (empty: the current one).
    shards: Vec<tokio::runtime::Handle>,
    retry: RetryPolicy,
    /// Bounded channel of events to the consumer; written only through [`Shared::emit`].
    out: mpsc::Sender<Event<T>>,
    /// Back to the dispatcher; capacity ≥ concurrency, and each job sends exactly once.
    done: mpsc::Sender<Done<T>>,
    /// Why attempts in flight were stopped (set before the workers' stop flags).
    stop_reason: OnceLock<StopReason>,
}

impl<T> Shared<T> {
    /// The one place events leave the engine. Waits while the consumer is behind; a consumer that
    /// has gone away takes nothing more (the dispatcher then stops), and the future resolves to
    /// false.
    fn emit(&self, event: Event<T>) -> impl Future<Output = bool> + '_ {
        soon::send_soon(&self.out, event)
    }
}

/// Admission: owns the global limit and rate, every host's state, and the jobs waiting. A single
/// task, so none of this state is shared or locked; workers talk to it through `Done`.
struct Dispatcher<T> {
    shared: Arc<Shared<T>>,
    stats: Arc<Stats>,
    done_rx: mpsc::Receiver<Done<T>>,
    hosts: Hosts<T>,
    global: Option<Bucket>,
    in_flight: usize,
    /// The workers (never more than twice `concurrency`), by index.
    workers: Vec<WorkerHandle<T>>,
    /// The worker tasks: dropping the dispatcher (its run aborted) aborts them all.
    tasks: JoinSet<()>,
    /// Indices of workers with no job, by shard (one list without shards); the most recently
    /// idle is used first.
    idle: Vec<Vec<usize>>,
    /// Jobs in flight on each shard.
    load: Vec<usize>,
    /// With more than one shard: each shard's feed, and the workers given a job this turn that
    /// it is to wake (see [`Feed`]). Empty with one shard or none: workers are woken at once.
    feeds: Vec<Arc<Feed<T>>>,
    to_wake: Vec<Vec<Arc<Mailbox<T>>>>,
    concurrency: usize,
    /// Jobs that may wait for their host before input reading pauses.
    max_parked: usize,
    /// Set once the run is stopping: why.
    stopping: Option<StopReason>,
    /// With `--robots`: every origin's robots.txt state, and the jobs waiting for one.
    robots: Option<RobotsGate<T>>,
    /// Each robots.txt fetch sends its result here once.
    robots_tx: mpsc::Sender<(Arc<str>, RobotsFetch)>,
    robots_rx: mpsc::Receiver<(Arc<str>, RobotsFetch)>,
    /// The robots.txt fetches, reaped as their results arrive (aborted with the dispatcher).
    robots_tasks: JoinSet<()>,
    /// Jobs robots.txt disallows, to be recorded (emitted after the turn that decided them).
    denied: Vec<(Job<T>, String)>,
    /// Retries due further off are handed back ([`Event::Deferred`]).
    hand_back_after: Option<Duration>,
}

type ItemStream<T> = Pin<Box<dyn Stream<Item = Item<T>> + Send>>;

impl<T: Send + 'static> Dispatcher<T> {
    async fn drive(
        &mut self,
        mut items: ItemStream<T>,
        grace: Duration,
        stop: impl Future<Output = StopReason>,
    ) -> RunEnd {
        // Polled on every turn of the loop, but only after it woke (see `woken.rs`).
        let stop = woken::WhenWoken::new(stop.fuse());
        tokio::pin!(stop);
        // Ten years stands in for "no timer" so that one select! serves both cases.
        let far = Duration::from_secs(10 * 365 * 86400);
        let timer = tokio::time::sleep(far);
        tokio::pin!(timer);
        let mut timer_at: Option<Instant> = None;
        let mut input_open = true;
        let mut closing = false;

        // Every arm is cancel-safe (mpsc recv, a stream's next, sleeps, fused futures).
        let reason = loop {
            let now = Instant::now();
            self.hosts.fire_timers(now);
            self.start_robots(now);
            self.start_ready(now);
            // Before anything below may break out of the loop: no job is left unwoken.
            self.wake_handed_out();
            let nothing_left = !input_open && self.parked() == 0;
            if nothing_left && self.in_flight == 0 {
                break None;
            }
            // The consumer went away: stop as a failed sink would. (Checked each turn, a flag
            // read: a `closed()` future in the select below cost ~700 instructions per request.)
            if self.shared.out.is_closed() {
                break Some(StopReason::SinkFailed);
            }
            if nothing_left != closing {
                // Nothing more to send: close each connection as its last response ends, while
                // the others are still awaited. Until a retry is queued: then keep them again.
                for client in &self.shared.clients {
                    client.keep_connections(!nothing_left);
                }
                closing = nothing_left;
            }
            let wake = self.next_wake();
            if wake != timer_at {
                timer_at = wake;
                timer.as_mut().reset(wake.unwrap_or_else(|| now + far));
            }
            let can_read = input_open && self.parked() < self.max_parked;
            tokio::select! {
                biased;
                reason = &mut stop => break Some(reason),
                Some(done) = self.done_rx.recv() => {
                    // One clock read for the batch: they all finished within these microseconds.
                    let now = Instant::now();
                    self.on_done(done, now).await;
                    // Whatever else has finished meanwhile, without another turn of the loop.
                    for _ in 0..DRAIN {
                        match self.done_rx.try_recv() {
                            Ok(done) => self.on_done(done, now).await,
                            Err(_) => break,
                        }
                    }
                }
                // Not polled without --robots: a poll per turn of the loop is not free.
                Some((origin, fetched)) = self.robots_rx.recv(), if self.robots.is_some() => {
                    self.on_robots(origin, fetched).await;
                }
                item = items.next(), if can_read => {
                    input_open = self.take_items(item, &mut items);
                    self.emit_denied().await;
                }
                _ = &mut timer, if timer_at.is_some() => timer_at = None,
            }
        };
        let Some(reason) = reason else {
            return RunEnd::Completed;
        };

        if reason == StopReason::Interrupted {
            // Grace: in-flight attempts may finish; nothing new starts, retries are not made.
            self.stopping = Some(reason);
            let grace = tokio::time::sleep(grace);
            tokio::pin!(grace);
            while self.in_flight > 0 {
                tokio::select! {
                    _ = &mut grace => break,
                    Some(done) = self.done_rx.recv() => self.on_done(done, Instant::now()).await,
                }
            }
        }
        self.stopping = Some(reason);
        let _ = self.shared.stop_reason.set(reason);
        for w in &self.workers {
            w.mailbox.stop.stop();
        }
        for job in self.hosts.drain() {
            let phase = if job.attempts > 0 {
                Phase::WaitingToRetry
            } else {
                Phase::WaitingForHost
            };
            self.shared.emit(job.release(phase, reason)).await;
        }
        let waiting = self.robots.as_mut().map(RobotsGate::drain);
        for job in waiting.into_iter().flatten() {
            self.shared
                .emit(job.release(Phase::WaitingForRobots, reason))
                .await;
        }
        if reason == StopReason::Deadline {
            // Items the input has ready are released too, so a file run accounts for every line
            // it read. Lines not read yet get no event: waiting for them could take as long as the
            // input (or forever, on a pipe that stays open).
            while let Some(Some(item)) = items.next().now_or_never() {
                let job = Job::new(item.request, item.ticket);
                self.shared
                    .emit(job.release(Phase::NotStarted, reason))
                    .await;
            }
        }
        drop(items);
        while self.in_flight > 0 {
            match self.done_rx.recv().await {
                Some(done) => self.on_done(done, Instant::now()).await,
                None => break,
            }
        }
        // Idle workers end when their mailbox closes, dropping their handle on the event channel.
        self.workers.clear();
        self.idle.iter_mut().for_each(Vec::clear);
        reason.end()
    }

    /// Takes `first` from the input, then items already ready (up to [`DRAIN`], while jobs may
    /// wait), to wait for their host. Whether the input is still open.
    fn take_items(&mut self, first: Option<Item<T>>, items: &mut ItemStream<T>) -> bool {
        let mut next = first;
        // Items already ready are taken within microseconds: one clock read for all of them.
        let now = Instant::now();
        for taken in 1.. {
            match next {
                None => return false,
                Some(item) => {
                    let host = self.hosts.key_for(&item.request.url);
                    let job = Job::with_host(item.request, item.ticket, host);
                    match self.robots.as_mut() {
                        Some(gate) => {
                            let admit = gate.admit(job);
                            self.place(admit, now);
                        }
                        None => self.hosts.push(job, now),
                    }
                }
            }
            if taken == DRAIN || self.parked() >= self.max_parked {
                break;
            }
            next = match items.next().now_or_never() {
                Some(item) => item,
                None => break,
            };
        }
        true
    }

    /// Jobs waiting: for their host, a retry, or a robots.txt.
    fn parked(&self) -> usize {
        self.hosts.parked() + self.robots.as_ref().map_or(0, RobotsGate::parked)
    }

    /// Queues an allowed job for its host (spaced by its `Crawl-delay`), or keeps a denied one to
    /// be recorded.
    fn place(&mut self, admit: Admit<T>, now: Instant) {
        match admit {
            Admit::Go(job, delay) => {
                let key = job.host.clone();
                self.hosts.push(job, now);
                if let Some(d) = delay {
                    self.hosts.min_interval(&key, d, now);
                }
            }
            Admit::Denied(job, why) => self.denied.push((job, why)),
            Admit::Held => {}
        }
    }

    /// Records the jobs robots.txt disallowed: never attempted, error kind `robots`.
    async fn emit_denied(&mut self) {
        let mut denied = std::mem::take(&mut self.denied);
        for (job, why) in denied.drain(..) {
            let o = Outcome::for_request(&job.req).with_error(ErrorKind::Robots, why);
            self.shared.emit(Event::Outcome(o, job.ticket)).await;
        }
        self.denied = denied;
    }

    /// Starts the robots.txt fetches that are due (new origins, retries whose backoff passed).
    fn start_robots(&mut self, now: Instant) {
        let Some(gate) = self.robots.as_mut() else {
            return;
        };
        gate.fire_timers(now);
        for (origin, url) in gate.start_fetches() {
            // On the origin's home shard, with its pool: the connection is there for its requests.
            let home = usize::from(self.hosts.home_for(&host_key(&url)));
            let client = self.shared.clients[home % self.shared.clients.len()].clone();
            let tx = self.robots_tx.clone();
            let fetch = async move {
                // Exactly one result per fetch, or the origin's jobs would wait forever.
                let r = AssertUnwindSafe(client.fetch_robots(&url))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| RobotsFetch::Unreachable {
                        detail: "internal error: the robots.txt fetch panicked".into(),
                        retry_after: None,
                    });
                let _ = tx.send((origin, r)).await;
            };
            match self.shared.shards.get(home) {
                Some(handle) => self.robots_tasks.spawn_on(fetch, handle),
                None => self.robots_tasks.spawn(fetch),
            };
        }
    }

    /// A robots.txt fetch ended: its origin's waiting jobs are queued or recorded as denied.
    async fn on_robots(&mut self, origin: Arc<str>, fetched: RobotsFetch) {
        while self.robots_tasks.try_join_next().is_some() {}
        let now = Instant::now();
        let Some(gate) = self.robots.as_mut() else {
            return;
        };
        for admit in gate.fetched(&origin, fetched, now) {
            self.place(admit, now);
        }
        self.emit_denied().await;
    }

    /// The next instant something waiting may become startable.
    fn next_wake(&self) -> Option<Instant> {
        let global = self
            .global
            .as_ref()
            .filter(|_| self.hosts.has_ready() && self.in_flight < self.concurrency)
            .map(Bucket::ready_at);
        let robots = self.robots.as_ref().and_then(RobotsGate::next_wake);
        [self.hosts.next_wake(), global, robots]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts jobs while the global limit and rate allow and some host can take one.
    fn start_ready(&mut self, now: Instant) {
        while self.in_flight < self.concurrency && self.hosts.has_ready() {
            if self.global.as_ref().is_some_and(|b| b.ready_at() > now) {
                return;
            }
            let Some((job, shard)) = self.hosts.next_start(now) else {
                return;
            };
            if let Some(b) = self.global.as_mut() {
                b.take(now);
            }
            self.in_flight += 1;
            self.stats.admitted.fetch_add(1, Relaxed);
            self.hand_out(job, shard);
        }
    }

    /// Gives `job` to an idle worker, spawning one if none is idle (there are then fewer workers
    /// than jobs in flight allow). An idle worker's mailbox is empty.
    ///
    /// With shards, the worker is on `shard` (the host's home, see [`Hosts::next_start`]), or
    /// with `None` on the shard with the fewest jobs in flight. When that shard has none idle and
    /// the run has all the workers it may have, an idle one of another shard is moved there.
    fn hand_out(&mut self, mut job: Job<T>, shard: Option<u16>) {
        let n = self.idle.len();
        let shard = match shard {
            Some(k) => usize::from(k) % n,
            None => (0..n).min_by_key(|&k| self.load[k]).unwrap_or(0),
        };
        loop {
            let w = match self.idle[shard].pop() {
                Some(w) => w,
                None => self.spawn_worker(shard),
            };
            let mailbox = &self.workers[w].mailbox;
            match mailbox.put(job) {
                None => {
                    match self.feeds.is_empty() {
                        true => mailbox.wake(),
                        false => self.to_wake[shard].push(mailbox.clone()),
                    }
                    self.load[shard] += 1;
                    return;
                }
                // Not idle after all (a bug): leave it out of the idle list and try another.
                Some(j) => job = j,
            }
        }
    }

    /// Wakes the workers handed a job since the last call, one wake per shard (see [`Feed`]).
    fn wake_handed_out(&mut self) {
        for (feed, workers) in self.feeds.iter().zip(&mut self.to_wake) {
            if !workers.is_empty() {
                feed.hand_over(workers);
            }
        }
    }

    /// Starts a worker task on `shard`; its index. At most twice `concurrency` exist: past that,
    /// an idle worker of another shard (there is one, as fewer jobs are in flight) ends and a new
    /// one takes its index here, so that a list whose hosts come one after another, each on its
    /// own home, does not leave every shard with a full set of idle workers. (At once
    /// `concurrency`, a list over many hosts moved workers between shards all the time: 2,000
    /// host names took 0.62 s against 0.53 s before shards.)
    fn spawn_worker(&mut self, shard: usize) -> usize {
        let moved = match self.workers.len() >= 2 * self.concurrency {
            true => (0..self.idle.len())
                .max_by_key(|&k| self.idle[k].len())
                .and_then(|k| self.idle[k].pop()),
            false => None,
        };
        let w = moved.unwrap_or(self.workers.len());
        let mailbox = Arc::new(Mailbox::default());
        let task = worker::worker(self.shared.clone(), w, shard, mailbox.clone());
        match self.shared.shards.get(shard) {
            Some(handle) => self.tasks.spawn_on(task, handle),
            None => self.tasks.spawn(task),
        };
        let handle = WorkerHandle { mailbox, shard };
        match moved {
            // Dropping the old handle closes its mailbox: that idle worker's task ends.
            Some(w) => {
                self.workers[w] = handle;
                while self.tasks.try_join_next().is_some() {}
            }
            None => self.workers.push(handle),
        }
        w
    }

    /// A worker's report, `now` (read once for a batch of reports).
    async fn on_done(&mut self, done: Done<T>, now: Instant) {
        self.in_flight -= 1;
        let shard = self.workers[done.worker].shard;
        self.idle[shard].push(done.worker);
        self.load[shard] -= 1;
        self.stats.finished.fetch_add(1, Relaxed);
        // The retry is queued first, so the host does not look idle (and get forgotten) meanwhile.
        let mut stopped = None;
        if let Some(retry) = done.retry {
            let (job, delay) = *retry;
            match self.stopping {
                Some(reason) => stopped = Some(job.release(Phase::WaitingToRetry, reason)),
                None if self.hand_back_after.is_some_and(|max| delay > max) => {
                    stopped = Some(Event::Deferred(
                        job.ticket,
                        Deferred {
                            request: job.req,
                            attempts: job.attempts,
                            after: delay,
                        },
                    ));
                }
                None => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    self.hosts.push_delayed(job, now + delay);
                }
            }
        }
        if let Some((host, pause)) = done.pause {
            self.hosts.pause(&host, pause, now);
        }
        self.hosts
            .completed(&done.host, done.signal, done.reuse, now);
        if let Some(event) = stopped {
            self.shared.emit(event).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{EngineConfig, host_key, open_files_wanted};

    #[test]
    fn idle_connections_follow_the_concurrency_and_the_open_file_limit() {
        let sizes = |c: usize, limit: Option<u64>| {
            let mut e = EngineConfig {
                concurrency: c,
                open_file_limit: limit,
                ..EngineConfig::default()
            };
            e.client.max_idle = 0;
            e.sizes()
        };
        assert_eq!(
            sizes(64, None).max_idle,
            256,
            "at least a few hundred hosts' worth"
        );
        assert_eq!(sizes(1000, None).max_idle, 2000);
        assert_eq!(open_files_wanted(1000), 1000 + 8192 + 64);
        assert_eq!(open_files_wanted(10_000), 10_000 + 20_000 + 64);
        // A known limit with room: idle connections for many hosts (8,192), or 2 × -c.
        assert_eq!(sizes(64, Some(1 << 20)).max_idle, 8192);
        assert_eq!(sizes(256, Some(20_000)).max_idle, 8192);
        assert_eq!(sizes(10_000, Some(1 << 20)).max_idle, 20_000);
        // 1,024 descriptors at -c 500: 460 left for idle connections, but never below -c.
        assert_eq!(sizes(500, Some(1024)).max_idle, 500);
        assert_eq!(sizes(100, Some(1024)).max_idle, 860, "the limit binds");
        assert_eq!(sizes(400, Some(1024)).max_idle, 560, "the limit binds");
        assert_eq!(sizes(0, None).concurrency, 1);
    }

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
