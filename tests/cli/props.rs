//! Properties of everything that parses user input, run with the suite: input lines, JSON specs,
//! templates, headers, durations, sizes, rates, `--retry-on` lists, status ranges, `Retry-After`
//! and URL masking never panic, and what they accept is what was meant.

use std::time::Duration;

use fanout::engine::client::parse_retry_after;
use fanout::engine::hosts::Rate;
use fanout::engine::resume::StatusRange;
use fanout::engine::retry::RetryOn;
use fanout::request::Origin;
use fanout::source::{RequestDefaults, parse_line};
use fanout::units::{parse_duration, parse_size};
use proptest::prelude::*;

fn origin() -> Origin {
    Origin {
        input: "p.txt".into(),
        line: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_line_parses_or_is_refused_with_a_reason(line in "\\PC{0,200}") {
        match parse_line(&line, &origin(), None, &RequestDefaults::default()) {
            Ok(Some(r)) => {
                prop_assert!(matches!(r.url.scheme(), "http" | "https"));
                prop_assert!(r.url.host_str().is_some_and(|h| !h.is_empty()));
                prop_assert!(!r.key.is_empty());
            }
            Ok(None) => prop_assert!(line.trim().is_empty() || line.trim().starts_with('#')),
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn any_json_spec_parses_or_is_refused(
        url in prop_oneof![Just("http://h.test/a".to_string()), "\\PC{0,40}"],
        method in proptest::option::of("[A-Za-z]{0,8}|\\PC{0,8}"),
        header in proptest::option::of(("\\PC{0,12}", "\\PC{0,20}")),
        body in proptest::option::of("\\PC{0,30}"),
        id in proptest::option::of(prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,10}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::Bool(true)),
        ]),
    ) {
        let mut spec = serde_json::json!({ "url": url });
        if let Some(m) = method { spec["method"] = m.into(); }
        if let Some((n, v)) = header { spec["headers"] = serde_json::json!({ n: v }); }
        if let Some(b) = body { spec["body"] = b.into(); }
        if let Some(i) = id { spec["id"] = i; }
        let line = spec.to_string();
        if let Ok(Some(r)) = parse_line(&line, &origin(), None, &RequestDefaults::default()) {
            for (n, v) in &r.headers {
                prop_assert!(!n.as_str().is_empty());
                prop_assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
            }
        }
    }

    #[test]
    fn a_template_value_always_lands_encoded_in_the_url(value in "[^\\r\\n#]{1,40}") {
        prop_assume!(!value.trim().is_empty() && !value.trim().starts_with('#'));
        // "." and ".." are refused: URL normalization would remove them (found by this test).
        prop_assume!(!matches!(value.trim(), "." | ".."));
        let r = parse_line(&value, &origin(), Some("http://h.test/item/{}"), &RequestDefaults::default())
            .unwrap()
            .unwrap();
        let seg = r.url.path().strip_prefix("/item/").unwrap();
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8().unwrap();
        prop_assert_eq!(decoded, value.trim());
    }

    #[test]
    fn dot_segment_template_values_are_refused(dots in prop_oneof![Just("."), Just("..")]) {
        let r = parse_line(dots, &origin(), Some("http://h.test/item/{}"), &RequestDefaults::default());
        prop_assert!(r.unwrap_err().contains("dot segment"));
    }

    #[test]
    fn headers_from_the_builder_are_taken_or_refused(name in "\\PC{0,16}", value in "\\PC{0,32}") {
        match fanout::RunConfig::builder().header(&name, &value).build() {
            Ok(c) => prop_assert_eq!(c.source.defaults.headers.len(), 1),
            Err(e) => prop_assert_eq!(e.field(), "header"),
        }
    }

    #[test]
    fn durations_and_sizes_round_trip_and_never_panic(n in 0u64..1_000_000, junk in "\\PC{0,12}") {
        let _ = parse_duration(&junk);
        let _ = parse_size(&junk);
        prop_assert_eq!(parse_duration(&format!("{n}ms")).unwrap(), Duration::from_millis(n));
        prop_assert_eq!(parse_duration(&format!("{n}s")).unwrap(), Duration::from_secs(n));
        prop_assert_eq!(parse_duration(&n.to_string()).unwrap(), Duration::from_secs(n));
        prop_assert_eq!(parse_size(&n.to_string()).unwrap(), n);
        prop_assert_eq!(parse_size(&format!("{n}KiB")).unwrap(), n * 1024);
    }

    #[test]
    fn rates_lists_ranges_and_retry_after_never_panic(s in "\\PC{0,24}", n in 1u32..100_000) {
        let _ = Rate::parse(&s);
        let _ = RetryOn::parse(&s);
        let _ = StatusRange::parse(&s);
        let _ = parse_retry_after(&s);
        let r = Rate::parse(&format!("{n}/s")).unwrap();
        prop_assert!((r.per_sec - f64::from(n)).abs() < 1e-9);
        prop_assert_eq!(parse_retry_after(&n.to_string()), Some(Duration::from_secs(u64::from(n))));
    }

    #[test]
    fn masked_urls_never_keep_their_password(
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9]{6,16}",
        rest in "[a-z0-9./?=&-]{0,30}",
    ) {
        let url = format!("https://{user}:{password}@h.test/{rest}");
        let masked = fanout::secrets::mask_url(&url);
        let leaked = format!(":{password}@");
        let kept = format!("{user}:***@h.test");
        prop_assert!(!masked.contains(&leaked));
        prop_assert!(masked.contains(&kept));
    }
}
