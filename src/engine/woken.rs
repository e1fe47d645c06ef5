//! [`WhenWoken`]: a future polled again only after it asked to be. Owns nothing but that flag;
//! knows nothing of what it wraps.
//!
//! The dispatcher's loop selects over its inputs on every turn (two or three turns per request),
//! and `select!` polls every arm each time. The stop signal is almost never ready, yet polling it
//! (a cancellation token takes its lock to register a waker) cost ~800 instructions per request.
//! Wrapped, an arm that has not woken costs an atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Release};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Whether the inner future has woken since its last poll, and whom to tell when it does.
struct Flag {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Release);
        self.outer.wake();
    }
}

/// `inner`, polled only on its first poll and after it has woken its waker since. Any future is
/// correct to wrap (a future may only make progress after a wake); it pays off for one polled
/// often beside others and rarely ready.
pub(crate) struct WhenWoken<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
    /// The waker the inner future sees: made once, it sets the flag and wakes the outer task.
    waker: Waker,
}

impl<F: Future> WhenWoken<F> {
    pub(crate) fn new(inner: F) -> WhenWoken<F> {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            outer: AtomicWaker::new(),
        });
        WhenWoken {
            inner: Box::pin(inner),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Registered before the flag is read: a wake in between is then not missed.
        self.flag.outer.register(cx.waker());
        if !self.flag.woken.swap(false, AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::Relaxed;

    /// Counts its polls; ready once `ready` is set, waking the waker it last saw.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Relaxed);
            if self.ready.load(Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn polls_the_inner_future_only_after_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let mut f = WhenWoken::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: waker.clone(),
        });
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        for _ in 0..10 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Relaxed), 1, "polled again without a wake");

        // A wake from another task: the outer task is woken, and the next poll reaches the inner.
        ready.store(true, Relaxed);
        let w = waker.lock().unwrap().take().unwrap();
        let handle = tokio::spawn(async move { w.wake() });
        let mut f = f;
        tokio::time::timeout(std::time::Duration::from_secs(5), &mut f)
            .await
            .expect("the wake reached the outer task");
        handle.await.unwrap();
        assert_eq!(polls.load(Relaxed), 2);
    }
}
