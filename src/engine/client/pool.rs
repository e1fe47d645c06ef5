//! Connections kept between requests: idle HTTP/1.1 connections and shared HTTP/2 connections, per
//! origin (`scheme://host:port`). Replaces hyper-util's pooled client, which spent ~12% of the
//! workers' CPU per request in its checkout, a task spawned per request to return the connection,
//! and large boxed futures (docs/performance.md). Owns idle connections only: a connection in use
//! belongs to the attempt using it, which gives it back once the response body is read.
//!
//! Bounds: about `max_idle` idle HTTP/1.1 connections in all; when full, the oldest idle connection makes
//! room (found in O(1): each shard keeps its idle connections in the order they came back; so
//! connections to hosts a run has left behind do not hold file descriptors for long), and
//! idle ones older than `idle_timeout` are closed when next looked at. HTTP/2: one connection per
//! origin, opened by one request while the others wait (`h2_gate`), dropped after `idle_timeout`
//! unused; they are not counted in `max_idle`. The maps are split into
//! shards by origin, each behind its own lock held only to push, pop or evict. An origin's entry
//! outlives its last idle connection (it usually comes back at once); entries with nothing left
//! are swept when a shard reaches 64 origins, and again each time it has doubled since.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};

/// Locks the pool is split into.
const SHARDS: usize = 16;
/// Origins a shard holds before empty entries are first swept.
const SWEEP_AT: usize = 64;

/// A connection to send one request on.
pub(super) enum Conn {
    /// HTTP/1.1: one request at a time; given back to the pool after the response body.
    H1(http1::SendRequest<Full<Bytes>>),
    /// HTTP/2: shared by every request to the origin.
    H2(http2::SendRequest<Full<Bytes>>),
}

struct Idle {
    tx: http1::SendRequest<Full<Bytes>>,
    since: Instant,
}

#[derive(Default)]
struct Origin {
    idle: Vec<Idle>,
    /// The shared HTTP/2 connection and when it was last handed out.
    h2: Option<(http2::SendRequest<Full<Bytes>>, Instant)>,
    /// Held while an HTTP/2 connection to the origin is being opened.
    h2_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// The origin has answered over HTTP/2 before.
    speaks_h2: bool,
    /// Requests to the origin open connections side by side: its first connection negotiated
    /// HTTP/1.1 (or failed), so there is nothing to share.
    ungated: bool,
}

impl Origin {
    /// Nothing worth keeping the entry for (what it remembers about HTTP/2 is a hint only, so the
    /// map does not grow with the number of origins a run has visited).
    fn is_empty(&self) -> bool {
        self.idle.is_empty()
            && self.h2.is_none()
            && self
                .h2_gate
                .as_ref()
                .is_none_or(|g| std::sync::Arc::strong_count(g) <= 1)
    }
}

/// One lock's share of the origins.
struct Shard {
    /// foldhash, not std's SipHash: looked up two or three times per request (callgrind:
    /// SipHash was ~500 instructions per request).
    map: foldhash::HashMap<Arc<str>, Origin>,
    /// Entries with nothing left are swept when a new origin would make the map this large.
    next_sweep: usize,
    /// Idle connections in the order they were given back (when, and to which origin), oldest
    /// first, so a full pool finds its oldest without scanning every origin. Entries whose
    /// connection has since been taken, expired or swept stay until they reach the front (they
    /// are skipped then) or until the queue outgrows `next_compact` and is rebuilt from the map.
    order: VecDeque<(Instant, Arc<str>)>,
    next_compact: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            map: foldhash::HashMap::default(),
            next_sweep: SWEEP_AT,
            order: VecDeque::new(),
            next_compact: SWEEP_AT,
        }
    }
}

impl Shard {
    /// `origin`'s entry, made if missing. A new entry first forgets the origins with nothing left
    /// once the map has grown to `next_sweep` (the map would otherwise grow with every origin a
    /// run has visited); the next sweep waits until the map has doubled again.
    fn entry(&mut self, origin: &str) -> &mut Origin {
        if self.map.len() >= self.next_sweep && !self.map.contains_key(origin) {
            self.map.retain(|_, o| !o.is_empty());
            self.next_sweep = (2 * self.map.len()).max(SWEEP_AT);
        }
        self.map.entry(origin.into()).or_default()
    }

    /// Rebuilds `order` from the idle connections the map holds (dropping stale entries); the
    /// next rebuild waits until the queue has doubled, so each entry costs O(log n) on average.
    fn compact(&mut self) {
        let mut live: Vec<(Instant, Arc<str>)> = self
            .map
            .iter()
            .flat_map(|(k, o)| o.idle.iter().map(move |i| (i.since, k.clone())))
            .collect();
        live.sort_unstable_by_key(|(since, _)| *since);
        self.order = live.into();
        self.next_compact = (2 * self.order.len()).max(SWEEP_AT);
    }

    /// Closes the shard's oldest idle connection, if it has one.
    fn evict_oldest(&mut self) -> bool {
        while let Some((since, key)) = self.order.pop_front() {
            let Some(entry) = self.map.get_mut(&*key) else {
                continue; // swept
            };
            // Connections of an origin are kept in the order they came back, so if this one is
            // still idle it is the origin's first; otherwise it was taken or expired.
            if entry.idle.first().is_some_and(|i| i.since == since) {
                entry.idle.remove(0);
                if entry.is_empty() {
                    self.map.remove(&*key);
                }
                return true;
            }
        }
        false
    }
}

/// The pool; shared by all attempts of a run.
pub(super) struct Pool {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::quality::FixedState,
    /// Idle connections kept, counted against `max_idle`: shared with the pools made by
    /// [`Pool::sharing_budget`], so that together they stay within it.
    idle_count: Arc<AtomicUsize>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Set once no more requests will come: connections are closed after use, not kept.
    closing: AtomicBool,
    /// Some origin has spoken HTTP/2 ([`Pool::share_h2`]): until then no origin's `speaks_h2` is
    /// set, and [`Pool::h2_gate`] need not look (a lock and a lookup per new connection).
    any_h2: AtomicBool,
}

impl Pool {
    pub(super) fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: foldhash::quality::FixedState::default(),
            idle_count: Arc::new(AtomicUsize::new(0)),
            max_idle,
            idle_timeout,
            closing: AtomicBool::new(false),
            any_h2: AtomicBool::new(false),
        }
    }

    /// An empty pool whose idle connections count against this one's `max_idle` (one pool per
    /// engine shard: a host kept to one shard may use the whole budget).
    pub(super) fn sharing_budget(&self) -> Pool {
        Pool {
            idle_count: self.idle_count.clone(),
            ..Pool::new(self.max_idle, self.idle_timeout)
        }
    }

    fn shard_of(&self, origin: &str) -> usize {
        (self.hasher.hash_one(origin) as usize) % SHARDS
    }

    fn shard(&self, origin: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.shard_of(origin);
        // A panic while holding the lock leaves the map consistent (push/pop only).
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to `origin` that looks usable: the shared HTTP/2 one, or the most recently
    /// idled HTTP/1.1 one. It may still turn out closed; the caller then connects anew.
    pub(super) fn checkout(&self, origin: &str) -> Option<Conn> {
        let now = Instant::now();
        let mut shard = self.shard(origin);
        let entry = shard.map.get_mut(origin)?;
        if let Some((h2, used)) = &mut entry.h2 {
            if !h2.is_closed() && now.duration_since(*used) < self.idle_timeout {
                *used = now;
                return Some(Conn::H2(h2.clone()));
            }
            entry.h2 = None;
        }
        let mut found = None;
        while let Some(idle) = entry.idle.pop() {
            self.idle_count.fetch_sub(1, Relaxed);
            if !idle.tx.is_closed() && now.duration_since(idle.since) < self.idle_timeout {
                found = Some(Conn::H1(idle.tx));
                break;
            }
        }
        // An emptied entry stays: the connection usually comes back at once, and re-inserting the
        // origin would allocate its key again. Empty entries are swept when the shard grows.
        found
    }

    /// Keeps a new HTTP/2 connection for the origin's later requests.
    pub(super) fn share_h2(&self, origin: &str, tx: &http2::SendRequest<Full<Bytes>>) {
        let mut shard = self.shard(origin);
        let entry = shard.entry(origin);
        entry.h2 = Some((tx.clone(), Instant::now()));
        entry.speaks_h2 = true;
        self.any_h2.store(true, Relaxed);
    }

    /// The lock to hold while opening a connection to `origin`, when it will or may be HTTP/2:
    /// `forced`, or the origin answered over HTTP/2 before, or it `negotiates` (https, ALPN) and
    /// has not been [`ungated`](Pool::ungate). One connection is opened, and the others then share
    /// it, as curl waits to learn whether a connection multiplexes: opening one per waiting request
    /// cost a TLS handshake each, and all but one were dropped.
    pub(super) fn h2_gate(
        &self,
        origin: &str,
        forced: bool,
        negotiates: bool,
    ) -> Option<std::sync::Arc<tokio::sync::Mutex<()>>> {
        if !forced && !negotiates && !self.any_h2.load(Relaxed) {
            return None;
        }
        let mut shard = self.shard(origin);
        let known = shard.map.get(origin);
        let gated = forced
            || known.is_some_and(|o| o.speaks_h2)
            || (negotiates && !known.is_some_and(|o| o.ungated));
        if !gated {
            return None;
        }
        let entry = shard.entry(origin);
        Some(entry.h2_gate.get_or_insert_with(Default::default).clone())
    }

    /// Requests to `origin` stop waiting for each other's connection: it spoke HTTP/1.1, or
    /// could not be reached (waiters then try in parallel rather than one after another).
    pub(super) fn ungate(&self, origin: &str) {
        self.shard(origin).entry(origin).ungated = true;
    }

    /// Whether [`Pool::ungate`] was called for `origin` (and its entry kept).
    pub(super) fn is_ungated(&self, origin: &str) -> bool {
        self.shard(origin)
            .map
            .get(origin)
            .is_some_and(|o| o.ungated)
    }

    /// Gives back an HTTP/1.1 connection whose response was read to the end.
    pub(super) fn give_back(&self, origin: &str, tx: http1::SendRequest<Full<Bytes>>) {
        if self.closing.load(Relaxed) {
            return;
        }
        // Not ready although its response was read: the request body may still be going out to a
        // server that answered early and will not read it. Never reuse such a connection.
        if !tx.is_ready() {
            return;
        }
        if self.idle_count.load(Relaxed) >= self.max_idle && !self.evict_oldest(origin) {
            return; // dropping the last handle closes the connection
        }
        self.idle_count.fetch_add(1, Relaxed);
        let idle = Idle {
            tx,
            since: Instant::now(),
        };
        let since = idle.since;
        let mut shard = self.shard(origin);
        // Usually there already: found without allocating its key.
        let key = match shard.map.get_key_value(origin) {
            Some((key, _)) => key.clone(),
            None => {
                shard.entry(origin);
                let (key, _) = shard.map.get_key_value(origin).expect("just made");
                key.clone()
            }
        };
        if let Some(entry) = shard.map.get_mut(&*key) {
            entry.idle.push(idle);
        }
        shard.order.push_back((since, key));
        if shard.order.len() > shard.next_compact {
            shard.compact();
        }
    }

    /// Whether each HTTP/1.1 connection is kept once its request ends, or closed. Turning keeping
    /// off leaves idle ones for requests already started that have not taken one yet.
    pub(super) fn keep(&self, keep: bool) {
        self.closing.store(!keep, Relaxed);
    }

    /// Closes the oldest idle connection of one shard, trying `origin`'s shard first. Only done
    /// when the pool is full; O(1) on average (each shard keeps its connections in order).
    fn evict_oldest(&self, origin: &str) -> bool {
        let first = self.shard_of(origin);
        for i in (0..SHARDS).map(|k| (first + k) % SHARDS) {
            let mut shard = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
            if shard.evict_oldest() {
                self.idle_count.fetch_sub(1, Relaxed);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live HTTP/1.1 connection to an in-process server that answers nothing; the server's
    /// side of each is kept open in `peers`.
    async fn conn(
        listener: &tokio::net::TcpListener,
        peers: &mut Vec<tokio::net::TcpStream>,
    ) -> http1::SendRequest<Full<Bytes>> {
        let addr = listener.local_addr().unwrap();
        let (stream, peer) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        peers.push(peer.unwrap().0);
        let io = hyper_util::rt::TokioIo::new(stream.unwrap());
        let (mut tx, conn) = http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        tx.ready().await.unwrap();
        tx
    }

    #[tokio::test]
    async fn an_origin_that_spoke_h2_is_gated_even_when_nothing_asks_for_h2() {
        let pool = Pool::new(4, Duration::from_secs(90));
        assert!(pool.h2_gate("http://a.test:1", false, false).is_none());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(s).await.unwrap();
            while conn.accept().await.is_some() {}
        });
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (tx, conn) = http2::handshake(super::super::BoxingExecutor, io)
            .await
            .unwrap();
        tokio::spawn(conn);
        pool.share_h2("http://a.test:1", &tx);
        assert!(pool.h2_gate("http://a.test:1", false, false).is_some());
        assert!(pool.h2_gate("http://b.test:1", false, false).is_none());
    }

    #[tokio::test]
    async fn reuses_the_newest_and_evicts_the_oldest_when_full() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peers = Vec::new();
        let pool = Pool::new(2, Duration::from_secs(90));
        pool.give_back("http://a:1", conn(&listener, &mut peers).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
        pool.give_back("http://b:1", conn(&listener, &mut peers).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Full: the oldest (a's) makes room for c's.
        pool.give_back("http://c:1", conn(&listener, &mut peers).await);
        assert_eq!(pool.idle_count.load(Relaxed), 2);
        assert!(pool.checkout("http://a:1").is_none());
        assert!(matches!(pool.checkout("http://b:1"), Some(Conn::H1(_))));
        assert!(matches!(pool.checkout("http://c:1"), Some(Conn::H1(_))));
        assert!(pool.checkout("http://c:1").is_none());
        assert_eq!(pool.idle_count.load(Relaxed), 0);
        assert!(
            pool.shards
                .iter()
                .all(|s| s.lock().unwrap().map.values().all(Origin::is_empty))
        );
    }

    #[tokio::test]
    async fn pools_sharing_a_budget_keep_no_more_idle_than_it_and_either_may_use_all_of_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peers = Vec::new();
        let a = Pool::new(2, Duration::from_secs(90));
        let b = a.sharing_budget();
        // One pool may take the whole budget...
        a.give_back("http://x:1", conn(&listener, &mut peers).await);
        a.give_back("http://x:1", conn(&listener, &mut peers).await);
        // ...and then the other keeps none: it has nothing of its own to evict.
        b.give_back("http://y:1", conn(&listener, &mut peers).await);
        assert!(b.checkout("http://y:1").is_none());
        assert_eq!(b.idle_count.load(Relaxed), 2);
        // Once the first's are taken, the second may keep its own.
        assert!(a.checkout("http://x:1").is_some() && a.checkout("http://x:1").is_some());
        b.give_back("http://y:1", conn(&listener, &mut peers).await);
        assert!(matches!(b.checkout("http://y:1"), Some(Conn::H1(_))));
        assert_eq!(a.idle_count.load(Relaxed), 0);
    }

    /// `n` origin names that land in `shard`.
    fn origins_in(pool: &Pool, shard: usize, prefix: &str, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("http://{prefix}{i}:1"))
            .filter(|o| pool.shard_of(o) == shard)
            .take(n)
            .collect()
    }

    #[tokio::test]
    async fn origins_with_nothing_left_are_forgotten_as_a_shard_grows() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peers = Vec::new();
        let pool = Pool::new(8, Duration::from_secs(90));
        let target = pool.shard_of("http://new:1");
        // Origins visited earlier, all of whose connections are gone, in the same shard.
        for o in origins_in(&pool, target, "old", SWEEP_AT) {
            pool.shard(&o)
                .map
                .insert(o.as_str().into(), Origin::default());
        }
        pool.give_back("http://new:1", conn(&listener, &mut peers).await);
        {
            let shard = pool.shards[target].lock().unwrap();
            assert_eq!(
                shard.map.len(),
                1,
                "{:?}",
                shard.map.keys().collect::<Vec<_>>()
            );
            assert_eq!(shard.map["http://new:1"].idle.len(), 1);
        }
        // HTTP/2 origins are made through the same door.
        for o in origins_in(&pool, target, "h2old", SWEEP_AT) {
            pool.shard(&o)
                .map
                .insert(o.as_str().into(), Origin::default());
        }
        assert!(pool.h2_gate("http://h2new:1", true, false).is_some());
        let len = pool.shards[pool.shard_of("http://h2new:1")]
            .lock()
            .unwrap()
            .map
            .len();
        assert!(len <= SWEEP_AT, "{len} entries kept");
    }

    #[test]
    fn a_shard_full_of_live_origins_is_not_swept_again_until_it_doubles() {
        let pool = Pool::new(8, Duration::from_secs(90));
        let mut shard = pool.shards[0].lock().unwrap();
        // Live entries (an HTTP/2 connection is being opened: the gate is held) are not swept.
        let mut held = Vec::new();
        let mut live = |shard: &mut Shard, name: &str| {
            let gate = std::sync::Arc::new(tokio::sync::Mutex::new(()));
            held.push(gate.clone());
            shard.entry(name).h2_gate = Some(gate);
        };
        for o in origins_in(&pool, 0, "live", SWEEP_AT) {
            live(&mut shard, &o);
        }
        assert_eq!(shard.next_sweep, SWEEP_AT);
        live(&mut shard, "http://one-more:1");
        assert_eq!(shard.map.len(), SWEEP_AT + 1);
        assert_eq!(
            shard.next_sweep,
            2 * SWEEP_AT,
            "swept once, then not before doubling"
        );
        for i in 0..SWEEP_AT - 2 {
            live(&mut shard, &format!("http://more{i}:1"));
        }
        assert_eq!(shard.next_sweep, 2 * SWEEP_AT);
    }

    #[tokio::test]
    async fn a_full_pool_closes_the_oldest_still_idle_skipping_those_taken() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peers = Vec::new();
        let pool = Pool::new(3, Duration::from_secs(90));
        // Five origins of one shard, given back in this order.
        let o = origins_in(&pool, 5, "o", 5);
        for origin in &o[..3] {
            pool.give_back(origin, conn(&listener, &mut peers).await);
        }
        // o[0] is taken and comes back: now the newest. o[3] then evicts o[1], not o[0].
        assert!(pool.checkout(&o[0]).is_some());
        pool.give_back(&o[0], conn(&listener, &mut peers).await);
        pool.give_back(&o[3], conn(&listener, &mut peers).await);
        assert!(
            pool.checkout(&o[1]).is_none(),
            "the oldest idle one was closed"
        );
        // o[4] evicts o[2], the oldest left; o[0] and o[3] stay.
        pool.give_back(&o[4], conn(&listener, &mut peers).await);
        assert!(pool.checkout(&o[2]).is_none());
        for origin in [&o[0], &o[3], &o[4]] {
            assert!(pool.checkout(origin).is_some(), "{origin}");
        }
        assert_eq!(pool.idle_count.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn the_order_queue_is_rebuilt_before_it_outgrows_what_is_idle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peers = Vec::new();
        let pool = Pool::new(8, Duration::from_secs(90));
        let origin = "http://one:1";
        let mut tx = conn(&listener, &mut peers).await;
        // One connection taken and given back many times: one live entry, the rest stale.
        for _ in 0..10 * SWEEP_AT {
            pool.give_back(origin, tx);
            tx = match pool.checkout(origin) {
                Some(Conn::H1(tx)) => tx,
                _ => panic!("the connection was kept"),
            };
        }
        let shard = pool.shards[pool.shard_of(origin)].lock().unwrap();
        assert!(
            shard.order.len() <= 2 * SWEEP_AT + 1,
            "{}",
            shard.order.len()
        );
    }

    #[tokio::test]
    async fn expired_connections_are_not_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peers = Vec::new();
        let pool = Pool::new(8, Duration::from_millis(20));
        pool.give_back("http://a:1", conn(&listener, &mut peers).await);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(pool.checkout("http://a:1").is_none());
        assert_eq!(pool.idle_count.load(Relaxed), 0);
    }
}
