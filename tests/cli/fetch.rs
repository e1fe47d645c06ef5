//! `fanout fetch` end to end: inputs, engine limits, outcomes and their kinds, stores, signals.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{self, Dir, TestServer, rows, scalar, text};
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn five_thousand_urls_give_five_thousand_outcomes() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..5000)
        .map(|i| format!("{}\n", srv.url(&format!("/item/{i}"))))
        .collect();
    dir.write("urls.txt", &list);
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "50"])
        .assert()
        .success();
    let db = dir.path("fanout.db");
    let rows = rows(&db);
    assert_eq!(rows.len(), 5000);
    let keys: HashSet<_> = rows.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 5000, "one row per key");
    assert!(
        rows.iter()
            .all(|r| r.status == Some(200) && r.error.is_none() && r.attempts == 1)
    );
    let urls: HashSet<_> = rows.iter().map(|r| r.url.clone()).collect();
    assert_eq!(urls.len(), 5000);
    assert_eq!(srv.stats().requests(), 5000, "each URL fetched once");
    assert_eq!(text(&db, "SELECT status FROM runs"), "completed");
    assert_eq!(scalar(&db, "SELECT outcomes FROM runs"), 5000);
}

#[test]
fn stdin_to_jsonl_on_stdout() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let input = format!(
        "{}\n# a comment\n\n{}\n",
        srv.url("/item/a"),
        srv.url("/status/500")
    );
    let out = dir
        .cmd()
        .args(["fetch", "--jsonl", "-"])
        .write_stdin(input)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "comments and blank lines are skipped");
    let mut statuses: Vec<_> = lines
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 500]);
    assert!(
        lines
            .iter()
            .all(|l| l["error"].is_null() && l["body_sha256"].is_string())
    );
    assert!(
        !dir.path("fanout.db").exists(),
        "--jsonl alone writes no database"
    );
}

#[test]
fn json_specs_send_method_headers_and_body() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let specs = format!(
        "{}\n{}\n",
        serde_json::json!({"url": srv.url("/echo"), "method": "put", "headers": {"X-Token": "abc"}, "body": "hello", "id": "first"}),
        serde_json::json!({"url": srv.url("/echo?q=1"), "id": 7}),
    );
    dir.write("specs.jsonl", &specs);
    dir.cmd()
        .args([
            "fetch",
            "specs.jsonl",
            "--body",
            "store",
            "-H",
            "X-Default: d",
            "-H",
            "X-Token: overridden",
        ])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    let first = rows
        .iter()
        .find(|r| r.key == "first")
        .expect("id is the key");
    let echo: serde_json::Value = serde_json::from_slice(first.body.as_ref().unwrap()).unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body"], "hello");
    assert_eq!(
        echo["headers"]["x-token"], "abc",
        "a spec's header wins over -H"
    );
    assert_eq!(echo["headers"]["x-default"], "d");
    let second = rows
        .iter()
        .find(|r| r.key == "7")
        .expect("numeric id is the key");
    let echo: serde_json::Value = serde_json::from_slice(second.body.as_ref().unwrap()).unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(echo["headers"]["x-token"], "overridden");
}

#[test]
fn curl_like_defaults_post_data() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &format!("{}\n", srv.url("/echo")));
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--body",
            "store",
            "-d",
            "x=1",
            "-H",
            "Content-Type: text/plain",
        ])
        .assert()
        .success();
    let row = &rows(&dir.path("fanout.db"))[0];
    let echo: serde_json::Value = serde_json::from_slice(row.body.as_ref().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST", "-d implies POST, as in curl");
    assert_eq!(echo["body"], "x=1");
    assert_eq!(row.method, "POST");
}

#[test]
fn template_fills_and_encodes_values() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("ids.txt", "1\n2\nhello world\n");
    let template = srv.url("/item/{}");
    dir.cmd()
        .args([
            "fetch",
            "ids.txt",
            "--template",
            &template,
            "--body",
            "store",
        ])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    let mut urls: Vec<_> = rows.iter().map(|r| r.url.clone()).collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            srv.url("/item/1"),
            srv.url("/item/2"),
            srv.url("/item/hello%20world")
        ]
    );
    assert!(rows.iter().all(|r| r.status == Some(200)));
}

#[test]
fn invalid_lines_are_recorded_and_the_rest_succeed() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list = format!(
        "{}\nnot a url\nftp://example.com/file\n{{\"url\": 5}}\n{}\n{{\"url\":\"{}\",\"colour\":1}}\n",
        srv.url("/item/1"),
        srv.url("/item/2"),
        srv.url("/item/3")
    );
    dir.write("mixed.txt", &list);
    dir.cmd().args(["fetch", "mixed.txt"]).assert().success();
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 6);
    let ok = rows.iter().filter(|r| r.status == Some(200)).count();
    assert_eq!(ok, 2);
    let mut bad: Vec<_> = rows
        .iter()
        .filter(|r| r.error.as_deref() == Some("invalid-input"))
        .map(|r| r.error_detail.clone().unwrap())
        .collect();
    bad.sort();
    assert_eq!(bad.len(), 4);
    assert!(
        bad[0].starts_with("mixed.txt:2: ") && bad[0].contains("neither a URL"),
        "{bad:?}"
    );
    assert!(
        bad[1].starts_with("mixed.txt:3: ") && bad[1].contains("unsupported scheme 'ftp'"),
        "{bad:?}"
    );
    assert!(
        bad[2].starts_with("mixed.txt:4: ") && bad[2].contains("invalid JSON"),
        "{bad:?}"
    );
    assert!(
        bad[3].starts_with("mixed.txt:6: ") && bad[3].contains("colour"),
        "{bad:?}"
    );
}

#[test]
fn refused_timeout_and_http_errors_are_recorded_with_their_kinds() {
    let srv = TestServer::start(Duration::ZERO);
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = Dir::new();
    let list = format!(
        "http://{closed}/x\n{}\n{}\n{}\n",
        srv.url("/delay/3000"),
        srv.url("/status/404"),
        srv.url("/status/500")
    );
    dir.write("urls.txt", &list);
    dir.cmd()
        .args(["fetch", "urls.txt", "--timeout", "300ms"])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    let by_url = |p: &str| rows.iter().find(|r| r.url.ends_with(p)).unwrap().clone();
    let refused = by_url("/x");
    assert_eq!(refused.error.as_deref(), Some("connect"));
    assert!(refused.error_detail.unwrap().contains("refused"));
    assert_eq!(refused.status, None);
    let slow = by_url("/delay/3000");
    assert_eq!(slow.error.as_deref(), Some("timeout"));
    assert_eq!(by_url("/status/404").status, Some(404));
    assert_eq!(
        by_url("/status/404").error,
        None,
        "a 404 is a response, not an error"
    );
    assert_eq!(by_url("/status/500").status, Some(500));
}

#[test]
fn a_timeout_too_large_to_reach_is_no_timeout() {
    // Past what an instant can hold: the deadline overflowed, and every attempt panicked.
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write(
        "urls.txt",
        &format!("{}\n{}\n", srv.url("/item/1"), srv.url("/delay/200")),
    );
    let huge = "10000000000000000000s";
    for args in [
        vec!["--timeout", huge],
        // The speed check's window, likewise.
        vec!["--speed-limit", "1", "--speed-time", huge],
    ] {
        dir.cmd()
            .args(["fetch", "urls.txt", "--fresh"])
            .args(&args)
            .assert()
            .success()
            .stderr(predicate::str::contains("panicked").not());
        let rows = rows(&dir.path("fanout.db"));
        assert_eq!(rows.len(), 2, "{args:?}");
        assert!(
            rows.iter().all(|r| r.status == Some(200)),
            "{args:?}: {rows:?}"
        );
    }
}

#[test]
fn redirects_are_followed_and_loops_end() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write(
        "urls.txt",
        &format!(
            "{}\n{}\n",
            srv.url("/redirect/3"),
            srv.url("/redirect-loop")
        ),
    );
    dir.cmd()
        .args(["fetch", "urls.txt", "--max-redirects", "5"])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    let followed = rows
        .iter()
        .find(|r| r.url.ends_with("/redirect/3"))
        .unwrap();
    assert_eq!(followed.status, Some(200));
    assert_eq!(
        followed.final_url.as_deref(),
        Some(srv.url("/item/redirected").as_str())
    );
    let looped = rows
        .iter()
        .find(|r| r.url.ends_with("/redirect-loop"))
        .unwrap();
    assert_eq!(looped.error.as_deref(), Some("too-many-redirects"));
}

#[test]
fn body_limit_and_body_modes() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &format!("{}\n", srv.url("/item/1")));
    dir.cmd()
        .args(["fetch", "urls.txt", "--max-body", "10"])
        .assert()
        .success();
    let row = &rows(&dir.path("fanout.db"))[0];
    assert_eq!(row.error.as_deref(), Some("body-too-large"));

    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--db",
            "discard.db",
            "--body",
            "discard",
        ])
        .assert()
        .success();
    let db = dir.path("discard.db");
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM outcomes WHERE body IS NULL AND body_sha256 IS NULL AND bytes > 0"
        ),
        1
    );
}

#[test]
fn concurrency_limit_holds_at_the_server() {
    let srv = TestServer::start(Duration::from_millis(30));
    let dir = Dir::new();
    let list: String = (0..300)
        .map(|i| format!("{}\n", srv.url(&format!("/item/{i}"))))
        .collect();
    dir.write("urls.txt", &list);
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "7"])
        .assert()
        .success();
    assert_eq!(srv.stats().requests(), 300);
    let max = srv.stats().max_in_flight();
    assert!(max <= 7, "server saw {max} concurrent requests with -c 7");
    assert!(max >= 2, "requests should overlap, saw {max}");
}

#[test]
fn deadline_records_every_request() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..40)
        .map(|i| format!("{}\n", srv.url(&format!("/delay/{}", 5000 + i))))
        .collect();
    dir.write("slow.txt", &list);
    let start = std::time::Instant::now();
    dir.cmd()
        .args(["fetch", "slow.txt", "-c", "10", "--deadline", "500ms"])
        .assert()
        .code(3);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the deadline ended the run"
    );
    let db = dir.path("fanout.db");
    let rows = rows(&db);
    assert_eq!(rows.len(), 40, "every request has an outcome");
    assert!(rows.iter().all(|r| r.error.as_deref() == Some("deadline")));
    assert_eq!(
        rows.iter().filter(|r| r.attempts == 1).count(),
        10,
        "10 were in flight"
    );
    assert_eq!(text(&db, "SELECT status FROM runs"), "deadline");
}

#[test]
fn sigint_leaves_a_valid_store_with_every_admitted_request() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..2000)
        .map(|i| format!("{}\n", srv.url(&format!("/delay/{}?n={i}", 200 + i % 50))))
        .collect();
    dir.write("urls.txt", &list);
    let child = dir
        .fanout()
        .args(["fetch", "urls.txt", "-c", "20", "--grace", "100ms"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(harness::wait_until(Duration::from_secs(10), || srv
        .stats()
        .requests()
        >= 60));
    harness::signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.path("fanout.db");
    assert!(harness::integrity_ok(&db));
    let rows = rows(&db);
    let received = srv.stats().requests() as usize;
    assert!(
        rows.len() >= received,
        "{} outcomes for {received} requests the server received",
        rows.len()
    );
    assert!(rows.len() < 2000, "the run stopped early");
    assert!(
        rows.iter()
            .all(|r| r.status == Some(200) || r.error.as_deref() == Some("cancelled"))
    );
    assert_eq!(text(&db, "SELECT status FROM runs"), "interrupted");
}

#[test]
fn usage_errors_exit_2() {
    let dir = Dir::new();
    dir.cmd()
        .args(["fetch", "--concurrency", "0", "x"])
        .assert()
        .code(2);
    dir.cmd()
        .args(["fetch", "--timeout", "soon", "x"])
        .assert()
        .code(2)
        .stderr(contains("--timeout"));
    dir.cmd()
        .args(["fetch", "--template", "http://h/none"])
        .assert()
        .code(2)
        .stderr(contains("{}"));
    dir.cmd()
        .args(["fetch", "-H", "NoColon", "x"])
        .assert()
        .code(2)
        .stderr(contains("Name: value"));
    dir.cmd().args(["fetch", "--bogus"]).assert().code(2);
    dir.cmd()
        .args(["fetch", "missing.txt"])
        .assert()
        .code(2)
        .stderr(contains("missing.txt"));
    dir.write(
        "notdb",
        "this is not sqlite, just text that is long enough to not be a header....",
    );
    dir.write("urls.txt", "http://127.0.0.1:1/\n");
    dir.cmd()
        .args(["fetch", "urls.txt", "--db", "notdb"])
        .assert()
        .code(2)
        .stderr(contains("notdb"));
}

#[test]
fn bench_runs_against_its_own_server() {
    let dir = Dir::new();
    dir.cmd()
        .args(["bench", "-n", "8", "--latency", "100ms"])
        .assert()
        .success()
        .stdout(
            contains("sequential")
                .and(contains("concurrent"))
                .and(contains("speed-up")),
        );
}

#[test]
fn serve_answers_until_interrupted() {
    let port = harness::free_port();
    let dir = Dir::new();
    let mut child = dir
        .fanout()
        .args(["serve", "--port", &port.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/status/418");
    let up = harness::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "serve did not start");
    dir.write("u.txt", &format!("{url}\n"));
    dir.cmd()
        .args(["fetch", "u.txt", "--jsonl", "-"])
        .assert()
        .success()
        .stdout(contains("\"status\":418"));
    harness::signal(child.id(), "INT");
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("1 requests"), "{err}");
    let _ = std::io::stdout().flush();
}

#[test]
fn deadline_ends_the_run_even_when_stdin_stays_open() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let mut child = dir
        .fanout()
        .args(["fetch", "-", "--deadline", "700ms", "-q"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", srv.url("/item/1")).unwrap();
    writeln!(stdin, "{}", srv.url("/delay/5000")).unwrap();
    // stdin stays open: the deadline alone must end the run.
    let ended = harness::wait_until(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(ended, "the run did not end at its deadline");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    drop(stdin);
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r.status == Some(200)));
    assert!(rows.iter().any(|r| r.error.as_deref() == Some("deadline")));
}

#[test]
fn absurd_rates_are_usage_errors() {
    let dir = Dir::new();
    dir.cmd()
        .args(["fetch", "--rate", "1e-300", "x"])
        .assert()
        .code(2)
        .stderr(contains("--rate"));
    dir.cmd()
        .args(["fetch", "--per-host-rate", "0/s", "x"])
        .assert()
        .code(2);
    dir.cmd()
        .args(["fetch", "--rate", "5/fortnight", "x"])
        .assert()
        .code(2);
}

/// Runs fanout with `args` in `dir`, in a shell that first ran `ulimit {limit}`.
#[cfg(target_os = "linux")]
fn fanout_after_ulimit(dir: &Dir, limit: &str, args: &str) -> std::process::Output {
    let script = format!(
        "ulimit {limit} && exec '{}' {args}",
        env!("CARGO_BIN_EXE_fanout")
    );
    Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path(""))
        .output()
        .unwrap()
}

#[test]
#[cfg(target_os = "linux")]
fn a_low_soft_open_file_limit_is_raised_for_many_connections() {
    // The soft limit is lowered below what -c needs, as many systems ship it (1,024); fanout
    // raises it to the hard limit, so every request still gets its connection.
    let hard: u64 = String::from_utf8(
        Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap_or(u64::MAX); // "unlimited"
    assert!(
        hard >= 512,
        "this test needs a hard open-file limit of at least 512, not {hard}"
    );
    let srv = TestServer::start(Duration::from_millis(300));
    let dir = Dir::new();
    let list: String = (0..150)
        .map(|i| format!("{}\n", srv.url(&format!("/item/{i}"))))
        .collect();
    dir.write("urls.txt", &list);
    let out = fanout_after_ulimit(&dir, "-Sn 48", "fetch urls.txt -c 150 --db out.db -q");
    assert!(out.status.success(), "{out:?}");
    let db = dir.path("out.db");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200"),
        150,
        "{}",
        text(
            &db,
            "SELECT group_concat(DISTINCT error_detail) FROM outcomes WHERE status IS NULL"
        )
    );
    let max = srv.stats().max_in_flight();
    assert!(
        max > 48,
        "only {max} requests overlapped: the limit was not tested"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn a_concurrency_above_the_hard_open_file_limit_is_warned_about() {
    let dir = Dir::new();
    dir.write("one.txt", "http://127.0.0.1:9/\n");
    // `ulimit -n` lowers the hard limit too, so it cannot be raised back.
    let out = fanout_after_ulimit(&dir, "-n 64", "fetch one.txt -c 500 --db out.db -q");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-c 500 needs about") && stderr.contains("limit is 64"),
        "{stderr}"
    );
}

/// The outcomes table as the previous version created it (copied from it), before `body_path`.
const OLD_OUTCOMES_DDL: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    command     TEXT NOT NULL,
    status      TEXT NOT NULL,
    mode        TEXT NOT NULL DEFAULT 'resume',
    skipped     INTEGER NOT NULL DEFAULT 0,
    outcomes    INTEGER NOT NULL DEFAULT 0,
    responses   INTEGER NOT NULL DEFAULT 0,
    errors      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outcomes (
    key          TEXT PRIMARY KEY NOT NULL,
    run_id       INTEGER NOT NULL,
    url          TEXT NOT NULL,
    method       TEXT NOT NULL,
    status       INTEGER,
    error        TEXT,
    error_detail TEXT,
    attempts     INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    ttfb_ms      REAL,
    total_ms     REAL NOT NULL,
    bytes        INTEGER NOT NULL,
    final_url    TEXT,
    body_sha256  TEXT,
    body         BLOB
);
";

#[test]
fn a_store_of_the_previous_version_gains_body_path_and_keeps_its_rows() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let db = dir.path("fanout.db");
    let old_rows = "SELECT key, run_id, url, method, status, error, error_detail, attempts, \
                    started_at, ttfb_ms, total_ms, bytes, final_url, body_sha256, \
                    quote(body) FROM outcomes WHERE run_id = 1 ORDER BY key";
    let dump = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut stmt = conn.prepare(old_rows).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            let cols: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            Ok(cols.join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let before = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(OLD_OUTCOMES_DDL).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (started_at, finished_at, command, status, outcomes, responses, errors)
                 VALUES ('2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', 'fanout fetch old',
                         'completed', 2, 1, 1);
             INSERT INTO outcomes VALUES ('old-a', 1, 'http://127.0.0.1:9/a', 'GET', 200, NULL, NULL,
                 1, '2026-01-01T00:00:00.100Z', 1.5, 2.25, 3, 'http://127.0.0.1:9/a', 'abc', x'00ff01');
             INSERT INTO outcomes VALUES ('old-b', 1, 'http://127.0.0.1:9/b', 'GET', NULL, 'connect',
                 'refused', 2, '2026-01-01T00:00:00.200Z', NULL, 4.5, 0, NULL, NULL, NULL);",
        )
        .unwrap();
        dump(&conn)
    };
    assert_eq!(before.len(), 2);
    dir.write("urls.txt", &format!("{}\n", srv.url("/item/new")));
    dir.cmd().args(["fetch", "urls.txt"]).assert().success();

    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(dump(&conn), before, "the old rows are intact");
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM pragma_table_info('outcomes') WHERE name = 'body_path'"
        ),
        1
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE body_path IS NULL"),
        3
    );
    let new = rows(&db)
        .into_iter()
        .find(|r| r.url.ends_with("/item/new"))
        .expect("the new request is recorded");
    assert_eq!(new.status, Some(200));
    assert_eq!(
        text(&db, "SELECT status FROM runs WHERE id = 2"),
        "completed"
    );
}

/// The runtime's worker threads, counted in /proc while a run is under way.
fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|comm| comm.trim() == "fanout-worker")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn threads_sets_the_runtime_workers_and_bad_values_are_usage_errors() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let urls: String = (0..20)
        .map(|i| format!("{}\n", srv.url(&format!("/delay/400?i={i}"))))
        .collect();
    let list = dir.write("urls.txt", &urls);
    for (threads, want) in [("1", 1), ("3", 3)] {
        let mut child = dir
            .fanout()
            .args(["fetch", "--threads", threads, "-q", "--db"])
            .arg(dir.path(&format!("t{threads}.db")))
            .arg(&list)
            .spawn()
            .unwrap();
        let mut seen = 0;
        harness::wait_until(Duration::from_secs(5), || {
            seen = runtime_threads(child.id());
            seen >= want
        });
        // The requests take 400 ms: the count is read while they are in flight.
        std::thread::sleep(Duration::from_millis(100));
        seen = seen.max(runtime_threads(child.id()));
        assert!(child.wait().unwrap().success());
        assert_eq!(seen, want, "--threads {threads}");
        let db = dir.path(&format!("t{threads}.db"));
        assert_eq!(
            scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200"),
            20
        );
    }
    for bad in ["0", "x", "2000"] {
        dir.cmd()
            .args(["fetch", "--threads", bad, "-"])
            .write_stdin("http://127.0.0.1:9/\n")
            .assert()
            .code(2)
            .stderr(contains("--threads"));
    }
}
