//! The fault server: raw TCP that misbehaves on purpose, one behaviour per path
//! (`/fault/{name}`, anything after a further `/` ignored so that keys can differ), for the tests of
//! what each fault is recorded as (`tests/cli/faults.rs`) and for `scripts/soak.sh`
//! (`fanout serve --faults`). It writes its bytes by hand, since hyper's server cannot send a bad
//! status line, a cut chunked body or a CONTINUATION flood; HTTP/2 (prior knowledge) requests are
//! read with the h2 crate and answered with frames written by hand. Owns its listener and
//! connections; shares only the accept-queue length with [`super::Server`].
//!
//! A TLS ClientHello (an `https://` URL to this server) is never answered: the handshake stalls.
//! Every connection ends when the client closes it or the server stops; nothing is held after.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One behaviour of the fault server: its name (the path is `/fault/{name}`) and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The path's name, e.g. `reset-mid-body`.
    pub name: &'static str,
    /// What the server does, in a few words.
    pub does: &'static str,
}

/// Every behaviour, in the order of `docs/errors.md`. `ok` is the one that behaves.
pub const FAULTS: &[Fault] = &[
    f("ok", "200 with a small body, connection kept alive"),
    f("hang", "reads the request, never answers"),
    f(
        "headers-then-silence",
        "a head announcing 1000 bytes, then nothing",
    ),
    f("empty", "reads the request, closes without a byte"),
    f(
        "reset-before",
        "reads the request, resets the connection (RST)",
    ),
    f("reset-mid-body", "head and 1000 of 100000 bytes, then RST"),
    f("short-body", "Content-Length: 1000, 10 bytes, then closes"),
    f("cut-chunked", "chunked: half a chunk, then closes"),
    f("bad-chunk-size", "chunked: a chunk size that is not hex"),
    f("chunk-size-overflow", "chunked: a chunk size over 64 bits"),
    f("endless-trailers", "chunked: trailer lines that never end"),
    f("bad-status", "a status line whose code is not a number"),
    f(
        "http09",
        "an HTTP/0.9 answer: a body without status line or headers",
    ),
    f("big-head", "header lines that never end"),
    f("endless-body", "a chunked body that never ends"),
    f(
        "gzip-bomb",
        "gzip members of 1 MiB of zeros each, never ending",
    ),
    f(
        "broken-gzip",
        "Content-Encoding: gzip on a body that is not gzip",
    ),
    f(
        "gzip-bad-chunk",
        "a chunked gzip body whose second chunk size is not hex",
    ),
    f("codings-chain", "Content-Encoding: gzip nine times"),
    f("redirect-loop", "302 to itself"),
    f("bad-location", "302 with an unparsable Location"),
    f("redirect-ftp", "302 to an ftp:// URL"),
    f("redirect-no-location", "302 without Location"),
    f(
        "slow-close",
        "a complete response with Connection: close, then never closes",
    ),
    f("drip", "a chunked body of one byte a second"),
    f("retry-after-seconds", "503 with Retry-After: 1"),
    f(
        "retry-after-date",
        "503 with Retry-After: an HTTP date 2 s ahead",
    ),
    f(
        "retry-after-past",
        "503 with Retry-After: an HTTP date in 2015",
    ),
    f("retry-after-garbage", "503 with Retry-After: soon, maybe"),
    f(
        "retry-after-huge",
        "503 with Retry-After: 99999999999 (3,000 years)",
    ),
    f(
        "h2-continuation-flood",
        "HTTP/2: HEADERS, then CONTINUATION frames that never end",
    ),
    f(
        "h2-big-head",
        "HTTP/2: a 96 KiB header list in HEADERS and CONTINUATION frames",
    ),
    f(
        "h2-reset",
        "HTTP/2: head, part of the body, then RST_STREAM INTERNAL_ERROR",
    ),
    f("h2-refused", "HTTP/2: RST_STREAM REFUSED_STREAM at once"),
];

const fn f(name: &'static str, does: &'static str) -> Fault {
    Fault { name, does }
}

/// What the fault server has seen, readable while it runs.
#[derive(Debug, Default)]
pub struct FaultStats {
    connections: AtomicU64,
    requests: AtomicU64,
    open: AtomicU64,
}

impl FaultStats {
    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }
    /// Request heads read (HTTP/1.1 and HTTP/2).
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
    /// Connections open now: once a client is done, 0 (every fault lets go when the client does).
    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }
}

/// Decrements the open count when a connection's task ends, however it ends.
struct Open(Arc<FaultStats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// A running fault server; stops when [`FaultServer::stop`] is called or the handle is dropped.
pub struct FaultServer {
    addr: SocketAddr,
    stats: Arc<FaultStats>,
    stop: CancellationToken,
}

impl FaultServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving on the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<FaultServer> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(super::LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(FaultStats::default());
        let stop = CancellationToken::new();
        let bomb = Bytes::from(gzip_member(1 << 20).await?);
        tokio::spawn(accept_loop(listener, bomb, stats.clone(), stop.clone()));
        Ok(FaultServer { addr, stats, stop })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr/fault/{name}`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/fault/{name}", self.addr)
    }

    /// An `https://` URL to this server: its TLS handshake never gets an answer.
    pub fn https_url(&self) -> String {
        format!("https://{}/fault/tls-stall", self.addr)
    }

    /// Counters of what the server has seen.
    pub fn stats(&self) -> &Arc<FaultStats> {
        &self.stats
    }

    /// Stops accepting and ends every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One gzip member holding `n` zeros (about 1 KiB for 1 MiB): sent over and over, a bomb that
/// costs the server nothing.
async fn gzip_member(n: u64) -> std::io::Result<Vec<u8>> {
    let zeros = tokio::io::AsyncReadExt::take(tokio::io::repeat(0), n);
    let mut enc = async_compression::tokio::bufread::GzipEncoder::new(
        tokio::io::BufReader::with_capacity(1 << 16, zeros),
    );
    let mut out = Vec::new();
    enc.read_to_end(&mut out).await?;
    Ok(out)
}

async fn accept_loop(
    listener: TcpListener,
    bomb: Bytes,
    stats: Arc<FaultStats>,
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
        stats.open.fetch_add(1, Relaxed);
        let open = Open(stats.clone());
        let stop = stop.clone();
        let bomb = bomb.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(stream, bomb, &open.0) => {}
                _ = stop.cancelled() => {}
            }
            drop(open);
        });
    }
}

/// The longest request head read; a longer one closes the connection.
const MAX_REQUEST_HEAD: usize = 64 << 10;

/// What the client sends first on an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What becomes of the connection once a fault is done.
enum Then {
    /// Read the next request.
    KeepAlive,
    /// Close it (FIN).
    Close,
    /// Reset it (RST).
    Reset,
    /// Keep it open, reading and discarding, until the client closes it.
    Hold,
}

async fn connection(mut stream: TcpStream, bomb: Bytes, stats: &FaultStats) {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let head_len = loop {
            if buf.first() == Some(&0x16) {
                // A TLS ClientHello: never answered.
                return hold(&mut stream).await;
            }
            if buf.starts_with(b"PRI ") || (buf.len() < 4 && b"PRI ".starts_with(&buf)) {
                if buf.len() >= H2_PREFACE.len() {
                    if !buf.starts_with(H2_PREFACE) {
                        return;
                    }
                    stats.requests.fetch_add(1, Relaxed);
                    return h2(stream, buf.freeze()).await;
                }
            } else if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_REQUEST_HEAD {
                return;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        stats.requests.fetch_add(1, Relaxed);
        let head = buf.split_to(head_len);
        let head = String::from_utf8_lossy(&head);
        let target = head.split(' ').nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/");
        let name = path
            .strip_prefix("/fault/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("");
        let close_asked = head.to_ascii_lowercase().contains("\r\nconnection: close");
        let then = match fault(&mut stream, name, path, &bomb).await {
            Ok(then) => then,
            Err(_) => return,
        };
        match then {
            Then::KeepAlive if !close_asked => continue,
            Then::KeepAlive | Then::Close => return,
            Then::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Then::Hold => return hold(&mut stream).await,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads and discards until the client closes the connection (or it fails).
async fn hold(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
}

/// A response with a `Content-Length` body.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Writes chunks of `data` until the client goes away.
async fn endless(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<Then> {
    loop {
        stream.write_all(data).await?;
    }
}

async fn fault(
    stream: &mut TcpStream,
    name: &str,
    path: &str,
    bomb: &Bytes,
) -> std::io::Result<Then> {
    let s = stream;
    Ok(match name {
        "ok" => {
            s.write_all(&response("200 OK", &[], b"{\"ok\":true}"))
                .await?;
            Then::KeepAlive
        }
        "hang" => Then::Hold,
        "headers-then-silence" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await?;
            Then::Hold
        }
        "empty" => Then::Close,
        "reset-before" => Then::Reset,
        "reset-mid-body" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .await?;
            s.write_all(&[b'x'; 1000]).await?;
            // Let the head and the first bytes arrive before the reset drops what is unsent.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Then::Reset
        }
        "short-body" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                .await?;
            Then::Close
        }
        "cut-chunked" => {
            s.write_all(CHUNKED_HEAD).await?;
            s.write_all(b"14\r\n0123456789").await?;
            Then::Close
        }
        "bad-chunk-size" => {
            s.write_all(CHUNKED_HEAD).await?;
            s.write_all(b"zz\r\nhello\r\n0\r\n\r\n").await?;
            Then::Hold
        }
        "chunk-size-overflow" => {
            s.write_all(CHUNKED_HEAD).await?;
            s.write_all(b"fffffffffffffffffffff\r\nhello\r\n").await?;
            Then::Hold
        }
        "endless-trailers" => {
            s.write_all(CHUNKED_HEAD).await?;
            s.write_all(b"5\r\nhello\r\n0\r\n").await?;
            let line = format!("X-Trailer: {}\r\n", "t".repeat(1000));
            endless(s, line.as_bytes()).await?
        }
        "bad-status" => {
            s.write_all(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")
                .await?;
            Then::Hold
        }
        "http09" => {
            s.write_all(b"<html>an HTTP/0.9 answer: no status line, no headers</html>\n")
                .await?;
            Then::Close
        }
        "big-head" => {
            s.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
            endless(s, line.as_bytes()).await?
        }
        "endless-body" => {
            s.write_all(CHUNKED_HEAD).await?;
            let mut chunk = b"4000\r\n".to_vec();
            chunk.extend_from_slice(&[b'z'; 0x4000]);
            chunk.extend_from_slice(b"\r\n");
            endless(s, &chunk).await?
        }
        "gzip-bomb" => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await?;
            let mut chunk = format!("{:x}\r\n", bomb.len()).into_bytes();
            chunk.extend_from_slice(bomb);
            chunk.extend_from_slice(b"\r\n");
            endless(s, &chunk).await?
        }
        "broken-gzip" => {
            s.write_all(&response(
                "200 OK",
                &[("Content-Encoding", "gzip")],
                b"this body is not gzip at all",
            ))
            .await?;
            Then::Close
        }
        "gzip-bad-chunk" => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await?;
            // Half of a valid member, then bad framing: the decoder must not get the blame.
            let half = &bomb[..bomb.len() / 2];
            let mut chunk = format!("{:x}\r\n", half.len()).into_bytes();
            chunk.extend_from_slice(half);
            chunk.extend_from_slice(b"\r\nzz\r\n");
            s.write_all(&chunk).await?;
            Then::Hold
        }
        "codings-chain" => {
            let codings = ["gzip"; 9].join(", ");
            s.write_all(&response(
                "200 OK",
                &[("Content-Encoding", &codings)],
                b"xxxx",
            ))
            .await?;
            Then::Close
        }
        "redirect-loop" => {
            s.write_all(&response("302 Found", &[("Location", path)], b""))
                .await?;
            Then::KeepAlive
        }
        "bad-location" => {
            s.write_all(&response(
                "302 Found",
                &[("Location", "http://[::1/nowhere")],
                b"",
            ))
            .await?;
            Then::KeepAlive
        }
        "redirect-ftp" => {
            s.write_all(&response(
                "302 Found",
                &[("Location", "ftp://127.0.0.1/file")],
                b"",
            ))
            .await?;
            Then::KeepAlive
        }
        "redirect-no-location" => {
            s.write_all(&response("302 Found", &[], b"")).await?;
            Then::KeepAlive
        }
        "slow-close" => {
            s.write_all(&response("200 OK", &[("Connection", "close")], b"ok"))
                .await?;
            Then::Hold
        }
        "drip" => {
            s.write_all(CHUNKED_HEAD).await?;
            loop {
                s.write_all(b"1\r\nx\r\n").await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        "retry-after-seconds" => retry_after(s, "1").await?,
        "retry-after-date" => {
            let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
            retry_after(s, &when).await?
        }
        "retry-after-past" => retry_after(s, "Wed, 21 Oct 2015 07:28:00 GMT").await?,
        "retry-after-garbage" => retry_after(s, "soon, maybe").await?,
        "retry-after-huge" => retry_after(s, "99999999999").await?,
        n if n.starts_with("h2-") => {
            s.write_all(&response(
                "400 Bad Request",
                &[],
                b"HTTP/2 faults need HTTP/2 with prior knowledge (fanout --http2)\n",
            ))
            .await?;
            Then::KeepAlive
        }
        _ => {
            let names: Vec<&str> = FAULTS.iter().map(|f| f.name).collect();
            let body = format!("not a fault; try /fault/{{{}}}\n", names.join(","));
            s.write_all(&response("404 Not Found", &[], body.as_bytes()))
                .await?;
            Then::KeepAlive
        }
    })
}

async fn retry_after(s: &mut TcpStream, value: &str) -> std::io::Result<Then> {
    s.write_all(&response(
        "503 Service Unavailable",
        &[("Retry-After", value)],
        b"",
    ))
    .await?;
    Ok(Then::KeepAlive)
}

/// The connection's reading side for the h2 crate: first the bytes already read, then the socket.
/// What h2 writes is dropped: every frame the client sees is written by hand, so a server
/// preface or acknowledgement h2 buffered can never reach the client twice.
struct Tap<'a> {
    pre: Bytes,
    io: &'a mut TcpStream,
}

impl AsyncRead for Tap<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// HTTP/2 frame types and flags used here (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// HPACK static table entries `:status: 200` and `:status: 404`, indexed (RFC 7541 Appendix A).
const STATUS_200: u8 = 0x88;
const STATUS_404: u8 = 0x8d;
/// The largest frame payload a peer accepts before it raises SETTINGS_MAX_FRAME_SIZE.
const MAX_FRAME: usize = 16384;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix, its first byte or-ed with `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A literal header field without indexing, new name, no Huffman coding (RFC 7541 §6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// Reads the first request of an HTTP/2 connection with the h2 crate, then answers with frames
/// written by hand as its fault says.
async fn h2(mut stream: TcpStream, pre: Bytes) {
    let (path, id) = {
        let tap = Tap {
            pre,
            io: &mut stream,
        };
        let Ok(mut conn) = h2::server::handshake(tap).await else {
            return;
        };
        let Some(Ok((req, respond))) = conn.accept().await else {
            return;
        };
        (req.uri().path().to_owned(), respond.stream_id().as_u32())
    };
    let name = path
        .strip_prefix("/fault/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    let mut preface = frame(SETTINGS, 0, 0, &[]);
    preface.extend(frame(SETTINGS, ACK, 0, &[]));
    if stream.write_all(&preface).await.is_err() {
        return;
    }
    if h2_fault(&mut stream, name, id).await.is_ok() {
        hold(&mut stream).await;
    }
}

async fn h2_fault(s: &mut TcpStream, name: &str, id: u32) -> std::io::Result<()> {
    match name {
        "ok" => {
            let mut out = frame(HEADERS, END_HEADERS, id, &[STATUS_200]);
            out.extend(frame(DATA, END_STREAM, id, b"{\"ok\":true}"));
            s.write_all(&out).await
        }
        "h2-continuation-flood" => {
            s.write_all(&frame(HEADERS, 0, id, &[STATUS_200])).await?;
            let mut field = Vec::new();
            hpack_literal(&mut field, b"x-flood", b"1");
            let more = frame(CONTINUATION, 0, id, &field);
            loop {
                s.write_all(&more).await?;
            }
        }
        "h2-big-head" => {
            let mut block = vec![STATUS_200];
            let pad = vec![b'p'; 1000];
            while block.len() < 96 << 10 {
                hpack_literal(&mut block, b"x-pad", &pad);
            }
            let pieces: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
            let mut out = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                let kind = if i == 0 { HEADERS } else { CONTINUATION };
                let mut flags = if i == 0 { END_STREAM } else { 0 };
                if i + 1 == pieces.len() {
                    flags |= END_HEADERS;
                }
                out.extend(frame(kind, flags, id, piece));
            }
            s.write_all(&out).await
        }
        "h2-reset" => {
            let mut out = frame(HEADERS, END_HEADERS, id, &[STATUS_200]);
            out.extend(frame(DATA, 0, id, b"the first part of a body"));
            // INTERNAL_ERROR (RFC 9113 §7).
            out.extend(frame(RST_STREAM, 0, id, &2u32.to_be_bytes()));
            s.write_all(&out).await
        }
        "h2-refused" => {
            // REFUSED_STREAM.
            s.write_all(&frame(RST_STREAM, 0, id, &7u32.to_be_bytes()))
                .await
        }
        _ => {
            s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, id, &[STATUS_404]))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FAULTS, hpack_int};

    #[test]
    fn hpack_integers_follow_rfc_7541_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        out.clear();
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }

    #[test]
    fn fault_names_are_distinct() {
        let mut names: Vec<&str> = FAULTS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAULTS.len());
    }
}
