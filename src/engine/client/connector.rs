//! Opening TCP connections for the client: `--resolve` overrides (host and port to a fixed address,
//! falling back to the system resolver), and proxy tunnels (HTTP CONNECT, SOCKS5) chosen per URL
//! scheme by [`ProxyRules`] (`--proxy`, or the environment as curl reads it, less `NO_PROXY`). An
//! `https://` proxy is reached over TLS of its own (checked against the proxy's name), inside which
//! https URLs get a CONNECT tunnel and http URLs are sent to the proxy in absolute form, as curl
//! does. TLS to the target is layered on top ([`Https`]), so certificates are checked against
//! the URL's host, never the overriding address. Host names go to `dns` (cached, async). Owns no
//! pool; `pool` keeps the connections it opens. `stream`: the connection type and TLS handshakes.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpStream;
use tower_service::Service;

use super::HttpVersion;
use super::dns::Resolver;

mod stream;
mod tcp;
use stream::{Io, Stream, Tls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;
type IoConnecting = Pin<Box<dyn Future<Output = Result<Io, BoxError>> + Send>>;

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
    /// An HTTP proxy reached over TLS (`https://`): a CONNECT tunnel for https URLs, requests in
    /// absolute form (`GET http://host/path`) for http URLs, as curl does.
    Https,
    /// A SOCKS5 proxy. `remote_dns` (`socks5h://`) has the proxy resolve host names; `socks5://`
    /// resolves them here.
    Socks5 {
        /// Whether the proxy resolves host names.
        remote_dns: bool,
    },
}

/// A `--proxy` every connection goes through: `http://[user:pass@]host:port`, `https://...`,
/// `socks5://...` or `socks5h://...`.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    protocol: ProxyProtocol,
    /// `http://host:port` (`https://` for an https proxy) of the proxy itself: where the TCP
    /// connection is opened.
    addr: Uri,
    credentials: Option<(String, String)>,
}

impl Proxy {
    /// How the proxy carries connections.
    pub fn protocol(&self) -> ProxyProtocol {
        self.protocol
    }

    /// The proxy's own address, `http://host:port` (`https://host:port` for an https proxy).
    pub fn addr(&self) -> &Uri {
        &self.addr
    }

    /// The `Proxy-Authorization` the proxy's URL asks for (marked sensitive), if any.
    fn authorization(&self) -> Option<http::HeaderValue> {
        self.credentials
            .as_ref()
            .map(|(user, pass)| basic_auth(user, pass))
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

    /// Parses a proxy URL; a missing port is 1080 for SOCKS, 80 for http and 443 for https.
    ///
    /// ```
    /// use fanout::engine::client::{Proxy, ProxyProtocol};
    /// let p: Proxy = "http://user:pw@127.0.0.1:3128".parse().unwrap();
    /// assert_eq!(p.protocol(), ProxyProtocol::Connect);
    /// assert_eq!(p.addr().to_string(), "http://127.0.0.1:3128/");
    /// let s: Proxy = "socks5h://127.0.0.1".parse().unwrap();
    /// assert_eq!(s.addr().port_u16(), Some(1080));
    /// let t: Proxy = "https://proxy.test".parse().unwrap();
    /// assert_eq!(t.protocol(), ProxyProtocol::Https);
    /// assert_eq!(t.addr().to_string(), "https://proxy.test:443/");
    /// assert!("ftp://127.0.0.1:3128".parse::<Proxy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Proxy, String> {
        let url = url::Url::parse(s)
            .map_err(|e| format!("'{s}' is not a URL ({e}); e.g. http://127.0.0.1:3128"))?;
        let (protocol, default_port) = match url.scheme() {
            "http" => (ProxyProtocol::Connect, 80),
            "https" => (ProxyProtocol::Https, 443),
            "socks5" => (ProxyProtocol::Socks5 { remote_dns: false }, 1080),
            "socks5h" => (ProxyProtocol::Socks5 { remote_dns: true }, 1080),
            other => {
                return Err(format!(
                    "proxy scheme '{other}' is not supported (use http://, https://, socks5:// or \
                     socks5h://)"
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
        let scheme = match protocol {
            ProxyProtocol::Https => "https",
            _ => "http",
        };
        let addr = format!("{scheme}://{host}:{port}")
            .parse::<Uri>()
            .map_err(|e| format!("'{s}': {e}"))?;
        Ok(Proxy {
            protocol,
            addr,
            credentials: credentials(&url),
        })
    }
}

/// `url`'s user and password, percent-decoded (a missing password is empty); `None` without
/// user info. For a proxy's URL and a target's alike.
pub(in crate::engine::client) fn credentials(url: &url::Url) -> Option<(String, String)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
    Some((decode(url.username()), decode(url.password().unwrap_or(""))))
}

/// TCP connections with `--resolve` overrides applied.
#[derive(Clone)]
pub(super) struct Direct {
    resolver: Resolver,
    overrides: Arc<HashMap<(String, u16), IpAddr>>,
    /// `--connect-timeout`, shared by a name's addresses.
    timeout: Duration,
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

    /// A TCP connection to `dst`'s host and port (or the address `--resolve` gives).
    async fn connect(&self, dst: &Uri) -> Result<TokioIo<TcpStream>, BoxError> {
        let tcp = match self.overridden(dst) {
            Some(addr) => tcp::connect_addr(addr, self.timeout).await?,
            None => {
                let (host, port) = host_and_port(dst).ok_or("invalid URL, host is missing")?;
                tcp::connect(&self.resolver, host, port, self.timeout).await?
            }
        };
        Ok(TokioIo::new(tcp))
    }
}

impl Service<Uri> for Direct {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let direct = self.clone();
        Box::pin(async move { direct.connect(&dst).await })
    }
}

/// TLS connections to an `https://` proxy (HTTP/1.1 only: CONNECT and absolute-form requests,
/// never HTTP/2, go to the proxy).
#[derive(Clone)]
struct ToProxy {
    direct: Direct,
    tls: Tls,
}

impl Service<Uri> for ToProxy {
    type Response = Io;
    type Error = BoxError;
    type Future = IoConnecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> IoConnecting {
        let to = self.clone();
        Box::pin(async move {
            let tcp = to.direct.connect(&dst).await?;
            to.tls.handshake(&dst, Stream::tcp(tcp)).await
        })
    }
}

/// Which proxy a connection goes through: one for http:// URLs, one for https:// URLs, and the
/// hosts that go direct. `--proxy` sets both; without it the CLI reads the environment as curl
/// does ([`ProxyRules::from_env`]); `--noproxy` replaces the direct list.
#[derive(Debug, Clone, Default)]
pub struct ProxyRules {
    /// For http:// URLs.
    pub http: Option<Proxy>,
    /// For https:// URLs.
    pub https: Option<Proxy>,
    /// Hosts reached directly whatever the proxies.
    pub no_proxy: NoProxy,
    /// PEM files of CA certificates trusted for `https://` proxies, besides `--cacert`'s
    /// (`--proxy-cacert`).
    pub ca_files: Vec<std::path::PathBuf>,
    /// Accept any certificate from an `https://` proxy (`--proxy-insecure`; `--insecure` does too).
    pub insecure: bool,
}

impl ProxyRules {
    /// Every connection through `proxy` (`--proxy`).
    pub fn all(proxy: Proxy) -> ProxyRules {
        ProxyRules {
            http: Some(proxy.clone()),
            https: Some(proxy),
            ..ProxyRules::default()
        }
    }

    /// The rules curl reads from the environment (`get` looks a variable up): `http_proxy` (lower
    /// case only, as curl: a CGI server sets `HTTP_PROXY` from a request header), `HTTPS_PROXY` or
    /// `https_proxy`, `ALL_PROXY` or `all_proxy` for a scheme without its own, `NO_PROXY` or
    /// `no_proxy`. A proxy without a scheme is `http://`. Errors name the variable.
    ///
    /// ```
    /// use fanout::engine::client::ProxyRules;
    /// let env = |k: &str| match k {
    ///     "https_proxy" => Some("127.0.0.1:3128".to_string()),
    ///     "NO_PROXY" => Some("internal.test,.corp.test".to_string()),
    ///     _ => None,
    /// };
    /// let r = ProxyRules::from_env(env).unwrap();
    /// assert!(r.http.is_none() && r.https.is_some());
    /// assert!(r.no_proxy.matches("a.corp.test") && !r.no_proxy.matches("example.com"));
    /// ```
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<ProxyRules, String> {
        let var = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names.iter().find_map(|n| {
                get(n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*n, v.trim().to_string()))
            })
        };
        let parse = |found: Option<(&'static str, String)>| -> Result<Option<Proxy>, String> {
            match found {
                None => Ok(None),
                Some((name, v)) => {
                    let v = if v.contains("://") {
                        v
                    } else {
                        format!("http://{v}")
                    };
                    v.parse::<Proxy>()
                        .map(Some)
                        .map_err(|e| format!("{name}: {e}"))
                }
            }
        };
        let all = parse(var(&["ALL_PROXY", "all_proxy"]))?;
        let http = parse(var(&["http_proxy"]))?.or_else(|| all.clone());
        let https = parse(var(&["HTTPS_PROXY", "https_proxy"]))?.or(all);
        let mut no_proxy = var(&["NO_PROXY", "no_proxy"])
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        // A proxy from the environment cannot reach this machine's loopback: keep it direct.
        no_proxy.loopback = true;
        Ok(ProxyRules {
            http,
            https,
            no_proxy,
            ..ProxyRules::default()
        })
    }

    /// Whether any connection may go through a proxy.
    pub fn any(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }

    /// Whether a connection is made over TLS to a proxy (an `https://` one is configured).
    pub(super) fn needs_tls(&self) -> bool {
        [&self.http, &self.https]
            .into_iter()
            .flatten()
            .any(|p| p.protocol == ProxyProtocol::Https)
    }

    /// How a request for `url` goes to an `https://` proxy in absolute form; `None` when it
    /// does not (an https URL, no such proxy, or a host reached directly).
    pub(super) fn forwarding(&self, url: &url::Url) -> Option<Forward> {
        let proxy = self.http.as_ref()?;
        if proxy.protocol != ProxyProtocol::Https
            || url.scheme() != "http"
            || self.no_proxy.matches(url.host_str().unwrap_or_default())
        {
            return None;
        }
        Some(Forward {
            authorization: proxy.authorization(),
        })
    }
}

/// An http request sent to an `https://` proxy in absolute form (`GET http://host/path`).
pub(super) struct Forward {
    /// Sent with each request when the proxy's URL has credentials (marked sensitive).
    pub(super) authorization: Option<http::HeaderValue>,
}

/// Hosts that are reached directly: `NO_PROXY` / `--noproxy`, a comma-separated list of host names
/// (a name also covers its subdomains; a leading dot is the same), IP addresses, CIDR ranges
/// (`10.0.0.0/8`), or `*` for every host. Ports are ignored, as curl ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    /// `localhost` and loopback addresses are direct (set for rules read from the environment).
    loopback: bool,
    names: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    /// Parses the list (never fails: entries that are neither names nor addresses are names).
    pub fn parse(list: &str) -> NoProxy {
        let mut np = NoProxy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                np.all = true;
                continue;
            }
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, b.parse::<u8>().ok()),
                None => (entry, None),
            };
            let bare = addr.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                np.nets.push((ip, bits.unwrap_or(max).min(max)));
                continue;
            }
            // host:port → host (a port is not compared).
            let name = match entry.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
                _ => entry,
            };
            np.names
                .push(name.trim_start_matches('.').to_ascii_lowercase());
        }
        np
    }

    /// Whether `localhost` and loopback addresses are direct whatever the list (rules read from
    /// the environment: a proxy elsewhere cannot reach this machine's loopback).
    pub fn loopback_direct(&self) -> bool {
        self.loopback
    }

    /// The same list, with loopback direct or not.
    pub fn with_loopback_direct(mut self, on: bool) -> NoProxy {
        self.loopback = on;
        self
    }

    /// Whether `host` (a name or an address, brackets allowed) is reached directly.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return (self.loopback && ip.is_loopback())
                || self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.loopback && (host == "localhost" || host.ends_with(".localhost")) {
            return true;
        }
        self.names.iter().any(|n| {
            host == *n
                || (host.len() > n.len()
                    && host.ends_with(n.as_str())
                    && host.as_bytes()[host.len() - n.len() - 1] == b'.')
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A tunnel through one proxy.
#[derive(Clone)]
enum Via {
    Tunnel(Tunnel<Direct>),
    /// An `https://` proxy: CONNECT inside TLS to the proxy for https URLs; for http URLs, the TLS
    /// connection to the proxy itself (the client then sends requests in absolute form).
    Tls {
        tunnel: Tunnel<ToProxy>,
        proxy: ToProxy,
        addr: Uri,
    },
    Socks {
        socks: SocksV5<Direct>,
        remote_dns: bool,
    },
}

impl Via {
    /// `tls` is TLS to the proxy, required for an `https://` one.
    fn new(proxy: &Proxy, direct: &Direct, tls: Option<&Tls>) -> Via {
        match proxy.protocol {
            ProxyProtocol::Https => {
                let to_proxy = ToProxy {
                    direct: direct.clone(),
                    tls: tls.cloned().expect("TLS settings for an https:// proxy"),
                };
                let mut tunnel = Tunnel::new(proxy.addr.clone(), to_proxy.clone());
                if let Some(auth) = proxy.authorization() {
                    tunnel = tunnel.with_auth(auth);
                }
                Via::Tls {
                    tunnel,
                    proxy: to_proxy,
                    addr: proxy.addr.clone(),
                }
            }
            ProxyProtocol::Connect => {
                let mut tunnel = Tunnel::new(proxy.addr.clone(), direct.clone());
                if let Some((user, pass)) = &proxy.credentials {
                    tunnel = tunnel.with_auth(basic_auth(user, pass));
                }
                Via::Tunnel(tunnel)
            }
            ProxyProtocol::Socks5 { remote_dns } => {
                // Names are resolved by the proxy or, for socks5://, asynchronously here (never by
                // hyper-util's blocking local look-up).
                let mut socks = SocksV5::new(proxy.addr.clone(), direct.clone()).local_dns(false);
                if let Some((user, pass)) = &proxy.credentials {
                    socks = socks.with_auth(user.clone(), pass.clone());
                }
                Via::Socks { socks, remote_dns }
            }
        }
    }
}

/// The connection under TLS to the target: direct, or through the proxy the rules give for the URL.
pub(super) struct Connector {
    direct: Direct,
    http: Option<Via>,
    https: Option<Via>,
    no_proxy: NoProxy,
}

impl Connector {
    /// Builds the connector: TCP connections within `connect_timeout`, `resolver` for host names,
    /// `--resolve` entries and proxy rules; `proxy_tls` is the TLS configuration for `https://`
    /// proxies (required if there is one; its ALPN list stays empty: HTTP/1.1 to the proxy).
    pub(super) fn new(
        connect_timeout: Duration,
        resolver: Resolver,
        resolve: &[Resolve],
        proxies: &ProxyRules,
        proxy_tls: Option<rustls::ClientConfig>,
    ) -> Self {
        let overrides = resolve
            .iter()
            .map(|r| ((r.host.to_ascii_lowercase(), r.port), r.addr))
            .collect();
        let direct = Direct {
            resolver,
            overrides: Arc::new(overrides),
            timeout: connect_timeout,
        };
        let proxy_tls = proxy_tls.map(|c| Tls::new(Arc::new(c)));
        Connector {
            http: proxies
                .http
                .as_ref()
                .map(|p| Via::new(p, &direct, proxy_tls.as_ref())),
            https: proxies
                .https
                .as_ref()
                .map(|p| Via::new(p, &direct, proxy_tls.as_ref())),
            no_proxy: proxies.no_proxy.clone(),
            direct,
        }
    }

    /// A connection to `dst`'s origin: TCP, a tunnel through a proxy, or (an http URL through an
    /// `https://` proxy) TLS to the proxy. No TLS to the target: [`Https`] adds it.
    async fn open(&self, dst: &Uri) -> Result<Io, BoxError> {
        let via = match dst.scheme_str() {
            Some("https") => self.https.as_ref(),
            _ => self.http.as_ref(),
        };
        let via = via.filter(|_| !self.no_proxy.matches(dst.host().unwrap_or_default()));
        match via {
            None => Ok(Stream::tcp(self.direct.connect(dst).await?)),
            Some(Via::Tunnel(t)) => {
                // hyper-util's tunnel assumes port 443 when the URI has none; say it.
                let dst = with_authority(dst, &authority_with_port(dst))?;
                Ok(Stream::tcp(t.clone().call(dst).await?))
            }
            // An http URL: the connection to the proxy is the connection (absolute form).
            Some(Via::Tls { proxy, addr, .. }) if dst.scheme_str() != Some("https") => {
                proxy.clone().call(addr.clone()).await
            }
            Some(Via::Tls { tunnel, .. }) => {
                let dst = with_authority(dst, &authority_with_port(dst))?;
                Ok(tunnel.clone().call(dst).await?)
            }
            Some(Via::Socks { socks, remote_dns }) => {
                let port = port_of(dst);
                let target = match self.direct.overridden(dst) {
                    Some(addr) => addr.to_string(),
                    None if *remote_dns => authority_with_port(dst),
                    None => local_lookup(&self.direct.resolver, dst, port)
                        .await?
                        .to_string(),
                };
                let dst = with_authority(dst, &target)?;
                Ok(Stream::tcp(socks.clone().call(dst).await?))
            }
        }
    }
}

/// Every connection the client opens: [`Connector`]'s, with TLS to the target for https URLs
/// (ALPN as `--http1` / `--http2` ask). Cheap to clone (one reference count); opening a plain
/// connection allocates nothing here (a TLS handshake's future is boxed).
#[derive(Clone)]
pub(in crate::engine::client) struct Https(Arc<(Connector, Tls)>);

impl Https {
    /// TLS with `tls` over `connector`'s connections, offering the protocols `version` allows:
    /// `h2` and `http/1.1` (auto), none (HTTP/1.1 only), or `h2` alone.
    pub(in crate::engine::client) fn new(
        connector: Connector,
        mut tls: rustls::ClientConfig,
        version: HttpVersion,
    ) -> Https {
        tls.alpn_protocols = match version {
            HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            HttpVersion::Http1 => Vec::new(),
            HttpVersion::Http2 => vec![b"h2".to_vec()],
        };
        Https(Arc::new((connector, Tls::new(Arc::new(tls)))))
    }
}

impl Https {
    /// A connection to `dst`: [`Connector`]'s, with TLS for an https URL. Borrows: the client's
    /// new-connection path awaits it inline (its own future is boxed already), with no clone of
    /// the connector or the URI and no box of its own.
    pub(in crate::engine::client) async fn open(&self, dst: &Uri) -> Result<Io, BoxError> {
        let (connector, tls) = &*self.0;
        let tls_to_target = match dst.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => {
                return Err(io::Error::other(format!("unsupported scheme {other}")).into());
            }
            None => return Err(io::Error::other("missing scheme").into()),
        };
        let io = connector.open(dst).await?;
        if !tls_to_target {
            return Ok(io);
        }
        // Boxed: the handshake's future holds a whole rustls connection; inline, it would make
        // every plain connection's future as large.
        Box::pin(tls.handshake(dst, io)).await
    }
}

/// Resolves the destination's host here, for `socks5://`.
async fn local_lookup(resolver: &Resolver, dst: &Uri, port: u16) -> Result<SocketAddr, BoxError> {
    let host = dst.host().ok_or("URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs = resolver
        .lookup(host)
        .await
        .map_err(|e| format!("dns error: {e}"))?;
    Ok(SocketAddr::new(addrs[0], port))
}

/// `dst`'s host (an IPv6 address in its brackets) and port (the scheme's default when it has
/// none), as `Uri::host` and [`port_of`] give them, in one pass over the authority: those two scan
/// it three times (~700 instructions per connection, callgrind).
fn host_and_port(dst: &Uri) -> Option<(&str, u16)> {
    let authority = dst.authority()?.as_str();
    let host_port = match authority.bytes().rposition(|b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    // `http` allows one ':' outside an IPv6 address's brackets: the port follows the last ':'
    // unless the authority ends with the address.
    let (host, port) = match host_port.bytes().rposition(|b| b == b':') {
        Some(i) if !host_port.ends_with(']') => (&host_port[..i], host_port[i + 1..].parse().ok()),
        _ => (host_port, None),
    };
    Some((host, port.unwrap_or_else(|| default_port(dst))))
}

fn default_port(dst: &Uri) -> u16 {
    if dst.scheme_str() == Some("https") {
        443
    } else {
        80
    }
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

/// `Basic` credentials, marked sensitive (hyper's HTTP/2 encoder then never indexes them).
pub(in crate::engine::client) fn basic_auth(user: &str, pass: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut v = http::HeaderValue::from_str(&format!("Basic {token}"))
        .expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::{NoProxy, ProxyRules};

    #[test]
    fn host_and_port_are_what_uri_says() {
        for s in [
            "http://127.0.0.1:18081/item/1",
            "http://a.test/x",
            "https://a.test/x",
            "https://a.test:8443/",
            "http://[::1]:8080/",
            "http://[::1]/",
            "https://[fe80::1%25eth0]:9/",
            "http://u:p@a.test:81/",
            "http://u:p@a.test/",
            "http://u@[::1]/",
            "http://a.test:/",
            "socks5h://a.test:1080",
        ] {
            let dst: http::Uri = s.parse().unwrap();
            let want = (dst.host().unwrap(), super::port_of(&dst));
            assert_eq!(super::host_and_port(&dst), Some(want), "{s}");
        }
        let no_host: http::Uri = "/just/a/path".parse().unwrap();
        assert_eq!(super::host_and_port(&no_host), None);
    }

    #[test]
    fn no_proxy_matches_names_subdomains_addresses_and_ranges() {
        let np = NoProxy::parse("example.com, .corp.test,10.0.0.0/8, ::1, api.test:8443");
        for host in [
            "example.com",
            "a.example.com",
            "x.corp.test",
            "corp.test",
            "10.2.3.4",
            "[::1]",
            "api.test",
        ] {
            assert!(np.matches(host), "{host}");
        }
        for host in ["badexample.com", "example.org", "11.0.0.1", "::2", "test"] {
            assert!(!np.matches(host), "{host}");
        }
        assert!(NoProxy::parse("*").matches("anything"));
        assert!(!NoProxy::parse("").matches("anything"));
    }

    #[test]
    fn the_environment_is_read_as_curl_reads_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        // Upper-case HTTP_PROXY is not read (a CGI server sets it from a request header).
        let r = ProxyRules::from_env(env(&[("HTTP_PROXY", "http://evil:1")])).unwrap();
        assert!(!r.any());
        let r = ProxyRules::from_env(env(&[
            ("all_proxy", "socks5h://127.0.0.1:1080"),
            ("https_proxy", "http://127.0.0.1:3128"),
        ]))
        .unwrap();
        assert_eq!(r.http.unwrap().addr().to_string(), "http://127.0.0.1:1080/");
        assert_eq!(
            r.https.unwrap().addr().to_string(),
            "http://127.0.0.1:3128/"
        );
        let r = ProxyRules::from_env(env(&[("all_proxy", "http://127.0.0.1:3128")])).unwrap();
        assert!(r.no_proxy.matches("127.0.0.1") && r.no_proxy.matches("localhost"));
        assert!(
            !NoProxy::parse("a.test").matches("127.0.0.1"),
            "--noproxy lists only itself"
        );
        let err = ProxyRules::from_env(env(&[("HTTPS_PROXY", "ftp://x:1")])).unwrap_err();
        assert!(err.starts_with("HTTPS_PROXY: "), "{err}");
    }
}
