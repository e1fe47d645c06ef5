//! One PostgreSQL connection of the work queue, made again when it fails: an operation that
//! meets a broken connection (or a server restarting) connects again with backoff and runs
//! again, for up to the store timeout. Owns reconnecting; knows no table.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;

use super::QueueError;
use crate::pg::{ConnectError, Settings, connect, describe};
use crate::sink::postgres::{MAX_BACKOFF, transient};

/// Every queue transaction lasts milliseconds; a worker frozen inside one (SIGSTOP, a VM paused)
/// would hold its row locks and the sweep's advisory lock, and stall every other worker's sweep.
/// The server ends such a session after five seconds, which rolls its transaction back.
pub(crate) const SESSION: &str = "SET idle_in_transaction_session_timeout = '5s'";

/// For the connections that claim, renew, sweep, hand back and reserve slots (not the one that
/// completes jobs): their commits need not wait for a WAL flush. A crash of the database server
/// may forget the last fraction of a second of them, each transaction whole, and each is safe to
/// forget: a forgotten claim leaves its jobs queued, so another worker may fetch them too, and
/// only the completion under the lease the database knows is recorded; a forgotten renewal or hand-back lets a lease run out; a forgotten
/// slot or pause costs a little politeness. Completions, which carry outcomes, commit durably.
pub(crate) const ASYNC_COMMIT: &str = "SET synchronous_commit = off";

/// A connection that reconnects.
pub(crate) struct Db {
    target: String,
    settings: Arc<Settings>,
    timeout: Duration,
    /// Run on every new connection (a temporary staging table).
    setup: &'static str,
    client: Option<Arc<Client>>,
}

/// Why an attempt failed, when it did.
enum Failure {
    Transient(String),
    Permanent(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        if transient(&e) {
            Failure::Transient(describe(&e))
        } else {
            Failure::Permanent(describe(&e))
        }
    }
}

impl Db {
    /// Not connected yet: the first operation connects.
    pub(crate) fn new(
        target: &str,
        settings: Arc<Settings>,
        timeout: Duration,
        setup: &'static str,
    ) -> Db {
        Db {
            target: target.to_owned(),
            settings,
            timeout,
            setup,
            client: None,
        }
    }

    async fn client(&mut self) -> Result<Arc<Client>, Failure> {
        if let Some(c) = &self.client
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        self.client = None;
        let client = match connect(&self.settings).await {
            Ok(c) => c,
            Err(ConnectError::Setup(s)) => return Err(Failure::Permanent(s)),
            Err(ConnectError::Pg(e)) => return Err(e.into()),
        };
        client.batch_execute(SESSION).await?;
        if !self.setup.is_empty() {
            client.batch_execute(self.setup).await?;
        }
        let client = Arc::new(client);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Runs `op`, connecting first if needed; on a transient failure connects again with backoff
    /// and runs it again, until the store timeout has passed since the first failure. `op` must
    /// be safe to run again after a failure whose commit may or may not have happened.
    pub(crate) async fn retry<T, F, Fut>(&mut self, what: &str, mut op: F) -> Result<T, QueueError>
    where
        F: FnMut(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut first_failure: Option<Instant> = None;
        let mut delay = Duration::from_millis(50);
        let timeout = self.timeout;
        loop {
            let attempt = async {
                let c = self.client().await?;
                op(c).await.map_err(Failure::from)
            };
            let failure = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(f)) => f,
                Err(_) => Failure::Transient(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
            };
            // Whatever state the connection is in (a transaction left open), it is not reused.
            self.client = None;
            let message = match failure {
                Failure::Permanent(m) => {
                    return Err(QueueError::Db(format!("{}: {what}: {m}", self.target)));
                }
                Failure::Transient(m) => m,
            };
            let since = *first_failure.get_or_insert_with(Instant::now);
            if since.elapsed() + delay >= self.timeout {
                return Err(QueueError::Db(format!(
                    "{}: {what}: the database was unreachable for {} (--store-timeout): {message}",
                    self.target,
                    humantime::format_duration(self.timeout)
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}
