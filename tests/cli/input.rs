//! Awkward input bytes have a defined outcome: a UTF-8 byte-order mark opens a file and is
//! skipped, CRLF line endings are plain line endings, a NUL byte, invalid UTF-8 or a line over
//! 1 MiB is an `invalid-input` outcome naming file:line, and the rest of the file is fetched.

use std::time::Duration;

use crate::harness::{Dir, TestServer, rows};

#[test]
fn boms_crlf_nuls_bad_utf8_and_huge_lines_have_defined_outcomes() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let mut input: Vec<u8> = Vec::new();
    input.extend(b"\xEF\xBB\xBF");
    input.extend(format!("{}\r\n", srv.url("/item/1")).as_bytes()); // line 1: BOM + CRLF
    input.extend(format!("{}\r\n", srv.url("/item/2")).as_bytes()); // line 2: CRLF
    input.extend(format!("{}\0x\n", srv.url("/item/3")).as_bytes()); // line 3: NUL
    input.extend(b"http://127.0.0.1/\xFF\xFE\n"); // line 4: not UTF-8
    input.extend(vec![b'a'; 10 << 20]); // line 5: 10 MB
    input.push(b'\n');
    input.extend(format!("\u{FEFF}{}\n", srv.url("/item/6")).as_bytes()); // line 6: BOM mid-file
    input.extend(srv.url("/item/7").as_bytes()); // line 7: no final newline
    std::fs::write(dir.path("in.txt"), &input).unwrap();
    dir.cmd()
        .args(["fetch", "in.txt", "--db", "in.db", "-q"])
        .assert()
        .success();
    let rows = rows(&dir.path("in.db"));
    let by_line = |n: u32| {
        let key = format!("invalid:in.txt:{n}");
        rows.iter().find(|r| r.key == key).cloned()
    };
    let ok: Vec<&str> = rows
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r| r.url.as_str())
        .collect();
    for path in ["/item/1", "/item/2", "/item/7"] {
        assert!(
            ok.iter().any(|u| u.ends_with(path)),
            "{path} fetched: {ok:?}"
        );
    }
    for (line, reason) in [
        (3, "NUL"),
        (4, "not valid UTF-8"),
        (5, "longer than"),
        (6, "neither a URL"),
    ] {
        let r = by_line(line).unwrap_or_else(|| panic!("line {line} recorded: {rows:?}"));
        assert_eq!(r.error.as_deref(), Some("invalid-input"));
        let detail = r.error_detail.unwrap();
        assert!(detail.starts_with(&format!("in.txt:{line}: ")), "{detail}");
        assert!(detail.contains(reason), "line {line}: {detail}");
    }
    assert_eq!(rows.len(), 7);
    assert_eq!(srv.stats().requests(), 3, "nothing invalid was sent");
}
