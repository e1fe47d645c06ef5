//! TLS as curl users expect it: a self-signed CA certificate in `--cacert` (as `openssl req -x509`
//! makes it), `--pinnedpubkey`, and client certificates (`--cert`/`--key`) for mutual TLS. Real
//! TLS servers on 127.0.0.1 with certificates made by rcgen.

use std::sync::Arc;

use base64::Engine;
use predicates::str::contains;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Dir, TestServer, scalar, self_signed};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate marked as a CA (basicConstraints CA:TRUE), for `names`, valid from
/// `not_before` to `not_after` (years). Its PEM, DER and key.
fn ca_marked_self_signed(
    names: &[&str],
    years: (i32, i32),
) -> (String, CertificateDer<'static>, KeyPair) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().clone(), key)
}

fn server_config(
    cert: CertificateDer<'static>,
    key: &KeyPair,
    client_ca: Option<CertificateDer<'static>>,
) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = builder.with_single_cert(vec![cert], key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `https://NAME:PORT/item/1` for `srv`, with the `--resolve` that sends NAME to 127.0.0.1.
fn named(srv: &TestServer, name: &str) -> (String, String) {
    let port = srv
        .url("/")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    (
        format!("https://{name}:{port}/item/1"),
        format!("{name}:{port}:127.0.0.1"),
    )
}

fn fetch_one(dir: &Dir, args: &[&str], url: &str) -> Value {
    let out = dir
        .cmd()
        .args(["fetch", "--jsonl", "-", "-q", "--retries", "0"])
        .args(args)
        .write_stdin(format!("{url}\n"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    let v = serde_json::from_str(lines.next().expect("one outcome")).unwrap();
    assert!(lines.next().is_none());
    v
}

fn spki_pin(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let digest = Sha256::digest(cert.public_key().raw);
    format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[test]
fn a_self_signed_ca_certificate_given_in_cacert_is_trusted_with_its_name_and_dates_checked() {
    let dir = Dir::new();
    let (pem, der, key) = ca_marked_self_signed(&["api.test"], (2020, 2090));
    let ca = dir.write("ca.pem", &pem);
    let srv = TestServer::start_tls(server_config(der, &key, None));
    let (url, resolve) = named(&srv, "api.test");
    let ca = ca.to_str().unwrap();
    let o = fetch_one(&dir, &["--cacert", ca, "--resolve", &resolve], &url);
    assert_eq!(o["status"], 200, "{o}");
    // Without --cacert it is an unknown issuer; under another name it is refused.
    let o = fetch_one(&dir, &["--resolve", &resolve], &url);
    assert_eq!(o["error"], "tls", "{o}");
    let (other, resolve_other) = named(&srv, "other.test");
    let o = fetch_one(&dir, &["--cacert", ca, "--resolve", &resolve_other], &other);
    assert_eq!(o["error"], "tls", "{o}");
    assert!(
        o["error_detail"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("name"),
        "{o}"
    );

    // An expired one is refused too, and says so.
    let (pem, der, key) = ca_marked_self_signed(&["old.test"], (2001, 2002));
    let old_ca = dir.write("old.pem", &pem);
    let srv = TestServer::start_tls(server_config(der, &key, None));
    let (url, resolve) = named(&srv, "old.test");
    let o = fetch_one(
        &dir,
        &["--cacert", old_ca.to_str().unwrap(), "--resolve", &resolve],
        &url,
    );
    assert_eq!(o["error"], "tls", "{o}");
    assert!(
        o["error_detail"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("expired"),
        "{o}"
    );
}

#[test]
fn pinned_public_keys_are_checked_even_with_insecure() {
    let dir = Dir::new();
    let (pem, der, key) = ca_marked_self_signed(&["pin.test"], (2020, 2090));
    let ca = dir.write("ca.pem", &pem);
    let right = spki_pin(&der);
    let srv = TestServer::start_tls(server_config(der, &key, None));
    let (url, resolve) = named(&srv, "pin.test");
    let ca = ca.to_str().unwrap();
    let wrong = format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let both = format!("{wrong};{right}");
    for (args, ok) in [
        (vec!["--cacert", ca, "--pinnedpubkey", right.as_str()], true),
        (vec!["--cacert", ca, "--pinnedpubkey", both.as_str()], true),
        (
            vec!["--cacert", ca, "--pinnedpubkey", wrong.as_str()],
            false,
        ),
        (vec!["-k", "--pinnedpubkey", wrong.as_str()], false),
        (vec!["-k", "--pinnedpubkey", right.as_str()], true),
    ] {
        let mut args = args.clone();
        args.extend(["--resolve", resolve.as_str()]);
        let o = fetch_one(&dir, &args, &url);
        if ok {
            assert_eq!(o["status"], 200, "{args:?}: {o}");
        } else {
            assert_eq!(o["error"], "tls", "{args:?}: {o}");
            assert!(
                o["error_detail"].as_str().unwrap().contains("pinnedpubkey"),
                "{o}"
            );
        }
    }
    for bad in [
        "sha256//not-base64!",
        "sha256//AAAA",
        "/nonexistent/key.pem",
    ] {
        dir.cmd()
            .args(["fetch", "--pinnedpubkey", bad, "-"])
            .write_stdin("")
            .assert()
            .code(2)
            .stderr(contains("--pinnedpubkey"));
    }
}

#[test]
fn client_certificates_for_mutual_tls() {
    let dir = Dir::new();
    // A client CA, and a client certificate it signs.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client.test".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let cert_file = dir.write("client.pem", &client_cert.pem());
    let key_file = dir.write("client.key", &client_key.serialize_pem());
    let both = dir.write(
        "both.pem",
        &format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
    );

    let (pem, der, key) = ca_marked_self_signed(&["mtls.test"], (2020, 2090));
    let server_ca = dir.write("server-ca.pem", &pem);
    let srv = TestServer::start_tls(server_config(der, &key, Some(ca_cert.der().clone())));
    let (url, resolve) = named(&srv, "mtls.test");
    let base = [
        "--cacert",
        server_ca.to_str().unwrap(),
        "--resolve",
        resolve.as_str(),
    ];

    // Refused: under TLS 1.3 the server's alert comes after the client's handshake has ended, so
    // the request fails on the connection (`reset`) or, when the alert is read first, as `tls`.
    let o = fetch_one(&dir, &base, &url);
    assert!(o["status"].is_null(), "no client certificate: {o}");
    assert!(
        ["tls", "reset"].contains(&o["error"].as_str().unwrap()),
        "{o}"
    );
    let mut with = base.to_vec();
    with.extend([
        "--cert",
        cert_file.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
    ]);
    let o = fetch_one(&dir, &with, &url);
    assert_eq!(o["status"], 200, "{o}");
    let mut combined = base.to_vec();
    combined.extend(["--cert", both.to_str().unwrap()]);
    let o = fetch_one(&dir, &combined, &url);
    assert_eq!(o["status"], 200, "cert and key in one file: {o}");

    // A key without its certificate, or a certificate file without a key, is a usage error.
    dir.cmd()
        .args(["fetch", "--key", key_file.to_str().unwrap(), "-"])
        .write_stdin("")
        .assert()
        .code(2);
    dir.cmd()
        .args(["fetch", "--cert", cert_file.to_str().unwrap(), "-"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(contains("--cert"));
}

/// Over https, requests to an origin not seen before wait for its first connection to say (by
/// ALPN) whether it multiplexes: an HTTP/2 origin gets one connection for all 64 requests in
/// flight (each opening its own cost a TLS handshake apiece, all but one then dropped); an
/// HTTP/1.1-only origin then gets its connections side by side, one per request in flight.
#[test]
fn the_first_https_connection_to_an_origin_decides_whether_the_others_share_it() {
    let (pem, tls) = self_signed(&["127.0.0.1"]);
    let dir = Dir::new();
    let ca = dir.write("ca.pem", &pem);
    let ca = ca.to_str().unwrap();
    let run = |srv: &TestServer, db: &str| {
        let urls: String = (0..200)
            .map(|i| format!("{}\n", srv.url(&format!("/delay/20?i={i}"))))
            .collect();
        dir.cmd()
            .args(["fetch", "-", "-c", "64", "--cacert", ca, "--db", db, "-q"])
            .write_stdin(urls)
            .assert()
            .success();
        let ok = scalar(
            &dir.path(db),
            "SELECT count(*) FROM outcomes WHERE status = 200",
        );
        assert_eq!(ok, 200, "every request answered");
    };

    let h2 = TestServer::start_tls(tls.clone());
    run(&h2, "h2.db");
    assert_eq!(
        h2.stats().connections(),
        1,
        "one connection to an origin that speaks HTTP/2"
    );

    let mut only_h1 = (*tls).clone();
    only_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let h1 = TestServer::start_tls(Arc::new(only_h1));
    run(&h1, "h1.db");
    let conns = h1.stats().connections();
    assert!(
        (32..=64).contains(&conns),
        "HTTP/1.1: a connection per request in flight, opened side by side (got {conns})"
    );
}
