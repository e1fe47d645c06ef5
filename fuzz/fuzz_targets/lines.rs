//! Input lines as `fanout fetch` reads them (a URL, a JSON request spec, a template value), through
//! `fanout::source::parse_line` and `parse_url`: no panic, and what is accepted is an http(s) URL
//! with a host.
#![no_main]

use fanout::request::Origin;
use fanout::source::{RequestDefaults, parse_line, parse_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader hands over only UTF-8 lines (anything else is invalid-input before this).
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Origin {
        input: "fuzz".into(),
        line: 1,
    };
    let d = RequestDefaults::default();
    for template in [None, Some("http://h.test/item/{}?q={}")] {
        if let Ok(Some(req)) = parse_line(line, &origin, template, &d) {
            assert!(matches!(req.url.scheme(), "http" | "https"), "{}", req.url);
            assert!(
                req.url.host_str().is_some_and(|h| !h.is_empty()),
                "{}",
                req.url
            );
        }
    }
    if let Ok(url) = parse_url(line) {
        assert!(matches!(url.scheme(), "http" | "https"));
    }
});
