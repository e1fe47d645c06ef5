//! `asyncio.Queue` with workers: a tiny crawler whose responses feed new requests back in.
//!
//! The asyncio code it replaces:
//!
//! ```python
//! queue, seen = asyncio.Queue(maxsize=16), {1}
//! async def worker():
//!     while True:
//!         page = await queue.get()
//!         body = await fetch(session, f"{base}/item/{page}")
//!         for link in links(body):
//!             if len(seen) < BUDGET and link not in seen:
//!                 seen.add(link); await queue.put(link)
//!         queue.task_done()
//! workers = [asyncio.create_task(worker()) for _ in range(8)]
//! await queue.put(1); await queue.join()
//! ```
//!
//! Here the request source is a bounded `tokio::sync::mpsc` channel turned into a `Stream`, and
//! fanout's workers replace the Python ones. Bodies are kept (`BodyMode::Store`, as
//! `--body store`), so each outcome's body can be read for links. The test server's pages have no
//! links, so they are made up from the page's id, deterministically: page N, read from the `id` of
//! `/item/N`'s JSON, links to 2N and 2N+1 (a binary tree, crawled breadth first). A visited set
//! and a page budget end the crawl; when nothing is left to send and nothing is in flight, the
//! sender is dropped, the stream ends, and so does the run.
//!
//! Discovered pages wait in a local frontier and are sent only when the channel has room
//! (`reserve`) while outcomes keep being read: awaiting `send` on a full channel while the run
//! waits for its outcomes to be read would deadlock.
//!
//! Run: `cargo run --example queue` (starts the built-in test server on 127.0.0.1, port 0).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use fanout::engine::BodyMode;
use fanout::serve::{ServeConfig, Server};
use futures_util::StreamExt;

/// Pages fetched at most.
const BUDGET: usize = 200;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(5),
        ..ServeConfig::default()
    })
    .await?;

    let (tx, requests) = fanout::source::channel(16);
    let config = fanout::RunConfig::builder()
        .concurrency(8)
        .body_mode(BodyMode::Store)
        .build()?;
    let mut fetch = fanout::fetch(config, requests);

    let mut visited = HashSet::from([1u64]);
    let mut frontier = VecDeque::from([1u64]);
    let (mut pending, mut fetched, mut over_budget) = (0usize, 0usize, 0usize);
    while !(frontier.is_empty() && pending == 0) {
        tokio::select! {
            permit = tx.reserve(), if !frontier.is_empty() => {
                let page = frontier.pop_front().unwrap_or_default();
                permit?.send(fanout::Request::get(&server.url(&format!("/item/{page}")))?);
                pending += 1;
            }
            outcome = fetch.next(), if pending > 0 => {
                let Some(outcome) = outcome else { break };
                pending -= 1;
                fetched += 1;
                for link in links(&outcome) {
                    if visited.contains(&link) {
                        continue;
                    }
                    if visited.len() < BUDGET {
                        visited.insert(link);
                        frontier.push_back(link);
                    } else {
                        over_budget += 1;
                    }
                }
            }
        }
    }
    drop(tx); // the stream ends, and the run with it
    let summary = fetch.summary().await?;

    let deepest = visited.iter().max().copied().unwrap_or(1);
    println!("crawled {fetched} pages (budget {BUDGET}), deepest page {deepest}");
    println!("{over_budget} links left unvisited because the budget was spent");
    println!(
        "the server saw {} requests; run {}",
        server.stats().requests(),
        summary.end.as_str()
    );
    assert_eq!(fetched, BUDGET);
    assert_eq!(server.stats().requests(), BUDGET as u64);
    Ok(())
}

/// The links of a page: its body's `id` N gives 2N and 2N+1 (the test server's pages have none).
fn links(outcome: &fanout::Outcome) -> Vec<u64> {
    let id = outcome
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|doc| doc["id"].as_str().and_then(|s| s.parse::<u64>().ok()));
    match id {
        Some(n) => vec![2 * n, 2 * n + 1],
        None => Vec::new(),
    }
}
