//! Worker tasks: each runs one attempt at a time for the dispatcher, and reports how it went.
//! Owns the one-job mailbox between the dispatcher and a worker and the flag that stops an
//! attempt in flight; uses the client, and sends each final outcome to the store channel itself.
//! Knows nothing of limits or admission, which are the dispatcher's.

use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::task::Poll;
use std::time::{Instant, SystemTime};

use futures_util::FutureExt;
use futures_util::task::AtomicWaker;

use super::adaptive::Signal;
use super::{Done, Job, Shared, host_key};
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
#[derive(Default)]
pub(super) struct Mailbox {
    job: std::sync::Mutex<Option<Job>>,
    /// No job will come again: the worker ends.
    closed: AtomicBool,
    waker: AtomicWaker,
    pub(super) stop: StopFlag,
}

impl Mailbox {
    /// Puts a job for an idle worker; gives it back if the box is full (a bug) or closed.
    #[must_use]
    pub(super) fn put(&self, job: Job) -> Option<Job> {
        {
            let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_some() || self.closed.load(Acquire) {
                return Some(job);
            }
            *slot = Some(job);
        }
        self.waker.wake();
        None
    }

    fn close(&self) {
        self.closed.store(true, Release);
        self.waker.wake();
    }

    /// The next job; `None` once the box is closed and empty.
    async fn take(&self) -> Option<Job> {
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

/// The dispatcher's end of a worker task. Dropping it lets the worker end once idle.
pub(super) struct WorkerHandle {
    pub(super) mailbox: Arc<Mailbox>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

/// What a finished attempt says about the host's load, for the adaptive limit.
fn signal_of(o: &Outcome) -> Signal {
    match (o.status, o.error) {
        (Some(429 | 503), _) => Signal::Overload(o.total),
        (Some(_), _) => Signal::Ok(o.ttfb.unwrap_or(o.total)),
        (None, Some(ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Reset)) => {
            Signal::Overload(o.total)
        }
        _ => Signal::Neutral,
    }
}

/// A worker: runs the jobs the dispatcher hands it, one at a time, until the dispatcher is gone.
pub(super) async fn worker(shared: Arc<Shared>, id: usize, mailbox: Arc<Mailbox>) {
    while let Some(job) = mailbox.take().await {
        // Not boxed: the attempt's future (~5 KB) lives in the worker's task, allocated once; a box
        // per attempt cost an allocation and a 5 KB copy each time.
        let done = run_attempt(&shared, id, job, &mailbox.stop).await;
        if shared.done.send(done).await.is_err() {
            return;
        }
    }
}

/// One attempt at a job. Always reports back exactly once, even if the attempt panics, so the
/// in-flight count stays true.
async fn run_attempt(shared: &Shared, worker: usize, job: Job, stop: &StopFlag) -> Done {
    let host = job.host.clone();
    let req = job.req.clone();
    match AssertUnwindSafe(attempt(shared, worker, job, stop))
        .catch_unwind()
        .await
    {
        Ok(done) => done,
        Err(panic) => {
            // A bug (ours or a dependency's) must still leave exactly one outcome.
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let o = Outcome::failed(
                req.key.clone(),
                req.url.as_str().to_owned(),
                req.method.as_str().to_owned(),
                ErrorKind::Io,
                format!("internal error: the attempt panicked: {why}"),
            );
            let _ = shared.out.send(o).await;
            Done::neutral(worker, host)
        }
    }
}

async fn attempt(shared: &Shared, worker: usize, mut job: Job, stop: &StopFlag) -> Done {
    let (sys0, t0) = *job
        .first
        .get_or_insert_with(|| (SystemTime::now(), Instant::now()));
    job.attempts += 1;
    let result = tokio::select! {
        biased;
        _ = stop.stopped() => None,
        a = shared.client.fetch(&job.req) => Some(a),
    };
    let host = job.host.clone();
    let Some(a) = result else {
        let kind = *shared.stop_kind.get().unwrap_or(&ErrorKind::Cancelled);
        let _ = shared.out.send(job.stopped(kind, "in flight")).await;
        return Done::neutral(worker, host);
    };
    // This attempt's outcome: its `total` is still this attempt's own duration.
    let signal = signal_of(&a.outcome);
    let retry_after = match a.outcome.status {
        Some(429 | 503) => a.retry_after.map(|d| d.min(shared.retry.max_retry_after)),
        _ => None,
    };
    let pause = retry_after.map(|d| {
        let asked = a
            .outcome
            .final_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| host_key(&u))
            .unwrap_or_else(|| host.clone());
        (asked, d)
    });
    if let Some(delay) =
        shared
            .retry
            .next_delay(&job.req.method, job.attempts, &a.outcome, retry_after)
    {
        job.last = Some(Box::new(a.outcome));
        return Done {
            worker,
            host,
            signal,
            pause,
            retry: Some(Box::new((job, delay))),
        };
    }
    let mut o = a.outcome;
    o.attempts = job.attempts;
    o.started_at = sys0;
    o.total = t0.elapsed();
    // The slot stays taken until the store channel accepts: a slow store slows admission.
    let _ = shared.out.send(o).await;
    Done {
        worker,
        host,
        signal,
        pause,
        retry: None,
    }
}
