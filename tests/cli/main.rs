//! The integration test binary: the real `fanout` binary and library against a real HTTP server
//! on 127.0.0.1 port 0 and real SQLite files. Tests assert behaviour, never wall-clock speed.

mod demo;
mod fetch;
mod files;
mod harness;
mod http;
mod input;
mod library;
mod pipeline;
mod polite;
mod progress;
mod props;
mod resume;
mod secrets;
mod sql;
mod tls;
