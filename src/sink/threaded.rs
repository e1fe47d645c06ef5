//! Blocking backends behind the async [`Sink`] trait: each runs on a thread of its own and takes
//! one command at a time; blocking journals are read on tokio's blocking threads. Owns those
//! threads and the translation of backend errors into [`SinkError`]s; knows no backend's format.

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::{
    Batch, BlockingJournal, Journal, Prior, RunInfo, Sink, SinkError, SinkErrorKind, Store,
    StoreError,
};
use crate::stats::Summary;

type Reply = oneshot::Sender<Result<(), StoreError>>;

enum Cmd {
    Begin(RunInfo, Reply),
    Write(Batch, Reply),
    Idle(oneshot::Sender<()>),
    End(Box<Summary>, Reply),
}

/// A blocking [`Store`] on its own thread. Dropping it (a run abandoned) lets the thread end the
/// run as interrupted and close the store; [`Sink::close`] waits for that.
pub(crate) struct Threaded {
    target: String,
    next_run_id: i64,
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Threaded {
    pub(crate) fn spawn(target: String, mut store: Box<dyn Store>) -> Result<Threaded, SinkError> {
        let next_run_id = store.next_run_id();
        // One command at a time: the async side waits for each reply before the next.
        let (tx, mut rx) = mpsc::channel::<Cmd>(1);
        let thread = std::thread::Builder::new()
            .name("fanout-store".into())
            .spawn(move || {
                let mut begun = false;
                let mut ended = false;
                while let Some(cmd) = rx.blocking_recv() {
                    match cmd {
                        Cmd::Begin(run, reply) => {
                            let r = store.begin_run(&run);
                            begun = r.is_ok();
                            let _ = reply.send(r);
                        }
                        Cmd::Write(batch, reply) => {
                            let r = store.write(&batch);
                            // Released before the reply, so the recorder can reuse the batch.
                            drop(batch);
                            let _ = reply.send(r);
                        }
                        Cmd::Idle(reply) => {
                            store.idle();
                            let _ = reply.send(());
                        }
                        Cmd::End(summary, reply) => {
                            ended = true;
                            let _ = reply.send(store.end_run(&summary));
                        }
                    }
                }
                if begun && !ended {
                    store.abandon();
                }
            })
            .map_err(|e| {
                SinkError::new(
                    target.clone(),
                    SinkErrorKind::Open,
                    format!("cannot start the store thread: {e}"),
                )
            })?;
        Ok(Threaded {
            target,
            next_run_id,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    async fn call(
        &self,
        make: impl FnOnce(Reply) -> Cmd,
        kind: SinkErrorKind,
    ) -> Result<(), SinkError> {
        let closed = || {
            SinkError::new(
                self.target.clone(),
                SinkErrorKind::Closed,
                "the store thread stopped",
            )
        };
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        tx.send(make(reply)).await.map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| closed())?
            .map_err(|e| e.into_sink_error(kind))
    }
}

impl Sink for Threaded {
    fn target(&self) -> &str {
        &self.target
    }

    fn next_run_id(&self) -> i64 {
        self.next_run_id
    }

    fn begin_run<'a>(&'a mut self, run: &'a RunInfo) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.call(|r| Cmd::Begin(run.clone(), r), SinkErrorKind::Open))
    }

    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.call(|r| Cmd::Write(batch, r), SinkErrorKind::Io))
    }

    fn idle(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(tx) = &self.tx {
                let (reply, answer) = oneshot::channel();
                if tx.send(Cmd::Idle(reply)).await.is_ok() {
                    let _ = answer.await;
                }
            }
        })
    }

    fn end_run<'a>(&'a mut self, summary: &'a Summary) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.call(
            |r| Cmd::End(Box::new(summary.clone()), r),
            SinkErrorKind::Io,
        ))
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        self.tx = None;
        let thread = self.thread.take();
        Box::pin(async move {
            if let Some(t) = thread {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        })
    }
}

/// A blocking journal read on tokio's blocking threads, one lookup at a time.
pub(crate) struct OffThread {
    target: String,
    others: bool,
    inner: Option<Box<dyn BlockingJournal>>,
}

impl OffThread {
    pub(crate) fn new(target: String, inner: Box<dyn BlockingJournal>) -> OffThread {
        OffThread {
            target,
            others: inner.others_may_have_recorded(),
            inner: Some(inner),
        }
    }
}

impl Journal for OffThread {
    fn others_may_have_recorded(&self) -> bool {
        self.others
    }

    fn lookup(
        &mut self,
        keys: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<Prior>>, SinkError>> {
        Box::pin(async move {
            let closed = SinkError::new(
                self.target.clone(),
                SinkErrorKind::Closed,
                "the journal failed earlier",
            );
            let mut j = self.inner.take().ok_or_else(|| closed.clone())?;
            let (j, found) = tokio::task::spawn_blocking(move || {
                let found = j.lookup(&keys);
                (j, found)
            })
            .await
            .map_err(|_| closed)?;
            self.inner = Some(j);
            found.map_err(|e| e.into_sink_error(SinkErrorKind::Io))
        })
    }
}
