//! Secrets kept out of everything fanout writes or prints: passwords in URLs (requests, proxies,
//! databases) and the values of credential headers (`Authorization`, `Cookie`,
//! `Proxy-Authorization`, and any named with `--secret-header`). Owns the masking rules only;
//! callers decide where they apply (stored URLs, `runs.command`, invalid input lines).

use std::borrow::Cow;

/// What a masked secret reads as.
pub const MASK: &str = "***";

/// Headers whose values are always secret.
pub const SECRET_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// `url` with a userinfo password replaced by [`MASK`] (`http://user:***@host/`); anything that is
/// not a URL with a password comes back as it is.
///
/// ```
/// use fanout::secrets::mask_url;
/// assert_eq!(mask_url("postgres://app:hunter2@db:5432/x"), "postgres://app:***@db:5432/x");
/// assert_eq!(mask_url("https://example.com/a"), "https://example.com/a");
/// assert_eq!(mask_url("not a url"), "not a url");
/// ```
pub fn mask_url(url: &str) -> Cow<'_, str> {
    // Cheap test first (a memchr): most URLs have no userinfo at all. Runs once per outcome.
    if url.find('@').is_none() {
        return Cow::Borrowed(url);
    }
    let Some((_, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Cow::Borrowed(url);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return Cow::Borrowed(url);
    };
    if password == MASK {
        return Cow::Borrowed(url);
    }
    let start = url.len() - rest.len();
    Cow::Owned(format!(
        "{}{user}:{MASK}@{}",
        &url[..start],
        &rest[userinfo.len() + 1..]
    ))
}

/// Whether a header's value is a secret (`extra` are the names given with `--secret-header`).
pub fn is_secret_header(name: &str, extra: &[String]) -> bool {
    SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s))
        || extra.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// A `Name: value` header argument with the value masked when it is a secret.
pub fn mask_header_arg<'a>(arg: &'a str, extra: &[String]) -> Cow<'a, str> {
    match arg.split_once(':') {
        Some((name, _)) if is_secret_header(name.trim(), extra) => {
            Cow::Owned(format!("{}: {MASK}", name.trim()))
        }
        _ => Cow::Borrowed(arg),
    }
}

/// A JSON request spec line with every header value and any URL password masked; other text with
/// its URL passwords masked. Used for invalid input lines, which are stored as written: any header
/// there may carry a credential, and which ones `--secret-header` names is not known to a source.
pub fn mask_spec_line(line: &str) -> Cow<'_, str> {
    if !line.trim_start().starts_with('{') {
        return mask_url_in_text(line);
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(line) else {
        return mask_url_in_text(line);
    };
    let mut changed = false;
    if let Some(headers) = v.get_mut("headers").and_then(|h| h.as_object_mut()) {
        for value in headers.values_mut() {
            *value = serde_json::Value::String(MASK.into());
            changed = true;
        }
    }
    if let Some(url) = v.get_mut("url")
        && let Some(u) = url.as_str()
        && let Cow::Owned(masked) = mask_url(u)
    {
        *url = serde_json::Value::String(masked);
        changed = true;
    }
    if changed {
        Cow::Owned(v.to_string())
    } else {
        Cow::Borrowed(line)
    }
}

/// Every `scheme://user:password@` in free text (an error message, a line, an argument) and every
/// `password=value` parameter with the password masked. A password may hold spaces, so the user
/// information of a URL may run past whitespace to its `@`.
pub fn mask_url_in_text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") && !text.to_ascii_lowercase().contains("password=") {
        return Cow::Borrowed(text);
    }
    let masked = mask_all(text);
    if masked == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(masked)
    }
}

fn mask_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment, or where the text around it resumes;
        // a password may hold spaces, so the user information may run past whitespace to an '@'.
        let stop = |c: char| "/?#'\"<>".contains(c);
        let narrow = tail
            .find(|c: char| stop(c) || c.is_whitespace())
            .unwrap_or(tail.len());
        let wide = tail.find(stop).unwrap_or(tail.len());
        let end = if tail[..narrow].contains('@') || !tail[..wide].contains('@') {
            narrow
        } else {
            wide
        };
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    mask_password_params(&out)
}

/// Replaces the value of every `password=` parameter (any case) with `***`.
fn mask_password_params(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(i) = lower[from..].find(KEY) {
        let value = from + i + KEY.len();
        out.push_str(&text[from..value]);
        let end = text[value..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || "'\"".contains(c))
            .map_or(text.len(), |e| value + e);
        if end > value {
            out.push_str("***");
        }
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

/// A command line for the `runs` table and messages: each argument shell-quoted by `quote`, URL
/// passwords masked, the values of secret headers (`-H`/`--header`) masked, and the values of
/// `--proxy`, `--db`, `--source-db` treated as URLs.
pub fn mask_command(
    args: impl IntoIterator<Item = String>,
    extra: &[String],
    quote: impl Fn(&str) -> String,
) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut header_next = false;
    for arg in args {
        let masked: Cow<str> = if header_next {
            header_next = false;
            mask_header_arg(&arg, extra)
        } else if arg == "-H" || arg == "--header" {
            header_next = true;
            Cow::Borrowed(arg.as_str())
        } else if let Some(h) = arg.strip_prefix("--header=") {
            Cow::Owned(format!("--header={}", mask_header_arg(h, extra)))
        } else if let Some(h) = arg.strip_prefix("-H").filter(|h| !h.is_empty()) {
            Cow::Owned(format!("-H{}", mask_header_arg(h, extra)))
        } else {
            mask_url_in_text(&arg)
        };
        out.push(quote(&masked));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_and_nothing_else() {
        assert_eq!(mask_url("http://u:p@h/x?a=b@c"), "http://u:***@h/x?a=b@c");
        assert_eq!(mask_url("http://u@h/"), "http://u@h/");
        assert_eq!(mask_url("http://h/x@y"), "http://h/x@y");
        assert_eq!(mask_url("socks5h://a:b:c@h:1"), "socks5h://a:***@h:1");
        assert_eq!(mask_url("http://u:***@h/"), "http://u:***@h/");
    }

    #[test]
    fn commands_mask_headers_urls_and_named_headers() {
        let args = [
            "fanout",
            "fetch",
            "-H",
            "Authorization: Bearer s1",
            "--header=cookie: s2",
            "-HX-Api-Key: s3",
            "--proxy",
            "http://p:s4@proxy:3128",
            "--db",
            "postgres://app:s5@db/x",
            "-H",
            "Accept: text/plain",
        ]
        .map(String::from);
        let cmd = mask_command(args, &["x-api-key".to_string()], |a| a.to_string());
        for s in ["s1", "s2", "s3", "s4", "s5"] {
            assert!(!cmd.contains(s), "{s} in {cmd}");
        }
        assert!(cmd.contains("Accept: text/plain"), "{cmd}");
        assert!(cmd.contains("postgres://app:***@db/x"), "{cmd}");
    }

    #[test]
    fn spec_lines_mask_secret_headers_and_url_passwords() {
        let line = r#"{"url": "http://u:pw@h/", "headers": {"Authorization": "t", "X-Ok": "v"}}"#;
        let m = mask_spec_line(line);
        assert!(
            !m.contains("pw") && !m.contains("\"t\"") && !m.contains("\"v\""),
            "{m}"
        );
        assert!(m.contains("X-Ok"), "{m}");
        assert_eq!(mask_spec_line("plain text"), "plain text");
        assert_eq!(
            mask_url_in_text("invalid URL 'http://u:pw@h:x/': bad port"),
            "invalid URL 'http://u:***@h:x/': bad port"
        );
    }
}
