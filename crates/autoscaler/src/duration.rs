//! Go's `time.ParseDuration`, which Knative uses for duration annotations
//! (`6s`, `1m30s`, `1.5h`, `300ms`, `0`).

use std::time::Duration;

/// Parse a Go duration. Negative durations parse (as Go does) and are
/// returned as `Err` with the magnitude: callers treat them as invalid.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        let v: f64 = num.parse().map_err(|_| bad())?;
        total += v * scale;
    }
    if !total.is_finite() || total > 9.2e9 {
        return Err(bad());
    }
    // Nanosecond precision, as Go keeps.
    let d = Duration::from_nanos((total * 1e9).round() as u64);
    if neg && !d.is_zero() {
        return Err(format!("negative duration {s:?}"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("6s"), Duration::from_secs(6));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("1h0m0s"), Duration::from_secs(3600));
        assert_eq!(ok("-0s"), Duration::ZERO);
        for bad in ["", "6", "s", "1.2.3s", "6 s", "6sec", "-1s", "1d", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
