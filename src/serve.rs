//! A small local HTTP API (hyper, HTTP/1.1 and h2c; HTTPS with [`Server::start_tls`]) for examples,
//! tests and benchmarks: `fanout serve`.
//! Owns its listener and counts what it sees (requests, peak concurrency); never touches stores.
//!
//! Routes:
//! - `/item/{id}`: a small JSON document.
//! - `/close/{id}`: the same, with `Connection: close` (the server then closes the connection).
//! - `/delay/{ms}`: answers after that many milliseconds.
//! - `/status/{code}`: answers with that status.
//! - `/redirect/{n}`: redirects n times, then lands on `/item/redirected`; `/redirect-loop` never ends.
//! - `/echo`: the request's method, path, query, HTTP version, headers and body as JSON.
//! - `/fail-once/{id}`: 503 the first time each id is asked for, 200 after.
//! - `/fail/{n}/{id}`: 503 for the first n requests of each such path, 200 after.
//! - `/retry-after/{secs}/{id}`: 429 with `Retry-After: secs` the first time each such path is
//!   asked for, 200 after.
//! - `/redirect-to?url=URL`: a 302 to the (percent-encoded) absolute URL given, e.g. another server.
//! - `/encoded/{coding}/{id}`: `/item/{id}`'s document compressed with `gzip`, `deflate`, `br` or
//!   `zstd`, with that `Content-Encoding` (sent whatever the request's `Accept-Encoding`).
//! - `/gzip-bomb/{mib}`: that many MiB of zeros, gzip-compressed (about 1,000:1 on the wire).
//! - `/bad-encoding/{coding}`: a body labelled with that `Content-Encoding` that is not encoded.
//! - `/throttle/{id}`: the first request opens a one-second pause; every request during the pause
//!   gets 429 with `Retry-After` (whole seconds left); afterwards 200.
//! - `/quota/{n}/{id}`: at most n requests per second (windows of one second, the first opened by
//!   the first such request, each next one by the first request after the last ended) get 200;
//!   the rest of a window get 429 with `Retry-After: 1`. A rate-limited API, for `fanout demo`.
//! - `/limited/{k}/{id}`: at most k requests at once are served (after 20 ms); above that, 503 at
//!   once. For adaptive-concurrency tests.
//! - `/bytes/{n}/{id}`: n bytes (at most 64 MiB) that depend only on n and id ([`pattern`]), with
//!   `Content-Length`.
//! - `/drip/{n}/{ms}/{id}`: the same n bytes (at most 4 GiB) in 16 KiB chunks, ms milliseconds
//!   apart (at most 60 s), with no `Content-Length` (chunked in HTTP/1.1). For slow large bodies.
//!
//! Every route first waits the server's configured latency.
//!
//! [`faults`] is another server, of raw TCP, that misbehaves in one way per path
//! (`fanout serve --faults`).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod faults;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Added to every response.
    pub latency: Duration,
    /// Count requests per path and query (for tests that check how often each URL was fetched).
    pub count_paths: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            count_paths: false,
        }
    }
}

/// What the server has seen, readable while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    requests: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    count_paths: bool,
    /// Requests per path and query, when counting; also the memory of `/fail-once`.
    /// A std Mutex: held only for a map update, never across an await.
    hits: Mutex<HashMap<String, u32>>,
    /// Arrival time and path of every request, when counting.
    arrivals: Mutex<Vec<(Instant, String)>>,
    /// When the `/throttle` pause started.
    throttled_at: Mutex<Option<Instant>>,
    /// The current `/quota` window: when it opened, and requests counted in it.
    quota: Mutex<Option<(Instant, u64)>>,
    /// Requests being served on `/limited`, and those turned away with 503.
    limited_in_flight: AtomicU64,
    limited_rejected: AtomicU64,
}

impl ServerStats {
    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }
    /// The most requests that were being handled at the same moment.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Relaxed)
    }

    /// Requests per path and query (`/item/1?x=2`), when the server counts them.
    pub fn hits(&self) -> HashMap<String, u32> {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Arrival time and path of every request, in arrival order, when the server counts them.
    pub fn arrivals(&self) -> Vec<(Instant, String)> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When the first `/throttle` request opened the pause.
    pub fn throttled_at(&self) -> Option<Instant> {
        *self.throttled_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests `/limited` turned away with 503.
    pub fn limited_rejected(&self) -> u64 {
        self.limited_rejected.load(Relaxed)
    }

    /// Counts a hit on `path_and_query`; returns how many there have been, this one included.
    fn hit(&self, path_and_query: &str) -> u32 {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        let n = hits.entry(path_and_query.to_owned()).or_default();
        *n += 1;
        if self.count_paths {
            self.arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), path_and_query.to_owned()));
        }
        *n
    }
}

/// Decrements the in-flight count when a handler ends, however it ends.
struct InFlight(Arc<ServerStats>);

impl InFlight {
    fn enter(stats: &Arc<ServerStats>) -> InFlight {
        stats.requests.fetch_add(1, Relaxed);
        let now = stats.in_flight.fetch_add(1, Relaxed) + 1;
        stats.max_in_flight.fetch_max(now, Relaxed);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A running server; stops when [`Server::stop`] is called or the handle is dropped.
pub struct Server {
    addr: SocketAddr,
    /// `http`, or `https` when serving TLS.
    scheme: &'static str,
    stats: Arc<ServerStats>,
    stop: CancellationToken,
}

impl Server {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: ServeConfig) -> std::io::Result<Server> {
        Server::bind(config, None).await
    }

    /// Like [`Server::start`], over TLS with `tls` (offer ALPN `h2` and `http/1.1` in it for
    /// HTTP/2); [`Server::url`] then gives `https://` URLs.
    pub async fn start_tls(
        config: ServeConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Server> {
        Server::bind(config, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn bind(
        config: ServeConfig,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Server> {
        // A deep accept queue: with tokio's default of 1,024, a client opening ~1,000 connections
        // at once overflowed it, and each dropped handshake cost the client a 200 ms retransmit.
        let socket = if config.addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(config.addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ServerStats {
            count_paths: config.count_paths,
            ..ServerStats::default()
        });
        let stop = CancellationToken::new();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(accept_loop(
            listener,
            tls,
            config.latency,
            stats.clone(),
            stop.clone(),
        ));
        Ok(Server {
            addr,
            scheme,
            stats,
            stop,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` (`https://` over TLS) followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// Counters of what the server has seen.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Stops accepting connections; open connections end with their requests.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    latency: Duration,
    stats: Arc<ServerStats>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of file descriptors or similar: back off briefly rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Relaxed);
        let stats = stats.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, latency, stats.clone()));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Some(tls) => {
                    // A failed handshake (the client rejected the certificate) just ends here.
                    let stream = tokio::select! {
                        s = tls.accept(stream) => match s { Ok(s) => s, Err(_) => return },
                        _ = stop.cancelled() => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        });
    }
}

/// Accept queue length asked for (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 8192;

/// How early tokio's timer hands over to the precise timer thread.
const COARSE_MARGIN: Duration = Duration::from_millis(2);

/// A deadline waited for by the precise timer thread, and the task to wake then.
type Wakeup = crate::due::Due<tokio::sync::oneshot::Sender<()>, Instant>;

/// The sending side of the precise timer thread, started on first use.
fn precise_timer() -> Option<&'static std::sync::mpsc::SyncSender<Wakeup>> {
    static TIMER: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<Wakeup>>> =
        std::sync::OnceLock::new();
    TIMER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Wakeup>(4096);
            std::thread::Builder::new()
                .name("fanout-serve-timer".into())
                .spawn(move || {
                    let mut heap = std::collections::BinaryHeap::new();
                    loop {
                        let now = Instant::now();
                        while heap.peek().is_some_and(|w: &Wakeup| w.at <= now) {
                            if let Some(w) = heap.pop() {
                                let _ = w.item.send(());
                            }
                        }
                        let next = match heap.peek() {
                            Some(w) => rx.recv_timeout(w.at.saturating_duration_since(now)),
                            None => rx
                                .recv()
                                .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                        };
                        match next {
                            Ok(w) => heap.push(w),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Sleeps for `d`, accurate to a few tens of microseconds. tokio's timer wheel ticks in whole
/// milliseconds and rounds deadlines up, so `tokio::time::sleep(100ms)` answered in 101–102 ms
/// here, and `--latency` is what benchmarks of latency-bound lists divide by. So: tokio's timer
/// until 2 ms before the deadline, then a thread that sleeps on the OS's high-resolution timers.
async fn sleep_precisely(d: Duration) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let Some(deadline) = Instant::now().checked_add(d) else {
        return tokio::time::sleep(d).await; // centuries: precision does not matter
    };
    if d > COARSE_MARGIN {
        tokio::time::sleep_until((deadline - COARSE_MARGIN).into()).await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let wakeup = Wakeup {
        at: deadline,
        seq: SEQ.fetch_add(1, Relaxed),
        item: tx,
    };
    match precise_timer().map(|t| t.try_send(wakeup)) {
        Some(Ok(())) => {
            let _ = rx.await;
        }
        // No timer thread, or it is 4,096 hand-overs behind: the coarse timer will do.
        _ => tokio::time::sleep_until(deadline.into()).await,
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts are valid")
}

/// A response body: whole (every route but one, with no allocation for the choice), or `/drip`'s.
type Body = Either<Full<Bytes>, Drip>;

async fn handle(
    req: Request<Incoming>,
    latency: Duration,
    stats: Arc<ServerStats>,
) -> Result<Response<Body>, Infallible> {
    let _guard = InFlight::enter(&stats);
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // The routes that answer by how often their path was asked for count even when not counting.
    let remembers = ["/fail-once/", "/fail/", "/retry-after/"];
    let hits = if stats.count_paths || remembers.iter().any(|r| pq.starts_with(r)) {
        stats.hit(pq)
    } else {
        0
    };
    if !latency.is_zero() {
        sleep_precisely(latency).await;
    }
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let head = parts.next().unwrap_or("");
    let arg = parts.next().unwrap_or("");
    let resp = match head {
        "item" => json(
            StatusCode::OK,
            serde_json::json!({ "id": arg, "name": format!("item {arg}") }),
        ),
        "close" => {
            let mut r = json(StatusCode::OK, serde_json::json!({ "id": arg }));
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
        "delay" => match arg.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                json(StatusCode::OK, serde_json::json!({ "delayed_ms": ms }))
            }
            Err(_) => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "use /delay/{ms}" }),
            ),
        },
        "status" => match arg
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(code) => json(code, serde_json::json!({ "status": code.as_u16() })),
            None => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "use /status/{code}" }),
            ),
        },
        "redirect" => match arg.parse::<u32>() {
            Ok(0) => redirect("/item/redirected"),
            Ok(n) => redirect(&format!("/redirect/{}", n - 1)),
            Err(_) => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "use /redirect/{n}" }),
            ),
        },
        "redirect-loop" => redirect("/redirect-loop"),
        "fail-once" if hits <= 1 => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "try again" }),
        ),
        "fail-once" => json(
            StatusCode::OK,
            serde_json::json!({ "id": arg, "attempt": hits }),
        ),
        "fail" => match arg.split_once('/').map(|(n, _)| n.parse::<u32>()) {
            Some(Ok(n)) if hits <= n => json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": "try again", "attempt": hits }),
            ),
            Some(Ok(_)) => json(StatusCode::OK, serde_json::json!({ "attempt": hits })),
            _ => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "use /fail/{n}/{id}" }),
            ),
        },
        "retry-after" => match arg.split_once('/').map(|(s, _)| s.parse::<u64>()) {
            Some(Ok(secs)) if hits <= 1 => {
                let mut r = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    serde_json::json!({ "error": "slow down" }),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
                r
            }
            Some(Ok(_)) => json(StatusCode::OK, serde_json::json!({ "attempt": hits })),
            _ => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "use /retry-after/{secs}/{id}" }),
            ),
        },
        "throttle" => throttle(&stats, arg),
        "quota" => quota(&stats, arg),
        "limited" => limited(&stats, arg).await,
        "echo" => {
            let method = req.method().to_string();
            let version = format!("{:?}", req.version());
            let query = req.uri().query().map(str::to_owned);
            // HTTP/2's `:authority` (HTTP/1.1 requests come in origin form: none).
            let authority = req.uri().authority().map(|a| a.to_string());
            let headers: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "method": method,
                    "path": path,
                    "query": query,
                    "authority": authority,
                    "version": version,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&body),
                }),
            )
        }
        "redirect-to" => {
            let to = req.uri().query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "url")
                    .map(|(_, v)| v.into_owned())
            });
            match to {
                Some(to) if http::HeaderValue::from_str(&to).is_ok() => redirect(&to),
                _ => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "use /redirect-to?url=URL" }),
                ),
            }
        }
        "encoded" => {
            let (coding, id) = arg.split_once('/').unwrap_or((arg, ""));
            let doc = serde_json::json!({ "id": id, "name": format!("item {id}") }).to_string();
            match encode(coding, doc.as_bytes()).await {
                Some(body) => encoded(coding, body),
                None => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "use /encoded/{gzip|deflate|br|zstd}/{id}" }),
                ),
            }
        }
        "gzip-bomb" => match arg.parse::<u64>() {
            Ok(mib) if mib <= 4096 => {
                let zeros = tokio::io::AsyncReadExt::take(tokio::io::repeat(0), mib << 20);
                let mut enc = async_compression::tokio::bufread::GzipEncoder::new(
                    tokio::io::BufReader::with_capacity(1 << 16, zeros),
                );
                let mut body = Vec::new();
                match tokio::io::AsyncReadExt::read_to_end(&mut enc, &mut body).await {
                    Ok(_) => encoded("gzip", body),
                    Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({})),
                }
            }
            _ => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "use /gzip-bomb/{mib} (at most 4096)" }),
            ),
        },
        "bad-encoding" => encoded(arg, b"this body is not encoded at all".to_vec()),
        "bytes" => {
            let (n, id) = arg.split_once('/').unwrap_or((arg, ""));
            match n.parse::<usize>() {
                Ok(n) if n <= 64 << 20 => Response::new(Full::new(Bytes::from(pattern(id, n)))),
                _ => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "use /bytes/{n}/{id} (n at most 64 MiB)" }),
                ),
            }
        }
        "drip" => {
            let mut it = arg.splitn(3, '/');
            let n = it.next().and_then(|n| n.parse::<u64>().ok());
            let ms = it.next().and_then(|ms| ms.parse::<u64>().ok());
            match (n, ms) {
                (Some(n), Some(ms)) if n <= 4 << 30 && ms <= 60_000 => {
                    return Ok(Response::new(Either::Right(Drip {
                        left: n,
                        every: Duration::from_millis(ms),
                        pattern: Pattern::new(it.next().unwrap_or("")),
                        pause: None,
                    })));
                }
                _ => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "use /drip/{n}/{ms}/{id} (n at most 4 GiB, ms at most 60000)" }),
                ),
            }
        }
        "" => json(
            StatusCode::OK,
            serde_json::json!({ "routes": ["/item/{id}", "/delay/{ms}", "/status/{code}", "/redirect/{n}", "/redirect-loop", "/redirect-to?url=URL", "/echo", "/fail-once/{id}", "/fail/{n}/{id}", "/retry-after/{secs}/{id}", "/throttle/{id}", "/limited/{k}/{id}", "/encoded/{coding}/{id}", "/gzip-bomb/{mib}", "/bad-encoding/{coding}", "/bytes/{n}/{id}", "/drip/{n}/{ms}/{id}"] }),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not found" }),
        ),
    };
    Ok(resp.map(Either::Left))
}

/// The `n` bytes `/bytes/{n}/{id}` and `/drip/{n}/{ms}/{id}` send for `id`: a xorshift stream
/// seeded by the id, so that distinct ids (almost always) get distinct bodies.
///
/// ```
/// let a = fanout::serve::pattern("a", 1000);
/// assert_eq!(a.len(), 1000);
/// assert_eq!(a, fanout::serve::pattern("a", 1000));
/// assert_ne!(a, fanout::serve::pattern("b", 1000));
/// assert_eq!(a[..10], fanout::serve::pattern("a", 10)[..]);
/// ```
pub fn pattern(id: &str, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    Pattern::new(id).fill(&mut out);
    out
}

/// The generator behind [`pattern`]; filling in pieces whose lengths are multiples of 8 gives the
/// same bytes as filling at once.
struct Pattern(u64);

impl Pattern {
    fn new(id: &str) -> Pattern {
        // FNV-1a; a zero state would stay zero.
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Pattern(h | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// `/drip`'s body: [`pattern`]'s bytes in 16 KiB chunks, the first at once, then one every `every`.
struct Drip {
    left: u64,
    every: Duration,
    pattern: Pattern,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if let Some(pause) = self.pause.as_mut()
            && pause.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        let n = self.left.min(16 * 1024) as usize;
        let mut chunk = vec![0; n];
        self.pattern.fill(&mut chunk);
        self.left -= n as u64;
        let every = self.every;
        self.pause = Some(Box::pin(tokio::time::sleep(every)));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

fn throttle(stats: &ServerStats, id: &str) -> Response<Full<Bytes>> {
    let now = Instant::now();
    let started = *stats
        .throttled_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(now);
    let until = started + Duration::from_secs(1);
    if now < until {
        let left = (until - now).as_secs_f64().ceil().max(1.0) as u64;
        let mut r = json(
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({ "error": "slow down" }),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(left));
        return r;
    }
    json(StatusCode::OK, serde_json::json!({ "id": id }))
}

fn quota(stats: &ServerStats, arg: &str) -> Response<Full<Bytes>> {
    let Some(Ok(n)) = arg.split('/').next().map(str::parse::<u64>) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "use /quota/{n}/{id}" }),
        );
    };
    let now = Instant::now();
    let counted = {
        let mut q = stats.quota.lock().unwrap_or_else(|e| e.into_inner());
        let window = match *q {
            Some((opened, count)) if now < opened + Duration::from_secs(1) => (opened, count + 1),
            _ => (now, 1),
        };
        *q = Some(window);
        window.1
    };
    if counted > n {
        let mut r = json(
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({ "error": "quota exceeded" }),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(1));
        return r;
    }
    json(StatusCode::OK, serde_json::json!({ "quota": n }))
}

async fn limited(stats: &ServerStats, arg: &str) -> Response<Full<Bytes>> {
    let k: u64 = arg
        .split('/')
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1);
    let now = stats.limited_in_flight.fetch_add(1, Relaxed) + 1;
    let resp = if now > k {
        stats.limited_rejected.fetch_add(1, Relaxed);
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "over capacity" }),
        )
    } else {
        tokio::time::sleep(Duration::from_millis(20)).await;
        json(StatusCode::OK, serde_json::json!({ "limited": k }))
    };
    stats.limited_in_flight.fetch_sub(1, Relaxed);
    resp
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, to)
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

/// `data` compressed with `coding` (gzip, deflate, br, zstd); `None` for another coding.
async fn encode(coding: &str, data: &[u8]) -> Option<Vec<u8>> {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let r = match coding {
        "gzip" => GzipEncoder::new(data).read_to_end(&mut out).await,
        "deflate" => ZlibEncoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliEncoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdEncoder::new(data).read_to_end(&mut out).await,
        _ => return None,
    };
    r.ok().map(|_| out)
}

/// A 200 whose body is `body` with `Content-Encoding: coding`.
fn encoded(coding: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, coding)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "bad coding" }),
            )
        })
}
