//! Progress on stderr: the live bar under a real pseudo-terminal (openpty from libc, already a
//! dependency of the binary, so no crate is added for it), and `--progress always` plain lines
//! when stderr is a pipe.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Dir, TestServer, scalar};

/// Runs `cmd` with its stderr on a new pseudo-terminal (160 columns) and returns whether it
/// succeeded and everything it wrote there.
fn run_on_pty(mut cmd: Command, stdin: Stdio) -> (bool, String) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the given ints; name and termios may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .env("TERM", "xterm");
    let mut child = cmd.spawn().unwrap();
    // The Command holds the slave end until dropped; the master reads EOF (EIO) only once
    // every slave descriptor is closed.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    });
    let ok = child.wait().unwrap().success();
    let out = reader.join().unwrap();
    (ok, String::from_utf8_lossy(&out).into_owned())
}

/// Every percentage the output shows, in order.
fn percentages(out: &str) -> Vec<u32> {
    let b = out.as_bytes();
    let mut found = Vec::new();
    for (i, _) in out.match_indices('%') {
        let digits = b[..i]
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits > 0 {
            found.push(out[i - digits..i].parse().unwrap());
        }
    }
    found
}

#[test]
fn bar_on_a_terminal_shows_a_percentage_of_a_file_input_and_reaches_100() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..600)
        .map(|i| format!("{}\n", srv.url(&format!("/delay/5?i={i}"))))
        .collect();
    dir.write("urls.txt", &list);
    let mut cmd = dir.fanout();
    cmd.args(["fetch", "urls.txt", "-c", "2"]);
    let (ok, out) = run_on_pty(cmd, Stdio::null());
    assert!(ok, "{out}");
    let shown = percentages(&out);
    assert!(
        shown.iter().any(|&p| p < 100),
        "a percentage below 100 while running: {shown:?}\n{out}"
    );
    assert_eq!(shown.last(), Some(&100), "ends at 100%: {out}");
    assert!(out.contains("ETA"), "{out}");
    assert!(out.contains("600 done"), "{out}");
    assert!(out.contains("in flight") && out.contains("retries") && out.contains("skipped"));
    assert_eq!(
        scalar(&dir.path("fanout.db"), "SELECT count(*) FROM outcomes"),
        600
    );
}

#[test]
fn stdin_on_a_terminal_gets_a_spinner_with_counts_and_no_percentage() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..300)
        .map(|i| format!("{}\n", srv.url(&format!("/delay/5?i={i}"))))
        .collect();
    let input = dir.write("urls.txt", &list);
    let mut cmd = dir.fanout();
    cmd.args(["fetch", "-c", "4"]);
    let (ok, out) = run_on_pty(cmd, Stdio::from(std::fs::File::open(input).unwrap()));
    // stdin from a file is still stdin: the size is not looked at.
    assert!(ok, "{out}");
    assert!(percentages(&out).is_empty(), "no percentage: {out}");
    assert!(
        out.contains("300 done") && out.contains("in flight"),
        "{out}"
    );
}

#[test]
fn progress_always_off_a_terminal_prints_plain_lines_ending_with_the_final_count() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    // About 3 s: 24 requests of 250 ms, two at a time.
    let list: String = (0..24)
        .map(|i| format!("{}\n", srv.url(&format!("/delay/250?i={i}"))))
        .collect();
    dir.write("urls.txt", &list);
    let out = dir
        .cmd()
        .args(["fetch", "urls.txt", "-c", "2", "--progress", "always"])
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("fanout: [")).collect();
    assert!(lines.len() >= 2, "a line every 2 s and a last one: {err}");
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "plain text: {err:?}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.contains("100% of input done") && last.contains("24 done"),
        "{last}"
    );
    assert!(
        lines[0].contains("% of input done") && lines[0].contains("in flight"),
        "{}",
        lines[0]
    );
}

#[test]
fn progress_auto_off_a_terminal_and_quiet_print_no_progress() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &format!("{}\n", srv.url("/item/1")));
    for args in [
        &["fetch", "urls.txt"][..],
        &["fetch", "urls.txt", "-q", "--progress", "always"],
        &["fetch", "urls.txt", "--progress", "never", "--fresh"],
    ] {
        let out = dir.cmd().args(args).assert().success().get_output().clone();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.contains("fanout: ["), "{args:?}: {err}");
    }
}

#[test]
fn progress_rejects_an_unknown_value_naming_the_flag() {
    let dir = Dir::new();
    let out = dir
        .cmd()
        .args(["fetch", "--progress", "sometimes"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8(out).unwrap().contains("--progress"));
}
