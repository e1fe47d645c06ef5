//! `fanout report [STORE]`: the report of a store as text (stdout), JSON (`--json`, stdout) or a
//! self-contained HTML file (`--html FILE`, saying where on stderr); and the `--summary-json`
//! file of `fanout fetch`. The figures come from the library's [`fanout::report`]; this file only
//! picks the store and the output.

use std::path::{Path, PathBuf};

use clap::Args;

use fanout::report::{self, Report, ReportError, Scope};

use super::exit;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The store: an SQLite file (a PostgreSQL URL once that store exists).
    #[arg(value_name = "STORE", default_value = "fanout.db")]
    pub store: String,

    /// Report on this run instead of the latest (its id in the store's `runs` table).
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub run: Option<i64>,

    /// Report on every outcome in the store, over all runs.
    #[arg(long)]
    pub all: bool,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

pub fn report_cmd(a: ReportArgs) -> u8 {
    if is_postgres(&a.store) {
        eprintln!(
            "fanout: error: store {}: PostgreSQL stores are not built yet",
            redacted(&a.store)
        );
        return exit::USAGE;
    }
    let scope = match (a.run, a.all) {
        (Some(id), _) => Scope::Run(id),
        (None, true) => Scope::All,
        (None, false) => Scope::Latest,
    };
    let r = match report::open_sqlite(Path::new(&a.store), scope) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fanout: error: {e}");
            return exit::USAGE;
        }
    };
    if let Some(path) = &a.html {
        let page = report::html(&r);
        if let Err(e) = std::fs::write(path, &page) {
            eprintln!("fanout: error: --html {}: {e}", path.display());
            return exit::USAGE;
        }
        eprintln!(
            "fanout report: wrote {} ({} KB)",
            path.display(),
            page.len().div_ceil(1024)
        );
    }
    if a.json {
        println!("{}", json(&r));
    } else {
        print!("{}", report::text(&r));
    }
    exit::OK
}

/// The report as pretty-printed JSON, fields in the model's order.
fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|_| "null".into())
}

/// `fanout fetch --summary-json FILE`: the report of the run just finished, from its SQLite
/// store, written to `file`.
pub fn write_summary_json(store: &Path, run_id: i64, file: &Path) -> Result<(), String> {
    let r =
        report::open_sqlite(store, Scope::Run(run_id)).map_err(|e: ReportError| e.to_string())?;
    std::fs::write(file, json(&r) + "\n").map_err(|e| format!("{}: {e}", file.display()))
}

fn is_postgres(store: &str) -> bool {
    fanout::pg::PgUrl::is_pg_url(store)
}

/// A store URL with its password removed, for messages.
fn redacted(store: &str) -> String {
    fanout::secrets::mask_url(store).into_owned()
}
