//! The resume filter, between the source and admission: requests whose key already has an outcome
//! in the store are skipped, and a key seen twice in one run is fetched once. Owns the set of keys
//! in progress; reads the store only through [`Journal`], in batches, so memory stays flat however
//! many keys the store holds.
//!
//! Ordering argument for "fetched once": a key is checked against the in-progress set *before* the
//! store is read, and the store thread removes a key from the set only *after* committing it. So a
//! key is either still in the set, or already visible in the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashSet, HashSetExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::outcome::ErrorKind;
use crate::source::{Source, SourceItem};
use crate::stats::Stats;
use crate::store::{Journal, Prior, StoreError};

/// Keys looked up in one store read.
pub const LOOKUP_BATCH: usize = 512;
/// How long a slow input (a trickle on stdin) may wait to fill a lookup batch.
const LOOKUP_LINGER: Duration = Duration::from_millis(10);

/// An inclusive range of HTTP statuses, written `5xx`, `429` or `500-504`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status in the range.
    pub lo: u16,
    /// Highest status in the range.
    pub hi: u16,
}

impl StatusRange {
    /// Parses `5xx`, `429` or `500-504`.
    ///
    /// ```
    /// use fanout::engine::resume::StatusRange;
    /// assert_eq!(StatusRange::parse("5xx"), Ok(StatusRange { lo: 500, hi: 599 }));
    /// assert_eq!(StatusRange::parse("429"), Ok(StatusRange { lo: 429, hi: 429 }));
    /// assert!(StatusRange::parse("7xx").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<StatusRange, String> {
        let s = s.trim();
        let bad = || format!("'{s}' is not a status, a class like 5xx, or a range like 500-504");
        let range = if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let c: u16 = class.parse().map_err(|_| bad())?;
            StatusRange {
                lo: c * 100,
                hi: c * 100 + 99,
            }
        } else if let Some((a, b)) = s.split_once('-') {
            StatusRange {
                lo: a.trim().parse().map_err(|_| bad())?,
                hi: b.trim().parse().map_err(|_| bad())?,
            }
        } else {
            let v: u16 = s.parse().map_err(|_| bad())?;
            StatusRange { lo: v, hi: v }
        };
        if range.lo < 100 || range.hi > 599 || range.lo > range.hi {
            return Err(bad());
        }
        Ok(range)
    }

    /// True when `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

/// Which recorded outcomes count as done.
#[derive(Debug, Clone, Default)]
pub struct ResumePolicy {
    /// Ignore outcomes of earlier runs (keys are still fetched once within this run).
    pub fresh: bool,
    /// Fetch again keys whose recorded outcome is an error kind.
    pub retry_errors: bool,
    /// Fetch again keys whose recorded response has one of these statuses.
    pub retry_status: Vec<StatusRange>,
}

impl ResumePolicy {
    /// True when a recorded outcome means the key need not be fetched in run `run_id`.
    pub fn is_done(&self, prior: &Prior, run_id: i64) -> bool {
        if prior.run_id == run_id {
            return true; // fetched earlier in this very run: a duplicate key
        }
        if self.fresh {
            return false;
        }
        match (&prior.error, prior.status) {
            (Some(kind), _) => {
                // Interrupted requests were never finished: they are always fetched again.
                let interrupted =
                    kind == ErrorKind::Cancelled.as_str() || kind == ErrorKind::Deadline.as_str();
                !(interrupted || self.retry_errors)
            }
            (None, Some(status)) => !self.retry_status.iter().any(|r| r.contains(status)),
            (None, None) => false,
        }
    }
}

/// Keys passed to admission whose outcome is not committed yet. Locked once per batch on each side.
#[derive(Debug, Default)]
pub(crate) struct InProgress(Mutex<HashSet<String>>);

impl InProgress {
    /// Forgets keys once their outcomes are committed.
    pub(crate) fn committed<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        // Poisoning means a panic elsewhere; the set is still consistent, so carry on.
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            set.remove(k);
        }
    }
}

fn key_of(item: &SourceItem) -> &str {
    match item {
        SourceItem::Request(r) => &r.key,
        SourceItem::Invalid(o) => &o.key,
    }
}

/// Starts the filter task; the engine admits what comes out of the returned channel.
pub(crate) fn spawn(
    mut source: Source,
    mut journal: Option<Box<dyn Journal>>,
    in_progress: Arc<InProgress>,
    policy: ResumePolicy,
    stats: Arc<Stats>,
    capacity: usize,
) -> (
    mpsc::Receiver<SourceItem>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    let (tx, rx) = mpsc::channel(capacity);
    let task = tokio::spawn(async move {
        let mut batch: Vec<SourceItem> = Vec::with_capacity(LOOKUP_BATCH);
        loop {
            let Some(first) = source.next().await else {
                return Ok(());
            };
            batch.push(first);
            let until = Instant::now() + LOOKUP_LINGER;
            let mut eof = false;
            while batch.len() < LOOKUP_BATCH {
                match tokio::time::timeout_at(until, source.next()).await {
                    Ok(Some(item)) => batch.push(item),
                    Ok(None) => {
                        eof = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let keep = filter(&batch, &mut journal, &in_progress, &policy).await?;
            let skipped = keep.iter().filter(|k| !**k).count();
            stats
                .skipped
                .fetch_add(skipped as u64, std::sync::atomic::Ordering::Relaxed);
            for (item, keep) in batch.drain(..).zip(keep) {
                if keep && tx.send(item).await.is_err() {
                    return Ok(()); // admission has stopped
                }
            }
            if eof {
                return Ok(());
            }
        }
    });
    (rx, task)
}

/// Decides, for each item of `batch`, whether it is to be fetched.
async fn filter(
    batch: &[SourceItem],
    journal: &mut Option<Box<dyn Journal>>,
    in_progress: &InProgress,
    policy: &ResumePolicy,
) -> Result<Vec<bool>, StoreError> {
    let mut keep = vec![false; batch.len()];
    let mut candidates: Vec<usize> = Vec::with_capacity(batch.len());
    {
        let set = in_progress.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: HashSet<&str> = HashSet::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            let key = key_of(item);
            if !set.contains(key) && seen.insert(key) {
                candidates.push(i);
            }
        }
    }
    if let Some(j) = journal.take() {
        let keys: Vec<String> = candidates
            .iter()
            .map(|&i| key_of(&batch[i]).to_owned())
            .collect();
        let (j, found) = tokio::task::spawn_blocking(move || {
            let mut j = j;
            let found = j.lookup(&keys);
            (j, found)
        })
        .await
        .expect("store lookup panicked");
        let run_id = j.run_id();
        *journal = Some(j);
        let found = found?;
        candidates.retain({
            let mut it = found.into_iter();
            move |_| match it.next().flatten() {
                Some(prior) => !policy.is_done(&prior, run_id),
                None => true,
            }
        });
    }
    let mut set = in_progress.0.lock().unwrap_or_else(|e| e.into_inner());
    for i in candidates {
        set.insert(key_of(&batch[i]).to_owned());
        keep[i] = true;
    }
    Ok(keep)
}
