//! Every fault a precise outcome: one test per row of docs/errors.md's fault table, each against
//! the fault server (`fanout::serve::faults`, raw TCP on 127.0.0.1 port 0). Each asserts the kind
//! stored in the SQLite store and that the run ended within a budget derived from its flags: a
//! fault that needs no timer ends far below `--timeout 30s`, a hang ends soon after its
//! `--timeout 1s`. Budgets are generous bounds, never tight timings.

use std::time::{Duration, Instant};

use fanout::serve::faults::FaultServer;

use crate::harness::{self, Dir, Row, rows, scalar};

/// A fault server on a runtime of its own, apart from the code under test.
struct Faults {
    server: FaultServer,
    // Dropped last: the server's tasks live on this runtime.
    _rt: tokio::runtime::Runtime,
}

impl Faults {
    fn start() -> Faults {
        let rt = harness::server_runtime();
        let server = rt
            .block_on(FaultServer::start("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        Faults { server, _rt: rt }
    }
}

/// What one run against one fault came to.
struct Ended {
    row: Row,
    /// Wall-clock time of the whole `fanout fetch` process.
    took: Duration,
    /// The outcome's `total_ms`.
    total_ms: f64,
}

/// Fetches `url` once with `args` (no retries unless `args` asks for them, `--timeout 30s` unless
/// it sets one) into a SQLite store, and returns the one stored row.
fn fetch(args: &[&str], url: &str) -> Ended {
    let dir = Dir::new();
    let mut all: Vec<&str> = vec!["fetch", "-q", "--db", "out.db"];
    if !args.contains(&"--retries") {
        all.extend(["--retries", "0"]);
    }
    if !args.contains(&"--timeout") {
        all.extend(["--timeout", "30s"]);
    }
    all.extend(args);
    all.push("-");
    let start = Instant::now();
    dir.cmd()
        .args(&all)
        .write_stdin(format!("{url}\n"))
        .assert()
        .code(predicates::ord::lt(2));
    let took = start.elapsed();
    let db = dir.path("out.db");
    let mut stored = rows(&db);
    assert_eq!(stored.len(), 1, "one outcome for {url}: {stored:?}");
    let total_ms = scalar(&db, "SELECT CAST(total_ms AS INTEGER) FROM outcomes") as f64;
    Ended {
        row: stored.remove(0),
        took,
        total_ms,
    }
}

/// Asserts the stored error kind and the wall-clock budget.
fn assert_ended(e: &Ended, kind: &str, budget: Duration) {
    assert_eq!(
        e.row.error.as_deref(),
        Some(kind),
        "kind; detail: {:?}",
        e.row.error_detail
    );
    assert!(
        e.took < budget,
        "ended in {:?}, over its budget of {budget:?} ({:?})",
        e.took,
        e.row.error_detail
    );
}

/// A fault that needs no timer: far below `--timeout 30s`.
const FAST: Duration = Duration::from_secs(10);
/// A fault that ends by `--timeout 1s`.
const HANG: Duration = Duration::from_secs(8);

fn fault(name: &str, args: &[&str], kind: &str, budget: Duration) -> Ended {
    let f = Faults::start();
    let e = fetch(args, &f.server.url(name));
    assert_ended(&e, kind, budget);
    // Every connection the client opened has been let go of by both sides.
    assert!(
        crate::harness::wait_until(Duration::from_secs(5), || f.server.stats().open() == 0),
        "{name}: {} connections still open",
        f.server.stats().open()
    );
    e
}

fn detail(e: &Ended) -> &str {
    e.row.error_detail.as_deref().unwrap_or("")
}

// --- time limits ---

#[test]
fn a_server_that_accepts_and_hangs_is_a_timeout() {
    fault("hang", &["--timeout", "1s"], "timeout", HANG);
}

#[test]
fn headers_then_silence_is_a_timeout() {
    fault(
        "headers-then-silence",
        &["--timeout", "1s"],
        "timeout",
        HANG,
    );
}

#[test]
fn a_tls_handshake_that_stalls_is_a_timeout() {
    let f = Faults::start();
    let e = fetch(&["--timeout", "1s"], &f.server.https_url());
    assert_ended(&e, "timeout", HANG);
}

// --- the connection ends early ---

#[test]
fn an_empty_reply_is_reset() {
    fault("empty", &[], "reset", FAST);
}

#[test]
fn a_reset_before_the_response_is_reset() {
    fault("reset-before", &[], "reset", FAST);
}

#[test]
fn a_reset_mid_body_is_reset() {
    fault("reset-mid-body", &[], "reset", FAST);
}

#[test]
fn a_body_shorter_than_its_content_length_is_reset() {
    fault("short-body", &[], "reset", FAST);
}

#[test]
fn a_chunked_body_cut_mid_chunk_is_reset() {
    fault("cut-chunked", &[], "reset", FAST);
}

// --- body framing ---

#[test]
fn a_chunk_size_that_is_not_hex_is_protocol() {
    let e = fault("bad-chunk-size", &[], "protocol", FAST);
    assert!(detail(&e).contains("chunk size"), "{}", detail(&e));
}

#[test]
fn a_chunk_size_that_overflows_is_protocol() {
    let e = fault("chunk-size-overflow", &[], "protocol", FAST);
    assert!(detail(&e).contains("overflow"), "{}", detail(&e));
}

#[test]
fn endless_chunked_trailers_are_protocol() {
    let e = fault("endless-trailers", &[], "protocol", FAST);
    assert!(detail(&e).contains("trailer"), "{}", detail(&e));
}

// --- the head ---

#[test]
fn a_bad_status_line_is_protocol() {
    fault("bad-status", &[], "protocol", FAST);
}

#[test]
fn an_http09_answer_is_protocol() {
    fault("http09", &[], "protocol", FAST);
}

#[test]
fn a_head_that_never_ends_is_protocol() {
    let e = fault("big-head", &[], "protocol", FAST);
    assert!(detail(&e).contains("too large"), "{}", detail(&e));
}

// --- bodies and their codings ---

#[test]
fn an_endless_body_is_body_too_large() {
    fault(
        "endless-body",
        &["--max-body", "1MiB"],
        "body-too-large",
        FAST,
    );
}

#[test]
fn a_gzip_bomb_is_body_too_large() {
    fault("gzip-bomb", &["--max-body", "8MiB"], "body-too-large", FAST);
}

#[test]
fn a_body_that_is_not_the_gzip_it_says_is_decode() {
    fault("broken-gzip", &[], "decode", FAST);
}

#[test]
fn bad_framing_under_a_content_coding_is_protocol_not_decode() {
    let e = fault("gzip-bad-chunk", &[], "protocol", FAST);
    assert!(detail(&e).contains("chunk size"), "{}", detail(&e));
}

#[test]
fn a_long_content_encoding_chain_is_decode() {
    let e = fault("codings-chain", &[], "decode", FAST);
    assert!(detail(&e).contains("--max-codings"), "{}", detail(&e));
}

// --- redirects ---

#[test]
fn a_redirect_loop_is_too_many_redirects() {
    let e = fault(
        "redirect-loop",
        &["--max-redirects", "5"],
        "too-many-redirects",
        FAST,
    );
    assert!(detail(&e).contains("more than 5"), "{}", detail(&e));
}

#[test]
fn an_unparsable_location_is_bad_redirect() {
    fault("bad-location", &[], "bad-redirect", FAST);
}

#[test]
fn a_redirect_to_ftp_is_bad_redirect() {
    let e = fault("redirect-ftp", &[], "bad-redirect", FAST);
    assert!(detail(&e).contains("ftp://"), "{}", detail(&e));
}

#[test]
fn a_redirect_without_location_is_the_redirect_response() {
    // As curl -L does: nothing to follow, so the 302 is the answer.
    let f = Faults::start();
    let e = fetch(&[], &f.server.url("redirect-no-location"));
    assert_eq!(e.row.status, Some(302), "{:?}", e.row.error_detail);
    assert_eq!(e.row.error, None);
    assert!(e.took < FAST, "{:?}", e.took);
}

// --- a complete response, then a slow close ---

#[test]
fn a_slow_close_after_a_complete_response_is_the_response() {
    // The server never closes; the response is complete at its Content-Length, so the run does
    // not wait for the close (nor for --timeout 30s).
    let f = Faults::start();
    let e = fetch(&[], &f.server.url("slow-close"));
    assert_eq!(e.row.status, Some(200), "{:?}", e.row.error_detail);
    assert!(e.took < FAST, "waited for the close: {:?}", e.took);
}

// --- Retry-After, every form (503, retried once) ---

fn retried(name: &str, args: &[&str]) -> Ended {
    let f = Faults::start();
    let mut all = vec!["--retries", "1", "--backoff", "10ms..50ms"];
    all.extend(args);
    let e = fetch(&all, &f.server.url(name));
    assert_eq!(e.row.status, Some(503), "{:?}", e.row.error_detail);
    assert_eq!(e.row.attempts, 2, "retried once");
    e
}

#[test]
fn retry_after_in_seconds_is_waited_for() {
    let e = retried("retry-after-seconds", &[]);
    assert!(
        e.total_ms >= 900.0,
        "Retry-After: 1 waited {} ms",
        e.total_ms
    );
    assert!(e.took < FAST, "{:?}", e.took);
}

#[test]
fn retry_after_as_a_future_http_date_is_waited_for() {
    // Two seconds ahead at one-second resolution: more than one second to wait.
    let e = retried("retry-after-date", &[]);
    assert!(e.total_ms >= 900.0, "waited {} ms", e.total_ms);
    assert!(e.took < FAST, "{:?}", e.took);
}

#[test]
fn retry_after_in_the_past_is_no_wait() {
    // Were it misread as a wait, the default --max-retry-after (5 min) would blow the budget.
    let e = retried("retry-after-past", &[]);
    assert!(e.took < FAST, "{:?}", e.took);
}

#[test]
fn retry_after_garbage_is_ignored() {
    let e = retried("retry-after-garbage", &[]);
    assert!(e.took < FAST, "{:?}", e.took);
}

#[test]
fn a_huge_retry_after_is_capped_by_max_retry_after() {
    let e = retried("retry-after-huge", &["--max-retry-after", "1s"]);
    assert!(e.total_ms >= 900.0, "capped at 1 s: {} ms", e.total_ms);
    assert!(e.took < FAST, "{:?}", e.took);
}

// --- HTTP/2 (prior knowledge over cleartext, --http2) ---

#[test]
fn an_h2_continuation_flood_is_protocol() {
    let e = fault("h2-continuation-flood", &["--http2"], "protocol", FAST);
    assert!(
        detail(&e).contains("too_many_continuations"),
        "{}",
        detail(&e)
    );
}

#[test]
fn an_h2_header_list_over_max_head_is_protocol() {
    fault("h2-big-head", &["--http2"], "protocol", FAST);
}

#[test]
fn an_h2_stream_reset_mid_body_is_protocol() {
    let e = fault("h2-reset", &["--http2"], "protocol", FAST);
    assert!(detail(&e).contains("INTERNAL_ERROR"), "{}", detail(&e));
}

#[test]
fn an_h2_refused_stream_is_reset() {
    // REFUSED_STREAM says the request was not processed: retried like a closed connection.
    fault("h2-refused", &["--http2"], "reset", FAST);
}

#[test]
fn the_fault_server_answers_ok_on_both_versions() {
    let f = Faults::start();
    for args in [&["--http1"][..], &["--http2"][..]] {
        let e = fetch(args, &f.server.url("ok"));
        assert_eq!(
            e.row.status,
            Some(200),
            "{args:?}: {:?}",
            e.row.error_detail
        );
    }
}

// --- a low-speed limit (--speed-limit, --speed-time), as curl's ---

#[test]
fn a_drip_of_a_byte_a_second_ends_by_speed_limit() {
    let e = fault(
        "drip",
        &["--speed-limit", "100", "--speed-time", "1s"],
        "timeout",
        FAST,
    );
    assert!(detail(&e).contains("--speed-limit 100"), "{}", detail(&e));
}

#[test]
fn speed_time_alone_is_a_limit_of_one_byte_a_second() {
    // A hang sends nothing at all: under 1 byte a second for the whole window.
    let e = fault("hang", &["--speed-time", "1s"], "timeout", FAST);
    assert!(detail(&e).contains("--speed-limit 1 "), "{}", detail(&e));
}

#[test]
fn a_long_download_at_a_good_pace_is_not_cut_by_speed_limit() {
    // 1 MiB in 16 KiB pieces 50 ms apart: about 3 s at ~320 KiB/s, so several 1 s windows, each
    // well above 10 KiB/s.
    let server = crate::harness::TestServer::start(Duration::ZERO);
    let e = fetch(
        &["--speed-limit", "10KiB", "--speed-time", "1s"],
        &server.url("/drip/1048576/50/pace"),
    );
    assert_eq!(e.row.status, Some(200), "{:?}", e.row.error_detail);
    assert!(e.total_ms >= 1000.0, "spanned more than one window");
}

#[test]
fn speed_limit_flags_are_checked() {
    let dir = Dir::new();
    for (flag, value) in [("--speed-time", "0s"), ("--speed-limit", "fast")] {
        dir.cmd()
            .args(["fetch", flag, value, "-"])
            .write_stdin("")
            .assert()
            .code(2)
            .stderr(predicates::str::contains(flag));
    }
}

// --- the fault server as a process (what scripts/soak.sh runs) ---

#[test]
fn serve_faults_runs_the_fault_server_until_interrupted() {
    let port = harness::free_port();
    let dir = Dir::new();
    let mut child = dir
        .fanout()
        .args(["serve", "--faults", "--port", &port.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = crate::harness::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "serve --faults did not start");
    let base = format!("http://127.0.0.1:{port}/fault");
    let e = fetch(&[], &format!("{base}/ok/1"));
    assert_eq!(e.row.status, Some(200), "{:?}", e.row.error_detail);
    let e = fetch(&[], &format!("{base}/chunk-size-overflow/2"));
    assert_eq!(e.row.error.as_deref(), Some("protocol"));
    crate::harness::signal(child.id(), "INT");
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("chunk-size-overflow"),
        "lists the faults: {err}"
    );
    // Two requests: the start-up probe connected but sent none.
    assert!(err.contains("2 requests"), "{err}");
    dir.cmd()
        .args(["serve", "--faults", "--latency", "1s"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--latency"));
}
