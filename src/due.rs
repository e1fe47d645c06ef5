//! [`Due`]: an item with a deadline, ordered so that a `BinaryHeap` (a max-heap) gives back the
//! earliest first, and items due at the same instant in the order they were numbered. Used by the
//! engine's delayed retries and by `fanout serve`'s precise timer. Pure data; no I/O.
//!
//! Generic over the clock: the engine's retries use tokio's `Instant` (so tests can run the engine
//! on tokio's paused clock), the server's timer thread std's (it sleeps on the OS's real clock).

use std::cmp::Ordering;

/// `item`, due at `at`; `seq` breaks ties (lower first). `I` is the clock's instant type.
pub(crate) struct Due<T, I = tokio::time::Instant> {
    pub(crate) at: I,
    pub(crate) seq: u64,
    pub(crate) item: T,
}

impl<T, I: Ord> PartialEq for Due<T, I> {
    fn eq(&self, o: &Self) -> bool {
        self.seq == o.seq && self.at == o.at
    }
}
impl<T, I: Ord> Eq for Due<T, I> {}
impl<T, I: Ord> PartialOrd for Due<T, I> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T, I: Ord> Ord for Due<T, I> {
    /// Reversed: the earliest is the greatest.
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::Due;
    use std::collections::BinaryHeap;
    use std::time::{Duration, Instant};

    #[test]
    fn earliest_first_then_by_number() {
        let t = Instant::now();
        let mut heap = BinaryHeap::new();
        for (ms, seq, item) in [(5, 0, 'c'), (1, 2, 'b'), (1, 1, 'a'), (9, 3, 'd')] {
            heap.push(Due {
                at: t + Duration::from_millis(ms),
                seq,
                item,
            });
        }
        let order: String = std::iter::from_fn(|| heap.pop().map(|d| d.item)).collect();
        assert_eq!(order, "abcd");
    }
}
