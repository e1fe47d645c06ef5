//! A private PostgreSQL server for the tests: `initdb` into a temporary directory and `postgres`
//! on a free 127.0.0.1 port, run as `nobody` when the tests run as root (the server refuses root).
//! [`PgServer::shared`] starts one per test binary on first use; tests that stop the server start
//! their own with [`PgServer::start`]. The server runs under a shell that kills it when its stdin
//! (a pipe this process holds) closes, so it dies with the test binary. A test that needs
//! PostgreSQL fails, with the reason, when no server can be started.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::harness::{free_port, is_root};

/// The role every test connects as without a password (trust), and one that needs its password.
pub const SUPERUSER: &str = "fanout";
pub const PW_USER: &str = "pwuser";

pub struct PgServer {
    pub port: u16,
    bindir: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    root: bool,
    server: Mutex<Option<Child>>,
    _dir: tempfile::TempDir,
}

/// Where the server binaries are: `FANOUT_PG_BINDIR`, `pg_config --bindir`, or the newest
/// `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(d) = std::env::var("FANOUT_PG_BINDIR") {
        return PathBuf::from(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return d;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| has(d));
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, postgres) were not found: install the \
             'postgresql' package (scripts/test.sh does) or set FANOUT_PG_BINDIR"
        )
    })
}

impl PgServer {
    /// The server shared by the whole test binary, started on first use.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    /// A server of its own (for tests that stop it).
    pub fn start() -> PgServer {
        let bindir = bindir();
        let dir = tempfile::Builder::new()
            .prefix("fanout-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).unwrap();
        let root = is_root();
        if root {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot chown the PostgreSQL directory to nobody");
        }
        let server = PgServer {
            port: free_port(),
            bindir,
            data,
            sock,
            root,
            server: Mutex::new(None),
            _dir: dir,
        };
        let out = server
            .as_server_user(&server.bindir.join("initdb"))
            .arg("-D")
            .arg(&server.data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The password role needs its password over TCP; everyone else is trusted.
        let hba = format!(
            "local all all trust\nhost all {PW_USER} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n"
        );
        std::fs::write(server.data.join("pg_hba.conf"), hba).unwrap();
        server.run();
        server
    }

    /// A command that runs as the server's user (`nobody` when the tests run as root).
    fn as_server_user(&self, program: &Path) -> Command {
        if self.root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Starts `postgres` on the data directory and waits until it answers.
    pub fn run(&self) {
        // A line on stdin stops the server (`stop`); end of file (this process exited, so the
        // shared server's directory is never dropped) also removes its directory.
        let script = format!(
            "'{}' -D '{}' -p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=200 & p=$!; if read _; then kill -QUIT $p; wait $p; \
             else kill -QUIT $p; wait $p; rm -rf '{}'; fi",
            self.bindir.join("postgres").display(),
            self.data.display(),
            self.port,
            self.sock.display(),
            self._dir.path().display()
        );
        let child = self
            .as_server_user(Path::new("/bin/sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        *self.server.lock().unwrap() = Some(child);
        let ready = crate::harness::wait_until(Duration::from_secs(30), || {
            self.try_psql("postgres", "SELECT 1").is_ok()
        });
        assert!(
            ready,
            "postgres did not start on port {}: {:?}",
            self.port,
            self.try_psql("postgres", "SELECT 1")
        );
    }

    /// Stops the server at once (immediate shutdown: as if it crashed) and waits for it to exit.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.stdin.as_mut().unwrap().write_all(b"\n");
            let _ = child.wait();
        }
    }

    /// A URL for `db` as the superuser (no password needed).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database of its own name.
    pub fn create_db(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bindir.join("psql"))
            .arg("-h")
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", db])
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-F",
                "|",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql` in `db` as the superuser; its rows, one a line, fields split by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// The single value `sql` gives, as an integer; `None` while it fails (tables not made yet,
    /// server restarting).
    pub fn try_scalar(&self, db: &str, sql: &str) -> Option<i64> {
        self.try_psql(db, sql).ok()?.trim().parse().ok()
    }

    pub fn scalar(&self, db: &str, sql: &str) -> i64 {
        self.psql(db, sql).trim().parse().unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
