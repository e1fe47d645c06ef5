//! A background status task: progress printed every 200 ms while the run goes.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! async def report(done, started):
//!     while True:
//!         await asyncio.sleep(0.2)
//!         print(f"{done[0]} done, {done[0] / (time.monotonic() - started):.0f}/s")
//!
//! reporter = asyncio.create_task(report(done, time.monotonic()))
//! await asyncio.gather(*[fetch(session, u, done) for u in urls])
//! reporter.cancel()
//! ```
//!
//! fanout keeps the counters itself: `Fetch::stats()` hands out the shared live counters, which a
//! task reads with `progress()` at any time (outcomes recorded, requests in flight, errors,
//! retries, elapsed time) without slowing the run; no counting in the fetch code.
//!
//! Run: `cargo run --example background` (starts the built-in test server on 127.0.0.1, port 0).

use std::time::Duration;

use fanout::serve::{ServeConfig, Server};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(20),
        ..ServeConfig::default()
    })
    .await?;

    // 2,000 requests of 20 ms, 40 at a time: about a second; one in ten answers 503 (retried).
    let requests = (1..=2000)
        .map(|i| {
            let path = if i % 10 == 0 {
                format!("/fail-once/{i}")
            } else {
                format!("/item/{i}")
            };
            fanout::Request::get(&server.url(&path))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = fanout::RunConfig::builder()
        .concurrency(40)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()?;
    let mut fetch = fanout::fetch(config, futures_util::stream::iter(requests));

    let stats = fetch.stats();
    let reporter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            let p = stats.progress();
            let rate = p.recorded as f64 / p.elapsed.as_secs_f64().max(1e-3);
            println!(
                "[{:>5.2}s] {:>5} recorded, {:>3} in flight, {} retries, {} errors, {rate:.0} req/s",
                p.elapsed.as_secs_f64(),
                p.recorded,
                p.in_flight,
                p.retries,
                p.errors
            );
        }
    });

    let mut ok = 0;
    while let Some(outcome) = fetch.next().await {
        ok += usize::from(outcome.status == Some(200));
    }
    reporter.abort(); // the `reporter.cancel()`
    let summary = fetch.summary().await?;
    println!("{ok} answered 200");
    print!("{summary}");
    assert_eq!(ok, 2000);
    Ok(())
}
