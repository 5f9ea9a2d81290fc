//! Durations as Istio reads them: Go's `time.ParseDuration` syntax (`10s`,
//! `1.5s`, `300ms`, `1h30m`), which is what Istio's JSON unmarshalling of
//! `google.protobuf.Duration` accepts, plus Istio's rule that configured
//! durations be at least 1 ms and whole milliseconds.

use std::time::Duration;

use crate::go;

/// Parse a Go duration (`crate::go::parse_duration`). Negative durations
/// are rejected: no Istio field takes one. Errors read like Go's.
pub fn parse(s: &str) -> Result<Duration, String> {
    let d = go::parse_duration(s)?;
    if d.0 < 0 {
        return Err(format!("negative duration {s:?} is not allowed"));
    }
    Ok(d.to_std())
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
    go::format_duration(go::GoDuration::from_std(d).0)
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
