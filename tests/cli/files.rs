//! `fanout fetch --out-dir`: bodies streamed to sharded files, renamed into place only when
//! complete; kills, full disks, `--max-body` and unusable directories.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fanout::engine::client::body_file;
use fanout::serve::pattern;
use predicates::str::contains;
use sha2::{Digest, Sha256};

use crate::harness::{self, Dir, TestServer, Tmpfs, is_root, rows, wait_until};

/// Every entry under `root`: files (with their depth below `root`), and the entry count of every
/// folder.
struct Tree {
    files: Vec<(PathBuf, usize)>,
    folder_sizes: Vec<usize>,
}

impl Tree {
    fn of(root: &Path) -> Tree {
        let mut tree = Tree {
            files: Vec::new(),
            folder_sizes: Vec::new(),
        };
        tree.walk(root, 0);
        tree
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        let entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        self.folder_sizes.push(entries.len());
        for p in entries {
            if p.is_dir() {
                self.walk(&p, depth + 1);
            } else {
                self.files.push((p, depth));
            }
        }
    }

    fn name(p: &Path) -> &str {
        p.file_name().unwrap().to_str().unwrap()
    }

    /// Files under their final names.
    fn finals(&self) -> Vec<&PathBuf> {
        self.files
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !Tree::name(p).starts_with('.'))
            .collect()
    }

    /// Temporary files (`.NAME.tmp.RANDOM`).
    fn temps(&self) -> Vec<&PathBuf> {
        self.files
            .iter()
            .map(|(p, _)| p)
            .filter(|p| Tree::name(p).starts_with('.'))
            .collect()
    }
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ids of every shape a spec may carry: plain, upper case, spaces, slashes, dots, non-ASCII, long,
/// and pairs that are made safe to the same text.
fn odd_id(i: usize) -> String {
    match i % 8 {
        0 => format!("item-{i}"),
        1 => format!("Item {i}/é"),
        2 => format!("../../{i}"),
        3 => format!("a/{}", i / 8),
        4 => format!("a_{}", i / 8),
        5 => format!("a {}", i / 8),
        6 => format!("{}{i}", "x".repeat(300)),
        _ => format!(".{i}\n\t\"日本\""),
    }
}

#[test]
fn two_thousand_bodies_become_two_thousand_sharded_files() {
    const N: usize = 2000;
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    // What each URL's file must hold.
    let mut expected: HashMap<String, Vec<u8>> = HashMap::new();
    let mut list = String::new();
    for i in 0..N {
        let len = i * 7919 % 40_000;
        let (url, want) = if i % 100 == 7 {
            // A gzip body: the file holds the decoded bytes.
            let doc = serde_json::json!({ "id": i.to_string(), "name": format!("item {i}") });
            let url = srv.url(&format!("/encoded/gzip/{i}"));
            (url, doc.to_string().into_bytes())
        } else {
            let url = srv.url(&format!("/bytes/{len}/{i}"));
            (url, pattern(&i.to_string(), len))
        };
        if i % 5 == 0 {
            // A plain URL line: the key is the default one (a hash).
            list.push_str(&url);
        } else {
            list.push_str(&serde_json::json!({ "url": url, "id": odd_id(i) }).to_string());
        }
        list.push('\n');
        expected.insert(url, want);
    }
    dir.write("urls.txt", &list);
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--out-dir",
            "out",
            "--jsonl",
            "out.jsonl",
            "-c",
            "50",
            "-q",
        ])
        .assert()
        .success();

    let lines = jsonl(&dir.path("out.jsonl"));
    assert_eq!(lines.len(), N);
    let mut paths = HashSet::new();
    for l in &lines {
        assert_eq!(l["status"], 200, "{l}");
        let key = l["key"].as_str().unwrap();
        let want = &expected[l["url"].as_str().unwrap()];
        let path = l["body_path"].as_str().expect("body_path recorded");
        assert!(path.starts_with("out/"), "the path as given: {path}");
        assert_eq!(
            dir.path(path),
            body_file(&dir.path("out"), key),
            "where body_file says"
        );
        let got = std::fs::read(dir.path(path)).unwrap();
        assert!(got == *want, "{key:?}: the file holds what the server sent");
        assert_eq!(l["bytes"], want.len());
        assert_eq!(
            l["body_sha256"],
            sha256_hex(&got),
            "the hash covers the file"
        );
        assert!(paths.insert(path.to_owned()), "{path} shared");
    }

    let tree = Tree::of(&dir.path("out"));
    assert_eq!(tree.finals().len(), N, "one file per request");
    assert!(tree.temps().is_empty(), "no temporary file left");
    assert!(
        tree.files.iter().all(|(_, depth)| *depth == 2),
        "every file two folders down"
    );
    let largest = tree.folder_sizes.iter().max().unwrap();
    assert!(*largest <= 256, "a folder holds {largest} entries");
    let leaves: HashSet<_> = tree.files.iter().map(|(p, _)| p.parent()).collect();
    assert!(
        leaves.len() > 1900,
        "files spread over folders ({} leaves)",
        leaves.len()
    );
}

#[test]
fn sigkill_leaves_no_partial_file_under_a_final_name_and_the_rerun_completes() {
    const N: usize = 24;
    const LEN: usize = 256 * 1024; // 16 chunks, 25 ms apart: ~400 ms a body
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list: String = (0..N)
        .map(|i| {
            let url = srv.url(&format!("/drip/{LEN}/25/k{i}"));
            format!(
                "{}\n",
                serde_json::json!({ "url": url, "id": format!("k{i}") })
            )
        })
        .collect();
    dir.write("urls.txt", &list);
    let out = dir.path("out");
    let args = ["fetch", "urls.txt", "--out-dir", "out", "-c", "6", "-q"];
    let mut child = dir
        .fanout()
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill while the second wave of bodies is half-way through.
    let some_done = wait_until(Duration::from_secs(20), || {
        out.exists() && !Tree::of(&out).finals().is_empty()
    });
    assert!(some_done, "bodies were completed");
    std::thread::sleep(Duration::from_millis(150));
    harness::signal(child.id(), "KILL");
    assert_eq!(child.wait().unwrap().code(), None, "killed by a signal");

    let tree = Tree::of(&out);
    let finals = tree.finals();
    assert!(finals.len() < N, "the run was cut short");
    assert!(
        !tree.temps().is_empty(),
        "the kill came while bodies were being written"
    );
    for f in &finals {
        let id = Tree::name(f);
        assert!(
            std::fs::read(f).unwrap() == pattern(id, LEN),
            "{id}: a file under its final name is complete"
        );
    }

    dir.cmd().args(args).assert().success();
    for i in 0..N {
        let id = format!("k{i}");
        let got = std::fs::read(body_file(&out, &id)).unwrap();
        assert!(got == pattern(&id, LEN), "{id}: complete after the rerun");
    }
    let rows = rows(&dir.path("fanout.db"));
    assert_eq!(rows.len(), N);
    assert!(rows.iter().all(|r| r.status == Some(200)));
}

#[test]
fn an_unusable_out_dir_is_a_usage_error_before_any_request() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    dir.write("urls.txt", &format!("{}\n", srv.url("/bytes/10/a")));
    dir.write("blocker", "a file, not a directory");
    // Below a file: no one can create it, root included.
    for bad in ["blocker/out", "blocker"] {
        dir.cmd()
            .args(["fetch", "urls.txt", "--jsonl", "o.jsonl", "--out-dir", bad])
            .assert()
            .code(2)
            .stderr(contains(format!("'{bad}'")));
    }
    if !is_root() {
        // A directory without write permission (root would write in it anyway).
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        dir.cmd()
            .args(["fetch", "urls.txt", "--jsonl", "o.jsonl", "--out-dir", "ro"])
            .assert()
            .code(2)
            .stderr(contains("'ro'"));
    }
    dir.cmd()
        .args(["fetch", "urls.txt", "--out-dir", "new", "--body", "store"])
        .assert()
        .code(2)
        .stderr(contains("--out-dir"))
        .stderr(contains("--body store"));
    assert!(!dir.path("new").exists(), "a refused run creates nothing");
    assert_eq!(srv.stats().requests(), 0, "nothing was fetched");
    assert!(!dir.path("o.jsonl").exists(), "no store was opened");

    // A missing directory is created, parents included.
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--jsonl",
            "o.jsonl",
            "--out-dir",
            "a/b/c",
        ])
        .assert()
        .success();
    let key = jsonl(&dir.path("o.jsonl"))[0]["key"].clone();
    let path = body_file(&dir.path("a/b/c"), key.as_str().unwrap());
    assert_eq!(std::fs::read(path).unwrap(), pattern("a", 10));
}

#[test]
fn a_body_over_max_body_leaves_no_file() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let list = [
        ("chunked", "/drip/200000/0/big"),
        ("gzip", "/gzip-bomb/1"),
        ("length", "/bytes/200000/big"),
        ("small", "/bytes/1000/small"),
    ]
    .iter()
    .map(|(id, path)| {
        format!(
            "{}\n",
            serde_json::json!({ "url": srv.url(path), "id": id })
        )
    })
    .collect::<String>();
    dir.write("urls.txt", &list);
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "--out-dir",
            "out",
            "--max-body",
            "64KiB",
            "--jsonl",
            "o.jsonl",
        ])
        .assert()
        .success();
    let lines = jsonl(&dir.path("o.jsonl"));
    assert_eq!(lines.len(), 4);
    for l in &lines {
        if l["key"] == "small" {
            assert_eq!(l["status"], 200);
            assert!(l["body_path"].is_string());
        } else {
            assert_eq!(l["error"], "body-too-large", "{l}");
            assert!(l["body_path"].is_null());
        }
    }
    let tree = Tree::of(&dir.path("out"));
    assert!(tree.temps().is_empty(), "partial files were removed");
    let finals: Vec<_> = tree
        .finals()
        .iter()
        .map(|p| Tree::name(p).to_owned())
        .collect();
    assert_eq!(finals, ["small"]);
}

#[test]
fn body_discard_still_writes_files_and_a_rerun_replaces_them() {
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let url = srv.url("/bytes/50000/d");
    dir.write(
        "urls.txt",
        &format!("{}\n", serde_json::json!({ "url": url, "id": "d" })),
    );
    let file = body_file(&dir.path("out"), "d");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "stale").unwrap();
    let args = [
        "fetch",
        "urls.txt",
        "--out-dir",
        "out",
        "--body",
        "discard",
        "--jsonl",
        "o.jsonl",
    ];
    dir.cmd().args(args).assert().success();
    assert_eq!(std::fs::read(&file).unwrap(), pattern("d", 50000));
    let l = &jsonl(&dir.path("o.jsonl"))[0];
    assert!(
        l["body_sha256"].is_null() && l["body_path"].is_string(),
        "{l}"
    );
}

#[test]
fn a_full_disk_makes_io_outcomes_that_name_the_file() {
    const N: usize = 40;
    const LEN: usize = 100_000;
    let srv = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let small = dir.path("small");
    // Root (as in CI) can always mount one; only an unprivileged developer run goes without.
    let Some(_mount) = Tmpfs::mount(&small, "1m") else {
        assert!(
            !is_root(),
            "root must be able to mount a tmpfs for this test"
        );
        eprintln!("not run: mounting a tmpfs needs root");
        return;
    };
    let list: String = (0..N)
        .map(|i| {
            let url = srv.url(&format!("/bytes/{LEN}/f{i}"));
            format!(
                "{}\n",
                serde_json::json!({ "url": url, "id": format!("f{i}") })
            )
        })
        .collect();
    dir.write("urls.txt", &list);
    let out = small.join("out");
    dir.cmd()
        .args([
            "fetch",
            "urls.txt",
            "-c",
            "4",
            "--jsonl",
            "o.jsonl",
            "--out-dir",
        ])
        .arg(&out)
        .assert()
        .success();
    let lines = jsonl(&dir.path("o.jsonl"));
    assert_eq!(lines.len(), N);
    let failed: Vec<_> = lines.iter().filter(|l| l["error"] == "io").collect();
    let done = lines.iter().filter(|l| l["status"] == 200).count();
    assert!(
        !failed.is_empty() && done > 0,
        "{done} written, {} failed",
        failed.len()
    );
    assert_eq!(done + failed.len(), N);
    for l in &failed {
        let detail = l["error_detail"].as_str().unwrap();
        let key = l["key"].as_str().unwrap();
        assert!(
            detail.contains(&body_file(&out, key).display().to_string()),
            "{detail}"
        );
        assert!(l["body_path"].is_null());
    }
    let tree = Tree::of(&out);
    assert!(
        tree.temps().is_empty(),
        "failed attempts removed their files"
    );
    assert_eq!(tree.finals().len(), done);
    for f in tree.finals() {
        let id = Tree::name(f);
        assert!(
            std::fs::read(f).unwrap() == pattern(id, LEN),
            "{id} complete"
        );
    }
}
