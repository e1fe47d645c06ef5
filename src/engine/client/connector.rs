//! Opening TCP connections for the client: `--resolve` overrides (host and port to a fixed address,
//! falling back to the system resolver), and `--proxy` tunnels (HTTP CONNECT, SOCKS5). TLS is
//! layered on top by hyper-rustls, so certificates are checked against the URL's host, never the
//! overriding address. Owns no pool; `pool` keeps the connections it opens.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

/// A `--resolve host:port:addr` entry: connections to `host:port` go to `addr` with no DNS look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    /// Host name as written in URLs (compared without regard to case).
    pub host: String,
    /// Port the entry applies to.
    pub port: u16,
    /// Address connected to instead.
    pub addr: IpAddr,
}

impl FromStr for Resolve {
    type Err = String;

    /// Parses `host:port:addr`, as curl's `--resolve` (one address; IPv6 in brackets or bare).
    ///
    /// ```
    /// use fanout::engine::client::Resolve;
    /// let r: Resolve = "example.test:8443:127.0.0.1".parse().unwrap();
    /// assert_eq!((r.host.as_str(), r.port, r.addr.to_string().as_str()), ("example.test", 8443, "127.0.0.1"));
    /// let v6: Resolve = "example.test:80:[::1]".parse().unwrap();
    /// assert!(v6.addr.is_ipv6());
    /// assert!("example.test:80".parse::<Resolve>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Resolve, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected HOST:PORT:ADDR, e.g. example.com:443:127.0.0.1".into());
        };
        if host.is_empty() || host.contains(['/', '[', ']', ' ']) {
            return Err(format!("'{host}' is not a host name"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("'{port}' is not a port (1-65535)"))?;
        if addr.contains(',') {
            return Err("give one address per --resolve entry".into());
        }
        let bare = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let addr = bare
            .parse::<IpAddr>()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        Ok(Resolve {
            host: host.to_ascii_lowercase(),
            port,
            addr,
        })
    }
}

/// How a proxy carries connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// An HTTP proxy, asked for a tunnel with `CONNECT host:port` (for http and https URLs alike).
    Connect,
    /// A SOCKS5 proxy. `remote_dns` (`socks5h://`) has the proxy resolve host names; `socks5://`
    /// resolves them here.
    Socks5 {
        /// Whether the proxy resolves host names.
        remote_dns: bool,
    },
}

/// A `--proxy` every connection goes through: `http://[user:pass@]host:port`,
/// `socks5://...` or `socks5h://...`.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    protocol: ProxyProtocol,
    /// `http://host:port` of the proxy itself: where the TCP connection is opened.
    addr: Uri,
    credentials: Option<(String, String)>,
}

impl Proxy {
    /// How the proxy carries connections.
    pub fn protocol(&self) -> ProxyProtocol {
        self.protocol
    }

    /// The proxy's own address, `http://host:port`.
    pub fn addr(&self) -> &Uri {
        &self.addr
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("protocol", &self.protocol)
            .field("addr", &self.addr)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl FromStr for Proxy {
    type Err = String;

    /// Parses a proxy URL; a missing port is 1080 for SOCKS and 80 for http.
    ///
    /// ```
    /// use fanout::engine::client::{Proxy, ProxyProtocol};
    /// let p: Proxy = "http://user:pw@127.0.0.1:3128".parse().unwrap();
    /// assert_eq!(p.protocol(), ProxyProtocol::Connect);
    /// assert_eq!(p.addr().to_string(), "http://127.0.0.1:3128/");
    /// let s: Proxy = "socks5h://127.0.0.1".parse().unwrap();
    /// assert_eq!(s.addr().port_u16(), Some(1080));
    /// assert!("https://127.0.0.1:3128".parse::<Proxy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Proxy, String> {
        let url = url::Url::parse(s)
            .map_err(|e| format!("'{s}' is not a URL ({e}); e.g. http://127.0.0.1:3128"))?;
        let (protocol, default_port) = match url.scheme() {
            "http" => (ProxyProtocol::Connect, 80),
            "socks5" => (ProxyProtocol::Socks5 { remote_dns: false }, 1080),
            "socks5h" => (ProxyProtocol::Socks5 { remote_dns: true }, 1080),
            other => {
                return Err(format!(
                    "proxy scheme '{other}' is not supported (use http://, socks5:// or socks5h://)"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("'{s}' has no host"))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!("'{s}': a proxy URL has no path or query"));
        }
        let port = url.port().unwrap_or(default_port);
        let addr = format!("http://{host}:{port}")
            .parse::<Uri>()
            .map_err(|e| format!("'{s}': {e}"))?;
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
            Some((decode(url.username()), decode(url.password().unwrap_or(""))))
        };
        Ok(Proxy {
            protocol,
            addr,
            credentials,
        })
    }
}

/// TCP connections with `--resolve` overrides applied.
#[derive(Clone)]
pub(super) struct Direct {
    http: HttpConnector,
    overrides: Arc<HashMap<(String, u16), IpAddr>>,
}

impl Direct {
    /// The address `--resolve` gives for the destination, if any.
    fn overridden(&self, dst: &Uri) -> Option<SocketAddr> {
        if self.overrides.is_empty() {
            return None;
        }
        let host = dst.host()?.to_ascii_lowercase();
        let port = port_of(dst);
        let ip = self.overrides.get(&(host, port))?;
        Some(SocketAddr::new(*ip, port))
    }
}

impl Service<Uri> for Direct {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // HttpConnector is always ready; each call works on its own clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let dst = match self.overridden(&dst) {
            Some(addr) => with_authority(&dst, &addr.to_string()),
            None => Ok(dst),
        };
        let mut http = self.http.clone();
        Box::pin(async move { Ok(http.call(dst?).await?) })
    }
}

/// The connector under TLS: direct, or through a proxy.
#[derive(Clone)]
pub(super) enum Connector {
    Direct(Direct),
    Tunnel(Tunnel<Direct>),
    Socks {
        socks: SocksV5<Direct>,
        direct: Direct,
        remote_dns: bool,
    },
}

impl Connector {
    /// Builds the connector over `http` (TCP settings) with `--resolve` entries and a proxy.
    pub(super) fn new(http: HttpConnector, resolve: &[Resolve], proxy: Option<&Proxy>) -> Self {
        let overrides = resolve
            .iter()
            .map(|r| ((r.host.to_ascii_lowercase(), r.port), r.addr))
            .collect();
        let direct = Direct {
            http,
            overrides: Arc::new(overrides),
        };
        let Some(proxy) = proxy else {
            return Connector::Direct(direct);
        };
        match proxy.protocol {
            ProxyProtocol::Connect => {
                let mut tunnel = Tunnel::new(proxy.addr.clone(), direct);
                if let Some((user, pass)) = &proxy.credentials {
                    tunnel = tunnel.with_auth(basic_auth(user, pass));
                }
                Connector::Tunnel(tunnel)
            }
            ProxyProtocol::Socks5 { remote_dns } => {
                // Names are resolved by the proxy or, for socks5://, asynchronously here (never by
                // hyper-util's blocking local look-up).
                let mut socks = SocksV5::new(proxy.addr.clone(), direct.clone()).local_dns(false);
                if let Some((user, pass)) = &proxy.credentials {
                    socks = socks.with_auth(user.clone(), pass.clone());
                }
                Connector::Socks {
                    socks,
                    direct,
                    remote_dns,
                }
            }
        }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        match self {
            Connector::Direct(d) => d.call(dst),
            Connector::Tunnel(t) => {
                // hyper-util's tunnel assumes port 443 when the URI has none; say it.
                let dst = with_authority(&dst, &authority_with_port(&dst));
                let mut t = t.clone();
                Box::pin(async move { Ok(t.call(dst?).await?) })
            }
            Connector::Socks {
                socks,
                direct,
                remote_dns,
            } => {
                let mut socks = socks.clone();
                let direct = direct.clone();
                let remote_dns = *remote_dns;
                Box::pin(async move {
                    let port = port_of(&dst);
                    let target = match direct.overridden(&dst) {
                        Some(addr) => addr.to_string(),
                        None if remote_dns => authority_with_port(&dst),
                        None => local_lookup(&dst, port).await?.to_string(),
                    };
                    let dst = with_authority(&dst, &target)?;
                    Ok(socks.call(dst).await?)
                })
            }
        }
    }
}

/// Resolves the destination's host here, for `socks5://`.
async fn local_lookup(dst: &Uri, port: u16) -> Result<SocketAddr, BoxError> {
    let host = dst.host().ok_or("URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("dns error: {e}"))?;
    Ok(addrs
        .next()
        .ok_or_else(|| format!("dns error: no address for {host}"))?)
}

fn port_of(dst: &Uri) -> u16 {
    dst.port_u16()
        .unwrap_or(if dst.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

fn authority_with_port(dst: &Uri) -> String {
    format!("{}:{}", dst.host().unwrap_or_default(), port_of(dst))
}

/// `dst` with its authority replaced (scheme and path kept).
fn with_authority(dst: &Uri, authority: &str) -> Result<Uri, BoxError> {
    let mut parts = dst.clone().into_parts();
    parts.authority = Some(authority.parse()?);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Ok(Uri::from_parts(parts)?)
}

fn basic_auth(user: &str, pass: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut v = http::HeaderValue::from_str(&format!("Basic {token}"))
        .expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}
