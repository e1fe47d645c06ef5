//! The `fanout` binary: parses flags, runs the library, owns the terminal (progress, summary,
//! errors) and maps the result to an exit code. All fetching logic lives in the library.

mod cli;

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: per-request allocations were ~11% of the engine thread's
/// CPU under glibc, with lower peak RSS under jemalloc (docs/performance.md, session 2).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::main()
}
