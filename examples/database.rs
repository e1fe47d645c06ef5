//! Database reads and writes: requests streamed row by row from an SQLite table, outcomes written
//! to an SQLite store, then queried with SQL.
//!
//! The asyncio code it replaces (with asyncpg; aiosqlite looks the same):
//!
//! ```python
//! conn = await asyncpg.connect(dsn)
//! async with conn.transaction():
//!     async for row in conn.cursor("SELECT id, url FROM requests"):
//!         status = await fetch(session, row["url"])
//!         await conn.execute("INSERT INTO results VALUES ($1, $2)", row["id"], status)
//! ```
//!
//! SQLite is synchronous, so the table is read on a blocking thread (`spawn_blocking`) into a
//! bounded channel, which is the request stream: the table is never loaded whole, and reading
//! waits while the run is busy. Each row's `id` becomes the request's key. Outcomes land in the
//! same database file through `StoreConfig::Sqlite` (table `outcomes`, one row per key, written in
//! batched transactions on the store's own thread; `runs` records the run). Because the store is
//! also the resume journal, running the same fetch again sends nothing: every key is recorded.
//! (PostgreSQL as a source or a store is not built yet.)
//!
//! Run: `cargo run --example database` (starts the built-in test server on 127.0.0.1, port 0;
//! the database lives in a temporary directory).

use std::path::Path;
use std::time::Duration;

use fanout::serve::{ServeConfig, Server};
use fanout::sink::StoreConfig;
use rusqlite::Connection;

/// Rows in the `requests` table.
const ROWS: u32 = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(ServeConfig {
        latency: Duration::from_millis(2),
        ..ServeConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("jobs.db");
    create_requests(&db, &server)?;

    let first = fetch_table(&db).await?;
    println!(
        "first run: {} outcomes in {:.2}s, {} skipped",
        first.total,
        first.elapsed.as_secs_f64(),
        first.skipped
    );
    let again = fetch_table(&db).await?;
    println!(
        "same run again: {} outcomes, {} skipped (already recorded)",
        again.total, again.skipped
    );

    let conn = Connection::open(&db)?;
    let mut stmt =
        conn.prepare("SELECT status, count(*) FROM outcomes GROUP BY status ORDER BY status")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Option<u16>>(0)?, r.get::<_, i64>(1)?))
    })?;
    println!("SELECT status, count(*) FROM outcomes GROUP BY status:");
    for row in rows {
        let (status, n) = row?;
        let status = status.map_or("NULL".to_owned(), |s| s.to_string());
        println!("  {status:>4}  {n}");
    }
    let missing: i64 = conn.query_row(
        "SELECT count(*) FROM requests r LEFT JOIN outcomes o ON o.key = r.id WHERE o.key IS NULL",
        [],
        |r| r.get(0),
    )?;
    println!("rows of `requests` without an outcome: {missing}");
    assert_eq!((first.total, again.total), (u64::from(ROWS), 0));
    assert_eq!(missing, 0);
    Ok(())
}

/// The input table: mostly items, some 404s and some 500s.
fn create_requests(db: &Path, server: &Server) -> rusqlite::Result<()> {
    let mut conn = Connection::open(db)?;
    // WAL before anyone else opens the file: the store writes while the reader still reads.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch("CREATE TABLE requests (id TEXT PRIMARY KEY, url TEXT NOT NULL)")?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO requests (id, url) VALUES (?1, ?2)")?;
        for i in 1..=ROWS {
            let path = match i {
                _ if i % 13 == 0 => "/status/500".to_owned(),
                _ if i % 7 == 0 => "/status/404".to_owned(),
                _ => format!("/item/{i}"),
            };
            insert.execute((format!("req-{i}"), server.url(&path)))?;
        }
    }
    tx.commit()
}

/// Streams the `requests` table into a run that records into the same file.
async fn fetch_table(db: &Path) -> Result<fanout::Summary, Box<dyn std::error::Error>> {
    let (tx, requests) = fanout::source::channel(64);
    let path = db.to_owned();
    let reader = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let conn = Connection::open(&path).map_err(|e| e.to_string())?;
        let mut stmt = conn
            .prepare("SELECT id, url FROM requests ORDER BY rowid")
            .map_err(|e| e.to_string())?;
        let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let id: String = row.get(0).map_err(|e| e.to_string())?;
            let url: String = row.get(1).map_err(|e| e.to_string())?;
            let request = fanout::Request::get(&url)
                .map_err(|e| format!("{id}: {e}"))?
                .with_key(id);
            // Blocks while the channel is full; fails only if the run went away.
            if tx.blocking_send(request).is_err() {
                break;
            }
        }
        Ok(())
    });

    let config = fanout::RunConfig::builder()
        .concurrency(32)
        .retries(0)
        .store(StoreConfig::Sqlite(db.to_owned()))
        .command("examples/database")
        .build()?;
    let summary = fanout::fetch(config, requests).summary().await?;
    reader.await??;
    Ok(summary)
}
