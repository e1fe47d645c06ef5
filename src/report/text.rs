//! The terminal form of a [`Report`]: a few aligned lines, then the top hosts and the runs.

use std::fmt::Write;

use super::{Classes, HostRow, Report};

/// The report as text for a terminal (ends with a newline).
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut s, r);
    s
}

fn write_report(s: &mut String, r: &Report) -> std::fmt::Result {
    let what = match (r.scope, r.run_id) {
        ("all", _) => "all runs".to_owned(),
        (_, Some(id)) => {
            let status = r.runs.iter().find(|run| run.id == id);
            match status {
                Some(run) => format!("run {id} ({}, {})", run.status, run.mode),
                None => format!("run {id}"),
            }
        }
        _ => "no run yet".to_owned(),
    };
    writeln!(s, "fanout report: {}, {what}", r.store)?;
    writeln!(
        s,
        "  outcomes:   {} ({} responses, {} errors) in {:.2}s, {:.0} req/s{}",
        r.outcomes,
        r.responses,
        r.errors,
        r.elapsed_s,
        r.throughput_rps,
        r.first_started_at
            .as_deref()
            .map(|t| format!(", from {t}"))
            .unwrap_or_default()
    )?;
    let classes: Vec<String> = Classes::NAMES
        .iter()
        .zip(r.status_classes.counts())
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !classes.is_empty() {
        let codes: Vec<String> = r
            .statuses
            .iter()
            .map(|c| format!("{} ×{}", c.status, c.count))
            .collect();
        writeln!(
            s,
            "  statuses:   {}  ({})",
            classes.join(", "),
            codes.join(", ")
        )?;
    }
    if !r.error_kinds.is_empty() {
        let kinds: Vec<String> = r
            .error_kinds
            .iter()
            .map(|k| format!("{} {}", k.kind, k.count))
            .collect();
        writeln!(s, "  errors:     {}", kinds.join(", "))?;
    }
    if let Some(l) = r.latency_ms {
        writeln!(
            s,
            "  latency:    p50 {}  p90 {}  p99 {}  max {}  mean {}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max),
            ms(l.mean)
        )?;
    }
    writeln!(
        s,
        "  transfer:   {} body bytes, {} attempts, {} retries",
        r.bytes, r.attempts, r.retries
    )?;
    if r.hosts.count > 0 {
        writeln!(s, "  hosts:      {}", r.hosts.count)?;
        hosts(s, "busiest hosts", &r.hosts.by_volume)?;
        hosts(s, "most failures", &r.hosts.by_errors)?;
        hosts(s, "slowest (p99)", &r.hosts.by_p99)?;
    }
    if !r.runs.is_empty() {
        writeln!(s, "  runs:")?;
        for run in &r.runs {
            writeln!(
                s,
                "    {:>4}  {}  {:<11} {:<6} {:>9} outcomes {:>8} errors {:>8} skipped  {}",
                run.id,
                run.started_at,
                run.status,
                run.mode,
                run.outcomes,
                run.errors,
                run.skipped,
                run.command
            )?;
        }
    }
    Ok(())
}

fn hosts(s: &mut String, title: &str, rows: &[HostRow]) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(s, "  {title}:")?;
    for h in rows {
        write!(
            s,
            "    {:<32} {:>9} outcomes {:>7} failures  p50 {:>9}  p99 {:>9}",
            h.host,
            h.outcomes,
            h.failures(),
            h.p50_ms.map_or("-".into(), ms),
            h.p99_ms.map_or("-".into(), ms)
        )?;
        if let (Some(limit), Some(overloads)) = (h.limit, h.overloads) {
            write!(s, "  limit {limit}, {overloads} overloaded")?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// Milliseconds, with precision that suits the size.
pub(super) fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.2}ms")
    }
}
