//! The validated configuration of a run: [`RunConfig`], built field by field or with
//! [`RunConfig::builder`], and checked once by [`RunConfig::validate`], whose errors name the
//! field. Owns the rules for what a valid run is; knows nothing of flags (the CLI maps its flags
//! onto these fields and reports the flag).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{HeaderName, HeaderValue};

use crate::engine::EngineConfig;
use crate::engine::client::{BodyMode, ClientConfig, HttpVersion, check_ca_file};
use crate::engine::hosts::{HostLimits, Rate};
use crate::engine::resume::ResumePolicy;
use crate::engine::retry::{RetryOn, RetryPolicy};
use crate::sink::StoreConfig;
use crate::source::sql::SourceDb;
use crate::source::{Input, SourceConfig};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where requests come from (for [`run`](crate::run); ignored when a source is handed in).
    pub source: SourceConfig,
    /// Where outcomes go (none is allowed: outcomes are then only counted).
    pub stores: Vec<StoreConfig>,
    /// HTTP client settings.
    pub client: ClientConfig,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Whole-run limit: when it passes, admission stops and unfinished requests end as `deadline`.
    pub deadline: Option<Duration>,
    /// After shutdown, how long in-flight requests may finish before they are recorded `cancelled`.
    pub grace: Duration,
    /// Which recorded outcomes let a rerun skip a request.
    pub resume: ResumePolicy,
    /// Per-host limits, rate limits and adaptive concurrency.
    pub limits: HostLimits,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// The command line, recorded in the `runs` table.
    pub command: String,
    /// The process's open-file limit, if known: idle connections are kept within it.
    pub open_file_limit: Option<u64>,
    /// How long a store that can reconnect (PostgreSQL) may stay unreachable before a write
    /// fails and the run stops (default 60 s).
    pub store_timeout: Duration,
    /// Obey each origin's robots.txt (RFC 9309, `--robots`): it is fetched once per run before
    /// the origin's other requests, and requests it disallows end as `robots`, never fetched.
    pub robots: bool,
    /// The runtimes the requests run on ([`EngineConfig::shards`]); empty: the caller's.
    pub shards: Vec<tokio::runtime::Handle>,
}

impl Default for RunConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        RunConfig {
            source: SourceConfig::default(),
            stores: Vec::new(),
            client: engine.client,
            concurrency: engine.concurrency,
            deadline: None,
            grace: engine.grace,
            resume: ResumePolicy::default(),
            limits: engine.limits,
            retry: engine.retry,
            command: String::new(),
            open_file_limit: None,
            store_timeout: crate::sink::DEFAULT_STORE_TIMEOUT,
            robots: engine.robots,
            shards: engine.shards,
        }
    }
}

/// Largest `concurrency` (and `per_host`) accepted.
pub const MAX_CONCURRENCY: usize = 100_000;

/// A configuration that cannot run: the field (as the command line spells its flag, without
/// dashes, e.g. `connect-timeout`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The field, e.g. `timeout`, `per-host`, `template`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it is invalid.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl RunConfig {
    /// A builder, starting from the defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = fanout::RunConfig::builder()
    ///     .concurrency(200)
    ///     .per_host(8)
    ///     .timeout(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.concurrency, 200);
    ///
    /// let err = fanout::RunConfig::builder().timeout(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.field(), "timeout");
    /// ```
    pub fn builder() -> RunConfigBuilder {
        RunConfigBuilder {
            config: RunConfig::default(),
            error: None,
        }
    }

    /// Checks every field; the first invalid one is named in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |field, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(field, "must be greater than 0"))
            } else {
                Ok(())
            }
        };
        let count = |field, n: usize| {
            if n == 0 || n > MAX_CONCURRENCY {
                Err(ConfigError::new(
                    field,
                    format!("{n} is not in 1..={MAX_CONCURRENCY}"),
                ))
            } else {
                Ok(())
            }
        };
        count("concurrency", self.concurrency)?;
        if let Some(n) = self.limits.per_host {
            count("per-host", n)?;
        }
        if self.limits.burst == Some(0) {
            return Err(ConfigError::new("burst", "must be at least 1"));
        }
        for (field, rate) in [
            ("rate", self.limits.rate),
            ("per-host-rate", self.limits.per_host_rate),
        ] {
            if let Some(r) = rate
                && !(r.per_sec.is_finite() && r.per_sec > 0.0)
            {
                return Err(ConfigError::new(field, "must be more than 0 per second"));
            }
        }
        positive("timeout", self.client.timeout)?;
        positive("connect-timeout", self.client.connect_timeout)?;
        positive("speed-time", self.client.speed_time)?;
        if self.client.speed_limit == Some(0) {
            return Err(ConfigError::new(
                "speed-limit",
                "must be at least 1 byte per second (none turns it off)",
            ));
        }
        if let Some(d) = self.deadline {
            positive("deadline", d)?;
        }
        positive("store-timeout", self.store_timeout)?;
        if self.client.out_dir.is_some() && self.client.body == BodyMode::Store {
            return Err(ConfigError::new(
                "out-dir",
                "cannot be combined with --body store: bodies go to files, never whole into \
                 memory (use --body hash or --body discard)",
            ));
        }
        if self.client.max_head < crate::engine::client::MIN_HEAD {
            return Err(ConfigError::new(
                "max-head",
                format!("must be at least {} bytes", crate::engine::client::MIN_HEAD),
            ));
        }
        if self.client.max_body == 0 {
            return Err(ConfigError::new("max-body", "must be greater than 0"));
        }
        let r = &self.retry;
        if r.backoff_base.is_zero() || r.backoff_base > r.backoff_max {
            return Err(ConfigError::new(
                "backoff",
                "the first ceiling must be above 0 and at most the largest",
            ));
        }
        HeaderValue::from_str(&self.client.user_agent)
            .map_err(|_| ConfigError::new("user-agent", "is not a valid header value"))?;
        for path in &self.client.ca_files {
            check_ca_file(path).map_err(|e| ConfigError::new("cacert", e))?;
        }
        for path in &self.client.proxy.ca_files {
            check_ca_file(path).map_err(|e| ConfigError::new("proxy-cacert", e))?;
        }
        if let Some(t) = &self.source.template
            && !t.contains("{}")
        {
            return Err(ConfigError::new(
                "template",
                format!("'{t}' has no '{{}}' where each input value should go"),
            ));
        }
        self.validate_sql()?;
        if self
            .source
            .inputs
            .iter()
            .filter(|i| **i == Input::Stdin)
            .count()
            > 1
        {
            return Err(ConfigError::new(
                "inputs",
                "'-' (stdin) can be given only once",
            ));
        }
        if self
            .stores
            .iter()
            .filter(|s| **s == StoreConfig::JsonlStdout)
            .count()
            > 1
        {
            return Err(ConfigError::new("jsonl", "stdout can be given only once"));
        }
        Ok(())
    }

    /// A query source needs its database, and is the only input.
    fn validate_sql(&self) -> Result<(), ConfigError> {
        let s = &self.source;
        match (&s.from_sql, &s.source_db) {
            (None, None) => return Ok(()),
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "from-sql",
                    "required by --source-db: the query whose rows are the requests",
                ));
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "source-db",
                    "required by --from-sql: the database the query runs on",
                ));
            }
            (Some(q), Some(db)) => {
                if q.trim().is_empty() {
                    return Err(ConfigError::new("from-sql", "the query is empty"));
                }
                match db {
                    SourceDb::Postgres(url) => {
                        crate::pg::PgUrl::parse(url)
                            .map_err(|e| ConfigError::new("source-db", e))?;
                    }
                    // Outside WAL mode, the query's read lock keeps the store from writing the
                    // file (or from switching it to WAL): the run would stop "database is locked".
                    SourceDb::Sqlite(src) => {
                        let same =
                            |store: &PathBuf| match (src.canonicalize(), store.canonicalize()) {
                                (Ok(a), Ok(b)) => a == b,
                                _ => src == store,
                            };
                        if self
                            .stores
                            .iter()
                            .any(|s| matches!(s, StoreConfig::Sqlite(p) if same(p)))
                            && !crate::source::sql::is_wal(src)
                        {
                            return Err(ConfigError::new(
                                "source-db",
                                format!(
                                    "'{0}' is also the --db store and is not in WAL mode: run \
                                     `sqlite3 {0} 'PRAGMA journal_mode=WAL'` once, or keep the \
                                     targets in a file of their own",
                                    src.display()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if !s.inputs.is_empty() {
            return Err(ConfigError::new(
                "from-sql",
                "cannot be combined with INPUT files: requests come from the query or from inputs",
            ));
        }
        if s.template.is_some() {
            return Err(ConfigError::new(
                "template",
                "applies to input lines, not to --from-sql rows",
            ));
        }
        Ok(())
    }

    /// The engine's part of the configuration.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            client: self.client.clone(),
            concurrency: self.concurrency,
            grace: self.grace,
            limits: self.limits.clone(),
            retry: self.retry.clone(),
            open_file_limit: self.open_file_limit,
            robots: self.robots,
            hand_back_after: None,
            shards: self.shards.clone(),
        }
    }
}

/// Builds a [`RunConfig`] step by step; [`RunConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
pub struct RunConfigBuilder {
    config: RunConfig,
    /// The first invalid value given (a bad header), reported by `build`.
    error: Option<ConfigError>,
}

impl RunConfigBuilder {
    fn fail(mut self, e: ConfigError) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Reads requests from this file (`-` for stdin); may be given more than once.
    pub fn input(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.config.source.inputs.push(match path.to_str() {
            Some("-") => Input::Stdin,
            _ => Input::Path(path),
        });
        self
    }

    /// Each input line is a value put into `template` where its `{}` is.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.config.source.template = Some(template.into());
        self
    }

    /// Reads requests from the rows of `query` on `db` instead of from inputs.
    pub fn from_sql(mut self, query: impl Into<String>, db: SourceDb) -> Self {
        self.config.source.from_sql = Some(query.into());
        self.config.source.source_db = Some(db);
        self
    }

    /// The method of requests that do not give one.
    pub fn method(mut self, method: Method) -> Self {
        self.config.source.defaults.method = Some(method);
        self
    }

    /// A header sent with every request (a request's own headers win).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let n = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                return self.fail(ConfigError::new("header", format!("invalid name '{name}'")));
            }
        };
        let v = match HeaderValue::from_str(value) {
            Ok(v) => v,
            Err(_) => {
                return self.fail(ConfigError::new(
                    "header",
                    format!("invalid value for '{name}'"),
                ));
            }
        };
        self.config.source.defaults.headers.append(n, v);
        self
    }

    /// The body of requests that do not give one.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.config.source.defaults.body = Some(body.into());
        self
    }

    /// Records outcomes in this store too; may be given more than once.
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.config.stores.push(store);
        self
    }

    /// Requests in flight at most (default 64).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Requests in flight to one host (`host:port`) at most.
    pub fn per_host(mut self, n: usize) -> Self {
        self.config.limits.per_host = Some(n);
        self
    }

    /// Requests started per second overall.
    pub fn rate(mut self, per_sec: f64) -> Self {
        self.config.limits.rate = Some(Rate { per_sec });
        self
    }

    /// Requests started per second to one host.
    pub fn per_host_rate(mut self, per_sec: f64) -> Self {
        self.config.limits.per_host_rate = Some(Rate { per_sec });
        self
    }

    /// Requests a rate lets through at once (default: one second's worth).
    pub fn burst(mut self, n: u32) -> Self {
        self.config.limits.burst = Some(n);
        self
    }

    /// Learn each host's safe concurrency.
    pub fn adaptive(mut self, on: bool) -> Self {
        self.config.limits.adaptive = on;
        self
    }

    /// Obey each origin's robots.txt (see [`RunConfig::robots`]).
    pub fn robots(mut self, on: bool) -> Self {
        self.config.robots = on;
        self
    }

    /// Runs the requests on these runtimes, one shard each (see [`EngineConfig::shards`] and
    /// [`Shards`](crate::engine::Shards)); they must outlive the run.
    pub fn shards(mut self, handles: &[tokio::runtime::Handle]) -> Self {
        self.config.shards = handles.to_vec();
        self
    }

    /// Retries after the first attempt (default 2).
    pub fn retries(mut self, n: u32) -> Self {
        self.config.retry.retries = n;
        self
    }

    /// What is retried (default `429,502,503,504,connect,dns,timeout,reset`).
    pub fn retry_on(mut self, on: RetryOn) -> Self {
        self.config.retry.on = on;
        self
    }

    /// Exponential backoff with full jitter between `min` and `max` ceilings.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.retry.backoff_base = min;
        self.config.retry.backoff_max = max;
        self
    }

    /// One attempt's time limit, from sending to the last body byte (default 30 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.config.client.timeout = d;
        self
    }

    /// Give an attempt up as `timeout` once it receives fewer than `bytes_per_sec` body bytes a
    /// second over a whole `window` (curl's `--speed-limit` and `--speed-time`).
    pub fn speed_limit(mut self, bytes_per_sec: u64, window: Duration) -> Self {
        self.config.client.speed_limit = Some(bytes_per_sec);
        self.config.client.speed_time = window;
        self
    }

    /// Opening a TCP connection (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.client.connect_timeout = d;
        self
    }

    /// The whole run's time limit.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.config.deadline = Some(d);
        self
    }

    /// After a stop, time for in-flight requests to finish (default 2 s).
    pub fn grace(mut self, d: Duration) -> Self {
        self.config.grace = d;
        self
    }

    /// What is kept of each body (default: its SHA-256).
    pub fn body_mode(mut self, mode: BodyMode) -> Self {
        self.config.client.body = mode;
        self
    }

    /// Larger bodies (decoded) end as `body-too-large` (default 10 MiB).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.config.client.max_body = bytes;
        self
    }

    /// Speak only this HTTP version.
    pub fn http_version(mut self, v: HttpVersion) -> Self {
        self.config.client.http_version = v;
        self
    }

    /// Which recorded outcomes a rerun skips.
    pub fn resume(mut self, policy: ResumePolicy) -> Self {
        self.config.resume = policy;
        self
    }

    /// How long a reconnecting store may stay unreachable (default 60 s).
    pub fn store_timeout(mut self, d: Duration) -> Self {
        self.config.store_timeout = d;
        self
    }

    /// The command recorded in the `runs` table.
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.config.command = command.into();
        self
    }

    /// The HTTP client's settings, for what has no method here (proxy, `--resolve`, TLS).
    pub fn client(mut self, f: impl FnOnce(&mut ClientConfig)) -> Self {
        f(&mut self.config.client);
        self
    }

    /// The validated configuration, or the first invalid field.
    pub fn build(self) -> Result<RunConfig, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_invalid_field_is_named() {
        let b = RunConfig::builder;
        let field = |r: Result<RunConfig, ConfigError>| r.unwrap_err().field();
        assert_eq!(field(b().concurrency(0).build()), "concurrency");
        assert_eq!(field(b().per_host(0).build()), "per-host");
        assert_eq!(field(b().burst(0).build()), "burst");
        assert_eq!(field(b().rate(0.0).build()), "rate");
        assert_eq!(field(b().per_host_rate(f64::NAN).build()), "per-host-rate");
        assert_eq!(
            field(b().connect_timeout(Duration::ZERO).build()),
            "connect-timeout"
        );
        assert_eq!(field(b().deadline(Duration::ZERO).build()), "deadline");
        assert_eq!(
            field(b().speed_limit(0, Duration::from_secs(1)).build()),
            "speed-limit"
        );
        assert_eq!(
            field(b().speed_limit(1, Duration::ZERO).build()),
            "speed-time"
        );
        assert_eq!(
            field(b().store_timeout(Duration::ZERO).build()),
            "store-timeout"
        );
        assert_eq!(field(b().max_body(0).build()), "max-body");
        assert_eq!(
            field(
                b().backoff(Duration::from_secs(2), Duration::from_secs(1))
                    .build()
            ),
            "backoff"
        );
        assert_eq!(field(b().template("http://h/x").build()), "template");
        assert_eq!(field(b().input("-").input("-").build()), "inputs");
        let db = || SourceDb::parse("t.db");
        let sql = "SELECT url FROM t";
        assert_eq!(
            field(b().from_sql(sql, db()).input("x").build()),
            "from-sql"
        );
        assert_eq!(field(b().from_sql(" ", db()).build()), "from-sql");
        assert_eq!(
            field(b().from_sql(sql, db()).template("h/{}").build()),
            "template"
        );
        // A PostgreSQL source is checked like a store's URL.
        let pg = SourceDb::parse("postgres://u:secret@127.0.0.1/db?bogus=1");
        let e = b().from_sql(sql, pg).build().unwrap_err();
        assert_eq!(e.field(), "source-db");
        assert!(!e.to_string().contains("secret"), "{e}");
        let pg = SourceDb::parse("postgres://u@127.0.0.1/db");
        assert!(b().from_sql(sql, pg).build().is_ok());
        let store = StoreConfig::Sqlite("t.db".into());
        assert_eq!(
            field(b().from_sql(sql, db()).store(store).build()),
            "source-db"
        );
        let mut c = RunConfig::default();
        c.source.from_sql = Some(sql.into());
        assert_eq!(c.validate().unwrap_err().field(), "source-db");
        c.source.from_sql = None;
        c.source.source_db = Some(db());
        assert_eq!(c.validate().unwrap_err().field(), "from-sql");
        assert_eq!(field(b().header("bad name", "v").build()), "header");
        assert_eq!(field(b().header("X-A", "line\nbreak").build()), "header");
        let missing = PathBuf::from("/nonexistent/ca.pem");
        assert_eq!(
            field(b().client(|c| c.ca_files.push(missing)).build()),
            "cacert"
        );
    }

    #[test]
    fn a_valid_builder_sets_what_it_says() {
        let c = RunConfig::builder()
            .input("urls.txt")
            .input("-")
            .template("http://h/item/{}")
            .header("X-Key", "v")
            .store(StoreConfig::Sqlite("x.db".into()))
            .concurrency(10)
            .per_host(2)
            .rate(5.0)
            .retries(0)
            .build()
            .unwrap();
        assert_eq!(
            c.source.inputs,
            vec![Input::Path("urls.txt".into()), Input::Stdin]
        );
        assert_eq!(c.source.defaults.headers["x-key"], "v");
        assert_eq!(c.limits.per_host, Some(2));
        assert_eq!(c.engine().concurrency, 10);
        assert_eq!(c.retry.retries, 0);
    }
}
