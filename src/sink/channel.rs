//! The in-memory sink: outcomes handed to a bounded channel that a program reads, for embedding
//! fanout as a library. Owns nothing but the sender; a slow reader slows the run (backpressure).

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Batch, RunInfo, Sink, SinkError, SinkErrorKind};
use crate::outcome::Outcome;
use crate::stats::Summary;

/// Sends each recorded outcome into a channel.
pub struct ChannelSink {
    tx: mpsc::Sender<Outcome>,
}

/// A channel sink and the receiver its outcomes arrive on; at most `capacity` wait unread.
pub fn channel(capacity: usize) -> (ChannelSink, mpsc::Receiver<Outcome>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ChannelSink { tx }, rx)
}

impl Sink for ChannelSink {
    fn target(&self) -> &str {
        "<channel>"
    }

    fn begin_run<'a>(&'a mut self, _run: &'a RunInfo) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            for o in batch.iter() {
                self.tx.send(o.clone()).await.map_err(|_| {
                    SinkError::new(
                        "<channel>",
                        SinkErrorKind::Closed,
                        "the receiver was dropped",
                    )
                })?;
            }
            Ok(())
        })
    }

    fn end_run<'a>(&'a mut self, _summary: &'a Summary) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}
