//! `fanout report`: its numbers against SQL on a known run (SQLite, and PostgreSQL on the tests'
//! private server, against the SQLite report of the same run too), its scopes and errors, `fetch
//! --summary-json`, and the HTML page opened in a real headless Chromium (console, network,
//! charts, sorting, a screenshot kept under target/test-artifacts/).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Dir, TestServer, pg_setup, scalar};
use crate::pg::{PW_USER, PgServer};
use predicates::prelude::*;
use predicates::str::contains;

/// The known mix: 300 × 200, 50 × 404, 20 × 500 on 127.0.0.1, 10 timeouts (each tried twice),
/// and 40 × 200 on a second host name (`b.test`, pinned to the same server).
fn known_run(srv: &TestServer, dir: &Dir) -> (String, String) {
    known_run_into(srv, dir, &["t.db"])
}

/// [`known_run`] into the stores `dbs` (each a `--db`).
fn known_run_into(srv: &TestServer, dir: &Dir, dbs: &[&str]) -> (String, String) {
    let port = srv.server.addr().port();
    let mut list = String::new();
    for (path, n) in [
        ("/status/200", 300),
        ("/status/404", 50),
        ("/status/500", 20),
        ("/delay/5000", 10),
    ] {
        for i in 0..n {
            list.push_str(&srv.url(&format!("{path}?i={i}")));
            list.push('\n');
        }
    }
    for i in 0..40 {
        // 50-69 ms: slower than anything the main host answers, even on a loaded machine.
        list.push_str(&format!(
            "http://b.test:{port}/delay/{}?i={i}\n",
            50 + i % 20
        ));
    }
    dir.write("urls.txt", &list);
    let mut fetch = dir.cmd();
    fetch.args(["fetch", "urls.txt", "-q", "-c", "50"]);
    for db in dbs {
        fetch.args(["--db", db]);
    }
    fetch
        .args([
            "--timeout",
            "300ms",
            "--retries",
            "1",
            "--backoff",
            "10ms..20ms",
        ])
        .args(["--resolve", &format!("b.test:{port}:127.0.0.1")])
        .args(["--summary-json", "summary.json"])
        .assert()
        .success();
    (format!("127.0.0.1:{port}"), format!("b.test:{port}"))
}

fn report_json(dir: &Dir, args: &[&str]) -> Value {
    let out = dir
        .cmd()
        .arg("report")
        .args(args)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

fn reals(db: &Path, sql: &str) -> Vec<f64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn pairs(db: &Path, sql: &str) -> Vec<(Value, u64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| {
        let v = match r.get_ref(0)? {
            rusqlite::types::ValueRef::Integer(n) => Value::from(n),
            rusqlite::types::ValueRef::Text(t) => Value::from(std::str::from_utf8(t).unwrap()),
            _ => Value::Null,
        };
        Ok((v, r.get::<_, i64>(1)? as u64))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

#[test]
fn report_numbers_equal_sql_on_a_known_run() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let (main_host, b_host) = known_run(&srv, &dir);
    let db = dir.path("t.db");
    let r = report_json(&dir, &["t.db"]);
    let w = "run_id = 1";

    assert_eq!(r["format"], "fanout-report/1");
    assert_eq!(r["scope"], "latest");
    assert_eq!(r["run_id"], 1);
    let count = |sql: &str| scalar(&db, &format!("SELECT {sql} FROM outcomes WHERE {w}")) as u64;
    assert_eq!(r["outcomes"], 420);
    assert_eq!(r["outcomes"], count("count(*)"));
    assert_eq!(r["responses"], count("count(status)"));
    assert_eq!(r["errors"], count("count(*) - count(status)"));
    assert_eq!(r["bytes"], count("sum(bytes)"));
    assert_eq!(r["attempts"], count("sum(attempts)"));
    assert_eq!(r["retries"], count("sum(max(attempts - 1, 0))"));
    assert_eq!(r["retries"], 10, "each timeout tried twice");

    // The known mix, and the same by SQL.
    let statuses: Vec<(Value, u64)> = r["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["status"].clone(), s["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![(200.into(), 340), (404.into(), 50), (500.into(), 20)]
    );
    let sql = format!(
        "SELECT status, count(*) FROM outcomes WHERE {w} AND status IS NOT NULL GROUP BY 1 ORDER BY 1"
    );
    assert_eq!(statuses, pairs(&db, &sql));
    let kinds: Vec<(Value, u64)> = r["error_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].clone(), s["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("timeout".into(), 10)]);
    let sql = format!(
        "SELECT error, count(*) FROM outcomes WHERE {w} AND status IS NULL GROUP BY 1 ORDER BY 1"
    );
    assert_eq!(kinds, pairs(&db, &sql));
    assert_eq!(
        r["status_classes"],
        serde_json::json!({"1xx": 0, "2xx": 340, "3xx": 0, "4xx": 50, "5xx": 20, "other": 0})
    );

    // Percentiles by nearest rank, exactly as ORDER BY ... OFFSET finds them.
    let latencies = reals(
        &db,
        &format!(
            "SELECT total_ms FROM outcomes WHERE {w} AND status IS NOT NULL ORDER BY total_ms"
        ),
    );
    assert_eq!(latencies.len(), 410);
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let offset = ((q * 410.0_f64).ceil() as u64 - 1).to_string();
        let exact = reals(
            &db,
            &format!(
                "SELECT total_ms FROM outcomes WHERE {w} AND status IS NOT NULL \
                 ORDER BY total_ms LIMIT 1 OFFSET {offset}"
            ),
        )[0];
        assert_eq!(r["latency_ms"][name].as_f64().unwrap(), exact, "{name}");
    }
    let max = reals(
        &db,
        &format!("SELECT max(total_ms) FROM outcomes WHERE {w} AND status IS NOT NULL"),
    )[0];
    assert_eq!(r["latency_ms"]["max"].as_f64().unwrap(), max);
    let mean = reals(
        &db,
        &format!("SELECT avg(total_ms) FROM outcomes WHERE {w} AND status IS NOT NULL"),
    )[0];
    assert!(close(r["latency_ms"]["mean"].as_f64().unwrap(), mean));
    let hist: u64 = r["latency_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hist, 410);

    // Hosts: counts by SQL on the URL, the engine's figures from run_hosts.
    assert_eq!(r["hosts"]["count"], 2);
    let by_volume = r["hosts"]["by_volume"].as_array().unwrap();
    assert_eq!(by_volume[0]["host"], main_host.as_str());
    assert_eq!(by_volume[0]["outcomes"], 380);
    assert_eq!(by_volume[0]["errors"], 10);
    assert_eq!(by_volume[0]["http_errors"], 70);
    assert_eq!(by_volume[1]["host"], b_host.as_str());
    assert_eq!(by_volume[1]["outcomes"], 40);
    assert_eq!(
        by_volume[1]["outcomes"],
        count("count(*) FILTER (WHERE url LIKE 'http://b.test:%')")
    );
    assert_eq!(r["hosts"]["by_errors"][0]["host"], main_host.as_str());
    assert_eq!(r["hosts"]["by_errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["hosts"]["by_p99"][0]["host"],
        b_host.as_str(),
        "its delays are slower"
    );
    let b_lat = reals(
        &db,
        &format!(
            "SELECT total_ms FROM outcomes WHERE {w} AND url LIKE 'http://b.test:%' ORDER BY total_ms"
        ),
    );
    let b_p99 = r["hosts"]["by_p99"][0]["p99_ms"].as_f64().unwrap();
    let exact = b_lat[(0.99 * 40.0_f64).ceil() as usize - 1];
    assert!(b_p99 >= exact && b_p99 < exact * 1.01, "{b_p99} vs {exact}");
    // The timeouts pushed back: the engine reported the host, and it is stored.
    let stored = scalar(
        &db,
        &format!("SELECT attempts FROM run_hosts WHERE run_id = 1 AND host = '{main_host}'"),
    );
    assert_eq!(by_volume[0]["attempts"], stored);
    assert_eq!(
        by_volume[0]["attempts"],
        count(&format!(
            "sum(attempts) FILTER (WHERE url LIKE 'http://{main_host}/%')"
        ))
    );
    assert_eq!(by_volume[0]["overloads"], 20, "10 timeouts, each twice");
    assert_eq!(
        by_volume[0]["overloads"],
        scalar(&db, "SELECT overloads FROM run_hosts WHERE run_id = 1")
    );

    // The time series adds up.
    let buckets = r["timeline"]["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 120);
    let sum = |f: &dyn Fn(&Value) -> u64| buckets.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|b| b["outcomes"].as_u64().unwrap()), 420);
    assert_eq!(sum(&|b| b["status_classes"]["4xx"].as_u64().unwrap()), 50);
    assert_eq!(sum(&|b| b["errors"]["timeout"].as_u64().unwrap_or(0)), 10);

    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["outcomes"], 420);
    let rps = r["throughput_rps"].as_f64().unwrap();
    assert!(close(rps, 420.0 / r["elapsed_s"].as_f64().unwrap()));

    // fetch --summary-json wrote the same report (of run 1 by its id).
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("summary.json")).unwrap()).unwrap();
    assert_eq!(file, report_json(&dir, &["t.db", "--run", "1"]));
    assert_eq!(file["outcomes"], r["outcomes"]);

    // The text form says the same.
    dir.cmd()
        .args(["report", "t.db"])
        .assert()
        .success()
        .stdout(
            contains("420 (410 responses, 10 errors)")
                .and(contains("200 ×340, 404 ×50, 500 ×20"))
                .and(contains("timeout 10"))
                .and(contains(main_host.as_str())),
        );
}

#[test]
fn report_scopes_latest_run_and_all() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    known_run(&srv, &dir);
    // Run 2 fetches the 404s again: they now belong to it.
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--db",
            "t.db",
            "-q",
            "--retry-status",
            "404",
        ])
        .args(["--timeout", "300ms", "--retries", "0"])
        .args([
            "--resolve",
            &format!("b.test:{}:127.0.0.1", srv.server.addr().port()),
        ])
        .assert()
        .success();
    let latest = report_json(&dir, &["t.db"]);
    assert_eq!(latest["run_id"], 2);
    assert_eq!(latest["outcomes"], 50);
    assert_eq!(latest["statuses"][0]["status"], 404);
    assert_eq!(latest["runs"].as_array().unwrap().len(), 2);
    let first = report_json(&dir, &["t.db", "--run", "1"]);
    assert_eq!(first["outcomes"], 370);
    let all = report_json(&dir, &["t.db", "--all"]);
    assert_eq!(all["scope"], "all");
    assert_eq!(all["run_id"], Value::Null);
    assert_eq!(all["outcomes"], 420);
}

#[test]
fn report_errors_name_the_store_and_exit_2() {
    let dir = Dir::new();
    dir.cmd()
        .args(["report", "missing.db"])
        .assert()
        .code(2)
        .stderr(contains("store missing.db: no such file"));
    dir.cmd()
        .arg("report")
        .assert()
        .code(2)
        .stderr(contains("store fanout.db: no such file"));
    dir.write(
        "junk.db",
        "not a database at all, just text that is long enough......",
    );
    dir.cmd()
        .args(["report", "junk.db"])
        .assert()
        .code(2)
        .stderr(contains("store junk.db"));
    let out = dir
        .cmd()
        .args(["report", "postgres://me:s3cret@127.0.0.1:1/db"])
        .assert()
        .code(2)
        .stderr(contains("store postgres://me:***@127.0.0.1:1/db"))
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    dir.cmd()
        .args(["report", "x.db", "--run", "1", "--all"])
        .assert()
        .code(2)
        .stderr(contains("--all"));
    dir.cmd()
        .args(["fetch", "--jsonl", "out.jsonl", "--summary-json", "s.json"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(contains("--summary-json"));

    // A store with a run: an unknown run is named.
    let srv = TestServer::start(Duration::ZERO);
    dir.write("one.txt", &format!("{}\n", srv.url("/item/1")));
    dir.cmd()
        .args(["fetch", "one.txt", "--db", "one.db", "-q"])
        .assert()
        .success();
    dir.cmd()
        .args(["report", "one.db", "--run", "99"])
        .assert()
        .code(2)
        .stderr(contains("store one.db: --run 99: no such run"));
}

/// The report's HTML in headless Chromium.
#[test]
fn html_report_renders_offline_in_chromium() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let port = srv.server.addr().port();
    // Three hosts: b busiest, a first by name, c last; latencies spread over two decades.
    let mut list = String::new();
    for (host, n) in [("a.test", 30), ("b.test", 150), ("c.test", 60)] {
        for i in 0..n {
            let path = match i % 10 {
                0 => "/status/404".to_owned(),
                1 => "/status/503".to_owned(),
                2 => "/delay/2000".to_owned(),
                k => format!("/delay/{}", k * k),
            };
            list.push_str(&format!("http://{host}:{port}{path}?i={i}\n"));
        }
    }
    dir.write("urls.txt", &list);
    let mut fetch = dir.cmd();
    fetch
        .args(["fetch", "urls.txt", "-q", "-c", "40", "--timeout", "500ms"])
        .args(["--retries", "0"]);
    for h in ["a.test", "b.test", "c.test"] {
        fetch.args(["--resolve", &format!("{h}:{port}:127.0.0.1")]);
    }
    fetch.assert().success();
    dir.cmd()
        .args(["report", "--html", "report.html"])
        .assert()
        .success()
        .stderr(contains("wrote report.html"));
    let page = std::fs::read_to_string(dir.path("report.html")).unwrap();
    assert!(page.len() < 200_000, "{} bytes", page.len());
    assert!(page.contains("default-src 'none'"));
    for fetching in [
        " src=", " href=", "url(", "@import", "<link", "<img", "<iframe",
    ] {
        assert!(
            !page.contains(fetching),
            "the page must not load anything: {fetching}"
        );
    }

    let chromium = Chromium::find();
    let url = format!("file://{}#test", dir.path("report.html").display());
    let (dom, log) = chromium.run(&dir, &["--dump-dom", &url]);
    assert!(
        dom.contains("data-ready=\"ok\""),
        "the page's script ran: {log}"
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let out = between(&dom, "<pre id=\"test-out\" hidden=\"\">", "</pre>")
        .unwrap_or_else(|| panic!("no test results in the DOM: {dom}"));
    let out: Value = serde_json::from_str(
        &out.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
    .unwrap();
    assert_eq!(out["resources"], 0, "nothing fetched: {out}");
    let charts = out["charts"].as_array().unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["chart-rps", "chart-status", "chart-pct", "chart-hist"]
    );
    for c in charts {
        assert!(c["width"].as_f64().unwrap() > 100.0, "{c}");
        assert!(c["height"].as_f64().unwrap() > 100.0, "{c}");
        assert!(c["marks"].as_u64().unwrap() > 3, "{c}");
    }
    let firsts: Vec<&str> = out["sort"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["first"].as_str().unwrap())
        .collect();
    let h = |n: &str| format!("{n}:{port}");
    assert_eq!(
        firsts,
        [h("b.test"), h("a.test"), h("c.test")],
        "busiest first, then sorted by host up and down"
    );

    // The screenshot, kept for people to look at.
    let artifacts = artifacts_dir();
    let png = artifacts.join("report.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let file_url = format!("file://{}", dir.path("report.html").display());
    chromium.run(
        &dir,
        &[
            &shot,
            "--window-size=1000,1900",
            "--hide-scrollbars",
            &file_url,
        ],
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(&s[from..to])
}

/// target/test-artifacts/, next to the test's temporary directory.
fn artifacts_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(&tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Chromium {
    bin: PathBuf,
}

impl Chromium {
    /// Debian's `chromium` (installed by `.ci/run`); the test fails without it.
    fn find() -> Chromium {
        for bin in ["chromium", "chromium-browser"] {
            let ok = Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Chromium { bin: bin.into() };
            }
        }
        panic!("headless Chromium is needed: apt-get install chromium");
    }

    /// Runs headless Chromium with `args` and a fresh profile; (stdout, stderr).
    fn run(&self, dir: &Dir, args: &[&str]) -> (String, String) {
        let profile = dir.path(&format!("chromium-{}", fastrand_suffix()));
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let (out, err) = (out.join().unwrap(), err.join().unwrap());
                assert!(status.success(), "chromium failed ({status}): {err}");
                return (out, err);
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                panic!("chromium did not finish in 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn fastrand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// Real numbers of `psql` output, one a line.
fn pg_reals(pg: &PgServer, db: &str, sql: &str) -> Vec<f64> {
    pg.psql(db, sql)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// `(value, count)` pairs of `psql` output, the value as the report's JSON has it.
fn pg_pairs(pg: &PgServer, db: &str, sql: &str) -> Vec<(Value, u64)> {
    pg.psql(db, sql)
        .lines()
        .map(|l| {
            let (v, n) = l.split_once('|').unwrap();
            let v = v
                .parse::<i64>()
                .map_or_else(|_| Value::from(v), Value::from);
            (v, n.parse().unwrap())
        })
        .collect()
}

/// The report with what differs between two stores of one run taken out: the store's name, when
/// each store ended the run (and so the run's wall time), and the mean (a sum in another order).
fn store_independent(r: &Value) -> Value {
    let mut r = r.clone();
    let o = r.as_object_mut().unwrap();
    for k in ["store", "elapsed_s", "throughput_rps"] {
        o.remove(k);
    }
    o["latency_ms"].as_object_mut().unwrap().remove("mean");
    for run in o["runs"].as_array_mut().unwrap() {
        run.as_object_mut().unwrap().remove("finished_at");
    }
    r
}

#[test]
fn postgres_report_numbers_equal_sql_and_the_sqlite_report_of_the_same_run() {
    let pg = PgServer::shared();
    let (db, url, srv, dir) = pg_setup(pg, Duration::ZERO);
    // One run into both stores.
    let (main_host, b_host) = known_run_into(&srv, &dir, &["t.db", &url]);
    let r = report_json(&dir, &[&url]);
    let w = "run_id = 1";

    assert_eq!(r["format"], "fanout-report/1");
    assert_eq!(r["store"], url.as_str());
    assert_eq!(r["scope"], "latest");
    assert_eq!(r["run_id"], 1);
    let count = |sql: &str| pg.scalar(&db, &format!("SELECT {sql} FROM outcomes WHERE {w}")) as u64;
    assert_eq!(r["outcomes"], 420);
    assert_eq!(r["outcomes"], count("count(*)"));
    assert_eq!(r["responses"], count("count(status)"));
    assert_eq!(r["errors"], count("count(*) - count(status)"));
    assert_eq!(r["bytes"], count("sum(bytes)"));
    assert_eq!(r["attempts"], count("sum(attempts)"));
    assert_eq!(r["retries"], count("sum(greatest(attempts - 1, 0))"));
    assert_eq!(r["retries"], 10, "each timeout tried twice");

    let listed = |field: &str, name: &str| -> Vec<(Value, u64)> {
        r[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s[name].clone(), s["count"].as_u64().unwrap()))
            .collect()
    };
    let statuses = listed("statuses", "status");
    assert_eq!(
        statuses,
        vec![(200.into(), 340), (404.into(), 50), (500.into(), 20)]
    );
    assert_eq!(
        statuses,
        pg_pairs(
            pg,
            &db,
            &format!(
                "SELECT status, count(*) FROM outcomes WHERE {w} AND status IS NOT NULL \
                 GROUP BY 1 ORDER BY 1"
            )
        )
    );
    let kinds = listed("error_kinds", "kind");
    assert_eq!(kinds, vec![("timeout".into(), 10)]);
    assert_eq!(
        kinds,
        pg_pairs(
            pg,
            &db,
            &format!(
                "SELECT error, count(*) FROM outcomes WHERE {w} AND status IS NULL \
                 GROUP BY 1 ORDER BY 1"
            )
        )
    );
    assert_eq!(
        r["status_classes"],
        serde_json::json!({"1xx": 0, "2xx": 340, "3xx": 0, "4xx": 50, "5xx": 20, "other": 0})
    );

    // Percentiles by nearest rank, exactly as ORDER BY ... OFFSET finds them.
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let offset = (q * 410.0_f64).ceil() as u64 - 1;
        let exact = pg_reals(
            pg,
            &db,
            &format!(
                "SELECT total_ms FROM outcomes WHERE {w} AND status IS NOT NULL \
                 ORDER BY total_ms LIMIT 1 OFFSET {offset}"
            ),
        )[0];
        assert_eq!(r["latency_ms"][name].as_f64().unwrap(), exact, "{name}");
    }
    let stat = |f: &str| {
        pg_reals(
            pg,
            &db,
            &format!("SELECT {f}(total_ms) FROM outcomes WHERE {w} AND status IS NOT NULL"),
        )[0]
    };
    assert_eq!(r["latency_ms"]["max"].as_f64().unwrap(), stat("max"));
    assert!(close(
        r["latency_ms"]["mean"].as_f64().unwrap(),
        stat("avg")
    ));

    // Hosts: counts by SQL on the URL, the engine's figures from run_hosts.
    assert_eq!(r["hosts"]["count"], 2);
    let by_volume = r["hosts"]["by_volume"].as_array().unwrap();
    assert_eq!(by_volume[0]["host"], main_host.as_str());
    assert_eq!(
        by_volume[0]["outcomes"],
        count(&format!(
            "count(*) FILTER (WHERE url LIKE 'http://{main_host}/%')"
        ))
    );
    assert_eq!(by_volume[0]["errors"], 10);
    assert_eq!(by_volume[0]["http_errors"], 70);
    assert_eq!(by_volume[1]["host"], b_host.as_str());
    assert_eq!(
        by_volume[1]["outcomes"],
        count("count(*) FILTER (WHERE url LIKE 'http://b.test:%')")
    );
    let stored = pg.scalar(
        &db,
        &format!("SELECT attempts FROM run_hosts WHERE run_id = 1 AND host = '{main_host}'"),
    );
    assert_eq!(by_volume[0]["attempts"], stored);
    assert_eq!(
        by_volume[0]["attempts"],
        count(&format!(
            "sum(attempts) FILTER (WHERE url LIKE 'http://{main_host}/%')"
        ))
    );
    assert_eq!(by_volume[0]["overloads"], 20, "10 timeouts, each twice");
    // Both stores hold the same run_hosts rows (the run's one summary).
    let sqlite_hosts: Vec<String> = {
        let conn = rusqlite::Connection::open(dir.path("t.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT run_id, host, attempts, final_limit, overloads FROM run_hosts \
                 ORDER BY host",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok(format!(
                "{}|{}|{}|{}|{}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let pg_hosts: Vec<String> = pg
        .psql(
            &db,
            "SELECT run_id, host, attempts, final_limit, overloads FROM run_hosts \
             ORDER BY host COLLATE \"C\"",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!pg_hosts.is_empty());
    assert_eq!(pg_hosts, sqlite_hosts);

    // The time series adds up.
    let buckets = r["timeline"]["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 120);
    let sum = |f: &dyn Fn(&Value) -> u64| buckets.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|b| b["outcomes"].as_u64().unwrap()), 420);
    assert_eq!(sum(&|b| b["errors"]["timeout"].as_u64().unwrap_or(0)), 10);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "completed");
    let rps = r["throughput_rps"].as_f64().unwrap();
    assert!(close(rps, 420.0 / r["elapsed_s"].as_f64().unwrap()));

    // The SQLite report of the same run says the same, to the last bucket and host.
    let s = report_json(&dir, &["t.db"]);
    assert_eq!(store_independent(&r), store_independent(&s));
    assert!(close(
        r["latency_ms"]["mean"].as_f64().unwrap(),
        s["latency_ms"]["mean"].as_f64().unwrap()
    ));
    let elapsed = |r: &Value| r["elapsed_s"].as_f64().unwrap();
    assert!((elapsed(&r) - elapsed(&s)).abs() < 1.0, "{r} {s}");

    // Scopes, text and HTML.
    let mut run1 = r.clone();
    run1["scope"] = "run".into();
    assert_eq!(
        store_independent(&report_json(&dir, &[&url, "--run", "1"])),
        store_independent(&run1)
    );
    let all = report_json(&dir, &[&url, "--all"]);
    assert_eq!(all["scope"], "all");
    assert_eq!(all["outcomes"], 420);
    dir.cmd().args(["report", &url]).assert().success().stdout(
        contains("420 (410 responses, 10 errors)")
            .and(contains("200 ×340, 404 ×50, 500 ×20"))
            .and(contains(main_host.as_str())),
    );
    dir.cmd()
        .args(["report", &url, "--html", "pg.html"])
        .assert()
        .success()
        .stderr(contains("wrote pg.html"));
    let page = std::fs::read_to_string(dir.path("pg.html")).unwrap();
    assert!(page.contains("chart-rps") && page.contains(main_host.as_str()));
    dir.cmd()
        .args(["report", &url, "--run", "99"])
        .assert()
        .code(2)
        .stderr(contains(format!("store {url}: --run 99: no such run")));

    // fetch --summary-json with a PostgreSQL store only: the report of its run, by its id.
    let db2 = pg.create_db();
    let url2 = pg.url(&db2);
    dir.write("one.txt", &format!("{}\n", srv.url("/item/1")));
    dir.cmd()
        .args(["fetch", "one.txt", "-q", "--db", &url2])
        .args(["--summary-json", "pg-summary.json"])
        .assert()
        .success();
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("pg-summary.json")).unwrap())
            .unwrap();
    assert_eq!(file, report_json(&dir, &[&url2, "--run", "1"]));
    assert_eq!(file["outcomes"], 1);

    // The host key in PostgreSQL SQL is the engine's, as the SQLite side's function makes it:
    // copies of that outcome under other URLs.
    let cases = [
        ("http://A.test/x", "a.test:80"),
        ("https://a.test", "a.test:443"),
        ("http://A.test:8080?q", "a.test:8080"),
        ("http://u:secret@a.test/", "a.test:80"),
        ("HTTP://u@B.test#f", "b.test:80"),
        ("http://[::1]:9/", "[::1]:9"),
        ("http://[::1]/", "[::1]:80"),
        ("ftp://c.test/", "c.test:0"),
        ("not a url", "(none)"),
    ];
    for (i, (u, _)) in cases.iter().enumerate() {
        pg.psql(
            &db2,
            &format!(
                "INSERT INTO outcomes SELECT (jsonb_populate_record(NULL::outcomes, to_jsonb(o) \
                 || jsonb_build_object('key', 'case{i}', 'url', '{u}'))).* \
                 FROM outcomes o WHERE key = (SELECT min(key) FROM outcomes)"
            ),
        );
    }
    let all = report_json(&dir, &[&url2, "--all"]);
    let mut hosts: Vec<&str> = all["hosts"]["table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    let mut want: Vec<&str> = cases.iter().map(|c| c.1).collect();
    want.push(&main_host);
    want.sort();
    want.dedup();
    assert_eq!(hosts, want);
    assert!(!all.to_string().contains("secret"));
}

#[test]
fn postgres_report_errors_name_the_store_without_its_password() {
    let pg = PgServer::shared();
    let dir = Dir::new();
    // A refused password.
    let url = format!(
        "postgres://{PW_USER}:Rep0rt-s3cret@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    let out = dir
        .cmd()
        .args(["report", &url])
        .assert()
        .code(2)
        .stderr(contains(format!(
            "store postgres://{PW_USER}:***@127.0.0.1:{}/postgres",
            pg.port
        )))
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Rep0rt-s3cret"));
    // A database that is not a store.
    let empty = pg.url(&pg.create_db());
    dir.cmd()
        .args(["report", &empty])
        .assert()
        .code(2)
        .stderr(contains(format!("store {empty}: not a fanout store")));
}
