//! `https://` proxies end to end: a small TLS proxy in the test (its own self-signed certificate,
//! 127.0.0.1 port 0) that records the head of each request it is sent and passes CONNECT tunnels
//! and absolute-form requests on to 127.0.0.1 only. Shows TLS to the proxy itself, CONNECT for
//! https targets, absolute form for http targets (as curl does), the proxy's certificate checked
//! with the run's trust or `--proxy-cacert`/`--proxy-insecure`, and credentials kept secret.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{
    Dir, Seen, TestProxy, TestServer, fetch_with_proxy_env, first_outcome, read_head, self_signed,
    tunnel_to_local,
};

/// A proxy presenting `tls` (a certificate for 127.0.0.1); it records the head of the first
/// request on each connection it accepted over TLS.
fn tls_proxy(tls: Arc<rustls::ServerConfig>) -> TestProxy {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    TestProxy::start(move |conn, seen| proxy(conn, acceptor.clone(), seen))
}

async fn proxy(
    conn: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Seen,
) -> std::io::Result<()> {
    let mut tls = acceptor.accept(conn).await?;
    let head = read_head(&mut tls).await?;
    seen.lock().unwrap().push(head.clone());
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method == "CONNECT" {
        return tunnel_to_local(&mut tls, target).await;
    }
    // Absolute form: the same request to the origin, in origin form, less Proxy-Authorization.
    let Ok(url) = url::Url::parse(target) else {
        tls.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).await?;
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut out = head.replacen(target, path, 1);
    out = out
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("proxy-authorization:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    upstream.write_all(out.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut upstream).await?;
    Ok(())
}

/// Target servers (plain and TLS for example.test), a TLS proxy for 127.0.0.1, and a dir with
/// `target.pem` and `proxy.pem`.
fn setup() -> (TestServer, TestServer, TestProxy, Dir) {
    let srv = TestServer::start(Duration::ZERO);
    let (target_pem, target_tls) = self_signed(&["example.test"]);
    let tls_srv = TestServer::start_tls(target_tls);
    let (proxy_pem, proxy_tls) = self_signed(&["127.0.0.1"]);
    let proxy = tls_proxy(proxy_tls);
    let dir = Dir::new();
    dir.write("target.pem", &target_pem);
    dir.write("proxy.pem", &proxy_pem);
    (srv, tls_srv, proxy, dir)
}

/// The URL of `path` on `srv` by the name example.test (which the proxy, or `--resolve`, sends to
/// 127.0.0.1).
fn on_example_test(srv: &TestServer, path: &str) -> String {
    srv.url(path).replacen("127.0.0.1", "example.test", 1)
}

#[test]
fn an_https_proxy_tunnels_https_and_forwards_http_in_absolute_form() {
    let (srv, tls_srv, proxy, dir) = setup();
    let via = format!("https://user:p%40ss@{}", proxy.addr);
    let (port, tls_port) = (srv.server.addr().port(), tls_srv.server.addr().port());

    // http: one TLS connection to the proxy, the request in absolute form. The proxy, not
    // fanout, resolves example.test (to 127.0.0.1 here).
    let o = first_outcome(&fetch_with_proxy_env(
        &dir,
        &[],
        &[
            "--body",
            "store",
            "--proxy",
            &via,
            "--proxy-cacert",
            "proxy.pem",
        ],
        &format!("http://example.test:{port}/echo?q=1"),
    ));
    assert_eq!(o["status"], 200, "{o}");
    let echoed: Value = serde_json::from_str(o["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["path"], "/echo");
    assert_eq!(echoed["headers"]["host"], format!("example.test:{port}"));

    // https: CONNECT inside the TLS to the proxy, then TLS to the target inside the tunnel.
    let o = first_outcome(&fetch_with_proxy_env(
        &dir,
        &[],
        &[
            "--proxy",
            &via,
            "--proxy-cacert",
            "proxy.pem",
            "--cacert",
            "target.pem",
        ],
        &format!("https://example.test:{tls_port}/item/2"),
    ));
    assert_eq!(o["status"], 200, "TLS inside TLS: {o}");

    let seen = proxy.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let forwarded = seen[0].to_ascii_lowercase();
    assert!(
        forwarded.starts_with(&format!(
            "get http://example.test:{port}/echo?q=1 http/1.1\r\n"
        )),
        "{seen:?}"
    );
    // user:p@ss in Basic form, on the request (absolute form) and on the CONNECT.
    assert!(
        forwarded.contains("proxy-authorization: basic dxnlcjpwqhnz\r\n"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with(&format!("CONNECT example.test:{tls_port} HTTP/1.1\r\n")),
        "{seen:?}"
    );
    assert!(
        seen[1].contains("Proxy-Authorization: Basic dXNlcjpwQHNz\r\n"),
        "{seen:?}"
    );
}

#[test]
fn the_proxys_certificate_is_checked_with_the_runs_trust_or_its_own() {
    let (srv, _tls_srv, proxy, dir) = setup();
    let via = format!("https://{}", proxy.addr);
    let url = on_example_test(&srv, "/item/1");

    // Not trusted: a TLS error, and the proxy never saw a request.
    let o = first_outcome(&fetch_with_proxy_env(&dir, &[], &["--proxy", &via], &url));
    assert_eq!(o["error"], "tls", "{o}");
    assert!(proxy.seen().is_empty());
    // The target's certificate does not vouch for the proxy.
    let o = first_outcome(&fetch_with_proxy_env(
        &dir,
        &[],
        &["--proxy", &via, "--cacert", "target.pem"],
        &url,
    ));
    assert_eq!(o["error"], "tls", "{o}");

    // Trusted by --cacert (the same trust as the targets'), --proxy-cacert, --proxy-insecure, -k.
    for args in [
        &["--cacert", "proxy.pem"][..],
        &["--proxy-cacert", "proxy.pem"],
        &["--proxy-insecure"],
        &["-k"],
    ] {
        let mut all = vec!["--proxy", via.as_str()];
        all.extend_from_slice(args);
        let o = first_outcome(&fetch_with_proxy_env(&dir, &[], &all, &url));
        assert_eq!(o["status"], 200, "{args:?}: {o}");
    }
    assert_eq!(proxy.seen().len(), 4);

    // A --proxy-cacert that is not a CA file is a usage error naming the flag.
    dir.write("bad.pem", "not a certificate");
    dir.cmd()
        .args(["fetch", "--proxy-cacert", "bad.pem", "-"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--proxy-cacert"));
}

#[test]
fn https_proxy_from_the_environment() {
    let (_srv, tls_srv, proxy, dir) = setup();
    let via = format!("https://{}", proxy.addr);
    let url = on_example_test(&tls_srv, "/item/3");
    let args = ["--proxy-cacert", "proxy.pem", "--cacert", "target.pem"];
    let o = first_outcome(&fetch_with_proxy_env(
        &dir,
        &[("HTTPS_PROXY", via.as_str())],
        &args,
        &url,
    ));
    assert_eq!(o["status"], 200, "{o}");
    assert_eq!(proxy.seen().len(), 1);
    assert!(proxy.seen()[0].starts_with("CONNECT example.test:"));
}

#[test]
fn https_proxy_credentials_never_appear_in_output_or_stores() {
    let (srv, _tls_srv, proxy, dir) = setup();
    let secret = "s3cr3t-pw";
    let via = format!("https://user:{secret}@{}", proxy.addr);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
    let url = on_example_test(&srv, "/item/1");
    // One run through the proxy, one refused by its certificate (an error detail to check).
    let mut outputs = Vec::new();
    for (i, trust) in [&["--proxy-cacert", "proxy.pem"][..], &[]]
        .into_iter()
        .enumerate()
    {
        let (db, jsonl) = (format!("out{i}.db"), format!("out{i}.jsonl"));
        let mut args = vec!["--proxy", via.as_str(), "--db", &db, "--jsonl", &jsonl];
        args.extend_from_slice(trust);
        // Not -q: the summary is output too.
        let mut cmd = dir.cmd();
        cmd.args(["fetch", "--retries", "0"])
            .args(&args)
            .write_stdin(format!("{url}\n"));
        outputs.push(cmd.output().unwrap());
    }
    assert_eq!(proxy.seen().len(), 1);
    let mut all: Vec<u8> = Vec::new();
    for out in &outputs {
        all.extend_from_slice(&out.stdout);
        all.extend_from_slice(&out.stderr);
    }
    for i in 0..2 {
        for file in ["db", "db-wal", "jsonl"] {
            if let Ok(b) = std::fs::read(dir.path(&format!("out{i}.{file}"))) {
                all.extend(b);
            }
        }
    }
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains(secret), "the proxy password leaked");
    assert!(
        !text.contains(&basic),
        "the proxy credentials leaked in Basic form"
    );
    assert!(
        text.contains("\"error\":\"tls\""),
        "the refused run was recorded: {text}"
    );
}

#[test]
fn robots_txt_is_fetched_through_the_proxy_with_the_runs_tls_settings() {
    let (_srv, tls_srv, proxy, dir) = setup();
    let via = format!("https://{}", proxy.addr);
    let url = on_example_test(&tls_srv, "/item/4");
    let args = [
        "--robots",
        "--proxy",
        &via,
        "--proxy-cacert",
        "proxy.pem",
        "--cacert",
        "target.pem",
    ];
    // The test server has no robots.txt (404): everything is allowed.
    let o = first_outcome(&fetch_with_proxy_env(&dir, &[], &args, &url));
    assert_eq!(o["status"], 200, "{o}");
    assert_eq!(tls_srv.stats().hits().get("/robots.txt"), Some(&1));
    assert_eq!(tls_srv.stats().hits().get("/item/4"), Some(&1));
    assert!(
        proxy
            .seen()
            .iter()
            .all(|h| h.starts_with("CONNECT example.test:")),
        "{:?}",
        proxy.seen()
    );
}
