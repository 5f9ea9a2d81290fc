//! Durations as Istio reads them: Go's `time.ParseDuration` syntax (`10s`,
//! `1.5s`, `300ms`, `1h30m`), which is what Istio's JSON unmarshalling of
//! `google.protobuf.Duration` accepts, plus Istio's rule that configured
//! durations be at least 1 ms and whole milliseconds.

use std::time::Duration;

/// Parse a Go duration. Negative durations are rejected: no Istio field takes
/// one. Errors read like Go's (`time: invalid duration "x"`).
pub fn parse(s: &str) -> Result<Duration, String> {
    let quoted = || format!("{s:?}");
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(format!("time: invalid duration {}", quoted()));
    }
    let mut total: u128 = 0; // nanoseconds
    while !rest.is_empty() {
        // Integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        rest = after;
        let mut frac_digits = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_digits = &r[..n];
            rest = &r[n..];
            if int_digits.is_empty() && frac_digits.is_empty() {
                return Err(format!("time: invalid duration {}", quoted()));
            }
        } else if int_digits.is_empty() {
            return Err(format!("time: invalid duration {}", quoted()));
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", quoted()));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {unit:?} in duration {}",
                    quoted()
                ));
            }
        };
        let overflow = || format!("time: invalid duration {}", quoted());
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(overflow)?;
        // Fractional part, truncated to nanoseconds as Go does.
        let mut place = scale;
        for d in frac_digits.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
    }
    if neg && total > 0 {
        return Err(format!("negative duration {s:?} is not allowed"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Istio's `ValidateDuration`: at least 1 ms and a whole number of
/// milliseconds.
pub fn validate(d: Duration) -> Result<(), String> {
    if d < Duration::from_millis(1) {
        return Err("duration must be greater than 1ms".to_string());
    }
    if !d.as_nanos().is_multiple_of(1_000_000) {
        return Err("only durations to ms precision are supported".to_string());
    }
    Ok(())
}

/// Parse and apply Istio's rule in one step.
pub fn parse_checked(s: &str) -> Result<Duration, String> {
    let d = parse(s)?;
    validate(d)?;
    Ok(d)
}

/// A duration as Go prints it (`1h2m3.5s`, `300ms`), for messages.
pub fn format(d: Duration) -> String {
    let n = d.as_nanos();
    if n == 0 {
        return "0s".to_string();
    }
    if n < 1_000 {
        return format!("{n}ns");
    }
    if n < 1_000_000 {
        return format!("{}µs", trim_frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{}ms", trim_frac(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&trim_frac(s * 1_000_000_000 + sub, 1_000_000_000));
    out.push('s');
    out
}

fn trim_frac(n: u128, unit: u128) -> String {
    let whole = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        let ok = [
            ("10s", Duration::from_secs(10)),
            ("0.5s", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("2m3s", Duration::from_secs(123)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("0", Duration::ZERO),
            ("+3s", Duration::from_secs(3)),
            ("-0s", Duration::ZERO),
        ];
        for (s, want) in ok {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn go_errors() {
        assert_eq!(parse(""), Err("time: invalid duration \"\"".into()));
        assert_eq!(
            parse("10"),
            Err("time: missing unit in duration \"10\"".into())
        );
        assert_eq!(
            parse("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
        assert_eq!(parse("s"), Err("time: invalid duration \"s\"".into()));
        assert_eq!(parse("."), Err("time: invalid duration \".\"".into()));
        assert!(parse("-1s").unwrap_err().contains("negative"));
        assert!(parse("99999999999999999999h").is_err());
        assert!(parse("1 s").is_err());
    }

    #[test]
    fn istio_rules() {
        assert_eq!(parse_checked("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(
            parse_checked("500us"),
            Err("duration must be greater than 1ms".into())
        );
        assert_eq!(
            parse_checked("1.5ms"),
            Err("only durations to ms precision are supported".into())
        );
        assert_eq!(
            parse_checked("0s"),
            Err("duration must be greater than 1ms".into())
        );
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(300)), "300ms");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(60)), "1m0s");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_durations_never_panic(s in "\\PC{0,24}") {
            let _ = parse_checked(&s);
        }

        #[test]
        fn formatted_durations_parse_back(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
