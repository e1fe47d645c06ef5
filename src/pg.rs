//! PostgreSQL connection settings the libpq way: a `postgres://` / `postgresql://` URL, completed
//! from `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`
//! and `~/.pgpass` (or `PGPASSFILE`); TLS through rustls (`sslmode=disable|prefer|require|
//! verify-full`, `sslrootcert=FILE`); and [`mask_secrets`], which takes passwords out of any text
//! that may hold a URL. Owns connecting (the store and a source use it); knows no table.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use tokio_postgres::Client;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

/// A PostgreSQL connection URL, as given. Its `Debug` and `Display` show it with the password
/// replaced by `***` ([`PgUrl::masked`]); only connecting reads the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    url: String,
    masked: String,
}

impl PgUrl {
    /// Whether `s` names a PostgreSQL database (`postgres://` or `postgresql://`).
    pub fn is_pg_url(s: &str) -> bool {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Checks `s` (scheme, syntax, parameters); the environment is read only when connecting.
    /// Errors never hold the password.
    pub fn parse(s: &str) -> Result<PgUrl, String> {
        let masked = mask_secrets(s);
        if !PgUrl::is_pg_url(s) {
            return Err(format!(
                "'{masked}' is not a postgres:// or postgresql:// URL"
            ));
        }
        let url = PgUrl {
            url: s.to_owned(),
            masked,
        };
        Parsed::from_url(s).map_err(|e| format!("'{}': {e}", url.masked))?;
        Ok(url)
    }

    /// The URL with its password (if any) replaced by `***`: what messages show.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// The settings to connect with, completed from the process's environment and `.pgpass`.
    pub(crate) fn settings(&self) -> Result<Settings, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Settings::resolve(&self.url, &env).map_err(|e| format!("{}: {e}", self.masked))
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", self.masked)
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

/// `text` with every password it holds replaced by `***`: the password of each `scheme://user:
/// password@host` URL, and every `password=value` parameter. For messages and `runs.command`.
///
/// ```
/// assert_eq!(
///     fanout::pg::mask_secrets("--db postgres://app:s3cr%40t@db:5432/x?sslmode=require"),
///     "--db postgres://app:***@db:5432/x?sslmode=require"
/// );
/// ```
pub fn mask_secrets(text: &str) -> String {
    crate::secrets::mask_url_in_text(text).into_owned()
}

/// How to use TLS, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it (certificate not checked, as libpq), plain otherwise.
    Prefer,
    /// TLS, certificate not checked (as libpq without a root certificate).
    Require,
    /// TLS, certificate chain checked against `sslrootcert` (or the webpki roots) and the host name.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode '{other}' is not one of disable, prefer, require, verify-full"
                ));
            }
        })
    }
}

/// What the URL itself says, before defaults.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
    connect_timeout: Option<Duration>,
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-encoding is not UTF-8".to_owned())
}

impl Parsed {
    fn from_url(s: &str) -> Result<Parsed, String> {
        let (_, rest) = s.split_once("://").ok_or("no '://'")?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let mut p = Parsed::default();
        let hostport = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, pw)) => (u, Some(pw)),
                    None => (userinfo, None),
                };
                if !user.is_empty() {
                    p.user = Some(decode(user)?);
                }
                p.password = password.map(decode).transpose()?;
                &authority[at + 1..]
            }
            None => authority,
        };
        if hostport.contains(',') {
            return Err("several hosts are not supported".into());
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, port)) => (h, Some(port)),
                None => (hostport, None),
            }
        };
        if !host.is_empty() {
            p.host = Some(decode(host)?);
        }
        if let Some(port) = port.filter(|s| !s.is_empty()) {
            p.port = Some(parse_port(port)?);
        }
        if !path.is_empty() {
            p.dbname = Some(decode(path)?);
        }
        for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v)?;
            match k {
                "host" => p.host = Some(v),
                "port" => p.port = Some(parse_port(&v)?),
                "user" => p.user = Some(v),
                "password" => p.password = Some(v),
                "dbname" => p.dbname = Some(v),
                "sslmode" => p.sslmode = Some(SslMode::parse(&v)?),
                "sslrootcert" => p.sslrootcert = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    let secs: u64 = v
                        .parse()
                        .map_err(|_| format!("connect_timeout '{v}' is not whole seconds"))?;
                    p.connect_timeout = Some(Duration::from_secs(secs.max(1)));
                }
                "application_name" => {}
                other => return Err(format!("unknown parameter '{other}'")),
            }
        }
        Ok(p)
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("port '{s}' is not a port number"))
}

/// Complete connection settings.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// A host name or address, or a Unix socket directory (starts with `/`).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) dbname: String,
    pub(crate) password: Option<String>,
    pub(crate) sslmode: SslMode,
    pub(crate) sslrootcert: Option<PathBuf>,
    pub(crate) connect_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

/// Where libpq looks for the server when no host is given: Debian's socket directory if it
/// exists, else upstream's `/tmp`.
fn default_host() -> String {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "/tmp".into()
    }
}

impl Settings {
    /// The settings for `url`: the URL first, then the environment (`env`), then libpq's defaults;
    /// the password from the URL, `PGPASSWORD`, or the password file.
    pub(crate) fn resolve(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let p = Parsed::from_url(url)?;
        let host = p
            .host
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(default_host);
        let port = match p.port {
            Some(port) => port,
            None => match env("PGPORT") {
                Some(s) => parse_port(&s).map_err(|e| format!("PGPORT: {e}"))?,
                None => 5432,
            },
        };
        let user = p
            .user
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .ok_or("no user name: give one in the URL or set PGUSER")?;
        let dbname = p
            .dbname
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let sslmode = match p.sslmode {
            Some(m) => m,
            None => match env("PGSSLMODE") {
                Some(m) => SslMode::parse(&m).map_err(|e| format!("PGSSLMODE: {e}"))?,
                None => SslMode::Prefer,
            },
        };
        let sslrootcert = p
            .sslrootcert
            .or_else(|| env("PGSSLROOTCERT").map(PathBuf::from));
        let connect_timeout = p
            .connect_timeout
            .or_else(|| {
                env("PGCONNECT_TIMEOUT")
                    .and_then(|s| s.parse().ok())
                    .map(|s: u64| Duration::from_secs(s.max(1)))
            })
            .unwrap_or(Duration::from_secs(10));
        let password = match p.password.or_else(|| env("PGPASSWORD")) {
            Some(pw) => Some(pw),
            None => {
                let file = env("PGPASSFILE")
                    .map(PathBuf::from)
                    .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")));
                file.and_then(|f| read_pgpass(&f))
                    .and_then(|text| pgpass_lookup(&text, &host, port, &dbname, &user))
            }
        };
        Ok(Settings {
            host,
            port,
            user,
            dbname,
            password,
            sslmode,
            sslrootcert,
            connect_timeout,
        })
    }
}

/// The password file's text, if it exists and only its owner may read it (libpq ignores it
/// otherwise, so a password in a world-readable file is never used).
fn read_pgpass(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The password of the first line of a `.pgpass` file that matches, libpq's way: fields
/// `host:port:database:user:password`, `*` matches anything, `\:` and `\\` escape, `#` starts a
/// comment; a Unix socket host matches `localhost`.
pub(crate) fn pgpass_lookup(
    text: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    let want = [host, port.as_str(), dbname, user];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass_line(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w);
        if matches {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().unwrap().push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// Connects with `settings`, TLS as their `sslmode` says; the connection's task runs on the
/// current runtime and ends when the client is dropped. Errors are masked.
pub(crate) async fn connect(settings: &Settings) -> Result<Client, ConnectError> {
    let mut c = tokio_postgres::Config::new();
    c.host(&settings.host)
        .port(settings.port)
        .user(&settings.user)
        .dbname(&settings.dbname)
        .application_name("fanout")
        .connect_timeout(settings.connect_timeout);
    if let Some(pw) = &settings.password {
        c.password(pw);
    }
    // libpq never uses TLS over a Unix socket.
    let mode = if settings.host.starts_with('/') {
        SslMode::Disable
    } else {
        settings.sslmode
    };
    match mode {
        SslMode::Disable => {
            c.ssl_mode(tokio_postgres::config::SslMode::Disable);
            connect_with(&c, tokio_postgres::NoTls).await
        }
        SslMode::Prefer | SslMode::Require | SslMode::VerifyFull => {
            c.ssl_mode(if mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls =
                tls_config(mode, settings.sslrootcert.as_deref()).map_err(ConnectError::Setup)?;
            connect_with(&c, tokio_postgres_rustls::MakeRustlsConnect::new(tls)).await
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The TLS settings are unusable (an unreadable `sslrootcert`): retrying will not help.
    Setup(String),
    /// The server refused or could not be reached.
    Pg(tokio_postgres::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Setup(s) => f.write_str(s),
            ConnectError::Pg(e) => f.write_str(&describe(e)),
        }
    }
}

/// What the server or driver said, for a message: the server's own words for a database error
/// (tokio-postgres shows only "db error"), the cause for a connection error; passwords masked.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let cause = s.to_string();
                if !text.contains(&cause) {
                    text.push_str(": ");
                    text.push_str(&cause);
                }
                source = s.source();
            }
            text
        }
    };
    mask_secrets(&text)
}

async fn connect_with<T>(config: &tokio_postgres::Config, tls: T) -> Result<Client, ConnectError>
where
    T: MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await.map_err(ConnectError::Pg)?;
    // Ends (with an error the client sees) when the server goes away or the client is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn tls_config(mode: SslMode, rootcert: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if mode != SslMode::VerifyFull {
        return Ok(crate::engine::client::insecure_tls(builder, provider));
    }
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = crate::engine::client::load_ca_certs(path)?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert '{}': {e}", path.display()))?;
            }
        }
        None => roots.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Whether an error may go away by connecting again: the connection broke or could not be made,
/// or the server is shutting down, starting up or out of connections (or a transaction lost a
/// serialization or deadlock race). Anything else (a refused password, a missing permission, a
/// bad table) is reported at once.
pub(crate) fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || c == "53300" || c.starts_with("40")
        }
    }
}

/// What an attempt to use the database ended with, when not with success.
pub(crate) enum Failure {
    /// Worth connecting again.
    Transient(String),
    /// Not worth it.
    Permanent(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        let text = describe(&e);
        if transient(&e) {
            Failure::Transient(text)
        } else {
            Failure::Permanent(text)
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Failure {
        match e {
            ConnectError::Setup(s) => Failure::Permanent(s),
            ConnectError::Pg(e) => e.into(),
        }
    }
}

/// Longest pause between two attempts to reach the database again.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connection that can be made again: the store's and the work queue's.
pub(crate) trait Reconnect {
    /// What an operation runs on (a client, with statements prepared on it).
    type Live;
    /// The live connection, connecting first if there is none.
    fn live(&mut self) -> impl std::future::Future<Output = Result<Self::Live, Failure>> + Send;
    /// Forgets the connection (after a failure its state is not trusted).
    fn reset(&mut self);
}

/// Runs `op` on `conn`'s live connection; when that fails with a transient error, connects again
/// with backoff (50 ms doubling to [`MAX_BACKOFF`]) and runs `op` again, until `timeout` has
/// passed since the first failure. `op` must be safe to run again after a failure whose commit
/// may or may not have happened. The error says `what` failed, and why.
pub(crate) async fn with_retries<C, T, F, Fut>(
    conn: &mut C,
    timeout: Duration,
    what: &str,
    mut op: F,
) -> Result<T, String>
where
    C: Reconnect,
    F: FnMut(C::Live) -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut first_failure: Option<tokio::time::Instant> = None;
    let mut delay = Duration::from_millis(50);
    loop {
        let attempt = async {
            let live = conn.live().await?;
            op(live).await.map_err(Failure::from)
        };
        let failure = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(f)) => f,
            Err(_) => Failure::Transient(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        };
        conn.reset();
        let message = match failure {
            Failure::Permanent(m) => return Err(format!("{what}: {m}")),
            Failure::Transient(m) => m,
        };
        let since = *first_failure.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() + delay >= timeout {
            return Err(format!(
                "{what}: the database was unreachable for {} (--store-timeout): {message}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn masks_the_password_of_every_url_and_parameter() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            (
                "x postgres://u:p@ss@h:5/db y",
                "x postgres://u:***@h:5/db y",
            ),
            ("'postgres://u:p w@h'", "'postgres://u:***@h'"),
            (
                "postgres://h/db?user=u&password=pw&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("host=h PASSWORD=pw user=u", "host=h PASSWORD=*** user=u"),
            (
                "http://a:b@h/x and https://h/y",
                "http://a:***@h/x and https://h/y",
            ),
            ("no url here", "no url here"),
        ];
        for (text, want) in cases {
            assert_eq!(mask_secrets(text), want, "{text}");
        }
        let url = PgUrl::parse("postgres://u:secret@h/db").unwrap();
        assert!(!format!("{url:?} {url}").contains("secret"));
        let err = PgUrl::parse("postgres://u:secret@h/db?bogus=1").unwrap_err();
        assert!(!err.contains("secret") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn the_url_wins_over_the_environment_which_wins_over_defaults() {
        let env = env_of(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpw"),
            ("PGSSLMODE", "require"),
        ]);
        let s = Settings::resolve("postgres://", &env).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()),
            ("envhost", 6000, "envuser", "envdb")
        );
        assert_eq!(s.password.as_deref(), Some("envpw"));
        assert_eq!(s.sslmode, SslMode::Require);
        let s = Settings::resolve(
            "postgresql://me:p%40ss@[::1]:7000/mine?sslmode=disable&sslrootcert=/ca.pem",
            &env,
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()),
            ("::1", 7000, "me", "mine")
        );
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.sslmode, SslMode::Disable);
        assert_eq!(s.sslrootcert, Some(PathBuf::from("/ca.pem")));
        // A socket directory, percent-encoded in the host or as a parameter.
        let none = env_of(&[("USER", "osuser")]);
        let s = Settings::resolve("postgres://%2Frun%2Fpg:5433/d", &none).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("/run/pg", 5433));
        let s = Settings::resolve("postgres:///d?host=/tmp/x", &none).unwrap();
        assert_eq!((s.host.as_str(), s.user.as_str()), ("/tmp/x", "osuser"));
        assert_eq!(s.dbname, "d");
        assert_eq!(s.sslmode, SslMode::Prefer);
        // The database defaults to the user name.
        let s = Settings::resolve("postgres://h", &none).unwrap();
        assert_eq!(s.dbname, "osuser");
        assert!(Settings::resolve("postgres://h/d?sslmode=maybe", &none).is_err());
        assert!(Settings::resolve("postgres://h:0/d", &none).is_err());
    }

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\n\
                    other:5432:*:*:nope\n\
                    localhost:5432:db:al\\:ice:a\\:b\\\\c\n\
                    *:*:*:bob:pw:with:colons\n\
                    h:6000:*:*:port6000\n";
        assert_eq!(
            pgpass_lookup(text, "localhost", 5432, "db", "al:ice").as_deref(),
            Some("a:b\\c")
        );
        // A socket directory matches localhost.
        assert_eq!(
            pgpass_lookup(text, "/var/run/postgresql", 5432, "db", "al:ice").as_deref(),
            Some("a:b\\c")
        );
        assert_eq!(
            pgpass_lookup(text, "any", 1, "x", "bob").as_deref(),
            Some("pw:with:colons")
        );
        assert_eq!(
            pgpass_lookup(text, "h", 6000, "x", "y").as_deref(),
            Some("port6000")
        );
        assert_eq!(pgpass_lookup(text, "h", 5432, "x", "y"), None);
    }

    #[test]
    fn the_password_file_is_used_only_when_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:filepw\n").unwrap();
        let path = file.to_str().unwrap().to_owned();
        let env = move |k: &str| match k {
            "PGPASSFILE" => Some(path.clone()),
            "PGUSER" => Some("u".into()),
            _ => None,
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Settings::resolve("postgres://h/d", &env).unwrap();
        assert_eq!(s.password, None, "a world-readable file is ignored");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Settings::resolve("postgres://h/d", &env).unwrap();
        assert_eq!(s.password.as_deref(), Some("filepw"));
        assert!(!format!("{s:?}").contains("filepw"));
        // The URL's password wins.
        let s = Settings::resolve("postgres://u:urlpw@h/d", &env).unwrap();
        assert_eq!(s.password.as_deref(), Some("urlpw"));
    }
}
