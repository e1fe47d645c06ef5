//! `fanout demo`: a first run to look at, offline. Starts five built-in test servers in-process
//! (each its own host: fast, medium, slow, failing, rate-limited) and a port where nothing listens,
//! fetches a deterministic mix of requests from them into a fresh SQLite store with the polite
//! settings (`--adaptive`, `--per-host`, retries), prints the summary and says where the store
//! (and, once `fanout report` exists, the HTML report) is. Owns only its servers and its files.

use std::path::Path;

use http::Method;

use fanout::request::{Origin, Request};
use fanout::serve::{ServeConfig, Server};
use fanout::sink::StoreConfig;
use fanout::source::Source;
use fanout::stats::{RunEnd, Stats};

use super::args::DemoArgs;
use super::{exit, progress};

/// Requests per second the rate-limited host (`/quota`) serves; the rest get 429 + Retry-After.
const PARTNER_QUOTA: u64 = 1000;

/// The demo's hosts, by what they are there to show.
struct Hosts {
    catalog: Server,
    search: Server,
    reports: Server,
    orders: Server,
    partner: Server,
    /// A port with no listener: connections are refused.
    dead: u16,
    /// Holds `dead` bound (not listening) for the demo's life, so that no other server (a test
    /// running beside it) can take the port and answer in its place.
    _dead_socket: tokio::net::TcpSocket,
}

impl Hosts {
    async fn start() -> std::io::Result<Hosts> {
        let start = || Server::start(ServeConfig::default());
        let dead_socket = tokio::net::TcpSocket::new_v4()?;
        dead_socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let dead = dead_socket.local_addr()?.port();
        Ok(Hosts {
            catalog: start().await?,
            search: start().await?,
            reports: start().await?,
            orders: start().await?,
            partner: start().await?,
            dead,
            _dead_socket: dead_socket,
        })
    }

    /// Request `i` of `n`: the same URL for the same `i` and `n` on every run (seeded by `i`).
    fn request(&self, i: u64, n: u64) -> Request {
        let mut rng = fastrand::Rng::with_seed(i ^ 0x00de_a0de_a0de);
        let pick = rng.f64();
        let r = rng.f64();
        let at = |fraction: f64| i == (n as f64 * fraction) as u64;
        // A batch job from 20% to 25% of the run: the partner API gets 40% of those requests,
        // far over its quota; 1% elsewhere.
        let batch = (n / 5..n / 4).contains(&i);
        let partner = if batch { 0.4 } else { 0.01 };
        // An incident from 40% to 55% of the run: the orders host fails often.
        let incident = (n * 2 / 5..n * 11 / 20).contains(&i);
        let url = if at(0.25) || at(0.5) || at(0.75) {
            // Slower than the demo's --timeout: 'timeout' after the retries. Few, and on a
            // fast host: each timeout cuts the host's adaptive limit.
            self.orders.url(&format!("/delay/1500?id={i}"))
        } else if pick < 0.001 {
            format!("http://127.0.0.1:{}/item/{i}", self.dead)
        } else if pick < 0.001 + partner {
            if r < 0.05 {
                // A 429 with no Retry-After, every time: retried with backoff, then recorded.
                self.partner.url(&format!("/status/429?id={i}"))
            } else {
                self.partner.url(&format!("/quota/{PARTNER_QUOTA}/{i}"))
            }
        } else if pick < 0.11 + partner {
            let fails = if incident { 0.4 } else { 0.02 };
            if r < fails {
                self.orders.url(&format!("/status/500?id={i}"))
            } else if r < fails + 0.05 {
                // 503 the first time, 200 on the retry.
                self.orders.url(&format!("/fail-once/{i}"))
            } else {
                self.orders.url(&format!("/item/{i}"))
            }
        } else if pick < 0.23 + partner {
            // Each host answers within a narrow band of its usual time, as a real one does (a
            // spread near twice the fastest reads as queueing to --adaptive, which then cuts
            // the host's limit); the spread of the latency chart is across hosts.
            self.search
                .url(&format!("/delay/{}?id={i}", 25 + rng.u64(0..6)))
        } else if pick < 0.25 + partner {
            self.reports
                .url(&format!("/delay/{}?id={i}", 200 + rng.u64(0..21)))
        } else if r < 0.03 {
            self.catalog.url(&format!("/status/404?id={i}"))
        } else if r < 0.05 {
            let size = 1024 << rng.u32(0..5);
            self.catalog.url(&format!("/bytes/{size}/{i}"))
        } else if r < 0.06 {
            self.catalog.url(&format!("/redirect/1?id={i}"))
        } else {
            self.catalog.url(&format!("/item/{i}"))
        };
        let mut req = Request::new(Method::GET, &url)
            .expect("demo URLs are valid")
            .with_key(format!("demo-{i:07}"));
        req.origin = Origin {
            input: "demo".into(),
            line: i + 1,
        };
        req
    }
}

/// The latest run of `db` as an HTML report (what `fanout report --html` writes) at `html`.
pub fn write_demo_report(db: &Path, html: &Path) -> anyhow::Result<()> {
    let r = fanout::report::open_sqlite(db, fanout::report::Scope::Latest)?;
    std::fs::write(html, fanout::report::html(&r))
        .map_err(|e| anyhow::anyhow!("{}: {e}", html.display()))
}

/// Removes the store and its WAL files, so each demo starts from nothing.
fn remove_store(db: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

pub async fn run(a: DemoArgs) -> u8 {
    let hosts = match Hosts::start().await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fanout demo: cannot start the local servers: {e}");
            return exit::FAILED;
        }
    };
    if let Err(e) = remove_store(&a.db) {
        eprintln!("fanout demo: cannot replace {}: {e}", a.db.display());
        return exit::USAGE;
    }
    let n = a.requests;
    eprintln!(
        "fanout demo: {n} requests to local servers, into {} (replaced if present):\n  \
         catalog {} (fast, some 404s and larger bodies)\n  \
         search  {} (25-30 ms)\n  \
         reports {} (slow: 200-220 ms)\n  \
         orders  {} (500s, most during an incident from 40% to 55% of the run; 503s that a \
         retry fixes; 3 answers past the 1 s timeout)\n  \
         partner {} (rate-limited to {PARTNER_QUOTA}/s, then 429 with Retry-After; some 429s with none; a burst \
         from 20% to 25% of the run)\n  \
         dead    http://127.0.0.1:{} (nothing listens: connection refused)",
        a.db.display(),
        hosts.catalog.url(""),
        hosts.search.url(""),
        hosts.reports.url(""),
        hosts.orders.url(""),
        hosts.partner.url(""),
        hosts.dead,
    );
    let config = fanout::RunConfig::builder()
        .store(StoreConfig::Sqlite(a.db.clone()))
        .concurrency(256)
        .per_host(128)
        .adaptive(true)
        .retries(2)
        .backoff(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(2),
        )
        .timeout(std::time::Duration::from_secs(1))
        .connect_timeout(std::time::Duration::from_secs(1))
        .command(
            std::env::args()
                .map(|a| super::args::shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .build();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fanout demo: {e}");
            return exit::FAILED;
        }
    };
    let stats = Stats::new();
    let shutdown = super::shutdown_signal(false);
    let bar = progress::Progress::start(stats.clone(), a.progress, false, Some(n));
    // The source is dropped once read, before the last requests are done: the servers are
    // held here until the run ends.
    let hosts = std::sync::Arc::new(hosts);
    let source = {
        let hosts = hosts.clone();
        Source::from_requests((0..n).map(move |i| hosts.request(i, n)))
    };
    let result =
        fanout::pipeline::run_source(source, config, stats, shutdown.cancelled_owned()).await;
    bar.finish();
    drop(hosts);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fanout demo: error: {e}");
            return exit::FAILED;
        }
    };
    eprint!("{summary}");
    eprintln!(
        "fanout demo: {} outcomes in {}; try: sqlite3 {} 'SELECT status, error, count(*) FROM outcomes GROUP BY 1, 2'",
        summary.total,
        a.db.display(),
        a.db.display()
    );
    match write_demo_report(&a.db, &a.html) {
        Ok(()) => eprintln!(
            "fanout demo: report in {} (open it in a browser)",
            a.html.display()
        ),
        Err(e) => {
            eprintln!(
                "fanout demo: cannot write the report {}: {e}",
                a.html.display()
            );
            return exit::FAILED;
        }
    }
    match summary.end {
        RunEnd::Completed => exit::OK,
        RunEnd::Interrupted => exit::INTERRUPTED,
        RunEnd::Deadline => exit::DEADLINE,
        RunEnd::StoreError => exit::FAILED,
    }
}
