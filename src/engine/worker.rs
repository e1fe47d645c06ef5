//! Worker tasks: each runs one attempt at a time for the dispatcher, and reports how it went.
//! Owns the one-job mailbox between the dispatcher and a worker and the flag that stops an
//! attempt in flight; uses the client, and emits each final outcome (or the release of a job
//! stopped in flight) itself.
//! Knows nothing of limits or admission, which are the dispatcher's.

use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::adaptive::Signal;
use super::client::{Attempt, Client, Reuse};
use super::{Done, Event, Job, Phase, Shared, StopReason, host_key};
use crate::outcome::{ErrorKind, Outcome};

/// Set once to abort a worker's attempt in flight. Polled on every wake of the attempt, so it is
/// an atomic and the worker's own waker: a shared cancellation token locks its waiter list on
/// each poll, from every worker at once.
#[derive(Default)]
pub(super) struct StopFlag {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl StopFlag {
    pub(super) fn stop(&self) {
        self.set.store(true, Release);
        self.waker.wake();
    }

    /// Resolves once [`StopFlag::stop`] has been called (at once if it already was).
    async fn stopped(&self) {
        poll_fn(|cx| {
            if self.set.load(Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // Checked again: a stop between the first check and the registration woke nobody.
            if self.set.load(Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A worker's line from the dispatcher: room for one job, and the flag that stops its attempt.
/// Lighter than a channel (tokio's allocates 32 slots and takes a lock per message), and a run
/// may have thousands of workers.
pub(super) struct Mailbox<T> {
    job: std::sync::Mutex<Option<Job<T>>>,
    /// No job will come again: the worker ends.
    closed: AtomicBool,
    waker: AtomicWaker,
    pub(super) stop: StopFlag,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            job: std::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            stop: StopFlag::default(),
        }
    }
}

impl<T> Mailbox<T> {
    /// Puts a job for an idle worker, which the caller then wakes ([`Mailbox::wake`], or through
    /// its shard's [`Feed`]); gives it back if the box is full (a bug) or closed.
    #[must_use]
    pub(super) fn put(&self, job: Job<T>) -> Option<Job<T>> {
        let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() || self.closed.load(Acquire) {
            return Some(job);
        }
        *slot = Some(job);
        None
    }

    /// Wakes the worker for the job put in its box.
    pub(super) fn wake(&self) {
        self.waker.wake();
    }

    fn close(&self) {
        self.closed.store(true, Release);
        self.waker.wake();
    }

    /// The next job; `None` once the box is closed and empty.
    async fn take(&self) -> Option<Job<T>> {
        poll_fn(|cx| {
            for registered in [false, true] {
                if let Some(job) = self.job.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Poll::Ready(Some(job));
                }
                if self.closed.load(Acquire) {
                    return Poll::Ready(None);
                }
                // Registered, then checked again: a job put in between woke nobody.
                if !registered {
                    self.waker.register(cx.waker());
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// The workers of one shard that have a job waiting and are yet to be woken. The dispatcher
/// hands over a turn's jobs for a shard with one wake of the shard's [`feeder`], which wakes each
/// worker on its own thread: woken one by one from the dispatcher's thread, each job cost a
/// wake-up of the other runtime (an `eventfd` write), one per request.
pub(super) struct Feed<T> {
    pending: std::sync::Mutex<Vec<Arc<Mailbox<T>>>>,
    waker: AtomicWaker,
}

impl<T> Default for Feed<T> {
    fn default() -> Self {
        Feed {
            pending: std::sync::Mutex::new(Vec::new()),
            waker: AtomicWaker::new(),
        }
    }
}

impl<T> Feed<T> {
    /// Moves `workers` (their jobs already put) to the feeder, and wakes it once.
    pub(super) fn hand_over(&self, workers: &mut Vec<Arc<Mailbox<T>>>) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(workers);
        self.waker.wake();
    }
}

/// A shard's feeder task: wakes the workers handed over to its [`Feed`], on the shard's thread.
/// Runs until the dispatcher's task set is dropped.
pub(super) async fn feeder<T>(feed: Arc<Feed<T>>) {
    let mut batch = Vec::new();
    loop {
        poll_fn(|cx| {
            for registered in [false, true] {
                std::mem::swap(
                    &mut batch,
                    &mut *feed.pending.lock().unwrap_or_else(|e| e.into_inner()),
                );
                if !batch.is_empty() {
                    return Poll::Ready(());
                }
                // Registered, then checked again: a hand-over in between woke nobody.
                if !registered {
                    feed.waker.register(cx.waker());
                }
            }
            Poll::Pending
        })
        .await;
        for mailbox in batch.drain(..) {
            mailbox.wake();
        }
    }
}

/// The dispatcher's end of a worker task. Dropping it lets the worker end once idle.
pub(super) struct WorkerHandle<T> {
    pub(super) mailbox: Arc<Mailbox<T>>,
    /// The shard it runs on.
    pub(super) shard: usize,
}

impl<T> Drop for WorkerHandle<T> {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

/// What a finished attempt says about the host's load, for the adaptive limit.
fn signal_of(a: &Attempt) -> Signal {
    match (a.status, a.error) {
        (Some(429 | 503), _) => Signal::Overload(a.duration),
        (Some(_), _) => Signal::Ok(a.ttfb.unwrap_or(a.duration)),
        (None, Some(ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Reset)) => {
            Signal::Overload(a.duration)
        }
        _ => Signal::Neutral,
    }
}

/// A worker: runs the jobs the dispatcher hands it, one at a time, until the dispatcher is gone.
pub(super) async fn worker<T>(
    shared: Arc<Shared<T>>,
    id: usize,
    shard: usize,
    mailbox: Arc<Mailbox<T>>,
) {
    // The shard's own client: its connections' tasks run on this worker's thread.
    let client = &shared.clients[shard];
    // `let ... else`, not `while let`: a `while let`'s scrutinee (the `Option<Job>`, ~100 bytes)
    // stays in the task's state for the whole loop body, beside the attempt.
    loop {
        let Some(job) = mailbox.take().await else {
            return;
        };
        // Not boxed: this part of the attempt's future (~0.6 KB; the client boxes its own) lives in
        // the worker's task, allocated once; a box per attempt cost an allocation and a copy.
        let done = run_attempt(&shared, client, id, job, &mailbox.stop).await;
        if !super::soon::send_soon(&shared.done, done).await {
            return;
        }
    }
}

/// How an attempt went, for [`run_attempt`] to act on. Lives on the stack for a moment; boxing
/// the outcome would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Stopped in flight by the run.
    Stopped,
    /// To be tried again after the delay.
    Retry(Signal, Option<(Arc<str>, Duration)>, Duration),
    /// The request's outcome.
    Final(Signal, Option<(Arc<str>, Duration)>, Outcome),
}

/// One attempt at a job. Always reports back exactly once, even if the attempt panics, so the
/// in-flight count stays true; the job stays here, so its ticket is never lost.
///
/// An `async` block, not an `async fn`: an `async fn` moves each argument into a local of its
/// own and keeps the argument's room as well, and the job is ~100 bytes of every worker's task.
#[allow(clippy::manual_async_fn)]
fn run_attempt<'a, T>(
    shared: &'a Shared<T>,
    client: &'a Client,
    worker: usize,
    mut job: Job<T>,
    stop: &'a StopFlag,
) -> impl Future<Output = Done<T>> + 'a {
    async move {
        let mut reuse = Reuse::Unknown;
        let step = AssertUnwindSafe(attempt(shared, client, &mut job, stop, &mut reuse))
            .catch_unwind()
            .await;
        // Settled in a plain function, and one await after it: a `Step` (~330 bytes with its
        // outcome) that was still held across the emits below took room of its own in the
        // worker's task beside the attempt's future (rustc lays out a value live across two
        // awaits apart from every await's future), 1.4 KB a task against 0.9 KB.
        let (emitted, done) = settle(shared, worker, job, reuse, step);
        if let Some(emitted) = emitted {
            // The slot stays taken until the consumer accepts: a slow store slows admission.
            emitted.await;
        }
        done
    }
}

/// Emits what an attempt that ended as `step` leaves (if anything; the wait for room in the
/// channel, when it must wait, is the future returned) and makes its report. The event is
/// built where it is sent: returned instead, it was copied once more (~40 instructions).
fn settle<T>(
    shared: &Shared<T>,
    worker: usize,
    job: Job<T>,
    reuse: Reuse,
    step: std::thread::Result<Step>,
) -> (Option<impl Future<Output = bool> + '_>, Done<T>) {
    let host = job.host.clone();
    match step {
        Ok(Step::Stopped) => {
            let reason = *shared.stop_reason.get().unwrap_or(&StopReason::Interrupted);
            (
                Some(shared.emit(job.release(Phase::InFlight, reason))),
                Done::neutral(worker, host),
            )
        }
        Ok(Step::Retry(signal, pause, delay)) => (
            None,
            Done {
                worker,
                host,
                reuse,
                signal,
                pause,
                retry: Some(Box::new((job, delay))),
            },
        ),
        Ok(Step::Final(signal, pause, o)) => (
            Some(shared.emit(Event::Outcome(o, job.ticket))),
            Done {
                worker,
                host,
                reuse,
                signal,
                pause,
                retry: None,
            },
        ),
        Err(panic) => {
            // A bug (ours or a dependency's) must still leave exactly one outcome.
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let mut o = Outcome::for_request(&job.req).with_error(
                ErrorKind::Io,
                format!("internal error: the attempt panicked: {why}"),
            );
            o.attempts = job.attempts;
            (
                Some(shared.emit(Event::Outcome(o, job.ticket))),
                Done::neutral(worker, host),
            )
        }
    }
}

async fn attempt<T>(
    shared: &Shared<T>,
    client: &Client,
    job: &mut Job<T>,
    stop: &StopFlag,
    reuse: &mut Reuse,
) -> Step {
    // A first attempt starts when the job does: one read of each clock serves both.
    let (now, first) = match job.first {
        Some(first) => ((SystemTime::now(), Instant::now()), first),
        None => {
            let first = (SystemTime::now(), Instant::now());
            job.first = Some(first);
            (first, first)
        }
    };
    let (sys0, t0) = first;
    job.attempts += 1;
    let result = tokio::select! {
        biased;
        _ = stop.stopped() => None,
        a = client.fetch_started(&job.req, now.0, now.1) => Some(a),
    };
    let Some(a) = result else {
        return Step::Stopped;
    };
    *reuse = a.reuse;
    let signal = signal_of(&a);
    let retry_after = match a.status {
        Some(429 | 503) => a.retry_after.map(|d| d.min(shared.retry.max_retry_after)),
        _ => None,
    };
    let pause = retry_after.map(|d| {
        let asked = a
            .final_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| host_key(&u))
            .unwrap_or_else(|| job.host.clone());
        (asked, d)
    });
    if let Some(delay) = shared
        .retry
        .next_delay(&job.req.method, job.attempts, &a, retry_after)
    {
        job.last = Some(Box::new(a));
        return Step::Retry(signal, pause, delay);
    }
    let o = a.into_outcome(&job.req, job.attempts, sys0, t0.elapsed());
    Step::Final(signal, pause, o)
}
