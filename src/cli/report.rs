//! `fanout report [STORE]`: the report of a store as text (stdout), JSON (`--json`, stdout) or a
//! self-contained HTML file (`--html FILE`, saying where on stderr); and the `--summary-json`
//! file of `fanout fetch`. The figures come from the library's [`fanout::report`]; this file only
//! picks the store and the output.

use std::path::{Path, PathBuf};

use clap::Args;

use fanout::pg::PgUrl;
use fanout::report::{self, Report, ReportError, Scope};

use super::exit;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The store: an SQLite file or a PostgreSQL URL (postgres://...).
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

pub async fn report_cmd(a: ReportArgs) -> u8 {
    let scope = match (a.run, a.all) {
        (Some(id), _) => Scope::Run(id),
        (None, true) => Scope::All,
        (None, false) => Scope::Latest,
    };
    let r = if PgUrl::is_pg_url(&a.store) {
        match PgUrl::parse(&a.store) {
            Ok(url) => report::open_postgres(&url, scope).await,
            Err(e) => {
                eprintln!("fanout: error: store {}: {e}", redacted(&a.store));
                return exit::USAGE;
            }
        }
    } else {
        report::open_sqlite(Path::new(&a.store), scope)
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            // The store is named without its password already; this is a second net.
            eprintln!(
                "fanout: error: {}",
                fanout::pg::mask_secrets(&e.to_string())
            );
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

/// The store `fanout fetch --summary-json` computes its report from.
pub enum SummaryStore {
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

/// `fanout fetch --summary-json FILE`: the report of the run just finished, from its store,
/// written to `file`.
pub async fn write_summary_json(
    store: &SummaryStore,
    run_id: i64,
    file: &Path,
) -> Result<(), String> {
    let scope = Scope::Run(run_id);
    let r = match store {
        SummaryStore::Sqlite(path) => report::open_sqlite(path, scope),
        SummaryStore::Postgres(url) => report::open_postgres(url, scope).await,
    }
    .map_err(|e: ReportError| e.to_string())?;
    std::fs::write(file, json(&r) + "\n").map_err(|e| format!("{}: {e}", file.display()))
}

/// A store URL with its password removed, for messages.
fn redacted(store: &str) -> String {
    fanout::secrets::mask_url(store).into_owned()
}
