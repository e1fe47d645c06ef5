//! Politeness for the whole fleet: the engine's [`HostGate`] backed by the `queue_hosts` table.
//! With `--per-host-rate`, every request to a host first takes a send slot that the database
//! hands out (a GCRA bucket per host in one row, `fanout_reserve`), so the rate holds for every
//! worker together; a `Retry-After` one worker sees is written to the host's `backoff_until`,
//! which slot reservations and claims respect, and which the other workers read every
//! [`PAUSE_POLL`]. Times travel as durations measured by the database's clock, never as a
//! worker's clock reading. Owns that table's use; knows nothing of jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::db::Db;
use super::sql;
use crate::engine::hosts::{HostGate, Rate};

/// How often paused hosts are read back from the database.
pub(crate) const PAUSE_POLL: Duration = Duration::from_millis(250);
/// How soon a host whose slot was asked for is looked at again (the answer may come first).
const ASK_AGAIN: Duration = Duration::from_millis(10);
/// Hosts whose slot requests may wait for the reserving task.
const ASKS: usize = 4096;
/// Slots granted at once cover at most this long at the host's rate (at least one slot).
const GRANT_SPAN: f64 = 0.05;
/// A slot not used this long after it was granted is dropped: a slot kept for later would let
/// this worker send on top of the slots the others are granted meanwhile.
const SLOT_TTL: Duration = Duration::from_millis(50);
/// How soon a host whose fleet-wide concurrency slots were all taken is asked for again.
const PERMIT_POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct HostState {
    /// Slots granted and not yet used.
    credits: u32,
    /// When they were granted.
    granted_at: Option<Instant>,
    /// A reservation is on its way.
    asked: bool,
    /// The database said no slot before then.
    wait_until: Option<Instant>,
    /// Paused (Retry-After) until then.
    paused_until: Option<Instant>,
    /// A fleet-wide concurrency slot taken and not yet used by an attempt.
    permit: bool,
    /// A concurrency slot is being asked for.
    asking_permit: bool,
    /// The fleet's slots were all taken: ask again then.
    permit_retry_at: Option<Instant>,
    /// Slots of finished attempts not yet given back in the database.
    to_release: u32,
}

/// The gate the engine asks.
pub(crate) struct FleetGate {
    hosts: Mutex<HashMap<String, HostState>>,
    /// Per-host rate shared by the fleet, if any.
    rate: Option<Rate>,
    /// Per-host concurrency shared by the fleet, if any.
    per_host: Option<u32>,
    asks: mpsc::Sender<Ask>,
    pauses: mpsc::Sender<(String, Duration)>,
    /// Wakes the task when slots are to be given back.
    released: Notify,
}

/// What the task is asked to get from the database.
enum Ask {
    /// A send slot (the fleet's rate).
    Slot(String),
    /// A concurrency slot (the fleet's `--per-host`).
    Permit(String),
}

/// What the gate's task needs: the receiving ends and a connection of its own.
pub(crate) struct GateTask {
    gate: Arc<FleetGate>,
    asks: mpsc::Receiver<Ask>,
    pauses: mpsc::Receiver<(String, Duration)>,
    db: Db,
    queue: String,
    worker: String,
    /// How long a worker's concurrency slots count without a heartbeat (its lease).
    stale: f64,
    burst: u32,
}

/// What the fleet shares, and who this worker is.
pub(crate) struct Shared {
    /// Per-host rate and its burst.
    pub(crate) rate: Option<(Rate, u32)>,
    /// Per-host concurrency.
    pub(crate) per_host: Option<u32>,
    /// This worker's name in `queue_workers`.
    pub(crate) worker: String,
    /// Its lease.
    pub(crate) lease: Duration,
}

/// A gate and the task that feeds it (run it with [`GateTask::run`]).
pub(crate) fn new(db: Db, queue: &str, shared: Shared) -> (Arc<FleetGate>, GateTask) {
    let (asks_tx, asks) = mpsc::channel(ASKS);
    let (pauses_tx, pauses) = mpsc::channel(256);
    let gate = Arc::new(FleetGate {
        hosts: Mutex::new(HashMap::new()),
        rate: shared.rate.map(|(r, _)| r),
        per_host: shared.per_host,
        asks: asks_tx,
        pauses: pauses_tx,
        released: Notify::new(),
    });
    let task = GateTask {
        gate: gate.clone(),
        asks,
        pauses,
        db,
        queue: queue.to_owned(),
        worker: shared.worker,
        stale: shared.lease.as_secs_f64(),
        burst: shared.rate.map_or(1, |(_, b)| b),
    };
    (gate, task)
}

impl HostGate for FleetGate {
    fn try_start(&self, host: &str, now: Instant) -> Result<(), Instant> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if !hosts.contains_key(host) {
            if self.rate.is_none() && self.per_host.is_none() {
                return Ok(());
            }
            hosts.insert(host.to_owned(), HostState::default());
        }
        let Some(h) = hosts.get_mut(host) else {
            return Ok(());
        };
        if let Some(p) = h.paused_until {
            if p > now {
                return Err(p);
            }
            h.paused_until = None;
        }
        // A concurrency slot first (held until the attempt ends), then a send slot.
        if self.per_host.is_some() && !h.permit {
            if let Some(at) = h.permit_retry_at.filter(|&at| at > now) {
                return Err(at);
            }
            if !h.asking_permit && self.asks.try_send(Ask::Permit(host.to_owned())).is_ok() {
                h.asking_permit = true;
            }
            return Err(now + ASK_AGAIN);
        }
        if self.rate.is_some() {
            if h.credits > 0
                && h.granted_at
                    .is_some_and(|g| now.duration_since(g) > SLOT_TTL)
            {
                h.credits = 0;
            }
            if h.credits == 0 {
                if let Some(w) = h.wait_until.filter(|&w| w > now) {
                    return Err(w);
                }
                h.wait_until = None;
                if !h.asked && self.asks.try_send(Ask::Slot(host.to_owned())).is_ok() {
                    h.asked = true;
                }
                return Err(now + ASK_AGAIN);
            }
            h.credits -= 1;
        }
        h.permit = false;
        Ok(())
    }

    fn finished(&self, host: &str) {
        if self.per_host.is_none() {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.entry(host.to_owned()).or_default().to_release += 1;
        drop(hosts);
        self.released.notify_one();
    }

    fn paused(&self, host: &str, pause: Duration) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let h = hosts.entry(host.to_owned()).or_default();
        let until = Instant::now() + pause;
        h.paused_until = Some(h.paused_until.map_or(until, |p| p.max(until)));
        // Best effort: a full channel means many pauses are on their way already.
        let _ = self.pauses.try_send((host.to_owned(), pause));
    }
}

impl FleetGate {
    /// Forgets hosts with nothing pending, so the map stays as small as the hosts in use.
    fn tidy(&self, now: Instant) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.len() < 1024 {
            return;
        }
        hosts.retain(|_, h| {
            h.asked
                || h.asking_permit
                || h.permit
                || h.to_release > 0
                || h.credits > 0
                || h.paused_until.is_some_and(|p| p > now)
                || h.wait_until.is_some_and(|w| w > now)
        });
    }
}

impl GateTask {
    /// Serves slot requests and pauses until the gate is dropped by everyone else; reads paused
    /// hosts back every [`PAUSE_POLL`]. Database failures are retried by [`Db`]; one that lasts
    /// past the store timeout leaves hosts waiting (the run then stops on its own store errors).
    pub(crate) async fn run(mut self) {
        let mut poll = tokio::time::interval(PAUSE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ask = self.asks.recv() => match ask {
                    Some(Ask::Slot(host)) => self.reserve(host).await,
                    Some(Ask::Permit(host)) => self.acquire(host).await,
                    None => return,
                },
                _ = self.gate.released.notified() => self.give_back().await,
                Some((host, pause)) = self.pauses.recv() => {
                    let q = self.queue.clone();
                    let secs = pause.as_secs_f64();
                    let _ = self
                        .db
                        .retry("pause a host", |c| {
                            let (q, host) = (q.clone(), host.clone());
                            async move { c.execute(sql::PAUSE_HOST, &[&q, &host, &secs]).await }
                        })
                        .await;
                }
                _ = poll.tick() => self.read_pauses().await,
            }
        }
    }

    async fn reserve(&mut self, host: String) {
        let Some(rate) = self.gate.rate else { return };
        let interval = 1.0 / rate.per_sec;
        let tolerance = interval * f64::from(self.burst.max(1) - 1);
        let n = ((rate.per_sec * GRANT_SPAN).floor() as i32).clamp(1, 64);
        let q = self.queue.clone();
        let asked = Instant::now();
        let answer = self
            .db
            .retry("reserve a send slot", |c| {
                let (q, host) = (q.clone(), host.clone());
                async move {
                    c.query_one(sql::RESERVE, &[&q, &host, &interval, &tolerance, &n])
                        .await
                }
            })
            .await;
        let mut hosts = self.gate.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let h = hosts.entry(host).or_default();
        h.asked = false;
        match answer {
            Ok(row) => {
                let granted: i32 = row.get(0);
                let wait: f64 = row.get(1);
                if granted > 0 {
                    h.credits = granted as u32;
                    h.granted_at = Some(Instant::now());
                } else {
                    // Measured from when it was asked: the database's "wait this long" holds
                    // from its own reading of the clock, a round trip ago at most.
                    h.wait_until = Some(asked + Duration::from_secs_f64(wait.clamp(0.0, 3600.0)));
                }
            }
            Err(_) => h.wait_until = Some(Instant::now() + Duration::from_secs(1)),
        }
    }

    /// Takes one of the host's fleet-wide concurrency slots, or learns that none is free.
    async fn acquire(&mut self, host: String) {
        let Some(limit) = self.gate.per_host else {
            return;
        };
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (q, w, stale) = (self.queue.clone(), self.worker.clone(), self.stale);
        let answer = self
            .db
            .retry("take a host slot", |c| {
                let (q, w, host) = (q.clone(), w.clone(), host.clone());
                async move {
                    c.query_one(sql::ACQUIRE, &[&q, &host, &w, &limit, &stale])
                        .await
                }
            })
            .await;
        let mut hosts = self.gate.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let h = hosts.entry(host).or_default();
        h.asking_permit = false;
        match answer.map(|r| r.get::<_, bool>(0)) {
            Ok(true) => h.permit = true,
            // All taken: a completion somewhere frees one; look again shortly.
            Ok(false) => h.permit_retry_at = Some(Instant::now() + PERMIT_POLL),
            Err(_) => h.permit_retry_at = Some(Instant::now() + Duration::from_secs(1)),
        }
    }

    /// Gives back the slots of finished attempts, all hosts in one statement.
    async fn give_back(&mut self) {
        let (hosts, counts): (Vec<String>, Vec<i32>) = {
            let mut map = self.gate.hosts.lock().unwrap_or_else(|e| e.into_inner());
            map.iter_mut()
                .filter(|(_, h)| h.to_release > 0)
                .map(|(k, h)| {
                    let n = std::mem::take(&mut h.to_release);
                    (k.clone(), i32::try_from(n).unwrap_or(i32::MAX))
                })
                .unzip()
        };
        if hosts.is_empty() {
            return;
        }
        let (q, w) = (self.queue.clone(), self.worker.clone());
        // A failure that outlasts the store timeout leaves the slots counted until this worker
        // is not heard from for a lease.
        let _ = self
            .db
            .retry("give host slots back", |c| {
                let (q, w, hosts, counts) = (q.clone(), w.clone(), hosts.clone(), counts.clone());
                async move {
                    c.execute(sql::RELEASE_SLOTS, &[&q, &w, &hosts, &counts])
                        .await
                }
            })
            .await;
    }

    async fn read_pauses(&mut self) {
        let q = self.queue.clone();
        let asked = Instant::now();
        let Ok(rows) = self
            .db
            .retry("read paused hosts", |c| {
                let q = q.clone();
                async move { c.query(sql::PAUSED_HOSTS, &[&q]).await }
            })
            .await
        else {
            return;
        };
        let mut hosts = self.gate.hosts.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows {
            let host: String = r.get(0);
            let left: f64 = r.get(1);
            let until = asked + Duration::from_secs_f64(left.clamp(0.0, 86_400.0));
            let h = hosts.entry(host).or_default();
            h.paused_until = Some(h.paused_until.map_or(until, |p| p.max(until)));
        }
        drop(hosts);
        self.gate.tidy(asked);
    }
}
