//! The SQLite store's checkpoints, off the writer's thread: a thread of its own with a connection
//! of its own copies the write-ahead log into the database file (and syncs it) while the store
//! thread goes on committing batches. Owns that thread, its connection and the writer's WAL hook;
//! it never writes rows, and the crash story is the WAL's alone (a checkpoint only moves committed
//! pages, whoever runs it).
//!
//! With SQLite's own auto-checkpoint the commit that crosses the threshold copies every page of
//! the log and syncs twice before it returns; once a store's key index outgrows the page cache
//! (a few hundred thousand outcomes), that is about a quarter of the store thread's CPU and all of
//! its waits on `fsync`, and the engine waits behind it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

/// WAL pages after a commit that ask for a checkpoint (16 MiB of 4 KiB pages, the threshold the
/// writer's own auto-checkpoint had).
pub(super) const CHECKPOINT_PAGES: i32 = 4000;

/// WAL pages after a commit at which the writer checkpoints itself, as SQLite's auto-checkpoint
/// did, once the checkpointer's pass in hand is over. A checkpoint that runs beside the writer
/// rarely copies the whole log (the writer has added to it meanwhile), and only a whole one lets
/// the next transaction start the log again from its beginning: without this, the log grew to
/// ~150 MB in a 1M-outcome run; with it, to at most 85 MB (64 MiB and what commits added
/// while the writer waited for the thread's pass).
const BACKSTOP_PAGES: i32 = 4 * CHECKPOINT_PAGES;

/// The checkpoint thread of one store. Dropped before the writer's connection, so that the writer
/// closes last and its close checkpoints and removes the log, as it did alone.
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
    /// Set when the store is dropped: the writer's hook holds a sender too, so the channel alone
    /// does not close before the writer does.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path`, and hooks `writer`'s commits to it:
    /// a commit that leaves `pages` or more pages in the log wakes it. Replaces SQLite's
    /// auto-checkpoint on `writer` (the WAL hook is the same slot). `None` when the thread or its
    /// connection cannot be had: the writer then keeps SQLite's own auto-checkpoint.
    pub(super) fn start(path: &Path, writer: &mut Connection, pages: i32) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).ok()?;
        // One wake-up pending at most: more would only repeat a checkpoint already asked for.
        let (wake, asked) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        // Held for each checkpoint, by the thread or by the writer's backstop.
        let pass = Arc::new(Mutex::new(()));
        let thread = std::thread::Builder::new()
            .name("fanout-checkpoint".into())
            .spawn({
                let (stop, pass) = (stop.clone(), pass.clone());
                move || run(conn, asked, &stop, &pass)
            })
            .ok()?;
        let hook_wake = wake.clone();
        let backstop = pages.saturating_mul(BACKSTOP_PAGES / CHECKPOINT_PAGES);
        let hooked = writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, in_log: i32| {
            if in_log >= backstop {
                // After the thread's pass, with no writer beside it: it copies what is left.
                let _pass = pass.lock().unwrap_or_else(|e| e.into_inner());
                let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
            } else if in_log >= pages {
                ask(&hook_wake);
            }
            Ok(())
        }));
        let checkpointer = Checkpointer {
            wake,
            stop,
            thread: Some(thread),
        };
        // Dropped on failure: the thread ends and the writer keeps its own checkpoints.
        hooked.ok().map(|()| checkpointer)
    }

    /// Asks for a checkpoint now (a pause in outcomes), without waiting for it.
    pub(super) fn ask(&self) {
        ask(&self.wake);
    }
}

fn ask(wake: &SyncSender<()>) {
    // Full: one is already asked for; disconnected: the thread is gone, and the writer's
    // backstop still bounds the log. Neither is an error.
    let _ = wake.try_send(());
}

/// The thread: a passive checkpoint (never waits for readers or blocks the writer) each time it
/// is asked, until the store is dropped.
fn run(conn: Connection, asked: Receiver<()>, stop: &AtomicBool, pass: &Mutex<()>) {
    while asked.recv().is_ok() && !stop.load(Ordering::Acquire) {
        let _pass = pass.lock().unwrap_or_else(|e| e.into_inner());
        // An error (busy: another connection is checkpointing) leaves the pages for the next one.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // The thread ends after the checkpoint in hand (a wake-up already pending serves as
        // this one); joined, so its connection is closed before the writer's.
        self.stop.store(true, Ordering::Release);
        ask(&self.wake);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A WAL database at `path` with a table of padded rows, SQLite's auto-checkpoint off: only a
    /// checkpointer can move its pages into the file.
    fn writer(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        conn
    }

    /// Commits `batches` transactions of 50 rows of 1 KiB each (~13 pages a transaction).
    fn write(conn: &Connection, from: i64, batches: i64) {
        for b in 0..batches {
            conn.execute_batch("BEGIN").unwrap();
            for i in 0..50 {
                conn.execute(
                    "INSERT INTO t (k, v) VALUES (?1, zeroblob(1024))",
                    [from + b * 50 + i],
                )
                .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        }
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn commits_past_the_threshold_are_copied_into_the_file_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut conn = writer(&path);
        let before = file_len(&path);
        let ck = Checkpointer::start(&path, &mut conn, 16).expect("checkpointer");
        // Past the threshold (16 pages), short of the writer's backstop (64): the file grows only
        // if the thread copies the log.
        write(&conn, 0, 2);
        let until = Instant::now() + Duration::from_secs(20);
        while file_len(&path) < before + 50 * 1024 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            file_len(&path) >= before + 50 * 1024,
            "the database file stayed at {} bytes (from {before})",
            file_len(&path)
        );
        // Dropped first, the writer's close is the last one: it removes the log.
        drop(ck);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 100);
        drop(conn);
        assert!(
            !dir.path().join("c.db-wal").exists(),
            "the log was left behind"
        );
    }

    #[test]
    fn the_log_stays_bounded_while_the_writer_commits_without_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut conn = writer(&path);
        let ck = Checkpointer::start(&path, &mut conn, 16).expect("checkpointer");
        // 200 commits of ~13 pages: 2,600 pages in all. The log starts again from its beginning
        // only after a checkpoint has copied all of it, which one beside a busy writer rarely
        // does; the writer's own at the backstop (64 pages) does.
        write(&conn, 0, 200);
        let wal_pages = file_len(&dir.path().join("c.db-wal")) / 4096;
        assert!(wal_pages < 2 * 64, "the log grew to {wal_pages} pages");
        drop(ck);
        drop(conn);
    }
}
