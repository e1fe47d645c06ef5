//! `fanout work`: one worker of a fleet. Claims batches of jobs under leases (short
//! transactions, `FOR UPDATE SKIP LOCKED`, expiry by the database's clock), runs them through
//! the [engine](crate::engine) with the fleet's [gate](super::gate), and completes them in
//! batches: each batch's outcomes and job completions commit in one transaction, and only for
//! leases still its own, so a worker that lost its leases (paused past them, cut off) records
//! nothing twice. Renews every lease it holds in one statement every third of the lease, sweeps
//! expired leases (one worker at a time), and hands unfinished jobs back when it stops.
//!
//! Tasks: the claimer feeds the engine through a bounded channel, never holding more than
//! [`in_hand`] jobs; the recorder (this function's own loop) takes the engine's events; the
//! renewer keeps leases alive; the gate's task reserves send slots. Each has its own connection.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::db::{ASYNC_COMMIT, Db};
use super::{QueueError, gate, sql};
use crate::config::RunConfig;
use crate::engine::hosts::Gate;
use crate::engine::{Engine, Event, Item, StopReason};
use crate::outcome::{ErrorKind, Outcome};
use crate::pg::PgUrl;
use crate::request::{Origin, Request};
use crate::sink::postgres::{column_list, encode_copy, wire_types};
use crate::source::parse_url;
use crate::stats::{RunEnd, Stats, Summary};

/// Lost leases after which a job is recorded as `abandoned` (`--max-lost-leases`).
pub const DEFAULT_MAX_LOST_LEASES: u32 = 5;

/// Outcomes completed in one transaction at most.
const COMPLETE_BATCH: usize = 2048;
/// How often a queue with nothing ready but jobs leased elsewhere is looked at again.
const LEASED_POLL: Duration = Duration::from_millis(200);
/// How long an outcome may wait for its batch.
const LINGER: Duration = Duration::from_millis(50);

/// What a worker needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkConfig {
    /// The database holding the queue (and the outcomes).
    pub db: PgUrl,
    /// The queue's name.
    pub queue: String,
    /// How long a claimed job is this worker's without a renewal (renewed every third of it).
    pub lease: Duration,
    /// Keep polling for new jobs when the queue is drained, until stopped.
    pub follow: bool,
    /// How often an empty queue is looked at again.
    pub poll: Duration,
    /// Headers added to every job that does not set them (credentials given to workers, not
    /// stored in the queue).
    pub headers: HeaderMap,
    /// A job whose lease ran out this many times (its workers died or froze holding it) is
    /// recorded as `abandoned` instead of being fetched again; 0: never.
    pub max_lost_leases: u32,
    /// Engine settings: client, concurrency, limits (`per_host_rate` is the fleet's), retries,
    /// grace, the store timeout and the command line. Sources, stores and resume are not used.
    pub run: RunConfig,
}

impl WorkConfig {
    /// A worker of `queue` at `db`, with default settings.
    pub fn new(db: PgUrl, queue: impl Into<String>) -> WorkConfig {
        WorkConfig {
            db,
            queue: queue.into(),
            lease: Duration::from_secs(30),
            follow: false,
            poll: Duration::from_secs(1),
            headers: HeaderMap::new(),
            max_lost_leases: DEFAULT_MAX_LOST_LEASES,
            run: RunConfig::default(),
        }
    }
}

/// How a worker's run went.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkSummary {
    /// Its run id (the `runs` row; its outcomes carry it).
    pub run_id: i64,
    /// Its name in `queue_workers`.
    pub worker: String,
    /// Jobs claimed.
    pub claimed: u64,
    /// Outcomes recorded (jobs completed), with their statuses and kinds.
    pub summary: Summary,
    /// Completions refused because the lease had been taken away meanwhile.
    pub stale: u64,
    /// Jobs handed back unfinished.
    pub handed_back: u64,
}

/// A claimed job's lease, riding through the engine with its request.
#[derive(Debug)]
struct Ticket {
    token: i64,
    /// Counts the job against the jobs this worker may hold.
    _permit: OwnedSemaphorePermit,
}

/// Jobs this worker holds a lease on: key → lease token.
type Held = Arc<Mutex<HashMap<String, i64>>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// Jobs a worker holds at most (claimed, not yet completed): enough to keep `-c` busy through a
/// claim's round trip, few enough that a fleet shares a short list.
pub fn in_hand(concurrency: usize) -> usize {
    (concurrency * 4).max(64)
}

/// Works the queue until it is drained (every job done; with `follow`, until `shutdown`), or
/// until `shutdown` resolves: then no more jobs are claimed, jobs in flight get the grace
/// period, and every unfinished job is handed back at once.
pub async fn work(
    config: WorkConfig,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkSummary, QueueError> {
    let started = Instant::now();
    config.run.validate()?;
    super::check_queue_name(&config.queue).map_err(QueueError::Open)?;
    let target = config.db.masked().to_owned();
    let (settings, client) = super::open(&config.db).await?;
    let run_id = super::begin_run(&client, &target, &config.run.command, "work").await?;
    let worker = format!("{}:{}:{run_id}", super::hostname(), std::process::id());
    client
        .execute(
            "INSERT INTO queue_workers (queue, worker, run_id, lease_secs) VALUES ($1, $2, $3, $4)",
            &[&config.queue, &worker, &run_id, &config.lease.as_secs_f64()],
        )
        .await
        .map_err(|e| QueueError::Open(format!("{target}: {}", crate::pg::describe(&e))))?;
    drop(client);
    let timeout = config.run.store_timeout;
    let db = |setup| Db::new(&target, settings.clone(), timeout, setup);

    let mut engine_config = config.run.engine();
    // A retry further off than a third of the lease goes back to the queue with a not-before
    // (any worker may take it then) instead of holding the lease while it waits.
    engine_config.hand_back_after = Some(config.lease / 3);
    // The fleet's per-host rate replaces each worker's; the fleet's per-host concurrency comes
    // on top of each worker's (the same number, so a lone worker behaves as a fetch would).
    let fleet_rate = engine_config.limits.per_host_rate.take();
    let shared = gate::Shared {
        rate: fleet_rate.map(|r| (r, engine_config.limits.burst_for(r))),
        per_host: engine_config
            .limits
            .per_host
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        worker: worker.clone(),
        lease: config.lease,
    };
    let (fleet_gate, gate_task) = gate::new(db(ASYNC_COMMIT), &config.queue, shared);
    engine_config.limits.gate = Some(Gate(fleet_gate));
    let concurrency = engine_config.sizes().concurrency;
    let engine = Engine::new(engine_config)?;
    let _gate_task = AbortOnDropHandle::new(tokio::spawn(gate_task.run()));

    let held: Held = Arc::default();
    let stopping = CancellationToken::new();
    let failed = CancellationToken::new();
    {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
        });
    }
    let (items_tx, mut items_rx) = mpsc::channel::<Item<Ticket>>(concurrency.max(16));
    let (invalid_tx, mut invalid_rx) = mpsc::channel::<(Outcome, i64)>(64);
    let claimer = Claimer {
        db: db(ASYNC_COMMIT),
        queue: config.queue.clone(),
        worker: worker.clone(),
        lease: config.lease,
        follow: config.follow,
        poll: config.poll,
        headers: config.headers.clone(),
        max_lost_leases: config.max_lost_leases,
        held: held.clone(),
        in_hand: Arc::new(Semaphore::new(in_hand(concurrency))),
        batch: in_hand(concurrency) / 2,
        items: items_tx,
        invalid: invalid_tx,
        stopping: stopping.clone(),
    };
    let claimer = AbortOnDropHandle::new(tokio::spawn(claimer.run()));
    let renewer = AbortOnDropHandle::new(tokio::spawn(renew(
        db(ASYNC_COMMIT),
        config.queue.clone(),
        worker.clone(),
        config.lease,
        held.clone(),
    )));

    let items = futures_util::stream::poll_fn(move |cx| items_rx.poll_recv(cx));
    let stop = {
        let (stopping, failed) = (stopping.clone(), failed.clone());
        async move {
            tokio::select! {
                _ = stopping.cancelled() => StopReason::Interrupted,
                _ = failed.cancelled() => StopReason::SinkFailed,
            }
        }
    };
    let (mut events, running) = engine.run(stats.clone(), items, stop);

    let recorder = Recorder {
        db: db(sql::STAGE),
        queue: config.queue.clone(),
        worker: worker.clone(),
        run_id,
        held: held.clone(),
        stats: stats.clone(),
        summary: Summary::default(),
        stale: 0,
        handed_back: 0,
        complete: sql::complete(&column_list()),
        copy: format!(
            "COPY fanout_stage ({}) FROM STDIN (FORMAT binary)",
            column_list()
        ),
        types: wire_types(),
    };
    // Batches are written on a task of their own, one at a time, while the next one fills: the
    // engine's events keep being taken while a completion commits (one batch may wait).
    let (batches_tx, batches_rx) = mpsc::channel::<WriteBatch>(1);
    let writer = AbortOnDropHandle::new(tokio::spawn(write_batches(
        recorder,
        batches_rx,
        failed.clone(),
    )));
    let mut outcomes: Vec<(Outcome, i64)> = Vec::new();
    let mut releases: Vec<Release> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let (mut events_open, mut invalid_open) = (true, true);
    while events_open || invalid_open {
        let linger = async {
            match first_at {
                Some(t) => tokio::time::sleep_until(t + LINGER).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = events.next(), if events_open => match e {
                Some(Event::Outcome(o, t)) => outcomes.push((o, t.token)),
                Some(Event::Released(t, stopped)) => releases.push(Release {
                    key: stopped.request().key.clone(),
                    token: t.token,
                    attempted: i32::from(stopped.attempted()),
                    delay: 0.0,
                }),
                Some(Event::Deferred(t, d)) => releases.push(Release {
                    key: d.request().key.clone(),
                    token: t.token,
                    attempted: i32::try_from(d.attempts()).unwrap_or(i32::MAX),
                    delay: d.after().as_secs_f64(),
                }),
                None => events_open = false,
            },
            o = invalid_rx.recv(), if invalid_open => match o {
                Some(o) => outcomes.push(o),
                None => invalid_open = false,
            },
            _ = linger => {}
        }
        if first_at.is_none() && !(outcomes.is_empty() && releases.is_empty()) {
            first_at = Some(Instant::now());
        }
        let due = first_at.is_some_and(|t| t.elapsed() >= LINGER)
            || outcomes.len() >= COMPLETE_BATCH
            || !(events_open || invalid_open);
        if !due {
            continue;
        }
        first_at = None;
        let batch = (std::mem::take(&mut outcomes), std::mem::take(&mut releases));
        if failed.is_cancelled() || batches_tx.send(batch).await.is_err() {
            // Nothing more is written; the leases run out and other workers take the jobs.
            continue;
        }
    }
    drop(batches_tx);
    let (mut recorder, mut error) = match writer.await {
        Ok(r) => r,
        Err(e) => return Err(QueueError::Internal(format!("the writer failed: {e}"))),
    };
    let engine_end = running.await;
    stopping.cancel();
    let claimed = match claimer.await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            error.get_or_insert(e);
            0
        }
        Err(e) => {
            error.get_or_insert(QueueError::Internal(format!("the claimer failed: {e}")));
            0
        }
    };
    renewer.abort();
    // Jobs claimed and never taken by the engine (it stopped first): back at once.
    let left: Vec<Release> = lock(&held)
        .drain()
        .map(|(key, token)| Release {
            key,
            token,
            attempted: 0,
            delay: 0.0,
        })
        .collect();
    if error.is_none()
        && let Err(e) = recorder.release(left).await
    {
        error = Some(e);
    }
    let end = match (&error, engine_end) {
        (Some(_), _) => RunEnd::StoreError,
        (None, Ok(e)) => e.end,
        (None, Err(e)) => {
            error = Some(QueueError::Internal(e.to_string()));
            RunEnd::StoreError
        }
    };
    recorder.summary.end = end;
    recorder.summary.run_id = run_id;
    recorder.summary.elapsed = started.elapsed();
    recorder.summary.retries = stats.retries.load(std::sync::atomic::Ordering::Relaxed);
    let _ = recorder.finish(end).await;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(WorkSummary {
        run_id,
        worker,
        claimed,
        summary: recorder.summary,
        stale: recorder.stale,
        handed_back: recorder.handed_back,
    })
}

/// Writes batches of completions and hand-backs in order until the channel closes; after a
/// failure, takes and drops the rest (the run is stopping) and returns the error.
async fn write_batches(
    mut recorder: Recorder,
    mut batches: mpsc::Receiver<WriteBatch>,
    failed: CancellationToken,
) -> (Recorder, Option<QueueError>) {
    let mut error = None;
    while let Some((outcomes, releases)) = batches.recv().await {
        if error.is_some() {
            continue;
        }
        let result = match recorder.complete(outcomes).await {
            Ok(()) => recorder.release(releases).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            error = Some(e);
            failed.cancel();
        }
    }
    (recorder, error)
}

/// Outcomes with their lease tokens, and jobs to hand back: one transaction's worth each.
type WriteBatch = (Vec<(Outcome, i64)>, Vec<Release>);

/// A job handed back.
struct Release {
    key: String,
    token: i64,
    attempted: i32,
    /// Seconds until it may be claimed again.
    delay: f64,
}

/// Claims jobs while this worker may hold more, and feeds them to the engine.
struct Claimer {
    db: Db,
    queue: String,
    worker: String,
    lease: Duration,
    follow: bool,
    poll: Duration,
    headers: HeaderMap,
    max_lost_leases: u32,
    held: Held,
    in_hand: Arc<Semaphore>,
    /// Jobs asked for at once: claims wait until this many may be held, so one claim serves
    /// many requests.
    batch: usize,
    items: mpsc::Sender<Item<Ticket>>,
    invalid: mpsc::Sender<(Outcome, i64)>,
    stopping: CancellationToken,
}

impl Claimer {
    /// Jobs claimed in all, once the queue is drained (or the worker stops).
    async fn run(mut self) -> Result<u64, QueueError> {
        let mut claimed = 0u64;
        let lease = self.lease.as_secs_f64();
        let max = self.in_hand.available_permits();
        loop {
            let want = self.batch.min(max) as u32;
            let permits = tokio::select! {
                biased;
                _ = self.stopping.cancelled() => return Ok(claimed),
                p = self.in_hand.clone().acquire_many_owned(want) => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(claimed),
                },
            };
            let (q, w) = (self.queue.clone(), self.worker.clone());
            let n = i64::from(want);
            let rows = self
                .db
                .retry("claim jobs", |c| {
                    let (q, w) = (q.clone(), w.clone());
                    async move { c.query(sql::CLAIM, &[&q, &n, &lease, &w]).await }
                })
                .await?;
            let mut permits = Some(permits);
            let got = rows.len();
            claimed += got as u64;
            {
                let mut held = lock(&self.held);
                for r in &rows {
                    held.insert(r.get(0), r.get(1));
                }
            }
            for r in rows {
                let token: i64 = r.get(1);
                let permit = match permits.as_mut().and_then(|p| p.split(1)) {
                    Some(p) => p,
                    None => permits.take().expect("one permit per row claimed"),
                };
                match job_request(&r, &self.headers, self.max_lost_leases) {
                    Ok(request) => {
                        let item = Item {
                            request: Arc::new(request),
                            ticket: Ticket {
                                token,
                                _permit: permit,
                            },
                        };
                        if self.items.send(item).await.is_err() {
                            return Ok(claimed);
                        }
                    }
                    Err(o) => {
                        drop(permit);
                        if self.invalid.send((*o, token)).await.is_err() {
                            return Ok(claimed);
                        }
                    }
                }
            }
            drop(permits);
            if got > 0 {
                continue;
            }
            // Nothing ready: drained, or wait for jobs due later, leases held elsewhere, new jobs.
            let (q2, held_empty) = (self.queue.clone(), lock(&self.held).is_empty());
            let row = self
                .db
                .retry("look at the queue", |c| {
                    let q = q2.clone();
                    async move { c.query_one(sql::REMAINING, &[&q]).await }
                })
                .await?;
            let (ready, leased): (bool, bool) = (row.get(0), row.get(1));
            let next_due: Option<f64> = row.get(2);
            if !self.follow && !ready && !leased && next_due.is_none() && held_empty {
                return Ok(claimed);
            }
            let mut wait = self.poll;
            if let Some(due) = next_due {
                wait = wait.min(Duration::from_secs_f64(due.max(0.0)));
            }
            if ready {
                // Claimable jobs exist but were locked or their host is paused: soon again.
                wait = wait.min(Duration::from_millis(50));
            } else if leased {
                // Leases elsewhere may end in a hand-back or expire: the last jobs of a queue
                // should not wait a whole poll.
                wait = wait.min(LEASED_POLL);
            }
            tokio::select! {
                _ = self.stopping.cancelled() => return Ok(claimed),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The request a job row describes; or the `invalid-input` outcome when it cannot be one (a row
/// edited by hand), or the `abandoned` one when its leases ran out `max_lost` times.
fn job_request(row: &Row, extra: &HeaderMap, max_lost: u32) -> Result<Request, Box<Outcome>> {
    let key: String = row.get(0);
    let method: String = row.get(2);
    let url: String = row.get(3);
    let headers: Option<String> = row.get(4);
    let body: Option<Vec<u8>> = row.get(5);
    let origin = Origin {
        input: row.get::<_, String>(6).into(),
        line: u64::try_from(row.get::<_, i64>(7)).unwrap_or(0),
    };
    let bad = |why: String| {
        Box::new(Outcome::failed(
            key.clone(),
            url.clone(),
            method.clone(),
            ErrorKind::InvalidInput,
            format!("queued job from {origin}: {why}"),
        ))
    };
    let expired: i32 = row.get(8);
    if max_lost > 0 && u32::try_from(expired).unwrap_or(0) >= max_lost {
        return Err(Box::new(Outcome::failed(
            key.clone(),
            url.clone(),
            method.clone(),
            ErrorKind::Abandoned,
            format!(
                "its lease ran out {expired} times, each time with the worker holding it dead or \
                 frozen (--max-lost-leases {max_lost}); not fetched again"
            ),
        )));
    }
    let m = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method".into()))?;
    let u = parse_url(&url).map_err(&bad)?;
    let mut map = HeaderMap::new();
    if let Some(text) = headers {
        let pairs: Vec<(String, String)> =
            serde_json::from_str(&text).map_err(|e| bad(format!("headers: {e}")))?;
        for (n, v) in pairs {
            let n = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| bad(format!("invalid header name '{n}'")))?;
            let v =
                HeaderValue::from_str(&v).map_err(|_| bad(format!("invalid value for '{n}'")))?;
            map.append(n, v);
        }
    }
    for (n, v) in extra {
        if !map.contains_key(n) {
            map.insert(n.clone(), v.clone());
        }
    }
    Ok(Request {
        key,
        method: m,
        url: u,
        headers: map,
        body: body.map(Bytes::from).unwrap_or_default(),
        origin,
    })
}

/// Keeps this worker's leases alive, sweeps expired ones back into the queue, and says the
/// worker is alive; every third of the lease.
async fn renew(mut db: Db, queue: String, worker: String, lease: Duration, held: Held) {
    let every = (lease / 3).max(Duration::from_millis(100));
    let secs = lease.as_secs_f64();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (keys, tokens): (Vec<String>, Vec<i64>) =
            lock(&held).iter().map(|(k, t)| (k.clone(), *t)).unzip();
        let (q, w) = (queue.clone(), worker.clone());
        // Failures are retried inside; one that outlasts the store timeout is tried next tick.
        let _ = db
            .retry("renew leases", |c| {
                let (q, w, keys, tokens) = (q.clone(), w.clone(), keys.clone(), tokens.clone());
                async move {
                    if !keys.is_empty() {
                        c.execute(sql::RENEW, &[&q, &secs, &keys, &tokens]).await?;
                    }
                    c.execute(sql::HEARTBEAT, &[&q, &w, &"working"]).await?;
                    c.batch_execute("BEGIN").await?;
                    let got: bool = c.query_one(sql::SWEEP_LOCK, &[&q]).await?.get(0);
                    if got {
                        c.execute(sql::SWEEP, &[&q]).await?;
                    }
                    c.batch_execute("COMMIT").await
                }
            })
            .await;
    }
}

/// Writes completions and hand-backs.
struct Recorder {
    db: Db,
    queue: String,
    worker: String,
    run_id: i64,
    held: Held,
    stats: Arc<Stats>,
    summary: Summary,
    stale: u64,
    handed_back: u64,
    complete: String,
    /// The COPY into the staging table.
    copy: String,
    types: Vec<tokio_postgres::types::Type>,
}

impl Recorder {
    /// Completes `batch` in one transaction; outcomes whose lease was lost are dropped.
    async fn complete(&mut self, batch: Vec<(Outcome, i64)>) -> Result<(), QueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (outcomes, tokens): (Vec<Outcome>, Vec<i64>) = batch.into_iter().unzip();
        let data = encode_copy(&outcomes, self.run_id, &self.types)
            .map_err(|e| QueueError::Internal(e.to_string()))?;
        let keys: Vec<String> = outcomes.iter().map(|o| o.key.clone()).collect();
        let failed: Vec<bool> = outcomes.iter().map(|o| o.error.is_some()).collect();
        let attempts: Vec<i32> = outcomes
            .iter()
            .map(|o| i32::try_from(o.attempts).unwrap_or(i32::MAX))
            .collect();
        // Shared by every attempt (a retry after a lost connection sends the same batch).
        let args = Arc::new((keys, tokens, failed, attempts));
        let (q, w) = (&self.queue, &self.worker);
        let (stmt, copy) = (&self.complete, &self.copy);
        let done: Vec<String> = self
            .db
            .retry("complete jobs", |c| {
                let (data, args) = (data.clone(), args.clone());
                async move {
                    let (keys, tokens, failed, attempts) = &*args;
                    c.batch_execute("BEGIN").await?;
                    let sink = c.copy_in::<_, Bytes>(copy.as_str()).await?;
                    let mut sink = std::pin::pin!(sink);
                    sink.send(data).await?;
                    sink.as_mut().finish().await?;
                    let rows = c
                        .query(stmt.as_str(), &[q, keys, tokens, failed, attempts])
                        .await?;
                    let done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                    let failed_done = rows.iter().filter(|r| r.get::<_, bool>(1)).count() as i64;
                    let stale = (keys.len() - done.len()) as i64;
                    c.execute(
                        sql::WORKER_COUNTS,
                        &[q, w, &(done.len() as i64), &failed_done, &stale],
                    )
                    .await?;
                    c.batch_execute("COMMIT").await?;
                    Ok(done)
                }
            })
            .await?;
        let keys = &args.0;
        let accepted: std::collections::HashSet<&str> = done.iter().map(String::as_str).collect();
        {
            let mut held = lock(&self.held);
            for k in keys {
                held.remove(k);
            }
        }
        let recorded: Vec<Outcome> = outcomes
            .into_iter()
            .filter(|o| accepted.contains(o.key.as_str()))
            .collect();
        self.stale += (keys.len() - recorded.len()) as u64;
        self.stats.count_recorded(&recorded);
        recorded.iter().for_each(|o| self.summary.record(o));
        Ok(())
    }

    /// Hands jobs back to the queue (only those whose lease is still this worker's).
    async fn release(&mut self, jobs: Vec<Release>) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = jobs.iter().map(|j| j.key.clone()).collect();
        let tokens: Vec<i64> = jobs.iter().map(|j| j.token).collect();
        let attempted: Vec<i32> = jobs.iter().map(|j| j.attempted).collect();
        let delay: Vec<f64> = jobs.iter().map(|j| j.delay).collect();
        let q = self.queue.clone();
        let n = self
            .db
            .retry("hand jobs back", |c| {
                let (q, keys, tokens, attempted, delay) = (
                    q.clone(),
                    keys.clone(),
                    tokens.clone(),
                    attempted.clone(),
                    delay.clone(),
                );
                async move {
                    c.execute(sql::RELEASE, &[&q, &keys, &tokens, &attempted, &delay])
                        .await
                }
            })
            .await?;
        self.handed_back += n;
        let mut held = lock(&self.held);
        for k in &keys {
            held.remove(k);
        }
        Ok(())
    }

    /// Says how the run ended, in `runs` and `queue_workers` (best effort: one try).
    async fn finish(&mut self, end: RunEnd) -> Result<(), QueueError> {
        let s = &self.summary;
        let (total, responses, errors) = (s.total as i64, s.responses() as i64, s.errors() as i64);
        let (q, w, id) = (self.queue.clone(), self.worker.clone(), self.run_id);
        let state = if end == RunEnd::Completed {
            "finished"
        } else {
            "stopped"
        };
        self.db
            .retry("end the run", |c| {
                let (q, w) = (q.clone(), w.clone());
                async move {
                    c.execute(
                        "UPDATE runs SET finished_at = now(), status = $2, outcomes = $3, \
                         responses = $4, errors = $5 WHERE id = $1",
                        &[&id, &end.as_str(), &total, &responses, &errors],
                    )
                    .await?;
                    c.execute(sql::HEARTBEAT, &[&q, &w, &state]).await?;
                    c.execute(
                        "DELETE FROM queue_host_slots WHERE queue = $1 AND worker = $2",
                        &[&q, &w],
                    )
                    .await
                }
            })
            .await
            .map(|_| ())
    }
}
