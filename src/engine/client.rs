//! The HTTP client: one attempt at a request, with redirects, per-attempt timeout and bounded,
//! decoded body reading, turned into an [`Outcome`]. hyper's connections over rustls (HTTP/1.1 and
//! HTTP/2 by ALPN, or one forced; h2c by prior knowledge), kept in our own pool. Owns connections;
//! knows nothing of sources, stores or admission.
//!
//! - `pool`: idle HTTP/1.1 and shared HTTP/2 connections per origin.
//! - `connector`: TCP connections, `--resolve` overrides and `--proxy` tunnels (CONNECT, SOCKS5).
//! - `conn_task`: the task each new connection runs on, and how it ended.
//! - `dns`: host names to addresses (async, cached for each answer's TTL, one query per name at once).
//! - `tls`: the rustls configuration (webpki roots, `--cacert`, `--insecure`).
//! - `body`: streaming body reads, decoding gzip, deflate, br and zstd under `--max-body`.
//! - `files`: `--out-dir`: file names from keys, shard folders, temporary files renamed when complete.
//! - `robots`: fetching an origin's `/robots.txt` for `--robots` (at most 500 KiB, 5 redirects).
//!
//! Redirects are followed to http and https only; a redirect to another scheme, host or port drops
//! `Authorization` and `Cookie`; 303 (and 301/302 after POST) switch to GET without a body.

mod body;
mod conn_task;
mod connector;
mod dns;
mod files;
mod pool;
mod robots;
mod tls;

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use url::Url;

use self::pool::{Conn, Pool};

use crate::outcome::{ErrorKind, Outcome};
use crate::request::Request;

use connector::Forward;
pub use connector::{NoProxy, Proxy, ProxyProtocol, ProxyRules, Resolve};
pub use dns::parse_dns_servers;
pub use files::{body_file, check_out_dir};
pub use robots::{ROBOTS_MAX_REDIRECTS, RobotsFetch};
pub use tls::parse_pinned_pubkey;

/// What to keep of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyMode {
    /// Record the SHA-256 of the body.
    #[default]
    Hash,
    /// Record the body itself.
    Store,
    /// Count the bytes only.
    Discard,
}

/// Which HTTP version the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/1.1 for http URLs; HTTP/2 or HTTP/1.1 by ALPN for https.
    #[default]
    Auto,
    /// HTTP/1.1 only (no ALPN offered).
    Http1,
    /// HTTP/2 only: ALPN `h2` for https, prior knowledge (h2c) for http.
    Http2,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Limit on one attempt, from sending to the last body byte.
    pub timeout: Duration,
    /// Limit on establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Redirects followed before `too-many-redirects`.
    pub max_redirects: u32,
    /// What to keep of bodies.
    pub body: BodyMode,
    /// Largest body accepted before `body-too-large`.
    pub max_body: u64,
    /// Largest response head (status line and headers) accepted; more is `protocol`. At least
    /// 8 KiB (hyper's smallest read buffer).
    pub max_head: usize,
    /// Most content codings stacked on one body (`Content-Encoding: gzip, br, ...`); more is
    /// `decode` (each layer multiplies the work a small body can cause).
    pub max_codings: usize,
    /// Bytes per second below which an attempt is given up as `timeout` when it stays that slow
    /// for a whole [`speed_time`](Self::speed_time) (curl's `--speed-limit`); `None`: no such
    /// limit. Counts body bytes as they arrive, before decoding; a wait for the head counts as
    /// nothing arriving.
    pub speed_limit: Option<u64>,
    /// The window over which [`speed_limit`](Self::speed_limit) is measured (curl's
    /// `--speed-time`, 30 s by default).
    pub speed_time: Duration,
    /// Sent as User-Agent unless a request sets its own.
    pub user_agent: String,
    /// No `Accept-Encoding` is added and bodies are not decoded (`--raw`); otherwise gzip,
    /// deflate, br and zstd are asked for and decoded, and sizes are decoded sizes.
    pub raw: bool,
    /// The HTTP version spoken (`--http1`, `--http2`).
    pub http_version: HttpVersion,
    /// Accept any TLS certificate (`--insecure`).
    pub insecure: bool,
    /// SHA-256 digests of the public keys the server must show (`--pinnedpubkey`); empty: any.
    pub pinned_pubkeys: Vec<[u8; 32]>,
    /// A client certificate chain in PEM (`--cert`), for servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// Its private key in PEM (`--key`); without it, the key is read from `client_cert`.
    pub client_key: Option<PathBuf>,
    /// PEM files of CA certificates trusted besides the webpki roots (`--cacert`).
    pub ca_files: Vec<PathBuf>,
    /// Fixed addresses for host and port pairs (`--resolve`).
    pub resolve: Vec<Resolve>,
    /// DNS servers asked for host names (`--dns-servers`); empty: the system's
    /// (`/etc/resolv.conf`). Answers are kept for their TTL either way.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// The proxies connections go through (`--proxy`, or the environment), and those that go direct.
    pub proxy: ProxyRules,
    /// Idle connections kept for reuse, across all hosts; when full, the oldest is closed. 0 (the
    /// default): the engine derives it from the concurrency and the open-file limit
    /// ([`EngineConfig::sizes`](crate::engine::EngineConfig::sizes)); never below the concurrency.
    pub max_idle: usize,
    /// Write each final response's body (decoded unless `raw`) to a file under this directory, at
    /// [`body_file`] (`--out-dir`); the file's path goes into `Outcome::body_path`. Redirect bodies
    /// are not written. Cannot be combined with [`BodyMode::Store`]: bodies are never held whole.
    pub out_dir: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 10,
            body: BodyMode::Hash,
            max_body: 10 << 20,
            max_head: 64 << 10,
            max_codings: 4,
            speed_limit: None,
            speed_time: Duration::from_secs(30),
            user_agent: concat!("fanout/", env!("CARGO_PKG_VERSION")).into(),
            raw: false,
            http_version: HttpVersion::Auto,
            insecure: false,
            pinned_pubkeys: Vec::new(),
            client_cert: None,
            client_key: None,
            ca_files: Vec::new(),
            resolve: Vec::new(),
            dns_servers: Vec::new(),
            proxy: ProxyRules::default(),
            max_idle: 0,
            out_dir: None,
        }
    }
}

/// A client that cannot be built (TLS set-up, an unreadable `--cacert` file).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct ClientError(String);

/// Reads a PEM file of CA certificates as `--cacert` does and returns how many it holds; an
/// unreadable file, bad PEM or no certificate at all is an error that names the file.
pub fn check_ca_file(path: &Path) -> Result<usize, String> {
    tls::load_ca_file(path)
        .map(|certs| certs.len())
        .map_err(|e| e.0)
}

/// The certificates of a PEM CA file, read as `--cacert` does (for the PostgreSQL store's
/// `sslrootcert`).
pub(crate) fn load_ca_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    tls::load_ca_file(path).map_err(|e| e.0)
}

/// `builder` finished with `--insecure`'s verifier (any certificate; handshake signatures still
/// checked): the PostgreSQL store's `sslmode=prefer|require`, which check no certificate (libpq).
pub(crate) fn insecure_tls(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
) -> rustls::ClientConfig {
    tls::insecure(builder, provider)
}

/// Idle connections (HTTP/2 ones: unused for) longer than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// HTTP/2 keep-alive pings on connections with no traffic, and how long a ping may go unanswered.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Spawns hyper's HTTP/2 tasks (one per request: it waits for the response) boxed. Moved into
/// tokio's task cell unboxed, each ~1 KB future was copied several times on the way (callgrind:
/// ~3,400 instructions of memcpy per HTTP/2 request with hyper-util's `TokioExecutor`).
#[derive(Clone, Copy)]
struct BoxingExecutor;

impl<F> hyper::rt::Executor<F> for BoxingExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Box::pin(fut));
    }
}

/// A cheap-to-clone handle on a pooled HTTP client.
#[derive(Clone)]
pub struct Client {
    connector: connector::Https,
    pool: Arc<Pool>,
    config: Arc<ClientConfig>,
    /// Headers every request gets unless it has its own of that name.
    defaults: Arc<HeaderMap>,
}

/// A response, and for HTTP/1.1 the connection to give back once its body is read.
type Sent = (
    http::Response<Incoming>,
    Option<http1::SendRequest<Full<Bytes>>>,
);

/// A request on its way to a connection. Boxed: it is 256 bytes, and it goes down through
/// `send`, `send_pooled` and `send_on`; by value each of their futures held a copy and each call
/// moved it (callgrind: ~700 instructions of memcpy per request; the attempt's future was 3 KB).
type HReq = Box<http::Request<Full<Bytes>>>;

/// Why a request did not get a response on a connection.
enum SendError {
    /// The connection was closed before the request was written: it may go on another one.
    NotSent(HReq),
    /// It failed once sent (or could not be sent for another reason).
    Failed(Failure),
}

/// A failed attempt: the stored kind and a detail for humans.
#[derive(Debug)]
struct Failure {
    kind: ErrorKind,
    detail: String,
}

impl Failure {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }
}

/// The smallest response head limit: hyper's HTTP/1.1 read buffer cannot be smaller.
pub const MIN_HEAD: usize = 8192;

/// One attempt's result, distinct from the request's final outcome: what the server answered (or
/// why there is no answer), this attempt's timings, and what the server asked of the client. The
/// engine turns the last attempt into the [`Outcome`] with [`Attempt::into_outcome`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Attempt {
    /// Wall-clock start of this attempt.
    pub started_at: SystemTime,
    /// This attempt's duration, to the last body byte or the failure.
    pub duration: Duration,
    /// HTTP status of the final response (after redirects); `None` when there was none.
    pub status: Option<u16>,
    /// Why there is no response.
    pub error: Option<ErrorKind>,
    /// What went wrong, for people.
    pub error_detail: Option<String>,
    /// Time to the final response's headers.
    pub ttfb: Option<Duration>,
    /// Body bytes received (decoded unless `raw`).
    pub bytes: u64,
    /// URL of the final response after redirects.
    pub final_url: Option<String>,
    /// Hex SHA-256 of the body (`BodyMode::Hash`).
    pub body_sha256: Option<String>,
    /// The body (`BodyMode::Store`).
    pub body: Option<Bytes>,
    /// The file the body was written to (`out_dir`).
    pub body_path: Option<String>,
    /// The response's `Retry-After`, as a delay from now (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// What the response showed of its connection (`Unknown` without a response), for where
    /// the host's next requests run.
    pub(crate) reuse: Reuse,
}

impl Attempt {
    /// The outcome of `req` when this is its last attempt: `attempts` made, the first started at
    /// `started_at`, `total` time since.
    pub fn into_outcome(
        self,
        req: &Request,
        attempts: u32,
        started_at: SystemTime,
        total: Duration,
    ) -> Outcome {
        let mut o = Outcome::for_request_started(req, started_at);
        o.status = self.status;
        o.error = self.error;
        // A URL in a message (a redirect's target) keeps no password.
        o.error_detail = self
            .error_detail
            .map(|d| match crate::secrets::mask_url_in_text(&d) {
                std::borrow::Cow::Borrowed(_) => d,
                std::borrow::Cow::Owned(m) => m,
            });
        o.attempts = attempts;
        o.ttfb = self.ttfb;
        o.total = total;
        o.bytes = self.bytes;
        o.final_url = self.final_url.map(|u| match crate::secrets::mask_url(&u) {
            std::borrow::Cow::Borrowed(_) => u,
            std::borrow::Cow::Owned(m) => m,
        });
        o.body_sha256 = self.body_sha256;
        o.body = self.body;
        o.body_path = self.body_path;
        o
    }

    /// What this attempt came to, in a few words (`HTTP 503`, or the error's detail).
    pub fn describe(&self) -> String {
        match (self.status, &self.error_detail) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(d)) => d.clone(),
            (None, None) => "no response".into(),
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (a date in the past is zero).
///
/// ```
/// use std::time::Duration;
/// use fanout::engine::client::parse_retry_after;
/// assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after("soon"), None);
/// ```
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What a successful attempt brings back.
struct Response {
    retry_after: Option<Duration>,
    status: StatusCode,
    ttfb: Duration,
    bytes: u64,
    final_url: Url,
    sha256: Option<String>,
    body: Option<Bytes>,
    body_path: Option<String>,
    reuse: Reuse,
}

impl Client {
    /// Builds the client: connection pool, TLS (webpki roots plus `ca_files`, or any certificate
    /// when `insecure`), the HTTP versions asked for, `resolve` overrides and the proxy.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let resolver = dns::Resolver::new(&config.dns_servers);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let proxy_tls = match config.proxy.needs_tls() {
            true => Some(tls::proxy_config(&config, provider.clone())?),
            false => None,
        };
        let connector = connector::Connector::new(
            config.connect_timeout,
            resolver,
            &config.resolve,
            &config.proxy,
            proxy_tls,
        );
        let tls = tls::client_config(&config, provider)?;
        let https = connector::Https::new(connector, tls, config.http_version);
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| ClientError("invalid user agent".into()))?;
        let mut defaults = HeaderMap::with_capacity(2);
        defaults.insert(header::USER_AGENT, user_agent);
        if !config.raw {
            defaults.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(body::ACCEPT_ENCODING),
            );
        }
        if config.out_dir.is_some() && config.body == BodyMode::Store {
            return Err(ClientError(
                "bodies written to out_dir are not also stored (BodyMode::Store)".into(),
            ));
        }
        Ok(Client {
            connector: https,
            pool: Arc::new(Pool::new(config.max_idle.max(1), IDLE_TIMEOUT)),
            config: Arc::new(config),
            defaults: Arc::new(defaults),
        })
    }

    /// A client with the same settings, certificates, TLS session cache and DNS cache, and a
    /// pool of its own, whose idle connections count against this client's `max_idle` (together
    /// they keep no more): one per engine shard, so that a connection is used only from the
    /// runtime whose task drives it.
    pub fn with_own_pool(&self) -> Client {
        Client {
            pool: Arc::new(self.pool.sharing_budget()),
            ..self.clone()
        }
    }

    /// Sends `req` on a pooled connection to `origin`, if there is one. `Ok(Err(req))` gives the
    /// request back when there was none, or when it closed before the request was written.
    async fn send_pooled(
        &self,
        url: &Url,
        origin: &str,
        req: HReq,
        forward: Option<&Forward>,
    ) -> Result<Result<Sent, HReq>, Failure> {
        let Some(conn) = self.pool.checkout(origin) else {
            return Ok(Err(req));
        };
        match send_on(conn, url, req, forward).await {
            Ok(sent) => Ok(Ok(sent)),
            Err(SendError::NotSent(req)) => Ok(Err(req)),
            Err(SendError::Failed(f)) => Err(f),
        }
    }

    /// Sends `req` to `url`'s origin: on a pooled connection if one is usable, else on a new one.
    /// Returns the response and, for HTTP/1.1, the connection to give back once its body is read.
    async fn send(&self, url: &Url, req: HReq) -> Result<Sent, Failure> {
        let origin = &url[..url::Position::AfterPort];
        // An http URL for an https:// proxy goes to it in absolute form.
        let forward = self.config.proxy.forwarding(url);
        let forward = forward.as_ref();
        let mut req = match self.send_pooled(url, origin, req, forward).await? {
            Ok(sent) => return Ok(sent),
            Err(req) => req,
        };
        // One HTTP/2 connection per origin: while one is being opened, others wait for it rather
        // than each opening their own, then use it. Over https with ALPN, the first connection
        // says whether the origin multiplexes; until then the others wait for it too.
        let forced = self.config.http_version == HttpVersion::Http2;
        let negotiates = self.config.http_version == HttpVersion::Auto && url.scheme() == "https";
        let gate = self.pool.h2_gate(origin, forced, negotiates);
        let opening = match &gate {
            Some(g) => {
                let held = g.lock().await;
                req = match self.send_pooled(url, origin, req, forward).await? {
                    Ok(sent) => return Ok(sent),
                    Err(req) => req,
                };
                // The first one spoke HTTP/1.1 (or failed): connect alongside the others.
                (forced || !self.pool.is_ungated(origin)).then_some(held)
            }
            None => None,
        };
        // Boxed: opening a connection (TLS, HTTP/2 handshake) is a large future, and only the
        // first request to an origin needs it; inline, it made every request's future larger.
        let connected = match absolute_uri(url) {
            Ok(uri) => Box::pin(self.connect(origin, &uri)).await,
            Err(f) => Err(f),
        };
        // Matched in place, not through a reference, and the result matched as a statement
        // before `failed` is awaited: a local once borrowed, or a match's scrutinee, stays in this
        // future's state through every later await (224 bytes of each request's future).
        if opening.is_some() && !forced {
            match connected {
                Ok((Conn::H2(_), _)) => {}
                // Nothing to share (HTTP/1.1), or nothing learned (failed): waiters need not
                // queue behind each other's connection attempts.
                _ => self.pool.ungate(origin),
            }
        }
        drop(opening);
        let (conn, failed) = connected?;
        match send_on(conn, url, req, forward).await {
            Ok(r) => return Ok(r),
            Err(SendError::Failed(f)) => return Err(f),
            Err(SendError::NotSent(_)) => {}
        }
        // A new connection that cannot take a request: say why it ended.
        Err(match failed.await {
            Ok(e) => {
                // It connected, then ended on its own: what it sent was not HTTP, unless the
                // error says otherwise (TLS alert, reset).
                let mut f = classify(&e, false);
                if f.kind == ErrorKind::Io {
                    f.kind = ErrorKind::Protocol;
                }
                f
            }
            Err(_) => Failure::new(
                ErrorKind::Reset,
                "the connection closed before the request could be sent",
            ),
        })
    }

    /// Opens a connection (TCP, proxy tunnel, TLS) and speaks HTTP/2 on it if it was negotiated
    /// or forced, HTTP/1.1 otherwise. HTTP/2 connections are shared through the pool at once.
    /// The connection's task comes with it: awaited, it gives the connection's own error if it
    /// ended with one.
    async fn connect(&self, origin: &str, uri: &Uri) -> Result<(Conn, conn_task::Ended), Failure> {
        let io = self
            .connector
            .open(uri)
            .await
            .map_err(|e| classify(e.as_ref(), true))?;
        let h2 = match self.config.http_version {
            HttpVersion::Http2 => true,
            HttpVersion::Http1 => false,
            HttpVersion::Auto => io.connected().is_negotiated_h2(),
        };
        if h2 {
            let (tx, conn) = http2::Builder::new(BoxingExecutor)
                .max_header_list_size(u32::try_from(self.config.max_head).unwrap_or(u32::MAX))
                // Pings find connections that died silently (a NAT that forgot them).
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(H2_PING_INTERVAL)
                .keep_alive_timeout(H2_PING_TIMEOUT)
                .handshake(io)
                .await
                .map_err(|e| classify(&e, true))?;
            let ended = conn_task::spawn(conn);
            self.pool.share_h2(origin, &tx);
            Ok((Conn::H2(tx), ended))
        } else {
            let (tx, conn) = http1::Builder::new()
                // The read buffer bounds the head: a larger one is a parse error (`protocol`).
                .max_buf_size(self.config.max_head.max(MIN_HEAD))
                .handshake(io)
                .await
                .map_err(|e| classify(&e, true))?;
            Ok((Conn::H1(tx), conn_task::spawn_polled(conn)))
        }
    }

    /// Whether HTTP/1.1 connections are kept for reuse once their response ends (the default).
    /// Turned off when no more requests will come, so that closing overlaps the last responses
    /// instead of following them; requests sent meanwhile still work, on new connections.
    pub fn keep_connections(&self, keep: bool) {
        self.pool.keep(keep);
    }

    /// Makes one attempt at `req` (following redirects) and returns its outcome with `attempts: 1`.
    pub async fn fetch(&self, req: &Request) -> Attempt {
        self.fetch_started(req, SystemTime::now(), tokio::time::Instant::now())
            .await
    }

    /// [`Client::fetch`], starting at `started_at` by the wall clock and at `start` by tokio's
    /// (the engine has just read both). The deadline is on tokio's clock, as every timer is, and
    /// counts from `start` rather than from another read of it; the attempt's own times are on
    /// std's clock (see the engine's module doc).
    pub(crate) async fn fetch_started(
        &self,
        req: &Request,
        started_at: SystemTime,
        start: tokio::time::Instant,
    ) -> Attempt {
        // None: a timeout too far off to reach (tokio's `timeout` sets no timer for one either).
        let deadline = start.checked_add(self.config.timeout);
        let t0 = Instant::now();
        let received = AtomicU64::new(0);
        // Boxed: the attempt's future is ~1.5 KB, and inline it was copied into the timeout and
        // again into this future's state (callgrind: ~680 instructions of memcpy per request).
        let work = Box::pin(self.attempt(req, t0, &received));
        let result = match self.config.speed_limit {
            None => by_deadline(deadline, work).await,
            // Boxed: only runs with --speed-limit pay for the watch's timer.
            Some(limit) => {
                let window = self.config.speed_time;
                by_deadline(
                    deadline,
                    Box::pin(async {
                        tokio::select! {
                            r = work => r,
                            f = too_slow(&received, limit, window) => Err(f),
                        }
                    }),
                )
                .await
            }
        };
        let result = match result {
            Some(r) => r,
            None => Err(Failure::new(
                ErrorKind::Timeout,
                format!("no complete response within {:?}", self.config.timeout),
            )),
        };
        let mut a = Attempt {
            started_at,
            duration: t0.elapsed(),
            status: None,
            error: None,
            error_detail: None,
            ttfb: None,
            bytes: 0,
            final_url: None,
            body_sha256: None,
            body: None,
            body_path: None,
            retry_after: None,
            reuse: Reuse::Unknown,
        };
        match result {
            Ok(r) => {
                a.retry_after = r.retry_after;
                a.reuse = r.reuse;
                a.status = Some(r.status.as_u16());
                a.ttfb = Some(r.ttfb);
                a.bytes = r.bytes;
                a.final_url = Some(r.final_url.into());
                a.body_sha256 = r.sha256;
                a.body = r.body;
                a.body_path = r.body_path;
            }
            Err(f) => {
                a.error = Some(f.kind);
                a.error_detail = Some(f.detail);
            }
        }
        a
    }

    /// One attempt, redirects followed; body bytes are added to `received` as they arrive.
    async fn attempt(
        &self,
        req: &Request,
        t0: Instant,
        received: &AtomicU64,
    ) -> Result<Response, Failure> {
        let mut url = req.url.clone();
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut headers = std::borrow::Cow::Borrowed(&req.headers);
        // User info in the URL is Basic credentials, as curl sends them, unless the request has
        // an Authorization of its own; like one, it is dropped by a redirect to another origin.
        if let Some(auth) = userinfo_auth(&url)
            && !headers.contains_key(header::AUTHORIZATION)
        {
            headers.to_mut().insert(header::AUTHORIZATION, auth);
        }
        let mut hops = 0;
        loop {
            // In origin form: most requests go out on a pooled HTTP/1.1 connection as just their
            // path, so the whole URL is parsed into a `Uri` only for what needs it (a new
            // connection, HTTP/2, a proxy): see `send_on`.
            let uri = origin_uri(&url)
                .map_err(|e| Failure::new(ErrorKind::InvalidInput, format!("{url}: {e}")))?;
            let mut hreq: HReq = Box::new(http::Request::new(Full::new(body.clone())));
            *hreq.method_mut() = method.clone();
            *hreq.uri_mut() = uri;
            *hreq.headers_mut() = headers.as_ref().clone();
            // Inserted one by one: building a map of the defaults (or cloning one) measured
            // slower than two inserts into the request's own (callgrind).
            for (name, value) in self.defaults.iter() {
                if !hreq.headers().contains_key(name) {
                    hreq.headers_mut().insert(name.clone(), value.clone());
                }
            }
            let (resp, conn) = self.send(&url, hreq).await?;
            let ttfb = t0.elapsed();
            let (
                Head {
                    status,
                    reuse,
                    location,
                    retry_after,
                    length,
                    codings,
                },
                resp,
            ) = self.head(resp)?;
            if status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && let Some(location) = location
            {
                if hops >= self.config.max_redirects {
                    return Err(Failure::new(
                        ErrorKind::TooManyRedirects,
                        format!(
                            "more than {} redirects, last to {url}",
                            self.config.max_redirects
                        ),
                    ));
                }
                hops += 1;
                // Read the (small) redirect body so the connection can be reused.
                let read = body::read(
                    resp,
                    &[],
                    self.config.max_body,
                    BodyMode::Discard,
                    None,
                    received,
                )
                .await;
                if let (Ok(_), Some(conn)) = (read, conn) {
                    self.pool.give_back(&url[..url::Position::AfterPort], conn);
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| {
                        Failure::new(
                            ErrorKind::BadRedirect,
                            format!("unusable Location {location:?} from {url}"),
                        )
                    })?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(Failure::new(
                        ErrorKind::BadRedirect,
                        format!("redirect to unsupported scheme: {next}"),
                    ));
                }
                if status == StatusCode::SEE_OTHER
                    || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
                {
                    method = Method::GET;
                    body = Bytes::new();
                    let h = headers.to_mut();
                    h.remove(header::CONTENT_TYPE);
                    h.remove(header::CONTENT_LENGTH);
                }
                if !same_origin(&url, &next) {
                    // Credentials are for the origin they were written for.
                    let h = headers.to_mut();
                    h.remove(header::AUTHORIZATION);
                    h.remove(header::COOKIE);
                }
                url = next;
                continue;
            }
            if codings.len() > self.config.max_codings {
                return Err(Failure::new(
                    ErrorKind::Decode,
                    format!(
                        "{} stacked content codings (more than --max-codings {})",
                        codings.len(),
                        self.config.max_codings
                    ),
                ));
            }
            if codings.is_empty() && length.is_some_and(|len| len > self.config.max_body) {
                return Err(too_large(self.config.max_body));
            }
            // Boxed (the file and the futures that open and commit it): only `--out-dir` runs pay
            // for them; without a file, an attempt allocates nothing more and its future grew by
            // 48 bytes (3,024 to 3,072: the write in `body::read`).
            let mut file = match &self.config.out_dir {
                Some(dir) => Some(Box::new(
                    Box::pin(files::BodyFile::create(dir, &req.key)).await?,
                )),
                None => None,
            };
            let body = body::read(
                resp,
                &codings,
                self.config.max_body,
                self.config.body,
                file.as_deref_mut(),
                received,
            )
            .await?;
            if let Some(conn) = conn {
                self.pool.give_back(&url[..url::Position::AfterPort], conn);
            }
            let body_path = match file {
                Some(f) => Some(Box::pin(f.commit()).await?),
                None => None,
            };
            return Ok(Response {
                retry_after,
                status,
                ttfb,
                bytes: body.bytes,
                final_url: url,
                sha256: body.sha256,
                body: body.kept,
                body_path,
                reuse,
            });
        }
    }

    /// What an attempt needs of `resp`'s head, and its body; `protocol` if the head is over
    /// `max_head`. Takes the response apart at once: borrowed in the attempt's future, the whole
    /// `http::Response` (152 bytes) stayed in it through the body's read, in every request's box.
    // Out of line: inlined into the attempt's poll, the look-ups in it were not, and the whole
    // cost ~80 instructions more per request (callgrind).
    #[inline(never)]
    fn head(&self, resp: http::Response<Incoming>) -> Result<(Head, Incoming), Failure> {
        // One pass over the head: its size, and the first value of each header read below (what
        // `HeaderMap::get` gives), so that only headers present are looked up by name (each
        // look-up hashes the name: five of them were ~600 instructions a request).
        // hyper stops reading a head at about its buffer's size, which can be up to twice the
        // limit; what it accepted is measured here (status line, and each "name: value\r\n").
        let mut size: usize = 17;
        let (mut location, mut retry_after, mut length) = (None, None, None);
        let (mut connection, mut encoding) = (false, false);
        for (name, value) in resp.headers() {
            size += name.as_str().len() + value.len() + 4;
            if name == header::CONTENT_LENGTH {
                length = length.or(Some(value));
            } else if name == header::CONNECTION {
                connection = true;
            } else if name == header::CONTENT_ENCODING {
                encoding = true;
            } else if name == header::LOCATION {
                location = location.or(Some(value));
            } else if name == header::RETRY_AFTER {
                retry_after = retry_after.or(Some(value));
            }
        }
        if size > self.config.max_head {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "response head of about {size} bytes is over --max-head {}",
                    self.config.max_head
                ),
            ));
        }
        let head = Head {
            status: resp.status(),
            reuse: reuse_of(resp.version(), connection.then(|| resp.headers())),
            location: location.cloned(),
            retry_after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
            length: length.and_then(parse_length),
            // Without a coding to undo, the body is what arrives; an unknown coding is kept as is.
            codings: match self.config.raw || !encoding {
                true => Vec::new(),
                false => body::codings(resp.headers()).unwrap_or_default(),
            },
        };
        Ok((head, resp.into_body()))
    }
}

/// What [`Client::attempt`] reads from a response's head (see [`Client::head`]).
struct Head {
    status: StatusCode,
    /// What this response shows of its connection.
    reuse: Reuse,
    location: Option<HeaderValue>,
    retry_after: Option<Duration>,
    /// `Content-Length`, if given and a number.
    length: Option<u64>,
    /// The content codings to undo, outermost last; empty with `raw`.
    codings: Vec<body::Coding>,
}

/// What a response shows of the connection it came on: where a host's next requests may run
/// depends on it ([`Hosts::next_start`](super::hosts::Hosts::next_start)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Nothing shown yet (no response, or an https origin before ALPN has chosen).
    Unknown,
    /// HTTP/1.x kept alive: one request at a time on a connection, which is reused.
    KeepAlive,
    /// The server closes each connection after its response: every request opens one.
    Closes,
    /// HTTP/2: one connection carries every request to the origin.
    Multiplexed,
}

/// What a response of `version` with `headers` (`None`: no `Connection` header) shows of its
/// connection.
fn reuse_of(version: http::Version, headers: Option<&HeaderMap>) -> Reuse {
    match version {
        http::Version::HTTP_2 | http::Version::HTTP_3 => Reuse::Multiplexed,
        _ if closes_connection(version, headers) => Reuse::Closes,
        _ => Reuse::KeepAlive,
    }
}

/// Whether the server closes the connection after a response of `version` with `headers`
/// (`None`: it has no `Connection` header): `Connection: close`, or HTTP/1.0 without
/// `keep-alive`.
fn closes_connection(version: http::Version, headers: Option<&HeaderMap>) -> bool {
    let has = |token: &str| {
        headers.is_some_and(|h| {
            h.get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    match version {
        http::Version::HTTP_10 | http::Version::HTTP_09 => !has("keep-alive"),
        http::Version::HTTP_11 => has("close"),
        _ => false,
    }
}

/// Ends once fewer than `limit` bytes a second arrived over one whole `window` (windows follow each
/// other from the attempt's start), as curl's `--speed-limit` with `--speed-time`: a large download
/// at a good pace is never cut, a drip is. Pending while the attempt is fast enough.
async fn too_slow(received: &AtomicU64, limit: u64, window: Duration) -> Failure {
    let need = (limit as f64 * window.as_secs_f64()).ceil() as u64;
    let mut seen = 0;
    let mut since = tokio::time::Instant::now();
    loop {
        // A check that runs late (a busy runtime) measures a longer window against the same
        // need: lateness never makes a transfer look slower than it is.
        // A window too long for an instant to hold never ends: no check is due.
        match since.checked_add(window) {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
        since = tokio::time::Instant::now();
        let now = received.load(Ordering::Relaxed);
        let got = now - seen;
        if got < need {
            return Failure::new(
                ErrorKind::Timeout,
                format!(
                    "slower than --speed-limit {limit} bytes/s for --speed-time {window:?}: \
                     {got} bytes in the last {window:?}"
                ),
            );
        }
        seen = now;
    }
}

/// `work`'s output, or `None` if `deadline` (tokio's clock) passes first; no deadline, no timer.
async fn by_deadline<F: Future>(
    deadline: Option<tokio::time::Instant>,
    work: F,
) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, work).await.ok(),
        None => Some(work.await),
    }
}

/// Sends `req` for `url` on `conn`. Requests travel in origin form (their path and query):
/// HTTP/1.1 sends them so with a `Host` header (or in absolute form, without user info, with the
/// proxy's `Proxy-Authorization`, when `forward`ed to an `https://` proxy), HTTP/2 with the whole
/// URL. A request given back unsent is in origin form again.
async fn send_on(
    conn: Conn,
    url: &Url,
    mut req: HReq,
    forward: Option<&Forward>,
) -> Result<Sent, SendError> {
    match conn {
        Conn::H1(mut tx) => {
            if tx.ready().await.is_err() {
                return Err(SendError::NotSent(req));
            }
            let mut added_host = false;
            if !req.headers().contains_key(header::HOST)
                && let Some(host) = host_header(url)
            {
                req.headers_mut().insert(header::HOST, host);
                added_host = true;
            }
            *req.version_mut() = http::Version::HTTP_11;
            let mut added_auth = false;
            // Origin form as it came, or absolute form (less user info) for a proxy.
            let mut origin = None;
            if let Some(f) = forward {
                let absolute = absolute_uri(url).map_err(SendError::Failed)?;
                origin = Some(std::mem::replace(req.uri_mut(), absolute_form(&absolute)));
                if let Some(auth) = &f.authorization
                    && !req.headers().contains_key(header::PROXY_AUTHORIZATION)
                {
                    req.headers_mut()
                        .insert(header::PROXY_AUTHORIZATION, auth.clone());
                    added_auth = true;
                }
            }
            match tx.try_send_request(*req).await {
                Ok(resp) => Ok((resp, Some(tx))),
                Err(mut e) => match e.take_message() {
                    Some(mut req) => {
                        // Back to the form every connection kind starts from.
                        if let Some(origin) = origin {
                            *req.uri_mut() = origin;
                        }
                        if added_host {
                            req.headers_mut().remove(header::HOST);
                        }
                        if added_auth {
                            req.headers_mut().remove(header::PROXY_AUTHORIZATION);
                        }
                        Err(SendError::NotSent(Box::new(req)))
                    }
                    None => Err(SendError::Failed(classify(&e.into_error(), false))),
                },
            }
        }
        Conn::H2(mut tx) => {
            if tx.ready().await.is_err() {
                return Err(SendError::NotSent(req));
            }
            // HTTP/2 sends the scheme and authority as pseudo-headers.
            let absolute = h2_uri(url, req.uri()).map_err(SendError::Failed)?;
            let origin = std::mem::replace(req.uri_mut(), absolute);
            *req.version_mut() = http::Version::HTTP_2;
            match tx.try_send_request(*req).await {
                Ok(resp) => Ok((resp, None)),
                Err(mut e) => match e.take_message() {
                    Some(mut req) => {
                        *req.uri_mut() = origin;
                        Err(SendError::NotSent(Box::new(req)))
                    }
                    None => Err(SendError::Failed(classify(&e.into_error(), false))),
                },
            }
        }
    }
}

/// `url` as a `Uri` in origin form: its path and query (a special URL's path is never empty).
fn origin_uri(url: &Url) -> Result<Uri, http::uri::InvalidUri> {
    let pq = &url[url::Position::BeforePath..url::Position::AfterQuery];
    Uri::from_maybe_shared(Bytes::copy_from_slice(pq.as_bytes()))
}

/// `url` as an absolute `Uri` (for a new connection, HTTP/2 and proxies).
fn absolute_uri(url: &Url) -> Result<Uri, Failure> {
    url.as_str()
        .parse()
        .map_err(|e| Failure::new(ErrorKind::InvalidInput, format!("{url}: {e}")))
}

/// `Authorization: Basic` from `url`'s user info (percent-decoded), if it has any.
fn userinfo_auth(url: &Url) -> Option<HeaderValue> {
    connector::credentials(url).map(|(user, pass)| connector::basic_auth(&user, &pass))
}

/// The URI of an HTTP/2 request to `url`: its scheme, its host and port without user info
/// (RFC 9113 §8.3.1 forbids user info in `:authority`; the whole URL sent it, password and all),
/// and the path and query of `origin_form`, parsed already (re-parsing the whole URL cost ~700
/// instructions a request).
fn h2_uri(url: &Url, origin_form: &Uri) -> Result<Uri, Failure> {
    let invalid = |e: &dyn std::fmt::Display| {
        Failure::new(
            ErrorKind::InvalidInput,
            format!("{}: {e}", crate::secrets::mask_url(url.as_str())),
        )
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(match url.scheme() {
        "https" => http::uri::Scheme::HTTPS,
        _ => http::uri::Scheme::HTTP,
    });
    parts.authority = Some(
        url[url::Position::BeforeHost..url::Position::AfterPort]
            .parse()
            .map_err(|e| invalid(&e))?,
    );
    parts.path_and_query = origin_form.path_and_query().cloned();
    Uri::from_parts(parts).map_err(|e| invalid(&e))
}

/// `Host` for an HTTP/1.1 request to `url`: its host, with the port unless it is the scheme's
/// default. A parsed URL already leaves a default port out and keeps user info apart, so this is
/// a slice of it (taking it apart from the request's `Uri` cost ~600 instructions a request).
fn host_header(url: &Url) -> Option<HeaderValue> {
    HeaderValue::from_str(&url[url::Position::BeforeHost..url::Position::AfterPort]).ok()
}

/// `uri` in absolute form for a proxy: as it is, less any user info (`user:pass@`).
fn absolute_form(uri: &Uri) -> Uri {
    let Some((_, host)) = uri.authority().and_then(|a| a.as_str().rsplit_once('@')) else {
        return uri.clone();
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = host.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Whether two URLs have the same scheme, host and port: a redirect that changes any of them drops
/// `Authorization` and `Cookie` (as curl does since CVE-2022-27776: an https to http hop on the same
/// host would otherwise send them in clear).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `Content-Length`'s value as a number, if it is one.
fn parse_length(v: &HeaderValue) -> Option<u64> {
    v.to_str().ok()?.parse().ok()
}

fn too_large(max: u64) -> Failure {
    Failure::new(
        ErrorKind::BodyTooLarge,
        format!("body larger than {max} bytes"),
    )
}

/// Maps a client error to its stored kind by walking the source chain; `connecting` says it
/// happened while opening the connection (DNS, TCP, proxy, TLS, HTTP/2 preface).
fn classify(err: &(dyn StdError + 'static), connecting: bool) -> Failure {
    let mut detail = err.to_string();
    let mut kind = None;
    let is_connect = connecting;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if !std::ptr::eq(e as *const _ as *const u8, err as *const _ as *const u8) {
            detail.push_str(": ");
            detail.push_str(&e.to_string());
        }
        if kind.is_none() {
            kind = kind_of(e);
        }
        // h2 words its errors for people ("unexpected internal error encountered"): the code is
        // what a bug report or a server's log will name.
        if let Some(reason) = e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            detail.push_str(&format!(" (HTTP/2 {reason:?})"));
        }
        cur = e.source();
    }
    let kind = match kind {
        Some(k) => k,
        None if is_connect && detail.contains("dns error") => ErrorKind::Dns,
        None if is_connect => ErrorKind::Connect,
        None => ErrorKind::Io,
    };
    Failure::new(kind, detail)
}

fn kind_of(e: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    use std::io::ErrorKind as Io;
    if e.downcast_ref::<rustls::Error>().is_some() {
        return Some(ErrorKind::Tls);
    }
    if let Some(mut io) = e.downcast_ref::<std::io::Error>() {
        // hyper-rustls wraps the TLS handshake's io::Error in another one, and an io::Error's
        // source() skips the error it wraps: look through the wrappers with get_ref().
        while let Some(inner) = io.get_ref() {
            if inner.is::<rustls::Error>() {
                return Some(ErrorKind::Tls);
            }
            match inner.downcast_ref::<std::io::Error>() {
                Some(i) => io = i,
                None => break,
            }
        }
        // HTTP/2 keeps only the text of the I/O error that ended a connection, so a TLS alert
        // the server sent after the handshake (TLS 1.3 refusing a missing client certificate)
        // arrives as an io::Error saying what rustls said.
        if io.to_string().starts_with("received fatal alert: ") {
            return Some(ErrorKind::Tls);
        }
        return match io.kind() {
            Io::ConnectionRefused
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::AddrNotAvailable
            | Io::TimedOut => Some(ErrorKind::Connect),
            Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => {
                Some(ErrorKind::Reset)
            }
            // hyper's HTTP/1.1 body decoder says a body is badly framed (a chunk size that is not
            // hex or overflows, trailers over its limit) with these; TLS errors, also InvalidData,
            // were recognised above.
            Io::InvalidData | Io::InvalidInput => Some(ErrorKind::Protocol),
            _ => None,
        };
    }
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        return h2_kind(h2);
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
            return Some(ErrorKind::Reset);
        }
        if h.is_parse() || h.is_parse_status() {
            return Some(ErrorKind::Protocol);
        }
        if h.is_timeout() {
            return Some(ErrorKind::Timeout);
        }
    }
    None
}

/// The kind of an HTTP/2 stream or connection error. A stream the server refused before
/// processing it (`REFUSED_STREAM`, RFC 9113 §8.7: safe to retry) or a graceful close (`NO_ERROR`)
/// is `reset`, as a closed connection is; every other code (a stream the server reset with an
/// error, a CONTINUATION flood, a header list over `--max-head`, which h2 refuses locally) is a
/// protocol violation. An I/O error inside is left to the rest of the chain.
fn h2_kind(e: &h2::Error) -> Option<ErrorKind> {
    if e.is_io() {
        return None;
    }
    Some(match e.reason() {
        Some(h2::Reason::REFUSED_STREAM) if e.is_remote() => ErrorKind::Reset,
        Some(h2::Reason::NO_ERROR) if e.is_remote() => ErrorKind::Reset,
        _ => ErrorKind::Protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::{host_header, origin_uri, same_origin};
    use http::Uri;
    use url::Url;

    #[test]
    fn host_header_drops_user_info_and_default_ports() {
        let h = |s: &str| host_header(&Url::parse(s).unwrap()).unwrap();
        assert_eq!(h("http://a.test/x"), "a.test");
        assert_eq!(h("http://a.test:8080/x"), "a.test:8080");
        assert_eq!(h("http://127.0.0.1:9/"), "127.0.0.1:9");
        assert_eq!(h("http://a.test:80/"), "a.test");
        assert_eq!(h("https://a.test:443/"), "a.test");
        assert_eq!(h("https://a.test:80/"), "a.test:80");
        assert_eq!(h("http://u:p@a.test:8080/"), "a.test:8080");
        assert_eq!(h("http://u@a.test/"), "a.test");
        assert_eq!(h("http://[::1]:65535/"), "[::1]:65535");
    }

    #[test]
    fn absolute_form_drops_user_info() {
        let a = |s: &str| super::absolute_form(&s.parse::<Uri>().unwrap()).to_string();
        assert_eq!(a("http://u:p@a.test:8080/x?q"), "http://a.test:8080/x?q");
        assert_eq!(a("http://a.test/x"), "http://a.test/x");
    }

    #[test]
    fn a_response_closes_its_connection_by_connection_close_or_as_http_1_0() {
        use super::Reuse::{Closes, KeepAlive, Multiplexed};
        use http::Version;
        // As `Client::head` calls it: the headers only when a `Connection` header is there.
        let reuse = |version, connection: Option<&str>| {
            let mut r = http::Response::builder().version(version);
            if let Some(c) = connection {
                r = r.header(http::header::CONNECTION, c);
            }
            let r = r.body(()).unwrap();
            super::reuse_of(version, connection.map(|_| r.headers()))
        };
        assert_eq!(reuse(Version::HTTP_11, None), KeepAlive);
        assert_eq!(reuse(Version::HTTP_11, Some("close")), Closes);
        assert_eq!(reuse(Version::HTTP_11, Some("Upgrade, Close")), Closes);
        assert_eq!(reuse(Version::HTTP_11, Some("keep-alive")), KeepAlive);
        assert_eq!(reuse(Version::HTTP_10, None), Closes);
        assert_eq!(reuse(Version::HTTP_10, Some("Keep-Alive")), KeepAlive);
        assert_eq!(reuse(Version::HTTP_2, Some("close")), Multiplexed);
        assert_eq!(reuse(Version::HTTP_2, None), Multiplexed);
    }

    #[test]
    fn an_http2_uri_has_no_user_info_and_keeps_path_and_query() {
        let h2 = |s: &str| {
            let url = Url::parse(s).unwrap();
            super::h2_uri(&url, &origin_uri(&url).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(h2("https://u:p@a.test/x?q=1"), "https://a.test/x?q=1");
        assert_eq!(h2("http://a.test:8080"), "http://a.test:8080/");
        assert_eq!(h2("https://a.test:443/x"), "https://a.test/x");
        assert_eq!(h2("http://u@[::1]:9/p#frag"), "http://[::1]:9/p");
    }

    #[test]
    fn origin_form_is_path_and_query() {
        let o = |s: &str| origin_uri(&Url::parse(s).unwrap()).unwrap().to_string();
        assert_eq!(o("http://a.test/x/y?q=1"), "/x/y?q=1");
        assert_eq!(o("http://a.test"), "/");
        assert_eq!(o("http://a.test?q"), "/?q");
        assert_eq!(o("http://u:p@a.test:8080/x#part"), "/x");
    }

    #[test]
    fn origin_is_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.test/x"),
            &u("https://a.test:443/y")
        ));
        assert!(same_origin(&u("http://A.test/x"), &u("http://a.test/y")));
        assert!(!same_origin(
            &u("https://a.test:8443/"),
            &u("http://a.test:8443/")
        ));
        assert!(!same_origin(
            &u("http://a.test/"),
            &u("http://a.test:8080/")
        ));
        assert!(!same_origin(&u("http://a.test/"), &u("http://b.a.test/")));
    }
}
