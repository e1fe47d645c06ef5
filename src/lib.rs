//! fanout fetches very large lists of HTTP requests concurrently, politely and without losing a single
//! outcome, and lands every outcome in a real store.
//!
//! # Layout
//!
//! - [`request`]: the [`Request`] type and how its resume key is derived.
//! - [`outcome`]: the [`Outcome`] record and the public, stable [`ErrorKind`] stored with it.
//! - [`source`]: lazy readers that turn input lines (URLs, JSON specs, template values) into requests.
//! - [`engine`]: admission and the run loop; inside it the HTTP [`client`](engine::client),
//!   [`resume`](engine::resume) (skip recorded keys), [`hosts`](engine::hosts) (per-host limits,
//!   rates, pauses), [`retry`](engine::retry) and [`adaptive`](engine::adaptive) concurrency, and
//!   the worker tasks that run attempts (`engine/worker.rs`, private).
//! - [`sink`]: where outcomes land (SQLite, JSONL), written in batches on a dedicated thread.
//! - [`stats`]: live counters for progress and the final [`Summary`].
//! - [`serve`]: a small local HTTP API used by examples, tests and benchmarks.
//! - [`bench`](mod@bench): the sequential-vs-concurrent comparison behind `fanout bench`.
//! - [`units`]: parsing of durations and sizes as written on the command line.
//!
//! Data flows source → resume filter → bounded channel → dispatcher → attempt tasks (bounded by
//! the limits) → bounded channel → store thread. Library code never prints; the `fanout` binary owns the terminal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fanout::RunError> {
//! use fanout::{engine::RunConfig, source::Input, sink::StoreConfig};
//!
//! let mut config = RunConfig::default();
//! config.source.inputs = vec![Input::Path("urls.txt".into())];
//! config.stores = vec![StoreConfig::Sqlite("fanout.db".into())];
//! let stats = fanout::stats::Stats::new();
//! let summary = fanout::run(config, stats, std::future::pending()).await?;
//! assert_eq!(summary.total, summary.responses() + summary.errors());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "serve")]
pub mod bench;
mod due;
pub mod engine;
pub mod outcome;
pub mod request;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sink;
pub mod source;
pub mod stats;
pub mod units;

pub use engine::{RunConfig, RunEnd, RunError, run};
pub use outcome::{ErrorKind, Outcome};
pub use request::Request;
pub use stats::Summary;
