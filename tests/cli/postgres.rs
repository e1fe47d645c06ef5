//! The PostgreSQL store against a real server (tests/cli/pg.rs): the same rows as SQLite, resume
//! after SIGKILL, a server restarted mid-run, a server gone longer than --store-timeout, the
//! schema version, and passwords that never show.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{self, Dir, TestServer, wait_until};
use crate::pg::{PW_USER, PgServer};

fn urls(srv: &TestServer, n: usize, path: &str) -> String {
    (0..n)
        .map(|i| format!("{}\n", srv.url(&format!("{path}{i}"))))
        .collect()
}

/// (key, status, bytes, body_sha256) of every outcome in the SQLite store, in key order.
fn sqlite_rows(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, status, bytes, body_sha256 FROM outcomes ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| {
        let status: Option<i64> = r.get(1)?;
        let sha: Option<String> = r.get(3)?;
        Ok(format!(
            "{}|{}|{}|{}",
            r.get::<_, String>(0)?,
            status.map(|s| s.to_string()).unwrap_or_default(),
            r.get::<_, i64>(2)?,
            sha.unwrap_or_default()
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn pg_rows(pg: &PgServer, db: &str) -> Vec<String> {
    // COLLATE "C": the byte order SQLite sorts text in.
    pg.psql(
        db,
        "SELECT key, status, bytes, body_sha256 FROM outcomes ORDER BY key COLLATE \"C\"",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn twenty_thousand_urls_give_postgres_the_rows_sqlite_gets() {
    const N: usize = 20_000;
    let pg = PgServer::shared();
    let (name, url, srv, dir) = harness::pg_setup(pg, Duration::ZERO);
    dir.write("urls.txt", &urls(&srv, N, "/item/"));
    dir.cmd()
        .args([
            "fetch", "urls.txt", "-c", "64", "-q", "--db", "a.db", "--db", &url,
        ])
        .assert()
        .success();
    let lite = sqlite_rows(&dir.path("a.db"));
    let rows = pg_rows(pg, &name);
    assert_eq!(lite.len(), N);
    assert_eq!(rows.len(), N);
    assert_eq!(rows, lite, "the same (key, status, bytes, body_sha256)");
    assert_eq!(
        pg.psql(&name, "SELECT id, status, outcomes, mode FROM runs"),
        format!("1|completed|{N}|resume\n")
    );
    assert_eq!(pg.scalar(&name, "SELECT version FROM schema_version"), 1);
    assert_eq!(
        harness::scalar(&dir.path("a.db"), "SELECT version FROM schema_version"),
        1
    );
    // Types from the column table.
    assert_eq!(
        pg.psql(
            &name,
            "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = 'outcomes' \
             AND column_name IN ('key', 'status', 'started_at', 'total_ms', 'body')"
        )
        .trim(),
        "key text, status bigint, started_at timestamp with time zone, \
         total_ms double precision, body bytea"
    );

    // A rerun into PostgreSQL alone fetches nothing, and says where the outcomes are.
    let before = srv.stats().requests();
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "--db", &url])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("resuming: {N} outcomes already recorded in {url}")),
        "{stderr}"
    );
    assert_eq!(srv.stats().requests(), before, "nothing fetched again");
    assert_eq!(
        pg.psql(&name, "SELECT id, status, skipped FROM runs WHERE id = 2"),
        format!("2|completed|{N}\n")
    );
}

#[test]
fn a_key_recorded_in_either_store_is_not_fetched_again() {
    let pg = PgServer::shared();
    let (name, url, srv, dir) = harness::pg_setup(pg, Duration::ZERO);
    dir.write("a.txt", &urls(&srv, 100, "/item/a"));
    dir.write("b.txt", &urls(&srv, 100, "/item/b"));
    dir.cmd()
        .args(["fetch", "a.txt", "-q", "--db", "lite.db"])
        .assert()
        .success();
    dir.cmd()
        .args(["fetch", "b.txt", "-q", "--db", &url])
        .assert()
        .success();
    dir.write(
        "all.txt",
        &format!(
            "{}{}",
            urls(&srv, 100, "/item/a"),
            urls(&srv, 100, "/item/b")
        ),
    );
    let before = srv.stats().requests();
    dir.cmd()
        .args(["fetch", "all.txt", "-q", "--db", "lite.db", "--db", &url])
        .assert()
        .success();
    assert_eq!(srv.stats().requests(), before, "both journals consulted");
    // Each run's id is above every id either store has used.
    assert_eq!(pg.psql(&name, "SELECT max(id) FROM runs").trim(), "2");
    assert_eq!(
        harness::scalar(&dir.path("lite.db"), "SELECT max(id) FROM runs"),
        2
    );
}

#[test]
fn sigkill_at_random_points_then_resume_leaves_one_row_per_key() {
    const N: usize = 20_000;
    let pg = PgServer::shared();
    let (name, url, srv, dir) = harness::pg_setup(pg, Duration::from_millis(2));
    dir.write("urls.txt", &urls(&srv, N, "/item/"));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {seed}");
    let mut recorded_before = 0;
    for cycle in 0..4u64 {
        let seen = srv.stats().requests();
        let mut child = dir
            .fanout()
            .args(["fetch", "urls.txt", "-c", "40", "-q", "--db", &url])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let target = seen + 300 + (seed.wrapping_mul(cycle + 7) % 2500);
        wait_until(Duration::from_secs(30), || srv.stats().requests() >= target);
        std::thread::sleep(Duration::from_millis(seed.wrapping_mul(cycle + 3) % 50));
        harness::signal(child.id(), "KILL");
        assert_eq!(child.wait().unwrap().code(), None, "cycle {cycle}: killed");
        let recorded = pg
            .try_scalar(&name, "SELECT count(*) FROM outcomes")
            .unwrap_or(0);
        assert!(recorded >= recorded_before, "committed outcomes stay");
        recorded_before = recorded;
    }
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "40", "-q", "--db", &url])
        .assert()
        .success();
    assert_eq!(pg.scalar(&name, "SELECT count(*) FROM outcomes"), N as i64);
    assert_eq!(
        pg.scalar(
            &name,
            "SELECT count(DISTINCT key) FROM outcomes WHERE status = 200"
        ),
        N as i64
    );
    assert_eq!(srv.stats().hits().len(), N, "every URL fetched");
    assert_eq!(
        pg.psql(&name, "SELECT status FROM runs ORDER BY id DESC LIMIT 1"),
        "completed\n"
    );
}

#[test]
fn postgres_restarted_mid_run_records_every_key_once() {
    const N: usize = 20_000;
    let pg = PgServer::start();
    let (name, url, srv, dir) = harness::pg_setup(&pg, Duration::from_millis(2));
    dir.write("urls.txt", &urls(&srv, N, "/item/"));
    let child = dir
        .fanout()
        .args(["fetch", "urls.txt", "-c", "32", "--db", &url])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(60), || {
        pg.try_scalar(&name, "SELECT count(*) FROM outcomes")
            .is_some_and(|n| n >= 2000)
    }));
    pg.stop();
    std::thread::sleep(Duration::from_millis(500));
    pg.run();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(pg.scalar(&name, "SELECT count(*) FROM outcomes"), N as i64);
    assert_eq!(
        pg.scalar(&name, "SELECT count(*) FROM outcomes WHERE status = 200"),
        N as i64
    );
    assert_eq!(pg.psql(&name, "SELECT status FROM runs"), "completed\n");
}

#[test]
fn a_database_away_longer_than_the_store_timeout_stops_the_run_and_the_rerun_resumes() {
    const N: usize = 5_000;
    const PASSWORD: &str = "Tim3out-Pw";
    let pg = PgServer::start();
    let name = pg.create_db();
    pg.psql(
        &name,
        &format!(
            "CREATE USER {PW_USER} PASSWORD '{PASSWORD}'; ALTER DATABASE {name} OWNER TO {PW_USER}"
        ),
    );
    let url = format!(
        "postgres://{PW_USER}:{PASSWORD}@127.0.0.1:{}/{name}?sslmode=disable",
        pg.port
    );
    let masked = format!("postgres://{PW_USER}:***@127.0.0.1:{}/{name}", pg.port);
    let srv = TestServer::start(Duration::from_millis(5));
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, N, "/item/"));
    let child = dir
        .fanout()
        .args([
            "fetch",
            "urls.txt",
            "-c",
            "8",
            "--store-timeout",
            "2s",
            "--db",
            &url,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(60), || {
        pg.try_scalar(&name, "SELECT count(*) FROM outcomes")
            .is_some_and(|n| n >= 500)
    }));
    pg.stop();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert!(stderr.contains(&masked), "names the store: {stderr}");
    assert!(stderr.contains("--store-timeout"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    pg.run();
    let done = pg.scalar(&name, "SELECT count(*) FROM outcomes");
    assert!(done > 0 && (done as usize) < N, "{done}");
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "-c", "64", "--db", &url])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("resuming: {done} outcomes")),
        "{stderr}"
    );
    assert_eq!(pg.scalar(&name, "SELECT count(*) FROM outcomes"), N as i64);
    // The first run could not be told how it ended: the database was gone.
    assert_eq!(
        pg.psql(&name, "SELECT id, status, skipped FROM runs ORDER BY id"),
        format!("1|running|0\n2|completed|{done}\n")
    );
}

#[test]
fn a_password_never_shows() {
    const PASSWORD: &str = "Sup3r-S3cret-pw";
    let pg = PgServer::shared();
    let name = pg.create_db();
    harness::pw_role(pg);
    pg.psql(
        &name,
        &format!(
            "ALTER USER {PW_USER} PASSWORD '{PASSWORD}'; ALTER DATABASE {name} OWNER TO {PW_USER}"
        ),
    );
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &urls(&srv, 50, "/item/"));
    let base = format!("127.0.0.1:{}/{name}?sslmode=disable", pg.port);
    let with_pw = format!("postgres://{PW_USER}:{PASSWORD}@{base}");
    let no_pw = format!("postgresql://{PW_USER}@{base}");
    let check = |out: &std::process::Output, what: &str| {
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(text);
            assert!(
                !text.contains(PASSWORD),
                "{what}: password in {stream}: {text}"
            );
        }
    };
    // In the URL.
    let out = dir
        .fanout()
        .args(["fetch", "urls.txt", "--jsonl", "-", "--db", &with_pw])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    check(&out, "url");
    // Through PGPASSWORD, a second run (resume message) and a JSONL file.
    dir.write("more.txt", &urls(&srv, 60, "/item/"));
    let out = dir
        .fanout()
        .args(["fetch", "more.txt", "--jsonl", "o.jsonl", "--db", &no_pw])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&out, "PGPASSWORD");
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming: 50 outcomes"));
    let jsonl = std::fs::read_to_string(dir.path("o.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 10);
    assert!(!jsonl.contains(PASSWORD));
    let commands = pg.psql(&name, "SELECT command FROM runs ORDER BY id");
    assert!(!commands.contains(PASSWORD), "{commands}");
    assert!(
        commands.contains(&format!("postgres://{PW_USER}:***@{base}")),
        "{commands}"
    );
    assert_eq!(pg.scalar(&name, "SELECT count(*) FROM outcomes"), 60);
    // A wrong password is refused at open (exit 2), and the message shows none of it.
    let out = dir
        .fanout()
        .args(["fetch", "urls.txt", "--db"])
        .arg(format!("postgres://{PW_USER}:wrong-{PASSWORD}@{base}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    check(&out, "wrong password");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    // Without any password the server refuses too: nothing is guessed.
    let out = dir
        .fanout()
        .args(["fetch", "urls.txt", "--db", &no_pw])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", dir.path("none"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_store_of_a_newer_schema_version_is_refused() {
    let pg = PgServer::shared();
    let (name, url, srv, dir) = harness::pg_setup(pg, Duration::ZERO);
    dir.write("urls.txt", &urls(&srv, 3, "/item/"));
    dir.cmd()
        .args(["fetch", "urls.txt", "-q", "--db", "a.db", "--db", &url])
        .assert()
        .success();
    pg.psql(&name, "UPDATE schema_version SET version = 99");
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "--db", &url])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("newer fanout (schema version 99"),
        "{stderr}"
    );
    rusqlite::Connection::open(dir.path("a.db"))
        .unwrap()
        .execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "--db", "a.db"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("newer fanout (schema version 99"),
        "{stderr}"
    );
    // An older SQLite store (no schema_version table) is brought up to date.
    let conn = rusqlite::Connection::open(dir.path("a.db")).unwrap();
    conn.execute_batch("DROP TABLE schema_version").unwrap();
    drop(conn);
    dir.cmd()
        .args(["fetch", "urls.txt", "-q", "--db", "a.db"])
        .assert()
        .success();
    assert_eq!(
        harness::scalar(&dir.path("a.db"), "SELECT version FROM schema_version"),
        1
    );
    let keys: HashSet<String> = sqlite_rows(&dir.path("a.db")).into_iter().collect();
    assert_eq!(keys.len(), 3);
}
