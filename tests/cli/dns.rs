//! Host names resolved through a real DNS server on 127.0.0.1 (`harness::DnsServer`, given with
//! `--dns-servers`): answers are kept for their TTL, concurrent look-ups of a name share one query,
//! and a name that does not exist is a `dns` outcome.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Dir, DnsServer, TestServer, fetch_jsonl};

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn fetch(dir: &Dir, dns: &DnsServer, args: &[&str], input: &str) -> Vec<Value> {
    let addr = dns.addr();
    let args: Vec<&str> = ["--dns-servers", addr.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    fetch_jsonl(dir, &args, input)
}

#[test]
fn many_connections_to_a_few_names_ask_dns_once_per_name() {
    // `/close/` ends every connection after its response, so each of the 90 requests opens a new
    // one and needs the name's address; 30 at once makes many look-ups of a name concurrent.
    let srv = TestServer::start(Duration::from_millis(5));
    let port = srv.server.addr().port();
    let names = ["a.test", "b.test", "c.test"];
    let dns = DnsServer::start(&names.map(|n| (n, LOCAL)), 300);
    let dir = Dir::new();
    let list: String = (0..90)
        .map(|i| format!("http://{}:{port}/close/{i}\n", names[(i * 7) % 3]))
        .collect();
    let out = fetch(&dir, &dns, &["-c", "30"], &list);
    assert_eq!(out.len(), 90);
    assert!(out.iter().all(|o| o["status"] == 200), "{out:?}");
    assert!(
        srv.stats().connections() >= 90,
        "every request had a connection of its own"
    );
    // One query per name in all: A only (AAAA is asked only for a name without IPv4 addresses).
    let queries = dns.queries();
    for n in names {
        let asked: u64 = queries
            .iter()
            .filter(|((q, _), _)| q == n)
            .map(|(_, c)| c)
            .sum();
        assert_eq!(asked, 1, "{n}: {queries:?}");
    }
}

#[test]
fn an_answer_is_asked_for_again_once_its_ttl_has_passed() {
    // TTL 1 s: the first and last requests to a.test are 1.5 s apart (the middle one, to an IP
    // address, needs no look-up), so the last one asks again; within the TTL it would not.
    let srv = TestServer::start(Duration::ZERO);
    let port = srv.server.addr().port();
    let dns = DnsServer::start(&[("a.test", LOCAL)], 1);
    let dir = Dir::new();
    let list = format!(
        "http://a.test:{port}/close/1\nhttp://a.test:{port}/close/2\n\
         http://127.0.0.1:{port}/delay/1500\nhttp://a.test:{port}/close/3\n"
    );
    let out = fetch(&dir, &dns, &["-c", "1"], &list);
    assert!(out.iter().all(|o| o["status"] == 200), "{out:?}");
    assert_eq!(dns.a_queries("a.test"), 2, "{:?}", dns.queries());
}

#[test]
fn a_name_that_does_not_exist_is_a_dns_outcome() {
    let srv = TestServer::start(Duration::ZERO);
    let port = srv.server.addr().port();
    let dns = DnsServer::start(&[("a.test", LOCAL)], 300);
    let dir = Dir::new();
    let list = format!("http://missing.test:{port}/item/1\nhttp://a.test:{port}/item/2\n");
    let out = fetch(&dir, &dns, &["--retries", "0"], &list);
    assert_eq!(out.len(), 2);
    let missing = out
        .iter()
        .find(|o| o["url"].as_str().unwrap().contains("missing"))
        .unwrap();
    assert_eq!(missing["error"], "dns", "{missing}");
    assert!(
        missing["error_detail"]
            .as_str()
            .unwrap()
            .contains("missing.test"),
        "{missing}"
    );
    let found = out
        .iter()
        .find(|o| o["url"].as_str().unwrap().contains("a.test"))
        .unwrap();
    assert_eq!(found["status"], 200, "{found}");
    assert!(dns.a_queries("missing.test") >= 1);
}
