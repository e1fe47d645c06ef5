//! Host names to addresses for new connections: an async DNS stub resolver (hickory-resolver:
//! `/etc/resolv.conf` and `/etc/hosts`, or the servers of `--dns-servers`). It keeps each answer
//! for its TTL (negative answers for their SOA's) and lets concurrent look-ups of one name share one
//! query, so a list over many names asks once per name, not once per connection. Where the
//! system's resolver configuration cannot be read, names go to `getaddrinfo` on tokio's blocking
//! pool instead, uncached. Owns no connections and no `--resolve` overrides (`connector` applies
//! those before asking here).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hyper_util::client::legacy::connect::dns::Name;
use tower_service::Service;

/// A look-up that found no address; its text is what the stored `dns` outcome says.
#[derive(Debug, Clone)]
pub struct DnsError(String);

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DnsError {}

/// The resolver shared by a client's connections (cheap to clone); `None`: `getaddrinfo`.
#[derive(Clone)]
pub struct Resolver(Option<Arc<TokioResolver>>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = if self.0.is_some() {
            "dns"
        } else {
            "getaddrinfo"
        };
        f.debug_struct("Resolver")
            .field("backend", &backend)
            .finish()
    }
}

impl Resolver {
    /// A resolver asking `servers` (UDP, then TCP for truncated answers), or the system's
    /// configuration when `servers` is empty. Needs a tokio runtime when used, not when built.
    pub fn new(servers: &[SocketAddr]) -> Resolver {
        Resolver(build(servers).map(Arc::new))
    }

    /// The addresses of `host` (a name, not an IP literal); never empty.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let fail = |e: &dyn fmt::Display| DnsError(format!("{host}: {e}"));
        let addrs: Vec<IpAddr> = match &self.0 {
            Some(r) => r
                .lookup_ip(host)
                .await
                .map_err(|e| fail(&e))?
                .iter()
                .collect(),
            None => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| fail(&e))?
                .map(|a| a.ip())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(fail(&"no address"));
        }
        Ok(addrs)
    }
}

/// hickory over `servers`, or over the system's configuration; `None` when that cannot be read.
fn build(servers: &[SocketAddr]) -> Option<TokioResolver> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if servers.is_empty() {
        TokioResolver::builder(provider).ok()?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            provider,
        )
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // A first, AAAA only for a name with no IPv4 address: one query per name for the hosts most
    // lists name, and IPv6-only hosts still resolve. Asking both at once doubled the queries, and
    // more where a server answers "no AAAA" without an SOA record, which cannot be cached (dnsmasq
    // does: ~6,000 AAAA queries for 2,000 names, issue 17). A dual-stack host is reached over IPv4.
    opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    builder.build().ok()
}

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsError;
    type Future = BoxFuture<'static, Result<Self::Response, DnsError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DnsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        async move {
            let addrs = this.lookup(name.as_str()).await?;
            // The connector sets the port.
            let v: Vec<SocketAddr> = addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(v.into_iter())
        }
        .boxed()
    }
}

/// Parses `--dns-servers`: comma-separated `ADDRESS[:PORT]` (IPv6 in brackets when a port is
/// given), port 53 by default, as curl reads it.
///
/// ```
/// use fanout::engine::client::parse_dns_servers;
/// let s = parse_dns_servers("127.0.0.1:5353, ::1,[::1]:53").unwrap();
/// assert_eq!(s.len(), 3);
/// assert_eq!(s[0].to_string(), "127.0.0.1:5353");
/// assert_eq!(s[1].to_string(), "[::1]:53");
/// assert!(parse_dns_servers("dns.example").is_err());
/// assert!(parse_dns_servers("").is_err());
/// ```
pub fn parse_dns_servers(list: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = item
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                item.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .ok_or_else(|| {
                format!("'{item}' is not an IP address with an optional port, e.g. 127.0.0.1:53")
            })?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err("expected one or more addresses, e.g. 127.0.0.1:53".into());
    }
    Ok(out)
}
