//! The resume filter, between the source and admission: requests whose key already has an outcome
//! in a store are skipped, and a key seen twice in one run is fetched once. Owns the set of keys
//! in progress; reads the stores only through their [`Journal`]s, in batches, so memory stays flat
//! however many keys they hold. A key recorded as done in any journal counts as done. Invalid lines
//! go straight to the recorder; requests go on to the engine.
//!
//! Lines are read ahead in batches: up to 512 (waiting up to 10 ms for a slow input to fill one)
//! when the store must be read, and only those already read, up to 64, when it need not be.
//!
//! Ordering argument for "fetched once": a key is checked against the in-progress set *before* the
//! store is read, and the store thread removes a key from the set only *after* committing it. So a
//! key is either still in the set, or already visible in the store.
//!
//! On a store that held no outcome when the run began (a new file) and that no other run was
//! writing, or under `--fresh`, only keys this run admitted can count as done; a Bloom filter of
//! those keys (`Admitted`) lets every other key skip the store read. It grows in three layers up
//! to 4.56 MiB, then stays that size: past a few million keys it answers "maybe" more often and
//! more keys are looked up, as they always were.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashSet, HashSetExt};
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Item;
use crate::outcome::{ErrorKind, Outcome};
use crate::sink::{Journal, Prior, SinkError};

use crate::source::{Source, SourceItem};
use crate::stats::Stats;

/// Keys looked up in one store read.
pub(crate) const LOOKUP_BATCH: usize = 512;
/// Lines passed on at once when no store read is needed.
const QUICK_BATCH: usize = 64;
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
    /// // Classes are 1xx to 5xx: 657xx would be 65,700, over a u16 (found by fuzz/values).
    /// assert!(StatusRange::parse("657xx").is_err());
    /// assert!(StatusRange::parse("5005xx").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<StatusRange, String> {
        let s = s.trim();
        let bad = || format!("'{s}' is not a status, a class like 5xx, or a range like 500-504");
        let range = if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let c: u16 = class.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&c) {
                return Err(bad());
            }
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

/// A Bloom filter of the keys admitted in this run: "no" is certain, "maybe" needs a store read.
///
/// It grows in layers ([`ADMITTED_LAYERS`]): a key goes into the newest layer, and a layer that
/// holds its share of keys makes way for the next, larger one. Three hashes spread each key over
/// the whole of a layer, so a single 4 MiB filter had every page resident after a few thousand
/// keys; a short run now holds the 64 KiB layer only, and a long one the three (4.56 MiB), with
/// the same false "maybe" rate at 10M keys.
pub(crate) struct Admitted {
    layers: Vec<Layer>,
    /// Bytes of the layers not made yet, smallest first.
    next: &'static [usize],
    hasher: foldhash::quality::FixedState,
}

/// One Bloom filter of [`Admitted`], and how many keys it took.
struct Layer {
    bits: Vec<u64>,
    keys: usize,
}

impl Layer {
    /// A layer of `bytes` bytes (rounded up to a power of two, at least 8).
    fn with_bytes(bytes: usize) -> Layer {
        let words = (bytes / 8).next_power_of_two().max(1);
        Layer {
            bits: vec![0; words],
            keys: 0,
        }
    }

    /// Keys it takes before the next layer is made: 32 bits a key, 0.07% false "maybe"
    /// with three hashes (the single filter's rate at 1M keys was 0.06%).
    fn capacity(&self) -> usize {
        self.bits.len() * 64 / 32
    }

    /// The bit positions of a key's hash: double hashing over one 64-bit hash.
    fn positions(&self, h: u64) -> impl Iterator<Item = usize> + use<> {
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        let mask = (self.bits.len() as u64 * 64) - 1;
        (0..Admitted::HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) & mask) as usize)
    }

    fn contains(&self, h: u64) -> bool {
        self.positions(h)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

impl Admitted {
    /// Bits set per key.
    const HASHES: u64 = 3;

    /// A filter whose layers have these sizes in bytes, smallest first; the last takes every
    /// key once the others are full.
    pub(crate) fn with_layers(bytes: &'static [usize]) -> Admitted {
        let (first, next) = bytes.split_first().expect("at least one layer");
        Admitted {
            layers: vec![Layer::with_bytes(*first)],
            next,
            hasher: foldhash::quality::FixedState::with_seed(0x6661_6e6f_7574),
        }
    }

    fn hash(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    pub(crate) fn insert(&mut self, key: &str) {
        let h = self.hash(key);
        let last = self.layers.last().expect("at least one layer");
        if last.keys >= last.capacity()
            && let Some((bytes, rest)) = self.next.split_first()
        {
            self.layers.push(Layer::with_bytes(*bytes));
            self.next = rest;
        }
        let layer = self.layers.last_mut().expect("at least one layer");
        for p in layer.positions(h) {
            layer.bits[p / 64] |= 1 << (p % 64);
        }
        layer.keys += 1;
    }

    pub(crate) fn may_contain(&self, key: &str) -> bool {
        let h = self.hash(key);
        self.layers.iter().any(|l| l.contains(h))
    }

    /// Bytes its layers hold now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bits.len() * 8).sum()
    }
}

/// Sizes of the [`Admitted`] filter's layers: 64 KiB (16Ki keys), 512 KiB (128Ki keys), then
/// 4 MiB for the rest. False "maybe": ~0.2% at 1M keys (the single 4 MiB filter it replaced:
/// 0.06%), ~20% at 10M (as before).
const ADMITTED_LAYERS: &[usize] = &[64 << 10, 512 << 10, 4 << 20];

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

/// Where the filter sends what it keeps: requests to the engine, invalid lines to the recorder.
pub(crate) struct Outputs {
    /// Requests, for admission.
    pub(crate) items: mpsc::Sender<Item<()>>,
    /// Invalid lines, already outcomes.
    pub(crate) invalid: mpsc::Sender<Outcome>,
}

/// Starts the filter task for run `run_id`.
pub(crate) fn spawn(
    mut source: Source,
    mut journals: Vec<Box<dyn Journal>>,
    run_id: i64,
    in_progress: Arc<InProgress>,
    policy: ResumePolicy,
    stats: Arc<Stats>,
    out: Outputs,
) -> tokio::task::JoinHandle<Result<(), SinkError>> {
    tokio::spawn(async move {
        let mut batch: Vec<SourceItem> = Vec::with_capacity(LOOKUP_BATCH);
        // Only when earlier outcomes cannot count: otherwise every key is looked up anyway.
        let mut admitted = (!journals.is_empty()
            && (policy.fresh || journals.iter().all(|j| !j.others_may_have_recorded())))
        .then(|| Admitted::with_layers(ADMITTED_LAYERS));
        // Without store reads (a new store, --fresh, or none), nothing is gained by waiting to
        // fill a batch: lines go on as soon as they are read, in small batches.
        let (limit, linger) = if admitted.is_some() || journals.is_empty() {
            (QUICK_BATCH, None)
        } else {
            (LOOKUP_BATCH, Some(LOOKUP_LINGER))
        };
        loop {
            let Some(first) = source.next().await else {
                return Ok(());
            };
            batch.push(first);
            let until = linger.map(|l| Instant::now() + l);
            let mut eof = false;
            while batch.len() < limit {
                let next = match until {
                    Some(until) => tokio::time::timeout_at(until, source.next()).await.ok(),
                    // Only what is already read (`next` keeps a partly read line if dropped).
                    None => source.next().now_or_never(),
                };
                match next {
                    Some(Some(item)) => batch.push(item),
                    Some(None) => {
                        eof = true;
                        break;
                    }
                    None => break,
                }
            }
            let keep = filter(
                &batch,
                &mut journals,
                run_id,
                admitted.as_mut(),
                &in_progress,
                &policy,
            )
            .await?;
            let skipped = keep.iter().filter(|k| !**k).count();
            stats
                .skipped
                .fetch_add(skipped as u64, std::sync::atomic::Ordering::Relaxed);
            for (item, keep) in batch.drain(..).zip(keep) {
                let sent = match item {
                    _ if !keep => true,
                    SourceItem::Request(request) => {
                        let item = Item {
                            request,
                            ticket: (),
                        };
                        super::soon::send_soon(&out.items, item).await
                    }
                    SourceItem::Invalid(o) => super::soon::send_soon(&out.invalid, *o).await,
                };
                if !sent {
                    return Ok(()); // the run has stopped
                }
            }
            if eof {
                return Ok(());
            }
        }
    })
}

/// Decides, for each item of `batch`, whether it is to be fetched.
async fn filter(
    batch: &[SourceItem],
    journals: &mut [Box<dyn Journal>],
    run_id: i64,
    mut admitted: Option<&mut Admitted>,
    in_progress: &InProgress,
    policy: &ResumePolicy,
) -> Result<Vec<bool>, SinkError> {
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
    // Candidates the filter has never seen are new for certain; only the others are looked up.
    let mut unseen = Vec::new();
    if let Some(a) = admitted.as_deref() {
        candidates.retain(|&i| {
            let maybe = a.may_contain(key_of(&batch[i]));
            if !maybe {
                unseen.push(i);
            }
            maybe
        });
    }
    for j in journals.iter_mut() {
        if candidates.is_empty() {
            break;
        }
        let keys: Vec<String> = candidates
            .iter()
            .map(|&i| key_of(&batch[i]).to_owned())
            .collect();
        let found = j.lookup(keys).await?;
        candidates.retain({
            let mut it = found.into_iter();
            move |_| match it.next().flatten() {
                Some(prior) => !policy.is_done(&prior, run_id),
                None => true,
            }
        });
    }
    let mut set = in_progress.0.lock().unwrap_or_else(|e| e.into_inner());
    for i in candidates.into_iter().chain(unseen) {
        let key = key_of(&batch[i]);
        if let Some(a) = admitted.as_deref_mut() {
            a.insert(key);
        }
        set.insert(key.to_owned());
        keep[i] = true;
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::Admitted;

    #[test]
    fn admitted_never_forgets_and_rarely_imagines() {
        let mut a = Admitted::with_layers(&[64 << 10]); // 512 Ki bits
        let keys: Vec<String> = (0..20_000).map(|i| format!("{i:032x}")).collect();
        for k in &keys {
            a.insert(k);
        }
        assert!(keys.iter().all(|k| a.may_contain(k)), "no false negatives");
        let false_maybe = (20_000..120_000)
            .filter(|i| a.may_contain(&format!("{i:032x}")))
            .count();
        // 3 hashes, 20k keys in 512 Ki bits: about 0.16% expected.
        assert!(
            false_maybe < 1_000,
            "{false_maybe} false positives in 100,000"
        );
    }

    #[test]
    fn admitted_grows_a_layer_only_once_the_last_is_full() {
        // 1 KiB takes 256 keys, 8 KiB 2,048; the 64 KiB layer takes the rest.
        let mut a = Admitted::with_layers(&[1 << 10, 8 << 10, 64 << 10]);
        let key = |i: usize| format!("{i:032x}");
        for i in 0..256 {
            a.insert(&key(i));
        }
        assert_eq!(a.bytes(), 1 << 10, "256 keys fit the first layer");
        a.insert(&key(256));
        assert_eq!(a.bytes(), 9 << 10, "the 257th key opens the second");
        for i in 257..50_000 {
            a.insert(&key(i));
        }
        assert_eq!(a.bytes(), 73 << 10, "no layer past the last");
        assert!(
            (0..50_000).all(|i| a.may_contain(&key(i))),
            "no false negatives"
        );
        let false_maybe = (50_000..150_000)
            .filter(|&i| a.may_contain(&key(i)))
            .count();
        // The last layer is over-full (~47,700 keys in 512 Ki bits, ~1.4%), as a single filter
        // would be; the two full layers add ~0.07% each.
        assert!(
            false_maybe < 3_500,
            "{false_maybe} false positives in 100,000"
        );
    }

    #[test]
    fn a_run_of_30000_keys_holds_the_two_small_layers() {
        let mut a = Admitted::with_layers(super::ADMITTED_LAYERS);
        for i in 0..30_000 {
            a.insert(&format!("{i:032x}"));
        }
        // 30,000 keys (a run of three waves at -c 10000): 576 KiB, not the 4 MiB of old.
        assert_eq!(a.bytes(), 576 << 10);
    }
}
