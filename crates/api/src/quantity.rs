//! Kubernetes resource quantities (`100m`, `128Mi`, `1e3`): syntax check with
//! apimachinery's error text. Skiff does not enforce resources, it only
//! refuses what Kubernetes would refuse.

const FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Check `s` as `resource.ParseQuantity` does.
pub fn parse(s: &str) -> Result<(), String> {
    let format = || FORMAT.to_string();
    if s.is_empty() {
        return Err(format());
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let num_len = body
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, suffix) = body.split_at(num_len);
    if num.is_empty() || !num.bytes().any(|b| b.is_ascii_digit()) || num.matches('.').count() > 1 {
        return Err(format());
    }
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || ((suffix.starts_with('e') || suffix.starts_with('E'))
        && crate::go::parse_int(&suffix[1..], 32).is_ok());
    if !suffix_ok {
        // The regular expression still describes the allowed characters.
        let chars_ok = suffix
            .bytes()
            .all(|b| b"eEinumkKMGTP+-0123456789".contains(&b));
        return Err(if chars_ok {
            "unable to parse quantity's suffix".to_string()
        } else {
            format()
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantities() {
        for ok in ["100m", "128Mi", "1", "0.5", "1e3", "2Gi", "+1", ".5"] {
            assert!(super::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "abc", "1Zi", "1.2.3", "--1", "1 Mi"] {
            assert!(super::parse(bad).is_err(), "{bad}");
        }
    }
}
