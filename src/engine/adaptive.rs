//! Adaptive per-host concurrency (`--adaptive`): a limit that starts low and moves on its own,
//! in the manner of TCP congestion control and Netflix's AIMD concurrency limiter.
//!
//! - **Slow start.** From [`INITIAL`], each successful response adds 1 to the limit (the limit
//!   doubles per round trip) until the first sign of overload.
//! - **Additive increase.** After that, each success while the host is busy (in flight ≥ half the
//!   limit) adds `1 / limit`: about +1 per round trip.
//! - **Multiplicative decrease.** Overload (HTTP 429 or 503, a timeout, a refused or reset
//!   connection) multiplies the limit by [`BACKOFF`] (0.7), at most once per smoothed round trip,
//!   so one burst of failures from a single window counts once. An overload within that round
//!   trip from a request *sent after the cut* caps the limit at the number of other requests
//!   still in flight to the host: the cut was not enough, and a host that refuses at once would
//!   otherwise see the slot above its capacity refused again and again until the next cut
//!   (hundreds of 503s a second from one slot).
//! - **Latency.** The limit is also cut by [`BACKOFF`] when the smoothed latency exceeds
//!   [`LATENCY_TOLERANCE`] (2×) the lowest latency seen recently (a queue is building at the host).
//!   The baseline decays towards current latency by 1% per sample so it can follow a host that
//!   really got slower.
//!
//! The limit stays within 1 and the host's ceiling (`--per-host`, or `-c`). Pure state; the
//! engine feeds it each completed attempt, with instants of its one clock (tokio's [`Instant`]).

use std::time::Duration;

use tokio::time::Instant;

/// Limit a host starts with.
pub(crate) const INITIAL: f64 = 4.0;
/// Factor applied on overload or rising latency.
pub(crate) const BACKOFF: f64 = 0.7;
/// Smoothed latency above this many times the baseline counts as rising.
pub(crate) const LATENCY_TOLERANCE: f64 = 2.0;
/// Weight of a new sample in the smoothed latency.
const EWMA: f64 = 0.2;

/// What one completed attempt tells the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A response that is not an overload signal (any status but 429 and 503).
    Ok(Duration),
    /// 429, 503, a timeout, or a refused or reset connection, after the attempt took this long.
    Overload(Duration),
    /// Anything else (a 404 of a bad URL, a TLS error...): says nothing about load.
    Neutral,
}

/// One host's adaptive limit.
#[derive(Debug, Clone)]
pub(crate) struct Aimd {
    limit: f64,
    max: f64,
    slow_start: bool,
    /// Smoothed latency of successful responses.
    ewma: Option<Duration>,
    /// Lowest recent latency: what the host does when not queueing.
    baseline: Option<Duration>,
    last_cut: Option<Instant>,
}

impl Aimd {
    /// A limiter that may grow up to `max`.
    pub fn new(max: usize) -> Aimd {
        let max = max.max(1) as f64;
        Aimd {
            limit: INITIAL.min(max),
            max,
            slow_start: true,
            ewma: None,
            baseline: None,
            last_cut: None,
        }
    }

    /// The current limit, at least 1.
    pub fn limit(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }

    /// Feeds one completed attempt; `in_flight` is how many were in flight to the host as it ended.
    pub fn on_result(&mut self, signal: Signal, in_flight: usize, now: Instant) {
        match signal {
            Signal::Neutral => {}
            Signal::Overload(took) => {
                let sent = now.checked_sub(took);
                if !self.cut(now)
                    && let (Some(cut), Some(sent)) = (self.last_cut, sent)
                    && sent >= cut
                {
                    let others = in_flight.saturating_sub(1).max(1) as f64;
                    self.limit = self.limit.min(others);
                }
            }
            Signal::Ok(latency) => {
                let ewma = match self.ewma {
                    None => latency,
                    Some(e) => e.mul_f64(1.0 - EWMA) + latency.mul_f64(EWMA),
                };
                self.ewma = Some(ewma);
                let baseline = match self.baseline {
                    None => latency,
                    Some(b) if latency < b => latency,
                    Some(b) => b.mul_f64(0.99) + latency.mul_f64(0.01),
                };
                self.baseline = Some(baseline);
                if ewma.as_secs_f64() > baseline.as_secs_f64() * LATENCY_TOLERANCE
                    && baseline > Duration::from_micros(200)
                {
                    self.cut(now);
                } else if self.slow_start {
                    self.limit = (self.limit + 1.0).min(self.max);
                } else if in_flight as f64 * 2.0 >= self.limit {
                    self.limit = (self.limit + 1.0 / self.limit).min(self.max);
                }
            }
        }
    }

    /// Multiplies the limit by [`BACKOFF`] unless it was cut within the last round trip; says
    /// whether it cut.
    fn cut(&mut self, now: Instant) -> bool {
        let window = self.ewma.unwrap_or(Duration::from_millis(100));
        if self
            .last_cut
            .is_some_and(|t| now.duration_since(t) < window)
        {
            return false;
        }
        self.slow_start = false;
        self.last_cut = Some(now);
        self.limit = (self.limit * BACKOFF).max(1.0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overload from an attempt that took 5 ms.
    const OVERLOAD: Signal = Signal::Overload(Duration::from_millis(5));

    #[test]
    fn grows_in_slow_start_then_cuts_on_overload() {
        let mut a = Aimd::new(100);
        let t = Instant::now();
        for _ in 0..20 {
            a.on_result(Signal::Ok(Duration::from_millis(10)), 4, t);
        }
        assert_eq!(a.limit(), 24);
        a.on_result(OVERLOAD, 24, t);
        assert_eq!(a.limit(), 16);
        // A second overload in the same round trip does not cut again.
        a.on_result(OVERLOAD, 24, t + Duration::from_millis(1));
        assert_eq!(a.limit(), 16);
        a.on_result(OVERLOAD, 24, t + Duration::from_millis(50));
        assert_eq!(a.limit(), 11);
    }

    #[test]
    fn overloads_sent_after_a_cut_cap_the_limit_at_what_is_in_flight() {
        let mut a = Aimd::new(100);
        let t = Instant::now();
        for _ in 0..20 {
            a.on_result(Signal::Ok(Duration::from_millis(10)), 4, t);
        }
        let refused_at_once = Signal::Overload(Duration::from_micros(100));
        let t = t + Duration::from_secs(1);
        a.on_result(refused_at_once, 24, t);
        assert_eq!(a.limit(), 16, "the first overload cuts by the factor");
        // Sent after the cut and refused while 9 others were in flight: the host holds no more.
        a.on_result(refused_at_once, 10, t + Duration::from_millis(1));
        assert_eq!(a.limit(), 9);
        // More in flight than the limit says nothing new: never raised this way.
        a.on_result(refused_at_once, 30, t + Duration::from_millis(2));
        assert_eq!(a.limit(), 9);
        // Alone and refused: one at a time.
        a.on_result(refused_at_once, 1, t + Duration::from_millis(3));
        assert_eq!(a.limit(), 1);
    }

    #[test]
    fn a_burst_of_overloads_sent_before_the_cut_counts_once() {
        let mut a = Aimd::new(100);
        let t = Instant::now();
        for _ in 0..6 {
            a.on_result(Signal::Ok(Duration::from_millis(10)), 4, t);
        }
        assert_eq!(a.limit(), 10);
        // Ten requests sent together all fail together (a server restart), reported one after
        // another as the in-flight count drains.
        let t = t + Duration::from_secs(1);
        for left in (1..=10).rev() {
            a.on_result(Signal::Overload(Duration::from_millis(50)), left, t);
        }
        assert_eq!(a.limit(), 7, "one cut for the burst");
    }

    #[test]
    fn additive_increase_only_when_busy() {
        let mut a = Aimd::new(100);
        let t = Instant::now();
        a.on_result(OVERLOAD, 4, t);
        let before = a.limit;
        a.on_result(Signal::Ok(Duration::from_millis(10)), 0, t);
        assert_eq!(a.limit, before, "an idle host does not grow the limit");
        a.on_result(Signal::Ok(Duration::from_millis(10)), 4, t);
        assert!(a.limit > before);
    }

    #[test]
    fn rising_latency_cuts() {
        let mut a = Aimd::new(100);
        let t = Instant::now();
        for _ in 0..10 {
            a.on_result(Signal::Ok(Duration::from_millis(10)), 4, t);
        }
        let grown = a.limit();
        for i in 0..10 {
            a.on_result(
                Signal::Ok(Duration::from_millis(100)),
                4,
                t + Duration::from_secs(i),
            );
        }
        assert!(a.limit() < grown, "{} should be below {grown}", a.limit());
    }

    #[test]
    fn stays_within_bounds() {
        let mut a = Aimd::new(6);
        let t = Instant::now();
        for _ in 0..50 {
            a.on_result(Signal::Ok(Duration::from_millis(1)), 6, t);
        }
        assert_eq!(a.limit(), 6);
        for i in 0..50 {
            a.on_result(OVERLOAD, 6, t + Duration::from_secs(i));
        }
        assert_eq!(a.limit(), 1);
    }
}
