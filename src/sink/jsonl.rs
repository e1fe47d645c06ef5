//! JSON-lines store: one object per outcome, in completion order, with the SQLite column names.
//! Appends to a file or writes to stdout; flushed after every batch.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::{RunInfo, Store, StoreError};
use crate::outcome::Outcome;
use crate::stats::Summary;

/// Writes outcomes as JSON lines.
pub struct JsonlStore {
    name: String,
    out: BufWriter<Box<dyn Write + Send>>,
}

impl JsonlStore {
    /// Appends to `path`, creating it when missing.
    pub fn file(path: &Path) -> Result<JsonlStore, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(JsonlStore {
            name: path.display().to_string(),
            out: BufWriter::with_capacity(256 * 1024, Box::new(file)),
        })
    }

    /// Writes to standard output.
    pub fn stdout() -> JsonlStore {
        JsonlStore {
            name: "<stdout>".into(),
            out: BufWriter::with_capacity(256 * 1024, Box::new(std::io::stdout())),
        }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.name.clone(),
            source,
        }
    }
}

impl Store for JsonlStore {
    fn begin_run(&mut self, _run: &RunInfo) -> Result<(), StoreError> {
        Ok(())
    }

    fn write(&mut self, batch: &[Outcome]) -> Result<(), StoreError> {
        for o in batch {
            serde_json::to_writer(&mut self.out, &o.to_json()).map_err(|e| self.io(e.into()))?;
            self.out.write_all(b"\n").map_err(|e| self.io(e))?;
        }
        self.out.flush().map_err(|e| self.io(e))
    }

    fn end_run(&mut self, _summary: &Summary) -> Result<(), StoreError> {
        self.out.flush().map_err(|e| self.io(e))
    }
}
