//! `--robots` end to end against a small server of the test's own (hyper, 127.0.0.1 port 0) whose
//! `/robots.txt` answers as each test says, and which records every request it sees (path, time,
//! User-Agent): disallowed paths never reach it, robots.txt is fetched once per origin, 4xx allows
//! all, 5xx holds requests until it recovers or its tries run out, Crawl-delay spaces requests, a
//! group for the User-Agent's product token applies, and a deadline or Ctrl-C still ends the
//! waiting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::harness::{self, Dir, rows};

/// How the server answers its n-th (from 0) robots.txt request: status, extra header, body.
type RobotsAnswer = dyn Fn(usize) -> (u16, Option<(&'static str, String)>, String) + Send + Sync;

/// One request the server saw.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    user_agent: String,
}

struct RobotsServer {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    _rt: tokio::runtime::Runtime,
}

impl RobotsServer {
    fn start(
        robots: impl Fn(usize) -> (u16, Option<(&'static str, String)>, String) + Send + Sync + 'static,
    ) -> RobotsServer {
        let robots: Arc<RobotsAnswer> = Arc::new(robots);
        let (rt, listener) = harness::listening_runtime();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let hits = h.clone();
                let robots = robots.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let hits = hits.clone();
                        let robots = robots.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let user_agent = req
                                .headers()
                                .get(http::header::USER_AGENT)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let n = {
                                let mut hits = hits.lock().unwrap();
                                let n = hits.iter().filter(|h| h.path == "/robots.txt").count();
                                hits.push(Hit {
                                    at: Instant::now(),
                                    path: path.clone(),
                                    user_agent,
                                });
                                n
                            };
                            let mut resp = http::Response::builder();
                            let body = if path == "/robots.txt" {
                                let (status, header, body) = robots(n);
                                resp = resp.status(status);
                                if let Some((name, value)) = header {
                                    resp = resp.header(name, value);
                                }
                                body
                            } else {
                                "ok".to_owned()
                            };
                            Ok::<_, Infallible>(resp.body(Full::new(Bytes::from(body))).unwrap())
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        RobotsServer {
            addr,
            hits,
            _rt: rt,
        }
    }

    /// A server whose robots.txt always answers 200 with `body`.
    fn with_rules(body: &'static str) -> RobotsServer {
        RobotsServer::start(move |_| (200, None, body.to_owned()))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn count(&self, path_prefix: &str) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.path.starts_with(path_prefix))
            .count()
    }
}

/// Runs `fanout fetch --robots ARGS` over `urls` into `out.db` and returns the run's exit code.
fn fetch(dir: &Dir, args: &[&str], urls: &[String]) -> i32 {
    let list: String = urls.iter().map(|u| format!("{u}\n")).collect();
    dir.write("urls.txt", &list);
    let out = dir
        .cmd()
        .args(["fetch", "-q", "--robots", "--db", "out.db", "urls.txt"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code().unwrap()
}

fn urls(srv: &RobotsServer, prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| srv.url(&format!("{prefix}{i}"))).collect()
}

#[test]
fn disallowed_paths_are_recorded_as_robots_and_never_reach_the_server() {
    let a = RobotsServer::with_rules("User-agent: *\nDisallow: /private\n");
    let b = RobotsServer::with_rules("User-agent: *\nDisallow: /\n");
    let dir = Dir::new();
    let mut list = urls(&a, "/public/", 10);
    list.extend(urls(&a, "/private/", 10));
    list.extend(urls(&b, "/public/", 5));
    fetch(&dir, &["-c", "8"], &list);
    let rows = rows(&dir.path("out.db"));
    assert_eq!(rows.len(), 25, "one outcome per request");
    for r in &rows {
        let denied = r.url.contains("/private/") || r.url.contains(&b.addr.to_string());
        if denied {
            assert_eq!(r.error.as_deref(), Some("robots"), "{r:?}");
            assert_eq!(r.attempts, 0, "never attempted: {r:?}");
            assert_eq!(r.status, None);
            let detail = r.error_detail.as_deref().unwrap_or_default();
            assert!(detail.contains("/robots.txt"), "{detail}");
            assert!(detail.contains("Disallow: /"), "{detail}");
        } else {
            assert_eq!(r.status, Some(200), "{r:?}");
        }
    }
    assert_eq!(
        a.count("/private"),
        0,
        "a disallowed path reached the server"
    );
    assert_eq!(a.count("/public"), 10);
    assert_eq!(b.count("/public"), 0);
    // Once per origin, and before any other request to it.
    for srv in [&a, &b] {
        assert_eq!(srv.count("/robots.txt"), 1, "{:?}", srv.hits());
        assert_eq!(srv.hits()[0].path, "/robots.txt");
    }
}

#[test]
fn a_missing_robots_txt_allows_everything() {
    let srv = RobotsServer::start(|_| (404, None, "not here".into()));
    let dir = Dir::new();
    let list = urls(&srv, "/page/", 20);
    assert_eq!(fetch(&dir, &[], &list), 0);
    let rows = rows(&dir.path("out.db"));
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.status == Some(200)), "{rows:?}");
    assert_eq!(srv.count("/robots.txt"), 1);
    assert_eq!(srv.count("/page/"), 20);
}

#[test]
fn an_unreachable_robots_txt_holds_requests_until_it_recovers() {
    // 429, then 503 with Retry-After: 1, then rules.
    let srv = RobotsServer::start(|n| match n {
        0 => (429, None, String::new()),
        1 => (503, Some(("retry-after", "1".into())), String::new()),
        _ => (200, None, "User-agent: *\nDisallow: /private\n".into()),
    });
    let dir = Dir::new();
    let mut list = urls(&srv, "/public/", 5);
    list.extend(urls(&srv, "/private/", 5));
    fetch(&dir, &["--retries", "2", "--backoff", "100ms..1s"], &list);
    let hits = srv.hits();
    let robots: Vec<&Hit> = hits.iter().filter(|h| h.path == "/robots.txt").collect();
    assert_eq!(robots.len(), 3, "{hits:?}");
    let first_page = hits.iter().position(|h| h.path != "/robots.txt").unwrap();
    assert!(
        hits[..first_page].len() == 3,
        "a page was fetched before robots.txt answered: {hits:?}"
    );
    // The Retry-After of the second answer was honoured.
    assert!(robots[2].at - robots[1].at >= Duration::from_millis(900));
    let rows = rows(&dir.path("out.db"));
    assert_eq!(rows.len(), 10);
    for r in &rows {
        if r.url.contains("/private/") {
            assert_eq!(r.error.as_deref(), Some("robots"), "{r:?}");
        } else {
            assert_eq!(r.status, Some(200), "{r:?}");
        }
    }
    assert_eq!(srv.count("/private"), 0);
}

#[test]
fn a_robots_txt_that_stays_unreachable_denies_after_its_tries() {
    let srv = RobotsServer::start(|_| (503, None, String::new()));
    let dir = Dir::new();
    let list = urls(&srv, "/page/", 8);
    fetch(&dir, &["--retries", "1", "--backoff", "50ms..1s"], &list);
    assert_eq!(srv.count("/robots.txt"), 2, "{:?}", srv.hits());
    assert_eq!(
        srv.count("/page/"),
        0,
        "nothing fetched while robots.txt is unreachable"
    );
    let rows = rows(&dir.path("out.db"));
    assert_eq!(rows.len(), 8);
    for r in &rows {
        assert_eq!(r.error.as_deref(), Some("robots"), "{r:?}");
        let detail = r.error_detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("robots.txt was unreachable (2 tries, last: HTTP 503)"),
            "{detail}"
        );
    }
}

#[test]
fn crawl_delay_spaces_the_hosts_requests() {
    let srv = RobotsServer::with_rules("User-agent: *\nCrawl-delay: 0.25\n");
    let dir = Dir::new();
    let list = urls(&srv, "/page/", 6);
    assert_eq!(fetch(&dir, &["-c", "6"], &list), 0);
    let pages: Vec<Instant> = srv
        .hits()
        .iter()
        .filter(|h| h.path.starts_with("/page/"))
        .map(|h| h.at)
        .collect();
    assert_eq!(pages.len(), 6);
    // 250 ms apart by the engine's clock: 1.25 s from first to last; arrivals may bunch a little
    // on the way (a loaded machine), so the bounds are generous.
    assert_spaced(&pages, Duration::from_millis(250));
    // A --per-host-rate that is stricter wins.
    let srv = RobotsServer::with_rules("User-agent: *\nCrawl-delay: 0.01\n");
    let dir = Dir::new();
    let list = urls(&srv, "/page/", 4);
    assert_eq!(
        fetch(
            &dir,
            &["-c", "4", "--per-host-rate", "4/s", "--burst", "1"],
            &list
        ),
        0
    );
    let pages: Vec<Instant> = srv
        .hits()
        .iter()
        .filter(|h| h.path.starts_with("/page/"))
        .map(|h| h.at)
        .collect();
    assert_eq!(pages.len(), 4);
    assert_spaced(&pages, Duration::from_millis(250));
}

/// Arrivals about `interval` apart: no two closer than 100 ms, and the first and last at least
/// 80% of `(n - 1) × interval` apart. Unspaced, they would all come within a few milliseconds.
fn assert_spaced(arrivals: &[Instant], interval: Duration) {
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(100)),
        "{gaps:?}"
    );
    let span = *arrivals.last().unwrap() - arrivals[0];
    let want = interval.mul_f64(0.8 * (arrivals.len() - 1) as f64);
    assert!(span >= want, "{span:?} < {want:?}: {gaps:?}");
}

#[test]
fn the_group_of_the_user_agents_product_token_applies() {
    let rules = "User-agent: *\nDisallow: /\n\nUser-agent: mybot\nDisallow: /secret\n";
    let srv = RobotsServer::with_rules(rules);
    let dir = Dir::new();
    let list = vec![srv.url("/page"), srv.url("/secret/x")];
    fetch(
        &dir,
        &["-A", "MyBot/2.0 (+https://example.test/bot)"],
        &list,
    );
    let rows = rows(&dir.path("out.db"));
    let page = rows.iter().find(|r| r.url.ends_with("/page")).unwrap();
    assert_eq!(page.status, Some(200), "{page:?}");
    let secret = rows.iter().find(|r| r.url.ends_with("/secret/x")).unwrap();
    assert_eq!(secret.error.as_deref(), Some("robots"));
    let detail = secret.error_detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("for MyBot by") && detail.contains("Disallow: /secret"),
        "{detail}"
    );
    let robots = srv
        .hits()
        .into_iter()
        .find(|h| h.path == "/robots.txt")
        .unwrap();
    assert_eq!(robots.user_agent, "MyBot/2.0 (+https://example.test/bot)");

    // fanout's own token falls back to the '*' group: nothing may be fetched.
    let srv = RobotsServer::with_rules(rules);
    let dir = Dir::new();
    fetch(&dir, &[], &[srv.url("/page")]);
    let all = crate::harness::rows(&dir.path("out.db"));
    assert_eq!(all[0].error.as_deref(), Some("robots"), "{all:?}");
    assert_eq!(srv.count("/page"), 0);
}

#[test]
fn robots_txt_redirects_are_followed() {
    let target = RobotsServer::with_rules("User-agent: *\nDisallow: /no\n");
    let to = target.url("/robots.txt");
    let srv = RobotsServer::start(move |_| (301, Some(("location", to.clone())), String::new()));
    let dir = Dir::new();
    fetch(&dir, &[], &[srv.url("/no/1"), srv.url("/yes/1")]);
    let rows = rows(&dir.path("out.db"));
    let no = rows.iter().find(|r| r.url.contains("/no/")).unwrap();
    assert_eq!(no.error.as_deref(), Some("robots"), "{no:?}");
    let yes = rows.iter().find(|r| r.url.contains("/yes/")).unwrap();
    assert_eq!(yes.status, Some(200), "{yes:?}");
    assert_eq!(srv.count("/no/"), 0);
    assert_eq!(target.count("/robots.txt"), 1);
}

#[test]
fn a_deadline_ends_requests_waiting_for_robots_txt() {
    // A listener that never accepts: the robots.txt fetch waits for its --timeout (30 s), and the
    // origin's requests with it, until the 1 s deadline ends them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = Dir::new();
    let list: Vec<String> = (0..5)
        .map(|i| format!("http://127.0.0.1:{port}/p/{i}"))
        .collect();
    let started = Instant::now();
    fetch(&dir, &["--deadline", "1s", "--timeout", "30s"], &list);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the deadline ended the wait"
    );
    let rows = rows(&dir.path("out.db"));
    assert_eq!(rows.len(), 5, "one outcome per request");
    for r in &rows {
        assert_eq!(r.error.as_deref(), Some("deadline"), "{r:?}");
        let detail = r.error_detail.as_deref().unwrap_or_default();
        assert!(detail.contains("waiting for robots.txt"), "{detail}");
    }
    drop(silent);
}

#[test]
fn ctrl_c_leaves_requests_waiting_for_robots_txt_to_the_rerun() {
    // A server that accepts and never answers: the robots.txt fetch waits (--timeout 30 s).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let dir = Dir::new();
    let list: String = (0..5)
        .map(|i| format!("http://127.0.0.1:{port}/p/{i}\n"))
        .collect();
    dir.write("urls.txt", &list);
    let child = dir
        .fanout()
        .args([
            "fetch",
            "-q",
            "--robots",
            "--db",
            "out.db",
            "--timeout",
            "30s",
            "urls.txt",
        ])
        .spawn()
        .unwrap();
    assert!(crate::harness::wait_until(Duration::from_secs(20), || {
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1
    }));
    crate::harness::signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    // Never attempted: no outcome, so a rerun fetches them (as for any request never sent).
    let db = dir.path("out.db");
    assert_eq!(
        crate::harness::scalar(&db, "SELECT count(*) FROM outcomes"),
        0
    );
    assert_eq!(
        crate::harness::text(&db, "SELECT status FROM runs"),
        "interrupted"
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only robots.txt was asked for"
    );
}
