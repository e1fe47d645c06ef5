//! Polite and persistent: per-host limits without head-of-line blocking, rate limits, retries with
//! backoff and Retry-After, adaptive concurrency. Judged by what the servers saw.

use std::time::{Duration, Instant};

use crate::harness::{Dir, TestServer, rows, scalar};

fn list(srv: &TestServer, n: usize, path: &str) -> String {
    (0..n)
        .map(|i| format!("{}\n", srv.url(&format!("{path}{i}"))))
        .collect()
}

/// The largest number of arrivals in any window of `width` starting at an arrival.
fn max_in_window(arrivals: &[Instant], width: Duration) -> usize {
    let mut times = arrivals.to_vec();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t < times[i] + width)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn times(srv: &TestServer) -> Vec<Instant> {
    srv.stats().arrivals().into_iter().map(|(t, _)| t).collect()
}

#[test]
fn per_host_limit_holds_and_other_hosts_proceed() {
    let a = TestServer::start(Duration::from_millis(40));
    let b = TestServer::start(Duration::from_millis(40));
    let c = TestServer::start(Duration::from_millis(40));
    let dir = Dir::new();
    // All of a's requests come first in the input: with head-of-line blocking b and c would wait.
    let input = format!(
        "{}{}{}",
        list(&a, 60, "/item/"),
        list(&b, 6, "/item/"),
        list(&c, 6, "/item/")
    );
    dir.write("urls.txt", &input);
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "20", "--per-host", "2"])
        .assert()
        .success();
    for (name, s) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(
            s.stats().max_in_flight() <= 2,
            "{name} saw {} at once",
            s.stats().max_in_flight()
        );
    }
    assert_eq!(a.stats().max_in_flight(), 2, "the limit is used");
    let a_last = *times(&a).iter().max().unwrap();
    for s in [&b, &c] {
        let last = *times(s).iter().max().unwrap();
        assert!(last < a_last, "b and c finished while a was still busy");
    }
    assert_eq!(
        scalar(
            &dir.path("fanout.db"),
            "SELECT count(*) FROM outcomes WHERE status = 200"
        ),
        72
    );
}

#[test]
fn retry_after_pauses_the_host_for_everyone() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &list(&srv, 30, "/throttle/"));
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "4"])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 30);
    assert!(
        rows.iter().all(|r| r.status == Some(200)),
        "every request ends 200"
    );
    let start = srv.stats().throttled_at().expect("the pause was opened");
    // Requests already in flight when the first 429 left may still arrive just after it.
    let inside: Vec<_> = times(&srv)
        .into_iter()
        .filter(|t| *t > start + Duration::from_millis(100) && *t < start + Duration::from_secs(1))
        .collect();
    assert!(
        inside.is_empty(),
        "{} requests arrived during the pause",
        inside.len()
    );
    let retried = rows.iter().filter(|r| r.attempts > 1).count();
    assert!(retried >= 1, "the 429s were retried");
}

#[test]
fn global_rate_has_no_window_above_rate_plus_burst() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &list(&srv, 60, "/item/"));
    dir.cmd()
        .args([
            "fetch", "urls.txt", "-c", "16", "--rate", "20/s", "--burst", "5",
        ])
        .assert()
        .success();
    let t = times(&srv);
    assert_eq!(t.len(), 60);
    let max = max_in_window(&t, Duration::from_secs(1));
    assert!(
        max <= 25,
        "{max} requests in one second with --rate 20/s --burst 5"
    );
    assert!(max >= 15, "the rate is used ({max} in the busiest second)");
}

#[test]
fn per_host_rate_limits_each_host_not_the_total() {
    let a = TestServer::start(Duration::ZERO);
    let b = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write(
        "urls.txt",
        &format!("{}{}", list(&a, 25, "/item/"), list(&b, 25, "/item/")),
    );
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "-c",
            "16",
            "--per-host-rate",
            "10/s",
            "--burst",
            "2",
        ])
        .assert()
        .success();
    let (ta, tb) = (times(&a), times(&b));
    assert_eq!(ta.len() + tb.len(), 50);
    for t in [&ta, &tb] {
        let max = max_in_window(t, Duration::from_secs(1));
        assert!(
            max <= 12,
            "{max} requests to one host in one second with --per-host-rate 10/s --burst 2"
        );
    }
    let both: Vec<Instant> = ta.iter().chain(&tb).copied().collect();
    assert!(
        max_in_window(&both, Duration::from_secs(1)) > 12,
        "hosts are limited separately"
    );
}

#[test]
fn retries_are_recorded_once_with_their_attempts() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let post =
        serde_json::json!({"url": srv.url("/fail-once/post"), "method": "POST", "body": "x"});
    let input = format!(
        "{}\n{}\n{post}\n",
        srv.url("/fail-once/get"),
        srv.url("/status/503")
    );
    dir.write("urls.txt", &input);
    dir.cmd()
        .args(["fetch", "urls.txt", "--backoff", "10ms..50ms"])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 3, "one outcome per request, not one per try");
    let get = rows
        .iter()
        .find(|r| r.url.ends_with("/fail-once/get"))
        .unwrap();
    assert_eq!((get.status, get.attempts), (Some(200), 2));
    let always = rows
        .iter()
        .find(|r| r.url.ends_with("/status/503"))
        .unwrap();
    assert_eq!(
        (always.status, always.attempts),
        (Some(503), 3),
        "the last response is recorded"
    );
    let post = rows
        .iter()
        .find(|r| r.url.ends_with("/fail-once/post"))
        .unwrap();
    assert_eq!(
        (post.status, post.attempts),
        (Some(503), 1),
        "POST is not retried by default"
    );
    let hits = srv.stats().hits();
    assert_eq!(hits["/status/503"], 3);

    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--fresh",
            "--db",
            "again.db",
            "--retry-non-idempotent",
            "--retry-on",
            "timeout",
        ])
        .assert()
        .success();
    let rows = crate::harness::rows(&dir.path("again.db"));
    let always = rows
        .iter()
        .find(|r| r.url.ends_with("/status/503"))
        .unwrap();
    assert_eq!(
        always.attempts, 1,
        "--retry-on timeout does not retry a 503"
    );
}

#[test]
fn adaptive_finds_a_hosts_capacity() {
    const K: usize = 8;
    let path = format!("/limited/{K}/");

    let plain = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("plain.txt", &list(&plain, 400, &path));
    dir.cmd()
        .args([
            "fetch",
            "plain.txt",
            "-c",
            "48",
            "--db",
            "plain.db",
            "--retries",
            "0",
        ])
        .assert()
        .success();
    let plain_503 = plain.stats().limited_rejected();

    let srv = TestServer::start(Duration::ZERO);
    dir.write("urls.txt", &list(&srv, 400, &path));
    let out = dir
        .cmd()
        .args([
            "fetch",
            "urls.txt",
            "-c",
            "48",
            "--adaptive",
            "--retries",
            "8",
            "--backoff",
            "20ms..500ms",
        ])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 400);
    assert!(
        rows.iter().all(|r| r.status == Some(200)),
        "every request ends 200 with --adaptive"
    );
    let adaptive_503 = srv.stats().limited_rejected();
    let learned: usize = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("host ")?
                .split("limit ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no learned limit in the summary:\n{stderr}"));
    eprintln!(
        "K={K}: learned limit {learned}; 503s with --adaptive {adaptive_503}, without {plain_503}"
    );
    assert!(
        (K / 2..=K * 2).contains(&learned),
        "learned {learned}, capacity {K}"
    );
    assert!(
        plain_503 > 100,
        "without --adaptive many requests are turned away ({plain_503})"
    );
    assert!(
        adaptive_503 * 3 < plain_503,
        "--adaptive: {adaptive_503} 503s, without: {plain_503}"
    );
}

#[test]
fn retry_after_after_a_redirect_pauses_the_host_that_sent_it() {
    let front = TestServer::start(Duration::ZERO);
    let back = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    // The first request reaches `back` through a redirect from `front` and opens back's pause;
    // the rest go to `back` directly and must wait for that pause.
    let target = back.url("/throttle/via-redirect");
    let first = format!(
        "{}?url={}",
        front.url("/redirect-to"),
        target.replace(':', "%3A").replace('/', "%2F")
    );
    let input = format!("{first}\n{}", list(&back, 10, "/throttle/"));
    dir.write("urls.txt", &input);
    dir.cmd()
        .args(["fetch", "urls.txt", "-c", "1"])
        .assert()
        .success();
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), 11);
    assert!(rows.iter().all(|r| r.status == Some(200)), "{rows:?}");
    let start = back.stats().throttled_at().expect("the pause was opened");
    // With -c 1 nothing else is in flight when the pause opens, so nothing may arrive inside it.
    let inside = times(&back)
        .into_iter()
        .filter(|t| *t > start && *t < start + Duration::from_secs(1))
        .count();
    assert_eq!(
        inside, 0,
        "requests reached the paused host during its pause"
    );
}
