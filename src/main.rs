//! The `fanout` binary: parses flags, runs the library, owns the terminal (progress, summary,
//! errors) and maps the result to an exit code. All fetching logic lives in the library.

mod cli;

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: per-request allocations were ~11% of the engine thread's
/// CPU under glibc, with lower peak RSS under jemalloc (docs/performance.md, session 2).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (the `MALLOC_CONF` variable still overrides them).
/// - `slab_sizes`: sizes from 4 to 16 KiB, hyper's per-connection buffers among them, are carved
///   16 pages at a time instead of one region per slab: each new connection no longer makes and
///   frees a slab of its own as the runtime's threads allocate and free them (callgrind: -2.8% in
///   shape (f), -0.5% in (a); docs/performance.md, "Issue 17, session 4").
/// - `dirty_decay_ms`: freed pages that nothing reused go back to the kernel over 1 s instead of
///   10 s, which a short run never reached: what was freed stayed resident to the end (each
///   thread allocates from an arena of its own, and SQLite's pages, a batch's vectors and
///   hyper's buffers come in different sizes). 10,000 connections peak ~5 MB lower, for ~1,600
///   more `madvise` calls a run there (~1–4% more CPU); ~120 more per 100,000 requests at `-c 64`
///   (docs/performance.md, "Issue 17, session 5", branch `mem`).
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: Option<&std::ffi::c_char> =
    Some(unsafe { &*c"slab_sizes:4097-16384:16,dirty_decay_ms:1000".as_ptr() });

fn main() -> ExitCode {
    cli::main()
}
