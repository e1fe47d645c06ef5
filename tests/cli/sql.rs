//! Requests from a SQL query (`--from-sql` on an SQLite `--source-db`): the column mapping, start
//! errors (exit 2), invalid rows named `query:ROW`, resume and `--retry-errors`, and flat memory
//! over many rows.

use std::path::Path;
use std::time::Duration;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use rusqlite::params;
use serde_json::Value;

use crate::harness::{Dir, TestServer, assert_invalid_query_rows, rows, run_with_peak_rss, scalar};

/// A `targets` table with the columns a query may map, in `dir/targets.db`.
fn targets(dir: &Dir) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.path("targets.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE targets (n INTEGER PRIMARY KEY, id, url, method, headers, body, extra)",
    )
    .unwrap();
    conn
}

fn insert(conn: &rusqlite::Connection, n: i64, id: Value, url: Option<&str>) {
    let id: rusqlite::types::Value = match id {
        Value::Null => rusqlite::types::Value::Null,
        Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap()),
        Value::String(s) => rusqlite::types::Value::Text(s),
        other => panic!("{other}"),
    };
    conn.execute(
        "INSERT INTO targets (n, id, url) VALUES (?1, ?2, ?3)",
        params![n, id, url],
    )
    .unwrap();
}

const QUERY: &str = "SELECT id, url, method, headers, body FROM targets ORDER BY n";

fn fetch_sql(dir: &Dir, query: &str, args: &[&str]) -> assert_cmd::assert::Assert {
    dir.cmd()
        .args(["fetch", "--from-sql", query, "--source-db", "targets.db"])
        .args(args)
        .assert()
}

fn jsonl(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_column_kind_maps_onto_the_request() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    let echo = srv.url("/echo");
    let blob: &[u8] = &[0, 1, 2, 255];
    conn.execute(
        "INSERT INTO targets (n, id, url, method, headers, body) VALUES \
         (1, 17, ?1, 'put', '{\"X-A\": \"one\", \"X-B\": \"two\"}', 'text body'), \
         (2, 'k2', ?1, NULL, NULL, ?2), \
         (3, NULL, ?3, NULL, NULL, NULL), \
         (4, 2.5, ?1, 'DELETE', NULL, NULL)",
        params![echo, blob, srv.url("/item/3")],
    )
    .unwrap();
    drop(conn);
    let out = fetch_sql(&dir, QUERY, &["--body", "store", "--jsonl", "-", "-q"])
        .success()
        .get_output()
        .stdout
        .clone();
    let mut outcomes = jsonl(&out);
    outcomes.sort_by_key(|o| o["key"].as_str().unwrap().to_owned());
    let by_key = |k: &str| {
        outcomes
            .iter()
            .find(|o| o["key"] == k)
            .unwrap_or_else(|| panic!("no key {k} in {outcomes:?}"))
    };
    let seen = |o: &Value| -> Value {
        assert_eq!(o["status"], 200, "{o}");
        serde_json::from_str(o["body"].as_str().unwrap()).unwrap()
    };

    // Integer id, method in any case, headers JSON, text body.
    let e = seen(by_key("17"));
    assert_eq!(e["method"], "PUT");
    assert_eq!(e["headers"]["x-a"], "one");
    assert_eq!(e["headers"]["x-b"], "two");
    assert_eq!(e["body"], "text body");
    // Text id; a blob body sent as its bytes (POST, as with any body and no method).
    let e = seen(by_key("k2"));
    assert_eq!(e["method"], "POST");
    assert_eq!(e["headers"]["content-length"], "4");
    assert_eq!(e["body"], String::from_utf8_lossy(blob).as_ref());
    // A real id is its number's text.
    assert_eq!(seen(by_key("2.5"))["method"], "DELETE");
    // No id: the same default key a line with that URL gets.
    let line_key = fanout::Request::get(&srv.url("/item/3")).unwrap().key;
    assert_eq!(by_key(&line_key)["status"], 200);
    assert_eq!(outcomes.len(), 4);
}

#[test]
fn unknown_or_missing_columns_exit_2_naming_them_and_fetch_nothing() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    insert(&conn, 1, Value::Null, Some(&srv.url("/item/1")));
    drop(conn);
    fetch_sql(&dir, "SELECT url, extra, n AS priority FROM targets", &[])
        .code(2)
        .stderr(contains("unknown columns 'extra', 'priority'"));
    fetch_sql(&dir, "SELECT id, method FROM targets", &[])
        .code(2)
        .stderr(contains("no 'url' column"));
    fetch_sql(&dir, "SELECT url FROM no_such_table", &[])
        .code(2)
        .stderr(contains("no such table"));
    fetch_sql(&dir, "DELETE FROM targets", &[])
        .code(2)
        .stderr(contains("must only read"));
    // Flags: the query and the database go together, and replace INPUT files.
    dir.cmd()
        .args(["fetch", "--from-sql", QUERY])
        .assert()
        .code(2)
        .stderr(contains("--source-db"));
    dir.cmd()
        .args(["fetch", "--source-db", "targets.db"])
        .assert()
        .code(2)
        .stderr(contains("--from-sql"));
    fetch_sql(&dir, QUERY, &["urls.txt"])
        .code(2)
        .stderr(contains("--from-sql: cannot be combined with INPUT files"));
    fetch_sql(&dir, QUERY, &["--db", "targets.db"])
        .code(2)
        .stderr(contains(
            "--source-db: 'targets.db' is also the --db store and is not in WAL mode",
        ));
    dir.cmd()
        .args(["fetch", "--from-sql", QUERY, "--source-db"])
        .arg("postgres://me:hunter2@127.0.0.1:1/db")
        .assert()
        .code(2)
        .stderr(contains("postgres://me:***@127.0.0.1:1/db"))
        .stderr(contains("hunter2").not());
    assert_eq!(srv.stats().requests(), 0);
    assert!(
        !dir.path("fanout.db").exists(),
        "no store for a run that never started"
    );
}

#[test]
fn bad_rows_are_invalid_input_naming_query_and_row_and_the_rest_are_fetched() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    for n in 1..=20 {
        insert(&conn, n, Value::Null, Some(&srv.url(&format!("/item/{n}"))));
    }
    conn.execute_batch(
        "UPDATE targets SET url = NULL WHERE n = 3;
         UPDATE targets SET url = 'not a url' WHERE n = 7;
         UPDATE targets SET headers = '[\"X-A\"]' WHERE n = 11;
         UPDATE targets SET method = 'NOT A METHOD' WHERE n = 17;
         UPDATE targets SET url = 42 WHERE n = 19;",
    )
    .unwrap();
    drop(conn);
    fetch_sql(&dir, QUERY, &["-q"]).success();
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 20);
    assert_eq!(rows.iter().filter(|r| r.status == Some(200)).count(), 15);
    let expect = [
        (3, "url is NULL"),
        (7, "'not a url' is neither a URL"),
        (11, "invalid headers JSON"),
        (17, "invalid method 'NOT A METHOD'"),
        (19, "url must be text, not an integer"),
    ];
    assert_invalid_query_rows(&rows, &expect);
}

#[test]
fn a_rerun_of_a_query_fetches_nothing() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    for n in 1..=60 {
        // Half with an id, half keyed by the default hash; one bad row.
        let id = if n % 2 == 0 {
            Value::from(n)
        } else {
            Value::Null
        };
        insert(&conn, n, id, Some(&srv.url(&format!("/item/{n}"))));
    }
    conn.execute("UPDATE targets SET url = 'bad' WHERE n = 5", [])
        .unwrap();
    drop(conn);
    fetch_sql(&dir, QUERY, &["-q"]).success();
    let db = dir.path("fanout.db");
    assert_eq!(scalar(&db, "SELECT count(*) FROM outcomes"), 60);
    assert_eq!(srv.stats().requests(), 59);
    fetch_sql(&dir, QUERY, &[])
        .success()
        .stderr(contains("60 outcomes already recorded"));
    assert_eq!(srv.stats().requests(), 59, "the rerun fetched again");
    assert_eq!(scalar(&db, "SELECT count(*) FROM outcomes"), 60);
}

#[test]
fn retry_errors_from_a_query_refetches_only_the_errors() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    for n in 1..=5 {
        insert(
            &conn,
            n,
            Value::from(n),
            Some(&srv.url(&format!("/item/{n}"))),
        );
    }
    // Times out at 200ms in the first run; answers in the second.
    insert(&conn, 6, Value::from("slow"), Some(&srv.url("/delay/800")));
    drop(conn);
    fetch_sql(&dir, QUERY, &["--timeout", "200ms", "--retries", "0", "-q"]).success();
    let db = dir.path("fanout.db");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE error = 'timeout'"),
        1
    );
    assert_eq!(srv.stats().requests(), 6);
    fetch_sql(&dir, QUERY, &["--retry-errors", "-q"]).success();
    assert_eq!(
        srv.stats().requests(),
        7,
        "only the timeout is fetched again"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200"),
        6
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM outcomes"), 6);
}

/// A table of `n` rows made by one INSERT ... SELECT over a recursive CTE: every tenth row a
/// request to `url`, the others rows that are not URLs (`invalid-input`, with no request made).
fn many_rows(path: &Path, n: i64, url: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE targets (id INTEGER PRIMARY KEY, url TEXT)")
        .unwrap();
    conn.execute(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1) \
         INSERT INTO targets SELECT i, CASE WHEN i % 10 = 0 THEN ?2 || i ELSE 'row ' || i END \
         FROM seq",
        params![n, url],
    )
    .unwrap();
}

/// Peak RSS (KiB) of fetching every row of an `n`-row table, and the outcomes recorded.
fn peak_rss_over(srv: &TestServer, dir: &Dir, n: i64) -> u64 {
    let source = dir.path(&format!("rows{n}.db"));
    many_rows(&source, n, &srv.url("/item/"));
    let mut cmd = dir.fanout();
    cmd.args(["fetch", "--from-sql", "SELECT id, url FROM targets"])
        .arg("--source-db")
        .arg(&source)
        .args(["--jsonl", "/dev/null", "--body", "discard", "-q"]);
    let (code, _, peak) = run_with_peak_rss(cmd);
    assert_eq!(code, 0);
    peak
}

#[test]
fn memory_stays_flat_over_many_rows() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let small = peak_rss_over(&srv, &dir, 1_000);
    let large = peak_rss_over(&srv, &dir, 100_000);
    eprintln!("peak RSS: {small} KiB at 1,000 rows, {large} KiB at 100,000 rows");
    assert_eq!(srv.stats().requests(), 100 + 10_000);
    // Loaded whole, 100,000 rows would be tens of MB of requests. The same lines read from a
    // file grow about 5 MB from 1,000 to 100,000 too (queues filling, the allocator's arenas,
    // the latency histogram); the 1,000,000-row figure is in README ("Figures").
    assert!(
        large < small + 8 * 1024,
        "peak RSS grew from {small} KiB to {large} KiB"
    );
}

#[test]
fn a_query_is_a_source_of_items_for_the_library() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    for n in 1..=30 {
        insert(
            &conn,
            n,
            Value::from(n),
            Some(&srv.url(&format!("/item/{n}"))),
        );
    }
    conn.execute("UPDATE targets SET url = NULL WHERE n = 30", [])
        .unwrap();
    drop(conn);
    let db = dir.path("out.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt.block_on(async {
        use fanout::source::{RequestDefaults, Source, sql};
        let source_db = sql::SourceDb::Sqlite(dir.path("targets.db"));
        let rows = sql::open(QUERY, &source_db, &RequestDefaults::default())
            .await
            .unwrap();
        let config = fanout::RunConfig::builder()
            .store(fanout::sink::StoreConfig::Sqlite(db.clone()))
            .build()
            .unwrap();
        let source = Source::from_items(rows);
        fanout::pipeline::run_source(
            source,
            config,
            fanout::stats::Stats::new(),
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    assert_eq!((summary.total, summary.responses()), (30, 29));
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM outcomes WHERE key = 'invalid:query:30'"
        ),
        1
    );
}

#[test]
fn the_source_may_be_the_store_itself_in_wal_mode() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let conn = targets(&dir);
    for n in 1..=200 {
        insert(
            &conn,
            n,
            Value::from(n),
            Some(&srv.url(&format!("/item/{n}"))),
        );
    }
    // Not in WAL mode: refused before anything starts, saying how.
    fetch_sql(&dir, QUERY, &["--db", "targets.db"])
        .code(2)
        .stderr(contains("PRAGMA journal_mode=WAL"));
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    drop(conn);
    for _ in 0..2 {
        fetch_sql(&dir, QUERY, &["--db", "targets.db", "-q"]).success();
    }
    let db = dir.path("targets.db");
    assert_eq!(srv.stats().requests(), 200, "the rerun fetched nothing");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200"),
        200
    );
}
