//! Command-line front end: flags (clap) are validated once into library configs ([`args`]), the
//! run is driven with Ctrl-C wired to the library's shutdown parameter, and progress and the
//! summary go to stderr ([`progress`]). stdout carries only data (`--jsonl -`).

mod args;
mod demo;
mod fds;
mod progress;
mod queue;
mod report;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

use fanout::stats::{RunEnd, Stats};
use fanout::{RunError, bench, serve};

use args::{Cli, Command};

/// Exit codes, as documented in `--help` and README.md.
pub mod exit {
    /// Every request recorded.
    pub const OK: u8 = 0;
    /// The run stopped early on a runtime failure (a store that could not be written).
    pub const FAILED: u8 = 1;
    /// Usage error, unreadable input, or a store that cannot be opened.
    pub const USAGE: u8 = 2;
    /// `--deadline` passed; every request is still recorded.
    pub const DEADLINE: u8 = 3;
    /// Interrupted by Ctrl-C or SIGTERM; rerun to resume.
    pub const INTERRUPTED: u8 = 130;
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap quotes the offending value: a URL in it keeps no password.
        Err(e) => {
            let text = e.render().to_string();
            let text = fanout::secrets::mask_url_in_text(&text);
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    // Before the runtime's threads exist (see fds.rs): a descriptor per connection in use and
    // idle, plus stores and standard streams.
    let wanted = match &cli.command {
        Command::Fetch(a) => fanout::engine::open_files_wanted(a.engine.concurrency as usize),
        Command::Bench(a) => 4 * u64::from(a.concurrency) + 64,
        Command::Serve(_) => SERVE_FDS,
        Command::Report(_) => 64,
        Command::Work(a) => fanout::engine::open_files_wanted(a.engine.concurrency as usize),
        Command::Enqueue(_) | Command::Status(_) => 64,
        // Five servers and the client at -c 256, in one process.
        Command::Demo(_) => SERVE_FDS,
        Command::Completions(a) => {
            let mut cmd = Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "fanout", &mut std::io::stdout());
            return ExitCode::from(exit::OK);
        }
        Command::Man => return man_page(),
    };
    let fds = fds::prepare(wanted);
    if let (Command::Fetch(a), Some(limit)) = (&cli.command, fds.limit)
        && u64::from(a.engine.concurrency) + 32 > limit
    {
        eprintln!(
            "fanout: warning: -c {} needs about {} open files, but the limit is {limit} \
             (ulimit -n); requests beyond it fail as 'connect' errors",
            a.engine.concurrency,
            u64::from(a.engine.concurrency) + 32
        );
    }
    let threads = match &cli.command {
        Command::Fetch(a) => a.engine.threads,
        Command::Work(a) => a.engine.threads,
        _ => None,
    };
    let workers = threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let code = match cli.command {
        // A run's requests go over shards, one per worker thread: each its own runtime, workers
        // and connections (fanout::engine::Shards). The run's other tasks (input, dispatcher,
        // stores' feeds, progress) live on the first.
        Command::Fetch(a) => on_shards(workers, move |shards| fetch(*a, fds.limit, shards)),
        Command::Work(a) => on_shards(workers, move |shards| queue::work_cmd(*a, shards)),
        command => on_runtime(workers, command),
    };
    // Everything the run owed is written (stores closed, report printed). Exit without tearing
    // the runtime down: tasks cancelled at shutdown may still hold sockets, and each exiting
    // worker thread would hand its freed memory back to the kernel page by page (~4 ms at -c 1000).
    std::process::exit(i32::from(code))
}

/// Runs `command` on a multi-thread runtime of `workers` threads.
fn on_runtime(workers: usize, command: Command) -> u8 {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers);
    // tokio starts its workers first, when the runtime is built; threads made later run blocking
    // work (opening stores, reading files). Named apart, `top -H` and the tests can tell them so.
    let started = std::sync::atomic::AtomicUsize::new(0);
    builder.thread_name_fn(move || {
        match started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < workers {
            true => "fanout-worker".into(),
            false => "fanout-blocking".into(),
        }
    });
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanout: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(async {
        match command {
            Command::Serve(a) => serve_cmd(a).await,
            Command::Bench(a) => bench_cmd(a).await,
            Command::Report(a) => report::report_cmd(a).await,
            Command::Enqueue(a) => queue::enqueue_cmd(*a).await,
            Command::Status(a) => queue::status_cmd(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Fetch(_) | Command::Work(_) => unreachable!("run on shards"),
            Command::Completions(_) | Command::Man => unreachable!("handled before the runtime"),
        }
    })
}

/// Starts `workers` shards and runs the future `run` makes (given their runtimes) on the first;
/// this thread waits for its exit code.
fn on_shards<F>(workers: usize, run: impl FnOnce(Vec<tokio::runtime::Handle>) -> F) -> u8
where
    F: std::future::Future<Output = u8> + Send + 'static,
{
    let shards = match fanout::engine::Shards::start(workers) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fanout: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let handles = shards.handles().to_vec();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let run = run(handles.clone());
    handles[0].spawn(async move {
        let _ = tx.send(run.await);
    });
    // A panic in the run drops the sender unanswered.
    let code = rx.recv().unwrap_or(exit::FAILED);
    // Not dropped: `main` exits without tearing the runtimes down (see there).
    std::mem::forget(shards);
    code
}

/// Prints one man page for fanout and every subcommand (each a section, its own synopsis,
/// description and options as subsections), from the clap definitions.
fn man_page() -> ExitCode {
    let mut cmd = Cli::command();
    cmd.build();
    let mut page = Vec::new();
    let mut result = clap_mangen::Man::new(cmd.clone()).render(&mut page);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        result = result
            .and_then(|_| man.render_synopsis_section(&mut part))
            .and_then(|_| man.render_description_section(&mut part))
            .and_then(|_| man.render_options_section(&mut part));
        let name = format!("FANOUT {}", sub.get_name().to_uppercase());
        page.extend_from_slice(format!(".SH \"{name}\"\n").as_bytes());
        // The subcommand's sections become subsections of its own section.
        for line in String::from_utf8_lossy(&part).lines() {
            let line = line
                .strip_prefix(".SH ")
                .map_or(line.to_owned(), |rest| format!(".SS {rest}"));
            page.extend_from_slice(line.as_bytes());
            page.push(b'\n');
        }
    }
    use std::io::Write;
    match result.and_then(|_| std::io::stdout().write_all(&page)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("fanout: cannot write the man page: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// File-table size prepared for `fanout serve` (it accepts as many connections as come).
const SERVE_FDS: u64 = 16_384;

/// Cancels the returned token on the first Ctrl-C or SIGTERM; exits at once on the second.
fn shutdown_signal(quiet: bool) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_signal().await;
        if !quiet {
            eprintln!(
                "\nfanout: stopping: finishing in-flight requests (press Ctrl-C again to quit now)"
            );
        }
        t.cancel();
        wait_signal().await;
        eprintln!(
            "fanout: quit at once; outcomes not yet committed will be fetched again on rerun"
        );
        std::process::exit(exit::INTERRUPTED as i32);
    });
    token
}

async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn fetch(
    a: args::FetchArgs,
    fd_limit: Option<u64>,
    shards: Vec<tokio::runtime::Handle>,
) -> u8 {
    let quiet = a.engine.quiet;
    let when = a.engine.progress;
    let summary_json = a.summary_json.clone();
    let mut config = match a.into_config() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Idle connections are kept within what the limit leaves (the engine sizes its pool).
    config.open_file_limit = fd_limit;
    config.shards = shards;
    if !quiet && !config.resume.fresh {
        announce_resume(&config).await;
    }
    // The report of --summary-json comes from the first SQLite store, else the first PostgreSQL one.
    let report_store = config
        .stores
        .iter()
        .find_map(|s| match s {
            fanout::sink::StoreConfig::Sqlite(p) => Some(report::SummaryStore::Sqlite(p.clone())),
            _ => None,
        })
        .or_else(|| {
            config.stores.iter().find_map(|s| match s {
                fanout::sink::StoreConfig::Postgres(u) => {
                    Some(report::SummaryStore::Postgres(u.clone()))
                }
                _ => None,
            })
        });
    let stats = Stats::new();
    let shutdown = shutdown_signal(quiet);
    let bar = progress::Progress::start(stats.clone(), when, quiet, None);
    let result = fanout::run(config, Arc::clone(&stats), shutdown.cancelled_owned()).await;
    bar.finish();
    match result {
        Ok(summary) => {
            if !quiet {
                eprint!("{summary}");
            }
            if let (Some(file), Some(store)) = (&summary_json, &report_store)
                && let Err(e) = report::write_summary_json(store, summary.run_id, file).await
            {
                eprintln!("fanout: error: --summary-json: {e}");
                return exit::FAILED;
            }
            match summary.end {
                RunEnd::Completed => exit::OK,
                RunEnd::Interrupted => exit::INTERRUPTED,
                RunEnd::Deadline => exit::DEADLINE,
                RunEnd::StoreError => exit::FAILED,
            }
        }
        Err(RunError::Sink(e)) if e.is_broken_pipe() => exit::OK,
        Err(e) => {
            // Store errors name their store without its password already; this is a second net.
            eprintln!(
                "fanout: error: {}",
                fanout::pg::mask_secrets(&e.to_string())
            );
            match e {
                RunError::Input(_) | RunError::SinkOpen(_) | RunError::Client(_) => exit::USAGE,
                _ => {
                    let p = stats.progress();
                    eprintln!(
                        "fanout: {} outcomes were committed before the failure; rerun to resume",
                        p.recorded
                    );
                    exit::FAILED
                }
            }
        }
    }
}

/// Says on stderr how much of the job an earlier run already recorded, for each database store.
async fn announce_resume(config: &fanout::RunConfig) {
    use fanout::sink::StoreConfig;
    for store in &config.stores {
        let name = match store {
            StoreConfig::Sqlite(p) => p.display().to_string(),
            StoreConfig::Postgres(url) => url.masked().to_owned(),
            _ => continue,
        };
        if let Ok(Some(n)) = fanout::sink::outcome_count(store).await
            && n > 0
        {
            eprintln!(
                "fanout: resuming: {n} outcomes already recorded in {name}; their requests are skipped (--fresh fetches all)"
            );
        }
    }
}

async fn serve_cmd(a: args::ServeArgs) -> u8 {
    if a.faults {
        return faults_cmd(a).await;
    }
    let config = serve::ServeConfig {
        addr: std::net::SocketAddr::new(a.host, a.port),
        latency: a.latency,
        count_paths: a.count_paths,
    };
    let server = match serve::Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fanout: cannot listen on {}:{}: {e}", a.host, a.port);
            return exit::USAGE;
        }
    };
    eprintln!(
        "fanout serve: listening on {} (routes: /item/{{id}} /delay/{{ms}} /status/{{code}} /redirect/{{n}} /echo); Ctrl-C to stop",
        server.url("")
    );
    wait_signal().await;
    server.stop();
    let s = server.stats();
    eprintln!(
        "fanout serve: {} requests, at most {} at once",
        s.requests(),
        s.max_in_flight()
    );
    if a.count_paths {
        let hits = s.hits();
        let repeated = hits.values().filter(|&&n| n > 1).count();
        let max = hits.values().copied().max().unwrap_or(0);
        eprintln!(
            "fanout serve: {} distinct paths, {repeated} requested more than once, at most {max} times each",
            hits.len()
        );
    }
    exit::OK
}

/// `fanout serve --faults`: the fault server until Ctrl-C, then what it saw.
async fn faults_cmd(a: args::ServeArgs) -> u8 {
    let server =
        match serve::faults::FaultServer::start(std::net::SocketAddr::new(a.host, a.port)).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fanout: cannot listen on {}:{}: {e}", a.host, a.port);
                return exit::USAGE;
            }
        };
    eprintln!(
        "fanout serve --faults: listening on http://{} (https:// URLs: a TLS handshake that stalls); Ctrl-C to stop",
        server.addr()
    );
    for f in serve::faults::FAULTS {
        eprintln!("  {:<24} {}", f.name, f.does);
    }
    wait_signal().await;
    server.stop();
    let s = server.stats();
    eprintln!(
        "fanout serve --faults: {} connections, {} requests",
        s.connections(),
        s.requests()
    );
    exit::OK
}

async fn bench_cmd(a: args::BenchArgs) -> u8 {
    let config = bench::BenchConfig {
        requests: a.requests(),
        latency: a.latency,
        concurrency: a.concurrency as usize,
    };
    eprintln!(
        "fanout bench: {} requests to a local server answering after {} each",
        config.requests,
        humantime::format_duration(config.latency)
    );
    match bench::run(config).await {
        Ok(report) => {
            println!("{report}");
            exit::OK
        }
        Err(e) => {
            eprintln!("fanout: bench failed: {e}");
            exit::FAILED
        }
    }
}
