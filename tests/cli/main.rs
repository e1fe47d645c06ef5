//! The integration test binary: the real `fanout` binary and library against a real HTTP server
//! on 127.0.0.1 port 0, real SQLite files and a real PostgreSQL server (pg.rs). Tests assert
//! behaviour, never wall-clock speed.

mod demo;
mod dns;
mod faults;
mod fetch;
mod files;
mod harness;
mod http;
mod input;
mod library;
mod limits;
mod pg;
mod pgsource;
mod pipeline;
mod polite;
mod postgres;
mod progress;
mod props;
mod proxy;
mod queue;
mod report;
mod resume;
mod robots;
mod secrets;
mod sql;
mod tls;
