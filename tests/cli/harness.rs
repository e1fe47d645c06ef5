//! Test harness: a real fanout test server on 127.0.0.1 port 0 (kept alive on its own runtime),
//! a temp dir, the real binary, helpers to read the SQLite store, a DNS server and a proxy skeleton
//! on 127.0.0.1 (tunnels to 127.0.0.1 only), and the common start of the PostgreSQL tests (the
//! server itself is tests/cli/pg.rs's).

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
/// A one-worker runtime for a hand-written test server, and a listener on 127.0.0.1 (port 0)
/// registered with it.
pub fn listening_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    (rt, listener)
}

/// A runtime for a test server (two workers), dropped after the server it runs.
pub fn server_runtime() -> tokio::runtime::Runtime {
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

/// A DNS server on 127.0.0.1 (UDP, port 0, its own thread) that answers A queries for the names
/// it is given with their address and `ttl`, AAAA queries for them with no records, and anything
/// else with NXDOMAIN. It counts every query by name and type, so a test can tell how often a
/// client asked. Stops when dropped.
pub struct DnsServer {
    addr: std::net::SocketAddr,
    queries: Arc<std::sync::Mutex<std::collections::HashMap<(String, u16), u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DnsServer {
    pub fn start(names: &[(&str, std::net::Ipv4Addr)], ttl: u32) -> DnsServer {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let names: std::collections::HashMap<String, std::net::Ipv4Addr> = names
            .iter()
            .map(|(n, ip)| (n.to_ascii_lowercase(), *ip))
            .collect();
        let queries = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (q, s) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((name, qtype, reply)) = dns_answer(&buf[..len], &names, ttl) {
                    *q.lock().unwrap().entry((name, qtype)).or_insert(0) += 1;
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        DnsServer {
            addr,
            queries,
            stop,
        }
    }

    /// `127.0.0.1:PORT`, for `--dns-servers`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many A (type 1) queries named `name`.
    pub fn a_queries(&self, name: &str) -> u64 {
        let q = self.queries.lock().unwrap();
        q.get(&(name.to_ascii_lowercase(), 1)).copied().unwrap_or(0)
    }

    /// Every query, by name and type.
    pub fn queries(&self) -> std::collections::HashMap<(String, u16), u64> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The reply to one DNS query (RFC 1035 §4): its name (lower case, no final dot), its type, and
/// the reply's bytes. `None` for what is not a standard query with one question.
fn dns_answer(
    q: &[u8],
    names: &std::collections::HashMap<String, std::net::Ipv4Addr>,
    ttl: u32,
) -> Option<(String, u16, Vec<u8>)> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let n = *q.get(i)? as usize;
        i += 1;
        if n == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + n)?).to_ascii_lowercase());
        i += n;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let name = labels.join(".");
    let found = names.get(&name);
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[0..2]); // id
    // QR, the query's RD, RA; NXDOMAIN (3) for a name not served.
    r.push(0x80 | (q[2] & 0x01));
    r.push(0x80 | if found.is_some() { 0 } else { 3 });
    let answers: u16 = u16::from(found.is_some() && qtype == 1);
    for n in [1u16, answers, 0, 0] {
        r.extend_from_slice(&n.to_be_bytes());
    }
    r.extend_from_slice(question);
    if let (Some(ip), 1) = (found, qtype) {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // the question's name, A, IN
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some((name, qtype, r))
}

/// What a [`TestProxy`] was asked: one entry a connection (a request head, or `host:port`).
pub type Seen = Arc<std::sync::Mutex<Vec<String>>>;

/// A proxy for the tests on 127.0.0.1 port 0, on a runtime of its own: every accepted connection
/// goes to the handler given to [`TestProxy::start`] (tests/cli/http.rs: CONNECT and SOCKS5;
/// tests/cli/proxy.rs: TLS), which records what it was asked in [`Seen`]. The handlers send every
/// tunnel to 127.0.0.1 only ([`tunnel_to_local`]): they never resolve a name, so nothing leaves
/// the machine. Stops when dropped.
pub struct TestProxy {
    pub addr: std::net::SocketAddr,
    seen: Seen,
    _rt: tokio::runtime::Runtime,
}

impl TestProxy {
    /// A proxy running `handle(connection, seen)` for each connection it accepts.
    pub fn start<F, Fut>(handle: F) -> TestProxy
    where
        F: Fn(tokio::net::TcpStream, Seen) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (rt, listener) = listening_runtime();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let s = seen.clone();
        rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                // A connection's error is the test's to see in the outcome, not the proxy's.
                tokio::spawn(handle(conn, s.clone()));
            }
        });
        TestProxy {
            addr,
            seen,
            _rt: rt,
        }
    }

    /// Everything asked so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads an HTTP request head (through its blank line, 16 KiB at most), byte by byte so that
/// nothing after it is consumed.
pub async fn read_head(conn: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        conn.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Answers a CONNECT to `target` (`host:port`) on `conn` by tunnelling to 127.0.0.1 at its port,
/// whatever the host; a target with no port is answered 403.
pub async fn tunnel_to_local(
    conn: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    target: &str,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let Some(port) = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        return refuse(conn).await;
    };
    let mut upstream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(conn, &mut upstream).await?;
    Ok(())
}

/// A proxy's refusal: 403 with an empty body.
pub async fn refuse(conn: &mut (impl tokio::io::AsyncWrite + Unpin)) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    conn.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        .await
}

/// `fanout fetch --jsonl - -q --retries 0 ARGS` of `url`, with none of the proxy variables curl
/// reads set but those in `env`; its output, to check.
pub fn fetch_with_proxy_env(
    dir: &Dir,
    env: &[(&str, &str)],
    args: &[&str],
    url: &str,
) -> std::process::Output {
    let mut cmd = dir.cmd();
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["fetch", "--jsonl", "-", "-q", "--retries", "0"])
        .args(args)
        .write_stdin(format!("{url}\n"))
        .output()
        .unwrap()
}

/// The first JSON line of a successful run's stdout.
pub fn first_outcome(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

/// The start of most PostgreSQL store tests: a new database on `pg`, its URL, a test server that
/// answers after `latency`, and a dir. Returns (database name, URL, server, dir).
pub fn pg_setup(pg: &crate::pg::PgServer, latency: Duration) -> (String, String, TestServer, Dir) {
    let name = pg.create_db();
    let url = pg.url(&name);
    (name, url, TestServer::start(latency), Dir::new())
}

/// Creates [`crate::pg::PW_USER`], the role that must log in with a password, on `pg` unless it
/// is there (the shared server has one, created by whichever test comes first); LOGIN, no
/// password until a test sets one.
pub fn pw_role(pg: &crate::pg::PgServer) {
    let user = crate::pg::PW_USER;
    pg.psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') \
             THEN CREATE ROLE {user} LOGIN; END IF; END $$"
        ),
    );
}

/// Checks that the `invalid-input` outcomes among `rows` of a `--from-sql` run are exactly the
/// rows `expect` names (row number, a part of the reason), each keyed `invalid:query:ROW` with a
/// detail that starts `query:ROW: `.
pub fn assert_invalid_query_rows(rows: &[Row], expect: &[(u32, &str)]) {
    let mut bad: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.error.as_deref() == Some("invalid-input"))
        .map(|r| (r.key.clone(), r.error_detail.clone().unwrap()))
        .collect();
    bad.sort_by_key(|(k, _)| k["invalid:query:".len()..].parse::<u32>().unwrap());
    assert_eq!(bad.len(), expect.len(), "{bad:?}");
    for ((key, detail), (row, reason)) in bad.iter().zip(expect) {
        assert_eq!(key, &format!("invalid:query:{row}"));
        assert!(
            detail.starts_with(&format!("query:{row}: ")) && detail.contains(reason),
            "{detail}"
        );
    }
}

/// A port on 127.0.0.1 that was free a moment ago (for a server started as a process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `fanout fetch --jsonl - -q ARGS` on `input` (one URL a line) in `dir`, expects success,
/// and returns the outcomes.
pub fn fetch_jsonl(dir: &Dir, args: &[&str], input: &str) -> Vec<serde_json::Value> {
    let out = dir
        .cmd()
        .args(["fetch", "--jsonl", "-", "-q"])
        .args(args)
        .write_stdin(input.to_owned())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
