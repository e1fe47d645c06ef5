//! SQLite store (the default): tables `runs` and `outcomes`, WAL journal, one transaction per batch
//! through one cached prepared statement. `synchronous=NORMAL` in WAL mode never corrupts the file;
//! a crash of the process loses nothing committed, a power cut at most the last transactions.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use super::{BlockingJournal, Prior, RunInfo, Store, StoreError};
use crate::outcome::{Outcome, Rfc3339Millis};
use crate::stats::Summary;

/// The schema, created when missing. Documented in README.md; changing it changes stored data.
pub const SCHEMA: &str = "
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

/// Parameters bound per outcome (every column but `run_id`, which is written into the statement).
const COLUMNS: usize = 14;
/// Rows per multi-row INSERT: fewer statement executions per batch (14 × 32 parameters).
const ROWS_PER_INSERT: usize = 32;
/// Rows written since the last checkpoint that make a pause worth one ([`Store::idle`]): a
/// checkpoint syncs twice, which a slow run (an outcome a second) should not pay per outcome.
const IDLE_CHECKPOINT_ROWS: usize = 512;

/// `INSERT OR REPLACE` of `rows` outcomes of run `run_id` in one statement.
fn insert_sql(rows: usize, run_id: i64) -> String {
    let one = format!("(?, {run_id}, {})", vec!["?"; COLUMNS - 1].join(", "));
    format!(
        "INSERT OR REPLACE INTO outcomes (key, run_id, url, method, status, error, error_detail, \
         attempts, started_at, ttfb_ms, total_ms, bytes, final_url, body_sha256, body) VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// Binds one outcome's columns starting at parameter `base` (1-based).
fn bind(stmt: &mut rusqlite::Statement<'_>, base: usize, o: &Outcome) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(base, &o.key)?;
    stmt.raw_bind_parameter(base + 1, &o.url)?;
    stmt.raw_bind_parameter(base + 2, &o.method)?;
    stmt.raw_bind_parameter(base + 3, o.status)?;
    stmt.raw_bind_parameter(base + 4, o.error.map(|k| k.as_str()))?;
    stmt.raw_bind_parameter(base + 5, &o.error_detail)?;
    stmt.raw_bind_parameter(base + 6, o.attempts)?;
    stmt.raw_bind_parameter(base + 7, Rfc3339Millis::new(o.started_at).as_str())?;
    stmt.raw_bind_parameter(base + 8, o.ttfb_ms())?;
    stmt.raw_bind_parameter(base + 9, o.total_ms())?;
    stmt.raw_bind_parameter(base + 10, o.bytes as i64)?;
    stmt.raw_bind_parameter(base + 11, &o.final_url)?;
    stmt.raw_bind_parameter(base + 12, &o.body_sha256)?;
    stmt.raw_bind_parameter(base + 13, o.body.as_deref())?;
    Ok(())
}

/// An open fanout SQLite database.
pub struct SqliteStore {
    path: String,
    conn: Connection,
    run_id: i64,
    insert_one: String,
    insert_many: String,
    /// Rows committed since this store's last idle checkpoint.
    unchecked_rows: usize,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and checks that it is a fanout store.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let name = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        // WAL: readers (fanout report, sqlite3) never block the writer, and a killed process never
        // leaves a torn file. NORMAL: commits do not fsync the WAL, which costs at most the last
        // transactions on power loss, never on a process crash.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // A multi-row INSERT needs a statement journal; in memory it costs no system calls.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(err)?;
        // The key index is written at random places: keep up to 8 MiB of it cached (default 2 MiB).
        conn.pragma_update(None, "cache_size", -8192).map_err(err)?;
        // Checkpoint every 4,000 WAL pages (16 MiB) rather than 1,000: a batch rewrites the same
        // index pages, and each checkpoint copies them and syncs (store thread -10% per 100k rows).
        conn.pragma_update(None, "wal_autocheckpoint", 4000)
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // A same-named table from another program would take our rows silently; check the columns.
        conn.prepare(
            "SELECT key, run_id, url, method, status, error, error_detail, attempts, started_at, \
             ttfb_ms, total_ms, bytes, final_url, body_sha256, body FROM outcomes LIMIT 0",
        )
        .map_err(|e| StoreError::Foreign {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        Ok(SqliteStore {
            path: name,
            conn,
            run_id: 0,
            insert_one: String::new(),
            insert_many: String::new(),
            unchecked_rows: 0,
        })
    }

    /// A second connection for resume lookups. Opened before the run is begun.
    pub fn journal(&self) -> Result<SqliteJournal, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.err(e))?;
        // Called before this run writes any outcome, so what is there came from other runs.
        let others_may_have_recorded = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM outcomes) \
                 OR EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND id <> ?1)",
                [self.run_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(SqliteJournal {
            path: self.path.clone(),
            conn,
            others_may_have_recorded,
        })
    }

    /// Outcomes recorded in the database at `path`; `Ok(None)` when there is no such file yet.
    pub fn count_outcomes(path: &Path) -> Result<Option<u64>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        let has_table: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'outcomes'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if !has_table {
            return Ok(None);
        }
        let n: i64 = conn
            .query_row("SELECT count(*) FROM outcomes", [], |r| r.get(0))
            .map_err(err)?;
        Ok(Some(n as u64))
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

impl Store for SqliteStore {
    /// Above every id in `runs`, and above any id a deleted run had (AUTOINCREMENT's sequence).
    fn next_run_id(&self) -> i64 {
        self.conn
            .query_row(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0), \
                 coalesce((SELECT max(id) FROM runs), 0)) + 1",
                [],
                |r| r.get(0),
            )
            .unwrap_or(1)
    }

    fn begin_run(&mut self, run: &RunInfo) -> Result<(), StoreError> {
        let started = humantime::format_rfc3339_millis(run.started_at).to_string();
        self.conn
            .execute(
                "INSERT INTO runs (id, started_at, command, status, mode) \
                 VALUES (?1, ?2, ?3, 'running', ?4)",
                params![
                    run.id,
                    started,
                    run.command,
                    if run.fresh { "fresh" } else { "resume" }
                ],
            )
            .map_err(|e| self.err(e))?;
        self.run_id = run.id;
        self.insert_one = insert_sql(1, self.run_id);
        self.insert_many = insert_sql(ROWS_PER_INSERT, self.run_id);
        Ok(())
    }

    /// The run's future was dropped: say so in `runs`, so the row does not read `running`.
    fn abandon(&mut self) {
        let finished = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let _ = self.conn.execute(
            "UPDATE runs SET finished_at = ?1, status = 'interrupted' WHERE id = ?2",
            params![finished, self.run_id],
        );
    }

    fn write(&mut self, batch: &[Outcome]) -> Result<(), StoreError> {
        if self.insert_one.is_empty() {
            // No run begun (the library used directly): rows are written with run id 0.
            self.insert_one = insert_sql(1, self.run_id);
            self.insert_many = insert_sql(ROWS_PER_INSERT, self.run_id);
        }
        // In key order, consecutive rows land on the same or neighbouring index pages. Stable, so
        // of two outcomes for one key the later still wins.
        let mut sorted: Vec<&Outcome> = batch.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let batch = sorted;
        let result = (|| {
            let tx = self.conn.transaction()?;
            let mut chunks = batch.chunks_exact(ROWS_PER_INSERT);
            {
                let mut many = tx.prepare_cached(&self.insert_many)?;
                for chunk in chunks.by_ref() {
                    for (i, o) in chunk.iter().enumerate() {
                        bind(&mut many, 1 + i * COLUMNS, o)?;
                    }
                    many.raw_execute()?;
                }
            }
            let mut one = tx.prepare_cached(&self.insert_one)?;
            for o in chunks.remainder() {
                bind(&mut one, 1, o)?;
                one.raw_execute()?;
            }
            drop(one);
            tx.commit()
        })();
        result.map_err(|e| self.err(e))?;
        self.unchecked_rows += batch.len();
        Ok(())
    }

    /// Copies the write-ahead log into the database while outcomes pause (between waves of a
    /// latency-bound list), once `IDLE_CHECKPOINT_ROWS` rows have been written since the last
    /// time, so closing the store at the end of the run has little left to copy and sync.
    /// PASSIVE never waits for readers; whatever it cannot copy now is copied later.
    fn idle(&mut self) {
        if self.unchecked_rows < IDLE_CHECKPOINT_ROWS {
            return;
        }
        self.unchecked_rows = 0;
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    fn end_run(&mut self, summary: &Summary) -> Result<(), StoreError> {
        let finished = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?1, status = ?2, outcomes = ?3, responses = ?4, \
                 errors = ?5, skipped = ?7 WHERE id = ?6",
                params![
                    finished,
                    summary.end.as_str(),
                    summary.total as i64,
                    summary.responses() as i64,
                    summary.errors() as i64,
                    self.run_id,
                    summary.skipped as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Resume lookups on their own read-only connection (WAL: never blocked by the writer).
pub struct SqliteJournal {
    path: String,
    conn: Connection,
    others_may_have_recorded: bool,
}

impl BlockingJournal for SqliteJournal {
    fn others_may_have_recorded(&self) -> bool {
        self.others_may_have_recorded
    }

    fn lookup(&mut self, keys: &[String]) -> Result<Vec<Option<Prior>>, StoreError> {
        let result = (|| {
            // One read transaction per batch: one snapshot, one lock acquisition.
            let tx = self.conn.transaction()?;
            let mut found = Vec::with_capacity(keys.len());
            {
                let mut stmt =
                    tx.prepare_cached("SELECT run_id, status, error FROM outcomes WHERE key = ?1")?;
                for k in keys {
                    let mut rows = stmt.query([k])?;
                    found.push(match rows.next()? {
                        Some(r) => Some(Prior {
                            run_id: r.get(0)?,
                            status: r.get(1)?,
                            error: r.get(2)?,
                        }),
                        None => None,
                    });
                }
            }
            tx.finish()?;
            Ok(found)
        })();
        result.map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }
}
