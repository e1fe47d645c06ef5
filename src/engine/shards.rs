//! Shards: threads that each run a current-thread tokio runtime, for the engine to spread its
//! workers over ([`EngineConfig::shards`](super::EngineConfig::shards)). A worker, the
//! connections it opens and their tasks then stay on one thread, and threads share no connection:
//! on tokio's work-stealing runtime an HTTP/2 connection was polled from every thread at once
//! (its lock contended; two threads cost 50% more CPU than one), and an HTTP/1.1 connection's task
//! and the worker waiting on it woke each other across threads. Owns the threads and their
//! shutdown; knows nothing of what runs on them.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// Running shard threads. Dropping it stops them: each runtime drops the tasks still on it.
///
/// ```
/// let shards = fanout::engine::Shards::start(2).unwrap();
/// let handles = shards.handles();
/// let (a, b) = (handles[0].spawn(async { 1 }), handles[1].spawn(async { 2 }));
/// let sum = handles[0].block_on(async { a.await.unwrap() + b.await.unwrap() });
/// assert_eq!(sum, 3);
/// ```
#[derive(Debug)]
pub struct Shards {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts `n` shards (at least one), each a thread named `fanout-worker` running its own
    /// runtime with I/O and timers enabled; their blocking threads are named `fanout-blocking`.
    pub fn start(n: usize) -> io::Result<Shards> {
        let mut shards = Shards {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for _ in 0..n.max(1) {
            let runtime = Builder::new_current_thread()
                .enable_all()
                .thread_name("fanout-blocking")
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            shards.handles.push(runtime.handle().clone());
            shards.stops.push(stop);
            // A runtime runs its tasks only inside `block_on`: this thread's whole life is that.
            let thread = std::thread::Builder::new()
                .name("fanout-worker".into())
                .spawn(move || {
                    runtime.block_on(async {
                        tokio::select! {
                            _ = stopped => {}
                            _ = keep_a_timer_armed() => {}
                        }
                    })
                })?;
            shards.threads.push(thread);
        }
        Ok(shards)
    }

    /// The shards' runtimes, for [`EngineConfig::shards`](super::EngineConfig::shards) and to
    /// spawn onto.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// A timer always due within a second. tokio's timer wakes its own thread's driver (an `eventfd`
/// write) for each new timer due before the one it last parked for, or for every new timer when
/// it parked with none: a shard whose attempts had all ended then paid a write for each attempt's
/// deadline it set next (`perf`: 33,000 writes in 100,000 requests over two shards, 13,000 with
/// this). With this one armed, an attempt's deadline (seconds away) is never the earliest.
async fn keep_a_timer_armed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.stops.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_runs_its_tasks_on_its_own_thread() {
        let shards = Shards::start(3).unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(3);
        for h in shards.handles() {
            let tx = tx.clone();
            h.spawn(async move {
                let t = std::thread::current();
                tx.send((t.id(), t.name().map(String::from))).unwrap();
            });
        }
        let got: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        let ids: std::collections::HashSet<_> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 3, "three threads: {got:?}");
        assert!(ids.iter().all(|id| *id != std::thread::current().id()));
        assert!(
            got.iter()
                .all(|(_, n)| n.as_deref() == Some("fanout-worker"))
        );
    }

    #[test]
    fn dropping_the_shards_stops_their_threads_and_tasks() {
        let shards = Shards::start(2).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        // A task that never ends holds the sender; once its runtime is gone, the channel closes.
        shards.handles()[1].spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(shards);
        assert!(rx.blocking_recv().is_none());
    }
}
