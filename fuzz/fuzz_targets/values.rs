//! Flag values and a response header that fanout parses: durations, sizes, rates, `--retry-on`
//! lists and `Retry-After`. No panic, whatever the text.
#![no_main]

use fanout::engine::client::parse_retry_after;
use fanout::engine::hosts::Rate;
use fanout::engine::retry::RetryOn;
use fanout::units::{parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration(s);
    let _ = parse_size(s);
    let _ = Rate::parse(s);
    let _ = RetryOn::parse(s);
    let _ = parse_retry_after(s);
});
