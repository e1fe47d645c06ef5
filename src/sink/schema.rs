//! The outcome columns, in one table ([`OUTCOME_COLUMNS`]): each store's schema, insert and read,
//! and [`Outcome::to_json`], are generated from it, so adding a column is one line here (plus its
//! field on [`Outcome`]). Owns column names, order, logical types and how a value is read from an
//! outcome; knows no SQL dialect beyond each [`Type`]'s mapping, and does no I/O.

use std::time::SystemTime;

use crate::outcome::{Outcome, Rfc3339Millis};

/// A column's logical type. Each store maps it to its own SQL type, so one table serves SQLite
/// now and other databases later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// UTF-8 text.
    Text,
    /// A 64-bit signed integer.
    Integer,
    /// A 64-bit float (durations in milliseconds).
    Real,
    /// Raw bytes.
    Blob,
    /// A UTC instant; RFC 3339 text with milliseconds where the store has no time type.
    Timestamp,
}

impl Type {
    /// The SQLite column type (SQLite has no time type: instants are RFC 3339 text).
    pub fn sqlite_type(self) -> &'static str {
        match self {
            Type::Text | Type::Timestamp => "TEXT",
            Type::Integer => "INTEGER",
            Type::Real => "REAL",
            Type::Blob => "BLOB",
        }
    }

    /// The PostgreSQL column type.
    pub fn postgres_type(self) -> &'static str {
        match self {
            Type::Text => "text",
            Type::Integer => "bigint",
            Type::Real => "double precision",
            Type::Blob => "bytea",
            Type::Timestamp => "timestamptz",
        }
    }
}

/// The schema version this fanout writes, kept in each store's `schema_version` table (one row).
/// A store of an older version (or none: made before the table existed) is brought up to it by
/// adding the nullable columns it lacks; a newer one is refused. Raise it with every change of the
/// stored tables.
pub const SCHEMA_VERSION: i64 = 1;

/// Why a store whose `schema_version` is `found` cannot be used, if it cannot.
pub fn check_version(found: i64) -> Result<(), String> {
    if found > SCHEMA_VERSION {
        Err(format!(
            "written by a newer fanout (schema version {found}; this fanout knows up to \
             {SCHEMA_VERSION}): use that version or a newer one, or another store"
        ))
    } else {
        Ok(())
    }
}

/// One column's value for one outcome, borrowed from it: reading a row allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL, JSON null.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
    /// An instant, kept as a time so that a store with a time type can bind it as one; written
    /// as text with [`Rfc3339Millis`] (stack only) by SQLite and JSON.
    Time(SystemTime),
}

impl Value<'_> {
    /// The JSON form [`Outcome::to_json`] writes: reals rounded to 3 decimals (a microsecond of a
    /// millisecond figure), bytes as text with invalid UTF-8 replaced, instants as RFC 3339.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(n) => n.into(),
            // Not finite (never for durations): null, as serde_json writes such floats.
            Value::Real(x) => ((x * 1000.0).round() / 1000.0).into(),
            Value::Text(s) => s.into(),
            Value::Blob(b) => String::from_utf8_lossy(b).into(),
            Value::Time(t) => Rfc3339Millis::new(t).as_str().into(),
        }
    }
}

/// Where a column's value comes from.
#[derive(Clone, Copy)]
pub enum Source {
    /// Read from the outcome.
    Field(for<'a> fn(&'a Outcome) -> Value<'a>),
    /// The id of the run that records the outcome: a constant of the store, not a field of the
    /// outcome (SQLite writes it into the statement's text rather than binding it per row).
    RunId,
}

/// One column of the `outcomes` table.
#[derive(Clone, Copy)]
pub struct Column {
    /// The column name, also the JSON field name.
    pub name: &'static str,
    /// Its logical type.
    pub ty: Type,
    /// Whether it may be NULL. A store made by an earlier version gains missing nullable columns
    /// when it is opened; a non-nullable column can only be added with the table.
    pub nullable: bool,
    /// Whether it is the primary key (exactly one column is: `key`).
    pub primary_key: bool,
    /// Whether [`Outcome::to_json`] writes it (only columns read from the outcome can be).
    pub json: bool,
    /// Where its value comes from.
    pub source: Source,
}

impl Column {
    /// This column's value in `o`; `None` for [`Source::RunId`], which the store supplies.
    #[inline]
    pub fn value<'a>(&self, o: &'a Outcome) -> Option<Value<'a>> {
        match self.source {
            Source::Field(get) => Some(get(o)),
            Source::RunId => None,
        }
    }

    /// The SQLite type of this column.
    pub fn sqlite_type(&self) -> &'static str {
        self.ty.sqlite_type()
    }

    /// The PostgreSQL type of this column.
    pub fn postgres_type(&self) -> &'static str {
        self.ty.postgres_type()
    }
}

/// A nullable column read from the outcome and written to JSON (most columns are).
const fn field(name: &'static str, ty: Type, get: for<'a> fn(&'a Outcome) -> Value<'a>) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        primary_key: false,
        json: true,
        source: Source::Field(get),
    }
}

/// `column` that may not be NULL.
const fn required(column: Column) -> Column {
    Column {
        nullable: false,
        ..column
    }
}

fn text(s: &Option<String>) -> Value<'_> {
    s.as_deref().map_or(Value::Null, Value::Text)
}

/// Every column of `outcomes`, in table order. Stored data depends on it: rename nothing; add new
/// columns at the end, nullable (existing stores gain them on open). Documented in README.md.
pub const OUTCOME_COLUMNS: &[Column] = &[
    Column {
        primary_key: true,
        ..required(field("key", Type::Text, |o| Value::Text(&o.key)))
    },
    Column {
        name: "run_id",
        ty: Type::Integer,
        nullable: false,
        primary_key: false,
        json: false,
        source: Source::RunId,
    },
    required(field("url", Type::Text, |o| Value::Text(&o.url))),
    required(field("method", Type::Text, |o| Value::Text(&o.method))),
    field("status", Type::Integer, |o| {
        o.status.map_or(Value::Null, |s| Value::Int(s.into()))
    }),
    field("error", Type::Text, |o| {
        o.error.map_or(Value::Null, |k| Value::Text(k.as_str()))
    }),
    field("error_detail", Type::Text, |o| text(&o.error_detail)),
    required(field("attempts", Type::Integer, |o| {
        Value::Int(o.attempts.into())
    })),
    required(field("started_at", Type::Timestamp, |o| {
        Value::Time(o.started_at)
    })),
    field("ttfb_ms", Type::Real, |o| {
        o.ttfb_ms().map_or(Value::Null, Value::Real)
    }),
    required(field("total_ms", Type::Real, |o| Value::Real(o.total_ms()))),
    required(field("bytes", Type::Integer, |o| {
        Value::Int(i64::try_from(o.bytes).unwrap_or(i64::MAX))
    })),
    field("final_url", Type::Text, |o| text(&o.final_url)),
    field("body_sha256", Type::Text, |o| text(&o.body_sha256)),
    field("body", Type::Blob, |o| {
        o.body.as_deref().map_or(Value::Null, Value::Blob)
    }),
    field("body_path", Type::Text, |o| text(&o.body_path)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_primary_key_and_unique_names() {
        let keys: Vec<_> = OUTCOME_COLUMNS.iter().filter(|c| c.primary_key).collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "key");
        assert!(!keys[0].nullable);
        let mut names: Vec<_> = OUTCOME_COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OUTCOME_COLUMNS.len());
    }

    #[test]
    fn json_columns_are_read_from_the_outcome() {
        for c in OUTCOME_COLUMNS.iter().filter(|c| c.json) {
            assert!(matches!(c.source, Source::Field(_)), "{}", c.name);
        }
    }

    #[test]
    fn json_rounds_reals_and_writes_bytes_as_lossy_text() {
        assert_eq!(Value::Real(1.23456).to_json(), serde_json::json!(1.235));
        assert_eq!(
            Value::Blob(b"a\xffb").to_json(),
            serde_json::json!("a\u{fffd}b")
        );
        assert_eq!(Value::Null.to_json(), serde_json::Value::Null);
    }
}
