//! `fanout enqueue`, `fanout work` and `fanout status`: the work queue's commands. Flags become
//! the library's queue configs ([`super::args`]); counts and summaries go to stderr, `--json`
//! to stdout.

use std::sync::Arc;

use fanout::queue::{self, QueueError};
use fanout::stats::{RunEnd, Stats};

use super::args::{EnqueueArgs, StatusArgs, WorkArgs};
use super::{exit, progress, shutdown_signal};

fn report_error(e: &QueueError) -> u8 {
    eprintln!(
        "fanout: error: {}",
        fanout::pg::mask_secrets(&e.to_string())
    );
    match e {
        QueueError::Db(_) | QueueError::Internal(_) => exit::FAILED,
        _ => exit::USAGE,
    }
}

pub async fn enqueue_cmd(a: EnqueueArgs) -> u8 {
    let json = a.json;
    let config = match a.into_config() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let queue = config.queue.clone();
    match queue::enqueue(config).await {
        Ok(done) => {
            for line in &done.invalid_lines {
                eprintln!("fanout: invalid input: {line}");
            }
            if done.invalid > done.invalid_lines.len() as u64 {
                eprintln!(
                    "fanout: ... {} more invalid lines (recorded as 'invalid-input' outcomes)",
                    done.invalid - done.invalid_lines.len() as u64
                );
            }
            if json {
                println!("{}", serde_json::to_string(&done).unwrap_or_default());
            }
            eprintln!(
                "fanout enqueue: queue {queue}: {} read, {} queued, {} already queued or done, {} invalid",
                done.read, done.queued, done.skipped, done.invalid
            );
            exit::OK
        }
        Err(e) => report_error(&e),
    }
}

pub async fn work_cmd(a: WorkArgs, shards: Vec<tokio::runtime::Handle>) -> u8 {
    let quiet = a.engine.quiet;
    let when = a.engine.progress;
    let mut config = match a.into_config() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    config.run.shards = shards;
    let stats = Stats::new();
    let shutdown = shutdown_signal(quiet);
    let bar = progress::Progress::start(stats.clone(), when, quiet, None);
    let result = queue::work(config, Arc::clone(&stats), shutdown.cancelled_owned()).await;
    bar.finish();
    match result {
        Ok(w) => {
            if !quiet {
                eprint!("{}", w.summary);
                eprintln!(
                    "fanout work: worker {}: {} jobs claimed, {} completed, {} handed back, {} completions refused (lease lost)",
                    w.worker, w.claimed, w.summary.total, w.handed_back, w.stale
                );
            }
            match w.summary.end {
                RunEnd::Completed => exit::OK,
                RunEnd::Interrupted | RunEnd::Deadline => exit::INTERRUPTED,
                RunEnd::StoreError => exit::FAILED,
            }
        }
        Err(e) => report_error(&e),
    }
}

pub async fn status_cmd(a: StatusArgs) -> u8 {
    match queue::status(&a.queue.db, &a.queue.queue).await {
        Ok(s) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            } else {
                print!("{s}");
            }
            exit::OK
        }
        Err(e) => report_error(&e),
    }
}
