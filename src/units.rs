//! Parsing of human-written quantities from the command line: durations (`250ms`, `5s`, `2m`) and
//! sizes (`10MiB`, `512k`). Pure functions; errors are plain strings meant for a usage message.

use std::time::Duration;

/// Parses a duration such as `250ms`, `5s`, `1m30s` or `2h`. A bare number means seconds, as in curl.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(fanout::units::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(fanout::units::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert_eq!(fanout::units::parse_duration("1.5"), Ok(Duration::from_millis(1500)));
/// assert!(fanout::units::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if (0.0..1e12).contains(&secs) {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("'{s}' is not a valid duration"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a valid duration ({e}); use forms like 250ms, 5s, 2m"))
}

/// Parses a size such as `10MiB`, `10MB`, `512k` or `4096` (bytes). `k`, `M`, `G` are binary
/// multiples, like curl's `--max-filesize`.
///
/// ```
/// assert_eq!(fanout::units::parse_size("10MiB"), Ok(10 * 1024 * 1024));
/// assert_eq!(fanout::units::parse_size("512k"), Ok(512 * 1024));
/// assert_eq!(fanout::units::parse_size("100"), Ok(100));
/// assert!(fanout::units::parse_size("lots").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a valid size; use forms like 4096, 512KiB, 10MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "'{s}': unknown size unit '{other}'; use B, KiB, MiB or GiB"
            ));
        }
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(bytes as u64)
}
