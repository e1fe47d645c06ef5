//! The HTML form of a [`Report`]: one self-contained page (inline CSS, inline SVG charts, a few
//! lines of inline JS to sort the host table), which opens offline and requests nothing: its
//! Content-Security-Policy is `default-src 'none'` with inline styles and scripts allowed. Charts
//! draw one element per time or latency bucket, never one per request, so the page stays small
//! for any store. Everything taken from the store is escaped.
//!
//! Under the `#test` fragment the page checks itself after load (chart sizes, a sort of the host
//! table, resources fetched) and writes the results as JSON into `<pre id="test-out">`, for a
//! headless browser's `--dump-dom`.

use std::fmt::Write;

use super::text::ms;
use super::{Classes, HostRow, Report, TimeBucket};

/// Colours of the status classes (1xx, 2xx, 3xx, 4xx, 5xx, other).
const CLASS_COLOURS: [&str; 6] = [
    "#9aa5b1", "#2f9e62", "#3b7dd8", "#e3a72f", "#d64545", "#6b7280",
];
/// Colours of error kinds, in order of appearance.
const KIND_COLOURS: [&str; 8] = [
    "#7c4dcc", "#b5651d", "#c2418f", "#1f9fa8", "#56616e", "#8f9b2b", "#e06c9f", "#4b5bd6",
];
/// Colours of p50, p90, p99.
const PCT_COLOURS: [&str; 3] = ["#2f9e62", "#e3a72f", "#d64545"];

const W: f64 = 920.0;
const H: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 28.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 34.0;

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut s = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail.
    let _ = page(&mut s, r);
    s
}

fn page(s: &mut String, r: &Report) -> std::fmt::Result {
    let title = match (r.scope, r.run_id) {
        ("all", _) => "all runs".to_owned(),
        (_, Some(id)) => format!("run {id}"),
        _ => "no run".to_owned(),
    };
    write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fanout report: {store}, {title}</title>
<style>{CSS}</style></head>
<body><main>
<h1>fanout report <span class="sub">{store} · {title}</span></h1>
"#,
        store = esc(&r.store),
    )?;
    cards(s, r)?;
    s.push_str("<h2>Requests per second</h2>\n");
    rps_chart(s, r)?;
    s.push_str("<h2>Status codes and errors over time</h2>\n");
    stacked_chart(s, r)?;
    s.push_str("<h2>Latency percentiles over time <span class=\"sub\">log scale</span></h2>\n");
    percentile_chart(s, r)?;
    s.push_str("<h2>Latency distribution <span class=\"sub\">responses, log scale</span></h2>\n");
    histogram_chart(s, r)?;
    host_table(s, r)?;
    runs_table(s, r)?;
    write!(
        s,
        "<p class=\"foot\">{}; latencies are total_ms of responses; p50/p90/p99 above are exact, \
         per host and over time within 1% (log buckets).</p>\n</main>\n<pre id=\"test-out\" \
         hidden></pre>\n<script>{JS}</script>\n</body></html>\n",
        r.format
    )
}

fn cards(s: &mut String, r: &Report) -> std::fmt::Result {
    let card = |s: &mut String, label: &str, value: String, class: &str| {
        let _ = write!(
            s,
            "<div class=\"card {class}\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
            esc(&value),
            esc(label)
        );
    };
    s.push_str("<section class=\"cards\">");
    card(s, "outcomes", num(r.outcomes), "");
    card(s, "responses", num(r.responses), "");
    card(
        s,
        "errors",
        num(r.errors),
        if r.errors > 0 { "bad" } else { "" },
    );
    card(s, "req/s", format!("{:.0}", r.throughput_rps), "");
    let elapsed = if r.elapsed_s >= 60.0 {
        secs(r.elapsed_s.round())
    } else {
        format!("{:.2}s", r.elapsed_s)
    };
    card(s, "elapsed", elapsed, "");
    if let Some(l) = r.latency_ms {
        card(s, "p50", ms(l.p50), "");
        card(s, "p90", ms(l.p90), "");
        card(s, "p99", ms(l.p99), "");
        card(s, "max", ms(l.max), "");
    }
    card(s, "body bytes", bytes(r.bytes), "");
    card(s, "retries", num(r.retries), "");
    s.push_str("</section>\n<p class=\"mix\">");
    let mut parts: Vec<String> = Classes::NAMES
        .iter()
        .zip(r.status_classes.counts())
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, (name, n))| {
            format!(
                "<span class=\"dot\" style=\"background:{}\"></span>{name} {}",
                CLASS_COLOURS[i],
                num(n)
            )
        })
        .collect();
    let codes: Vec<String> = r
        .statuses
        .iter()
        .map(|c| format!("{} ×{}", c.status, num(c.count)))
        .collect();
    if !codes.is_empty() {
        parts.push(format!("<span class=\"sub\">({})</span>", codes.join(", ")));
    }
    for (i, k) in r.error_kinds.iter().enumerate() {
        parts.push(format!(
            "<span class=\"dot\" style=\"background:{}\"></span>{} {}",
            KIND_COLOURS[i % KIND_COLOURS.len()],
            esc(&k.kind),
            num(k.count)
        ));
    }
    s.push_str(&parts.join(" &nbsp; "));
    s.push_str("</p>\n");
    Ok(())
}

/// A chart's frame: the `<svg>` opening, the plot area and its x axis over the time buckets.
struct Plot {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Plot {
    fn new() -> Plot {
        Plot {
            x0: LEFT,
            x1: W - RIGHT,
            y0: H - BOTTOM,
            y1: TOP,
        }
    }

    fn open(&self, s: &mut String, id: &str, label: &str) -> std::fmt::Result {
        write!(
            s,
            "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
             role=\"img\" aria-label=\"{}\">",
            esc(label)
        )
    }

    fn empty(&self, s: &mut String, id: &str) -> std::fmt::Result {
        self.open(s, id, "no data")?;
        writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" class=\"none\">no data</text></svg>",
            W / 2.0,
            H / 2.0
        )
    }

    /// Horizontal grid lines and labels for the values `ticks` at heights `y(v)`.
    fn y_axis(&self, s: &mut String, ticks: &[(f64, String)]) -> std::fmt::Result {
        for (y, label) in ticks {
            write!(
                s,
                "<line class=\"grid\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"ax\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                self.x0,
                self.x1,
                self.x0 - 6.0,
                y + 4.0,
                esc(label)
            )?;
        }
        write!(
            s,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{1:.1}\" y1=\"{2:.1}\" y2=\"{2:.1}\"/>",
            self.x0, self.x1, self.y0
        )
    }

    /// Time labels under the plot for `n` buckets of `bucket_s` seconds.
    fn time_axis(&self, s: &mut String, n: usize, bucket_s: f64) -> std::fmt::Result {
        let span = n as f64 * bucket_s;
        for t in time_ticks(span) {
            let x = self.x0 + (self.x1 - self.x0) * t / span.max(f64::MIN_POSITIVE);
            write!(
                s,
                "<line class=\"tick\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{0:.1}\" y2=\"{1:.1}\"/>\
                 <text class=\"ax\" x=\"{x:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
                self.y0,
                self.y0 + 4.0,
                self.y0 + 18.0,
                secs(t)
            )?;
        }
        write!(
            s,
            "<text class=\"ax\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">time since start</text>",
            self.x1,
            H - 2.0
        )
    }
}

/// Linear ticks from 0 to a nice top at or above `max`: (the top, each tick's height and label).
fn linear_ticks(p: &Plot, max: f64, fmt: impl Fn(f64) -> String) -> (f64, Vec<(f64, String)>) {
    let ticks = nice_ticks(max.max(1.0), 5);
    let step = ticks.get(1).copied().unwrap_or(1.0);
    let steps = (max / step).ceil().max(1.0) as u64;
    let top = steps as f64 * step;
    let y = |v: f64| p.y0 - (p.y0 - p.y1) * v / top;
    let ticks = (0..=steps)
        .map(|i| {
            let v = i as f64 * step;
            (y(v), fmt(v))
        })
        .collect();
    (top, ticks)
}

/// Values 0, step, 2·step, … up to `max`, with a 1-2-5 step giving about `n` of them.
fn nice_ticks(max: f64, n: usize) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0];
    }
    let raw = max / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|v| *v <= max * (1.0 + 1e-9))
        .collect()
}

/// Ticks of a time axis over `span` seconds: steps people count in (1, 2, 5, 10, 15, 30 s, 1, 2,
/// 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h, days), about 6 to 10 of them.
fn time_ticks(span: f64) -> Vec<f64> {
    const STEPS: [f64; 19] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
        600.0, 900.0, 1800.0, 3600.0,
    ];
    let step = STEPS
        .iter()
        .copied()
        .chain([7200.0, 10800.0, 21600.0, 43200.0, 86400.0])
        .find(|s| span / s <= 10.0)
        .unwrap_or_else(|| (span / 10.0 / 86400.0).ceil() * 86400.0);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|v| *v <= span * (1.0 + 1e-9))
        .collect()
}

/// A count, short: 950, 1.5k, 150k, 2M.
fn short(v: f64) -> String {
    let trim = |x: f64| {
        let t = format!("{x:.1}");
        t.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if v >= 1e9 {
        format!("{}G", trim(v / 1e9))
    } else if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn legend(s: &mut String, items: &[(String, &str)]) {
    s.push_str("<div class=\"legend\">");
    for (name, colour) in items {
        let _ = write!(
            s,
            "<span><span class=\"dot\" style=\"background:{colour}\"></span>{}</span>",
            esc(name)
        );
    }
    s.push_str("</div>\n");
}

fn rps_chart(s: &mut String, r: &Report) -> std::fmt::Result {
    let p = Plot::new();
    let buckets = &r.timeline.buckets;
    if buckets.is_empty() {
        return p.empty(s, "chart-rps");
    }
    let max = buckets.iter().map(|b| b.rps).fold(0.0, f64::max);
    let (top, ticks) = linear_ticks(&p, max, short);
    p.open(s, "chart-rps", "requests per second over time")?;
    p.y_axis(s, &ticks)?;
    let bw = (p.x1 - p.x0) / buckets.len() as f64;
    for (i, b) in buckets.iter().enumerate() {
        let h = (p.y0 - p.y1) * b.rps / top;
        write!(
            s,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
             fill=\"#3b7dd8\"><title>{}: {:.0} req/s</title></rect>",
            p.x0 + i as f64 * bw + bw * 0.08,
            p.y0 - h,
            (bw * 0.84).max(0.5),
            secs(b.t_s),
            b.rps
        )?;
    }
    p.time_axis(s, buckets.len(), r.timeline.bucket_s)?;
    s.push_str("</svg>\n");
    Ok(())
}

/// The series of the stacked chart: status classes and error kinds that occur, with colours.
/// A series of the stacked chart: its name, colour and count in a bucket.
type Series = (String, &'static str, Box<dyn Fn(&TimeBucket) -> u64>);

fn series(r: &Report) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    let counts = r.status_classes.counts();
    for i in [1, 2, 3, 4, 0, 5] {
        if counts[i] > 0 {
            out.push((
                Classes::NAMES[i].to_owned(),
                CLASS_COLOURS[i],
                Box::new(move |b: &TimeBucket| b.status_classes.counts()[i]),
            ));
        }
    }
    for (i, k) in r.error_kinds.iter().enumerate() {
        let kind = k.kind.clone();
        out.push((
            k.kind.clone(),
            KIND_COLOURS[i % KIND_COLOURS.len()],
            Box::new(move |b: &TimeBucket| b.errors.get(&kind).copied().unwrap_or(0)),
        ));
    }
    out
}

fn stacked_chart(s: &mut String, r: &Report) -> std::fmt::Result {
    let p = Plot::new();
    let buckets = &r.timeline.buckets;
    if buckets.is_empty() {
        return p.empty(s, "chart-status");
    }
    let series = series(r);
    legend(
        s,
        &series
            .iter()
            .map(|(n, c, _)| (n.clone(), *c))
            .collect::<Vec<_>>(),
    );
    let max = buckets.iter().map(|b| b.outcomes).max().unwrap_or(0) as f64;
    let (top, ticks) = linear_ticks(&p, max, short);
    p.open(
        s,
        "chart-status",
        "status classes and error kinds over time, stacked",
    )?;
    p.y_axis(s, &ticks)?;
    let bw = (p.x1 - p.x0) / buckets.len() as f64;
    for (i, b) in buckets.iter().enumerate() {
        let mut y = p.y0;
        for (name, colour, count) in &series {
            let n = count(b);
            if n == 0 {
                continue;
            }
            let h = (p.y0 - p.y1) * n as f64 / top;
            y -= h;
            write!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\">\
                 <title>{}: {} {}</title></rect>",
                p.x0 + i as f64 * bw + bw * 0.08,
                (bw * 0.84).max(0.5),
                secs(b.t_s),
                n,
                esc(name)
            )?;
        }
    }
    p.time_axis(s, buckets.len(), r.timeline.bucket_s)?;
    s.push_str("</svg>\n");
    Ok(())
}

/// Ticks of a log axis from `lo` to `hi` (milliseconds): 1-2-5 per decade, labels at each.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut d = 10f64.powf(lo.log10().floor());
    while d <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = d * m;
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        d *= 10.0;
    }
    out
}

fn percentile_chart(s: &mut String, r: &Report) -> std::fmt::Result {
    let p = Plot::new();
    let buckets = &r.timeline.buckets;
    let values: Vec<f64> = buckets
        .iter()
        .flat_map(|b| [b.p50_ms, b.p90_ms, b.p99_ms])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    if values.is_empty() {
        return p.empty(s, "chart-pct");
    }
    let lo = 10f64.powf(
        values
            .iter()
            .copied()
            .fold(f64::MAX, f64::min)
            .log10()
            .floor(),
    );
    let hi = 10f64.powf(values.iter().copied().fold(0.0, f64::max).log10().ceil());
    let hi = if hi <= lo { lo * 10.0 } else { hi };
    let y = |v: f64| p.y0 - (p.y0 - p.y1) * (v.max(lo).log10() - lo.log10()) / (hi / lo).log10();
    legend(
        s,
        &["p50", "p90", "p99"]
            .iter()
            .zip(PCT_COLOURS)
            .map(|(n, c)| (n.to_string(), c))
            .collect::<Vec<_>>(),
    );
    p.open(s, "chart-pct", "latency percentiles over time, log scale")?;
    let ticks: Vec<(f64, String)> = log_ticks(lo, hi)
        .into_iter()
        .map(|v| (y(v), tick_ms(v)))
        .collect();
    p.y_axis(s, &ticks)?;
    let bw = (p.x1 - p.x0) / buckets.len() as f64;
    for (k, colour) in PCT_COLOURS.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        for (i, b) in buckets.iter().enumerate() {
            let v = [b.p50_ms, b.p90_ms, b.p99_ms][k];
            match v {
                Some(v) => {
                    let x = p.x0 + (i as f64 + 0.5) * bw;
                    let _ = write!(d, "{}{x:.1},{:.1} ", if pen_down { "L" } else { "M" }, y(v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        write!(
            s,
            "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
             stroke-linejoin=\"round\"/>",
            d.trim_end()
        )?;
    }
    // A dot per bucket for the p99, with the figures as a tooltip.
    for (i, b) in buckets.iter().enumerate() {
        if let Some(v) = b.p99_ms {
            write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"><title>{}: p50 {} p90 {} \
                 p99 {}</title></circle>",
                p.x0 + (i as f64 + 0.5) * bw,
                y(v),
                PCT_COLOURS[2],
                secs(b.t_s),
                b.p50_ms.map_or("-".into(), ms),
                b.p90_ms.map_or("-".into(), ms),
                ms(v)
            )?;
        }
    }
    p.time_axis(s, buckets.len(), r.timeline.bucket_s)?;
    s.push_str("</svg>\n");
    Ok(())
}

fn histogram_chart(s: &mut String, r: &Report) -> std::fmt::Result {
    let p = Plot::new();
    let h = &r.latency_histogram;
    if h.is_empty() {
        return p.empty(s, "chart-hist");
    }
    let max = h.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let (top, ticks) = linear_ticks(&p, max, short);
    p.open(s, "chart-hist", "latency histogram, log scale")?;
    p.y_axis(s, &ticks)?;
    let (lo, hi) = (h[0].lo_ms, h[h.len() - 1].hi_ms);
    let x = |v: f64| p.x0 + (p.x1 - p.x0) * (v / lo).log10() / (hi / lo).log10();
    for b in h {
        let bh = (p.y0 - p.y1) * b.count as f64 / top;
        let (xa, xb) = (x(b.lo_ms), x(b.hi_ms));
        write!(
            s,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" \
             fill=\"#7c4dcc\"><title>{} – {}: {}</title></rect>",
            xa + 0.5,
            p.y0 - bh,
            (xb - xa - 1.0).max(0.5),
            ms(b.lo_ms),
            ms(b.hi_ms),
            b.count
        )?;
    }
    for v in log_ticks(lo, hi) {
        let xv = x(v);
        write!(
            s,
            "<line class=\"tick\" x1=\"{xv:.1}\" x2=\"{xv:.1}\" y1=\"{0:.1}\" y2=\"{1:.1}\"/>\
             <text class=\"ax\" x=\"{xv:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            p.y0,
            p.y0 + 4.0,
            p.y0 + 18.0,
            tick_ms(v)
        )?;
    }
    writeln!(
        s,
        "<text class=\"ax\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">latency</text></svg>",
        p.x1,
        H - 2.0
    )
}

fn host_table(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(
        s,
        "<h2>Hosts <span class=\"sub\">{} of {} · click a header to sort</span></h2>",
        r.hosts.table.len(),
        r.hosts.count
    )?;
    let cols = [
        ("host", false),
        ("outcomes", true),
        ("errors", true),
        ("4xx/5xx", true),
        ("failure %", true),
        ("p50", true),
        ("p99", true),
        ("max", true),
        ("body bytes", true),
        ("attempts", true),
        ("limit", true),
        ("overloads", true),
    ];
    s.push_str("<div class=\"wide\"><table id=\"hosts\" class=\"sortable\"><thead><tr>");
    for (name, numeric) in cols {
        write!(
            s,
            "<th data-type=\"{}\" tabindex=\"0\">{name}</th>",
            if numeric { "num" } else { "text" }
        )?;
    }
    s.push_str("</tr></thead><tbody>\n");
    for h in &r.hosts.table {
        host_row(s, h)?;
    }
    s.push_str("</tbody></table></div>\n");
    Ok(())
}

fn host_row(s: &mut String, h: &HostRow) -> std::fmt::Result {
    let failure = if h.outcomes > 0 {
        100.0 * h.failures() as f64 / h.outcomes as f64
    } else {
        0.0
    };
    write!(s, "<tr><td data-v=\"{0}\">{0}</td>", esc(&h.host))?;
    let cell = |s: &mut String, v: Option<f64>, shown: String| {
        let _ = match v {
            Some(v) => write!(s, "<td data-v=\"{v}\">{shown}</td>"),
            None => write!(s, "<td data-v=\"-1\">-</td>"),
        };
    };
    for n in [h.outcomes, h.errors, h.http_errors] {
        cell(s, Some(n as f64), num(n));
    }
    cell(s, Some(failure), format!("{failure:.1}%"));
    for v in [h.p50_ms, h.p99_ms, h.max_ms] {
        cell(s, v, v.map(ms).unwrap_or_default());
    }
    cell(s, Some(h.bytes as f64), bytes(h.bytes));
    for v in [h.attempts, h.limit, h.overloads] {
        cell(s, v.map(|v| v as f64), v.map(num).unwrap_or_default());
    }
    s.push_str("</tr>\n");
    Ok(())
}

fn runs_table(s: &mut String, r: &Report) -> std::fmt::Result {
    if r.runs.is_empty() {
        return Ok(());
    }
    s.push_str(
        "<h2>Runs</h2>\n<table id=\"runs\"><thead><tr><th>run</th><th>started</th><th>status</th>\
         <th>mode</th><th>outcomes</th><th>errors</th><th>skipped</th><th>command</th></tr>\
         </thead><tbody>\n",
    );
    for run in &r.runs {
        let current = Some(run.id) == r.run_id;
        writeln!(
            s,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"cmd\">{}</td></tr>",
            if current { " class=\"current\"" } else { "" },
            run.id,
            esc(&run.started_at),
            esc(&run.status),
            esc(&run.mode),
            num(run.outcomes),
            num(run.errors),
            num(run.skipped),
            esc(&run.command)
        )?;
    }
    s.push_str("</tbody></table>\n");
    Ok(())
}

/// Text for HTML: element content and attribute values alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A count with thousands separators.
fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A 1-2-5 tick value in milliseconds, short: `0.2ms`, `50ms`, `2s`.
fn tick_ms(v: f64) -> String {
    let trim = |x: f64| {
        let t = format!("{x:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if v >= 1000.0 {
        format!("{}s", trim(v / 1000.0))
    } else {
        format!("{}ms", trim(v))
    }
}

fn secs(t: f64) -> String {
    if t >= 3600.0 {
        format!(
            "{}h{:02}m",
            (t / 3600.0) as u64,
            ((t % 3600.0) / 60.0) as u64
        )
    } else if t >= 60.0 {
        format!("{}m{:02}s", (t / 60.0) as u64, (t % 60.0) as u64)
    } else {
        let t = format!("{t:.2}");
        format!("{}s", t.trim_end_matches('0').trim_end_matches('.'))
    }
}

const CSS: &str = "
:root{--fg:#1f2933;--mut:#6b7785;--line:#e4e7eb;--bg:#fbfcfd}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}
main{max-width:960px;margin:0 auto;padding:24px 20px 40px}
h1{font-size:22px;margin:0 0 16px}
h2{font-size:16px;margin:28px 0 6px}
.sub{color:var(--mut);font-weight:normal;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:92px}
.card .v{font-size:19px;font-weight:600;font-variant-numeric:tabular-nums}
.card .l{color:var(--mut);font-size:12px}
.card.bad .v{color:#c53030}
.mix{margin:12px 0 0}
.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:var(--mut);margin:2px 0 4px}
svg.chart{display:block;background:#fff;border:1px solid var(--line);border-radius:8px;max-width:100%;height:auto}
svg .grid{stroke:var(--line);stroke-width:1}
svg .axis{stroke:#9aa5b1;stroke-width:1}
svg .tick{stroke:#9aa5b1}
svg .ax{fill:var(--mut);font-size:11px}
svg .none{fill:var(--mut);font-size:14px;text-anchor:middle}
svg rect:hover,svg circle:hover{opacity:.75}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line);font-size:13px;font-variant-numeric:tabular-nums}
.wide{overflow-x:auto}
th,td{padding:5px 7px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f5f7;font-weight:600;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#e8ecf0}
th[aria-sort=ascending]::after{content:' \\25B2';font-size:10px}
th[aria-sort=descending]::after{content:' \\25BC';font-size:10px}
#runs th,#runs td{text-align:left}
tr.current td{background:#f0f6ff}
td.cmd{text-align:left;white-space:normal;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:var(--mut)}
.foot{color:var(--mut);font-size:12px;margin-top:24px}
";

const JS: &str = r##"
(function () {
  "use strict";
  function sortBy(table, col) {
    var th = table.tHead.rows[0].cells[col];
    var num = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === (num ? "descending" : "ascending")
      ? (num ? "ascending" : "descending") : (num ? "descending" : "ascending");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
      var d = num ? parseFloat(x) - parseFloat(y) : (x < y ? -1 : x > y ? 1 : 0);
      return sign * d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () { sortBy(table, i); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, i); });
    });
  });
  if (location.hash === "#test") {
    var out = { charts: [], sort: [] };
    Array.prototype.forEach.call(document.querySelectorAll("svg.chart"), function (svg) {
      var b = svg.getBoundingClientRect();
      out.charts.push({ id: svg.id, width: b.width, height: b.height,
        marks: svg.querySelectorAll("rect,path,circle").length });
    });
    var table = document.getElementById("hosts");
    var first = function () { var r = table.tBodies[0].rows[0]; return r ? r.cells[0].textContent : null; };
    out.sort.push({ header: null, first: first() });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (th.textContent === "host") {
        th.click(); out.sort.push({ header: "host", dir: th.getAttribute("aria-sort"), first: first() });
        th.click(); out.sort.push({ header: "host", dir: th.getAttribute("aria-sort"), first: first() });
      }
    });
    out.resources = performance.getEntriesByType("resource").length;
    var pre = document.getElementById("test-out");
    pre.textContent = JSON.stringify(out);
  }
  document.documentElement.setAttribute("data-ready", "ok");
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(num(12), "12");
        assert_eq!(bytes(1500), "1.5 KB");
        assert_eq!(tick_ms(0.2), "0.2ms");
        assert_eq!(short(150_000.0), "150k");
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(40.0), "40");
        assert_eq!(secs(0.05), "0.05s");
        assert_eq!(secs(0.1), "0.1s");
        assert_eq!(secs(20.0), "20s");
        assert_eq!(secs(600.0), "10m00s");
        assert_eq!(time_ticks(3650.0).get(1), Some(&600.0));
        assert_eq!(time_ticks(4.6).get(1), Some(&0.5));
        assert_eq!(tick_ms(100.0), "100ms");
        assert_eq!(tick_ms(2000.0), "2s");
        assert_eq!(
            nice_ticks(100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(
            log_ticks(1.0, 100.0),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
    }
}
