//! kubectl-style tables: upper-case headers, columns padded to their widest
//! cell plus three spaces (Go's tabwriter as kubectl configures it).

pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < widths.len() {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            } else {
                l.push_str(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// kubectl's age of a timestamp (`HumanDuration`): `45s`, `3m10s`, `2h5m`, `3d`.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(t) = timestamp.and_then(skiff_api::meta::parse_timestamp) else {
        return "<unknown>".to_string();
    };
    let secs = match std::time::SystemTime::now().duration_since(t) {
        Ok(d) => d.as_secs() as i64,
        Err(e) if e.duration().as_secs() <= 1 => 0,
        Err(_) => return "<invalid>".to_string(),
    };
    human_duration(secs)
}

pub fn human_duration(secs: i64) -> String {
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_like_kubectl() {
        let h = super::human_duration;
        assert_eq!(h(5), "5s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(190), "3m10s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(3 * 3600 + 300), "3h5m");
        assert_eq!(h(30 * 3600), "30h");
        assert_eq!(h(3 * 86400), "3d");
    }

    #[test]
    fn columns_pad_by_three() {
        let t = super::render(
            &["NAME", "READY"],
            &[
                vec!["hello".into(), "True".into()],
                vec!["a".into(), String::new()],
            ],
        );
        assert_eq!(t, "NAME    READY\nhello   True\na\n");
    }
}
