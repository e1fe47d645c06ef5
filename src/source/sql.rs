//! SQL sources (`--from-sql` on `--source-db`): the rows of a query, read one at a time on a
//! thread of their own into a bounded channel (never loaded whole), as [`SourceItem`]s. Columns
//! map by name onto a [`RequestSpec`], and every row becomes a request through
//! [`RequestSpec::into_request`], or an `invalid-input` outcome named `query:ROW` (1-based).
//! The mapping reads driver-neutral values, so each database only steps its rows: SQLite here,
//! PostgreSQL (a server-side cursor feeding the same channel) in `postgres`. Owns its read-only
//! connection to the source database; never touches the stores or HTTP.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::{OpenError, RequestDefaults, RequestSpec, SourceItem, invalid};
use crate::request::Origin;

mod postgres;

/// The input name of every row: keys are `invalid:query:ROW`, details `query:ROW: reason`.
pub const QUERY_INPUT: &str = "query";

/// Rows read ahead of the run at most.
const ROWS_AHEAD: usize = 256;

/// The columns a query may have, in the order messages list them.
const COLUMNS: [&str; 5] = ["url", "id", "method", "headers", "body"];

/// The database a query runs on.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceDb {
    /// An SQLite file, opened read-only.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL (libpq conventions, see [`crate::pg`]), read
    /// through a server-side cursor in a read-only transaction.
    Postgres(String),
}

impl SourceDb {
    /// `postgres://` and `postgresql://` URLs are PostgreSQL; anything else is an SQLite file.
    pub fn parse(arg: &str) -> SourceDb {
        if crate::pg::PgUrl::is_pg_url(arg) {
            SourceDb::Postgres(arg.to_owned())
        } else {
            SourceDb::Sqlite(arg.into())
        }
    }

    /// The database as messages name it, without a password.
    pub fn name(&self) -> String {
        match self {
            SourceDb::Sqlite(p) => p.display().to_string(),
            // The store's masking: a `password=` parameter too, not only `user:password@`.
            SourceDb::Postgres(u) => crate::pg::mask_secrets(u),
        }
    }
}

impl fmt::Debug for SourceDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password: configurations get printed.
        match self {
            SourceDb::Sqlite(_) => write!(f, "Sqlite({:?})", self.name()),
            SourceDb::Postgres(_) => write!(f, "Postgres({:?})", self.name()),
        }
    }
}

/// A value of a row, as every driver can give it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SqlValue<'a> {
    Null,
    Integer(i64),
    Real(f64),
    /// Text (PostgreSQL: text, varchar, json, jsonb), as bytes: SQLite does not promise UTF-8.
    Text(&'a [u8]),
    /// SQLite blob, PostgreSQL bytea.
    Blob(&'a [u8]),
}

impl<'a> From<ValueRef<'a>> for SqlValue<'a> {
    fn from(v: ValueRef<'a>) -> Self {
        match v {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(f) => SqlValue::Real(f),
            ValueRef::Text(t) => SqlValue::Text(t),
            ValueRef::Blob(b) => SqlValue::Blob(b),
        }
    }
}

impl SqlValue<'_> {
    fn kind(&self) -> &'static str {
        match self {
            SqlValue::Null => "NULL",
            SqlValue::Integer(_) => "an integer",
            SqlValue::Real(_) => "a real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "a blob",
        }
    }

    /// Text (or a blob holding UTF-8) as a string; `None` for NULL.
    fn text(&self, column: &str) -> Result<Option<&str>, String> {
        match self {
            SqlValue::Null => Ok(None),
            SqlValue::Text(b) | SqlValue::Blob(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| format!("{column} is not valid UTF-8")),
            other => Err(format!("{column} must be text, not {}", other.kind())),
        }
    }
}

/// Where each known column is in a query's result; built once from its column names.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    url: usize,
    id: Option<usize>,
    method: Option<usize>,
    headers: Option<usize>,
    body: Option<usize>,
}

impl Columns {
    /// Maps column names (ASCII case ignored, as SQL does); unknown or repeated names, or no
    /// `url`, are an error naming them.
    pub(crate) fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Columns, String> {
        let mut at: [Option<usize>; 5] = [None; 5];
        let mut unknown = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            match COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name)) {
                Some(k) if at[k].is_some() => {
                    return Err(format!("column '{name}' appears more than once"));
                }
                Some(k) => at[k] = Some(i),
                None => unknown.push(format!("'{name}'")),
            }
        }
        if !unknown.is_empty() {
            return Err(format!(
                "unknown column{} {} (columns are url, id, method, headers, body; rename with AS)",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", ")
            ));
        }
        let [url, id, method, headers, body] = at;
        let url = url.ok_or("no 'url' column (columns are url, id, method, headers, body)")?;
        Ok(Columns {
            url,
            id,
            method,
            headers,
            body,
        })
    }

    /// The row's `url` as text, for naming an invalid row.
    fn url_text<'v>(&self, get: &impl Fn(usize) -> SqlValue<'v>) -> String {
        match get(self.url) {
            SqlValue::Text(b) | SqlValue::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        }
    }

    /// The row as a request spec: `url` text; `id` text or a number; `method` text; `headers`
    /// a JSON object of strings; `body` text or a blob, as its bytes. NULL is "not given".
    pub(crate) fn spec<'v>(
        &self,
        get: impl Fn(usize) -> SqlValue<'v>,
    ) -> Result<RequestSpec, String> {
        let url = get(self.url).text("url")?.ok_or("url is NULL")?.to_owned();
        let mut spec = RequestSpec {
            url,
            ..RequestSpec::default()
        };
        if let Some(i) = self.id {
            spec.id = match get(i) {
                SqlValue::Null => None,
                SqlValue::Integer(n) => Some(n.into()),
                SqlValue::Real(f) => Some(
                    serde_json::Number::from_f64(f)
                        .ok_or("id is not a finite number")?
                        .into(),
                ),
                v @ SqlValue::Text(_) => v.text("id")?.map(|s| s.to_owned().into()),
                v => return Err(format!("id must be text or a number, not {}", v.kind())),
            };
        }
        if let Some(i) = self.method {
            spec.method = get(i).text("method")?.map(str::to_owned);
        }
        if let Some(i) = self.headers
            && let Some(json) = get(i).text("headers")?
        {
            spec.headers = serde_json::from_str(json)
                .map_err(|e| format!("invalid headers JSON (an object of strings): {e}"))?;
        }
        if let Some(i) = self.body {
            spec.body_bytes = match get(i) {
                SqlValue::Null => None,
                SqlValue::Text(b) | SqlValue::Blob(b) => Some(Bytes::copy_from_slice(b)),
                SqlValue::Integer(n) => Some(Bytes::from(n.to_string())),
                SqlValue::Real(f) => Some(Bytes::from(f.to_string())),
            };
        }
        Ok(spec)
    }

    /// Row `row` (1-based) as a request, or as the `invalid-input` outcome saying why not.
    fn item<'v>(
        &self,
        get: impl Fn(usize) -> SqlValue<'v>,
        row: u64,
        input: &Arc<str>,
        defaults: &RequestDefaults,
    ) -> SourceItem {
        let origin = Origin {
            input: input.clone(),
            line: row,
        };
        match self
            .spec(&get)
            .and_then(|s| s.into_request(defaults, &origin))
        {
            Ok(r) => SourceItem::Request(Arc::new(r)),
            Err(reason) => {
                SourceItem::Invalid(Box::new(invalid(&origin, &self.url_text(&get), &reason)))
            }
        }
    }
}

/// The rows of a query as a `Stream` of [`SourceItem`]s, at most a few hundred read ahead.
/// Dropping it stops the query (a long sort is interrupted, not waited for).
pub struct SqlRows {
    rx: mpsc::Receiver<SourceItem>,
    interrupt: Option<InterruptHandle>,
    /// The PostgreSQL reader's task: aborting it closes its connection.
    abort: Option<tokio::task::AbortHandle>,
}

impl fmt::Debug for SqlRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlRows").finish_non_exhaustive()
    }
}

impl futures_util::Stream for SqlRows {
    type Item = SourceItem;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<SourceItem>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for SqlRows {
    fn drop(&mut self) {
        if let Some(h) = &self.interrupt {
            h.interrupt();
        }
        if let Some(h) = &self.abort {
            h.abort();
        }
    }
}

/// Runs `query` on `db` and streams its rows. Fails, before any row is handed out, when the
/// database cannot be opened, the query is not a single read-only statement, its columns do not
/// map (unknown ones are named), or its first row cannot be read.
pub async fn open(
    query: &str,
    db: &SourceDb,
    defaults: &RequestDefaults,
) -> Result<SqlRows, OpenError> {
    let fail = |msg: String| OpenError {
        path: db.name(),
        source: std::io::Error::other(msg),
    };
    let (tx, rx) = mpsc::channel(ROWS_AHEAD);
    let path = match db {
        SourceDb::Sqlite(p) => p.clone(),
        SourceDb::Postgres(url) => {
            let abort = postgres::open(url, query, defaults, tx)
                .await
                .map_err(fail)?;
            return Ok(SqlRows {
                rx,
                interrupt: None,
                abort: Some(abort),
            });
        }
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let query = query.to_owned();
    let defaults = defaults.clone();
    std::thread::Builder::new()
        .name("fanout-sql-source".into())
        .spawn(move || sqlite_rows(path, &query, &defaults, ready_tx, tx))
        .map_err(|e| fail(format!("cannot start the query thread: {e}")))?;
    match ready_rx.await {
        Ok(Ok(interrupt)) => Ok(SqlRows {
            rx,
            interrupt: Some(interrupt),
            abort: None,
        }),
        Ok(Err(msg)) => Err(fail(msg)),
        Err(_) => Err(fail("the query thread ended unexpectedly".into())),
    }
}

/// True when the SQLite file at `path` is in WAL mode, where a long read and the store's writes
/// to the same file do not block each other.
pub(crate) fn is_wal(path: &std::path::Path) -> bool {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.pragma_query_value(None, "journal_mode", |r| r.get::<_, String>(0)))
        .is_ok_and(|m| m.eq_ignore_ascii_case("wal"))
}

type Ready = oneshot::Sender<Result<InterruptHandle, String>>;

/// The SQLite side: steps the statement, sending each row's item; ends when the rows do or the
/// receiver goes away.
fn sqlite_rows(
    path: PathBuf,
    query: &str,
    defaults: &RequestDefaults,
    ready: Ready,
    tx: mpsc::Sender<SourceItem>,
) {
    let conn = match Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    // A scan reads each page once: a small page cache (SQLite's default is 2 MiB) keeps the
    // source's memory flat and small.
    let _ = conn.pragma_update(None, "cache_size", -256);
    let mut stmt = match conn.prepare(query) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("--from-sql: {e}")));
            return;
        }
    };
    if !stmt.readonly() {
        let _ = ready.send(Err(
            "--from-sql: the query must only read (a SELECT), not change the database".into(),
        ));
        return;
    }
    let columns = match Columns::from_names(stmt.column_names()) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("--from-sql: {e}")));
            return;
        }
    };
    let input: Arc<str> = QUERY_INPUT.into();
    let mut rows = match stmt.query([]) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!("--from-sql: {e}")));
            return;
        }
    };
    let mut ready = Some(ready);
    let mut row_no = 0u64;
    loop {
        let item = match rows.next() {
            Ok(None) => break,
            Ok(Some(row)) => {
                row_no += 1;
                let get = |i: usize| row.get_ref(i).map_or(SqlValue::Null, SqlValue::from);
                columns.item(get, row_no, &input, defaults)
            }
            Err(e) => {
                // The first row is part of starting: the query cannot run at all.
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(format!("--from-sql: {e}")));
                    return;
                }
                // Later: recorded like a file's read error; the rows end here.
                let origin = Origin {
                    input,
                    line: row_no + 1,
                };
                let _ = tx.blocking_send(SourceItem::Invalid(Box::new(invalid(
                    &origin,
                    "",
                    &format!("read error: {e}"),
                ))));
                return;
            }
        };
        if let Some(ready) = ready.take()
            && ready.send(Ok(conn.get_interrupt_handle())).is_err()
        {
            return;
        }
        if tx.blocking_send(item).is_err() {
            return; // the run has stopped
        }
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(conn.get_interrupt_handle()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_map_by_name_and_unknown_ones_are_named() {
        let c = Columns::from_names(["ID", "url", "body"]).unwrap();
        assert_eq!((c.url, c.id, c.body, c.method), (1, Some(0), Some(2), None));
        let e = Columns::from_names(["url", "priority", "tags"]).unwrap_err();
        assert!(e.contains("'priority', 'tags'"), "{e}");
        let e = Columns::from_names(["id"]).unwrap_err();
        assert!(e.contains("no 'url'"), "{e}");
        let e = Columns::from_names(["url", "URL"]).unwrap_err();
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn values_become_spec_fields() {
        let c = Columns::from_names(COLUMNS).unwrap();
        let row = [
            SqlValue::Text(b"http://h/a"),
            SqlValue::Integer(7),
            SqlValue::Text(b"put"),
            SqlValue::Text(br#"{"X-A": "1"}"#),
            SqlValue::Blob(&[0, 159, 1]),
        ];
        let spec = c.spec(|i| row[i]).unwrap();
        assert_eq!(spec.id, Some(7.into()));
        assert_eq!(spec.headers["X-A"], "1");
        assert_eq!(spec.body_bytes.as_deref(), Some(&[0u8, 159, 1][..]));
        let bad = [
            SqlValue::Integer(1),
            SqlValue::Null,
            SqlValue::Null,
            SqlValue::Null,
            SqlValue::Null,
        ];
        assert!(c.spec(|i| bad[i]).unwrap_err().contains("url must be text"));
        let bad = [
            SqlValue::Text(b"http://h/"),
            SqlValue::Null,
            SqlValue::Null,
            SqlValue::Text(b"[1]"),
            SqlValue::Null,
        ];
        assert!(
            c.spec(|i| bad[i])
                .unwrap_err()
                .contains("invalid headers JSON")
        );
    }

    #[test]
    fn a_password_is_never_named() {
        let db = SourceDb::parse("postgres://u:secret@127.0.0.1:5432/db");
        assert!(!db.name().contains("secret") && !format!("{db:?}").contains("secret"));
        let db = SourceDb::parse("POSTGRESQL://h/db?user=u&password=secret");
        assert!(matches!(db, SourceDb::Postgres(_)) && !db.name().contains("secret"));
        assert_eq!(SourceDb::parse("t.db"), SourceDb::Sqlite("t.db".into()));
    }
}
