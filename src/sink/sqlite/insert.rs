//! The SQLite store's insert of outcome rows, on prepared statements of its own whose text and
//! blobs are bound without a copy (`SQLITE_STATIC`). rusqlite binds every string as
//! `SQLITE_TRANSIENT`, so SQLite copied each row's strings into memory of its own first: about
//! four allocations and 1,500 instructions a row, a tenth of the store thread. Owns only these
//! statements (and the little `unsafe` it takes); the schema, the SQL text and the transaction
//! are the caller's.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use rusqlite::{Connection, ffi};

use crate::outcome::{Outcome, Rfc3339Millis};
use crate::sink::schema::{OUTCOME_COLUMNS, Type, Value};

/// One prepared statement that inserts `rows` outcomes per execution.
pub(super) struct Insert {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    rows: usize,
    /// `started_at` (and any other time column) as text, formatted before a chunk is bound and
    /// not touched again until its execution has ended: the statement reads them in place.
    times: Vec<Rfc3339Millis>,
}

// SAFETY: the statement belongs to the store's connection and moves with it: `SqliteStore` holds
// both and is used by one thread at a time (the store thread), which is what SQLite's
// multi-thread mode (`SQLITE_OPEN_NO_MUTEX`) requires of a connection and its statements.
unsafe impl Send for Insert {}

/// What running a statement found.
pub(super) enum Ran {
    /// Every row was inserted.
    Done,
    /// A constraint stopped the statement (`INSERT OR FAIL`: the rows before the failing one stay
    /// inserted, the transaction stays open); the error, for a statement where that is one.
    Constraint(rusqlite::Error),
}

impl Insert {
    /// Prepares `sql`, which inserts `rows` outcomes with their bound columns in table order.
    /// The statement must be dropped before `conn` is closed (rusqlite will not close a
    /// connection that still has statements).
    pub(super) fn prepare(conn: &Connection, sql: &str, rows: usize) -> rusqlite::Result<Insert> {
        // SAFETY: the handle is only used while `conn` lives (see above), on the same thread.
        let db = unsafe { conn.handle() };
        let db = NonNull::new(db).ok_or(rusqlite::Error::InvalidQuery)?;
        let len = c_int::try_from(sql.len()).map_err(|_| rusqlite::Error::InvalidQuery)?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes; the out pointer is a local.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT as _,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        let stmt = NonNull::new(stmt).ok_or(rusqlite::Error::InvalidQuery)?;
        let times = OUTCOME_COLUMNS
            .iter()
            .filter(|c| c.ty == Type::Timestamp)
            .count();
        // Owned from here: finalized by `Drop` whatever happens next.
        let insert = Insert {
            stmt,
            db,
            rows,
            times: Vec::with_capacity(rows * times),
        };
        // SAFETY: a live statement.
        let params = unsafe { ffi::sqlite3_bind_parameter_count(stmt.as_ptr()) };
        let want = rows * super::COLUMNS;
        if usize::try_from(params).ok() != Some(want) {
            let have = usize::try_from(params).unwrap_or(0);
            return Err(rusqlite::Error::InvalidParameterCount(have, want));
        }
        Ok(insert)
    }

    /// Inserts `rows` (exactly as many as the statement takes) in one execution, inside the
    /// caller's transaction. The bindings point into `rows` and are cleared before returning,
    /// so nothing the statement holds outlives the outcomes.
    pub(super) fn run(&mut self, rows: &[&Outcome]) -> rusqlite::Result<Ran> {
        debug_assert_eq!(rows.len(), self.rows);
        let ran = self.bind_and_step(rows);
        // SAFETY: a statement of this connection; reset and clear never fail in a way that
        // matters here (reset repeats the step's error, which `ran` already has).
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
        ran
    }

    fn bind_and_step(&mut self, rows: &[&Outcome]) -> rusqlite::Result<Ran> {
        // Every time formatted first: `times` must not grow (and move) once its text is bound.
        self.times.clear();
        for o in rows {
            for c in OUTCOME_COLUMNS.iter().filter(|c| c.ty == Type::Timestamp) {
                if let Some(Value::Time(t)) = c.value(o) {
                    self.times.push(Rfc3339Millis::new(t));
                }
            }
        }
        let stmt = self.stmt.as_ptr();
        let mut times = self.times.iter();
        let mut i: c_int = 1;
        for o in rows {
            for c in OUTCOME_COLUMNS {
                let Some(v) = c.value(o) else { continue };
                // SAFETY: `stmt` is live; every pointer bound with SQLITE_STATIC points into
                // `rows` or `self.times`, both unchanged until the step below has ended and the
                // bindings are cleared (`run`); lengths are those of the slices.
                let rc = unsafe {
                    match v {
                        Value::Null => ffi::sqlite3_bind_null(stmt, i),
                        Value::Int(n) => ffi::sqlite3_bind_int64(stmt, i, n),
                        Value::Real(x) => ffi::sqlite3_bind_double(stmt, i, x),
                        Value::Text(s) => bind_text(stmt, i, s),
                        // As rusqlite binds it: an empty blob is a zero-length blob, not NULL.
                        Value::Blob([]) => ffi::sqlite3_bind_zeroblob64(stmt, i, 0),
                        Value::Blob(b) => ffi::sqlite3_bind_blob64(
                            stmt,
                            i,
                            b.as_ptr().cast(),
                            b.len() as u64,
                            ffi::SQLITE_STATIC(),
                        ),
                        Value::Time(_) => match times.next() {
                            Some(t) => bind_text(stmt, i, t.as_str()),
                            None => ffi::SQLITE_MISUSE,
                        },
                    }
                };
                if rc != ffi::SQLITE_OK {
                    return Err(error(self.db, rc));
                }
                i += 1;
            }
        }
        // SAFETY: a live statement with every parameter bound.
        let rc = unsafe { ffi::sqlite3_step(stmt) };
        match rc {
            ffi::SQLITE_DONE => Ok(Ran::Done),
            rc if rc & 0xff == ffi::SQLITE_CONSTRAINT => Ok(Ran::Constraint(error(self.db, rc))),
            rc => Err(error(self.db, rc)),
        }
    }
}

impl Drop for Insert {
    fn drop(&mut self) {
        // SAFETY: finalized once, here; the connection is still open (field order in
        // `SqliteStore`).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// Binds `s` at `i` without a copy.
///
/// # Safety
/// `stmt` must be live, and `s` must stay unchanged until the statement's bindings are cleared
/// or rebound.
unsafe fn bind_text(stmt: *mut ffi::sqlite3_stmt, i: c_int, s: &str) -> c_int {
    // SAFETY: as the caller promises; SQLite reads `s.len()` bytes from the pointer.
    unsafe {
        ffi::sqlite3_bind_text64(
            stmt,
            i,
            s.as_ptr().cast(),
            s.len() as u64,
            ffi::SQLITE_STATIC(),
            ffi::SQLITE_UTF8 as _,
        )
    }
}

/// The connection's error for result code `rc`, as rusqlite would report it.
#[cold]
fn error(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Error {
    // SAFETY: a live connection handle; SQLite returns a NUL-terminated message it owns, copied
    // here at once.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(db.as_ptr());
        (!m.is_null()).then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}
