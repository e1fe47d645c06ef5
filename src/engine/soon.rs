//! [`send_soon`]: a send on a bounded channel that holds the value only while it must wait.
//! Owns nothing; knows nothing of what is sent.
//!
//! `Sender::send(v).await` keeps `v` and the wait for a permit inside the caller's future: the
//! worker's future carried an event (~330 bytes) and two such waits (~1.3 KB in all, per worker
//! task, at C=10,000 for every request in flight), and every send polled a permit future. Here
//! the usual case, a channel with room, is a `try_send`; only a full channel boxes the value and
//! waits.

use std::future::Future;

use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

/// Sends `value` on `tx` at once if there is room, else waits for room (in FIFO order with
/// other waiting senders, as `Sender::send`). Resolves to false when the receiver is gone.
/// The send is tried when this is called, not when it is first polled.
pub(crate) fn send_soon<'a, V: 'a>(tx: &'a Sender<V>, value: V) -> impl Future<Output = bool> + 'a {
    let waiting = match tx.try_send(value) {
        Ok(()) => Ok(true),
        Err(TrySendError::Closed(_)) => Ok(false),
        Err(TrySendError::Full(value)) => {
            Err(Box::pin(async move { tx.send(value).await.is_ok() }))
        }
    };
    async move {
        match waiting {
            Ok(sent) => sent,
            Err(wait) => wait.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::send_soon;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn a_full_channel_waits_for_room_and_keeps_order() {
        let (tx, mut rx) = mpsc::channel(1);
        assert!(send_soon(&tx, 1).await);
        let second = tokio::spawn({
            let tx = tx.clone();
            async move { send_soon(&tx, 2).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "a full channel must make the sender wait"
        );
        assert_eq!(rx.recv().await, Some(1));
        assert!(second.await.unwrap());
        assert_eq!(rx.recv().await, Some(2));
    }

    #[tokio::test]
    async fn a_closed_channel_says_so() {
        let (tx, rx) = mpsc::channel::<u8>(1);
        drop(rx);
        assert!(!send_soon(&tx, 1).await);
    }
}
