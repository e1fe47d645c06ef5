//! The `fanout` binary: parses flags, runs the library, owns the terminal (progress, summary,
//! errors) and maps the result to an exit code. All fetching logic lives in the library.

mod cli;

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: per-request allocations were ~11% of the engine thread's
/// CPU under glibc, with lower peak RSS under jemalloc (docs/performance.md, session 2).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (the `MALLOC_CONF` variable still overrides them).
/// Sizes from 4 to 16 KiB, hyper's per-connection buffers among them, are carved 16 pages at a
/// time instead of one region per slab: each new connection no longer makes and frees a slab of
/// its own as the runtime's threads allocate and free them (callgrind: -2.8% in shape (f),
/// -0.5% in (a); docs/performance.md, "Issue 17, session 4").
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: Option<&std::ffi::c_char> =
    Some(unsafe { &*c"slab_sizes:4097-16384:16".as_ptr() });

fn main() -> ExitCode {
    cli::main()
}
