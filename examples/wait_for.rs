//! `asyncio.wait_for` and `asyncio.timeout`: a time limit on each attempt, and one on the whole run.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! async def fetch(session, url):
//!     try:
//!         return await asyncio.wait_for(session.get(url), timeout=0.2)
//!     except asyncio.TimeoutError:
//!         return None
//!
//! async with asyncio.timeout(1.0):          # the whole batch
//!     results = await asyncio.gather(*[fetch(session, u) for u in urls])
//! ```
//!
//! In fanout, `timeout` (`--timeout`) bounds one attempt, from sending to the last body byte, and
//! an attempt that runs over is the outcome `timeout` (retried if `retries` allows; here it does
//! not). `deadline` (`--deadline`) bounds the run: when it passes, requests in flight or already
//! taken from the stream end as `deadline` outcomes, the rest of the stream is not read, and the
//! summary says `deadline`. Unlike `asyncio.timeout` around a `gather`, nothing is lost: every
//! request taken has its outcome.
//!
//! Run: `cargo run --example wait_for` (starts the built-in test server on 127.0.0.1, port 0).

use std::collections::BTreeMap;
use std::time::Duration;

use fanout::serve::{ServeConfig, Server};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(ServeConfig::default()).await?;

    // 1. Per attempt: every fifth request goes to a route that answers after 2 s.
    let requests = (0..50)
        .map(|i| {
            let path = if i % 5 == 0 {
                "/delay/2000"
            } else {
                "/delay/20"
            };
            fanout::Request::get(&server.url(&format!("{path}?n={i}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = fanout::RunConfig::builder()
        .concurrency(20)
        .timeout(Duration::from_millis(200))
        .retries(0)
        .build()?;
    let (counts, summary) = run(config, requests).await?;
    println!(
        "timeout 200ms: {counts:?} in {:.2}s",
        summary.elapsed.as_secs_f64()
    );

    // 2. Whole run: 100 requests of 300 ms, 5 at a time, would take 6 s; the deadline is 1 s.
    let requests = (0..100)
        .map(|i| fanout::Request::get(&server.url(&format!("/delay/300?n={i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let config = fanout::RunConfig::builder()
        .concurrency(5)
        .deadline(Duration::from_secs(1))
        .build()?;
    let (counts, summary) = run(config, requests).await?;
    println!(
        "deadline 1s: {counts:?} in {:.2}s; run {}; {} of 100 never taken from the stream",
        summary.elapsed.as_secs_f64(),
        summary.end.as_str(),
        100 - summary.total
    );
    assert_eq!(summary.end, fanout::RunEnd::Deadline);
    Ok(())
}

/// Fetches `requests`; outcomes counted by status or error kind, and the summary.
async fn run(
    config: fanout::RunConfig,
    requests: Vec<fanout::Request>,
) -> Result<(BTreeMap<String, u32>, fanout::Summary), fanout::RunError> {
    let mut fetch = fanout::fetch(config, futures_util::stream::iter(requests));
    let mut counts = BTreeMap::new();
    while let Some(o) = fetch.next().await {
        let label = match (o.status, o.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(kind)) => kind.as_str().to_owned(),
            (None, None) => "?".to_owned(),
        };
        *counts.entry(label).or_insert(0) += 1;
    }
    Ok((counts, fetch.summary().await?))
}
