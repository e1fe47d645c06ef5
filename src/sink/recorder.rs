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

use super::{Batch, IDLE_AFTER, MAX_BATCH, MAX_BATCH_BODY_BYTES, MAX_LINGER, Sink, SinkError};
use crate::engine::{Event, Events, StopReason, Stopped};
use crate::outcome::Outcome;
use crate::stats::{Stats, Summary};

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

/// Records until both inputs end. `failed` is cancelled when a write fails, so admission stops;
/// the inputs are still drained (so senders never block), and nothing more is written.
pub(crate) async fn record(
    events: Events<()>,
    invalid: mpsc::Receiver<Outcome>,
    mut sinks: Vec<Box<dyn Sink>>,
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
    let mut summary = Summary::default();
    let mut error = None;
    // Set by a write, cleared by the idle call that follows the next pause.
    let mut written = false;
    // The last batch's vector, emptied, when no sink kept it: one allocation for the whole run.
    let mut spare: Vec<Outcome> = Vec::new();
    loop {
        let first = if written {
            match tokio::time::timeout(IDLE_AFTER, inbox.next()).await {
                Ok(first) => first,
                Err(_) => {
                    join_all(sinks.iter_mut().map(|s| s.idle())).await;
                    written = false;
                    continue;
                }
            }
        } else {
            inbox.next().await
        };
        let Some(first) = first else { break };
        let mut batch = std::mem::take(&mut spare);
        batch.push(first);
        fill_batch(&mut inbox, &mut batch).await;
        if error.is_some() {
            continue;
        }
        let batch: Batch = Arc::new(batch);
        let results = join_all(sinks.iter_mut().map(|s| s.write(batch.clone()))).await;
        match results.into_iter().find_map(Result::err) {
            None => {
                written = true;
                on_commit(&batch);
                stats.count_recorded(&batch);
                batch.iter().for_each(|o| summary.record(o));
                if let Ok(mut v) = Arc::try_unwrap(batch) {
                    v.clear();
                    spare = v;
                }
            }
            Some(e) => {
                error = Some(e);
                failed.cancel();
            }
        }
    }
    RecorderEnd {
        sinks,
        summary,
        error,
    }
}

/// Adds whatever is already queued to `batch`. While outcomes keep arriving it waits for more, up to
/// [`MAX_LINGER`], so commits stay large under load; after a lull it returns at once, so no outcome
/// sits unwritten for long.
async fn fill_batch(inbox: &mut Inbox, batch: &mut Vec<Outcome>) {
    let start = Instant::now();
    let mut body_bytes: usize = batch
        .iter()
        .filter_map(|o| o.body.as_ref())
        .map(|b| b.len())
        .sum();
    loop {
        while batch.len() < MAX_BATCH && body_bytes < MAX_BATCH_BODY_BYTES {
            match inbox.try_next() {
                Try::Got(o) => {
                    body_bytes += o.body.as_ref().map_or(0, |b| b.len());
                    batch.push(o);
                }
                Try::Empty => break,
                Try::Closed => return,
            }
        }
        if batch.len() >= MAX_BATCH
            || body_bytes >= MAX_BATCH_BODY_BYTES
            || start.elapsed() >= MAX_LINGER
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        if inbox.is_empty() {
            return;
        }
    }
}
