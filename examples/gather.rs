//! `asyncio.gather`: fetch many URLs, collect every outcome.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! async with aiohttp.ClientSession() as session:
//!     results = await asyncio.gather(
//!         *[fetch(session, f"{base}/item/{i}") for i in range(1, 501)],
//!         return_exceptions=True)
//! ```
//!
//! `gather` starts every coroutine at once and holds every result in memory; `fanout::fetch` takes
//! a `Stream` of requests, keeps at most `concurrency` in flight, and yields exactly one outcome per
//! request (a response of any status, or a named error kind; never an exception). Collecting the
//! stream into a `Vec` is the `gather`; iterating it instead keeps memory flat.
//!
//! Run: `cargo run --example gather` (starts the built-in test server on 127.0.0.1, port 0).

use std::collections::BTreeMap;
use std::time::Duration;

use fanout::serve::{ServeConfig, Server};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(10),
        ..ServeConfig::default()
    })
    .await?;

    // 500 items, and 20 URLs that answer 404: a 404 is an outcome like any other.
    let mut urls: Vec<String> = (1..=500)
        .map(|i| server.url(&format!("/item/{i}")))
        .collect();
    urls.extend((0..20).map(|i| server.url(&format!("/status/404?n={i}"))));
    let requests = urls
        .iter()
        .map(|u| fanout::Request::get(u))
        .collect::<Result<Vec<_>, _>>()?;

    let config = fanout::RunConfig::builder()
        .concurrency(50)
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut fetch = fanout::fetch(config, futures_util::stream::iter(requests));
    // The `gather`: every outcome, in completion order (`by_ref` keeps `fetch` for its summary).
    let outcomes: Vec<fanout::Outcome> = fetch.by_ref().collect().await;
    let summary = fetch.summary().await?;

    let mut by_status = BTreeMap::new();
    for o in &outcomes {
        *by_status.entry(o.status).or_insert(0) += 1;
    }
    println!("{} requests, {} outcomes", urls.len(), outcomes.len());
    for (status, n) in &by_status {
        let status = status.map_or("none".to_owned(), |s| s.to_string());
        println!("  status {status}: {n}");
    }
    let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
    println!("  error kinds: {errors}");
    println!(
        "server saw {} requests, at most {} at once",
        server.stats().requests(),
        server.stats().max_in_flight()
    );
    print!("{summary}");
    assert_eq!(outcomes.len(), urls.len(), "one outcome per request");
    Ok(())
}
