//! The live progress line on stderr (indicatif), fed from the library's [`Stats`] counters by a
//! small task every 100 ms. Hidden when stderr is not a terminal or with `-q`.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use fanout::stats::Stats;

pub struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(stats: Arc<Stats>, show: bool) -> Progress {
        if !show {
            return Progress {
                bar: None,
                task: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("static template is valid"),
        );
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let p = stats.progress();
                let rate = p.recorded as f64 / p.elapsed.as_secs_f64().max(1e-3);
                let mut msg = format!(
                    "{} done  {:.0}/s  {} in flight  {} errors  {} http 4xx/5xx",
                    p.recorded, rate, p.in_flight, p.errors, p.http_errors
                );
                if p.retries > 0 {
                    msg.push_str(&format!("  {} retries", p.retries));
                }
                if p.skipped > 0 {
                    msg.push_str(&format!("  {} skipped (already recorded)", p.skipped));
                }
                b.set_message(msg);
                b.tick();
            }
        });
        Progress {
            bar: Some(bar),
            task: Some(task),
        }
    }

    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
