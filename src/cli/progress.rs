//! Progress on stderr, fed from the library's [`Stats`] counters by one small task: on a terminal a
//! live line (indicatif), a bar with percentage and ETA when the size of the job is known (the
//! inputs are regular files: bytes read of their total; or a fixed number of requests, as in
//! `fanout demo`), a spinner otherwise (stdin, a query); off a terminal with `--progress always`,
//! one plain line every few seconds for CI logs, and a last one with the final counts.
//! Reads counters only; never touches the run.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use fanout::stats::{Progress as Counters, Stats};

/// `--progress`: when to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum When {
    /// A live line when stderr is a terminal; nothing otherwise.
    Auto,
    /// As auto on a terminal; otherwise one plain line every 2 s (for CI logs).
    Always,
    /// No progress.
    Never,
}

/// Time between two plain lines (`--progress always` off a terminal).
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// Time between two updates of the live line.
const LIVE_EVERY: Duration = Duration::from_millis(100);
/// The rate shown is over about this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(2);

enum Show {
    Live(ProgressBar),
    Plain,
}

pub struct Progress {
    show: Option<Show>,
    meter: Arc<std::sync::Mutex<Meter>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What the job's size is measured in, when it is known.
#[derive(Clone, Copy, PartialEq)]
enum Total {
    Bytes(u64),
    Requests(u64),
}

/// Turns counter readings into what is shown: the fraction done and a recent rate.
struct Meter {
    stats: Arc<Stats>,
    requests: Option<u64>,
    /// Recent (time, outcomes) readings for the rate.
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    fn read(&mut self) -> (Counters, Option<(u64, Total)>, f64) {
        let p = self.stats.progress();
        let done = p.recorded + p.skipped;
        let now = Instant::now();
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && now.duration_since(self.samples[0].0) > RATE_WINDOW + LIVE_EVERY
        {
            self.samples.pop_front();
        }
        let (t0, n0) = self.samples[0];
        let span = now.duration_since(t0).as_secs_f64();
        let rate = if span >= 0.05 {
            done.saturating_sub(n0) as f64 / span
        } else {
            average(&p)
        };
        let size = match (p.input_total, self.requests) {
            (Some(t), _) => Some((p.input_bytes_done().min(t), Total::Bytes(t))),
            (None, Some(n)) => Some((done.min(n), Total::Requests(n))),
            (None, None) => None,
        };
        (p, size, rate)
    }
}

/// Outcomes per second over the whole run (the final line's rate).
fn average(p: &Counters) -> f64 {
    p.recorded as f64 / p.elapsed.as_secs_f64().max(1e-3)
}

fn counts(p: &Counters, rate: f64, sep: &str) -> String {
    [
        format!("{} done", p.recorded),
        format!("{rate:.0}/s"),
        format!("{} in flight", p.in_flight),
        format!("{} errors", p.errors),
        format!("{} http 4xx/5xx", p.http_errors),
        format!("{} retries", p.retries),
        format!("{} skipped", p.skipped),
    ]
    .join(sep)
}

/// The plain line: `[elapsed] 45% of input done, ETA 12s; 1234 done, ...`.
fn plain_line(p: &Counters, size: Option<(u64, Total)>, rate: f64, last: bool) -> String {
    let secs = p.elapsed.as_secs();
    let mut line = format!(
        "fanout: [{:02}:{:02}:{:02}] ",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if let Some((pos, total)) = size {
        let len = match total {
            Total::Bytes(t) | Total::Requests(t) => t,
        };
        let frac = if len == 0 {
            1.0
        } else {
            pos as f64 / len as f64
        };
        let what = match total {
            Total::Bytes(_) => "of input done",
            Total::Requests(_) => "of requests",
        };
        line.push_str(&format!("{:.0}% {what}", frac * 100.0));
        if !last && frac > 0.0 && frac < 1.0 {
            let eta = p.elapsed.as_secs_f64() * (1.0 - frac) / frac;
            line.push_str(&format!(", ETA {}s", eta.round() as u64));
        }
        line.push_str("; ");
    }
    line.push_str(&counts(p, rate, ", "));
    line
}

fn live_style(bar: bool) -> ProgressStyle {
    let template = if bar {
        "{spinner} [{elapsed_precise}] [{bar:24}] {percent:>3}% ETA {eta:<4} {wide_msg}"
    } else {
        "{spinner} [{elapsed_precise}] {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .expect("static template is valid")
        .progress_chars("=> ")
}

fn update_live(bar: &ProgressBar, shown: &mut Option<Total>, meter: &mut Meter) {
    let (p, size, rate) = meter.read();
    if let Some((pos, total)) = size {
        if *shown != Some(total) {
            bar.set_style(live_style(true));
            let (Total::Bytes(len) | Total::Requests(len)) = total;
            bar.set_length(len);
            *shown = Some(total);
        }
        bar.set_position(pos);
    }
    bar.set_message(counts(&p, rate, "  "));
}

impl Progress {
    /// Starts showing progress as `when` and `-q` (`quiet`) ask. `requests`: the number of
    /// requests of the job, when the caller knows it (the bar then counts outcomes).
    pub fn start(stats: Arc<Stats>, when: When, quiet: bool, requests: Option<u64>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let show = match when {
            _ if quiet => None,
            When::Never => None,
            When::Auto | When::Always if terminal => Some(Show::Live(
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10)),
            )),
            When::Always => Some(Show::Plain),
            When::Auto => None,
        };
        let meter = Arc::new(std::sync::Mutex::new(Meter {
            stats,
            requests,
            samples: VecDeque::new(),
        }));
        let task = match &show {
            None => None,
            Some(Show::Live(bar)) => {
                bar.set_style(live_style(false));
                let bar = bar.clone();
                let meter = meter.clone();
                Some(tokio::spawn(async move {
                    let mut shown = None;
                    let mut tick = tokio::time::interval(LIVE_EVERY);
                    loop {
                        tick.tick().await;
                        update_live(&bar, &mut shown, &mut lock(&meter));
                        bar.tick();
                    }
                }))
            }
            Some(Show::Plain) => {
                let meter = meter.clone();
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(PLAIN_EVERY);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let (p, size, rate) = lock(&meter).read();
                        eprintln!("{}", plain_line(&p, size, rate, false));
                    }
                }))
            }
        };
        Progress { show, meter, task }
    }

    /// Stops the updates and shows the final counts: the live line is left on screen at its
    /// final state (100% for a job of known size that ran to the end); off a terminal, one last
    /// plain line.
    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        let mut meter = lock(&self.meter);
        match self.show {
            None => {}
            Some(Show::Live(bar)) => {
                update_live(&bar, &mut None, &mut meter);
                let p = meter.stats.progress();
                bar.set_message(counts(&p, average(&p), "  "));
                bar.finish();
            }
            Some(Show::Plain) => {
                let (p, size, _) = meter.read();
                eprintln!("{}", plain_line(&p, size, average(&p), true));
            }
        }
    }
}

/// The meter's lock; a panic elsewhere cannot leave its numbers half-written in a harmful way.
fn lock(m: &std::sync::Mutex<Meter>) -> std::sync::MutexGuard<'_, Meter> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
