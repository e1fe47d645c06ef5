//! SQLite store (the default): tables `runs` and `outcomes`, WAL journal, one transaction per batch
//! through one cached prepared statement. `synchronous=NORMAL` in WAL mode never corrupts the file;
//! a crash of the process loses nothing committed, a power cut at most the last transactions.
//! The `outcomes` DDL, insert and binds are generated from [`super::schema::OUTCOME_COLUMNS`];
//! opening a store made by an earlier version adds the nullable columns it lacks.

mod checkpoint;
mod insert;

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::schema::{Column, OUTCOME_COLUMNS, SCHEMA_VERSION, Source, check_version};
use super::{BlockingJournal, Prior, RunInfo, Store, StoreError};
use crate::outcome::Outcome;
use crate::stats::Summary;

/// The `runs` table, created when missing. Documented in README.md; changing it changes stored data.
pub const RUNS_SCHEMA: &str = "
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
";

/// The `run_hosts` table, created when missing: the engine's per-host figures of each run (the
/// summary's host list), written at the end of the run. Documented in README.md.
pub const RUN_HOSTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS run_hosts (
    run_id      INTEGER NOT NULL,
    host        TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    final_limit INTEGER NOT NULL,
    overloads   INTEGER NOT NULL,
    PRIMARY KEY (run_id, host)
);
";

/// The `schema_version` table (one row: [`SCHEMA_VERSION`] of the fanout that last opened it).
const VERSION_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);\n";

/// The whole schema, created when missing: [`RUNS_SCHEMA`], [`RUN_HOSTS_SCHEMA`],
/// `schema_version`, and the `outcomes` table generated from [`OUTCOME_COLUMNS`].
pub fn schema() -> String {
    let columns: Vec<String> = OUTCOME_COLUMNS.iter().map(column_def).collect();
    format!(
        "{RUNS_SCHEMA}{RUN_HOSTS_SCHEMA}{VERSION_SCHEMA}CREATE TABLE IF NOT EXISTS outcomes (\n    {}\n);\n",
        columns.join(",\n    ")
    )
}

/// A column's definition, as in `CREATE TABLE` and `ALTER TABLE ... ADD COLUMN`.
fn column_def(c: &Column) -> String {
    format!(
        "{:<12} {}{}{}",
        c.name,
        c.sqlite_type(),
        if c.primary_key { " PRIMARY KEY" } else { "" },
        if c.nullable { "" } else { " NOT NULL" }
    )
}

/// Parameters bound per outcome: every column but `run_id`, which is written into the statement.
const COLUMNS: usize = bound_columns();
/// Rows per multi-row INSERT: fewer statement executions per batch (15 × 32 parameters).
const ROWS_PER_INSERT: usize = 32;
/// Rows written since the last checkpoint that make a pause worth one ([`Store::idle`]): a
/// checkpoint syncs twice, which a slow run (an outcome a second) should not pay per outcome.
const IDLE_CHECKPOINT_ROWS: usize = 512;

const fn bound_columns() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < OUTCOME_COLUMNS.len() {
        if let Source::Field(_) = OUTCOME_COLUMNS[i].source {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The names of every column, comma-separated, in table order.
fn column_list() -> String {
    let names: Vec<&str> = OUTCOME_COLUMNS.iter().map(|c| c.name).collect();
    names.join(", ")
}

/// An insert of `rows` outcomes of run `run_id` in one statement: `verb` is `INSERT OR REPLACE`
/// or `INSERT OR FAIL`.
fn insert_sql(verb: &str, rows: usize, run_id: i64) -> String {
    let values: Vec<String> = OUTCOME_COLUMNS
        .iter()
        .map(|c| match c.source {
            Source::Field(_) => "?".to_owned(),
            // A constant of the run: in the text, it costs no bind per row.
            Source::RunId => run_id.to_string(),
        })
        .collect();
    let one = format!("({})", values.join(", "));
    format!(
        "{verb} INTO outcomes ({}) VALUES {}",
        column_list(),
        vec![one; rows].join(", ")
    )
}

/// Adds the nullable columns a store made by an earlier version lacks. Adds nothing to a table
/// that also lacks a required column: that one is not ours, and the caller's check says so.
fn add_missing_columns(conn: &mut Connection) -> rusqlite::Result<()> {
    if !missing_columns(conn)?.iter().any(|c| c.nullable) {
        return Ok(());
    }
    // Under the write lock, and looked at again: another fanout may have just added them.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let missing = missing_columns(&tx)?;
    if missing.iter().all(|c| c.nullable) {
        for c in missing {
            tx.execute_batch(&format!(
                "ALTER TABLE outcomes ADD COLUMN {}",
                column_def(c)
            ))?;
        }
    }
    tx.commit()
}

/// The columns of [`OUTCOME_COLUMNS`] that the `outcomes` table lacks.
fn missing_columns(conn: &Connection) -> rusqlite::Result<Vec<&'static Column>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('outcomes')")?;
    let have = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    // SQLite column names are case-insensitive.
    Ok(OUTCOME_COLUMNS
        .iter()
        .filter(|c| !have.iter().any(|h| h.eq_ignore_ascii_case(c.name)))
        .collect())
}

/// The two inserts a batch is written with, prepared for one run id.
struct Inserts {
    /// `INSERT OR FAIL` of [`ROWS_PER_INSERT`] rows. Not `OR REPLACE`: a statement that inserts
    /// several rows and may abort half-way (a key already stored) makes SQLite keep a statement
    /// journal, a copy of every page it touches (~1,100 instructions a row). `OR FAIL` keeps the
    /// rows before a conflict, and the chunk is then written again with `many_replace`.
    many: insert::Insert,
    /// `INSERT OR REPLACE` of [`ROWS_PER_INSERT`] rows: a chunk that met a key already stored (a
    /// rerun with `--fresh` or `--retry-errors`, a key twice in one batch), written again whole.
    many_replace: insert::Insert,
    /// `INSERT OR REPLACE` of one row: the rest of a batch.
    one: insert::Insert,
}

/// An open fanout SQLite database.
pub struct SqliteStore {
    path: String,
    /// Dropped before `conn`, which rusqlite does not close while statements are open.
    inserts: Option<Inserts>,
    /// Copies the log into the file on a thread of its own (`None`: the writer does, as SQLite's
    /// auto-checkpoint). Dropped before `conn`, so the writer's close is the last and removes the log.
    checkpointer: Option<checkpoint::Checkpointer>,
    conn: Connection,
    run_id: i64,
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
        let mut conn = Connection::open_with_flags(
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
        // The checkpointer below takes this over; this is what the writer does without one.
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint::CHECKPOINT_PAGES)
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(&schema()).map_err(err)?;
        // A newer fanout's store is left as it is; an older one is migrated below.
        let version: Option<i64> = conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(err)?;
        if let Some(v) = version {
            check_version(v).map_err(|reason| StoreError::Refused {
                path: name.clone(),
                reason,
            })?;
        }
        add_missing_columns(&mut conn).map_err(err)?;
        // A same-named table from another program would take our rows silently; check the columns.
        conn.prepare(&format!("SELECT {} FROM outcomes LIMIT 0", column_list()))
            .map_err(|e| StoreError::Foreign {
                path: name.clone(),
                reason: e.to_string(),
            })?;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; \
             INSERT INTO schema_version (version) SELECT {SCHEMA_VERSION} \
             WHERE NOT EXISTS (SELECT 1 FROM schema_version); \
             UPDATE schema_version SET version = {SCHEMA_VERSION} WHERE version < {SCHEMA_VERSION}; \
             COMMIT;"
        ))
        .map_err(err)?;
        // After the pragmas: its WAL hook takes the slot the auto-checkpoint above holds.
        let checkpointer =
            checkpoint::Checkpointer::start(path, &mut conn, checkpoint::CHECKPOINT_PAGES);
        Ok(SqliteStore {
            path: name,
            inserts: None,
            checkpointer,
            conn,
            run_id: 0,
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

    /// The inserts for this store's run id, prepared now if they are not yet.
    fn prepare_inserts(&mut self) -> rusqlite::Result<()> {
        if self.inserts.is_none() {
            self.inserts = Some(Inserts {
                many: insert::Insert::prepare(
                    &self.conn,
                    &insert_sql("INSERT OR FAIL", ROWS_PER_INSERT, self.run_id),
                    ROWS_PER_INSERT,
                )?,
                many_replace: insert::Insert::prepare(
                    &self.conn,
                    &insert_sql("INSERT OR REPLACE", ROWS_PER_INSERT, self.run_id),
                    ROWS_PER_INSERT,
                )?,
                one: insert::Insert::prepare(
                    &self.conn,
                    &insert_sql("INSERT OR REPLACE", 1, self.run_id),
                    1,
                )?,
            });
        }
        Ok(())
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
        self.inserts = None;
        self.prepare_inserts().map_err(|e| self.err(e))
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
        // No run begun (the library used directly): rows are written with run id 0.
        self.prepare_inserts().map_err(|e| self.err(e))?;
        // In key order, consecutive rows land on the same or neighbouring index pages. Stable, so
        // of two outcomes for one key the later still wins. Compared by their first 16 bytes
        // first, held beside the reference: the sort then rarely follows a pointer to a key.
        let mut keyed: Vec<(u128, &Outcome)> =
            batch.iter().map(|o| (key_prefix(&o.key), o)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
        let sorted: Vec<&Outcome> = keyed.into_iter().map(|(_, o)| o).collect();
        let result = (|| {
            let tx = self.conn.transaction()?;
            let Some(Inserts {
                many,
                many_replace,
                one,
            }) = self.inserts.as_mut()
            else {
                unreachable!("prepared above");
            };
            let mut chunks = sorted.chunks_exact(ROWS_PER_INSERT);
            // Once a chunk met a stored key, so will others of the batch (a rerun over a full
            // store): they go straight to `many_replace`, without binding every row twice.
            let mut replacing = false;
            for chunk in chunks.by_ref() {
                if replacing {
                    replaced(many_replace.run(chunk)?)?;
                } else if let insert::Ran::Constraint(_) = many.run(chunk)? {
                    // Rows before the conflict are in; replacing them with themselves is harmless,
                    // and in order, so the later of two outcomes for a key wins.
                    replaced(many_replace.run(chunk)?)?;
                    replacing = true;
                }
            }
            for o in chunks.remainder() {
                replaced(one.run(std::slice::from_ref(o))?)?;
            }
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
        match &self.checkpointer {
            Some(c) => c.ask(),
            None => {
                let _ = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        }
    }

    fn end_run(&mut self, summary: &Summary) -> Result<(), StoreError> {
        let finished = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let run_id = self.run_id;
        // The run's row and its hosts in one transaction: a report never sees one without the other.
        let result = (|| {
            let tx = self.conn.transaction()?;
            tx.execute(
                "UPDATE runs SET finished_at = ?1, status = ?2, outcomes = ?3, responses = ?4, \
                 errors = ?5, skipped = ?7 WHERE id = ?6",
                params![
                    finished,
                    summary.end.as_str(),
                    summary.total as i64,
                    summary.responses() as i64,
                    summary.errors() as i64,
                    run_id,
                    summary.skipped as i64
                ],
            )?;
            {
                let mut host = tx.prepare(
                    "INSERT OR REPLACE INTO run_hosts (run_id, host, attempts, final_limit, \
                     overloads) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for h in &summary.hosts {
                    host.execute(params![
                        run_id,
                        h.host,
                        i64::try_from(h.attempts).unwrap_or(i64::MAX),
                        i64::try_from(h.limit).unwrap_or(i64::MAX),
                        i64::try_from(h.overloads).unwrap_or(i64::MAX)
                    ])?;
                }
            }
            tx.commit()
        })();
        result.map_err(|e| self.err(e))
    }
}

/// The first 16 bytes of `key` as a number that orders as the bytes do (shorter keys padded
/// with zeros: where two prefixes differ, the keys differ the same way; equal ones say nothing).
fn key_prefix(key: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// What an `INSERT OR REPLACE` ran into: a constraint it cannot resolve (a NULL where none may
/// be) is an error.
fn replaced(ran: insert::Ran) -> rusqlite::Result<()> {
    match ran {
        insert::Ran::Done => Ok(()),
        insert::Ran::Constraint(e) => Err(e),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::outcome::ErrorKind;
    use crate::sink::schema::Value;

    fn names() -> Vec<&'static str> {
        OUTCOME_COLUMNS.iter().map(|c| c.name).collect()
    }

    /// An outcome with every field set (bytes that are not UTF-8 in the body), and one with most
    /// of them NULL.
    fn outcomes() -> Vec<Outcome> {
        let full = Outcome {
            key: "k-full".into(),
            url: "http://127.0.0.1:1/a".into(),
            method: "POST".into(),
            status: Some(503),
            error: Some(ErrorKind::BodyTooLarge),
            error_detail: Some("detail".into()),
            attempts: 3,
            started_at: UNIX_EPOCH + Duration::from_millis(1_795_277_595_123),
            ttfb: Some(Duration::from_micros(1_234_567)),
            total: Duration::from_nanos(2_345_678_901),
            bytes: 5,
            final_url: Some("http://127.0.0.1:1/b".into()),
            body_sha256: Some("ab".repeat(32)),
            body: Some(bytes::Bytes::from_static(b"h\xffllo")),
            body_path: Some("out/k-full".into()),
        };
        let failed = Outcome::failed(
            "k-failed".into(),
            "not a url".into(),
            "GET".into(),
            ErrorKind::InvalidInput,
            "urls.txt:3: bad",
        );
        vec![full, failed]
    }

    /// An SQLite value as [`Outcome::to_json`] writes the column's value.
    fn json_of(v: rusqlite::types::ValueRef<'_>) -> serde_json::Value {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Real(x) => Value::Real(x),
            ValueRef::Text(t) => Value::Text(std::str::from_utf8(t).unwrap()),
            ValueRef::Blob(b) => Value::Blob(b),
        }
        .to_json()
    }

    #[test]
    fn ddl_insert_and_json_list_every_column() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&schema()).unwrap();
        let mut info = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info('outcomes')")
            .unwrap();
        let ddl: Vec<(String, String, bool, bool)> = info
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? > 0))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let table: Vec<(String, String, bool, bool)> = OUTCOME_COLUMNS
            .iter()
            .map(|c| {
                let ty = c.sqlite_type().to_owned();
                (c.name.to_owned(), ty, !c.nullable, c.primary_key)
            })
            .collect();
        assert_eq!(ddl, table);

        let sql = insert_sql("INSERT OR FAIL", ROWS_PER_INSERT, 7);
        assert!(sql.contains(&format!("({})", names().join(", "))), "{sql}");
        let stmt = conn.prepare(&sql).unwrap();
        assert_eq!(stmt.parameter_count(), COLUMNS * ROWS_PER_INSERT);
        assert_eq!(
            COLUMNS,
            OUTCOME_COLUMNS.len() - 1,
            "all but run_id are bound"
        );

        let json = outcomes()[0].to_json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut want: Vec<&str> = OUTCOME_COLUMNS
            .iter()
            .filter(|c| c.json)
            .map(|c| c.name)
            .collect();
        let mut keys = keys;
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(want.len(), OUTCOME_COLUMNS.len() - 1, "all but run_id");
    }

    #[test]
    fn an_outcome_round_trips_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store
            .begin_run(&RunInfo {
                id: 1,
                command: "test".into(),
                started_at: std::time::SystemTime::now(),
                fresh: false,
            })
            .unwrap();
        let written = outcomes();
        store.write(&written).unwrap();
        let run_id = store.run_id;
        drop(store);

        let conn = Connection::open(&path).unwrap();
        let sql = format!("SELECT {} FROM outcomes WHERE key = ?1", column_list());
        for o in &written {
            let json = o.to_json();
            conn.query_row(&sql, [&o.key], |r| {
                for c in OUTCOME_COLUMNS {
                    let v = r.get_ref(c.name)?;
                    if c.json {
                        assert_eq!(json_of(v), json[c.name], "{} of {}", c.name, o.key);
                    } else {
                        assert_eq!(c.name, "run_id");
                        assert_eq!(v.as_i64()?, run_id);
                    }
                }
                // What JSON rounds or makes lossy is stored exactly.
                let body: Option<Vec<u8>> = r.get("body")?;
                assert_eq!(body.as_deref(), o.body.as_deref());
                assert_eq!(r.get::<_, Option<f64>>("ttfb_ms")?, o.ttfb_ms());
                assert_eq!(r.get::<_, f64>("total_ms")?, o.total_ms());
                Ok(())
            })
            .unwrap();
        }
    }

    /// A batch whose keys are partly stored already (a rerun that fetches again), with a key twice,
    /// spread over whole chunks and the rest: every key ends with its latest outcome, once.
    #[test]
    fn keys_already_stored_or_repeated_are_replaced_by_the_latest_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let outcome = |i: usize, status: u16| Outcome {
            status: Some(status),
            attempts: 1,
            ..Outcome::failed(
                format!("k{i:03}"),
                format!("http://127.0.0.1:1/{i}"),
                "GET".into(),
                ErrorKind::Io,
                "x",
            )
        };
        let first: Vec<Outcome> = (0..40).map(|i| outcome(i, 200)).collect();
        store.write(&first).unwrap();
        // 100 rows: 3 whole chunks of 32 and 4 more; keys 0..40 are stored, 7 comes twice.
        let mut second: Vec<Outcome> = (0..99).map(|i| outcome(i, 500)).collect();
        second.push(outcome(7, 404));
        store.write(&second).unwrap();
        drop(store);

        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(String, u16)> = conn
            .prepare("SELECT key, status FROM outcomes ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<(String, u16)> = (0..99)
            .map(|i| (format!("k{i:03}"), if i == 7 { 404 } else { 500 }))
            .collect();
        assert_eq!(rows, want);
    }

    /// Sorting by the prefix first gives the keys' own order: short keys, keys with NUL bytes,
    /// keys sharing their first 16 bytes.
    #[test]
    fn keys_sorted_by_prefix_first_are_in_byte_order() {
        let mut keys: Vec<String> = vec![
            "".into(),
            "a".into(),
            "a\0".into(),
            "a\0\0b".into(),
            "ab".into(),
            "0123456789abcdef".into(),
            "0123456789abcdef0".into(),
            "0123456789abcdef\0".into(),
            "0123456789abcdeg".into(),
            "ü".into(),
            "\u{7f}".into(),
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            keys.push(
                (0..len)
                    .map(|i| char::from(b"0a\0f"[(x >> i) as usize % 4]))
                    .collect(),
            );
        }
        let mut want = keys.clone();
        want.sort();
        keys.sort_by(|a, b| key_prefix(a).cmp(&key_prefix(b)).then_with(|| a.cmp(b)));
        assert_eq!(keys, want);
    }

    #[test]
    fn a_foreign_table_gains_no_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE outcomes (key TEXT PRIMARY KEY, other TEXT)")
            .unwrap();
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            missing_columns(&conn).unwrap().len(),
            OUTCOME_COLUMNS.len() - 1
        );
    }
}
