//! `asyncio.Semaphore`: a global limit on requests in flight, and a limit per host.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! everyone = asyncio.Semaphore(12)
//! per_host = collections.defaultdict(lambda: asyncio.Semaphore(4))
//!
//! async def fetch(session, url):
//!     async with everyone, per_host[urlsplit(url).netloc]:
//!         async with session.get(url) as r:
//!             return r.status, await r.read()
//! ```
//!
//! In fanout the limits are configuration: `concurrency` (`-c`) for the whole run and `per_host`
//! (`--per-host`) for each `host:port`. A request whose host is full waits aside while requests
//! for other hosts go ahead, so a slow host does not hold up the rest. Two test servers on two
//! ports are two hosts here; each server reports the most requests it saw at once.
//!
//! Run: `cargo run --example semaphore` (starts the built-in test server twice, on 127.0.0.1).

use std::time::Duration;

use fanout::serve::{ServeConfig, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let slow = ServeConfig {
        latency: Duration::from_millis(30),
        ..ServeConfig::default()
    };

    // 1. The global limit alone: one host gets up to 12 at once.
    let a = Server::start(slow.clone()).await?;
    let config = fanout::RunConfig::builder().concurrency(12).build()?;
    let summary = run(config, items(&a, 120)?).await?;
    println!(
        "concurrency 12, one host: {} outcomes in {:.2}s; the server saw at most {} at once",
        summary.total,
        summary.elapsed.as_secs_f64(),
        a.stats().max_in_flight()
    );

    // 2. Global 12 and 4 per host, over two hosts: each host sees at most 4, so at most 8 in all.
    let (b, c) = (
        Server::start(slow.clone()).await?,
        Server::start(slow).await?,
    );
    let mut requests = items(&b, 80)?;
    requests.extend(items(&c, 80)?);
    let config = fanout::RunConfig::builder()
        .concurrency(12)
        .per_host(4)
        .build()?;
    let summary = run(config, requests).await?;
    println!(
        "concurrency 12, per host 4, two hosts: {} outcomes in {:.2}s; at most {} and {} at once",
        summary.total,
        summary.elapsed.as_secs_f64(),
        b.stats().max_in_flight(),
        c.stats().max_in_flight()
    );
    assert!(a.stats().max_in_flight() <= 12);
    assert!(b.stats().max_in_flight() <= 4 && c.stats().max_in_flight() <= 4);
    Ok(())
}

/// `n` item requests to `server`.
fn items(server: &Server, n: u32) -> Result<Vec<fanout::Request>, fanout::request::InvalidRequest> {
    (1..=n)
        .map(|i| fanout::Request::get(&server.url(&format!("/item/{i}"))))
        .collect()
}

/// Fetches `requests` and returns the run's summary (the outcomes themselves are not needed).
async fn run(
    config: fanout::RunConfig,
    requests: Vec<fanout::Request>,
) -> Result<fanout::Summary, fanout::RunError> {
    fanout::fetch(config, futures_util::stream::iter(requests))
        .summary()
        .await
}
