//! [`Due`]: an item with a deadline, ordered so that a `BinaryHeap` (a max-heap) gives back the
//! earliest first, and items due at the same instant in the order they were numbered. Used by the
//! engine's delayed retries and by `fanout serve`'s precise timer. Pure data; no I/O.

use std::cmp::Ordering;
use std::time::Instant;

/// `item`, due at `at`; `seq` breaks ties (lower first).
pub(crate) struct Due<T> {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) item: T,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Due<T> {
    /// Reversed: the earliest is the greatest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
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
