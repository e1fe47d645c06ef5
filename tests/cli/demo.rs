//! `fanout demo`, shell completions, the man page, and the `/quota` route the demo relies on.

use std::time::Duration;

use crate::harness::{Dir, TestServer, rows, scalar, text};

#[test]
fn demo_records_every_request_with_a_mix_of_statuses_and_errors() {
    let dir = Dir::new();
    // An earlier demo's store is replaced, not resumed or added to.
    dir.write("demo.db", "not a database");
    let out = dir
        .cmd()
        .args(["demo", "--requests", "3000"])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("3000 outcomes"), "{err}");
    assert!(err.contains("demo.db"), "says where the store is: {err}");
    assert!(err.contains("demo.html"), "says where the report is: {err}");
    let html = std::fs::read_to_string(dir.path("demo.html")).unwrap();
    assert!(
        html.contains("<svg") && (html.contains("3000") || html.contains("3,000")),
        "a report of the run"
    );
    let db = dir.path("demo.db");
    assert_eq!(scalar(&db, "SELECT count(*) FROM outcomes"), 3000);
    assert_eq!(text(&db, "SELECT status FROM runs"), "completed");
    let rows = rows(&db);
    let count = |f: &dyn Fn(&crate::harness::Row) -> bool| rows.iter().filter(|r| f(r)).count();
    let ok = count(&|r| r.status == Some(200));
    assert!(ok > 2000, "mostly 200: {ok}");
    for status in [404, 429, 500] {
        assert!(count(&|r| r.status == Some(status)) > 0, "some {status}");
    }
    assert!(
        count(&|r| r.error.as_deref() == Some("connect")) > 0,
        "a dead host"
    );
    assert!(count(&|r| r.attempts > 1) > 0, "retries (503s, 429s)");
    let hosts = scalar(
        &db,
        "SELECT count(DISTINCT substr(url, 1, instr(substr(url, 8), '/') + 7)) FROM outcomes",
    );
    assert_eq!(hosts, 6, "five servers and a dead port");
    // The same requests on every run: the keys and paths depend only on the index.
    assert_eq!(
        text(&db, "SELECT min(key) || ' ' || max(key) FROM outcomes"),
        "demo-0000000 demo-0002999"
    );
}

#[test]
fn quota_route_serves_n_per_second_then_429_with_retry_after() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..5)
        .map(|i| format!("{}\n", srv.url(&format!("/quota/2/{i}"))))
        .collect();
    dir.write("urls.txt", &list);
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "1", "--retries", "0"])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    let statuses: Vec<_> = rows.iter().map(|r| r.status).collect();
    // Two in the first window, a 429 (whose Retry-After pauses the host), then a new window.
    assert_eq!(
        statuses.iter().filter(|s| **s == Some(429)).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == Some(200)).count(),
        4,
        "{statuses:?}"
    );
}

#[test]
fn bash_completions_know_the_subcommands_and_flags() {
    let dir = Dir::new();
    let out = dir
        .cmd()
        .args(["completions", "bash"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let script = String::from_utf8(out).unwrap();
    assert!(script.contains("fetch") && script.contains("--concurrency"));
    for shell in ["zsh", "fish", "powershell"] {
        let out = dir.cmd().args(["completions", shell]).assert().success();
        assert!(!out.get_output().stdout.is_empty(), "{shell}");
    }
    dir.cmd().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_page_is_roff_with_the_fetch_flags() {
    let dir = Dir::new();
    let out = dir
        .cmd()
        .arg("man")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let page = String::from_utf8(out).unwrap();
    assert!(page.contains(".TH fanout 1"), "{page}");
    assert!(page.contains(".SH \"FANOUT FETCH\""));
    for flag in ["concurrency", "per\\-host", "retry\\-on", "progress"] {
        assert!(page.contains(&format!("\\-\\-{flag}")), "--{flag}");
    }
}
