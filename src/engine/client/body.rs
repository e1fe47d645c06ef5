//! Reading a response body: decoding by `Content-Encoding` (gzip, deflate, br, zstd) in a stream,
//! counting, hashing or keeping the decoded bytes, or passing them on to a file (`--out-dir`), and
//! never holding more than the limit. Owns no connection and names no file; it only consumes one body.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::HeaderMap;
use http::header;
use http_body_util::{BodyExt, BodyStream};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use super::files::BodyFile;
use super::{BodyMode, Failure, classify, too_large};
use crate::outcome::ErrorKind;

/// Sent as `Accept-Encoding` unless the request sets its own or `--raw` is given.
pub(super) const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// Decoded bytes are read in chunks of this size; with the decoders' own windows this bounds the
/// memory of one body that is not kept.
const CHUNK: usize = 16 * 1024;

/// A content coding the client can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The codings of a response, in the order the server applied them. `identity` is dropped. `None`
/// when any coding is unknown: such a body is kept as received, since it cannot be decoded.
pub(super) fn codings(headers: &HeaderMap) -> Option<Vec<Coding>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value.to_str().ok()?;
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let c = match token.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Br,
                "zstd" => Coding::Zstd,
                _ => return None,
            };
            out.push(c);
        }
    }
    Some(out)
}

/// What a body came to: its (decoded) size, and its hash or bytes as the mode asks.
pub(super) struct Body {
    pub bytes: u64,
    pub sha256: Option<String>,
    pub kept: Option<Bytes>,
}

/// Counts, hashes or keeps bytes, failing past `max`.
struct Sink {
    n: u64,
    max: u64,
    hasher: Option<Sha256>,
    kept: Option<BytesMut>,
}

impl Sink {
    fn new(max: u64, mode: BodyMode) -> Sink {
        Sink {
            n: 0,
            max,
            hasher: (mode == BodyMode::Hash).then(Sha256::new),
            kept: (mode == BodyMode::Store).then(BytesMut::new),
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.n += data.len() as u64;
        if self.n > self.max {
            return Err(too_large(self.max));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        if let Some(k) = self.kept.as_mut() {
            k.extend_from_slice(data);
        }
        Ok(())
    }

    fn finish(self) -> Body {
        Body {
            bytes: self.n,
            sha256: self.hasher.map(|h| crate::request::to_hex(&h.finalize())),
            kept: self.kept.map(BytesMut::freeze),
        }
    }
}

/// Reads `body` to its end, undoing `codings` (last applied, first undone), never holding more than
/// `max` decoded bytes and never buffering the body unless `mode` keeps it. With `file`, each
/// decoded chunk is also appended to it once counted (a chunk past `max` is not written). Bytes
/// as received (before decoding) are added to `received`, which `--speed-limit` watches.
pub(super) async fn read(
    body: hyper::body::Incoming,
    codings: &[Coding],
    max: u64,
    mode: BodyMode,
    mut file: Option<&mut BodyFile>,
    received: &AtomicU64,
) -> Result<Body, Failure> {
    let mut sink = Sink::new(max, mode);
    if codings.is_empty() {
        let mut body = body;
        // `let ... else`, not `while let` / `if let`: their scrutinees (the frame, ~100 bytes
        // each) stayed in this future's state across the file's write, the largest of its awaits.
        loop {
            let Some(frame) = body.frame().await else {
                return Ok(sink.finish());
            };
            let Ok(data) = frame.map_err(|e| classify(&e, false))?.into_data() else {
                continue;
            };
            received.fetch_add(data.len() as u64, Relaxed);
            sink.push(&data)?;
            if let Some(f) = file.as_deref_mut() {
                f.write(&data).await?;
            }
        }
    }
    let stream = BodyStream::new(body)
        .try_filter_map(|frame| {
            let data = frame.into_data().ok();
            if let Some(d) = &data {
                received.fetch_add(d.len() as u64, Relaxed);
            }
            std::future::ready(Ok(data))
        })
        .map_err(io::Error::other);
    let mut raw = StreamReader::new(stream);
    // An empty body (HEAD, 204, 304, or a server that labels nothing) has nothing to decode.
    if raw
        .fill_buf()
        .await
        .map_err(|e| read_failure(&e, None))?
        .is_empty()
    {
        return Ok(sink.finish());
    }
    let mut reader: Box<dyn AsyncBufRead + Send + Unpin> = Box::new(raw);
    for &c in codings.iter().rev() {
        reader = match c {
            Coding::Gzip => {
                let mut d = GzipDecoder::new(reader);
                d.multiple_members(true);
                Box::new(BufReader::with_capacity(CHUNK, d))
            }
            Coding::Deflate => Box::new(BufReader::with_capacity(CHUNK, ZlibDecoder::new(reader))),
            Coding::Br => Box::new(BufReader::with_capacity(CHUNK, BrotliDecoder::new(reader))),
            Coding::Zstd => {
                let mut d = ZstdDecoder::new(reader);
                d.multiple_members(true);
                Box::new(BufReader::with_capacity(CHUNK, d))
            }
        };
    }
    let names: Vec<&str> = codings.iter().map(|c| c.name()).collect();
    let names = names.join(", ");
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| read_failure(&e, Some(&names)))?;
        if n == 0 {
            return Ok(sink.finish());
        }
        sink.push(&buf[..n])?;
        if let Some(f) = file.as_deref_mut() {
            f.write(&buf[..n]).await?;
        }
    }
}

/// A read error is the transport's (a hyper error passed through the decoders) or the decoder's.
fn read_failure(e: &io::Error, codings: Option<&str>) -> Failure {
    if let Some(inner) = e.get_ref()
        && inner.is::<hyper::Error>()
    {
        return classify(inner, false);
    }
    match codings {
        Some(c) => Failure::new(
            ErrorKind::Decode,
            format!("cannot decode the {c} body: {e}"),
        ),
        None => classify(e, false),
    }
}
