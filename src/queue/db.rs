//! One PostgreSQL connection of the work queue, made again when it fails: an operation that
//! meets a broken connection (or a server restarting) connects again with backoff and runs
//! again, for up to the store timeout. Owns reconnecting; knows no table.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use super::QueueError;
use crate::pg::{Failure, Reconnect, Settings, connect, with_retries};

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
        let client = connect(&self.settings).await?;
        client.batch_execute(SESSION).await?;
        if !self.setup.is_empty() {
            client.batch_execute(self.setup).await?;
        }
        let client = Arc::new(client);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Runs `op`, connecting first if needed, and again on a new connection with backoff after a
    /// transient failure, for up to the store timeout ([`with_retries`]). `op` must be safe to
    /// run again after a failure whose commit may or may not have happened.
    pub(crate) async fn retry<T, F, Fut>(&mut self, what: &str, op: F) -> Result<T, QueueError>
    where
        F: FnMut(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let timeout = self.timeout;
        with_retries(self, timeout, what, op)
            .await
            .map_err(|m| QueueError::Db(format!("{}: {m}", self.target)))
    }
}

impl Reconnect for Db {
    type Live = Arc<Client>;

    fn live(&mut self) -> impl Future<Output = Result<Arc<Client>, Failure>> + Send {
        self.client()
    }

    fn reset(&mut self) {
        // Whatever state the connection is in (a transaction left open), it is not reused.
        self.client = None;
    }
}
