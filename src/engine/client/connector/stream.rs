//! The byte stream every connection is: TCP, or TLS over another stream (to the target, to an
//! `https://` proxy, or to the target inside TLS to a proxy), and the TLS handshake that makes the
//! latter. Owns no connection policy (`connector` decides what to open; `pool` keeps them).
//!
//! The TLS variant is boxed: a rustls connection's state is about 1 KB, and hyper keeps the stream
//! inline in each connection's task, so a plain TCP connection would otherwise be as large as a
//! TLS one (nested, for `https://` proxies: twice over). `size_of` is checked by a test below.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::BoxError;

/// A connection's bytes: TCP, or TLS over a stream.
pub(in crate::engine::client) enum Stream {
    /// Plain TCP (also a CONNECT or SOCKS5 tunnel through a plain proxy).
    Tcp(TcpStream),
    /// TLS over TCP, or over TLS to an `https://` proxy.
    Tls(Box<TlsStream<Stream>>),
}

/// What hyper speaks HTTP over.
pub(in crate::engine::client) type Io = TokioIo<Stream>;

impl Stream {
    /// `tcp` as hyper takes it.
    pub(super) fn tcp(tcp: TokioIo<TcpStream>) -> Io {
        TokioIo::new(Stream::Tcp(tcp.into_inner()))
    }
}

impl Connection for Stream {
    /// Whether HTTP/2 was agreed by ALPN. Nothing else: hyper-util's TCP connection info costs two
    /// system calls and an allocation per connection, and nothing reads it.
    fn connected(&self) -> Connected {
        match self {
            Stream::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// TLS with one configuration (its ALPN protocols set): to targets, or to `https://` proxies.
#[derive(Clone)]
pub(super) struct Tls(TlsConnector);

impl Tls {
    pub(super) fn new(config: Arc<rustls::ClientConfig>) -> Tls {
        Tls(TlsConnector::from(config))
    }

    /// A TLS handshake over `io` with `dst`'s host, whose certificate is checked against that
    /// name (never the address connected to).
    pub(super) async fn handshake(&self, dst: &Uri, io: Io) -> Result<Io, BoxError> {
        let name = server_name(dst)?;
        let tls = self
            .0
            .connect(name, io.into_inner())
            .await
            // Wrapped as hyper-rustls wrapped it: `classify` finds the rustls error inside.
            .map_err(io::Error::other)?;
        Ok(TokioIo::new(Stream::Tls(Box::new(tls))))
    }
}

/// The name the server's certificate must hold: `dst`'s host, brackets off an IPv6 address.
/// Allocates only for a DNS name (an address is kept as one).
fn server_name(dst: &Uri) -> Result<ServerName<'static>, BoxError> {
    let host = dst.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(ServerName::try_from(host)?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_connection_is_not_sized_for_tls() {
        // 2,184 bytes when TLS was inline in a nested `MaybeHttpsStream`; TCP alone is 40.
        let size = std::mem::size_of::<Io>();
        assert!(size <= 48, "{size} bytes");
    }

    #[test]
    fn server_names_are_hosts_without_brackets() {
        let name = |s: &str| server_name(&s.parse::<Uri>().unwrap()).map(|n| format!("{n:?}"));
        assert!(name("https://a.test:8443/x").unwrap().contains("a.test"));
        assert!(name("https://[::1]:8443/").unwrap().contains("IpAddress"));
        assert!(name("https://127.0.0.1/").unwrap().contains("IpAddress"));
    }
}
