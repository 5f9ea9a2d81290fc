//! Compiled string matchers: exact, prefix, suffix, whole-string regex, or
//! presence; case-insensitive on request for exact/prefix/suffix. Built once
//! per routing snapshot; matching never allocates.

use regex::Regex;
use skiff_api::istio::StringMatch;
use skiff_api::istio::check;
use skiff_api::istio::string_match::MatchKind;

#[derive(Debug, Clone)]
pub enum Matcher {
    Exact {
        value: Box<str>,
        ignore_case: bool,
    },
    Prefix {
        value: Box<str>,
        ignore_case: bool,
    },
    Suffix {
        value: Box<str>,
        ignore_case: bool,
    },
    /// Whole-string match (the pattern is anchored when compiled).
    Regex(Regex),
    /// Anything, as long as the value is present.
    Present,
}

impl Matcher {
    pub fn exact(v: &str) -> Matcher {
        Matcher::Exact {
            value: v.into(),
            ignore_case: false,
        }
    }

    pub fn prefix(v: &str) -> Matcher {
        Matcher::Prefix {
            value: v.into(),
            ignore_case: false,
        }
    }

    pub fn suffix(v: &str) -> Matcher {
        Matcher::Suffix {
            value: v.into(),
            ignore_case: false,
        }
    }

    /// Compile an Istio `StringMatch` (`{}` is presence). `ignore_case`
    /// applies to exact and prefix, as Envoy's `case_sensitive: false` does;
    /// a regex can use `(?i)` itself.
    pub fn from_api(m: &StringMatch, ignore_case: bool) -> Result<Matcher, String> {
        Ok(match m.kind() {
            MatchKind::Exact(v) => Matcher::Exact {
                value: v.into(),
                ignore_case,
            },
            MatchKind::Prefix(v) => Matcher::Prefix {
                value: v.into(),
                ignore_case,
            },
            MatchKind::Regex(r) => Matcher::Regex(check::full_match_regex(r)?),
            MatchKind::Any => Matcher::Present,
        })
    }

    /// Istio's `*`-syntax used by authorization policies: `*` presence,
    /// `*suffix`, `prefix*`, else exact.
    pub fn from_glob(v: &str, ignore_case: bool) -> Matcher {
        if v == "*" {
            Matcher::Present
        } else if let Some(s) = v.strip_prefix('*') {
            Matcher::Suffix {
                value: s.into(),
                ignore_case,
            }
        } else if let Some(p) = v.strip_suffix('*') {
            Matcher::Prefix {
                value: p.into(),
                ignore_case,
            }
        } else {
            Matcher::Exact {
                value: v.into(),
                ignore_case,
            }
        }
    }

    #[inline]
    pub fn matches(&self, v: &str) -> bool {
        match self {
            Matcher::Exact { value, ignore_case } => {
                if *ignore_case {
                    v.eq_ignore_ascii_case(value)
                } else {
                    v == &**value
                }
            }
            Matcher::Prefix { value, ignore_case } => {
                v.len() >= value.len()
                    && v.is_char_boundary(value.len())
                    && if *ignore_case {
                        v[..value.len()].eq_ignore_ascii_case(value)
                    } else {
                        v.starts_with(&**value)
                    }
            }
            Matcher::Suffix { value, ignore_case } => {
                v.len() >= value.len()
                    && v.is_char_boundary(v.len() - value.len())
                    && if *ignore_case {
                        v[v.len() - value.len()..].eq_ignore_ascii_case(value)
                    } else {
                        v.ends_with(&**value)
                    }
            }
            Matcher::Regex(re) => re.is_match(v),
            Matcher::Present => true,
        }
    }

    /// The prefix this matcher requires, if it is a prefix match.
    pub fn prefix_len(&self) -> Option<usize> {
        match self {
            Matcher::Prefix { value, .. } => Some(value.len()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(Matcher, &str, bool)] = &[
            (Matcher::exact("/a"), "/a", true),
            (Matcher::exact("/a"), "/A", false),
            (
                Matcher::Exact {
                    value: "/a".into(),
                    ignore_case: true,
                },
                "/A",
                true,
            ),
            (Matcher::prefix("/foo"), "/foobar", true),
            (Matcher::prefix("/foo"), "/fo", false),
            (Matcher::prefix(""), "", true),
            (
                Matcher::Prefix {
                    value: "/Api".into(),
                    ignore_case: true,
                },
                "/aPi/x",
                true,
            ),
            (Matcher::suffix(".jpg"), "/x.jpg", true),
            (Matcher::suffix(".jpg"), "/x.png", false),
            (Matcher::Present, "", true),
            (Matcher::from_glob("*", false), "anything", true),
            (Matcher::from_glob("/admin*", false), "/admin/x", true),
            (
                Matcher::from_glob("*.example.com", true),
                "A.EXAMPLE.COM",
                true,
            ),
            (Matcher::from_glob("GET", false), "get", false),
            // A prefix ending inside a multi-byte character never panics.
            (Matcher::prefix("é"), "e", false),
            (Matcher::suffix("é"), "xé", true),
        ];
        for (m, v, want) in cases {
            assert_eq!(m.matches(v), *want, "{m:?} on {v:?}");
        }
    }

    #[test]
    fn from_istio() {
        let re = Matcher::from_api(&StringMatch::regex("/v[0-9]+/.*"), false).unwrap();
        assert!(re.matches("/v2/items"));
        assert!(!re.matches("/x/v2/items"), "regex is a whole-string match");
        let p = Matcher::from_api(&StringMatch::prefix("/Reviews"), true).unwrap();
        assert!(p.matches("/reviews/1"));
        assert_eq!(p.prefix_len(), Some(8));
        assert!(matches!(
            Matcher::from_api(&StringMatch::default(), false).unwrap(),
            Matcher::Present
        ));
        assert!(Matcher::from_api(&StringMatch::regex("("), false).is_err());
    }
}
