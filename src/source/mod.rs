//! Sources: lazy readers that turn input lines into [`Request`]s. A line is a URL, a JSON request
//! spec, or (with a template) a value to put into a URL. Reads one line at a time, so memory does not
//! depend on input size. Owns input files and stdin; never touches the network or stores. The rows
//! of a SQL query are the other kind of input ([`sql`]); any stream of requests or of
//! [`SourceItem`]s can be a source too.

pub mod sql;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use url::Url;

use crate::outcome::{ErrorKind, Outcome};
use crate::request::{Origin, Request, default_key};
use crate::stats::Stats;

/// Longest input line accepted; longer lines become `invalid-input` without being held in memory.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// Characters left as they are when a template value is encoded: RFC 3986's unreserved set.
const TEMPLATE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One input named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file path.
    Path(PathBuf),
}

impl Input {
    /// `-` means stdin; anything else is a path.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(arg.into())
        }
    }

    fn name(&self) -> Arc<str> {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::Path(p) => p.display().to_string().into(),
        }
    }
}

/// Defaults applied to every request, like curl's `-X`, `-H` and `-d`; a spec's own fields win.
#[derive(Debug, Clone, Default)]
pub struct RequestDefaults {
    /// Method when a line does not give one (GET, or POST when there is a body).
    pub method: Option<Method>,
    /// Headers added to every request.
    pub headers: HeaderMap,
    /// Body when a line does not give one.
    pub body: Option<Bytes>,
}

/// How to read inputs.
#[derive(Debug, Clone, Default)]
pub struct SourceConfig {
    /// Inputs read in order; empty means stdin.
    pub inputs: Vec<Input>,
    /// A URL with `{}` where each line's (URL-encoded) value goes.
    pub template: Option<String>,
    /// Defaults for method, headers and body.
    pub defaults: RequestDefaults,
    /// A query whose rows are the requests (`--from-sql`), instead of `inputs`; see [`sql`].
    pub from_sql: Option<String>,
    /// The database `from_sql` runs on (`--source-db`).
    pub source_db: Option<sql::SourceDb>,
}

/// What a source yields for each meaningful line.
#[derive(Debug)]
pub enum SourceItem {
    /// A request to fetch. Allocated once where it is read and shared from then on: items pass
    /// through several queues and tasks, and a `Request` is ~300 bytes to copy at each step.
    Request(Arc<Request>),
    /// A line that could not become a request, already as its `invalid-input` outcome (boxed, as
    /// it is rare and large).
    Invalid(Box<Outcome>),
}

/// A bounded channel whose receiving end is a `Stream` of requests, to feed a run from another
/// task (a crawler's discovered links, rows read on a blocking thread). At most `capacity`
/// requests wait; a sender waits while the channel is full, so the run's pace reaches it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::StreamExt;
/// let (tx, mut requests) = fanout::source::channel(4);
/// tx.send(fanout::Request::get("http://127.0.0.1/a").unwrap()).await.unwrap();
/// drop(tx);
/// assert_eq!(requests.next().await.unwrap().url.path(), "/a");
/// assert!(requests.next().await.is_none());
/// # }
/// ```
pub fn channel(capacity: usize) -> (tokio::sync::mpsc::Sender<Request>, RequestStream) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, RequestStream(rx))
}

/// The receiving end of [`channel`]: ends when every sender is dropped.
#[derive(Debug)]
pub struct RequestStream(tokio::sync::mpsc::Receiver<Request>);

impl futures_util::Stream for RequestStream {
    type Item = Request;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Request>> {
        self.0.poll_recv(cx)
    }
}

/// An input that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read input {path}: {source}")]
pub struct OpenError {
    /// The path as given.
    pub path: String,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;

/// A lazy stream of requests over one or more inputs, or over an in-memory iterator.
pub struct Source {
    kind: Kind,
    template: Option<String>,
    defaults: RequestDefaults,
    /// The inputs' total size, when every input is a regular file.
    total_bytes: Option<u64>,
    /// Where the bytes read are counted, once the pipeline has given its counters.
    stats: Option<Arc<Stats>>,
}

enum Kind {
    Lines {
        /// Inputs not yet started, each already opened so unreadable files fail up front.
        pending: std::vec::IntoIter<(Arc<str>, Reader)>,
        current: Option<(Arc<str>, Reader)>,
        line_no: u64,
        line: LineBuf,
        /// The origin of the last URL read, to parse the next one against (lists repeat one).
        base: Box<UrlBase>,
    },
    Iter(Box<dyn Iterator<Item = Request> + Send>),
    Stream(std::pin::Pin<Box<dyn futures_util::Stream<Item = Request> + Send>>),
    Items(std::pin::Pin<Box<dyn futures_util::Stream<Item = SourceItem> + Send>>),
}

impl Source {
    /// Opens every input (so an unreadable one is reported before any request is made), or,
    /// with `from_sql`, runs the query up to its first row (see [`sql::open`]).
    pub async fn open(config: SourceConfig) -> Result<Source, OpenError> {
        if let Some(query) = &config.from_sql {
            let Some(db) = &config.source_db else {
                return Err(OpenError {
                    path: "--source-db".into(),
                    source: std::io::Error::other("--from-sql needs the database to run on"),
                });
            };
            return Ok(Source::from_items(
                sql::open(query, db, &config.defaults).await?,
            ));
        }
        let inputs = if config.inputs.is_empty() {
            vec![Input::Stdin]
        } else {
            config.inputs
        };
        let mut opened = Vec::with_capacity(inputs.len());
        let mut total_bytes = Some(0u64);
        for input in inputs {
            let name = input.name();
            let reader: Box<dyn AsyncRead + Send + Unpin> = match &input {
                Input::Stdin => {
                    total_bytes = None;
                    Box::new(tokio::io::stdin())
                }
                Input::Path(p) => {
                    let file = tokio::fs::File::open(p).await.map_err(|source| OpenError {
                        path: p.display().to_string(),
                        source,
                    })?;
                    let meta = file.metadata().await.ok();
                    // A FIFO or /dev/stdin has no size to measure progress against.
                    total_bytes = match &meta {
                        Some(m) if m.is_file() => total_bytes.map(|t| t + m.len()),
                        _ => None,
                    };
                    if meta.is_some_and(|m| m.is_dir()) {
                        return Err(OpenError {
                            path: p.display().to_string(),
                            source: std::io::Error::other("is a directory"),
                        });
                    }
                    Box::new(file)
                }
            };
            opened.push((name, BufReader::with_capacity(64 * 1024, reader)));
        }
        Ok(Source {
            kind: Kind::Lines {
                pending: opened.into_iter(),
                current: None,
                line_no: 0,
                line: LineBuf::default(),
                base: Box::default(),
            },
            template: config.template,
            defaults: config.defaults,
            total_bytes,
            stats: None,
        })
    }

    /// Counts the bytes read into `stats` from now on, and gives it the inputs' total size when
    /// every input is a regular file.
    pub(crate) fn count_into(&mut self, stats: &Arc<Stats>) {
        if let Some(total) = self.total_bytes {
            let _ = stats.input_total.set(total);
        }
        self.stats = Some(stats.clone());
    }

    /// A source over requests built in memory (used by `fanout bench`).
    pub fn from_requests(requests: impl Iterator<Item = Request> + Send + 'static) -> Source {
        Source {
            kind: Kind::Iter(Box::new(requests)),
            template: None,
            defaults: RequestDefaults::default(),
            total_bytes: None,
            stats: None,
        }
    }

    /// A source over any stream of requests (a program's own, a query's rows).
    pub fn from_stream(
        requests: impl futures_util::Stream<Item = Request> + Send + 'static,
    ) -> Source {
        Source {
            kind: Kind::Stream(Box::pin(requests)),
            template: None,
            defaults: RequestDefaults::default(),
            total_bytes: None,
            stats: None,
        }
    }

    /// A source over any stream of items: requests, and inputs that could not become one,
    /// already as their `invalid-input` outcomes (a query's rows, see [`sql::open`]).
    pub fn from_items(
        items: impl futures_util::Stream<Item = SourceItem> + Send + 'static,
    ) -> Source {
        Source {
            kind: Kind::Items(Box::pin(items)),
            template: None,
            defaults: RequestDefaults::default(),
            total_bytes: None,
            stats: None,
        }
    }

    /// The next request or invalid line; `None` when every input is exhausted. Cancel-safe.
    pub async fn next(&mut self) -> Option<SourceItem> {
        let item = self.next_item().await;
        if let (Some(_), Some(stats), Kind::Lines { .. }) = (&item, &self.stats, &self.kind) {
            stats
                .input_items
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        item
    }

    async fn next_item(&mut self) -> Option<SourceItem> {
        let (pending, current, line_no, line, base) = match &mut self.kind {
            Kind::Iter(it) => return it.next().map(|r| SourceItem::Request(Arc::new(r))),
            Kind::Stream(s) => {
                use futures_util::StreamExt;
                return s.next().await.map(|r| SourceItem::Request(Arc::new(r)));
            }
            Kind::Items(s) => {
                use futures_util::StreamExt;
                return s.next().await;
            }
            Kind::Lines {
                pending,
                current,
                line_no,
                line,
                base,
            } => (pending, current, line_no, line, base),
        };
        loop {
            if current.is_none() {
                *current = Some(pending.next()?);
                *line_no = 0;
            }
            let (name, reader) = current.as_mut().expect("set above");
            let origin = Origin {
                input: name.clone(),
                line: *line_no + 1,
            };
            match read_line(reader, line, self.stats.as_deref()).await {
                Ok(LineRead::Eof) => {
                    *current = None;
                    continue;
                }
                Ok(LineRead::TooLong) => {
                    *line_no += 1;
                    return Some(SourceItem::Invalid(Box::new(invalid(
                        &origin,
                        "",
                        &format!("line longer than {} bytes", MAX_LINE),
                    ))));
                }
                Ok(LineRead::Line) => *line_no += 1,
                Err(e) => {
                    // A read error mid-input: record it and move on to the next input.
                    *current = None;
                    line.done = true;
                    return Some(SourceItem::Invalid(Box::new(invalid(
                        &origin,
                        "",
                        &format!("read error: {e}"),
                    ))));
                }
            }
            // A UTF-8 byte-order mark (Windows editors write one) opens the input, not the line.
            let bytes = match (*line_no, line.buf.strip_prefix(b"\xEF\xBB\xBF")) {
                (1, Some(rest)) => rest,
                _ => &line.buf[..],
            };
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    let lossy = String::from_utf8_lossy(&line.buf).into_owned();
                    return Some(SourceItem::Invalid(Box::new(invalid(
                        &origin,
                        &lossy,
                        "line is not valid UTF-8",
                    ))));
                }
            };
            // (A byte search: `str::contains(char)` cost ~100 instructions per line.)
            if text.as_bytes().contains(&0) {
                // A URL parser would percent-encode it and send a request no one wrote.
                return Some(SourceItem::Invalid(Box::new(invalid(
                    &origin,
                    &text.trim().replace('\0', "\\0"),
                    "line contains a NUL byte",
                ))));
            }
            match parse_line_with(
                text,
                &origin,
                self.template.as_deref(),
                &self.defaults,
                base,
            ) {
                Ok(None) => continue,
                Ok(Some(req)) => return Some(SourceItem::Request(Arc::new(req))),
                Err(reason) => {
                    return Some(SourceItem::Invalid(Box::new(invalid(
                        &origin,
                        text.trim(),
                        &reason,
                    ))));
                }
            }
        }
    }
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// A line being assembled. Lives in the [`Source`] rather than in the read future, so a read that
/// is cancelled at its await point (shutdown, deadline) loses nothing and `next` is cancel-safe.
#[derive(Default)]
struct LineBuf {
    buf: Vec<u8>,
    /// The line so far is over [`MAX_LINE`]: its bytes are skipped, not kept.
    too_long: bool,
    /// Bytes of the current line have been seen (distinguishes an empty last line from EOF).
    any: bool,
    /// The previous line was handed out; clear before reading the next.
    done: bool,
}

/// Reads one line into `line.buf` (without the newline), never holding more than [`MAX_LINE`] bytes.
/// The bytes consumed are added to `stats` as they are consumed (so a cancelled read loses no
/// count): one atomic add per line, or per buffer for a line longer than the buffer.
async fn read_line(
    reader: &mut Reader,
    line: &mut LineBuf,
    stats: Option<&Stats>,
) -> std::io::Result<LineRead> {
    if line.done {
        *line = LineBuf {
            buf: std::mem::take(&mut line.buf),
            ..LineBuf::default()
        };
        line.buf.clear();
    }
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            line.done = true;
            return Ok(match (line.any, line.too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        line.any = true;
        let (take, found) = match memchr_newline(chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !line.too_long {
            if line.buf.len() + take > MAX_LINE {
                line.too_long = true;
                line.buf = Vec::new();
            } else {
                line.buf.extend_from_slice(&chunk[..take]);
            }
        }
        let consumed = if found { take + 1 } else { take };
        reader.consume(consumed);
        if let Some(stats) = stats {
            stats
                .input_bytes
                .fetch_add(consumed as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if found {
            line.done = true;
            return Ok(if line.too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn invalid(origin: &Origin, text: &str, reason: &str) -> Outcome {
    // Stored as written, less what may be a credential (header values, URL passwords).
    let text = crate::secrets::mask_spec_line(text);
    let reason = crate::secrets::mask_url_in_text(reason);
    let mut shown: String = text.chars().take(2000).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    Outcome::failed(
        format!("invalid:{origin}"),
        shown,
        String::new(),
        ErrorKind::InvalidInput,
        format!("{origin}: {reason}"),
    )
}

/// A request as given by a JSON line or a SQL row: every field but `url` optional.
/// [`RequestSpec::into_request`] is the one mapping from a spec to a [`Request`]: defaults,
/// method, headers, body, key and validation, shared by every source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Absolute http or https URL.
    pub url: String,
    /// HTTP method (any case); default GET, or POST with a body.
    pub method: Option<String>,
    /// Headers, added to (and replacing) the defaults' headers of the same name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: text as given; any other JSON value as its JSON text; null for none.
    pub body: Option<serde_json::Value>,
    /// The body as bytes (a SQL row's text or blob); when set, it is the body and `body` is
    /// not read. Never part of a JSON line.
    #[serde(skip)]
    pub body_bytes: Option<Bytes>,
    /// The key: a non-empty string or a number; default: a hash of method, URL and body.
    pub id: Option<serde_json::Value>,
}

impl RequestSpec {
    /// Applies `defaults` and checks every field; `Err(reason)` names what is wrong.
    ///
    /// ```
    /// use fanout::source::{RequestDefaults, RequestSpec};
    /// let spec = RequestSpec {
    ///     url: "https://example.com/a".into(),
    ///     method: Some("put".into()),
    ///     id: Some(17.into()),
    ///     ..RequestSpec::default()
    /// };
    /// let origin = fanout::request::Origin { input: "rows".into(), line: 3 };
    /// let req = spec.into_request(&RequestDefaults::default(), &origin).unwrap();
    /// assert_eq!((req.method.as_str(), req.key.as_str()), ("PUT", "17"));
    /// ```
    pub fn into_request(
        self,
        defaults: &RequestDefaults,
        origin: &Origin,
    ) -> Result<Request, String> {
        let mut method = defaults.method.clone();
        if let Some(m) = self.method {
            method = Some(
                Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("invalid method '{m}'"))?,
            );
        }
        let mut headers = defaults.headers.clone();
        for (name, value) in self.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name '{name}'"))?;
            let v = HeaderValue::from_str(&value)
                .map_err(|_| format!("invalid value for header '{name}'"))?;
            headers.insert(n, v);
        }
        let body = match self.body {
            _ if self.body_bytes.is_some() => self.body_bytes,
            None | Some(serde_json::Value::Null) => defaults.body.clone(),
            Some(serde_json::Value::String(s)) => Some(Bytes::from(s)),
            Some(other) => Some(Bytes::from(other.to_string())),
        };
        let id = match self.id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err("\"id\" must be a non-empty string or a number".into()),
        };
        build(
            &self.url,
            method,
            headers,
            body,
            id,
            origin,
            &mut UrlBase::default(),
        )
    }
}

/// The request for a URL text and what a line or spec gave, with its key.
fn build(
    url: &str,
    method: Option<Method>,
    headers: HeaderMap,
    body: Option<Bytes>,
    id: Option<String>,
    origin: &Origin,
    base: &mut UrlBase,
) -> Result<Request, String> {
    let url = base.parse(url)?;
    let body = body.unwrap_or_default();
    let method = method.unwrap_or(if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    });
    let key = id.unwrap_or_else(|| default_key(&method, url.as_str(), &body));
    Ok(Request {
        key,
        method,
        url,
        headers,
        body,
        origin: origin.clone(),
    })
}

/// Turns one line into a request. `Ok(None)` for blank lines and `#` comments; `Err(reason)` for a
/// line that cannot be a request.
///
/// ```
/// use fanout::request::Origin;
/// use fanout::source::{parse_line, RequestDefaults};
/// let origin = Origin { input: "urls.txt".into(), line: 1 };
/// let d = RequestDefaults::default();
/// let req = parse_line("https://example.com/a", &origin, None, &d).unwrap().unwrap();
/// assert_eq!(req.method, http::Method::GET);
/// assert!(parse_line("# comment", &origin, None, &d).unwrap().is_none());
/// assert!(parse_line("ftp://example.com/", &origin, None, &d).is_err());
/// let req = parse_line("a b", &origin, Some("http://h/item/{}"), &d).unwrap().unwrap();
/// assert_eq!(req.url.as_str(), "http://h/item/a%20b");
/// ```
pub fn parse_line(
    line: &str,
    origin: &Origin,
    template: Option<&str>,
    defaults: &RequestDefaults,
) -> Result<Option<Request>, String> {
    parse_line_with(line, origin, template, defaults, &mut UrlBase::default())
}

/// [`parse_line`], parsing a URL against the origin of the one before it where it has the same.
fn parse_line_with(
    line: &str,
    origin: &Origin,
    template: Option<&str>,
    defaults: &RequestDefaults,
    base: &mut UrlBase,
) -> Result<Option<Request>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut plain = |url: &str| {
        build(
            url,
            defaults.method.clone(),
            defaults.headers.clone(),
            defaults.body.clone(),
            None,
            origin,
            base,
        )
    };
    if let Some(t) = template {
        if matches!(line, "." | "..") {
            // URL parsing removes dot segments (even encoded), so the request would silently go
            // to another path than the template says.
            return Err(format!(
                "template value '{line}' is a dot segment, which URL normalization removes"
            ));
        }
        let url = t.replace(
            "{}",
            &utf8_percent_encode(line, TEMPLATE_ENCODE).to_string(),
        );
        plain(&url).map(Some)
    } else if line.starts_with('{') {
        let spec: RequestSpec =
            serde_json::from_str(line).map_err(|e| format!("invalid JSON request spec: {e}"))?;
        spec.into_request(defaults, origin).map(Some)
    } else {
        plain(line).map(Some)
    }
}

/// The scheme and authority of the last URL parsed (`http://127.0.0.1:8080`), with that URL.
/// A list's URLs mostly share one: the next URL with the same text before its path is parsed as
/// its path against this one, which gives the same URL without parsing the host again (host
/// parsing, IDNA and IPv4 included, was half of the `url` crate's work per line).
#[derive(Default)]
struct UrlBase {
    /// `scheme://authority`, as written.
    prefix: String,
    /// A URL parsed from text starting with `prefix`.
    url: Option<Url>,
    /// The path parsed against `url`, padded (see [`UrlBase::parse`]); kept for its capacity.
    padded: String,
}

impl UrlBase {
    /// [`parse_url`] of `text`; the same URL, sooner when `text` starts as the last one did.
    fn parse(&mut self, text: &str) -> Result<Url, String> {
        let Some(split) = authority_end(text) else {
            return parse_url(text);
        };
        let (prefix, path) = text.split_at(split);
        if let Some(base) = &self.url
            && self.prefix == prefix
        {
            // The parser sizes the URL it builds by the text it is given: the path alone, so
            // the URL grew twice on the way (two reallocations, ~1,100 instructions a line).
            // Padded with trailing spaces to the whole text's length, the room is there from
            // the start; URL parsing strips trailing spaces (WHATWG URL: leading and trailing C0
            // controls and spaces), so the URL is the same.
            self.padded.clear();
            self.padded.push_str(path);
            self.padded.extend(std::iter::repeat_n(' ', prefix.len()));
            if let Ok(url) = Url::options().base_url(Some(base)).parse(&self.padded) {
                return Ok(url);
            }
        }
        let url = parse_url(text)?;
        self.prefix.clear();
        self.prefix.push_str(prefix);
        self.url = Some(url.clone());
        Ok(url)
    }
}

/// Where the path of an `http://` or `https://` URL begins, when the rest of `text` parsed
/// against the URL's origin is certain to give what parsing all of it gives: the authority is not
/// empty and holds no `?`, `#` or `\`, the path starts with one `/` (`//` or `/\` would start
/// another authority), and there is no tab or line break anywhere (the parser drops them, which
/// could make `//` of `/\t/`).
fn authority_end(text: &str) -> Option<usize> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))?;
    let scheme = text.len() - rest.len();
    let slash = rest.find(['/', '?', '#', '\\'])?;
    let path = &rest.as_bytes()[slash..];
    // `http:///host/` has its host after the slashes.
    if slash == 0
        || path[0] != b'/'
        || matches!(path.get(1), Some(b'/' | b'\\'))
        || text.bytes().any(|b| matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return None;
    }
    Some(scheme + slash)
}

/// Parses an absolute http(s) URL with a host, with a reason when it is not one.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            format!("'{text}' is neither a URL nor a JSON request spec")
        }
        e => format!("invalid URL '{text}': {e}"),
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "unsupported scheme '{other}' in '{text}' (only http and https)"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL '{text}' has no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::{UrlBase, parse_url};

    /// URLs read one after another through one [`UrlBase`] are what parsing each alone gives,
    /// errors included: shared and changing origins, dot segments, encodings, backslashes, and
    /// texts whose path could start another authority.
    #[test]
    fn urls_parsed_against_the_last_origin_are_those_parsed_alone() {
        let texts = [
            "http://127.0.0.1:8080/item/1",
            "http://127.0.0.1:8080/item/2?q=1#f",
            "http://127.0.0.1:8080/a/../b/./c/%2e%2E/d",
            "http://127.0.0.1:8080/a\\b\\..\\c",
            "http://127.0.0.1:8080//other/x",
            "http://127.0.0.1:8080/\\other/x",
            "http://127.0.0.1:8080/\t/other/x",
            "http://127.0.0.1:8080/sp ace/ü/%zz?ä=ö",
            "http://127.0.0.1:8080/\u{1}",
            "http://127.0.0.1:80/default-port",
            "http://127.0.0.1:80/again",
            "http://user:pw@127.0.0.1:8080/a",
            "http://user:pw@127.0.0.1:8080/b",
            "https://127.0.0.1:8080/tls",
            "https://Bücher.EXAMPLE/a",
            "https://Bücher.EXAMPLE/b",
            "http:///host/a",
            "http:///other/b",
            "http://host?x/y",
            "http://host?x/z",
            "http://a b/c",
            "http://a b/d",
            "http://[::1]:9/v6",
            "http://[::1]:9/v6/again",
            "http://0x7f.1/hex",
            "http://0x7f.1/hex2",
            "HTTP://127.0.0.1:8080/upper",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/last",
        ];
        let mut base = UrlBase::default();
        for text in texts {
            let alone = parse_url(text);
            let read = base.parse(text);
            assert_eq!(
                read.as_ref().map(|u| u.as_str()),
                alone.as_ref().map(|u| u.as_str()),
                "{text:?}"
            );
            assert_eq!(read, alone, "{text:?}");
        }
        // The shared origin was reused, not parsed again each time.
        assert_eq!(base.prefix, "http://127.0.0.1:8080");
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// The same for any path of characters URL parsing treats specially, after a few
        /// origins in turn (each text read twice, so the second is parsed against the first).
        #[test]
        fn any_path_parsed_against_the_last_origin_is_the_path_parsed_alone(
            paths in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["/", "//", "/\\", "\\", "?", "#", "", "/..", "/\t/", "\t"]),
                    r#"[/\\.%?#@:\t a\x01é\[\]]{0,12}"#,
                )
                    .prop_map(|(start, rest)| format!("{start}{rest}")),
                1..8,
            ),
            origin in 0usize..4,
        ) {
            let origins = [
                "http://127.0.0.1:8080",
                "https://a.test",
                "http://user:pw@[::1]:80",
                "http://xn--bcher-kva.example:443",
            ];
            let mut base = UrlBase::default();
            for path in &paths {
                for _ in 0..2 {
                    let text = format!("{}{path}", origins[origin]);
                    let alone = parse_url(&text);
                    let read = base.parse(&text);
                    proptest::prop_assert_eq!(&read, &alone, "{:?}", text);
                }
            }
        }
    }
}
