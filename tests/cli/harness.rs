//! Test harness: a real fanout test server on 127.0.0.1 port 0 (kept alive on its own runtime),
//! a temp dir, the real binary, and helpers to read the SQLite store.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fanout::serve::{ServeConfig, Server, ServerStats};
use std::sync::Arc;

pub struct TestServer {
    pub server: Server,
    // Dropped last: the server's tasks live on this runtime.
    _rt: tokio::runtime::Runtime,
}

/// The runtime a test server lives on, apart from the code under test.
fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl TestServer {
    pub fn start(latency: Duration) -> TestServer {
        let rt = server_runtime();
        let server = rt
            .block_on(Server::start(ServeConfig {
                latency,
                count_paths: true,
                ..ServeConfig::default()
            }))
            .unwrap();
        TestServer { server, _rt: rt }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn stats(&self) -> &Arc<ServerStats> {
        self.server.stats()
    }
}

pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// `fanout` with the working directory set to this dir.
    pub fn fanout(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fanout"));
        c.current_dir(self.dir.path());
        c
    }
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_fanout"));
        c.current_dir(self.dir.path());
        c.timeout(Duration::from_secs(120));
        c
    }
}

/// Declares [`Row`] and reads it by column name: each field is the outcomes column of its name,
/// so a field is one line and the SELECT follows.
macro_rules! row {
    ($(#[$meta:meta])* pub struct $row:ident { $(pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $row {
            $(pub $field: $ty,)*
        }

        impl $row {
            /// The columns read, in field order.
            const COLUMNS: &[&str] = &[$(stringify!($field)),*];

            fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<$row> {
                Ok($row {
                    $($field: r.get(stringify!($field))?,)*
                })
            }
        }
    };
}

row! {
    /// One row of the outcomes table, as the tests look at it.
    #[derive(Debug, Clone)]
    pub struct Row {
        pub key: String,
        pub url: String,
        pub method: String,
        pub status: Option<i64>,
        pub error: Option<String>,
        pub error_detail: Option<String>,
        pub attempts: i64,
        pub final_url: Option<String>,
        pub body: Option<Vec<u8>>,
    }
}

pub fn rows(db: &Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let sql = format!(
        "SELECT {} FROM outcomes ORDER BY started_at, key",
        Row::COLUMNS.join(", ")
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map([], Row::read)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub fn scalar(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Like [`scalar`], but `None` while the file or its tables do not exist yet (a run starting).
pub fn try_scalar(db: &Path, sql: &str) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(sql, [], |r| r.get(0)).ok()
}

pub fn text(db: &Path, sql: &str) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

pub fn integrity_ok(db: &Path) -> bool {
    text(db, "PRAGMA integrity_check") == "ok"
}

/// Sends a signal to a child process by pid with the system's `kill`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Polls `cond` every 20 ms for up to `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

impl TestServer {
    /// A test server speaking TLS with `tls` (see [`self_signed`]): `url()` gives https URLs.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> TestServer {
        let rt = server_runtime();
        let server = rt
            .block_on(Server::start_tls(
                ServeConfig {
                    count_paths: true,
                    ..ServeConfig::default()
                },
                tls,
            ))
            .unwrap();
        TestServer { server, _rt: rt }
    }
}

/// A self-signed certificate for `names` (DNS names or IP addresses): its PEM, and a rustls server
/// configuration that presents it and offers ALPN h2 and http/1.1.
pub fn self_signed(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ck.cert.pem(), Arc::new(config))
}

/// Runs `cmd` to its end and returns its exit code, its stdout, and its peak resident memory in KiB:
/// the largest `VmHWM` read from `/proc/PID/status` every 5 ms while it runs. (`wait4`'s ru_maxrss
/// would count the test process's own memory, inherited at fork, before the exec.)
pub fn run_with_peak_rss(mut cmd: Command) -> (i32, String, u64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        // Read before reaping: once waited for, the process's /proc entry is gone.
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap(), peak)
}

/// A small tmpfs, mounted for the test and unmounted when dropped.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Whether the tests run as root (as CI does): some checks differ (root writes anywhere, mounts).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}
