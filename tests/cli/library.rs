//! The library in-process, without the binary: `fanout::fetch` and the engine API against the
//! in-process `fanout::serve::Server` on 127.0.0.1.
//!
//! Where time matters (backoff, rate, `Retry-After`) the tests run on tokio's paused clock, which the
//! engine reads for all its admission, limit, pause and retry decisions. Real sockets and a paused
//! clock get along only under two conditions, both met here:
//! - The server runs on the test's own current-thread runtime (`Server::start` inside the test).
//!   tokio advances a paused clock only when the runtime is idle and polling I/O finds nothing
//!   ready; loopback I/O between two tasks of one runtime is ready at once, so no virtual time
//!   passes while a request and its response travel, and timeouts do not fire spuriously. A server
//!   on another runtime (the harness's) would answer from another thread, and the clock would jump
//!   to the next timer while the client waits.
//! - They drive the engine API (`Engine::run`) with an input stream they control, not
//!   `fanout::fetch`: the pipeline's recorder times its batching on std's clock, which does not
//!   move with the paused one.
//!
//! Virtual time is then exact (to the timer wheel's 1 ms rounding): an outcome's `total` is the
//! virtual time since its first attempt started, and the instant it arrives minus its `total` is
//! when that attempt was sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use fanout::engine::hosts::Rate;
use fanout::engine::{Engine, EngineConfig, Event, Item, Phase, StopReason};
use fanout::serve::{ServeConfig, Server};
use fanout::stats::Stats;
use fanout::{Outcome, Request, RunConfig, RunEnd};
use futures_util::{StreamExt, stream};
use tokio::time::Instant;

fn item<T>(url: &str, ticket: T) -> Item<T> {
    Item {
        request: Arc::new(Request::get(url).unwrap()),
        ticket,
    }
}

/// Runs `items` through an engine until they end; every event with the time since the start that
/// it arrived. Asserts that the run completed and that every event is an outcome.
async fn outcomes_at<T: Send + 'static>(
    config: EngineConfig,
    items: Vec<Item<T>>,
) -> Vec<(Duration, Outcome, T)> {
    let start = Instant::now();
    let engine = Engine::new(config).unwrap();
    let (mut events, running) =
        engine.run(Stats::new(), stream::iter(items), std::future::pending());
    let mut out = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Event::Outcome(o, t) => out.push((start.elapsed(), o, t)),
            Event::Released(_, s) => panic!("released without a stop: {s:?}"),
            Event::Deferred(_, d) => panic!("deferred without hand_back_after: {d:?}"),
        }
    }
    assert_eq!(running.await.unwrap().end, RunEnd::Completed);
    out
}

/// Slack for the timer wheel: each wait ends on the next whole millisecond.
const TICK: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn retries_back_off_with_full_jitter_within_the_bounds() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let mut config = EngineConfig::default();
    config.retry.retries = 3;
    config.retry.backoff_base = Duration::from_secs(1);
    config.retry.backoff_max = Duration::from_secs(3);
    // Ceilings 1 s, 2 s, then 4 s capped at 3 s: each delay is uniform in [0, ceiling].
    let ceilings = Duration::from_secs(1 + 2 + 3);
    let n = 40;
    let items = (0..n)
        .map(|i| item(&server.url(&format!("/fail/3/{i}")), i))
        .collect();
    let outcomes = outcomes_at(config, items).await;
    assert_eq!(outcomes.len(), n);
    let hits = server.stats().hits();
    let mut totals = Vec::new();
    for (at, o, i) in &outcomes {
        assert_eq!(o.status, Some(200), "{o:?}");
        assert_eq!(o.attempts, 4, "three 503s, then the 200: {o:?}");
        assert_eq!(hits[&format!("/fail/3/{i}")], 4);
        // All sent at once at the start: the virtual time is the backoff alone.
        assert!(at.saturating_sub(o.total) <= TICK, "{at:?} {o:?}");
        assert!(
            o.total <= ceilings + 3 * TICK,
            "{:?} is above the sum of the backoff ceilings",
            o.total
        );
        totals.push(o.total.as_secs_f64());
    }
    // Full jitter: the sum of three uniform delays averages half the ceilings (3 s), with a standard
    // deviation of the mean of 0.17 s over 40 requests; no jitter (0 or the ceiling every time) or
    // ceilings that do not double land far outside.
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    assert!((1.5..4.5).contains(&mean), "mean backoff {mean} s");
    totals.sort_by(f64::total_cmp);
    totals.dedup();
    assert!(totals.len() > n / 2, "jittered delays differ: {totals:?}");
}

#[tokio::test(start_paused = true)]
async fn retries_end_after_the_last_with_its_status() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let mut config = EngineConfig::default();
    config.retry.retries = 2;
    config.retry.backoff_base = Duration::from_millis(500);
    let outcomes = outcomes_at(config, vec![item(&server.url("/status/503"), ())]).await;
    let (_, o, ()) = &outcomes[0];
    assert_eq!((o.status, o.attempts), (Some(503), 3), "{o:?}");
    assert_eq!(server.stats().requests(), 3);
    // Ceilings 0.5 s and 1 s.
    assert!(o.total <= Duration::from_millis(1500) + 2 * TICK, "{o:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rate_with_burst_1_spaces_requests_by_its_interval() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let mut config = EngineConfig::default();
    config.limits.rate = Some(Rate::parse("10/s").unwrap());
    config.limits.burst = Some(1);
    let items = (0..30)
        .map(|i| item(&server.url(&format!("/item/{i}")), ()))
        .collect();
    let outcomes = outcomes_at(config, items).await;
    assert_eq!(server.stats().requests(), 30);
    let mut sent: Vec<Duration> = outcomes.iter().map(|(at, o, ())| *at - o.total).collect();
    sent.sort();
    assert_eq!(sent.len(), 30);
    let span = sent[29] - sent[0];
    assert!(
        span >= Duration::from_millis(2900),
        "30 requests in {span:?}"
    );
    // Each wait ends up to a millisecond late, and the bucket counts from when it was spent.
    assert!(span <= Duration::from_millis(2900) + 30 * TICK, "{span:?}");
    // Any window from one request to a later one holds at most burst + rate × its length.
    for i in 0..sent.len() {
        for j in i + 1..sent.len() {
            let requests = (j - i + 1) as f64;
            let allowed = 1.0 + 10.0 * (sent[j] - sent[i]).as_secs_f64();
            assert!(
                requests <= allowed + 1e-9,
                "{requests} requests within {:?}",
                sent[j] - sent[i]
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_the_host_until_it_passes() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let mut config = EngineConfig::default();
    // One at a time: while `a` waits for its retry it is not in flight, so only the host's pause
    // can hold `b` and `c` back.
    config.concurrency = 1;
    // Backoff alone would retry within a millisecond.
    config.retry.backoff_base = TICK;
    let items = vec![
        item(&server.url("/retry-after/2/a"), 'a'),
        item(&server.url("/item/b"), 'b'),
        item(&server.url("/item/c"), 'c'),
    ];
    let outcomes = outcomes_at(config, items).await;
    let two = Duration::from_secs(2);
    let by: HashMap<char, (Duration, &Outcome)> =
        outcomes.iter().map(|(at, o, t)| (*t, (*at, o))).collect();
    let (a_at, a) = by[&'a'];
    assert_eq!((a.status, a.attempts), (Some(200), 2), "{a:?}");
    assert_eq!(server.stats().hits()["/retry-after/2/a"], 2);
    assert!(
        a_at.saturating_sub(a.total) <= TICK,
        "first sent at the start"
    );
    assert!(
        a.total >= two,
        "retried after {:?}, before Retry-After",
        a.total
    );
    assert!(a.total <= two + 2 * TICK, "retried late: {:?}", a.total);
    for t in ['b', 'c'] {
        let (at, o) = by[&t];
        assert_eq!(o.status, Some(200));
        assert!(
            at - o.total >= two,
            "{t} sent at {:?}, while the host was paused",
            at - o.total
        );
    }
}

/// GET requests for `/item/0` .. `/item/{n-1}` on `server`.
fn items(server: &Server, n: usize) -> Vec<Request> {
    (0..n)
        .map(|i| Request::get(&server.url(&format!("/item/{i}"))).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_yields_one_outcome_per_request() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let requests = items(&server, 500);
    let mut expected: Vec<String> = requests.iter().map(|r| r.key.clone()).collect();
    let mut fetch = fanout::fetch(RunConfig::default(), stream::iter(requests));
    let mut keys = Vec::new();
    while let Some(o) = fetch.next().await {
        assert_eq!(o.status, Some(200), "{o:?}");
        keys.push(o.key);
    }
    let summary = fetch.summary().await.unwrap();
    assert_eq!((summary.total, summary.end), (500, RunEnd::Completed));
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected, "one outcome per key");
    assert_eq!(server.stats().requests(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_keeps_requests_in_flight_within_the_concurrency() {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(2),
        ..ServeConfig::default()
    })
    .await
    .unwrap();
    let config = RunConfig {
        concurrency: 4,
        ..RunConfig::default()
    };
    let mut fetch = fanout::fetch(config, stream::iter(items(&server, 300)));
    let mut read = 0;
    while let Some(o) = fetch.next().await {
        assert_eq!(o.status, Some(200));
        read += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(read, 300);
    assert_eq!(fetch.summary().await.unwrap().end, RunEnd::Completed);
    let peak = server.stats().max_in_flight();
    assert!((1..=4).contains(&peak), "{peak} requests in flight at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_fetch_stops_its_requests() {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(20),
        ..ServeConfig::default()
    })
    .await
    .unwrap();
    let config = RunConfig {
        concurrency: 4,
        ..RunConfig::default()
    };
    let n = 2000;
    let mut fetch = fanout::fetch(config, stream::iter(items(&server, n)));
    for _ in 0..10 {
        assert_eq!(fetch.next().await.unwrap().status, Some(200));
    }
    drop(fetch);
    // Requests already on the wire may still arrive for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = server.stats().requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.stats().requests();
    assert_eq!(before, after, "requests kept coming after the drop");
    assert!(before < n as u64 / 4, "{before} of {n} were sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_gives_each_ticket_back_once() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let mut config = EngineConfig::default();
    config.concurrency = 16;
    let n = 300;
    let items = (0..n)
        .map(|i| item(&server.url(&format!("/item/{i}")), i))
        .collect();
    let outcomes = outcomes_at(config, items).await;
    let mut seen = vec![0; n];
    for (_, o, i) in &outcomes {
        assert!(o.url.ends_with(&format!("/item/{i}")), "ticket {i}: {o:?}");
        seen[*i] += 1;
    }
    assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
}

/// Tasks alive on each shard's runtime, sampled once `in_flight` requests have reached the
/// server (each shard also runs a feeder task while a run uses it).
async fn tasks_per_shard_in_flight(
    config: EngineConfig,
    server: &Server,
    handles: &[tokio::runtime::Handle],
    in_flight: u64,
    n: usize,
    path: &str,
    close: bool,
) -> (Vec<usize>, Vec<(Duration, Outcome, usize)>) {
    let before = server.stats().requests();
    let items = (0..n)
        .map(|i| {
            let mut request = Request::get(&server.url(&format!("{path}?i={i}"))).unwrap();
            if close {
                // The server then closes each connection after its response, and says so.
                request
                    .headers
                    .insert(http::header::CONNECTION, "close".parse().unwrap());
            }
            Item {
                request: Arc::new(request),
                ticket: i,
            }
        })
        .collect();
    let run = tokio::spawn(outcomes_at(config, items));
    while server.stats().requests() - before < in_flight {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tasks = handles
        .iter()
        .map(|h| h.metrics().num_alive_tasks())
        .collect();
    (tasks, run.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_keep_a_host_on_one_unless_it_is_busy_over_http1_or_closes_every_connection() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let shards = fanout::engine::Shards::start(2).unwrap();
    let handles = shards.handles().to_vec();
    let config = |http2: bool| {
        let mut config = EngineConfig::default();
        config.concurrency = 16;
        config.shards = handles.clone();
        if http2 {
            config.client.http_version = fanout::engine::client::HttpVersion::Http2;
        }
        config
    };
    let once = |outcomes: &[(Duration, Outcome, usize)], n: usize| {
        let mut seen = vec![0; n];
        for (_, o, i) in outcomes {
            assert_eq!(o.status, Some(200), "{o:?}");
            seen[*i] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    };

    // A run with no shards runs on the caller's runtime: the shards' runtimes stay empty.
    let conns = server.stats().connections();
    let mut plain = config(true);
    plain.shards = Vec::new();
    let (tasks, outcomes) =
        tasks_per_shard_in_flight(plain, &server, &handles, 16, 32, "/delay/300", false).await;
    once(&outcomes, 32);
    assert_eq!(tasks, [0, 0]);
    assert_eq!(server.stats().connections() - conns, 1);

    // HTTP/2 (prior knowledge): one connection to the origin, so its requests all run on the
    // shard whose pool has it; the other runs only its feeder.
    let conns = server.stats().connections();
    let (tasks, outcomes) =
        tasks_per_shard_in_flight(config(true), &server, &handles, 16, 32, "/delay/300", false)
            .await;
    once(&outcomes, 32);
    assert_eq!(server.stats().connections() - conns, 1);
    let mut sorted = tasks.clone();
    sorted.sort();
    assert_eq!(sorted[0], 1, "one shard idle over HTTP/2: {tasks:?}");
    assert!(
        sorted[1] > 16,
        "16 workers and a connection on the other: {tasks:?}"
    );

    // HTTP/1.1 to one host that keeps its connections, with few requests in flight (8, the
    // most that stay home): on its home shard too.
    let conns = server.stats().connections();
    let mut few = config(false);
    few.concurrency = 8;
    let (tasks, outcomes) =
        tasks_per_shard_in_flight(few, &server, &handles, 8, 16, "/delay/300", false).await;
    once(&outcomes, 16);
    let mut sorted = tasks.clone();
    sorted.sort();
    assert_eq!(sorted[0], 1, "one shard idle with 8 in flight: {tasks:?}");
    assert!(server.stats().connections() - conns <= 8);

    // A busier one (16 in flight): spread over both shards (plain http keeps alive from the
    // first request), and its connections reused: far fewer than its 48 requests. Sampled in
    // the second wave.
    let conns = server.stats().connections();
    let (tasks, outcomes) = tasks_per_shard_in_flight(
        config(false),
        &server,
        &handles,
        24,
        48,
        "/delay/300",
        false,
    )
    .await;
    once(&outcomes, 48);
    assert!(
        tasks.iter().all(|&t| t > 4),
        "workers on both shards over keep-alive: {tasks:?}"
    );
    let opened = server.stats().connections() - conns;
    assert!(opened <= 20, "{opened} connections for 16 in flight");

    // One that closes every connection: once its first responses said so, its requests (each a
    // new connection) are spread over both shards. Sampled in the second wave.
    let (tasks, outcomes) =
        tasks_per_shard_in_flight(config(false), &server, &handles, 24, 48, "/delay/300", true)
            .await;
    once(&outcomes, 48);
    assert!(
        tasks.iter().all(|&t| t > 4),
        "workers on both shards: {tasks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_move_to_the_shard_of_the_host_at_hand_past_twice_the_concurrency() {
    // Three HTTP/2 origins one after the other, on three shards: their homes are the first,
    // second and third shard (unless two keys hash to one of 4,096 slots). At -c 4 the first
    // two leave idle workers on their shards; the third's requests need 4 on the third shard,
    // and a run may have 8 at most: past that, idle ones of the others end.
    let servers = [
        Server::start(ServeConfig::default()).await.unwrap(),
        Server::start(ServeConfig::default()).await.unwrap(),
        Server::start(ServeConfig::default()).await.unwrap(),
    ];
    let shards = fanout::engine::Shards::start(3).unwrap();
    let mut config = EngineConfig::default();
    config.concurrency = 4;
    config.shards = shards.handles().to_vec();
    config.client.http_version = fanout::engine::client::HttpVersion::Http2;
    // Each origin's 8 requests, 4 in flight at once, slow enough to need 4 workers; a pause after
    // each origin's, so that its workers are idle when the next one's come.
    let phase = |k: usize, path: &'static str| {
        let items: Vec<_> = (0..8)
            .map(|i| item(&servers[k].url(&format!("{path}?i={i}")), 8 * k + i))
            .collect();
        stream::iter(items).chain(
            stream::once(tokio::time::sleep(Duration::from_millis(600)))
                .filter_map(|_| async { None }),
        )
    };
    let items = phase(0, "/delay/100")
        .chain(phase(1, "/delay/100"))
        .chain(phase(2, "/delay/400"));
    let engine = Engine::new(config).unwrap();
    let (events, running) = engine.run(Stats::new(), items, std::future::pending());
    let run = tokio::spawn(async move {
        let outcomes: Vec<_> = events.collect().await;
        assert_eq!(running.await.unwrap().end, RunEnd::Completed);
        outcomes
    });
    while servers[2].stats().requests() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The moved workers' tasks end as their mailboxes close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tasks: Vec<usize> = shards
        .handles()
        .iter()
        .map(|h| h.metrics().num_alive_tasks())
        .collect();
    let outcomes = run.await.unwrap();
    assert_eq!(outcomes.len(), 24);
    assert!(
        outcomes
            .iter()
            .all(|e| matches!(e, Event::Outcome(o, _) if o.status == Some(200)))
    );
    // At most 8 workers, 3 feeders, each origin's connection (hyper's two tasks) and the 4
    // requests in flight on the third's (without the move, 2 more workers stay).
    assert!(
        tasks.iter().sum::<usize>() <= 8 + 3 + 3 * 2 + 4,
        "{tasks:?}"
    );
    // Its 4 workers are on the third shard.
    assert!(tasks[2] >= 4 + 1 + 2 + 4 - 1, "{tasks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_releases_every_unfinished_ticket_once() {
    let server = Server::start(ServeConfig::default()).await.unwrap();
    let mut config = EngineConfig::default();
    config.concurrency = 4;
    config.grace = Duration::from_millis(50);
    // Tickets 0-3 answer at once; the rest take far longer than the test.
    let n = 40;
    let items: Vec<Item<usize>> = (0..n)
        .map(|i| match i {
            0..4 => item(&server.url(&format!("/item/{i}")), i),
            _ => item(&server.url(&format!("/delay/60000?{i}")), i),
        })
        .collect();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let input = stream::iter(items).inspect(move |_| {
        counter.fetch_add(1, Relaxed);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = stop_rx.await;
        StopReason::Interrupted
    };
    let (mut events, running) = Engine::new(config).unwrap().run(Stats::new(), input, stop);
    // The four quick ones, then four slow ones in flight (admitted in input order, one host).
    let stats = server.stats().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.requests() < 8 {
        assert!(Instant::now() < deadline, "{} requests", stats.requests());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send(()).unwrap();

    let mut outcomes = Vec::new();
    let mut in_flight = Vec::new();
    let mut waiting = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Event::Outcome(o, i) => {
                assert_eq!(o.status, Some(200), "{o:?}");
                outcomes.push(i);
            }
            Event::Released(i, s) => {
                assert_eq!(s.reason(), StopReason::Interrupted);
                if s.attempted() {
                    assert_eq!(s.phase(), Phase::InFlight, "ticket {i}");
                    in_flight.push(i);
                } else {
                    assert_eq!(s.phase(), Phase::WaitingForHost, "ticket {i}");
                    waiting.push(i);
                }
            }
            Event::Deferred(_, d) => panic!("deferred without hand_back_after: {d:?}"),
        }
    }
    assert_eq!(running.await.unwrap().end, RunEnd::Interrupted);
    assert_eq!(pulled.load(Relaxed), n, "the whole input was taken");
    outcomes.sort();
    in_flight.sort();
    waiting.sort();
    assert_eq!(outcomes, [0, 1, 2, 3]);
    assert_eq!(
        in_flight,
        [4, 5, 6, 7],
        "the slow ones in flight, cut after the grace"
    );
    assert_eq!(waiting, (8..n).collect::<Vec<_>>());
}

/// A sink whose every write takes 50 ms: the recorder fills the next batch while one is written
/// (and goes on in the written batch's vector once that write ends), and every outcome still
/// reaches the sink exactly once, in batches no larger than a full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_gets_every_outcome_once_while_the_next_batch_fills() {
    use fanout::sink::{Batch, Opened, RunInfo, Sink, SinkError};
    use futures_util::future::BoxFuture;
    use std::sync::Mutex;

    struct Slow(Arc<Mutex<Vec<Vec<String>>>>);
    impl Sink for Slow {
        fn target(&self) -> &str {
            "slow"
        }
        fn begin_run<'a>(&'a mut self, _: &'a RunInfo) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async { Ok(()) })
        }
        fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let keys = batch.iter().map(|o| o.key.clone()).collect();
                self.0.lock().unwrap().push(keys);
                Ok(())
            })
        }
        fn end_run<'a>(
            &'a mut self,
            _: &'a fanout::Summary,
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async { Ok(()) })
        }
    }

    let server = Server::start(ServeConfig::default()).await.unwrap();
    let requests = items(&server, 20_000);
    let mut expected: Vec<String> = requests.iter().map(|r| r.key.clone()).collect();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let sinks = vec![Opened {
        sink: Box::new(Slow(batches.clone())),
        journal: None,
    }];
    let summary = fanout::pipeline::run_with_sinks(
        fanout::source::Source::from_requests(requests.into_iter()),
        RunConfig::default(),
        sinks,
        Stats::new(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!((summary.total, summary.end), (20_000, RunEnd::Completed));
    let batches = batches.lock().unwrap();
    assert!(batches.len() > 1, "{} batches", batches.len());
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 8192));
    let mut keys: Vec<String> = batches.iter().flatten().cloned().collect();
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected, "every outcome once");
}
