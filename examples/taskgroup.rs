//! `asyncio.TaskGroup`: two runs side by side, wait for both.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! async with asyncio.TaskGroup() as tg:
//!     items = tg.create_task(fetch_all(session, item_urls))
//!     slow = tg.create_task(fetch_all(session, slow_urls))
//! print(items.result(), slow.result())
//! ```
//!
//! Each `fanout::fetch` is a run of its own, with its own limits, counters and summary; both
//! progress at once on the same tokio runtime, and `tokio::join!` waits for both. Dropping a
//! `Fetch` stops its run at once: with `tokio::try_join!` on the two summaries, an error in one
//! drops, and so stops, the other, as a `TaskGroup` cancels its other tasks. The whole takes about
//! as long as the longer run, not the sum.
//!
//! Run: `cargo run --example taskgroup` (starts the built-in test server twice, on 127.0.0.1).

use std::time::{Duration, Instant};

use fanout::serve::{ServeConfig, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fast = Server::start(ServeConfig {
        latency: Duration::from_millis(2),
        ..ServeConfig::default()
    })
    .await?;
    let slow = Server::start(ServeConfig::default()).await?;

    let items = (1..=1000)
        .map(|i| fanout::Request::get(&fast.url(&format!("/item/{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let delays = (0..40)
        .map(|i| fanout::Request::get(&slow.url(&format!("/delay/200?n={i}"))))
        .collect::<Result<Vec<_>, _>>()?;

    let started = Instant::now();
    let items = fanout::fetch(
        fanout::RunConfig::builder().concurrency(50).build()?,
        futures_util::stream::iter(items),
    );
    let delays = fanout::fetch(
        fanout::RunConfig::builder().concurrency(10).build()?,
        futures_util::stream::iter(delays),
    );
    // Wait for both, whatever each returns; `tokio::try_join!` would return at the first error
    // and drop (so stop) the other run, as a TaskGroup cancels its other tasks.
    let (items, delays) = tokio::join!(items.summary(), delays.summary());
    let (items, delays) = (items?, delays?);

    println!(
        "items:  {} outcomes in {:.2}s",
        items.total,
        items.elapsed.as_secs_f64()
    );
    println!(
        "delays: {} outcomes in {:.2}s",
        delays.total,
        delays.elapsed.as_secs_f64()
    );
    println!(
        "both done in {:.2}s (about the longer one, not the sum)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((items.total, delays.total), (1000, 40));
    Ok(())
}
