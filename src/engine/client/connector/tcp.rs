//! TCP connections for `connector`: the destination's addresses (an IP literal as it is, a name
//! through `dns`), each tried in turn with an equal share of `--connect-timeout`, and when a name
//! has addresses of both families, the other family raced after 300 ms (RFC 6555), as hyper-util's
//! `HttpConnector` did. Sockets are created non-blocking (it set `O_NONBLOCK` afterwards, two more
//! system calls per connection) and with `TCP_NODELAY`. Errors read as its did (`dns error`,
//! `tcp connect error` and the cause), which `classify` relies on. Owns no proxy or TLS logic.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::super::dns::Resolver;

/// How long the first address family has before the other one is tried alongside it.
const HAPPY_EYEBALLS: Duration = Duration::from_millis(300);

/// Why no TCP connection was made: what failed (`dns error`, `tcp connect error`, ...), and the
/// error underneath.
#[derive(Debug)]
pub(super) struct ConnectError {
    what: &'static str,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

impl ConnectError {
    fn new(what: &'static str, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ConnectError {
            what,
            cause: cause.into(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

/// A TCP connection to `host:port`: an address as it is, a name resolved by `resolver`.
pub(super) async fn connect(
    resolver: &Resolver,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return connect_addr(SocketAddr::new(ip, port), timeout).await;
    }
    let ips = resolver
        .lookup(host)
        .await
        .map_err(|e| ConnectError::new("dns error", e))?;
    let addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    connect_any(addrs, timeout).await
}

/// The first of `addrs` that connects; the other address family (if any) is raced after
/// [`HAPPY_EYEBALLS`]. Each family's addresses share `timeout` equally.
pub(super) async fn connect_any(
    addrs: Vec<SocketAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (preferred, fallback): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    if fallback.is_empty() {
        return in_turn(&preferred, timeout).await;
    }
    let preferred = in_turn(&preferred, timeout);
    tokio::pin!(preferred);
    tokio::select! {
        r = &mut preferred => return match r {
            Ok(s) => Ok(s),
            Err(_) => in_turn(&fallback, timeout).await,
        },
        () = tokio::time::sleep(HAPPY_EYEBALLS) => {}
    }
    let fallback = in_turn(&fallback, timeout);
    tokio::pin!(fallback);
    // Whichever connects first; if one side fails, the other's result.
    tokio::select! {
        r = &mut preferred => match r {
            Ok(s) => Ok(s),
            Err(_) => fallback.await,
        },
        r = &mut fallback => match r {
            Ok(s) => Ok(s),
            Err(_) => preferred.await,
        },
    }
}

/// `addrs` one after another, each with `timeout / addrs.len()`; the first error if none connects.
async fn in_turn(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, ConnectError> {
    let each = timeout / u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
    let mut first = None;
    for &addr in addrs {
        match connect_addr(addr, each).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| {
        ConnectError::new(
            "tcp connect error",
            io::Error::new(io::ErrorKind::NotConnected, "no address to connect to"),
        )
    }))
}

/// One TCP connection to `addr`, given up after `timeout`.
pub(super) async fn connect_addr(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| ConnectError::new("tcp open error", e))?;
    // Requests are written whole: Nagle's algorithm would only hold the last segment back.
    socket
        .set_nodelay(true)
        .map_err(|e| ConnectError::new("tcp open error", e))?;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ConnectError::new("tcp connect error", e)),
        Err(elapsed) => Err(ConnectError::new(
            "tcp connect error",
            io::Error::new(io::ErrorKind::TimedOut, elapsed),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_other_family_is_tried_when_the_first_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Nothing listens on [::1] at this port (or IPv6 is off): the IPv4 address must win.
        let addrs = vec![
            SocketAddr::new("::1".parse().unwrap(), port),
            SocketAddr::new("127.0.0.1".parse().unwrap(), port),
        ];
        let s = connect_any(addrs, Duration::from_secs(5)).await.unwrap();
        assert_eq!(s.peer_addr().unwrap().port(), port);
        assert!(s.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_refused_connection_reads_as_hyper_utils_did() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = connect_addr(
            SocketAddr::new("127.0.0.1".parse().unwrap(), port),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "tcp connect error");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("refused"), "{cause}");
    }
}
