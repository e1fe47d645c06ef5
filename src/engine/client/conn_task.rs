//! The task a new connection runs on, and [`Ended`]: how the request that opened it learns why it
//! ended, when it could not be sent on it. Owns no connection policy: `Client::connect` opens
//! connections, `pool` keeps them.
//!
//! The task is hyper's connection future itself, boxed, and the task's own result says how it
//! ended: no channel per connection (a `oneshot` was one allocation and a few atomics each), no
//! `async` wrapper (hyper's connection, hundreds of bytes, was moved into it and again into tokio's
//! task cell, and tokio rewrites a cell's whole stage as the task finishes: callgrind counted ~1,000
//! instructions of `memcpy` per connection for these moves).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use tokio::task::JoinHandle;

type Task = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// Runs `conn` (hyper's connection) on a task of its own until the connection closes.
pub(super) fn spawn<F>(conn: F) -> Ended
where
    F: Future<Output = hyper::Result<()>> + Send + 'static,
{
    Ended::Running(tokio::spawn(Box::pin(conn) as Task))
}

/// [`spawn`], for an HTTP/1.1 connection the caller sends a request on next: the connection is
/// polled once here first. hyper's HTTP/1.1 `SendRequest` is ready only once its connection has
/// run and found nothing to send; spawned unpolled, the caller's `ready()` waited for the new
/// task's first run (which did nothing else) and for a wake back, two task polls and a hop
/// between tasks per connection. The poll here uses a no-op waker: the task is scheduled when
/// spawned and its first poll registers its own wakers, so an event in between is seen then.
pub(super) fn spawn_polled<F>(conn: F) -> Ended
where
    F: Future<Output = hyper::Result<()>> + Send + 'static,
{
    let mut conn = Box::pin(conn) as Task;
    match conn.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Pending => Ended::Running(tokio::spawn(conn)),
        Poll::Ready(r) => Ended::Done(Some(r)),
    }
}

/// A connection's task. Dropping it leaves the task running (the connection lives on while its
/// `SendRequest` does); awaiting it waits for the connection to end.
pub(super) enum Ended {
    Running(JoinHandle<hyper::Result<()>>),
    /// It ended before it was spawned (its result, until taken).
    Done(Option<hyper::Result<()>>),
}

/// The connection ended without an error of its own (or its task was cancelled).
#[derive(Debug)]
pub(super) struct Closed;

impl Future for Ended {
    /// The connection's own error, if it ended with one.
    type Output = Result<hyper::Error, Closed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ended = match &mut *self {
            Ended::Running(task) => ready!(Pin::new(task).poll(cx)).ok(),
            Ended::Done(r) => r.take(),
        };
        Poll::Ready(match ended {
            Some(Err(e)) => Ok(e),
            Some(Ok(())) | None => Err(Closed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_fails_says_why_and_one_that_closes_does_not() {
        // hyper's own error: a server that answers with something other than HTTP.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"SSH-2.0-not-http\r\n").await.unwrap();
            let (s2, _) = listener.accept().await.unwrap();
            drop((s, s2));
        });
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (tx, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                .await
                .unwrap();
        let e = spawn(conn).await.expect("hyper's error");
        assert!(e.to_string().contains("unexpected message"), "{e}");
        drop(tx);

        // Closed from this side (its `SendRequest` dropped): no error of its own.
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (tx, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                .await
                .unwrap();
        let ended = spawn(conn);
        drop(tx);
        assert!(ended.await.is_err());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_polled_connection_is_ready_before_its_task_has_run() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshake = || async {
            let io =
                hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                .await
                .unwrap()
        };
        // One thread, no yield between spawning and asking: the task cannot have run yet.
        let (tx, conn) = handshake().await;
        let _ended = spawn(conn);
        assert!(
            !tx.is_ready(),
            "unpolled, hyper waits for the task's first run"
        );
        let (tx, conn) = handshake().await;
        let _ended = spawn_polled(conn);
        assert!(tx.is_ready());
        drop(listener);
    }
}
