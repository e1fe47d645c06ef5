//! `--out-dir`: where a response body goes on disk and how it gets there. Names each file after its
//! request key (filesystem-safe, bounded, distinct keys never share a name), shards the files into
//! two levels of 256 folders, and writes through a temporary file in the final folder that is
//! renamed to the final name only once the body is complete. Owns only files under the output
//! directory; knows nothing of connections, decoding or stores.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::Failure;
use crate::outcome::ErrorKind;
use crate::request::to_hex;

/// Bodies reach the file in writes of at least this much (but the last): tokio runs each write on
/// its blocking pool, so tiny frames (chunked encoding can deliver a few bytes at a time) are
/// gathered first rather than costing a thread hop each.
const GATHER: usize = 16 * 1024;

/// And in writes of at most this much: tokio's file copies what it is given to write (2 MiB at
/// most by default), and a body frame can be a few hundred KiB.
const MAX_WRITE: usize = 64 * 1024;

/// Keys longer than this are never used as names as they are.
const MAX_PLAIN: usize = 128;

/// How much of a key is kept, made safe, in front of its hash.
const MAX_PREFIX: usize = 64;

/// Where the body of the request `key` is written under `dir`: `dir/ab/cd/NAME`, where `ab/cd` are
/// the first two bytes of the key's SHA-256 in hex (65,536 folders, so that no folder holds more
/// than a few thousand files even for 100 million keys) and `NAME` is the key itself when it is
/// made of `a-z`, `0-9`, `.`, `_` and `-` only, at most 128 bytes, and does not start with `.`.
/// Any other key is written as its first 64 characters with every other character replaced by `_`,
/// then `~` and 32 hex digits of its SHA-256: `~` never appears in a plain name, so a plain name
/// and a hashed one never meet, and two hashed ones differ by their hash. Upper case letters are
/// hashed too, so that no two keys share a file on a case-insensitive filesystem either.
///
/// ```
/// use std::path::Path;
/// use fanout::engine::client::body_file;
/// let p = body_file(Path::new("out"), "item-1");
/// assert!(p.starts_with("out") && p.ends_with("item-1"));
/// assert_eq!(p.components().count(), 4); // out/ab/cd/item-1
/// let q = body_file(Path::new("out"), "../../etc/passwd");
/// let name = q.file_name().unwrap().to_str().unwrap();
/// assert!(name.starts_with("_._.._etc_passwd~") && name.len() == 17 + 32);
/// ```
pub fn body_file(dir: &Path, key: &str) -> PathBuf {
    let digest = Sha256::digest(key.as_bytes());
    let mut path = shard(dir, &digest);
    path.push(file_name(key, &digest));
    path
}

/// `dir/ab/cd` for a key whose SHA-256 is `digest`.
fn shard(dir: &Path, digest: &[u8]) -> PathBuf {
    dir.join(to_hex(&digest[..1])).join(to_hex(&digest[1..2]))
}

/// The file name of `key` (see [`body_file`]).
fn file_name(key: &str, digest: &[u8]) -> String {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if !key.is_empty() && key.len() <= MAX_PLAIN && !key.starts_with('.') && key.bytes().all(plain)
    {
        return key.to_owned();
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    let mut name: String = key
        .chars()
        .take(MAX_PREFIX)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    // A leading dot would hide the file, and temporary files are the ones that start with one.
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    name.push('~');
    name.push_str(&to_hex(&digest[..16]));
    name
}

/// Creates `dir` if it is missing and checks that files can be created in it, as `--out-dir`
/// needs before a run starts. The error names the directory.
pub fn check_out_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create directory '{shown}': {e}"))?;
    let probe = dir.join(format!(".fanout-probe.{:016x}", fastrand::u64(..)));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| io::Write::write_all(&mut f, b"x"))
        .map_err(|e| format!("cannot write in directory '{shown}': {e}"))?;
    std::fs::remove_file(&probe).map_err(|e| format!("cannot write in directory '{shown}': {e}"))
}

/// A body being written: a temporary file next to its final name, removed when dropped unless
/// [`BodyFile::commit`] renamed it. Dropping covers every way an attempt can end early (an error,
/// `--max-body`, the attempt's timeout dropping its future, a panic).
pub(super) struct BodyFile {
    /// tokio's file runs each write on the blocking pool with at most one write in flight, holding
    /// a copy of that one chunk (64 KiB at most); the 16 KiB buffer in front gathers small frames.
    /// A body being written thus holds at most 80 KiB besides the frame being read, whatever its
    /// size: memory stays flat.
    /// (A blocking write on the runtime's own thread was the alternative: a slow or full disk would
    /// then stall every connection served by that thread.)
    out: BufWriter<tokio::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl BodyFile {
    /// Opens a new temporary file for `key`'s body under `dir`, creating its folders on demand.
    pub(super) async fn create(dir: &Path, key: &str) -> Result<BodyFile, Failure> {
        let path = body_file(dir, key);
        let (folder, name) = match (path.parent(), path.file_name()) {
            (Some(f), Some(n)) => (f.to_owned(), n.to_string_lossy().into_owned()),
            _ => return Err(Failure::new(ErrorKind::Io, "no file name for the body")),
        };
        let mut made_folder = false;
        loop {
            let tmp = folder.join(format!(".{name}.tmp.{:016x}", fastrand::u64(..)));
            let opened = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await;
            match opened {
                Ok(mut file) => {
                    file.set_max_buf_size(MAX_WRITE);
                    return Ok(BodyFile {
                        out: BufWriter::with_capacity(GATHER, file),
                        tmp,
                        path,
                        committed: false,
                    });
                }
                // Folders are made the first time one is needed, not checked for every body.
                Err(e) if e.kind() == io::ErrorKind::NotFound && !made_folder => {
                    made_folder = true;
                    tokio::fs::create_dir_all(&folder)
                        .await
                        .map_err(|e| io_failure(&path, "cannot create its folder", &e))?;
                }
                // Another temporary file drew the same random name: draw again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_failure(&path, "cannot create a temporary file", &e)),
            }
        }
    }

    /// Appends `data`.
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.out
            .write_all(data)
            .await
            .map_err(|e| io_failure(&self.path, "", &e))
    }

    /// Flushes the body to the file (write errors, such as a full disk, show up here at the
    /// latest) and renames it to its final name, replacing any earlier file of the same key.
    /// Returns the final path. Not fsynced: a killed process never leaves a partial file under a
    /// final name, but a power cut may lose what the OS had not yet written.
    pub(super) async fn commit(mut self) -> Result<String, Failure> {
        self.out
            .flush()
            .await
            .map_err(|e| io_failure(&self.path, "", &e))?;
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(|e| io_failure(&self.path, "rename", &e))?;
        self.committed = true;
        Ok(self.path.to_string_lossy().into_owned())
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        if !self.committed {
            // One unlink; an open file may be unlinked, and a write still in flight on the
            // blocking pool then lands in the removed file.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A failed file operation (`what`, when it is not the write itself) for the body bound for
/// `path`; the detail names that path.
fn io_failure(path: &Path, what: &str, e: &io::Error) -> Failure {
    let sep = if what.is_empty() { "" } else { ": " };
    Failure::new(
        ErrorKind::Io,
        format!(
            "cannot write the body to '{}'{sep}{what}: {e}",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::body_file;
    use std::collections::HashSet;
    use std::path::Path;

    fn name(key: &str) -> String {
        body_file(Path::new("d"), key)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn plain_keys_are_their_own_names() {
        for k in ["item-1", "a.b_c", "0123abcdef", &"x".repeat(128)] {
            assert_eq!(name(k), k);
        }
    }

    #[test]
    fn other_keys_are_safe_bounded_and_hashed() {
        let keys = [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "a_b",
            "A_b",
            "a\\b",
            "a\0b",
            "é",
            "e\u{301}",
            "http://127.0.0.1:8080/item/1?x=y",
            &"y".repeat(129),
            &"日本".repeat(200),
        ];
        let mut seen = HashSet::new();
        for k in keys {
            let n = name(k);
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b)),
                "{k:?} -> {n}"
            );
            assert!(!n.starts_with('.') && n.len() <= 97, "{k:?} -> {n}");
            assert!(seen.insert(n.to_ascii_lowercase()), "{k:?} -> {n} twice");
        }
        assert_ne!(name("a/b"), name("a b"));
        assert!(name("a/b").starts_with("a_b~"));
    }

    #[test]
    fn files_are_sharded_two_levels_deep() {
        let p = body_file(Path::new("out"), "k");
        let parts: Vec<_> = p.iter().map(|c| c.to_str().unwrap().to_owned()).collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "out");
        assert!(parts[1..3].iter().all(|s| s.len() == 2));
        assert_eq!(parts[3], "k");
        let folders: HashSet<_> = (0..2000)
            .map(|i| {
                body_file(Path::new("o"), &i.to_string())
                    .parent()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(folders.len() > 1900, "keys spread over folders");
    }
}
