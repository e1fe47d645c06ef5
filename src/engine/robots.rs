//! `--robots` (RFC 9309): each origin's `/robots.txt`, fetched once per run before any other
//! request to it, decides which of its requests may be fetched. Owns every origin's robots state
//! (rules known, fetch due, retry due), the jobs waiting for it, and the retry schedule of an
//! unreachable robots.txt; the dispatcher spawns the fetches, records the denied, and queues the
//! allowed for their host. Knows nothing of limits (a `Crawl-delay` is handed to the host state).
//!
//! - A 2xx answer's rules are matched against the run's User-Agent product token (`fanout` for
//!   `fanout/0.1.0`); a request to a disallowed path is denied (error kind `robots`).
//! - 4xx (but 429) or more than five redirects: no rules, every request allowed.
//! - 5xx, 429, or no answer: the origin's requests wait, and the file is tried again after a
//!   backoff (the run's `--backoff` first ceiling, doubling up to its largest, at least the
//!   `Retry-After`), `--retries` times; after the last try they are denied, saying so.
//!
//! Memory: rules are kept for at most [`MAX_ORIGINS`] origins and [`MAX_RULE_BYTES`] of patterns
//! in all; past that the oldest are forgotten (fetched again if their origin comes back). Jobs
//! waiting here count as parked, so they bound the input read ahead like any waiting job.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use foldhash::HashMap;
use tokio::time::Instant;
use url::Url;

use super::Job;
use super::client::RobotsFetch;
use super::retry::RetryPolicy;

/// Origins whose rules are kept at most.
pub(crate) const MAX_ORIGINS: usize = 100_000;
/// Pattern bytes kept in all, across origins (a 500 KiB file of rules is about that much).
pub(crate) const MAX_RULE_BYTES: usize = 64 << 20;

/// What the rules say of a job.
pub(crate) enum Admit<T> {
    /// Allowed: queue it for its host, which waits at least this long between requests
    /// (`Crawl-delay`).
    Go(Job<T>, Option<Duration>),
    /// Not to be fetched: recorded with error kind `robots` and this detail.
    Denied(Job<T>, String),
    /// Kept here until the origin's robots.txt is known.
    Held,
}

/// What an origin's robots.txt came to.
enum Known {
    Rules(robotxt::Robots),
    /// No rules apply (4xx, too many redirects).
    AllowAll,
    /// Unreachable after every try: everything is denied, with this detail.
    DenyAll(String),
}

enum State {
    /// A fetch is queued or running.
    Fetching,
    /// The last fetch failed; the next is due at its timer.
    Retrying,
    Known(Known),
}

struct Entry<T> {
    state: State,
    /// Fetches made so far.
    tries: u32,
    /// The last failure, for the message of the denied.
    last: String,
    waiting: VecDeque<Job<T>>,
}

/// Every origin's robots state and the jobs waiting for one.
pub(crate) struct RobotsGate<T> {
    /// The product token matched against `User-Agent` lines.
    agent: String,
    retry: RetryPolicy,
    map: HashMap<Arc<str>, Entry<T>>,
    /// Origins with known rules, oldest first, and their rules' size: what is forgotten first.
    known: VecDeque<(Arc<str>, usize)>,
    known_bytes: usize,
    /// Origins whose fetch is due, waiting for a fetch slot.
    due: VecDeque<Arc<str>>,
    retries: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    /// Fetches running, and the most at once.
    fetching: usize,
    max_fetching: usize,
    parked: usize,
}

/// The product token of a User-Agent (RFC 9309 §2.2.1: letters, `_` and `-`), e.g. `fanout` for
/// `fanout/0.1.0`.
pub(crate) fn product_token(user_agent: &str) -> &str {
    let ua = user_agent.trim_start();
    let end = ua
        .find(|c: char| !(c.is_ascii_alphabetic() || c == '_' || c == '-'))
        .unwrap_or(ua.len());
    &ua[..end]
}

/// The origin of a URL as the key of its robots state: `scheme://host[:port]` (the default port
/// left out, as the URL parser writes it), or `None` for a URL with user info (rare: the key is
/// then built).
fn origin_of(url: &Url) -> Option<&str> {
    (url.username().is_empty() && url.password().is_none())
        .then(|| &url[..url::Position::BeforePath])
}

fn origin_key(url: &Url) -> Arc<str> {
    match origin_of(url) {
        Some(o) => o.into(),
        None => {
            let host = url.host_str().unwrap_or_default();
            match url.port() {
                Some(p) => format!("{}://{host}:{p}", url.scheme()).into(),
                None => format!("{}://{host}", url.scheme()).into(),
            }
        }
    }
}

impl<T> RobotsGate<T> {
    /// A gate for `user_agent`'s product token, retrying as `retry` says, with at most
    /// `max_fetching` robots.txt fetches at once.
    pub(crate) fn new(user_agent: &str, retry: RetryPolicy, max_fetching: usize) -> RobotsGate<T> {
        RobotsGate {
            agent: product_token(user_agent).to_owned(),
            retry,
            map: HashMap::default(),
            known: VecDeque::new(),
            known_bytes: 0,
            due: VecDeque::new(),
            retries: BinaryHeap::new(),
            fetching: 0,
            max_fetching: max_fetching.max(1),
            parked: 0,
        }
    }

    /// Jobs waiting for a robots.txt.
    pub(crate) fn parked(&self) -> usize {
        self.parked
    }

    /// Decides a new job: allowed, denied, or held until its origin's robots.txt is known.
    pub(crate) fn admit(&mut self, job: Job<T>) -> Admit<T> {
        let entry = match origin_of(&job.req.url).filter(|o| self.map.contains_key(*o)) {
            Some(o) => self.map.get_mut(o).expect("present"),
            None => {
                let key = origin_key(&job.req.url);
                self.map.entry(key.clone()).or_insert_with(|| {
                    self.due.push_back(key);
                    Entry {
                        state: State::Fetching,
                        tries: 0,
                        last: String::new(),
                        waiting: VecDeque::new(),
                    }
                })
            }
        };
        match &entry.state {
            State::Known(k) => decide(k, &self.agent, job),
            State::Fetching | State::Retrying => {
                entry.waiting.push_back(job);
                self.parked += 1;
                Admit::Held
            }
        }
    }

    /// The robots.txt fetches to start now (each origin and its `/robots.txt` URL), counted as
    /// running until [`RobotsGate::fetched`] hears of them.
    pub(crate) fn start_fetches(&mut self) -> Vec<(Arc<str>, Url)> {
        let mut out = Vec::new();
        while self.fetching < self.max_fetching
            && let Some(origin) = self.due.pop_front()
        {
            let Some(e) = self.map.get_mut(&origin) else {
                continue;
            };
            e.tries += 1;
            match Url::parse(&format!("{origin}/robots.txt")) {
                Ok(url) => {
                    self.fetching += 1;
                    out.push((origin, url));
                }
                // Cannot happen for an http(s) origin; its requests are then fetched unchecked
                // rather than held forever.
                Err(_) => e.state = State::Known(Known::AllowAll),
            }
        }
        out
    }

    /// Applies a fetch's result: the jobs it decides (allowed or denied), in the order they came.
    /// An unreachable robots.txt with tries left holds them until its retry.
    pub(crate) fn fetched(
        &mut self,
        origin: &Arc<str>,
        r: RobotsFetch,
        now: Instant,
    ) -> Vec<Admit<T>> {
        self.fetching = self.fetching.saturating_sub(1);
        let Some(e) = self.map.get_mut(origin) else {
            return Vec::new();
        };
        let known = match r {
            RobotsFetch::Rules(body) => Known::Rules(robotxt::Robots::parse(&body, &*self.agent)),
            RobotsFetch::Unavailable(_) => Known::AllowAll,
            RobotsFetch::Unreachable {
                detail,
                retry_after,
            } => {
                e.last = detail;
                if e.tries <= self.retry.retries {
                    let exp = e.tries.saturating_sub(1).min(30);
                    let backoff = self
                        .retry
                        .backoff_base
                        .saturating_mul(1u32 << exp)
                        .min(self.retry.backoff_max);
                    let wait = match retry_after {
                        Some(ra) => backoff.max(ra.min(self.retry.max_retry_after)),
                        None => backoff,
                    };
                    e.state = State::Retrying;
                    self.retries.push(Reverse((now + wait, origin.clone())));
                    return Vec::new();
                }
                let tries = e.tries;
                Known::DenyAll(format!(
                    "{origin}/robots.txt was unreachable ({tries} tries, last: {}); not fetched",
                    e.last
                ))
            }
        };
        let size = match &known {
            Known::Rules(r) => r.rules().iter().map(|r| r.pattern().len() + 16).sum(),
            Known::AllowAll => 0,
            Known::DenyAll(d) => d.len(),
        };
        let waiting = std::mem::take(&mut e.waiting);
        self.parked -= waiting.len();
        let out = waiting
            .into_iter()
            .map(|job| decide(&known, &self.agent, job))
            .collect();
        e.state = State::Known(known);
        self.remember(origin.clone(), size);
        out
    }

    /// Keeps `origin`'s rules, forgetting the oldest while over the bounds.
    fn remember(&mut self, origin: Arc<str>, size: usize) {
        self.known.push_back((origin, size));
        self.known_bytes += size;
        while self.known.len() > MAX_ORIGINS
            || (self.known_bytes > MAX_RULE_BYTES && self.known.len() > 1)
        {
            let Some((old, size)) = self.known.pop_front() else {
                break;
            };
            self.known_bytes -= size;
            self.map.remove(&old);
        }
    }

    /// Moves origins whose retry is due to the fetch queue.
    pub(crate) fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, _))) = self.retries.peek()
            && *t <= now
        {
            let Reverse((_, origin)) = self.retries.pop().expect("peeked");
            if let Some(e) = self.map.get_mut(&origin) {
                e.state = State::Fetching;
                self.due.push_back(origin);
            }
        }
    }

    /// When the next retry is due.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.retries.peek().map(|Reverse((t, _))| *t)
    }

    /// Every job still waiting, for the end of a run.
    pub(crate) fn drain(&mut self) -> Vec<Job<T>> {
        let mut jobs = Vec::with_capacity(self.parked);
        for e in self.map.values_mut() {
            jobs.extend(e.waiting.drain(..));
        }
        self.parked = 0;
        jobs
    }
}

fn decide<T>(known: &Known, agent: &str, job: Job<T>) -> Admit<T> {
    match known {
        Known::AllowAll => Admit::Go(job, None),
        Known::DenyAll(why) => Admit::Denied(job, why.clone()),
        Known::Rules(r) => {
            let url = &job.req.url;
            if r.is_url_allowed(url) {
                return Admit::Go(job, r.crawl_delay());
            }
            let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
            let rule = r
                .matching_rule(path)
                .map(|rule| format!(" (Disallow: {})", rule.pattern()))
                .unwrap_or_default();
            let origin = origin_key(url);
            let agent = if agent.is_empty() { "*" } else { agent };
            Admit::Denied(
                job,
                format!("disallowed for {agent} by {origin}/robots.txt{rule}; not fetched"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Origin, Request};

    fn job(url: &str) -> Job<()> {
        Job::new(
            Arc::new(Request {
                key: url.into(),
                method: http::Method::GET,
                url: url.parse().unwrap(),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
                origin: Origin {
                    input: "t".into(),
                    line: 1,
                },
            }),
            (),
        )
    }

    #[test]
    fn the_product_token_is_the_user_agents_first_word() {
        assert_eq!(product_token("fanout/0.1.0"), "fanout");
        assert_eq!(product_token("My_Bot-2 (+https://x)"), "My_Bot-");
        assert_eq!(product_token("/x"), "");
    }

    #[test]
    fn an_origin_is_fetched_once_and_its_jobs_wait_for_it() {
        let mut g: RobotsGate<()> = RobotsGate::new("fanout/1", RetryPolicy::default(), 4);
        let t = Instant::now();
        assert!(matches!(g.admit(job("http://a.test/x")), Admit::Held));
        assert!(matches!(
            g.admit(job("http://a.test:80/private/y")),
            Admit::Held
        ));
        assert!(matches!(g.admit(job("https://a.test/z")), Admit::Held));
        assert_eq!(g.parked(), 3);
        let fetches = g.start_fetches();
        let urls: Vec<String> = fetches.iter().map(|(_, u)| u.to_string()).collect();
        assert_eq!(
            urls,
            ["http://a.test/robots.txt", "https://a.test/robots.txt"]
        );
        let body =
            bytes::Bytes::from_static(b"User-agent: *\nDisallow: /private\nCrawl-delay: 2\n");
        let out = g.fetched(&fetches[0].0, RobotsFetch::Rules(body), t);
        assert!(matches!(&out[0], Admit::Go(_, Some(d)) if *d == Duration::from_secs(2)));
        assert!(matches!(&out[1], Admit::Denied(_, d) if d.contains("Disallow: /private")));
        assert_eq!(g.parked(), 1);
        // Known now: decided at once, no new fetch.
        assert!(matches!(
            g.admit(job("http://a.test/private")),
            Admit::Denied(..)
        ));
        assert!(g.start_fetches().is_empty());
    }

    #[test]
    fn an_unreachable_robots_txt_is_retried_then_denies_all() {
        let retry = RetryPolicy {
            retries: 1,
            backoff_base: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let mut g: RobotsGate<()> = RobotsGate::new("fanout", retry, 4);
        let t = Instant::now();
        assert!(matches!(g.admit(job("http://b.test/x")), Admit::Held));
        let (origin, _) = g.start_fetches().pop().unwrap();
        let fail = || RobotsFetch::Unreachable {
            detail: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(g.fetched(&origin, fail(), t).is_empty(), "held for a retry");
        assert_eq!(
            g.next_wake(),
            Some(t + Duration::from_secs(3)),
            "Retry-After"
        );
        g.fire_timers(t + Duration::from_secs(2));
        assert!(g.start_fetches().is_empty(), "not due yet");
        g.fire_timers(t + Duration::from_secs(3));
        assert_eq!(g.start_fetches().len(), 1);
        let out = g.fetched(&origin, fail(), t);
        assert!(
            matches!(&out[0], Admit::Denied(_, d) if d.contains("unreachable (2 tries, last: HTTP 503)")),
        );
        assert_eq!(g.parked(), 0);
    }

    #[test]
    fn rules_are_forgotten_oldest_first_past_the_bound() {
        let mut g: RobotsGate<()> = RobotsGate::new("fanout", RetryPolicy::default(), 1);
        for i in 0..3 {
            assert!(matches!(
                g.admit(job(&format!("http://h{i}.test/"))),
                Admit::Held
            ));
            let (o, _) = g.start_fetches().pop().unwrap();
            g.fetched(
                &o,
                RobotsFetch::Unavailable("HTTP 404".into()),
                Instant::now(),
            );
        }
        assert_eq!(g.known.len(), 3);
        g.known_bytes = MAX_RULE_BYTES;
        g.remember("http://big.test".into(), 1);
        assert_eq!(g.known.len(), 1, "the oldest went first");
        assert!(
            matches!(g.admit(job("http://h0.test/")), Admit::Held),
            "fetched again"
        );
    }
}
