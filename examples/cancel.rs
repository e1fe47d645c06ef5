//! Cancellation: stop the run on a condition, here after the first 100 HTTP 500s.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! tasks = [asyncio.create_task(fetch(session, u)) for u in urls]
//! failures = 0
//! for next_done in asyncio.as_completed(tasks):
//!     if (await next_done).status >= 500:
//!         failures += 1
//!         if failures == 100:
//!             for t in tasks: t.cancel()
//!             break
//! ```
//!
//! `Fetch::stop()` (or a `stopper()` token handed to another task) stops the run as Ctrl-C does:
//! nothing new starts, requests in flight get the grace period (`grace`, `--grace`) to finish, and
//! those still unfinished then come out as `cancelled` outcomes; requests never sent get no outcome
//! at all (a rerun against the same store would fetch them). Every request is accounted for, which
//! `task.cancel()` does not give you. A 500 is a response, not an error kind: it is counted here
//! by status. One request in ten goes to a slow route so that some are in flight at the stop.
//!
//! Run: `cargo run --example cancel` (starts the built-in test server on 127.0.0.1, port 0).

use std::time::Duration;

use fanout::serve::{ServeConfig, Server};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(5),
        ..ServeConfig::default()
    })
    .await?;

    let total = 5000;
    let requests = (0..total)
        .map(|i| {
            let path = if i % 10 == 0 {
                format!("/delay/3000?n={i}")
            } else {
                format!("/status/500?n={i}")
            };
            fanout::Request::get(&server.url(&path))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = fanout::RunConfig::builder()
        .concurrency(32)
        .grace(Duration::from_millis(200))
        .build()?;
    let mut fetch = fanout::fetch(config, futures_util::stream::iter(requests));

    let (mut errors, mut after_stop, mut cancelled) = (0, 0, 0);
    while let Some(o) = fetch.next().await {
        if o.error == Some(fanout::ErrorKind::Cancelled) {
            cancelled += 1;
        } else if o.status.is_some_and(|s| s >= 500) {
            errors += 1;
            if errors == 100 {
                fetch.stop();
            } else if errors > 100 {
                after_stop += 1; // already done but not read yet, or finished within the grace
            }
        }
    }
    let summary = fetch.summary().await?;
    println!("stopped after 100 HTTP 500s; run {}", summary.end.as_str());
    println!("  {after_stop} more 500s read after stop() (done already, or finished in the grace)");
    println!("  {cancelled} cancelled (slow requests still in flight when the grace ran out)");
    println!(
        "  {} of {total} never sent (no outcome); the server saw {} requests",
        total - summary.total,
        server.stats().requests()
    );
    assert_eq!(summary.end, fanout::RunEnd::Interrupted);
    assert!(summary.total < total);
    Ok(())
}
