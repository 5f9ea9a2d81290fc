//! Go's value syntax, as Knative's messages print and parse it: `strconv`
//! parsing with its error text, `time.ParseDuration` and `Duration.String`,
//! and `%v` / `%f` of floats. Users compare Skiff's messages with Knative's,
//! so these follow Go to the character.

/// Go's `strconv.Quote` for the strings Knative quotes (`%q`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn syntax(func: &str, s: &str) -> String {
    format!("strconv.{func}: parsing {}: invalid syntax", quote(s))
}

fn range(func: &str, s: &str) -> String {
    format!("strconv.{func}: parsing {}: value out of range", quote(s))
}

/// `strconv.ParseInt(s, 10, bits)`.
pub fn parse_int(s: &str, bits: u32) -> Result<i64, String> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax("ParseInt", s));
    }
    let max: i128 = (1i128 << (bits - 1)) - 1;
    let mut v: i128 = 0;
    for b in digits.bytes() {
        v = v * 10 + i128::from(b - b'0');
        if v > max + 1 {
            return Err(range("ParseInt", s));
        }
    }
    let v = if neg { -v } else { v };
    if v > max || v < -max - 1 {
        return Err(range("ParseInt", s));
    }
    Ok(v as i64)
}

/// `strconv.ParseUint(s, 10, 64)`.
pub fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax("ParseUint", s));
    }
    s.parse::<u64>().map_err(|_| range("ParseUint", s))
}

/// `strconv.Atoi(s)` (64-bit).
pub fn atoi(s: &str) -> Result<i64, String> {
    parse_int(s, 64).map_err(|e| e.replace("strconv.ParseInt", "strconv.Atoi"))
}

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(syntax("ParseBool", s)),
    }
}

/// `strconv.ParseFloat(s, 64)` for decimal input (Go also takes hex floats,
/// which nobody writes in a ConfigMap).
pub fn parse_float(s: &str) -> Result<f64, String> {
    let body = s.trim_start_matches(['+', '-']);
    let lower = body.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    let plain = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && body.bytes().any(|b| b.is_ascii_digit());
    if s.len() - body.len() > 1 || (!special && !plain) {
        return Err(syntax("ParseFloat", s));
    }
    let v: f64 = s.parse().map_err(|_| syntax("ParseFloat", s))?;
    if v.is_infinite() && !special {
        return Err(range("ParseFloat", s));
    }
    Ok(v)
}

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A Go `time.Duration`: nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub i64);

impl GoDuration {
    pub const fn seconds(s: i64) -> GoDuration {
        GoDuration(s * NANOS_PER_SECOND)
    }

    /// True when a whole number of seconds (`d.Round(time.Second) == d`).
    pub fn is_whole_seconds(self) -> bool {
        self.0 % NANOS_PER_SECOND == 0
    }

    /// As a std duration (negative durations become zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.max(0) as u64)
    }

    pub fn from_std(d: std::time::Duration) -> GoDuration {
        GoDuration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// `time.ParseDuration`, with Go's error text.
pub fn parse_duration(orig: &str) -> Result<GoDuration, String> {
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next()
        && (c == '-' || c == '+')
    {
        neg = c == '-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(GoDuration(0));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes()[0];
        if !(b == b'.' || b.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut v: u128 = 0;
        for d in s[..int_len].bytes() {
            v = v * 10 + u128::from(d - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        let pre = int_len > 0;
        s = &s[int_len..];
        let mut frac: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.starts_with('.') {
            s = &s[1..];
            let frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
            post = frac_len > 0;
            let mut overflow = false;
            for d in s[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if frac > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                frac = frac * 10 + u128::from(d - b'0');
                scale *= 10.0;
            }
            s = &s[frac_len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|c| *c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let u = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u128 = match u {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(u),
                    quote(orig)
                ));
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u128;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok(GoDuration(-(total as i128) as i64));
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(GoDuration(total as i64))
}

/// `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn format_duration(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut out = String::new();
    if u < NANOS_PER_SECOND as u64 {
        let (prec, unit) = match u {
            0 => return "0s".to_string(),
            u if u < 1_000 => (0, "ns"),
            u if u < 1_000_000 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        let (frac, rest) = fmt_frac(u, prec);
        out.push_str(&rest.to_string());
        out.push_str(&frac);
        out.push_str(unit);
    } else {
        let (frac, secs) = fmt_frac(u, 9);
        u = secs;
        let s = format!("{}{frac}s", u % 60);
        u /= 60;
        if u > 0 {
            let m = format!("{}m", u % 60);
            u /= 60;
            if u > 0 {
                out.push_str(&format!("{u}h"));
            }
            out.push_str(&m);
        }
        out.push_str(&s);
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// The fraction of `v / 10^prec` as `.123` (trailing zeros and an empty
/// fraction dropped), and the integer part.
fn fmt_frac(v: u64, prec: u32) -> (String, u64) {
    let p = 10u64.pow(prec);
    let frac = v % p;
    if frac == 0 {
        return (String::new(), v / p);
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (format!(".{}", digits.trim_end_matches('0')), v / p)
}

/// `%v` (and `%g`) of a float64: the shortest representation, in exponent
/// form when the exponent is below -4 or at least 6 (`1e+06`), as Go prints.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits.
    let sci = format!("{:e}", f);
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("integer exponent");
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    // Go's shortest `%g` switches to exponent form outside [-4, 6).
    if !(-4..6).contains(&exp) {
        return go_exp(sign, &digits, exp);
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

fn go_exp(sign: &str, digits: &str, exp: i32) -> String {
    let mant = if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits.to_string()
    };
    let esign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{mant}e{esign}{:02}", exp.abs())
}

/// `%f`: six decimals.
pub fn format_float_f(f: f64) -> String {
    format!("{f:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_like_strconv() {
        assert_eq!(parse_int("42", 32), Ok(42));
        assert_eq!(parse_int("-7", 32), Ok(-7));
        assert_eq!(
            parse_int("abc", 64),
            Err("strconv.ParseInt: parsing \"abc\": invalid syntax".into())
        );
        assert_eq!(
            parse_int("3000000000", 32),
            Err("strconv.ParseInt: parsing \"3000000000\": value out of range".into())
        );
        assert_eq!(parse_int("2147483647", 32), Ok(2147483647));
        assert!(parse_int("", 64).is_err());
        assert!(parse_int("1.5", 64).is_err());
        assert_eq!(
            parse_bool("yes"),
            Err("strconv.ParseBool: parsing \"yes\": invalid syntax".into())
        );
        assert_eq!(parse_bool("T"), Ok(true));
    }

    #[test]
    fn floats_like_strconv() {
        assert_eq!(parse_float("0.95"), Ok(0.95));
        assert_eq!(parse_float("-1"), Ok(-1.0));
        assert_eq!(parse_float(".5"), Ok(0.5));
        assert_eq!(
            parse_float("x"),
            Err("strconv.ParseFloat: parsing \"x\": invalid syntax".into())
        );
        assert!(parse_float("1e400").unwrap_err().contains("out of range"));
        for (v, want) in [
            (0.95, "0.95"),
            (-55.0, "-55"),
            (1000.0, "1000"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.007, "0.007"),
            (1.5, "1.5"),
            (100.0, "100"),
        ] {
            assert_eq!(format_float(v), want, "{v}");
        }
        assert_eq!(format_float_f(-11.0), "-11.000000");
    }

    #[test]
    fn durations_like_go() {
        let d = |s: &str| parse_duration(s).map(|d| d.0);
        assert_eq!(d("60s"), Ok(60 * NANOS_PER_SECOND));
        assert_eq!(d("1h30m"), Ok(5400 * NANOS_PER_SECOND));
        assert_eq!(d("1.5s"), Ok(1_500_000_000));
        assert_eq!(d("-5s"), Ok(-5 * NANOS_PER_SECOND));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("300ms"), Ok(300_000_000));
        assert_eq!(d("x"), Err("time: invalid duration \"x\"".into()));
        assert_eq!(d("5"), Err("time: missing unit in duration \"5\"".into()));
        assert_eq!(
            d("5x"),
            Err("time: unknown unit \"x\" in duration \"5x\"".into())
        );
        assert_eq!(d(""), Err("time: invalid duration \"\"".into()));
        for (ns, want) in [
            (0, "0s"),
            (61_984_000_000, "1m1.984s"),
            (3601 * NANOS_PER_SECOND, "1h0m1s"),
            (3600 * NANOS_PER_SECOND, "1h0m0s"),
            (6 * NANOS_PER_SECOND, "6s"),
            (1_500_000, "1.5ms"),
            (1_500, "1.5\u{b5}s"),
            (-5 * NANOS_PER_SECOND, "-5s"),
            (1_200_000_000, "1.2s"),
        ] {
            assert_eq!(format_duration(ns), want);
        }
    }
}
