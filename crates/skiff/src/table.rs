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

#[cfg(test)]
mod tests {
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
