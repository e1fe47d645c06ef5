//! Per-host state, in one place: requests in flight and the host's limit (fixed `--per-host` or
//! adaptive), the queue of requests waiting for the host, its rate bucket, and its `Retry-After`
//! pause. Owned by the engine's dispatcher alone, so it needs no lock; a request for a busy host
//! waits in that host's queue while other hosts proceed. Idle hosts are evicted, so memory stays
//! flat across millions of distinct hosts. Time is tokio's [`Instant`], the engine's one clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Job;
use super::adaptive::{Aimd, Signal};
use super::client::{HttpVersion, Reuse};
use crate::due::Due;

/// How long an idle host keeps its learned adaptive limit before it is forgotten.
const ADAPTIVE_IDLE_TTL: Duration = Duration::from_secs(30);
/// How often idle hosts are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Busy hosts listed in the summary.
pub(crate) const REPORTED_HOSTS: usize = 10;

/// A request rate, written `100/s`, `6000/m`, `36000/h`, or a bare number per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second.
    pub per_sec: f64,
}

impl Rate {
    /// Parses a rate.
    ///
    /// ```
    /// use fanout::engine::hosts::Rate;
    /// assert_eq!(Rate::parse("6000/m").unwrap().per_sec, 100.0);
    /// assert_eq!(Rate::parse("20").unwrap().per_sec, 20.0);
    /// assert!(Rate::parse("0/s").is_err());
    /// assert!(Rate::parse("fast").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Rate, String> {
        let (n, unit) = s.trim().split_once('/').unwrap_or((s.trim(), "s"));
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a rate; use forms like 100/s, 6000/m, 36000/h"))?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            other => {
                return Err(format!(
                    "'{s}': unknown rate unit '{other}'; use /s, /m or /h"
                ));
            }
        };
        let per_sec = n / secs;
        // Below one a day, the bucket's interval would not fit a Duration.
        if !(1.0 / 86400.0..=1e7).contains(&per_sec) {
            return Err(format!(
                "'{s}' must be a rate of at least 1 per day and at most 10000000/s"
            ));
        }
        Ok(Rate { per_sec })
    }
}

/// A token bucket in GCRA form: one "theoretical arrival time" per bucket. Allows `burst` requests
/// at once and `rate` per second sustained, so any window of length T sees at most
/// `burst + rate × T` requests.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    interval: Duration,
    tolerance: Duration,
    tat: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate, burst: u32, now: Instant) -> Bucket {
        let interval = Duration::from_secs_f64(1.0 / rate.per_sec);
        Bucket {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            tat: now,
        }
    }

    /// The earliest instant a request may go (at or before `now` means now).
    pub fn ready_at(&self) -> Instant {
        self.tat.checked_sub(self.tolerance).unwrap_or(self.tat)
    }

    /// Spends one token; call only when `ready_at() <= now`.
    pub fn take(&mut self, now: Instant) {
        self.tat = self.tat.max(now) + self.interval;
    }

    /// True when the bucket is full again (forgetting it changes nothing).
    pub fn is_full(&self, now: Instant) -> bool {
        self.tat <= now
    }
}

/// Limits applied by host (and the global rate).
#[derive(Debug, Clone, Default)]
pub struct HostLimits {
    /// Requests in flight to one host (host:port) at most.
    pub per_host: Option<usize>,
    /// Requests per second to one host.
    pub per_host_rate: Option<Rate>,
    /// Requests per second overall.
    pub rate: Option<Rate>,
    /// Requests a bucket lets through at once (default: one second's worth of its rate).
    pub burst: Option<u32>,
    /// Learn each host's concurrency limit, like TCP congestion control (README, `--adaptive`).
    pub adaptive: bool,
    /// A say from outside over when each host may be sent a request, on top of the limits
    /// above: how workers of a fleet share per-host rates and pauses.
    pub gate: Option<Gate>,
}

/// Lets something outside the engine hold requests to a host back: a fleet of workers shares
/// per-host rates and `Retry-After` pauses through it (the work queue's PostgreSQL gate,
/// [`crate::queue`]).
///
/// The dispatcher asks it before every attempt, so it must answer at once, from what it holds
/// (no I/O, no waiting on a lock held across I/O); it fetches more permission elsewhere. A host
/// it holds back is asked again at the instant it names.
pub trait HostGate: Send + Sync + 'static {
    /// Whether a request to `host` (`host:port`) may start now; `Ok` spends the permission.
    /// `Err(at)`: ask again at `at`.
    fn try_start(&self, host: &str, now: Instant) -> Result<(), Instant>;
    /// `host` answered with a `Retry-After` of `pause` (already capped by the retry policy).
    fn paused(&self, host: &str, pause: Duration);
    /// An attempt that [`HostGate::try_start`] let start has ended.
    fn finished(&self, _host: &str) {}
}

/// A shared [`HostGate`].
#[derive(Clone)]
pub struct Gate(pub Arc<dyn HostGate>);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl HostLimits {
    /// The burst of a bucket for `rate`.
    pub fn burst_for(&self, rate: Rate) -> u32 {
        self.burst
            .unwrap_or_else(|| rate.per_sec.ceil().clamp(1.0, u32::MAX as f64) as u32)
    }
}

/// What the summary says of a busy host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostReport {
    /// `host:port`.
    pub host: String,
    /// Attempts started.
    pub attempts: u64,
    /// Its limit at the end (the learned one with `--adaptive`).
    pub limit: usize,
    /// Attempts that signalled overload (429, 503, timeouts, refused or reset connections).
    pub overloads: u64,
}

/// Why a host cannot start a request now.
enum Blocked {
    /// At its concurrency limit: wait for a completion.
    Limit,
    /// Paused or rate-limited until then.
    Until(Instant),
}

struct Host<T> {
    in_flight: usize,
    queue: VecDeque<Job<T>>,
    fixed_limit: usize,
    aimd: Option<Aimd>,
    bucket: Option<Bucket>,
    paused_until: Option<Instant>,
    attempts: u64,
    overloads: u64,
    idle_since: Instant,
    /// Jobs for this host waiting out a retry backoff (the host is not idle while any do).
    waiting_retries: usize,
    /// In the ready list already (avoids duplicates).
    ready: bool,
    /// A wake-up is scheduled at this instant.
    timer: Option<Instant>,
    /// The engine shard this host's requests go to (see [`Hosts::next_start`]).
    home: u16,
    /// What its responses showed of their connections, or what its first request's scheme
    /// promises (see [`Hosts::next_start`]).
    reuse: Reuse,
    /// Its first request was https: a busy keep-alive host over TLS keeps to its home (see
    /// [`Hosts::next_start`]).
    tls: bool,
}

impl<T> Host<T> {
    /// Whether the host goes on the ready list now: it has a job waiting and is not on it. If so
    /// it counts as on it, and the caller pushes its key (so that a caller holding the host need
    /// not look it up again by key).
    fn becomes_ready(&mut self) -> bool {
        let becomes = !self.ready && !self.queue.is_empty();
        self.ready |= becomes;
        becomes
    }

    fn limit(&self) -> usize {
        self.aimd.as_ref().map_or(self.fixed_limit, Aimd::limit)
    }

    /// Whether a request may start now; the gate, asked last, spends its permission on `Ok`.
    fn check(&self, key: &str, gate: Option<&Gate>, now: Instant) -> Result<(), Blocked> {
        if self.in_flight >= self.limit() {
            return Err(Blocked::Limit);
        }
        if let Some(p) = self.paused_until.filter(|&p| p > now) {
            return Err(Blocked::Until(p));
        }
        if let Some(t) = self
            .bucket
            .as_ref()
            .map(Bucket::ready_at)
            .filter(|&t| t > now)
        {
            return Err(Blocked::Until(t));
        }
        if let Some(g) = gate {
            g.0.try_start(key, now).map_err(Blocked::Until)?;
        }
        Ok(())
    }

    fn idle(&self, now: Instant) -> bool {
        self.in_flight == 0
            && self.queue.is_empty()
            && self.waiting_retries == 0
            && self.paused_until.is_none_or(|p| p <= now)
            && self.bucket.as_ref().is_none_or(|b| b.is_full(now))
    }
}

/// Requests in flight to a host that keeps its HTTP/1.1 connections alive past which its next
/// ones may run on any shard. A busy host is then served by every core (one host at `-c 64`: 0.91 s
/// spread against 1.06 s on one shard, docs/performance.md, "Issue 17, session 8"); a host with
/// this many or fewer stays on one thread and in one pool, so a list over many hosts does not
/// open a connection to a host on each shard.
const SPREAD_KEEP_ALIVE_ABOVE: usize = 8;

/// The most requests a run may have in flight for keep-alive hosts still to be spread (see
/// [`SPREAD_KEEP_ALIVE_ABOVE`]). Past it a run waits on latency, not on one thread: at `-c
/// 10000` spreading opened a pool of connections per shard for no gain (100,000 URLs at 100 ms:
/// peak RSS 275–288 MB against 212–220 MB on one shard, wall 2.87–2.91 s against 2.78–3.12 s).
const SPREAD_KEEP_ALIVE_UP_TO: usize = 1024;

/// Slots of [`Hosts::homes`]: enough that many hosts are shared out evenly.
const HOME_SLOTS: usize = 4096;
/// A slot with no home yet.
const NO_HOME: u16 = u16::MAX;

/// The home shard of a host whose key hashes to `hash` (see [`Hosts::homes`]).
fn home_of(homes: &mut [u16; HOME_SLOTS], homed: &mut [usize], hash: u64) -> u16 {
    if homed.len() <= 1 {
        return 0;
    }
    let slot = (hash % HOME_SLOTS as u64) as usize;
    if homes[slot] == NO_HOME {
        let k = (0..homed.len()).min_by_key(|&k| homed[k]).unwrap_or(0);
        homed[k] += 1;
        homes[slot] = k as u16;
    }
    homes[slot]
}

/// A retry waiting for its backoff to pass.
type Delayed<T> = Due<Job<T>>;

/// Every host's state, the hosts ready to start a request, and the timers that wake the others.
pub(crate) struct Hosts<T> {
    limits: HostLimits,
    /// Ceiling of any host's limit (the global concurrency).
    ceiling: usize,
    map: HashMap<Arc<str>, Host<T>>,
    ready: VecDeque<Arc<str>>,
    timers: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    delayed: BinaryHeap<Delayed<T>>,
    seq: u64,
    /// Jobs waiting in host queues or for a retry.
    parked: usize,
    last_sweep: Instant,
    top: Vec<HostReport>,
    /// Where [`Hosts::key_for`] writes a key to look it up.
    scratch: String,
    /// Each host's home shard, by a slot its key hashes to (hosts that share a slot share a
    /// home). A slot gets its home when a host first needs one: the shard with the fewest slots,
    /// the first on a tie. So a one-host list runs on the first shard, where a fetch's
    /// dispatcher runs (no thread between them); many hosts are shared out evenly; and a host
    /// forgotten while idle and made anew has the same home, where its connections are. Fixed
    /// size: memory does not grow with the hosts.
    homes: Box<[u16; HOME_SLOTS]>,
    /// Slots given to each shard, one entry per shard (at least one).
    homed: Vec<usize>,
    /// The protocol the client is held to: what a host's first request's scheme promises.
    http_version: HttpVersion,
}

impl<T> Hosts<T> {
    pub(crate) fn new(limits: HostLimits, ceiling: usize) -> Hosts<T> {
        Hosts {
            limits,
            ceiling,
            map: HashMap::default(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            delayed: BinaryHeap::new(),
            seq: 0,
            parked: 0,
            last_sweep: Instant::now(),
            top: Vec::new(),
            scratch: String::new(),
            homes: Box::new([NO_HOME; HOME_SLOTS]),
            homed: vec![0],
            http_version: HttpVersion::Auto,
        }
    }

    /// Shares hosts out over `n` engine shards (1 by default).
    pub(crate) fn set_shards(&mut self, n: usize) {
        self.homed = vec![0; n.clamp(1, usize::from(u16::MAX - 1))];
    }

    /// Sets the protocol the client is held to (`Auto` by default), for what a host's
    /// connections are before its first response (see [`Hosts::next_start`]).
    pub(crate) fn set_http_version(&mut self, version: HttpVersion) {
        self.http_version = version;
    }

    /// What a request to `url` will find of its connection before any response says: HTTP/1.1
    /// kept alive for http (unless HTTP/2 is forced) and for https held to HTTP/1.1; an https
    /// origin may choose HTTP/2 by ALPN, one connection for all, so it is not known yet.
    fn expected_reuse(&self, url: &url::Url) -> Reuse {
        match (url.scheme(), self.http_version) {
            (_, HttpVersion::Http2) => Reuse::Multiplexed,
            ("http", _) | (_, HttpVersion::Http1) => Reuse::KeepAlive,
            _ => Reuse::Unknown,
        }
    }

    /// Jobs waiting (for their host, or for a retry).
    pub(crate) fn parked(&self) -> usize {
        self.parked
    }

    /// The key of `url`'s host state: the map's own when the host is known, so a request to a
    /// host seen before allocates no key (it is written into a buffer kept for this).
    pub(crate) fn key_for(&mut self, url: &url::Url) -> Arc<str> {
        super::write_host_key(url, &mut self.scratch);
        match self.map.get_key_value(self.scratch.as_str()) {
            Some((known, _)) => known.clone(),
            None => Arc::from(self.scratch.as_str()),
        }
    }

    /// The home shard of the host whose key is `key` (see [`Hosts::homes`]).
    pub(crate) fn home_for(&mut self, key: &str) -> u16 {
        match self.map.get(key) {
            Some(h) => h.home,
            None => {
                let hash = std::hash::BuildHasher::hash_one(self.map.hasher(), key);
                home_of(&mut self.homes, &mut self.homed, hash)
            }
        }
    }

    fn host(&mut self, key: &Arc<str>, now: Instant) -> &mut Host<T> {
        let limits = &self.limits;
        let ceiling = self.ceiling;
        // One hasher for the run: a key always hashes to the same slot.
        let hasher = self.map.hasher().clone();
        let (homes, homed) = (&mut self.homes, &mut self.homed);
        self.map.entry(key.clone()).or_insert_with(|| {
            let max = limits.per_host.unwrap_or(ceiling).min(ceiling);
            let home = home_of(homes, homed, std::hash::BuildHasher::hash_one(&hasher, key));
            Host {
                in_flight: 0,
                queue: VecDeque::new(),
                fixed_limit: max,
                aimd: limits.adaptive.then(|| Aimd::new(max)),
                bucket: limits
                    .per_host_rate
                    .map(|r| Bucket::new(r, limits.burst_for(r), now)),
                paused_until: None,
                attempts: 0,
                overloads: 0,
                idle_since: now,
                waiting_retries: 0,
                ready: false,
                timer: None,
                home,
                reuse: Reuse::Unknown,
                tls: false,
            }
        })
    }

    fn mark_ready(&mut self, key: &Arc<str>) {
        if self.map.get_mut(key).is_some_and(Host::becomes_ready) {
            self.ready.push_back(key.clone());
        }
    }

    /// Queues a new job behind its host's other jobs.
    pub(crate) fn push(&mut self, job: Job<T>, now: Instant) {
        let key = job.host.clone();
        let expected = self.expected_reuse(&job.req.url);
        let tls = job.req.url.scheme() == "https";
        let h = self.host(&key, now);
        if h.reuse == Reuse::Unknown {
            h.reuse = expected;
        }
        if h.attempts == 0 && h.queue.is_empty() {
            h.tls = tls;
        }
        h.queue.push_back(job);
        let ready = h.becomes_ready();
        self.parked += 1;
        if ready {
            self.ready.push_back(key);
        }
    }

    /// Holds a job until `at` (a retry's backoff), then puts it at the front of its host's queue.
    pub(crate) fn push_delayed(&mut self, job: Job<T>, at: Instant) {
        let key = job.host.clone();
        self.host(&key, Instant::now()).waiting_retries += 1;
        self.seq += 1;
        self.delayed.push(Due {
            at,
            seq: self.seq,
            item: job,
        });
        self.parked += 1;
    }

    /// Takes the next job that may start now, round-robin over ready hosts, and counts it in flight.
    #[cfg(test)]
    pub(crate) fn next_startable(&mut self, now: Instant) -> Option<Job<T>> {
        self.next_start(now).map(|(job, _)| job)
    }

    /// The next job whose host's limits let it start now, counted as started, and where it may
    /// run: its host's home shard, or any shard (`None`: the engine picks the least busy)
    /// - when the host closes its connection after each response and has another request in
    ///   flight: each such request costs a new connection, work worth spreading over every core;
    /// - when it is plain http, keeps its HTTP/1.1 connections alive and has more than
    ///   [`SPREAD_KEEP_ALIVE_ABOVE`] requests in flight, in a run of at most
    ///   [`SPREAD_KEEP_ALIVE_UP_TO`]: one thread cannot keep up with such a host while the other
    ///   cores idle. Its connections are then in each shard's pool. Not over TLS: there the
    ///   server's share of the work is larger, and spreading cost CPU for no gain (50,000 https
    ///   URLs with `--http1`: 0.70 s against 0.64 s, 15.2 against 12.2 µs a request).
    ///
    /// Otherwise a host is served from one pool on one thread, cheaper than a wake of another
    /// thread per request (docs/performance.md, "Issue 17, session 5"): an HTTP/2 origin (or an
    /// https one before ALPN has chosen) keeps its one connection in one pool, and a list over
    /// many hosts reuses each host's connections when its turn comes again.
    pub(crate) fn next_start(&mut self, now: Instant) -> Option<(Job<T>, Option<u16>)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(h) = self.map.get_mut(&key) else {
                continue;
            };
            h.ready = false;
            if h.queue.is_empty() {
                continue;
            }
            match h.check(&key, self.limits.gate.as_ref(), now) {
                Ok(()) => {
                    let job = h.queue.pop_front().expect("checked non-empty");
                    h.in_flight += 1;
                    h.attempts += 1;
                    if let Some(b) = h.bucket.as_mut() {
                        b.take(now);
                    }
                    self.parked -= 1;
                    let spread = match h.reuse {
                        Reuse::Closes => h.in_flight > 1,
                        Reuse::KeepAlive => {
                            h.in_flight > SPREAD_KEEP_ALIVE_ABOVE
                                && self.ceiling <= SPREAD_KEEP_ALIVE_UP_TO
                                && !h.tls
                        }
                        Reuse::Unknown | Reuse::Multiplexed => false,
                    };
                    let shard = (!spread).then_some(h.home);
                    if h.becomes_ready() {
                        self.ready.push_back(key);
                    }
                    return Some((job, shard));
                }
                // A completion will mark it ready again.
                Err(Blocked::Limit) => {}
                Err(Blocked::Until(t)) => {
                    if h.timer.is_none_or(|old| old > t) {
                        h.timer = Some(t);
                        self.timers.push(Reverse((t, key)));
                    }
                }
            }
        }
        None
    }

    /// Records the end of an attempt to `key`: frees its slot and feeds the adaptive limit.
    /// `reuse`: what its response showed of the connection (see [`Hosts::next_start`]); an
    /// attempt without one (`Unknown`) leaves what earlier responses showed.
    pub(crate) fn completed(&mut self, key: &Arc<str>, signal: Signal, reuse: Reuse, now: Instant) {
        if let Some(g) = &self.limits.gate {
            g.0.finished(key);
        }
        let Some(h) = self.map.get_mut(key) else {
            return;
        };
        h.in_flight = h.in_flight.saturating_sub(1);
        if reuse != Reuse::Unknown {
            h.reuse = reuse;
        }
        if matches!(signal, Signal::Overload(_)) {
            h.overloads += 1;
        }
        let in_flight = h.in_flight;
        if let Some(a) = h.aimd.as_mut() {
            a.on_result(signal, in_flight + 1, now);
        }
        if h.idle(now) {
            h.idle_since = now;
            if h.aimd.is_none() {
                let h = self.map.remove(key).expect("present");
                self.retire(key, &h);
                return;
            }
        }
        if h.becomes_ready() {
            self.ready.push_back(key.clone());
        }
    }

    /// Makes `key` wait at least `interval` between the starts of its requests (a robots.txt
    /// `Crawl-delay`), unless its `--per-host-rate` already spaces them as far apart. Applied
    /// each time a job is queued, since an idle host is forgotten and made anew.
    pub(crate) fn min_interval(&mut self, key: &Arc<str>, interval: Duration, now: Instant) {
        // A day at most: a Bucket's rate must fit (and a longer delay is a day for a run).
        let interval = interval.min(Duration::from_secs(86400));
        if interval.is_zero() {
            return;
        }
        let h = self.host(key, now);
        if h.bucket.as_ref().is_some_and(|b| b.interval >= interval) {
            return;
        }
        h.bucket = Some(Bucket {
            interval,
            // One at a time: a crawl delay is a spacing, not a rate with a burst.
            tolerance: Duration::ZERO,
            // What the old bucket already let through still counts.
            tat: h.bucket.as_ref().map_or(now, |b| b.tat),
        });
    }

    /// Pauses every request to `key` for `pause` (a `Retry-After`).
    pub(crate) fn pause(&mut self, key: &Arc<str>, pause: Duration, now: Instant) {
        if let Some(g) = &self.limits.gate {
            g.0.paused(key, pause);
        }
        let h = self.host(key, now);
        let until = now + pause;
        h.paused_until = Some(h.paused_until.map_or(until, |old| old.max(until)));
    }

    /// Moves due retries into their host queues and wakes hosts whose pause or rate wait is over.
    pub(crate) fn fire_timers(&mut self, now: Instant) {
        while self.delayed.peek().is_some_and(|d| d.at <= now) {
            // Still parked: it moves from the delayed heap to the front of its host's queue.
            let d = self.delayed.pop().expect("peeked");
            let key = d.item.host.clone();
            let h = self.host(&key, now);
            h.waiting_retries = h.waiting_retries.saturating_sub(1);
            h.queue.push_front(d.item);
            self.mark_ready(&key);
        }
        while let Some(Reverse((t, _))) = self.timers.peek()
            && *t <= now
        {
            let Reverse((_, key)) = self.timers.pop().expect("peeked");
            if let Some(h) = self.map.get_mut(&key) {
                h.timer = None;
            }
            self.mark_ready(&key);
        }
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.sweep(now);
        }
    }

    /// The next instant a timer is due, if any.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let d = self.delayed.peek().map(|d| d.at);
        let t = self.timers.peek().map(|Reverse((t, _))| *t);
        let sweep = (!self.map.is_empty()).then(|| self.last_sweep + SWEEP_EVERY);
        [d, t, sweep].into_iter().flatten().min()
    }

    /// True when a job could start if global capacity allowed.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn sweep(&mut self, now: Instant) {
        let mut gone = Vec::new();
        self.map.retain(|k, h| {
            // Idle since the later of its last completion and the end of its pause.
            let since = h.paused_until.map_or(h.idle_since, |p| p.max(h.idle_since));
            let keep = !h.idle(now)
                || (h.aimd.is_some() && now.saturating_duration_since(since) < ADAPTIVE_IDLE_TTL);
            if !keep {
                gone.push((k.clone(), h.attempts, h.limit(), h.overloads));
            }
            keep
        });
        for (k, attempts, limit, overloads) in gone {
            self.offer(HostReport {
                host: k.to_string(),
                attempts,
                limit,
                overloads,
            });
        }
    }

    fn retire(&mut self, key: &Arc<str>, h: &Host<T>) {
        self.offer(HostReport {
            host: key.to_string(),
            attempts: h.attempts,
            limit: h.limit(),
            overloads: h.overloads,
        });
    }

    /// Keeps the busiest hosts' reports.
    fn offer(&mut self, r: HostReport) {
        if !self.limits.adaptive && r.overloads == 0 {
            return;
        }
        self.top.push(r);
        self.top.sort_by_key(|r| std::cmp::Reverse(r.attempts));
        self.top.truncate(REPORTED_HOSTS);
    }

    /// Every job still waiting, for the end of a run.
    pub(crate) fn drain(&mut self) -> Vec<Job<T>> {
        let mut jobs: Vec<Job<T>> = self.delayed.drain().map(|d| d.item).collect();
        for h in self.map.values_mut() {
            jobs.extend(h.queue.drain(..));
        }
        self.parked = 0;
        self.ready.clear();
        jobs
    }

    /// The busiest hosts (adaptive runs list their learned limits; others only hosts that pushed back).
    pub(crate) fn report(mut self) -> Vec<HostReport> {
        let rest: Vec<(Arc<str>, Host<T>)> = self.map.drain().collect();
        for (k, h) in rest {
            self.offer(HostReport {
                host: k.to_string(),
                attempts: h.attempts,
                limit: h.limit(),
                overloads: h.overloads,
            });
        }
        self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Origin, Request};

    fn job(url: &str) -> Job<()> {
        Job::new(
            std::sync::Arc::new(Request {
                key: url.into(),
                method: http::Method::GET,
                url: url.parse().unwrap(),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
                origin: Origin {
                    input: "t".into(),
                    line: 1,
                },
            }),
            (),
        )
    }

    /// A host is on the ready list once however often it is marked (by a push, a start that
    /// leaves jobs queued, a completion), and jobs of several hosts take turns.
    #[test]
    fn a_host_with_jobs_waiting_is_on_the_ready_list_once() {
        let t = Instant::now();
        let mut hosts = Hosts::new(HostLimits::default(), 64);
        for _ in 0..3 {
            hosts.push(job("http://a.test/x"), t);
        }
        hosts.push(job("http://b.test/x"), t);
        assert_eq!(hosts.ready.len(), 2);
        let a = job("http://a.test/x").host;
        assert_eq!(hosts.next_start(t).unwrap().0.host, a);
        assert_eq!(hosts.ready.len(), 2);
        hosts.completed(&a, Signal::Neutral, Reuse::KeepAlive, t);
        hosts.push(job("http://a.test/x"), t);
        assert_eq!(hosts.ready.len(), 2);
        let order: Vec<_> = (0..4)
            .map(|_| hosts.next_start(t).unwrap().0.host)
            .collect();
        let b = job("http://b.test/x").host;
        assert_eq!(order, [b, a.clone(), a.clone(), a]);
        assert!(hosts.ready.is_empty());
        assert!(hosts.next_start(t).is_none());
    }

    #[test]
    fn a_busy_host_is_spread_over_shards_unless_it_multiplexes_and_the_rest_keep_home() {
        let t = Instant::now();
        let start = |hosts: &mut Hosts<()>, url: &str, n: usize| -> Vec<Option<u16>> {
            for _ in 0..n {
                hosts.push(job(url), t);
            }
            (0..n).map(|_| hosts.next_start(t).unwrap().1).collect()
        };
        let home_then_anywhere = |home: Option<u16>, at_home: usize, n: usize| {
            let mut v = vec![home; at_home];
            v.resize(n, None);
            v
        };
        let mut hosts = Hosts::new(HostLimits::default(), 64);
        hosts.set_shards(4);
        // A host keeps to its home while few requests are in flight. The first host's home is
        // the first shard (where a fetch's dispatcher runs).
        let first = start(&mut hosts, "http://a.test/x", 3);
        assert_eq!(first, [Some(0); 3]);
        // Once it closes connections, a second request in flight may go anywhere; an attempt
        // without a response does not change that.
        let key = job("http://a.test/x").host;
        hosts.completed(&key, Signal::Neutral, Reuse::Closes, t);
        hosts.completed(&key, Signal::Neutral, Reuse::Unknown, t);
        assert_eq!(start(&mut hosts, "http://a.test/x", 1), [None]);
        // Forgotten while idle and made anew: the same home, kept while few are in flight.
        for _ in 0..2 {
            hosts.completed(&key, Signal::Neutral, Reuse::Closes, t);
        }
        assert_eq!(start(&mut hosts, "http://a.test/x", 2), [Some(0), Some(0)]);
        // A response that keeps its connection: home again.
        hosts.completed(&key, Signal::Neutral, Reuse::KeepAlive, t);
        assert_eq!(start(&mut hosts, "http://a.test/x", 1), [Some(0)]);

        // Plain http keeps its connections alive (HTTP/1.1) from the first request: past
        // `SPREAD_KEEP_ALIVE_ABOVE` in flight, the next go anywhere.
        let n = SPREAD_KEEP_ALIVE_ABOVE + 4;
        let b = start(&mut hosts, "http://b.test/x", n);
        assert_eq!(b, home_then_anywhere(b[0], SPREAD_KEEP_ALIVE_ABOVE, n));
        assert!(b[0].is_some());
        // https may choose HTTP/2 by ALPN (one connection for all): home until a response says.
        let c = start(&mut hosts, "https://c.test/x", n);
        assert_eq!(c, vec![c[0]; n]);
        assert!(c[0].is_some());
        let key = job("https://c.test/x").host;
        hosts.completed(&key, Signal::Neutral, Reuse::Multiplexed, t);
        assert_eq!(start(&mut hosts, "https://c.test/x", 1), [c[0]]);
        // Over TLS a busy keep-alive host stays home too.
        hosts.completed(&key, Signal::Neutral, Reuse::KeepAlive, t);
        assert_eq!(start(&mut hosts, "https://c.test/x", 1), [c[0]]);
        assert_eq!(hosts.map[&key].reuse, Reuse::KeepAlive);

        // Held to HTTP/1.1, https keeps alive from the first request (and stays home, as TLS);
        // held to HTTP/2, plain http multiplexes (prior knowledge) and stays home.
        let mut h1 = Hosts::new(HostLimits::default(), 64);
        h1.set_shards(2);
        h1.set_http_version(HttpVersion::Http1);
        assert_eq!(start(&mut h1, "https://d.test/x", n), vec![Some(0); n]);
        let key = job("https://d.test/x").host;
        assert_eq!(h1.map[&key].reuse, Reuse::KeepAlive);
        assert_eq!(start(&mut h1, "http://d2.test/x", n)[n - 1], None);
        let mut h2 = Hosts::new(HostLimits::default(), 64);
        h2.set_shards(2);
        h2.set_http_version(HttpVersion::Http2);
        assert_eq!(start(&mut h2, "http://e.test/x", n), vec![Some(0); n]);

        // In a run of more than `SPREAD_KEEP_ALIVE_UP_TO` in flight, it stays home.
        let mut wide = Hosts::new(HostLimits::default(), SPREAD_KEEP_ALIVE_UP_TO + 1);
        wide.set_shards(2);
        assert_eq!(start(&mut wide, "http://f.test/x", n), vec![Some(0); n]);

        // Many hosts are shared out over every shard.
        let homes: std::collections::HashSet<_> = (0..64)
            .map(|i| start(&mut hosts, &format!("https://h{i}.test/"), 1)[0])
            .collect();
        assert_eq!(homes.len(), 4, "{homes:?}");
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t = Instant::now();
        let mut b = Bucket::new(Rate { per_sec: 10.0 }, 3, t);
        for _ in 0..3 {
            assert!(b.ready_at() <= t);
            b.take(t);
        }
        assert!(b.ready_at() > t, "the burst is spent");
        assert_eq!(b.ready_at(), t + Duration::from_millis(100));
    }

    #[test]
    fn a_host_waiting_for_a_retry_keeps_its_learned_limit() {
        let limits = HostLimits {
            adaptive: true,
            ..HostLimits::default()
        };
        let mut hosts = Hosts::new(limits, 64);
        let t = Instant::now();
        hosts.push(job("http://h:1/a"), t);
        let j = hosts.next_startable(t).unwrap();
        let key = j.host.clone();
        hosts.push_delayed(j, t + Duration::from_secs(120));
        hosts.completed(
            &key,
            Signal::Overload(Duration::from_millis(1)),
            Reuse::KeepAlive,
            t,
        );
        hosts.sweep(t + Duration::from_secs(60));
        assert!(hosts.map.contains_key(&key), "not idle while a retry waits");
        assert_eq!(hosts.parked(), 1);
        hosts.fire_timers(t + Duration::from_secs(121));
        assert!(hosts.next_startable(t + Duration::from_secs(121)).is_some());
    }

    #[test]
    fn a_crawl_delay_spaces_a_host_unless_its_rate_is_stricter() {
        let t = Instant::now();
        let mut hosts = Hosts::new(HostLimits::default(), 64);
        for p in ["a", "b"] {
            hosts.push(job(&format!("http://h:1/{p}")), t);
        }
        let key: Arc<str> = "h:1".into();
        hosts.min_interval(&key, Duration::from_secs(2), t);
        assert!(hosts.next_startable(t).is_some());
        assert!(hosts.next_startable(t).is_none(), "one at a time");
        hosts.fire_timers(t + Duration::from_millis(1999));
        assert!(
            hosts
                .next_startable(t + Duration::from_millis(1999))
                .is_none()
        );
        hosts.fire_timers(t + Duration::from_secs(2));
        assert!(hosts.next_startable(t + Duration::from_secs(2)).is_some());

        // A per-host rate of one every 5 s is stricter than a 2 s crawl delay: it stays.
        let limits = HostLimits {
            per_host_rate: Some(Rate { per_sec: 0.2 }),
            ..HostLimits::default()
        };
        let mut hosts = Hosts::new(limits, 64);
        hosts.push(job("http://h:1/a"), t);
        hosts.min_interval(&key, Duration::from_secs(2), t);
        let b = hosts.map[&key].bucket.as_ref().unwrap();
        assert_eq!(b.interval, Duration::from_secs(5));
    }

    #[test]
    fn a_busy_host_does_not_block_others() {
        let limits = HostLimits {
            per_host: Some(1),
            ..HostLimits::default()
        };
        let mut hosts = Hosts::new(limits, 64);
        let t = Instant::now();
        for p in ["a", "b", "c"] {
            hosts.push(job(&format!("http://busy:1/{p}")), t);
        }
        hosts.push(job("http://other:1/x"), t);
        let first = hosts.next_startable(t).unwrap();
        assert_eq!(&*first.host, "busy:1");
        let second = hosts.next_startable(t).unwrap();
        assert_eq!(
            &*second.host, "other:1",
            "the busy host's queue waits aside"
        );
        assert!(hosts.next_startable(t).is_none());
        hosts.completed(
            &first.host,
            Signal::Ok(Duration::from_millis(5)),
            Reuse::KeepAlive,
            t,
        );
        assert_eq!(&*hosts.next_startable(t).unwrap().host, "busy:1");
    }
}
