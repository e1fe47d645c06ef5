//! `reqwest-peer URLS_FILE CONCURRENCY DB [--insecure]`: fetches every URL of the file with at most
//! CONCURRENCY in flight (`buffer_unordered`) and records each outcome (url, status or error, body
//! length) in SQLite from a thread of its own, in transactions of 1,000 rows. Prints
//! "N outcomes, M 200s". The idiom a user writes instead of fanout; a benchmark peer only.

use std::io::BufRead;
use std::sync::mpsc;

use futures::StreamExt;

struct Row {
    url: String,
    status: Option<u16>,
    error: Option<String>,
    bytes: u64,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: reqwest-peer URLS_FILE CONCURRENCY DB [--insecure]");
        std::process::exit(2);
    }
    let file = std::fs::File::open(&args[1]).expect("open the URL file");
    let c: usize = args[2].parse().expect("CONCURRENCY is a number");
    let insecure = args.iter().any(|a| a == "--insecure");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .build()
        .expect("client");

    let (tx, rx) = mpsc::sync_channel::<Row>(4096);
    let db = args[3].clone();
    let writer = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(db).expect("open the store");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS outcomes (url TEXT, status INTEGER, error TEXT, bytes INTEGER);",
        )
        .expect("create the table");
        let (mut n, mut ok) = (0u64, 0u64);
        let mut batch = Vec::with_capacity(1000);
        let mut flush = |batch: &mut Vec<Row>| {
            let t = conn.transaction().expect("begin");
            {
                let mut st = t
                    .prepare_cached("INSERT INTO outcomes VALUES (?1, ?2, ?3, ?4)")
                    .expect("prepare");
                for r in batch.drain(..) {
                    st.execute(rusqlite::params![r.url, r.status, r.error, r.bytes as i64])
                        .expect("insert");
                }
            }
            t.commit().expect("commit");
        };
        for row in rx {
            n += 1;
            ok += u64::from(row.status == Some(200));
            batch.push(row);
            if batch.len() == 1000 {
                flush(&mut batch);
            }
        }
        flush(&mut batch);
        (n, ok)
    });

    let urls = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty());
    futures::stream::iter(urls)
        .map(|url| {
            let client = client.clone();
            async move {
                match client.get(&url).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.bytes().await {
                            Ok(b) => Row { url, status: Some(status), error: None, bytes: b.len() as u64 },
                            Err(e) => Row { url, status: Some(status), error: Some(e.to_string()), bytes: 0 },
                        }
                    }
                    Err(e) => Row { url, status: None, error: Some(e.to_string()), bytes: 0 },
                }
            }
        })
        .buffer_unordered(c)
        .for_each(|row| {
            let tx = tx.clone();
            async move {
                // A full channel blocks this task briefly: the store is the bottleneck then.
                tx.send(row).expect("the store thread ended");
            }
        })
        .await;
    drop(tx);
    let (n, ok) = writer.join().expect("store thread");
    println!("{n} outcomes, {ok} 200s");
}
