//! `StringMatch`: exact, prefix or regex (RE2, whole string). An empty
//! `StringMatch` (`{}`) is meaningful in header matches: presence.

use serde::{Deserialize, Serialize};

use super::check;
use crate::field_error::FieldError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Which of the three a match uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
    /// None set: the value only has to be present.
    Any,
}

impl StringMatch {
    pub fn exact(s: &str) -> StringMatch {
        StringMatch {
            exact: Some(s.to_string()),
            ..Default::default()
        }
    }

    pub fn prefix(s: &str) -> StringMatch {
        StringMatch {
            prefix: Some(s.to_string()),
            ..Default::default()
        }
    }

    pub fn regex(s: &str) -> StringMatch {
        StringMatch {
            regex: Some(s.to_string()),
            ..Default::default()
        }
    }

    /// The match type; validation guarantees at most one is set (if several
    /// are, exact wins, then prefix, as protobuf's last-wins is not knowable
    /// after JSON decoding).
    pub fn kind(&self) -> MatchKind<'_> {
        if let Some(e) = &self.exact {
            MatchKind::Exact(e)
        } else if let Some(p) = &self.prefix {
            MatchKind::Prefix(p)
        } else if let Some(r) = &self.regex {
            MatchKind::Regex(r)
        } else {
            MatchKind::Any
        }
    }

    pub fn is_regex(&self) -> bool {
        matches!(self.kind(), MatchKind::Regex(_))
    }

    /// Exactly one of the oneof at most, a compilable regex.
    /// `require_one`: an empty match is an error (where presence means
    /// nothing, e.g. `uri`).
    pub fn validate(&self, require_one: bool) -> FieldError {
        let set: Vec<&str> = [
            ("exact", self.exact.is_some()),
            ("prefix", self.prefix.is_some()),
            ("regex", self.regex.is_some()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if set.len() > 1 {
            return FieldError::multiple_one_of(&set);
        }
        if set.is_empty() && require_one {
            return FieldError::missing_one_of(&["exact", "prefix", "regex"]);
        }
        if let Some(re) = &self.regex {
            return check::at(check::full_match_regex(re).map(|_| ()), "regex");
        }
        FieldError::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one() {
        let both = StringMatch {
            exact: Some("a".into()),
            prefix: Some("b".into()),
            regex: None,
        };
        assert_eq!(
            both.validate(false).to_string(),
            "expected exactly one, got both: exact, prefix"
        );
        assert_eq!(
            StringMatch::default().validate(true).to_string(),
            "expected exactly one, got neither: exact, prefix, regex"
        );
        assert!(StringMatch::default().validate(false).is_empty());
        let bad = StringMatch::regex("[").validate(false).to_string();
        assert!(bad.ends_with(": regex"), "{bad}");
    }
}
