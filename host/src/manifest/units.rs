//! Values with units that several sections share: byte sizes and durations.

use std::time::Duration;

/// The longest `timeout` (or trigger backoff) the manifest accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parse a byte size such as `64MiB`, `512KiB`, `1GiB`, `1000000` or `10MB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let expected =
        || format!("invalid size `{text}`: expected a number with an optional unit B, KiB, MiB, GiB, KB, MB or GB");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(expected()),
    };
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)).ok_or_else(expected)
}

/// A byte size written as text (`"64MiB"`).
pub(super) struct ByteSize(pub(super) u64);
deserialize_from_str!(ByteSize, |t: &str| parse_bytes(t).map(ByteSize));

/// A duration written as text (`"10s"`), more than zero and at most [`MAX_TIMEOUT`].
pub(super) struct Timeout(pub(super) Duration);
deserialize_from_str!(Timeout, |t: &str| humantime::parse_duration(t)
    .map_err(|e| format!("invalid duration `{t}`: {e} (expected e.g. `500ms`, `10s`, `2m`)"))
    .and_then(|d| match d {
        d if d.is_zero() => Err(format!("invalid duration `{t}`: must be more than zero")),
        d if d > MAX_TIMEOUT => Err(format!("invalid duration `{t}`: at most 24h")),
        d => Ok(Timeout(d)),
    }));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("10 KB"), Ok(10_000));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert!(
            parse_bytes("MiB").is_err() && parse_bytes("1 parsec").is_err() && parse_bytes("99999999999GiB").is_err()
        );
    }
}
