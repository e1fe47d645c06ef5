//! The PostgreSQL work queue (`enqueue`, `work`, `status`) against a real server and real
//! worker processes: drained exactly once by several workers, one of them killed with SIGKILL;
//! a worker paused past its leases whose late completions are refused; the database restarted
//! mid-run; per-host rates and Retry-After pauses that hold for the whole fleet, measured by the
//! server's own arrival times.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Dir, TestServer, signal, wait_until};
use crate::pg::PgServer;

fn urls(srv: &TestServer, n: usize, path: &str) -> String {
    (0..n)
        .map(|i| format!("{}\n", srv.url(&format!("{path}{i}"))))
        .collect()
}

fn enqueue(dir: &Dir, url: &str, args: &[&str]) -> String {
    let out = dir
        .fanout()
        .arg("enqueue")
        .args(["--db", url])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

fn worker(dir: &Dir, url: &str, args: &[&str]) -> Child {
    dir.fanout()
        .arg("work")
        .args(["--db", url, "--progress", "never"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new database, a server answering after `latency`, and a queue of `n` jobs for its
/// `/item/{i}`: the database's name and URL, the server, and the directory commands run in.
fn queued(pg: &PgServer, latency: Duration, n: usize) -> (String, String, TestServer, Dir) {
    let name = pg.create_db();
    let url = pg.url(&name);
    let srv = TestServer::start(latency);
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, n, "/item/"));
    enqueue(&dir, &url, &["urls.txt"]);
    (name, url, srv, dir)
}

/// Starts `n` workers with `args` at once and waits for each to exit 0.
fn drain(dir: &Dir, url: &str, n: usize, args: &[&str]) {
    let ws: Vec<Child> = (0..n).map(|_| worker(dir, url, args)).collect();
    for w in ws {
        let (code, stderr) = finish(w);
        assert_eq!(code, Some(0), "{stderr}");
    }
}

/// Outcome rows, distinct keys, jobs done, jobs not done.
fn tally(pg: &PgServer, db: &str) -> (i64, i64, i64, i64) {
    (
        pg.scalar(db, "SELECT count(*) FROM outcomes"),
        pg.scalar(db, "SELECT count(DISTINCT key) FROM outcomes"),
        pg.scalar(db, "SELECT count(*) FROM queue_jobs WHERE state = 'done'"),
        pg.scalar(db, "SELECT count(*) FROM queue_jobs WHERE state <> 'done'"),
    )
}

#[test]
fn enqueue_skips_what_is_queued_or_done_and_one_worker_drains_the_queue() {
    let pg = PgServer::shared();
    let name = pg.create_db();
    let url = pg.url(&name);
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let mut list = urls(&srv, 500, "/item/");
    list.push_str("not a url\n");
    list.push_str(&format!("{}\n", srv.url("/status/503")));
    dir.write("urls.txt", &list);
    let said = enqueue(&dir, &url, &["urls.txt"]);
    assert!(
        said.contains("501 read, 501 queued, 0 already queued or done, 1 invalid"),
        "{said}"
    );
    assert!(
        said.contains("urls.txt:501"),
        "the bad line is named: {said}"
    );
    // Again: every key is queued already.
    let said = enqueue(&dir, &url, &["urls.txt"]);
    assert!(
        said.contains("501 read, 0 queued, 501 already queued or done"),
        "{said}"
    );

    let (code, stderr) = finish(worker(&dir, &url, &["-c", "16", "--retries", "0"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("501 completed"), "{stderr}");
    // One outcome per job, plus the invalid line's.
    assert_eq!(tally(pg, &name), (502, 502, 501, 0));
    assert_eq!(
        pg.scalar(
            &name,
            "SELECT count(*) FROM outcomes WHERE error = 'invalid-input'"
        ),
        1
    );
    assert_eq!(srv.stats().requests(), 501);

    let out = dir
        .fanout()
        .args(["status", "--db", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["queued"], 0);
    assert_eq!(s["leased"], 0);
    assert_eq!(s["done"], 501, "a 503 is a response: done, not failed");
    assert_eq!(s["workers"][0]["done"], 501);
    assert_eq!(s["workers"][0]["state"], "finished");

    // Done keys are skipped by a later enqueue too, in another queue of the same database.
    let said = enqueue(&dir, &url, &["urls.txt", "--queue", "other"]);
    assert!(
        said.contains("0 queued, 501 already queued or done"),
        "{said}"
    );
    // A report reads the queue's outcomes like a run's: every worker's run, and the invalid line.
    let out = dir
        .fanout()
        .args(["report", &url, "--all"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("502"), "{text}");
}

#[test]
fn bad_queue_flags_are_usage_errors() {
    let dir = Dir::new();
    for args in [
        vec!["work", "--db", "fanout.db"],
        vec![
            "work",
            "--db",
            "postgres://u@127.0.0.1:1/x",
            "--queue",
            "a b",
        ],
        vec![
            "work",
            "--db",
            "postgres://u@127.0.0.1:1/x",
            "--lease",
            "100ms",
        ],
        vec!["status"],
        vec![
            "enqueue",
            "--db",
            "postgres://u:hunter2@127.0.0.1:1/x",
            "--from-sql",
            "SELECT 1",
        ],
    ] {
        let out = dir.fanout().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // A database that cannot be reached is exit 2, its password never shown.
    let out = dir
        .fanout()
        .args([
            "status",
            "--db",
            "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=2",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && stderr.contains("***"),
        "{stderr}"
    );
}

#[test]
fn three_workers_one_killed_record_every_job_exactly_once() {
    const N: usize = 20_000;
    let pg = PgServer::shared();
    let (name, url, srv, dir) = queued(pg, Duration::from_millis(1), N);
    let args = ["-c", "32", "--lease", "2s"];
    let victim = worker(&dir, &url, &args);
    let others = [worker(&dir, &url, &args), worker(&dir, &url, &args)];
    assert!(wait_until(Duration::from_secs(60), || {
        pg.try_scalar(&name, "SELECT count(*) FROM outcomes")
            .is_some_and(|n| n >= 3000)
    }));
    signal(victim.id(), "KILL");
    let (code, _) = finish(victim);
    assert_eq!(code, None, "killed by a signal");
    for w in others {
        let (code, stderr) = finish(w);
        assert_eq!(code, Some(0), "{stderr}");
    }
    assert_eq!(tally(pg, &name), (N as i64, N as i64, N as i64, 0));
    assert_eq!(
        pg.scalar(&name, "SELECT count(*) FROM outcomes WHERE status = 200"),
        N as i64
    );
    // The status tells the dead worker from the two that finished.
    std::thread::sleep(Duration::from_millis(2100));
    let out = dir
        .fanout()
        .args(["status", "--db", &url, "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut states: Vec<&str> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(states, ["finished", "finished", "lost"], "{s}");
    // Fetched at least once each; the killed worker's unfinished leases were fetched again.
    assert!(srv.stats().requests() >= N as u64);
}

#[test]
fn a_worker_paused_past_its_leases_records_nothing_late() {
    const N: usize = 400;
    let pg = PgServer::shared();
    // Slow answers, so the paused worker has requests in flight when it is stopped.
    let (name, url, _srv, dir) = queued(pg, Duration::from_millis(300), N);
    let zombie = worker(&dir, &url, &["-c", "20", "--lease", "1s"]);
    assert!(wait_until(Duration::from_secs(30), || {
        pg.try_scalar(
            &name,
            "SELECT count(*) FROM queue_jobs WHERE state = 'leased'",
        )
        .is_some_and(|n| n >= 20)
    }));
    signal(zombie.id(), "STOP");
    let held = pg.scalar(
        &name,
        "SELECT count(*) FROM queue_jobs WHERE state = 'leased'",
    );
    assert!(held > 0);
    // Another worker sweeps the expired leases and does every job.
    let (code, stderr) = finish(worker(&dir, &url, &["-c", "50", "--lease", "1s"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(tally(pg, &name), (N as i64, N as i64, N as i64, 0));
    // The zombie wakes: its requests finish, its completions find their leases gone.
    signal(zombie.id(), "CONT");
    let (code, stderr) = finish(zombie);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(tally(pg, &name), (N as i64, N as i64, N as i64, 0));
    assert!(
        pg.scalar(&name, "SELECT count(*) FROM queue_jobs WHERE expired > 0") > 0,
        "the sweep counts each lease that ran out on its job"
    );
    let refused = pg.scalar(&name, "SELECT coalesce(sum(stale), 0) FROM queue_workers");
    assert!(
        refused > 0,
        "the zombie's late completions are counted as refused: {stderr}"
    );
    assert!(
        stderr.contains("completions refused (lease lost)"),
        "{stderr}"
    );
}

#[test]
fn the_database_restarted_mid_run_loses_and_doubles_nothing() {
    const N: usize = 10_000;
    let pg = PgServer::start();
    let (name, url, _srv, dir) = queued(&pg, Duration::from_millis(2), N);
    let ws = [
        worker(&dir, &url, &["-c", "16", "--lease", "10s"]),
        worker(&dir, &url, &["-c", "16", "--lease", "10s"]),
    ];
    assert!(wait_until(Duration::from_secs(60), || {
        pg.try_scalar(&name, "SELECT count(*) FROM outcomes")
            .is_some_and(|n| n >= 2000)
    }));
    pg.stop();
    std::thread::sleep(Duration::from_millis(800));
    pg.run();
    for w in ws {
        let (code, stderr) = finish(w);
        assert_eq!(code, Some(0), "{stderr}");
    }
    assert_eq!(tally(&pg, &name), (N as i64, N as i64, N as i64, 0));
}

/// Arrival times (seconds since the first) of requests whose path starts with `prefix`.
fn arrivals(srv: &TestServer, prefix: &str) -> Vec<f64> {
    let all = srv.stats().arrivals();
    let mine: Vec<Instant> = all
        .iter()
        .filter(|(_, p)| p.starts_with(prefix))
        .map(|(t, _)| *t)
        .collect();
    let first = mine[0];
    mine.iter()
        .map(|t| t.duration_since(first).as_secs_f64())
        .collect()
}

#[test]
fn a_per_host_rate_holds_for_the_whole_fleet() {
    // More jobs than one worker holds (`in_hand`), so all three work the host at once.
    const N: usize = 200;
    let pg = PgServer::shared();
    let (name, url, srv, dir) = queued(pg, Duration::ZERO, N);
    let args = ["-c", "8", "--per-host-rate", "20/s", "--burst", "2"];
    drain(&dir, &url, 3, &args);
    assert_eq!(tally(pg, &name).0, N as i64);
    let t = arrivals(&srv, "/item/");
    assert_eq!(t.len(), N);
    // Any window sees at most burst + rate × its length, give or take 100 ms of scheduling
    // delay between a slot and the request's arrival (on a loaded 2-core machine), and one.
    // (Three workers at 20/s each would put 60 into a second.)
    for i in 0..t.len() {
        for j in i + 1..t.len() {
            let n = (j - i + 1) as f64;
            let allowed = 2.0 + 20.0 * (t[j] - t[i] + 0.1) + 1.0;
            assert!(
                n <= allowed,
                "{n} requests within {:.3}s: the fleet's rate is 20/s with a burst of 2",
                t[j] - t[i]
            );
        }
    }
    assert!(
        t[N - 1] >= (N as f64 - 4.0) / 20.0 - 0.5,
        "{:.2}s",
        t[N - 1]
    );
    // And the three did share the work.
    let busy = pg.scalar(&name, "SELECT count(*) FROM queue_workers WHERE done > 0");
    assert_eq!(busy, 3);
}

#[test]
fn a_retry_after_seen_by_one_worker_pauses_the_host_for_every_worker() {
    let pg = PgServer::shared();
    let name = pg.create_db();
    let url = pg.url(&name);
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let mut list = urls(&srv, 60, "/item/");
    list.insert_str(0, &format!("{}\n", srv.url("/retry-after/2/x")));
    dir.write("urls.txt", &list);
    enqueue(&dir, &url, &["urls.txt"]);
    let args = ["-c", "4", "--per-host-rate", "20/s", "--burst", "1"];
    drain(&dir, &url, 3, &args);
    assert_eq!(tally(pg, &name).0, 61);
    let all = srv.stats().arrivals();
    let (paused_at, _) = all
        .iter()
        .find(|(_, p)| p.starts_with("/retry-after/"))
        .expect("the 429 was served")
        .clone();
    // Requests already granted a slot may land just after; then nothing for two seconds.
    let during: Vec<f64> = all
        .iter()
        .map(|(t, _)| t.saturating_duration_since(paused_at).as_secs_f64())
        .filter(|d| *d > 0.15 && *d < 1.9)
        .collect();
    assert!(during.is_empty(), "requests during the pause: {during:?}");
    let hits = srv.stats().hits();
    assert_eq!(
        hits.get("/retry-after/2/x"),
        Some(&2),
        "asked again after the pause"
    );
}

#[test]
fn ctrl_c_hands_unfinished_jobs_back_at_once() {
    const N: usize = 200;
    let pg = PgServer::shared();
    let (name, url, _srv, dir) = queued(pg, Duration::from_millis(400), N);
    // A lease far longer than the test: jobs come back only if they are handed back.
    let w = worker(&dir, &url, &["-c", "10", "--lease", "10m", "--grace", "0s"]);
    assert!(wait_until(Duration::from_secs(30), || {
        pg.try_scalar(
            &name,
            "SELECT count(*) FROM queue_jobs WHERE state = 'leased'",
        )
        .is_some_and(|n| n >= 10)
    }));
    signal(w.id(), "INT");
    let (code, stderr) = finish(w);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("handed back"), "{stderr}");
    assert_eq!(
        pg.scalar(
            &name,
            "SELECT count(*) FROM queue_jobs WHERE state = 'leased'"
        ),
        0,
        "nothing stays leased"
    );
    assert_eq!(
        pg.scalar(
            &name,
            "SELECT count(*) FROM outcomes WHERE error = 'cancelled'"
        ),
        0,
        "a queue records no 'cancelled': the job is fetched again"
    );
    let attempted = pg.scalar(&name, "SELECT coalesce(sum(attempts), 0) FROM queue_jobs");
    assert!(attempted > 0, "attempts in flight are counted on the job");
    let (code, stderr) = finish(worker(&dir, &url, &["-c", "50"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(tally(pg, &name), (N as i64, N as i64, N as i64, 0));
}

#[test]
fn a_retry_due_after_a_long_retry_after_goes_back_to_the_queue_instead_of_holding_the_lease() {
    let pg = PgServer::shared();
    let name = pg.create_db();
    let url = pg.url(&name);
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &format!("{}\n", srv.url("/retry-after/3/x")));
    enqueue(&dir, &url, &["urls.txt"]);
    // Lease 3 s: retries due more than 1 s ahead are handed back.
    let w = worker(&dir, &url, &["--lease", "3s", "--poll", "100ms"]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            pg.try_scalar(
                &name,
                "SELECT count(*) FROM queue_jobs WHERE state = 'queued' \
                 AND not_before > now() + interval '1 second' AND attempts = 1",
            ) == Some(1)
        }),
        "handed back with a not-before"
    );
    let (code, stderr) = finish(w);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        pg.psql(&name, "SELECT status FROM outcomes"),
        "200\n",
        "fetched again when due"
    );
    assert_eq!(srv.stats().hits().get("/retry-after/3/x"), Some(&2));
    assert_eq!(
        pg.scalar(&name, "SELECT attempts FROM queue_jobs"),
        2,
        "the attempt before the hand-back counts"
    );
}

#[test]
fn a_worker_whose_clock_reads_otherwise_changes_nothing() {
    const N: usize = 3000;
    let pg = PgServer::shared();
    let (name, url, _srv, dir) = queued(pg, Duration::from_millis(1), N);
    // A time namespace of its own: this worker's monotonic and boot clocks read ten days ahead
    // of the other's. (Its wall clock cannot be moved this way; no lease, slot or pause is ever
    // judged by a worker's wall clock either: every comparison is the database's now().)
    let mut skewed = std::process::Command::new("unshare");
    if !crate::harness::is_root() {
        skewed.args(["--user", "--map-root-user"]);
    }
    skewed
        .args(["--time", "--monotonic", "864000", "--boottime", "864000"])
        .arg(env!("CARGO_BIN_EXE_fanout"))
        .args([
            "work",
            "--db",
            &url,
            "--progress",
            "never",
            "-c",
            "16",
            "--lease",
            "10s",
        ])
        .current_dir(dir.path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let a = skewed.spawn().expect("unshare (util-linux) runs");
    let b = worker(&dir, &url, &["-c", "16", "--lease", "10s"]);
    for w in [a, b] {
        let (code, stderr) = finish(w);
        assert_eq!(code, Some(0), "{stderr}");
    }
    assert_eq!(tally(pg, &name), (N as i64, N as i64, N as i64, 0));
    assert_eq!(
        pg.scalar(&name, "SELECT max(leases) FROM queue_jobs"),
        1,
        "no lease was judged expired"
    );
    assert_eq!(
        pg.scalar(&name, "SELECT count(*) FROM queue_workers WHERE done > 0"),
        2
    );
}

#[test]
fn per_host_concurrency_holds_for_the_whole_fleet() {
    const N: usize = 240;
    let pg = PgServer::shared();
    let (name, url, srv, dir) = queued(pg, Duration::from_millis(150), N);
    let args = ["-c", "8", "--per-host", "2"];
    drain(&dir, &url, 3, &args);
    assert_eq!(tally(pg, &name), (N as i64, N as i64, N as i64, 0));
    assert_eq!(
        pg.scalar(&name, "SELECT count(*) FROM queue_workers WHERE done > 0"),
        3,
        "all three worked the host"
    );
    // Each worker alone may have 2 in flight; the fleet together no more than 2 either.
    assert!(
        srv.stats().max_in_flight() <= 2,
        "{} at once",
        srv.stats().max_in_flight()
    );
    assert_eq!(
        pg.scalar(&name, "SELECT count(*) FROM queue_host_slots"),
        0,
        "finished workers leave no slots behind"
    );
}

#[test]
fn a_job_whose_leases_keep_running_out_is_recorded_as_abandoned() {
    let pg = PgServer::shared();
    let (name, url, srv, dir) = queued(pg, Duration::ZERO, 3);
    // As if the workers holding this one had died twice (what the sweep counts).
    pg.psql(
        &name,
        "UPDATE queue_jobs SET expired = 2 WHERE url LIKE '%/item/0'",
    );
    let (code, stderr) = finish(worker(&dir, &url, &["--max-lost-leases", "2"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(tally(pg, &name), (3, 3, 3, 0));
    assert_eq!(
        pg.psql(
            &name,
            "SELECT error FROM outcomes WHERE url LIKE '%/item/0'"
        ),
        "abandoned\n"
    );
    assert_eq!(
        srv.stats().hits().get("/item/0"),
        None,
        "never fetched again"
    );
    assert_eq!(srv.stats().requests(), 2);
}
