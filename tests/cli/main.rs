//! The integration test binary: the real `fanout` binary and library against a real HTTP server
//! on 127.0.0.1 port 0 and real SQLite files. Tests assert behaviour, never wall-clock speed.

mod fetch;
mod files;
mod harness;
mod http;
mod library;
mod pipeline;
mod polite;
mod report;
mod resume;
