//! Secrets planted in every place a user can put one (credential headers from -H and JSON specs,
//! a --secret-header, URL passwords of requests and of the proxy, invalid lines) never come out:
//! not in stdout, stderr, the SQLite file, the JSONL file, or runs.command.

use std::time::Duration;

use crate::harness::{Dir, TestServer, scalar, text};

fn all_bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // The input is the user's own file; only what fanout wrote is searched.
        if p.is_file() && p.file_name().is_some_and(|n| n != "urls.txt") {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_never_reach_output_stores_or_the_command_line() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let base = srv.url("/item/");
    let with_password = base.replacen("http://", "http://user:SECRET-URL-PW@", 1);
    let input = format!(
        "{base}1\n\
         {with_password}2\n\
         {{\"url\": \"{base}3\", \"headers\": {{\"Authorization\": \"Bearer SECRET-SPEC-AUTH\"}}}}\n\
         {{\"url\": \"{base}4\", \"headers\": {{\"X-Api-Key\": \"SECRET-SPEC-KEY\"}}, \"oops\": 1}}\n\
         http://user:SECRET-BAD-URL@127.0.0.1:notaport/x\n"
    );
    dir.write("urls.txt", &input);
    let out = dir
        .cmd()
        .args([
            "fetch",
            "urls.txt",
            "--db",
            "out.db",
            "--jsonl",
            "out.jsonl",
            "-H",
            "Authorization: Bearer SECRET-H-AUTH",
            "--header=Cookie: session=SECRET-H-COOKIE",
            "-H",
            "X-Api-Key: SECRET-H-KEY",
            "--secret-header",
            "x-api-key",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    // A proxy that refuses: its password must not show in errors either.
    let proxied = dir
        .cmd()
        .args([
            "fetch",
            "-",
            "--db",
            "proxy.db",
            "--retries",
            "0",
            "--proxy",
            "http://puser:SECRET-PROXY-PW@127.0.0.1:1",
        ])
        .write_stdin(format!("{base}9\n"))
        .assert()
        .success()
        .get_output()
        .clone();
    let bad_flag = dir
        .cmd()
        .args(["fetch", "--proxy", "http://puser:SECRET-FLAG-PW@[bad", "-"])
        .write_stdin("")
        .assert()
        .code(2)
        .get_output()
        .clone();

    let mut everything = Vec::new();
    for o in [&out, &proxied, &bad_flag] {
        everything.extend(&o.stdout);
        everything.extend(&o.stderr);
    }
    everything.extend(all_bytes_under(dir.dir.path()));
    for secret in [
        "SECRET-URL-PW",
        "SECRET-SPEC-AUTH",
        "SECRET-SPEC-KEY",
        "SECRET-BAD-URL",
        "SECRET-H-AUTH",
        "SECRET-H-COOKIE",
        "SECRET-H-KEY",
        "SECRET-PROXY-PW",
        "SECRET-FLAG-PW",
    ] {
        assert!(!contains(&everything, secret), "{secret} leaked");
    }
    // What is kept instead says where a secret was.
    let db = dir.path("out.db");
    let command = text(&db, "SELECT command FROM runs");
    assert!(command.contains("Authorization: ***"), "{command}");
    assert!(command.contains("X-Api-Key: ***"), "{command}");
    let url = text(&db, "SELECT url FROM outcomes WHERE url LIKE '%/item/2'");
    assert!(url.contains("user:***@"), "{url}");
    let proxy_command = text(&dir.path("proxy.db"), "SELECT command FROM runs");
    assert!(proxy_command.contains("puser:***@"), "{proxy_command}");
    // The fetches themselves happened (with the real credentials).
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outcomes WHERE status = 200"),
        3
    );
}

#[test]
fn header_names_and_values_with_cr_lf_or_nul_are_never_sent() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    // (A NUL cannot be in a command-line argument at all; the JSON specs below carry one.)
    for bad in ["X-A: one\rtwo", "X-A: one\ntwo", "X\r-A: v"] {
        dir.cmd()
            .args(["fetch", "-H", bad, "-"])
            .write_stdin("")
            .assert()
            .code(2);
    }
    let url = srv.url("/item/1");
    let lines: String = [
        r#"{"url": "URL", "headers": {"X-A": "one\r\ntwo"}}"#,
        r#"{"url": "URL", "headers": {"X-A": "one\u0000two"}}"#,
        r#"{"url": "URL", "headers": {"X-\nA": "v"}}"#,
    ]
    .iter()
    .map(|l| l.replace("URL", &url) + "\n")
    .collect();
    dir.write("specs.jsonl", &lines);
    dir.cmd()
        .args(["fetch", "specs.jsonl", "--db", "h.db", "-q"])
        .assert()
        .success();
    let db = dir.path("h.db");
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM outcomes WHERE error = 'invalid-input'"
        ),
        3
    );
    assert_eq!(srv.stats().requests(), 0, "nothing was sent");
}
