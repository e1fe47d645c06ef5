//! Nothing lost: resume after SIGKILL, SIGINT and a full disk; duplicate keys; --fresh;
//! --retry-errors and --retry-status. The store must end with exactly one outcome per key.

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use predicates::str::contains;

use crate::harness::{self, Dir, TestServer, Tmpfs, rows, scalar, text, try_scalar, wait_until};

fn urls(srv: &TestServer, n: usize, path: &str) -> String {
    (0..n)
        .map(|i| format!("{}\n", srv.url(&format!("{path}{i}"))))
        .collect()
}

/// A small xorshift generator seeded from the clock; the seed is printed so a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("FANOUT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("FANOUT_TEST_SEED={seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_points_then_resume_loses_and_duplicates_nothing() {
    const N: usize = 20_000;
    const KILLS: u32 = 5;
    let srv = TestServer::start(Duration::from_millis(2));
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, N, "/item/"));
    let db = dir.path("fanout.db");
    let mut rng = Rng::new();
    let mut kills = 0;
    let mut recorded_before = 0;
    for cycle in 0..KILLS {
        let seen = srv.stats().requests();
        let mut child = dir
            .fanout()
            .args(["fetch", "urls.txt", "-c", "40", "-q"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the run is under way, at a random point of it.
        let target = seen + 200 + rng.below(2500);
        harness::wait_until(Duration::from_secs(20), || srv.stats().requests() >= target);
        std::thread::sleep(Duration::from_millis(rng.below(50)));
        harness::signal(child.id(), "KILL");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "cycle {cycle}: killed by a signal");
        kills += 1;
        assert!(
            harness::integrity_ok(&db),
            "cycle {cycle}: store intact after SIGKILL"
        );
        let recorded = scalar(&db, "SELECT count(*) FROM outcomes") as usize;
        assert!(
            recorded >= recorded_before,
            "committed outcomes never go away"
        );
        recorded_before = recorded;
    }
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "-c", "40"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("resuming:"), "{stderr}");

    let rows = rows(&db);
    assert_eq!(rows.len(), N);
    let keys: HashSet<_> = rows.iter().map(|r| &r.key).collect();
    assert_eq!(keys.len(), N, "one outcome per key");
    assert!(rows.iter().all(|r| r.status == Some(200)), "all 200");
    let hits = srv.stats().hits();
    assert_eq!(hits.len(), N, "every URL was fetched");
    let max = *hits.values().max().unwrap();
    assert!(
        max <= 1 + kills,
        "a URL was fetched {max} times across {kills} kills"
    );
    let refetched: u32 = hits.values().map(|n| n - 1).sum();
    eprintln!("{kills} kills: {refetched} refetches in total, at most {max} fetches of one URL");
    assert!(
        (refetched as usize) < kills as usize * (40 + 2000),
        "only in-flight or uncommitted requests are fetched again"
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM runs"), KILLS as i64 + 1);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM runs WHERE status = 'running'"),
        KILLS as i64,
        "killed runs stay 'running'"
    );
}

#[test]
fn sigint_then_rerun_completes() {
    const N: usize = 1500;
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, N, "/delay/100?n="));
    let child = dir
        .fanout()
        .args(["fetch", "urls.txt", "-c", "30", "--grace", "20ms"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(harness::wait_until(Duration::from_secs(20), || srv
        .stats()
        .requests()
        >= 100));
    harness::signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let db = dir.path("fanout.db");
    assert!(harness::integrity_ok(&db));
    let cancelled = scalar(
        &db,
        "SELECT count(*) FROM outcomes WHERE error = 'cancelled'",
    );
    let done = scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200");
    assert!(done > 0 && (done as usize) < N);

    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "100"])
        .assert()
        .success();
    let rows = rows(&db);
    assert_eq!(rows.len(), N);
    assert!(
        rows.iter().all(|r| r.status == Some(200)),
        "cancelled ones were fetched again"
    );
    let first_run_200 = done as u64;
    assert_eq!(
        scalar(&db, "SELECT skipped FROM runs WHERE id = 2") as u64,
        first_run_200,
        "the rerun skipped exactly what was done (cancelled: {cancelled})"
    );
    let hits = srv.stats().hits();
    assert!(hits.values().all(|&n| n <= 2));
}

#[test]
fn duplicate_keys_are_fetched_once_per_run() {
    let srv = TestServer::start(Duration::from_millis(50));
    let dir = Dir::new();
    let a = srv.url("/item/a");
    let b = srv.url("/item/b");
    let list = format!(
        "{a}\n{a}\n{b}\n{{\"url\":\"{b}\",\"id\":\"x\"}}\n{{\"url\":\"{a}\",\"id\":\"x\"}}\n{a}\n"
    );
    dir.write("dups.txt", &list);
    dir.cmd()
        .args(["fetch", "dups.txt", "-c", "10"])
        .assert()
        .success();
    let db = dir.path("fanout.db");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes"),
        3,
        "keys: hash(a), hash(b), x"
    );
    assert_eq!(scalar(&db, "SELECT skipped FROM runs"), 3);
    let hits = srv.stats().hits();
    assert_eq!(
        hits["/item/a"], 1,
        "a repeated URL in flight is not fetched again"
    );
    assert_eq!(hits["/item/b"], 2, "the spec with id x is a different key");
}

/// Feeds `line` on stdin, waits until the store has committed it, then feeds it again with `other`:
/// the repeat arrives after the first outcome left the in-progress set, so only the store (through
/// the admitted-keys filter) can tell it was done in this run.
fn repeat_after_commit(dir: &Dir, line: &str, other: &str, extra: &[&str]) {
    let db = dir.path("fanout.db");
    let this_run = "SELECT count(*) FROM outcomes WHERE run_id = (SELECT max(id) FROM runs)";
    let runs_before = try_scalar(&db, "SELECT count(*) FROM runs").unwrap_or(0);
    let mut child = dir
        .fanout()
        .args(["fetch", "-", "-q"])
        .args(extra)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{line}").unwrap();
    let committed = wait_until(Duration::from_secs(10), || {
        try_scalar(&db, "SELECT count(*) FROM runs").unwrap_or(0) > runs_before
            && try_scalar(&db, this_run).unwrap_or(0) > 0
    });
    assert!(committed, "the first outcome was never committed");
    writeln!(stdin, "{line}\n{other}").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_key_repeated_after_its_commit_is_skipped_on_a_new_store_and_with_fresh() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let (a, b, c) = (srv.url("/item/a"), srv.url("/item/b"), srv.url("/item/c"));
    repeat_after_commit(&dir, &a, &b, &[]);
    let db = dir.path("fanout.db");
    assert_eq!(
        srv.stats().hits()["/item/a"],
        1,
        "new store: a fetched once"
    );
    assert_eq!(scalar(&db, "SELECT skipped FROM runs WHERE id = 1"), 1);
    // --fresh ignores run 1, but a repeat within run 2 still counts as done.
    repeat_after_commit(&dir, &a, &c, &["--fresh"]);
    assert_eq!(
        srv.stats().hits()["/item/a"],
        2,
        "--fresh: a fetched once more"
    );
    assert_eq!(scalar(&db, "SELECT skipped FROM runs WHERE id = 2"), 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM outcomes"), 3);
}

#[test]
fn rerun_skips_recorded_and_fresh_fetches_all() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, 300, "/item/"));
    dir.cmd().args(["fetch", "urls.txt"]).assert().success();
    assert_eq!(srv.stats().requests(), 300);
    dir.cmd()
        .args(["fetch", "urls.txt"])
        .assert()
        .success()
        .stderr(contains("resuming: 300 outcomes already recorded"));
    assert_eq!(srv.stats().requests(), 300, "nothing fetched again");
    dir.cmd()
        .args(["fetch", "urls.txt", "--fresh"])
        .assert()
        .success();
    assert_eq!(srv.stats().requests(), 600, "--fresh fetches everything");
    let db = dir.path("fanout.db");
    assert_eq!(scalar(&db, "SELECT count(*) FROM outcomes"), 300);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE run_id = 3"),
        300
    );
    assert_eq!(
        text(
            &db,
            "SELECT group_concat(mode || ':' || skipped || ':' || outcomes) FROM runs"
        ),
        "resume:0:300,resume:300:0,fresh:0:300"
    );
}

#[test]
fn retry_errors_and_retry_status() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    // fail-once answers 503 the first time; delay/800 times out at 200ms in the first run.
    let list = format!(
        "{}{}\n",
        urls(&srv, 5, "/fail-once/"),
        srv.url("/delay/800")
    );
    dir.write("urls.txt", &list);
    let db = dir.path("fanout.db");
    dir.cmd()
        .args(["fetch", "urls.txt", "--timeout", "200ms", "--retries", "0"])
        .assert()
        .success();
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 503"),
        5
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE error = 'timeout'"),
        1
    );

    dir.cmd().args(["fetch", "urls.txt"]).assert().success();
    assert_eq!(srv.stats().requests(), 6, "a plain rerun fetches nothing");

    dir.cmd()
        .args(["fetch", "urls.txt", "--retry-errors"])
        .assert()
        .success();
    assert_eq!(
        srv.stats().requests(),
        7,
        "--retry-errors refetches the timeout, not HTTP 503s"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE error IS NOT NULL"),
        0
    );

    dir.cmd()
        .args(["fetch", "urls.txt", "--retry-status", "5xx"])
        .assert()
        .success();
    assert_eq!(srv.stats().requests(), 12);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200"),
        6
    );
    dir.cmd()
        .args(["fetch", "urls.txt", "--retry-status", "7xx"])
        .assert()
        .code(2);
}

#[test]
fn full_disk_stops_with_a_clear_error_and_resumes() {
    // 40k outcomes with bodies take ~10 MB; the disk holds 4 MB, room for the largest first batch
    // (8,192 rows, ~2.5 MB of log), so some commit always lands before the disk fills, however
    // the outcomes happen to be batched.
    const N: usize = 40_000;
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, N, "/item/"));
    let small = dir.path("small");
    let mount = Tmpfs::mount(&small, "4m");
    let is_root = harness::is_root();
    if mount.is_none() {
        // Without mount rights a read-only directory stands in (it does not stop root).
        assert!(!is_root, "root must be able to mount a tmpfs for this test");
        std::fs::create_dir_all(&small).unwrap();
    }
    let db = small.join("run.db");
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "-c", "50", "--body", "store", "--db"])
        .arg(&db)
        .assert()
        .code(1)
        .stderr(contains(db.display().to_string()))
        .stderr(contains("full"));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("rerun to resume"), "{stderr}");
    assert!(harness::integrity_ok(&db), "nothing corrupt");
    let committed = scalar(&db, "SELECT count(*) FROM outcomes") as usize;
    assert!(
        committed > 0 && committed < N,
        "{committed} committed before the disk filled"
    );
    let served = srv.stats().requests() as usize;
    assert!(
        served < N,
        "admission stopped after the failure ({served} served)"
    );

    // Move the store to a roomy disk, as a user would, and rerun.
    let roomy = dir.path("roomy.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", db.display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", roomy.display())).unwrap();
        }
    }
    drop(mount);
    dir.cmd()
        .args([
            "fetch", "urls.txt", "-c", "50", "--body", "store", "--db", "roomy.db",
        ])
        .assert()
        .success();
    assert_eq!(scalar(&roomy, "SELECT count(*) FROM outcomes"), N as i64);
    assert_eq!(
        scalar(&roomy, "SELECT count(*) FROM outcomes WHERE status = 200"),
        N as i64
    );
    assert_eq!(
        scalar(&roomy, "SELECT skipped FROM runs WHERE id = 2") as usize,
        committed
    );
}

#[test]
fn a_pause_in_outcomes_copies_the_log_into_the_database_file() {
    // 600 quick requests, then one answered after two seconds: the quick outcomes are followed
    // by a pause while the last request is in flight.
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list = urls(&srv, 600, "/item/") + &urls(&srv, 1, "/delay/2000?n=");
    dir.write("urls.txt", &list);
    let db = dir.path("fanout.db");
    let mut child = dir
        .fanout()
        .args(["fetch", "urls.txt", "-c", "4", "-q"])
        .spawn()
        .unwrap();
    // SQLite appends commits to the write-ahead log; the database file itself holds only its
    // header (4 KiB) until the log is copied into it (by the store after 512 rows and a pause,
    // by SQLite on its own only at 4,000 pages or when the run ends).
    let grew = wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some() || std::fs::metadata(&db).is_ok_and(|m| m.len() > 4096)
    });
    let running = child.try_wait().unwrap().is_none();
    if !(grew && running) {
        let _ = child.kill();
    }
    assert!(
        grew && running,
        "the database file should grow during the pause, before the run ends"
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(rows(&db).len(), 601);
}
