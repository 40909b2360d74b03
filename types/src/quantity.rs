//! Human-readable quantities, as people write them on command lines and in job specs:
//! CPUs (`0.5`), byte sizes (`64MiB`) and durations (`10s`).

use std::time::Duration;

/// The most CPUs any value may name: a million cores.
const MAX_CPUS: f64 = 1_000_000.0;

/// Fractional CPUs to milli-CPUs (`0.5` is 500), zero allowed (a quota limit of `cpus=0`
/// allows none).
///
/// # Errors
///
/// Not a number, out of range, or below 0.001 yet above zero.
pub fn parse_cpus_milli(s: &str) -> Result<u64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?} (expected e.g. 0.5 or 2)"))?;
    if !(0.0..=MAX_CPUS).contains(&value) {
        return Err(format!(
            "invalid CPU count {s:?} (must be from 0 to {MAX_CPUS})"
        ));
    }
    let milli = (value * 1000.0).round();
    if value > 0.0 && milli < 1.0 {
        return Err(format!("CPU count {s:?} is below 0.001"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked range"
    )]
    Ok(milli as u64)
}

/// A byte size: `512MiB`, `2GiB`, `64MB`, `1024` (bytes), `10k`.
///
/// # Errors
///
/// Not a number, an unknown unit, or out of range.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. 64MiB, 2GiB or 1048576)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {s:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
            ));
        }
    };
    #[expect(clippy::cast_precision_loss, reason = "sizes are far below 2^52")]
    let total = value * factor as f64;
    if !total.is_finite() || !(0.0..=1e18).contains(&total) {
        return Err(format!("size {s:?} is out of range"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked range"
    )]
    Ok(total.round() as u64)
}

/// A duration: `10s`, `500ms`, `2m`, `1h`, or plain seconds.
///
/// # Errors
///
/// Not a number, an unknown unit, or out of range.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?} (use ms, s, m, h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_cpus_milli("0.5"), Ok(500));
        assert_eq!(parse_cpus_milli("0"), Ok(0));
        assert!(parse_cpus_milli("0.0001").is_err());
        assert_eq!(parse_bytes("32MiB"), Ok(32 << 20));
        assert!(parse_bytes("1e30").is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
    }
}
