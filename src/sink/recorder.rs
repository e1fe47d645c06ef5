//! The recorder: takes a file run's events and invalid input lines, turns released requests into
//! the outcomes a file run records, gathers outcomes into batches and writes each batch to every
//! sink concurrently. Owns batching and the run's [`Summary`] while the run goes; knows no sink's
//! format. A batch counts as recorded (counters, summary, resume's in-progress set) only once every
//! sink has it.

use std::sync::Arc;
use tokio::time::Instant;

use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Batch, IDLE_AFTER, MAX_BATCH, MAX_BATCH_BODY_BYTES, MAX_LINGER, Sink, SinkError};
use crate::engine::{Event, Events, StopReason, Stopped};
use crate::outcome::Outcome;
use crate::stats::{Stats, Summary};

/// Outcomes a batch takes while the batch before it is still being written (a quarter of a full
/// batch: ~1 MB of outcomes without bodies), so a commit does not stop the engine.
const OVERLAP: usize = MAX_BATCH / 4;

/// How long no outcome may arrive before a batch is written (unless a write is still in flight).
const LULL: std::time::Duration = std::time::Duration::from_millis(5);

/// Called after each batch is recorded by every sink.
pub(crate) type OnCommit = Box<dyn Fn(&[Outcome]) + Send>;

/// What the recorder hands back: its sinks, the run's totals, and the first write error.
pub(crate) struct RecorderEnd {
    pub(crate) sinks: Vec<Box<dyn Sink>>,
    pub(crate) summary: Summary,
    pub(crate) error: Option<SinkError>,
}

/// What a file run records for a request the engine released: interrupted requests that were
/// attempted end as `cancelled` (never attempted: nothing, so a rerun fetches them), at the
/// deadline everything read ends as `deadline`; after a failed sink nothing more is recorded.
pub(crate) fn released_outcome(stopped: &Stopped) -> Option<Outcome> {
    match stopped.reason() {
        StopReason::Deadline => Some(stopped.outcome()),
        StopReason::Interrupted if stopped.attempted() => Some(stopped.outcome()),
        _ => None,
    }
}

/// The recorder's two inputs: the engine's events and invalid lines from the resume filter.
struct Inbox {
    events: Events<()>,
    invalid: mpsc::Receiver<Outcome>,
    events_open: bool,
    invalid_open: bool,
}

/// Returned per outcome while a batch fills; boxing would cost an allocation per outcome.
#[allow(clippy::large_enum_variant)]
enum Try {
    Got(Outcome),
    Empty,
    Closed,
}

impl Inbox {
    /// The next outcome to record; `None` once both inputs are closed. Cancel-safe.
    async fn next(&mut self) -> Option<Outcome> {
        loop {
            let event = tokio::select! {
                biased;
                e = self.events.next(), if self.events_open => match e {
                    Some(e) => e,
                    None => {
                        self.events_open = false;
                        continue;
                    }
                },
                o = self.invalid.recv(), if self.invalid_open => match o {
                    Some(o) => return Some(o),
                    None => {
                        self.invalid_open = false;
                        continue;
                    }
                },
                else => return None,
            };
            if let Some(o) = outcome_of(event) {
                return Some(o);
            }
        }
    }

    /// An outcome already queued, without waiting.
    fn try_next(&mut self) -> Try {
        while self.events_open {
            match self.events.try_next() {
                Ok(e) => {
                    if let Some(o) = outcome_of(e) {
                        return Try::Got(o);
                    }
                }
                Err(closed) => {
                    self.events_open = !closed;
                    break;
                }
            }
        }
        if self.invalid_open {
            match self.invalid.try_recv() {
                Ok(o) => return Try::Got(o),
                Err(mpsc::error::TryRecvError::Disconnected) => self.invalid_open = false,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        if self.events_open || self.invalid_open {
            Try::Empty
        } else {
            Try::Closed
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.invalid.is_empty()
    }
}

fn outcome_of(event: Event<()>) -> Option<Outcome> {
    match event {
        Event::Outcome(o, ()) => Some(o),
        Event::Released((), stopped) => released_outcome(&stopped),
        // Never produced for file runs: `RunConfig::engine` leaves `hand_back_after` unset.
        Event::Deferred((), _) => None,
    }
}

/// What a finished write hands back: the sinks, their results, and the batch they wrote.
type Written = (Vec<Box<dyn Sink>>, Vec<Result<(), SinkError>>, Batch);

/// The sinks, and the batch they are writing, if any. One batch is written while the next one
/// fills: a store's commit (tens of milliseconds for a full batch) no longer stops the recorder
/// from taking outcomes, so the engine's bounded event queue does not fill and stall the
/// attempts meanwhile. Writes stay one at a time and in order, so a later outcome for a key
/// still lands after an earlier one.
struct Writer {
    /// The sinks while no write runs.
    sinks: Option<Vec<Box<dyn Sink>>>,
    /// The write in flight: a task of its own, so a sink that needs polling (PostgreSQL) makes
    /// progress while the recorder waits for outcomes. Aborted (sinks dropped: runs marked
    /// interrupted) when the recorder is dropped.
    inflight: Option<AbortOnDropHandle<Written>>,
}

impl Writer {
    /// Starts writing `batch` to every sink. Call only when no write is in flight.
    fn start(&mut self, batch: Batch) {
        let Some(mut sinks) = self.sinks.take() else {
            return;
        };
        self.inflight = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            let results = join_all(sinks.iter_mut().map(|s| s.write(batch.clone()))).await;
            (sinks, results, batch)
        })));
    }

    /// Waits for the write in flight, if any; `None` when there was none. Cancel-safe. A panic
    /// in a sink's write goes on in the recorder, as when the recorder wrote itself.
    async fn finish(&mut self) -> Option<Written> {
        let inflight = self.inflight.as_mut()?;
        let done = inflight.await;
        self.inflight = None;
        match done {
            Ok(w) => Some(w),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// The run's bookkeeping around writes: what counts once a batch is recorded, and the first error.
struct Books {
    stats: Arc<Stats>,
    failed: CancellationToken,
    on_commit: OnCommit,
    summary: Summary,
    error: Option<SinkError>,
    /// Set by a write, cleared by the idle call that follows the next pause.
    written: bool,
    /// The last batch's vector, emptied, when no sink kept it: one or two allocations per run.
    spare: Vec<Outcome>,
}

impl Books {
    /// Counts a finished write: its batch as recorded, or its error (admission then stops).
    fn settle(&mut self, writer: &mut Writer, (sinks, results, batch): Written) {
        writer.sinks = Some(sinks);
        match results.into_iter().find_map(Result::err) {
            None => {
                self.written = true;
                (self.on_commit)(&batch);
                self.stats.count_recorded(&batch);
                batch.iter().for_each(|o| self.summary.record(o));
                if let Ok(mut v) = Arc::try_unwrap(batch) {
                    v.clear();
                    self.spare = v;
                }
            }
            Some(e) => {
                self.error = Some(e);
                self.failed.cancel();
            }
        }
    }
}

/// Records until both inputs end. `failed` is cancelled when a write fails, so admission stops;
/// the inputs are still drained (so senders never block), and nothing more is written.
pub(crate) async fn record(
    events: Events<()>,
    invalid: mpsc::Receiver<Outcome>,
    sinks: Vec<Box<dyn Sink>>,
    stats: Arc<Stats>,
    failed: CancellationToken,
    on_commit: OnCommit,
) -> RecorderEnd {
    let mut inbox = Inbox {
        events,
        invalid,
        events_open: true,
        invalid_open: true,
    };
    let mut writer = Writer {
        sinks: Some(sinks),
        inflight: None,
    };
    let mut books = Books {
        stats,
        failed,
        on_commit,
        summary: Summary::default(),
        error: None,
        written: false,
        spare: Vec::new(),
    };
    loop {
        let first = if writer.inflight.is_some() {
            // Whichever comes first: the write's end is counted at once (progress, resume's
            // in-progress set), and an outcome starts the next batch while the write goes on.
            tokio::select! {
                biased;
                done = writer.finish() => {
                    if let Some(done) = done {
                        books.settle(&mut writer, done);
                    }
                    continue;
                }
                first = inbox.next() => first,
            }
        } else if books.written {
            match tokio::time::timeout(IDLE_AFTER, inbox.next()).await {
                Ok(first) => first,
                Err(_) => {
                    if let Some(sinks) = writer.sinks.as_mut() {
                        join_all(sinks.iter_mut().map(|s| s.idle())).await;
                    }
                    books.written = false;
                    continue;
                }
            }
        } else {
            inbox.next().await
        };
        let Some(first) = first else { break };
        let mut batch = std::mem::take(&mut books.spare);
        batch.push(first);
        let start = Instant::now();
        loop {
            let write_ended =
                fill_batch(&mut inbox, &mut batch, writer.inflight.as_ref(), start).await;
            // The previous batch first: writes go one at a time, in order.
            if let Some(done) = writer.finish().await {
                books.settle(&mut writer, done);
            }
            if !write_ended || books.error.is_some() {
                break;
            }
            // Filling goes on in the written batch's vector: one full-sized vector, not two.
            if books.spare.capacity() > batch.capacity() {
                let mut v = std::mem::take(&mut books.spare);
                v.append(&mut batch);
                batch = v;
            }
        }
        if books.error.is_some() {
            continue;
        }
        writer.start(Arc::new(batch));
    }
    if let Some(done) = writer.finish().await {
        books.settle(&mut writer, done);
    }
    RecorderEnd {
        sinks: writer.sinks.unwrap_or_default(),
        summary: books.summary,
        error: books.error,
    }
}

/// Adds whatever is already queued to `batch`. While outcomes keep arriving it waits for more, up to
/// [`MAX_LINGER`], so commits stay large under load; after a lull of [`LULL`] with the previous
/// batch written it returns, so no outcome sits unwritten for long. While the previous batch is
/// still being written it keeps taking outcomes, up to [`OVERLAP`]: the next write cannot start
/// before anyway.
///
/// Small commits are what make a store slow: keys are random, so each row of a small batch
/// dirties an index page of its own, and a commit writes every dirty page (with SQLite at 100,000
/// rows, batches of ~1,300 rows wrote 2.3 times the pages that full ones do). A scheduler
/// hiccup on a busy machine easily stops outcomes for a millisecond, which used to end a batch.
///
/// Returns true when it stopped early because the write in flight ended, so that the caller can
/// count it and go on filling (from `start`, which it keeps).
async fn fill_batch(
    inbox: &mut Inbox,
    batch: &mut Vec<Outcome>,
    inflight: Option<&AbortOnDropHandle<Written>>,
    start: Instant,
) -> bool {
    let was_writing = inflight.is_some_and(|w| !w.is_finished());
    // When outcomes were last seen waiting.
    let mut last_taken = Instant::now();
    let mut body_bytes: usize = batch
        .iter()
        .filter_map(|o| o.body.as_ref())
        .map(|b| b.len())
        .sum();
    loop {
        // While a batch is being written, only `OVERLAP` more are taken: memory stays near what
        // one batch and the engine's event queue hold, and outcomes still flow while it commits.
        let writing = inflight.is_some_and(|w| !w.is_finished());
        if was_writing && !writing {
            return true;
        }
        let take = if writing { OVERLAP } else { MAX_BATCH };
        while batch.len() < take && body_bytes < MAX_BATCH_BODY_BYTES {
            match inbox.try_next() {
                Try::Got(o) => {
                    body_bytes += o.body.as_ref().map_or(0, |b| b.len());
                    batch.push(o);
                }
                Try::Empty => break,
                Try::Closed => return false,
            }
        }
        let now = Instant::now();
        if batch.len() >= MAX_BATCH
            || body_bytes >= MAX_BATCH_BODY_BYTES
            || now - start >= MAX_LINGER
            || (now - last_taken >= LULL && !writing)
        {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        if !inbox.is_empty() {
            last_taken = Instant::now();
        }
    }
}
