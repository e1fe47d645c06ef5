//! The PostgreSQL side of SQL sources: connects with the store's settings code ([`crate::pg`]),
//! opens a read-only transaction, declares a server-side cursor for the query and fetches it
//! [`FETCH_ROWS`] at a time into the source's bounded channel, each row mapped by the parent's
//! [`Columns`]. Values are read in the binary format by their column's type, which is checked
//! at the start. Owns its one connection; never touches the stores or HTTP.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::{Columns, QUERY_INPUT, SqlValue};
use crate::pg::{PgUrl, connect, describe};
use crate::request::Origin;
use crate::source::{RequestDefaults, SourceItem, invalid};

/// Rows per `FETCH`: one batch in memory at a time, next to the channel's few hundred items.
const FETCH_ROWS: usize = 1000;

/// How a column's values arrive (binary format), by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// text, varchar, char, name, json, and literals of no type: the UTF-8 text itself.
    Text,
    /// jsonb: a version byte, then the text.
    Jsonb,
    /// int2, int4, int8: big-endian.
    Int,
    /// float4, float8: big-endian IEEE 754.
    Float,
    /// bytea: the bytes.
    Bytea,
}

fn wire(ty: &Type) -> Option<Wire> {
    Some(match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            Wire::Text
        }
        Type::JSONB => Wire::Jsonb,
        Type::INT2 | Type::INT4 | Type::INT8 => Wire::Int,
        Type::FLOAT4 | Type::FLOAT8 => Wire::Float,
        Type::BYTEA => Wire::Bytea,
        _ => return None,
    })
}

/// The types each column may have, as messages say them.
fn allowed(column: &str) -> (&'static [Wire], &'static str) {
    match column {
        "id" => (&[Wire::Text, Wire::Int, Wire::Float], "text or an integer"),
        "headers" => (&[Wire::Text, Wire::Jsonb], "json, jsonb or text"),
        "body" => (&[Wire::Text, Wire::Jsonb, Wire::Bytea], "text or bytea"),
        _ => (&[Wire::Text], "text"),
    }
}

/// How to read each result column, or an error naming the first column of a type it cannot
/// have (with the cast that fixes it).
fn wires(columns: &Columns, types: &[Type]) -> Result<Vec<Wire>, String> {
    let named = [
        ("url", Some(columns.url)),
        ("id", columns.id),
        ("method", columns.method),
        ("headers", columns.headers),
        ("body", columns.body),
    ];
    let mut out = vec![Wire::Text; types.len()];
    for (name, at) in named {
        let Some(i) = at else { continue };
        let ty = &types[i];
        let (ok, say) = allowed(name);
        match wire(ty) {
            Some(w) if ok.contains(&w) => out[i] = w,
            _ => {
                return Err(format!(
                    "column '{name}' is of type {ty}, not {say} (cast it, e.g. {name}::text)"
                ));
            }
        }
    }
    Ok(out)
}

/// A value's bytes as the server sent them; [`value`] reads them by the column's [`Wire`].
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Column `i` of `row` as a driver-neutral value. A value the server sent in a shape its type
/// does not have (it never does) reads as NULL rather than failing the run.
fn value<'v>(row: &'v Row, i: usize, wire: Wire) -> SqlValue<'v> {
    let Ok(Some(Raw(b))) = row.try_get::<_, Option<Raw>>(i) else {
        return SqlValue::Null;
    };
    match wire {
        Wire::Text => SqlValue::Text(b),
        Wire::Jsonb => match b.split_first() {
            Some((1, json)) => SqlValue::Text(json),
            _ => SqlValue::Null,
        },
        Wire::Bytea => SqlValue::Blob(b),
        Wire::Int => match b.len() {
            2 => SqlValue::Integer(i16::from_be_bytes([b[0], b[1]]).into()),
            4 => SqlValue::Integer(i32::from_be_bytes(b.try_into().unwrap_or_default()).into()),
            8 => SqlValue::Integer(i64::from_be_bytes(b.try_into().unwrap_or_default())),
            _ => SqlValue::Null,
        },
        Wire::Float => match b.len() {
            4 => SqlValue::Real(f32::from_be_bytes(b.try_into().unwrap_or_default()).into()),
            8 => SqlValue::Real(f64::from_be_bytes(b.try_into().unwrap_or_default())),
            _ => SqlValue::Null,
        },
    }
}

/// Connects to `url`, checks the query's columns and their types, declares its cursor and
/// fetches the first rows (so a query that cannot run fails here), then streams every row into
/// `tx` on a task of its own, whose handle is returned. Errors never hold the password.
pub(super) async fn open(
    url: &str,
    query: &str,
    defaults: &RequestDefaults,
    tx: mpsc::Sender<SourceItem>,
) -> Result<AbortHandle, String> {
    let url = PgUrl::parse(url)?;
    // The settings' error names the URL, which the caller names already.
    let settings = url
        .settings()
        .map_err(|e| e.replacen(&format!("{}: ", url.masked()), "", 1))?;
    let client = connect(&settings).await.map_err(|e| e.to_string())?;
    let sql_err = |e: tokio_postgres::Error| format!("--from-sql: {}", describe(&e));
    // Read-only: the query cannot change the team's database, whatever it says.
    client
        .batch_execute("BEGIN TRANSACTION READ ONLY")
        .await
        .map_err(|e| describe(&e))?;
    let stmt = client.prepare(query).await.map_err(sql_err)?;
    let columns = Columns::from_names(stmt.columns().iter().map(|c| c.name()))
        .map_err(|e| format!("--from-sql: {e}"))?;
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let wires = wires(&columns, &types).map_err(|e| format!("--from-sql: {e}"))?;
    drop(stmt);
    if let Err(e) = client
        .batch_execute(&format!("DECLARE c NO SCROLL CURSOR FOR {query}"))
        .await
    {
        // The query prepared, so a syntax error here is its kind: only SELECT and VALUES
        // make a cursor.
        let syntax = e
            .as_db_error()
            .is_some_and(|d| d.code() == &tokio_postgres::error::SqlState::SYNTAX_ERROR);
        return Err(if syntax {
            "--from-sql: the query must only read (a SELECT), not change the database".into()
        } else {
            sql_err(e)
        });
    }
    let fetch = client
        .prepare(&format!("FETCH {FETCH_ROWS} FROM c"))
        .await
        .map_err(sql_err)?;
    let first = client.query(&fetch, &[]).await.map_err(sql_err)?;
    let reader = Reader {
        client,
        fetch,
        columns,
        wires,
        defaults: defaults.clone(),
    };
    Ok(tokio::spawn(reader.run(first, tx)).abort_handle())
}

/// The cursor's reading side, after the start.
struct Reader {
    client: Client,
    fetch: Statement,
    columns: Columns,
    wires: Vec<Wire>,
    defaults: RequestDefaults,
}

impl Reader {
    /// Sends each row's item, fetching the next batch when one is done; ends when the rows do,
    /// a fetch fails (recorded as the next row's read error, as a file's), or the receiver goes.
    async fn run(self, mut rows: Vec<Row>, tx: mpsc::Sender<SourceItem>) {
        let input: Arc<str> = QUERY_INPUT.into();
        let mut row_no = 0u64;
        loop {
            let last = rows.len() < FETCH_ROWS;
            for row in rows.drain(..) {
                row_no += 1;
                let get = |i: usize| value(&row, i, self.wires[i]);
                let item = self.columns.item(get, row_no, &input, &self.defaults);
                if tx.send(item).await.is_err() {
                    return; // the run has stopped
                }
            }
            if last {
                break;
            }
            rows = match self.client.query(&self.fetch, &[]).await {
                Ok(r) => r,
                Err(e) => {
                    let origin = Origin {
                        input,
                        line: row_no + 1,
                    };
                    let reason = format!("read error: {}", describe(&e));
                    let item = invalid(&origin, "", &reason);
                    let _ = tx.send(SourceItem::Invalid(Box::new(item))).await;
                    return;
                }
            };
        }
        // Read-only: ending the transaction only frees the cursor sooner.
        let _ = self.client.batch_execute("COMMIT").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_are_checked_by_column() {
        let c = Columns::from_names(["url", "id", "headers", "body"]).unwrap();
        let w = wires(&c, &[Type::VARCHAR, Type::INT8, Type::JSONB, Type::BYTEA]).unwrap();
        assert_eq!(w, [Wire::Text, Wire::Int, Wire::Jsonb, Wire::Bytea]);
        let e = wires(&c, &[Type::TEXT, Type::UUID, Type::JSON, Type::TEXT]).unwrap_err();
        assert!(
            e.contains("'id' is of type uuid") && e.contains("id::text"),
            "{e}"
        );
        let e = wires(&c, &[Type::BYTEA, Type::TEXT, Type::JSON, Type::TEXT]).unwrap_err();
        assert!(e.contains("'url' is of type bytea"), "{e}");
    }
}
