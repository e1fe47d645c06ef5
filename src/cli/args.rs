//! Flags, and their validation into the library's [`RunConfig`]. The rest of the program never sees
//! clap. A bad value is a usage error (exit 2) that names the flag and the fix.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use fanout::RunConfig;
use fanout::engine::client::{
    HttpVersion, NoProxy, Proxy, ProxyRules, Resolve, check_out_dir, parse_pinned_pubkey,
};
use fanout::engine::hosts::{HostLimits, Rate};
use fanout::engine::resume::{ResumePolicy, StatusRange};
use fanout::engine::retry::{RetryOn, RetryPolicy};
use fanout::engine::{BodyMode, ClientConfig};
use fanout::pg::PgUrl;
use fanout::sink::StoreConfig;
use fanout::source::sql::SourceDb;
use fanout::source::{Input, RequestDefaults, SourceConfig};
use fanout::units::{parse_duration, parse_size};

const EXIT_CODES: &str = "\
Exit status:
  0    every request has a recorded outcome (HTTP errors and error kinds included)
  1    the run stopped early: a store could not be written (rerun to resume)
  2    usage error, unreadable input, or a store that cannot be opened
  3    --deadline passed (unfinished requests are recorded as 'deadline')
  130  interrupted by Ctrl-C or SIGTERM (rerun to resume)";

const WORK_EXIT_CODES: &str = "\
Exit status:
  0    the queue is drained: every job has its outcome (with --follow: stopped by Ctrl-C after
       handing every unfinished job back)
  1    the database stayed unreachable past --store-timeout (leases not completed run out and
       other workers take their jobs)
  2    usage error, or a database that cannot be opened
  130  interrupted by Ctrl-C or SIGTERM: unfinished jobs were handed back";

/// The database and queue of `enqueue`, `work` and `status`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The PostgreSQL database holding the queue (and its outcomes): postgres://user@host:port/db
    /// (PGPASSWORD, ~/.pgpass and PGHOST/PGPORT/PGUSER/PGDATABASE apply).
    #[arg(long, value_name = "URL", value_parser = parse_pg_url)]
    pub db: PgUrl,
    /// The queue's name (several queues may share a database).
    #[arg(long, default_value = fanout::queue::DEFAULT_QUEUE, value_name = "NAME",
          value_parser = parse_queue_name)]
    pub queue: String,
}

fn parse_pg_url(s: &str) -> Result<PgUrl, String> {
    if !PgUrl::is_pg_url(s) {
        return Err(format!(
            "'{}': a queue lives in PostgreSQL: give a postgres:// URL",
            fanout::pg::mask_secrets(s)
        ));
    }
    PgUrl::parse(s)
}

fn parse_queue_name(s: &str) -> Result<String, String> {
    fanout::queue::check_queue_name(s).map(|()| s.to_owned())
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Files of requests, as for fetch: one per line, a URL or a JSON object; '-' or none reads
    /// stdin.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub request: RequestArgs,

    /// Requests from the rows of this query instead of INPUT files (as for fetch).
    #[arg(long, value_name = "QUERY")]
    pub from_sql: Option<String>,

    /// The database --from-sql runs on: an SQLite file (opened read-only).
    #[arg(long, value_name = "FILE")]
    pub source_db: Option<String>,

    /// A header whose value is a credential, kept out of runs.command (repeatable).
    #[arg(long, value_name = "NAME")]
    pub secret_header: Vec<String>,

    /// Print the counts as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub queue: QueueArgs,

    /// How long a claimed job stays this worker's without a renewal (renewed every third of
    /// it); a worker that dies loses its jobs to the others after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub lease: Duration,

    /// When the queue is drained, keep polling for new jobs until Ctrl-C.
    #[arg(long)]
    pub follow: bool,

    /// How often an empty queue is looked at again.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub poll: Duration,

    /// Header added to every job that does not set it, 'Name: value' (repeatable): credentials
    /// given here stay out of the queue's tables.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// A job whose lease ran out this many times (its workers died or froze holding it, e.g. a
    /// response that crashes them) is recorded as 'abandoned' instead of fetched again; 0: never.
    #[arg(long, default_value_t = fanout::queue::DEFAULT_MAX_LOST_LEASES, value_name = "N")]
    pub max_lost_leases: u32,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub queue: QueueArgs,

    /// Print the status as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl EnqueueArgs {
    /// Validates the flags into an enqueue configuration.
    pub fn into_config(self) -> Result<fanout::queue::EnqueueConfig, clap::Error> {
        let defaults = self.request.defaults()?;
        let mut c = fanout::queue::EnqueueConfig::new(
            self.queue.db,
            self.queue.queue,
            SourceConfig {
                inputs: self.inputs.iter().map(|i| Input::from_arg(i)).collect(),
                template: self.request.template.clone(),
                defaults,
                from_sql: self.from_sql,
                source_db: self.source_db.as_deref().map(SourceDb::parse),
            },
        );
        if c.source.from_sql.is_some() && c.source.source_db.is_none() {
            return Err(usage("--from-sql needs --source-db FILE".into()));
        }
        c.command =
            fanout::secrets::mask_command(std::env::args(), &self.secret_header, shell_quote);
        Ok(c)
    }
}

impl WorkArgs {
    /// Validates the flags into a worker configuration.
    pub fn into_config(self) -> Result<fanout::queue::WorkConfig, clap::Error> {
        let mut c = fanout::queue::WorkConfig::new(self.queue.db, self.queue.queue);
        if self.lease < Duration::from_secs(1) {
            return Err(usage(format!(
                "--lease {}: at least 1s (leases are renewed every third of it)",
                humantime::format_duration(self.lease)
            )));
        }
        c.lease = self.lease;
        c.follow = self.follow;
        c.poll = self.poll.max(Duration::from_millis(10));
        c.headers = parse_headers(&self.headers)?;
        c.max_lost_leases = self.max_lost_leases;
        self.engine.apply(&mut c.run)?;
        validate(&c.run)?;
        Ok(c)
    }
}

/// Fetch very large lists of HTTP requests concurrently, politely, and record every outcome.
#[derive(Debug, Parser)]
#[command(name = "fanout", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch every request in the inputs and record each outcome (default store: ./fanout.db).
    #[command(after_help = EXIT_CODES)]
    Fetch(Box<FetchArgs>),
    /// Load requests into a PostgreSQL work queue (keys already queued or done are skipped).
    Enqueue(Box<EnqueueArgs>),
    /// Work a PostgreSQL queue with any number of other workers: claim jobs under leases, fetch
    /// them (every engine flag of fetch applies; --per-host-rate and --per-host hold for the
    /// whole fleet), record each outcome once. Exits 0 when the queue is drained.
    #[command(after_help = WORK_EXIT_CODES)]
    Work(Box<WorkArgs>),
    /// Where a PostgreSQL queue stands: queued, leased, done and failed jobs, the last minute's
    /// rate, workers, the oldest lease, hosts paused by Retry-After.
    Status(StatusArgs),
    /// Run a local test API on 127.0.0.1 (/item/{id}, /delay/{ms}, /status/{code}, /redirect/{n}, /echo).
    Serve(ServeArgs),
    /// Compare fetching one at a time with fetching concurrently, against a built-in local server.
    Bench(BenchArgs),
    /// Report on a store: counts, latency, throughput, hosts, runs; --json, --html FILE with charts.
    Report(super::report::ReportArgs),
    /// A first run to look at, offline: 100,000 requests to built-in local servers (fast, slow,
    /// failing, rate-limited) into demo.db, then the summary.
    Demo(DemoArgs),
    /// Print a shell completion script: e.g. `fanout completions bash > /etc/bash_completion.d/fanout`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), for fanout and each subcommand: `fanout man > fanout.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Requests to make.
    #[arg(short = 'n', long, default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,
    /// SQLite store written (replaced if it exists).
    #[arg(long, default_value = "demo.db", value_name = "PATH")]
    pub db: PathBuf,
    /// HTML report written at the end (once `fanout report` is built).
    #[arg(long, default_value = "demo.html", value_name = "PATH")]
    pub html: PathBuf,
    /// Progress on stderr: auto, always or never (as for fetch).
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: super::progress::When,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BodyArg {
    /// Record the SHA-256 of each body.
    Hash,
    /// Record each body.
    Store,
    /// Record only the size.
    Discard,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Files of requests, one per line: a URL, or a JSON object {"url", "method", "headers", "body", "id"}.
    /// '-' or none reads stdin. Blank lines and lines starting with '#' are skipped.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,

    #[command(flatten)]
    pub request: RequestArgs,

    /// Database for outcomes: an SQLite file, or a PostgreSQL URL (postgres://user@host:port/db;
    /// PGPASSWORD, ~/.pgpass and PGHOST/PGPORT/PGUSER/PGDATABASE apply). Repeatable: every one is
    /// written, and a request recorded in any of them is skipped on resume
    /// [default: ./fanout.db unless --jsonl is given].
    #[arg(long, value_name = "PATH|URL")]
    pub db: Vec<String>,

    /// Also (or, without --db, only) write outcomes as JSON lines to PATH ('-' for stdout; appends).
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<String>,

    /// Requests from the rows of this query instead of INPUT files: columns url (required), id,
    /// method, headers (a JSON object of strings), body (text or blob); rows stream as fetched.
    #[arg(long, value_name = "QUERY")]
    pub from_sql: Option<String>,

    /// The database --from-sql runs on: an SQLite file (opened read-only).
    #[arg(long, value_name = "FILE")]
    pub source_db: Option<String>,

    /// Time limit for the whole run; then unfinished requests are recorded as 'deadline' (exit 3).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub deadline: Option<Duration>,

    /// Ignore outcomes recorded by earlier runs and fetch every request again.
    #[arg(long)]
    pub fresh: bool,

    /// On resume, also fetch again keys whose recorded outcome is an error kind (timeout, connect, ...).
    #[arg(long, conflicts_with = "fresh")]
    pub retry_errors: bool,

    /// On resume, also fetch again keys whose recorded status matches: e.g. '5xx,429' or '500-504'.
    #[arg(long, value_delimiter = ',', value_parser = StatusRange::parse, value_name = "LIST", conflicts_with = "fresh")]
    pub retry_status: Vec<StatusRange>,

    /// At the end, write the report of the run (`fanout report --json`) to FILE. Needs a store
    /// (the default, or --db: the first SQLite one, else the first PostgreSQL one).
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What a request is made of when its line does not say: fetch and enqueue.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// URL template: each input line's value (URL-encoded) replaces '{}'.
    #[arg(long, value_name = "URL")]
    pub template: Option<String>,

    /// Method for requests that do not set one [default: GET, or POST with a body].
    #[arg(short = 'X', long = "method", value_name = "METHOD")]
    pub method: Option<String>,

    /// Header for every request, 'Name: value' (repeatable); a spec's own headers win.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Body for requests that do not set one; '@FILE' reads it from a file.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
}

/// How requests are fetched: limits, timeouts, TLS, proxies, retries, progress. Shared by fetch
/// and work.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Requests in flight at most.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Time limit for one attempt, from sending to the last body byte (e.g. 500ms, 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,

    /// Threads that run the requests [default: one per core], each with its own connections. An
    /// https host keeps to one; a busy plain-http host is spread over all (docs/performance.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Give an attempt up as 'timeout' when fewer than SIZE body bytes a second arrive during
    /// --speed-time (as curl; 0 turns it off). A large download at a good pace is not cut.
    #[arg(short = 'Y', long, value_parser = parse_size, value_name = "SIZE")]
    pub speed_limit: Option<u64>,

    /// The window --speed-limit is measured over [default: 30s]; alone, it means a limit of 1
    /// byte a second (as curl).
    #[arg(short = 'y', long, value_parser = parse_duration, value_name = "DUR")]
    pub speed_time: Option<Duration>,

    /// Time limit for opening a TCP connection (TLS and proxy handshakes count against --timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub connect_timeout: Duration,

    /// After Ctrl-C, how long in-flight requests may finish before they are recorded as 'cancelled'.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DUR")]
    pub grace: Duration,

    /// Redirects followed before 'too-many-redirects' (0 records redirects as responses).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_redirects: u32,

    /// What to record of each response body.
    #[arg(long, value_enum, default_value = "hash")]
    pub body: BodyArg,

    /// Largest body accepted; larger ones are recorded as 'body-too-large' (e.g. 64KiB, 10MiB).
    #[arg(long, default_value = "10MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_body: u64,

    /// Largest response head (status line and headers) accepted; a larger one is 'protocol'.
    #[arg(long, default_value = "64KiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_head: u64,

    /// Most content codings stacked on one body (Content-Encoding: gzip, br, ...); more is 'decode'.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_codings: usize,

    /// Write each response body to a file under DIR (created if missing), streamed as it arrives:
    /// DIR/ab/cd/NAME, NAME from the request key. The path is recorded as 'body_path'.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// How long a PostgreSQL store may stay unreachable (reconnecting with backoff) before the
    /// run stops with exit 1 (rerun to resume).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub store_timeout: Duration,

    /// User-Agent for requests that do not set one.
    #[arg(short = 'A', long, value_name = "NAME")]
    pub user_agent: Option<String>,

    /// Do not ask for compressed bodies nor decode them: no Accept-Encoding is sent, and bodies are
    /// recorded and held to --max-body as received. Without it, gzip, deflate, br and zstd are
    /// asked for and decoded, and --max-body and 'bytes' count decoded bytes.
    #[arg(long)]
    pub raw: bool,

    /// Speak HTTP/1.1 only.
    #[arg(long, conflicts_with = "http2")]
    pub http1: bool,

    /// Speak HTTP/2 only: ALPN h2 for https, prior knowledge (h2c) for http.
    #[arg(long)]
    pub http2: bool,

    /// Accept any TLS certificate (self-signed, expired, other name). Only for hosts you trust.
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// A header whose value is a credential, kept out of runs.command like Authorization, Cookie
    /// and Proxy-Authorization (repeatable).
    #[arg(long, value_name = "NAME")]
    pub secret_header: Vec<String>,

    /// PEM file of CA certificates trusted besides the built-in roots (repeatable). A self-signed
    /// server certificate given here is trusted as it is (its name and dates are still checked).
    #[arg(long, value_name = "FILE")]
    pub cacert: Vec<PathBuf>,

    /// The server's public key must be one of these: 'sha256//BASE64[;sha256//BASE64...]', or a
    /// PEM public key file, as curl takes it. Checked even with -k.
    #[arg(long, value_name = "PINS", value_parser = parse_pins)]
    pub pinnedpubkey: Option<Pins>,

    /// Client certificate (PEM, the chain; may hold the key too) for servers that ask for one.
    #[arg(short = 'E', long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Connect to ADDR whenever a URL names HOST:PORT, with no DNS look-up, as curl does
    /// (repeatable), e.g. 'example.com:443:127.0.0.1'. TLS still checks the name HOST.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<Resolve>,

    /// Ask these DNS servers for host names instead of those in /etc/resolv.conf, as curl does:
    /// comma-separated ADDRESS[:PORT] (port 53 by default; IPv6 with a port in brackets), e.g.
    /// '127.0.0.1:5353'. Answers are kept for their TTL either way.
    #[arg(long, value_name = "ADDRESSES", value_parser = parse_dns_servers_arg)]
    pub dns_servers: Option<DnsServers>,

    /// Open every connection through this proxy: 'http://[user:pass@]host:port' (CONNECT tunnel,
    /// for http and https URLs), 'https://...' (TLS to the proxy; CONNECT for https URLs, absolute
    /// form for http URLs), 'socks5://host:port' (names resolved here) or 'socks5h://...' (names
    /// resolved by the proxy).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<Proxy>,

    /// PEM file of CA certificates trusted for an https:// proxy, besides --cacert's (repeatable).
    #[arg(long, value_name = "FILE")]
    pub proxy_cacert: Vec<PathBuf>,

    /// Accept any TLS certificate from an https:// proxy (-k does too).
    #[arg(long)]
    pub proxy_insecure: bool,

    /// Hosts reached without a proxy: comma-separated names (subdomains included), addresses,
    /// CIDR ranges, or '*'; replaces NO_PROXY from the environment.
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,

    /// Requests in flight to one host (host:port) at most, on top of -c.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub per_host: Option<u32>,

    /// Requests per second overall: 100/s, 6000/m, 36000/h.
    #[arg(long, value_parser = Rate::parse, value_name = "RATE")]
    pub rate: Option<Rate>,

    /// Requests per second to one host.
    #[arg(long, value_parser = Rate::parse, value_name = "RATE")]
    pub per_host_rate: Option<Rate>,

    /// Requests a rate limit lets through at once [default: one second of the rate].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,

    /// Learn each host's safe concurrency (AIMD on 429/503, timeouts and latency), up to --per-host.
    #[arg(long)]
    pub adaptive: bool,

    /// Obey each origin's robots.txt (RFC 9309), fetched once per run with the run's User-Agent:
    /// disallowed requests are recorded as 'robots', never fetched; Crawl-delay spaces requests.
    #[arg(long)]
    pub robots: bool,

    /// Retries after the first attempt, for retryable outcomes (see --retry-on).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub retries: u32,

    /// What is retried: statuses, classes, ranges and error kinds.
    #[arg(long, value_parser = RetryOn::parse, value_name = "LIST",
          default_value = "429,502,503,504,connect,dns,timeout,reset")]
    pub retry_on: RetryOn,

    /// Also retry requests whose method is not idempotent (POST, PATCH).
    #[arg(long)]
    pub retry_non_idempotent: bool,

    /// Exponential backoff with full jitter: first ceiling..largest ceiling.
    #[arg(long, default_value = "250ms..30s", value_parser = parse_backoff, value_name = "MIN..MAX")]
    pub backoff: (Duration, Duration),

    /// Longest Retry-After honoured (429/503 pause the whole host that long at most).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DUR")]
    pub max_retry_after: Duration,

    /// Progress on stderr: auto (a live line on a terminal), always (off a terminal, a plain line
    /// every 2 s, for CI logs) or never. A bar with percentage and ETA when every input is a file.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: super::progress::When,

    /// No progress and no summary (implies --progress never).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Added to every response (e.g. 100ms).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DUR")]
    pub latency: Duration,
    /// Count requests per path and print how many paths were requested more than once at exit.
    #[arg(long)]
    pub count_paths: bool,
    /// Serve the fault server instead: raw TCP that misbehaves in one way per path,
    /// /fault/{name} (bad framing, resets, hangs, bombs, HTTP/2 violations; docs/errors.md).
    #[arg(long, conflicts_with_all = ["latency", "count_paths"])]
    pub faults: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Requests in each mode.
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,
    /// Server latency per request.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub latency: Duration,
    /// Requests in flight at most in the concurrent mode.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
}

impl BenchArgs {
    pub fn requests(&self) -> usize {
        self.requests as usize
    }
}

fn parse_backoff(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("'{s}' must look like 250ms..30s"))?;
    let (a, b) = (parse_duration(a)?, parse_duration(b)?);
    if a.is_zero() || a > b {
        return Err(format!(
            "'{s}': the first ceiling must be above 0 and at most the largest"
        ));
    }
    Ok((a, b))
}

/// `--pinnedpubkey`'s digests (a newtype: clap treats a `Vec` field as a repeated flag).
#[derive(Debug, Clone)]
pub struct Pins(Vec<[u8; 32]>);

fn parse_pins(s: &str) -> Result<Pins, String> {
    parse_pinned_pubkey(s).map(Pins)
}

/// `--dns-servers`' addresses (a newtype, as `Pins`).
#[derive(Debug, Clone)]
pub struct DnsServers(Vec<std::net::SocketAddr>);

fn parse_dns_servers_arg(s: &str) -> Result<DnsServers, String> {
    fanout::engine::client::parse_dns_servers(s).map(DnsServers)
}

fn usage(msg: String) -> clap::Error {
    let msg = fanout::secrets::mask_url_in_text(&msg).into_owned();
    Cli::command().error(clap::error::ErrorKind::ValueValidation, msg)
}

pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl RequestArgs {
    /// Method, headers and body for requests that do not set their own.
    pub fn defaults(&self) -> Result<RequestDefaults, clap::Error> {
        let method = match &self.method {
            None => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| usage(format!("-X/--method '{m}' is not a valid HTTP method")))?,
            ),
        };
        let headers = parse_headers(&self.headers)?;
        let body = match &self.data {
            None => None,
            Some(d) => match d.strip_prefix('@') {
                Some("-") => {
                    return Err(usage(
                        "-d @- is not supported: stdin carries the request list".into(),
                    ));
                }
                Some(path) => {
                    Some(Bytes::from(std::fs::read(path).map_err(|e| {
                        usage(format!("-d/--data: cannot read '{path}': {e}"))
                    })?))
                }
                None => Some(Bytes::from(d.clone())),
            },
        };
        Ok(RequestDefaults {
            method,
            headers,
            body,
        })
    }
}

/// `-H 'Name: value'` flags as a header map.
pub fn parse_headers(flags: &[String]) -> Result<HeaderMap, clap::Error> {
    let mut headers = HeaderMap::new();
    for h in flags {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("-H/--header '{h}' must look like 'Name: value'")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| usage(format!("-H/--header '{h}': invalid header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| usage(format!("-H/--header '{h}': invalid header value")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

impl EngineArgs {
    /// The engine's part of a run configuration: client, limits, retries, the store timeout and
    /// the command line (credentials masked). Sources, stores and resume are left as they are.
    pub fn apply(&self, config: &mut RunConfig) -> Result<(), clap::Error> {
        let mut client = ClientConfig {
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            max_redirects: self.max_redirects,
            body: match self.body {
                BodyArg::Hash => BodyMode::Hash,
                BodyArg::Store => BodyMode::Store,
                BodyArg::Discard => BodyMode::Discard,
            },
            max_body: self.max_body,
            max_head: usize::try_from(self.max_head).unwrap_or(usize::MAX),
            max_codings: self.max_codings,
            // As curl: --speed-time alone is a limit of 1 byte a second; --speed-limit 0 is none.
            speed_limit: match (self.speed_limit, self.speed_time) {
                (Some(0), _) => None,
                (Some(n), _) => Some(n),
                (None, Some(_)) => Some(1),
                (None, None) => None,
            },
            speed_time: self.speed_time.unwrap_or(Duration::from_secs(30)),
            raw: self.raw,
            http_version: match (self.http1, self.http2) {
                (true, _) => HttpVersion::Http1,
                (_, true) => HttpVersion::Http2,
                _ => HttpVersion::Auto,
            },
            insecure: self.insecure,
            pinned_pubkeys: self.pinnedpubkey.clone().map(|p| p.0).unwrap_or_default(),
            client_cert: self.cert.clone(),
            client_key: self.key.clone(),
            ca_files: self.cacert.clone(),
            resolve: self.resolve.clone(),
            dns_servers: self.dns_servers.clone().map(|d| d.0).unwrap_or_default(),
            proxy: match &self.proxy {
                Some(p) => ProxyRules::all(p.clone()),
                // As curl: without --proxy, http_proxy, HTTPS_PROXY, ALL_PROXY and NO_PROXY.
                None => ProxyRules::from_env(|k| std::env::var(k).ok())
                    .map_err(|e| usage(format!("proxy environment: {e} (--proxy overrides it)")))?,
            },
            ..ClientConfig::default()
        };
        if let Some(ua) = &self.user_agent {
            client.user_agent = ua.clone();
        }
        client.out_dir = self.out_dir.clone();
        client.proxy.ca_files = self.proxy_cacert.clone();
        client.proxy.insecure = self.proxy_insecure;
        if let Some(list) = &self.noproxy {
            let loopback = client.proxy.no_proxy.loopback_direct();
            client.proxy.no_proxy = NoProxy::parse(list).with_loopback_direct(loopback);
        }
        config.client = client;
        config.concurrency = self.concurrency as usize;
        config.grace = self.grace;
        config.limits = HostLimits {
            per_host: self.per_host.map(|n| n as usize),
            per_host_rate: self.per_host_rate,
            rate: self.rate,
            burst: self.burst,
            adaptive: self.adaptive,
            gate: None,
        };
        config.robots = self.robots;
        config.retry = RetryPolicy {
            retries: self.retries,
            on: self.retry_on.clone(),
            non_idempotent: self.retry_non_idempotent,
            backoff_base: self.backoff.0,
            backoff_max: self.backoff.1,
            max_retry_after: self.max_retry_after,
        };
        // Passwords in URLs and the values of credential headers never reach `runs.command`.
        config.command =
            fanout::secrets::mask_command(std::env::args(), &self.secret_header, shell_quote);
        config.store_timeout = self.store_timeout;
        Ok(())
    }
}

/// Checks a whole configuration with the library's rules; its error names the field, which is
/// the flag's long name (inputs: the positional arguments).
pub fn validate(config: &RunConfig) -> Result<(), clap::Error> {
    config.validate().map_err(|e| match e.field() {
        "inputs" => usage(e.reason().to_string()),
        "user-agent" => usage(format!("-A/--user-agent: {}", e.reason())),
        field => usage(format!("--{field}: {}", e.reason())),
    })?;
    if let Some(dir) = &config.client.out_dir {
        // Last of the checks: a run refused for another flag creates no directory.
        check_out_dir(dir).map_err(|e| usage(format!("--out-dir: {e}")))?;
    }
    Ok(())
}

impl FetchArgs {
    /// Validates the flags into a run configuration.
    pub fn into_config(self) -> Result<RunConfig, clap::Error> {
        let defaults = self.request.defaults()?;
        let has_store = (self.db.is_empty() && self.jsonl.is_none()) || !self.db.is_empty();
        if self.summary_json.is_some() && !has_store {
            return Err(usage(
                "--summary-json needs a store (--db PATH or URL): the report is computed from it"
                    .into(),
            ));
        }
        let mut stores = Vec::new();
        match (self.db.as_slice(), &self.jsonl) {
            ([], None) => stores.push(StoreConfig::Sqlite("fanout.db".into())),
            (dbs, jsonl) => {
                for db in dbs {
                    stores.push(if PgUrl::is_pg_url(db) {
                        StoreConfig::Postgres(
                            PgUrl::parse(db).map_err(|e| usage(format!("--db {e}")))?,
                        )
                    } else {
                        StoreConfig::Sqlite(PathBuf::from(db))
                    });
                }
                match jsonl.as_deref() {
                    Some("-") => stores.push(StoreConfig::JsonlStdout),
                    Some(p) => stores.push(StoreConfig::Jsonl(p.into())),
                    None => {}
                }
            }
        }
        let mut config = RunConfig {
            source: SourceConfig {
                inputs: self.inputs.iter().map(|i| Input::from_arg(i)).collect(),
                template: self.request.template.clone(),
                defaults,
                from_sql: self.from_sql,
                source_db: self.source_db.as_deref().map(SourceDb::parse),
            },
            stores,
            deadline: self.deadline,
            resume: ResumePolicy {
                fresh: self.fresh,
                retry_errors: self.retry_errors,
                retry_status: self.retry_status,
            },
            ..RunConfig::default()
        };
        self.engine.apply(&mut config)?;
        validate(&config)?;
        Ok(config)
    }
}
