//! The `fanout` binary: parses flags, runs the library, owns the terminal (progress, summary,
//! errors) and maps the result to an exit code. All fetching logic lives in the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
