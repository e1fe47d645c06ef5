//! fanout fetches very large lists of HTTP requests concurrently, politely and without losing a single
//! outcome, and lands every outcome in a real store.
//!
//! # As a library
//!
//! Build a [`RunConfig`], hand [`fetch`] any `Stream` of [`Request`]s, and read the outcomes as a
//! `Stream` (a slow reader slows the run); or [`run`] a configured job from files into the
//! configured stores, as the `fanout` binary does. Below both sits the [`engine`]: a stream of
//! requests with tickets in, a stream of [`Event`](engine::Event)s out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fanout::RunError> {
//! use fanout::{source::Input, sink::StoreConfig, RunConfig};
//!
//! let mut config = RunConfig::default();
//! config.source.inputs = vec![Input::Path("urls.txt".into())];
//! config.stores = vec![StoreConfig::Sqlite("fanout.db".into())];
//! let stats = fanout::stats::Stats::new();
//! let summary = fanout::run(config, stats, std::future::pending()).await?;
//! assert_eq!(summary.total, summary.responses() + summary.errors());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`request`]: the [`Request`] type and how its resume key is derived.
//! - [`outcome`]: the [`Outcome`] record, its one constructor, and the public, stable
//!   [`ErrorKind`] stored with it.
//! - [`source`]: lazy readers that turn input lines (URLs, JSON specs, template values), the
//!   rows of a SQL query ([`source::sql`]), or any stream of requests or items, into the items
//!   of a run.
//! - [`pipeline`]: the one place that wires source → resume filter → engine → recorder → sinks,
//!   decides why a run stops, and assembles the [`Summary`]; [`fetch`] for embedding programs.
//! - [`engine`]: the core: admission under the limits, attempts, retries, stopping; inside it the
//!   HTTP [`client`](engine::client), [`resume`](engine::resume) (skip recorded keys),
//!   [`hosts`](engine::hosts) (per-host limits, rates, pauses), [`retry`](engine::retry) and
//!   adaptive concurrency (`engine/adaptive.rs`), `--robots` (`engine/robots.rs`), and the worker
//!   tasks (`engine/worker.rs`), all three private.
//! - [`sink`]: where outcomes land: one async trait; SQLite and JSONL (each on a thread of its
//!   own), and an in-memory channel; the recorder that batches outcomes for them.
//! - [`stats`]: live counters for progress and the final [`Summary`].
//! - [`report`]: the report of a store (`fanout report`), computed by SQL; text, JSON and HTML.
//! - `serve`: a small local HTTP API used by examples, tests and benchmarks (feature `serve`);
//!   `serve::faults`, raw TCP that misbehaves in one way per path (`fanout serve --faults`).
//! - `bench`: the sequential-vs-concurrent comparison behind `fanout bench` (feature `serve`).
//! - [`units`]: parsing of durations and sizes as written on the command line.
//!
//! Data flows source → resume filter → bounded channel → dispatcher → worker tasks (bounded by
//! the limits) → bounded event channel → recorder → sinks. Library code never prints; the `fanout`
//! binary owns the terminal.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "serve")]
pub mod bench;
pub mod config;
mod due;
pub mod engine;
pub mod outcome;
pub mod pg;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod request;
pub mod secrets;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sink;
pub mod source;
pub mod stats;
pub mod units;

/// README.md's Rust blocks, compiled and run as doctests (its other blocks are `sh`). Needs
/// `fanout::serve`, so only with the `serve` feature.
#[cfg(all(doctest, feature = "serve"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use engine::RunEnd;
pub use outcome::{ErrorKind, Outcome};
pub use pipeline::{Fetch, RunConfig, RunError, fetch, run};
pub use request::Request;
pub use stats::Summary;
