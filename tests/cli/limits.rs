//! Limits users can set on what a server sends: the response head (`--max-head`, a larger one is
//! `protocol`) and the content codings stacked on a body (`--max-codings`, more is `decode`).
//! The server is a raw TCP listener that writes one canned response per connection.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::Value;

use crate::harness::Dir;

/// Serves `response` to every connection (after reading the request head) until the test ends.
fn canned(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let response = response.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = conn.write_all(&response);
            });
        }
    });
    format!("http://{addr}/x")
}

fn fetch_one(dir: &Dir, args: &[&str], url: &str) -> Value {
    let out = dir
        .cmd()
        .args(["fetch", "--jsonl", "-", "-q", "--retries", "0", "--http1"])
        .args(args)
        .write_stdin(format!("{url}\n"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap()
}

fn response_with_header_of(len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "a".repeat(len)
    )
    .into_bytes()
}

#[test]
fn a_response_head_over_max_head_is_a_protocol_error() {
    let dir = Dir::new();
    let big = canned(response_with_header_of(100 << 10));
    let o = fetch_one(&dir, &[], &big);
    assert_eq!(
        o["error"], "protocol",
        "100 KiB head over the 64 KiB default: {o}"
    );
    let o = fetch_one(&dir, &["--max-head", "256KiB"], &big);
    assert_eq!(o["status"], 200, "allowed when raised: {o}");
    let small = canned(response_with_header_of(20 << 10));
    let o = fetch_one(&dir, &[], &small);
    assert_eq!(o["status"], 200, "20 KiB head: {o}");
    let o = fetch_one(&dir, &["--max-head", "16KiB"], &small);
    assert_eq!(o["error"], "protocol", "under a lowered limit: {o}");
    dir.cmd()
        .args(["fetch", "--max-head", "1KiB", "-"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--max-head"));
}

#[test]
fn more_stacked_codings_than_max_codings_is_a_decode_error() {
    let dir = Dir::new();
    let chain = |n: usize| {
        let codings = vec!["gzip"; n].join(", ");
        canned(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: {codings}\r\nContent-Length: 4\r\n\
                 Connection: close\r\n\r\nxxxx"
            )
            .into_bytes(),
        )
    };
    let o = fetch_one(&dir, &[], &chain(9));
    assert_eq!(o["error"], "decode", "{o}");
    assert!(
        o["error_detail"]
            .as_str()
            .unwrap()
            .contains("9 stacked content codings"),
        "{o}"
    );
    let o = fetch_one(&dir, &["--max-codings", "2"], &chain(3));
    assert_eq!(o["error"], "decode", "{o}");
    assert!(
        o["error_detail"]
            .as_str()
            .unwrap()
            .contains("more than --max-codings 2"),
        "{o}"
    );
    // Within the limit the body is decoded (here it is not gzip, so that fails differently).
    let o = fetch_one(&dir, &[], &chain(2));
    assert_eq!(o["error"], "decode", "{o}");
    assert!(
        !o["error_detail"].as_str().unwrap().contains("stacked"),
        "{o}"
    );
}
