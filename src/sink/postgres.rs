//! PostgreSQL store (`--db postgres://...`): tables `runs`, `schema_version` and `outcomes` (its
//! DDL generated from [`OUTCOME_COLUMNS`] with PostgreSQL types), created when missing. Natively
//! async: one connection writes (one transaction per batch: the batch is encoded once as binary
//! COPY data, copied into a temporary staging table and merged with `INSERT ... SELECT ... ON
//! CONFLICT (key) DO UPDATE`, so a batch written again after a lost commit doubles nothing), a
//! second one answers resume lookups (`WHERE key = ANY($1)`). A connection that fails is made
//! again with backoff and the operation retried, for up to the store timeout. Owns its SQL and
//! connections; knows nothing of HTTP. Connection settings come from [`crate::pg`].

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use futures_util::future::BoxFuture;
use tokio_postgres::types::{IsNull, ToSql, Type as PgType, to_sql_checked};
use tokio_postgres::{Client, Statement};

use super::schema::{OUTCOME_COLUMNS, SCHEMA_VERSION, Source, Value, check_version};
use super::{Batch, Journal, Opened, Prior, RunInfo, Sink, SinkError, SinkErrorKind};
use crate::outcome::Outcome;
use crate::pg::{
    Failure, PgUrl, Reconnect, Settings, connect, describe, mask_secrets, with_retries,
};
use crate::stats::Summary;

/// The `runs`, `schema_version` and `run_hosts` tables, created when missing (the SQLite store's,
/// in PostgreSQL types).
const RUNS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id          bigint PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    command     text NOT NULL,
    status      text NOT NULL,
    mode        text NOT NULL DEFAULT 'resume',
    skipped     bigint NOT NULL DEFAULT 0,
    outcomes    bigint NOT NULL DEFAULT 0,
    responses   bigint NOT NULL DEFAULT 0,
    errors      bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL);
CREATE TABLE IF NOT EXISTS run_hosts (
    run_id      bigint NOT NULL,
    host        text NOT NULL,
    attempts    bigint NOT NULL,
    final_limit bigint NOT NULL,
    overloads   bigint NOT NULL,
    PRIMARY KEY (run_id, host)
);
";

/// Serializes fanouts creating or migrating the same database's tables (CREATE TABLE IF NOT
/// EXISTS races otherwise). An arbitrary constant ("fanout" in ASCII).
pub(crate) const SCHEMA_LOCK: i64 = 0x66616e6f7574;

/// The whole schema, created when missing.
pub(crate) fn schema() -> String {
    let columns: Vec<String> = OUTCOME_COLUMNS.iter().map(column_def).collect();
    format!(
        "{RUNS_SCHEMA}CREATE TABLE IF NOT EXISTS outcomes (\n    {}\n);\n",
        columns.join(",\n    ")
    )
}

fn column_def(c: &super::schema::Column) -> String {
    format!(
        "{:<12} {}{}{}",
        c.name,
        c.postgres_type(),
        if c.primary_key { " PRIMARY KEY" } else { "" },
        if c.nullable { "" } else { " NOT NULL" }
    )
}

pub(crate) fn column_list() -> String {
    let names: Vec<&str> = OUTCOME_COLUMNS.iter().map(|c| c.name).collect();
    names.join(", ")
}

/// The wire type of each column, in table order (what the binary COPY data encodes).
pub(crate) fn wire_types() -> Vec<PgType> {
    use super::schema::Type;
    OUTCOME_COLUMNS
        .iter()
        .map(|c| match c.ty {
            Type::Text => PgType::TEXT,
            Type::Integer => PgType::INT8,
            Type::Real => PgType::FLOAT8,
            Type::Blob => PgType::BYTEA,
            Type::Timestamp => PgType::TIMESTAMPTZ,
        })
        .collect()
}

/// A column value as a PostgreSQL parameter or COPY field.
#[derive(Debug, Clone, Copy)]
struct PgValue<'a>(Value<'a>);

impl ToSql for PgValue<'_> {
    fn to_sql(
        &self,
        ty: &PgType,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => n.to_sql(ty, out),
            Value::Real(x) => x.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
            Value::Time(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(_: &PgType) -> bool {
        true
    }

    to_sql_checked!();
}

/// `batch` as binary COPY data for run `run_id`: in key order, and of several outcomes for one
/// key only the last (one statement may not update a row twice). Encoded once, sent by every
/// attempt.
pub(crate) fn encode_copy(
    batch: &[Outcome],
    run_id: i64,
    types: &[PgType],
) -> Result<Bytes, SinkError> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    // Stable: of equal keys the later stays later.
    order.sort_by(|&a, &b| batch[a].key.cmp(&batch[b].key));
    let mut buf = BytesMut::with_capacity(64 + batch.len() * 256);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension
    for (i, &row) in order.iter().enumerate() {
        if order
            .get(i + 1)
            .is_some_and(|&next| batch[next].key == batch[row].key)
        {
            continue;
        }
        let o = &batch[row];
        buf.put_i16(OUTCOME_COLUMNS.len() as i16);
        for (c, ty) in OUTCOME_COLUMNS.iter().zip(types) {
            let v = PgValue(match c.source {
                Source::Field(get) => get(o),
                Source::RunId => Value::Int(run_id),
            });
            let at = buf.len();
            buf.put_i32(0);
            let null = v
                .to_sql(ty, &mut buf)
                .map_err(|e| SinkError::new("?", SinkErrorKind::Io, format!("{}: {e}", c.name)))?;
            let len = match null {
                IsNull::Yes => -1,
                IsNull::No => (buf.len() - at - 4) as i32,
            };
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    buf.put_i16(-1);
    Ok(buf.freeze())
}

/// A connection's statements, prepared on it.
#[derive(Clone)]
struct Live {
    client: Arc<Client>,
    copy: Option<Statement>,
    merge: Option<Statement>,
    lookup: Option<Statement>,
}

/// Which statements a connection prepares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// One connection, made again when it fails.
struct Conn {
    target: String,
    settings: Arc<Settings>,
    role: Role,
    timeout: Duration,
    live: Option<Live>,
}

impl Conn {
    /// The live connection, connecting (and preparing) first if there is none.
    async fn live(&mut self) -> Result<Live, Failure> {
        if let Some(l) = &self.live
            && !l.client.is_closed()
        {
            return Ok(l.clone());
        }
        self.live = None;
        let client = connect(&self.settings).await?;
        let mut live = Live {
            client: Arc::new(client),
            copy: None,
            merge: None,
            lookup: None,
        };
        match self.role {
            Role::Writer => {
                // Per connection; emptied by every commit, so a failed batch leaves nothing.
                live.client
                    .batch_execute(
                        "CREATE TEMP TABLE IF NOT EXISTS fanout_stage (LIKE outcomes) \
                         ON COMMIT DELETE ROWS",
                    )
                    .await?;
                let cols = column_list();
                live.copy = Some(
                    live.client
                        .prepare(&format!(
                            "COPY fanout_stage ({cols}) FROM STDIN (FORMAT binary)"
                        ))
                        .await?,
                );
                let set: Vec<String> = OUTCOME_COLUMNS
                    .iter()
                    .filter(|c| !c.primary_key)
                    .map(|c| format!("{0} = EXCLUDED.{0}", c.name))
                    .collect();
                live.merge = Some(
                    live.client
                        .prepare(&format!(
                            "INSERT INTO outcomes ({cols}) SELECT {cols} FROM fanout_stage \
                             ON CONFLICT (key) DO UPDATE SET {}",
                            set.join(", ")
                        ))
                        .await?,
                );
            }
            Role::Reader => {
                live.lookup = Some(
                    live.client
                        .prepare(
                            "SELECT key, run_id, status, error FROM outcomes WHERE key = ANY($1)",
                        )
                        .await?,
                );
            }
        }
        self.live = Some(live.clone());
        Ok(live)
    }

    /// Runs `op` on the live connection, connecting again with backoff when it fails, for up to
    /// the store timeout ([`with_retries`]).
    async fn retry<T, F, Fut>(&mut self, what: &str, op: F) -> Result<T, SinkError>
    where
        F: FnMut(Live) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let timeout = self.timeout;
        with_retries(self, timeout, what, op)
            .await
            .map_err(|m| SinkError::new(&self.target, SinkErrorKind::Io, m))
    }
}

impl Reconnect for Conn {
    type Live = Live;

    fn live(&mut self) -> impl Future<Output = Result<Live, Failure>> + Send {
        Conn::live(self)
    }

    fn reset(&mut self) {
        self.live = None;
    }
}

/// Opens the PostgreSQL store at `url`: connects (once: a database that cannot be reached at the
/// start is an error at once), creates or migrates the tables, and opens the journal's connection.
pub(crate) async fn open(url: &PgUrl, timeout: Duration) -> Result<Opened, SinkError> {
    let target = url.masked().to_owned();
    let open_err = |m: String| SinkError::new(&target, SinkErrorKind::Open, m);
    let settings = Arc::new(url.settings().map_err(|e| {
        // The settings' error already names the URL.
        SinkError::new(
            &target,
            SinkErrorKind::Open,
            e.replacen(&format!("{target}: "), "", 1),
        )
    })?);
    let client = connect(&settings)
        .await
        .map_err(|e| open_err(e.to_string()))?;
    let next_run_id = prepare_schema(&client, &target).await?;
    let others: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM outcomes) \
             OR EXISTS (SELECT 1 FROM runs WHERE status = 'running')",
            &[],
        )
        .await
        .map_err(|e| open_err(describe(&e)))?
        .get(0);
    drop(client);
    let conn = |role| Conn {
        target: target.clone(),
        settings: settings.clone(),
        role,
        timeout,
        live: None,
    };
    let mut writer = conn(Role::Writer);
    // Fail at open, not at the first batch, if the staging table cannot be made.
    writer.live().await.map_err(|f| match f {
        Failure::Transient(m) | Failure::Permanent(m) => open_err(m),
    })?;
    Ok(Opened {
        sink: Box::new(PgSink {
            target: target.clone(),
            conn: writer,
            types: wire_types(),
            next_run_id,
            run_id: 0,
            begun: false,
            ended: false,
        }),
        journal: Some(Box::new(PgJournal {
            conn: conn(Role::Reader),
            others,
        })),
    })
}

/// Creates what is missing, checks the schema version and migrates an older store; returns the
/// next run id.
pub(crate) async fn prepare_schema(client: &Client, target: &str) -> Result<i64, SinkError> {
    let err = |e: tokio_postgres::Error| SinkError::new(target, SinkErrorKind::Open, describe(&e));
    client.batch_execute("BEGIN").await.map_err(err)?;
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(err)?;
    client.batch_execute(&schema()).await.map_err(err)?;
    let version: Option<i64> = client
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(err)?
        .get(0);
    if let Some(v) = version {
        check_version(v).map_err(|m| SinkError::new(target, SinkErrorKind::Open, m))?;
    }
    let have: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'outcomes'",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<_> = OUTCOME_COLUMNS
        .iter()
        .filter(|c| !have.iter().any(|h| h == c.name))
        .collect();
    if let Some(c) = missing.iter().find(|c| !c.nullable) {
        return Err(SinkError::new(
            target,
            SinkErrorKind::NotAStore,
            format!(
                "not a fanout store (table outcomes has no column {})",
                c.name
            ),
        ));
    }
    for c in missing {
        client
            .batch_execute(&format!(
                "ALTER TABLE outcomes ADD COLUMN {}",
                column_def(c)
            ))
            .await
            .map_err(err)?;
    }
    client
        .execute(
            "INSERT INTO schema_version (version) SELECT $1 \
             WHERE NOT EXISTS (SELECT 1 FROM schema_version)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(err)?;
    client
        .execute(
            "UPDATE schema_version SET version = $1 WHERE version < $1",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(err)?;
    let next: i64 = client
        .query_one("SELECT coalesce(max(id), 0) + 1 FROM runs", &[])
        .await
        .map_err(err)?
        .get(0);
    client.batch_execute("COMMIT").await.map_err(err)?;
    Ok(next)
}

/// Outcomes recorded in the PostgreSQL store at `url`; `Ok(None)` when it has no `outcomes` table.
pub(crate) async fn count_outcomes(url: &PgUrl) -> Result<Option<u64>, SinkError> {
    let target = url.masked();
    let io = |m: String| SinkError::new(target, SinkErrorKind::Io, m);
    let settings = url.settings().map_err(io)?;
    let client = connect(&settings).await.map_err(|e| io(e.to_string()))?;
    let row = client
        .query_one("SELECT to_regclass('outcomes') IS NOT NULL", &[])
        .await
        .map_err(|e| io(describe(&e)))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM outcomes", &[])
        .await
        .map_err(|e| io(describe(&e)))?
        .get(0);
    Ok(Some(n as u64))
}

/// The PostgreSQL sink.
struct PgSink {
    target: String,
    conn: Conn,
    types: Vec<PgType>,
    next_run_id: i64,
    run_id: i64,
    begun: bool,
    ended: bool,
}

impl Sink for PgSink {
    fn target(&self) -> &str {
        &self.target
    }

    fn next_run_id(&self) -> i64 {
        self.next_run_id
    }

    fn begin_run<'a>(&'a mut self, run: &'a RunInfo) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.run_id = run.id;
            let mode = if run.fresh { "fresh" } else { "resume" };
            let command = mask_secrets(&run.command);
            // Written again after a lost commit: the same row.
            self.conn
                .retry("begin the run", |live| {
                    let command = command.clone();
                    async move {
                        live.client
                            .execute(
                                "INSERT INTO runs (id, started_at, command, status, mode) \
                                 VALUES ($1, $2, $3, 'running', $4) ON CONFLICT (id) DO UPDATE \
                                 SET started_at = EXCLUDED.started_at, command = EXCLUDED.command, \
                                 status = 'running', mode = EXCLUDED.mode",
                                &[&run.id, &run.started_at, &command, &mode],
                            )
                            .await
                    }
                })
                .await?;
            self.begun = true;
            Ok(())
        })
    }

    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let data = encode_copy(&batch, self.run_id, &self.types)
                .map_err(|e| SinkError::new(&self.target, e.kind(), e.to_string()))?;
            // Released before the write, so the recorder can reuse the batch's vector.
            drop(batch);
            self.conn
                .retry("write a batch", |live| {
                    let data = data.clone();
                    async move {
                        let c = &live.client;
                        c.batch_execute("BEGIN").await?;
                        let copy = live.copy.as_ref().expect("a writer prepares COPY");
                        let sink = c.copy_in::<_, Bytes>(copy).await?;
                        let mut sink = std::pin::pin!(sink);
                        sink.send(data).await?;
                        sink.as_mut().finish().await?;
                        let merge = live.merge.as_ref().expect("a writer prepares the merge");
                        c.execute(merge, &[]).await?;
                        c.batch_execute("COMMIT").await
                    }
                })
                .await
        })
    }

    fn end_run<'a>(&'a mut self, summary: &'a Summary) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.ended = true;
            let run_id = self.run_id;
            let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let hosts: Vec<&str> = summary.hosts.iter().map(|h| h.host.as_str()).collect();
            let attempts: Vec<i64> = summary.hosts.iter().map(|h| int(h.attempts)).collect();
            let limits: Vec<i64> = summary.hosts.iter().map(|h| int(h.limit as u64)).collect();
            let overloads: Vec<i64> = summary.hosts.iter().map(|h| int(h.overloads)).collect();
            let finished = SystemTime::now();
            // The run's row and its hosts in one transaction: a report never sees one without the
            // other. Written again after a lost commit: the same rows.
            self.conn
                .retry("end the run", |live| {
                    let (hosts, attempts, limits, overloads) = (&hosts, &attempts, &limits, &overloads);
                    async move {
                        let c = &live.client;
                        c.batch_execute("BEGIN").await?;
                        c.execute(
                            "UPDATE runs SET finished_at = $1, status = $2, outcomes = $3, \
                             responses = $4, errors = $5, skipped = $6 WHERE id = $7",
                            &[
                                &finished,
                                &summary.end.as_str(),
                                &(summary.total as i64),
                                &(summary.responses() as i64),
                                &(summary.errors() as i64),
                                &(summary.skipped as i64),
                                &run_id,
                            ],
                        )
                        .await?;
                        c.execute(
                            "INSERT INTO run_hosts (run_id, host, attempts, final_limit, overloads) \
                             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], \
                             $5::bigint[]) ON CONFLICT (run_id, host) DO UPDATE SET \
                             attempts = EXCLUDED.attempts, final_limit = EXCLUDED.final_limit, \
                             overloads = EXCLUDED.overloads",
                            &[&run_id, hosts, attempts, limits, overloads],
                        )
                        .await?;
                        c.batch_execute("COMMIT").await
                    }
                })
                .await?;
            Ok(())
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut this = self;
            this.mark_interrupted().await;
        })
    }
}

impl PgSink {
    /// A run begun and never ended: say so in `runs`, best effort (one attempt, no retries).
    async fn mark_interrupted(&mut self) {
        if !self.begun || self.ended {
            return;
        }
        self.ended = true;
        if let Some(live) = &self.conn.live {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                live.client.execute(
                    "UPDATE runs SET finished_at = now(), status = 'interrupted' WHERE id = $1",
                    &[&self.run_id],
                ),
            )
            .await;
        }
    }
}

impl Drop for PgSink {
    /// Dropped without `end_run` (a run's future dropped): the run is marked interrupted from a
    /// task of its own, if a runtime is there to run it.
    fn drop(&mut self) {
        if !self.begun || self.ended {
            return;
        }
        if let (Some(live), Ok(rt)) = (self.conn.live.take(), tokio::runtime::Handle::try_current())
        {
            let id = self.run_id;
            rt.spawn(async move {
                let _ = live
                    .client
                    .execute(
                        "UPDATE runs SET finished_at = now(), status = 'interrupted' WHERE id = $1",
                        &[&id],
                    )
                    .await;
            });
        }
    }
}

/// Resume lookups on a connection of their own.
struct PgJournal {
    conn: Conn,
    others: bool,
}

impl Journal for PgJournal {
    fn others_may_have_recorded(&self) -> bool {
        self.others
    }

    fn lookup(
        &mut self,
        keys: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<Prior>>, SinkError>> {
        Box::pin(async move {
            let keys = Arc::new(keys);
            let rows = self
                .conn
                .retry("look up keys", |live| {
                    let keys = keys.clone();
                    async move {
                        let stmt = live.lookup.as_ref().expect("a reader prepares the lookup");
                        live.client.query(stmt, &[&*keys]).await
                    }
                })
                .await?;
            let mut found: HashMap<String, Prior> = HashMap::with_capacity(rows.len());
            for r in rows {
                let status: Option<i64> = r.get(2);
                found.insert(
                    r.get(0),
                    Prior {
                        run_id: r.get(1),
                        status: status.and_then(|s| u16::try_from(s).ok()),
                        error: r.get(3),
                    },
                );
            }
            Ok(keys.iter().map(|k| found.remove(k)).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_lists_every_column_in_postgres_types() {
        let ddl = schema();
        for c in OUTCOME_COLUMNS {
            assert!(ddl.contains(&column_def(c)), "{}", c.name);
        }
        assert!(ddl.contains("started_at   timestamptz NOT NULL"), "{ddl}");
        assert!(ddl.contains("body         bytea"), "{ddl}");
        assert!(
            ddl.contains("total_ms     double precision NOT NULL"),
            "{ddl}"
        );
        assert!(
            ddl.contains("key          text PRIMARY KEY NOT NULL"),
            "{ddl}"
        );
    }

    #[test]
    fn copy_data_keeps_the_last_outcome_of_a_key_in_key_order() {
        let o = |key: &str, status| {
            let mut o = Outcome::failed(
                key.into(),
                "http://h/".into(),
                "GET".into(),
                crate::outcome::ErrorKind::InvalidInput,
                "x",
            );
            o.status = Some(status);
            o
        };
        let batch = vec![o("b", 1), o("a", 2), o("b", 3)];
        let data = encode_copy(&batch, 7, &wire_types()).unwrap();
        // Header (19 bytes), then rows of 16 fields each.
        assert_eq!(&data[..11], b"PGCOPY\n\xff\r\n\0");
        let mut rows = 0;
        let mut at = 19;
        let mut keys = Vec::new();
        loop {
            let n = i16::from_be_bytes([data[at], data[at + 1]]);
            at += 2;
            if n == -1 {
                break;
            }
            assert_eq!(n as usize, OUTCOME_COLUMNS.len());
            rows += 1;
            for f in 0..n {
                let len = i32::from_be_bytes(data[at..at + 4].try_into().unwrap());
                at += 4;
                if len > 0 {
                    if f == 0 {
                        keys.push(String::from_utf8(data[at..at + len as usize].to_vec()).unwrap());
                    }
                    if OUTCOME_COLUMNS[f as usize].name == "status" {
                        let s = i64::from_be_bytes(data[at..at + 8].try_into().unwrap());
                        assert_eq!(s, if keys.last().unwrap() == "a" { 2 } else { 3 });
                    }
                    at += len as usize;
                }
            }
        }
        assert_eq!(at, data.len());
        assert_eq!(rows, 2);
        assert_eq!(keys, ["a", "b"]);
    }
}
