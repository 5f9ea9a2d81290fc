//! `config-gc`: how many non-active revisions a Configuration keeps, and for
//! how long (docs knative-api.md §11.6, serving pkg/gc/config.go).

use std::collections::BTreeMap;

use crate::go::{self, GoDuration};

pub const CONFIGMAP: &str = "config-gc";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    /// `None` = disabled.
    pub retain_since_create_time: Option<GoDuration>,
    pub retain_since_last_active_time: Option<GoDuration>,
    pub min_non_active_revisions: i64,
    /// `None` = disabled.
    pub max_non_active_revisions: Option<i64>,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            retain_since_create_time: Some(GoDuration::seconds(48 * 3600)),
            retain_since_last_active_time: Some(GoDuration::seconds(15 * 3600)),
            min_non_active_revisions: 20,
            max_non_active_revisions: Some(1000),
        }
    }
}

impl GcConfig {
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<GcConfig, String> {
        let mut c = GcConfig::default();
        let get = |k: &str| {
            data.get(k)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let (create, active, max) = (
            get("retain-since-create-time"),
            get("retain-since-last-active-time"),
            get("max-non-active-revisions"),
        );
        if let Some(raw) = data.get("min-non-active-revisions") {
            c.min_non_active_revisions = go::parse_int(raw, 64).map_err(|e| {
                format!("failed to parse data: failed to parse \"min-non-active-revisions\": {e}")
            })?;
        }
        for (key, value, target) in [
            (
                "retain-since-create-time",
                &create,
                &mut c.retain_since_create_time,
            ),
            (
                "retain-since-last-active-time",
                &active,
                &mut c.retain_since_last_active_time,
            ),
        ] {
            if value.is_empty() {
                continue;
            }
            if value.eq_ignore_ascii_case("disabled") {
                *target = None;
                continue;
            }
            let d = go::parse_duration(value).map_err(|e| format!("failed to parse {key}: {e}"))?;
            if d.0 < 0 {
                return Err(format!("failed to parse {key}: must be non-negative"));
            }
            *target = Some(d);
        }
        if !max.is_empty() {
            if max.eq_ignore_ascii_case("disabled") {
                c.max_non_active_revisions = None;
            } else {
                let v = go::parse_uint(&max)
                    .map_err(|e| format!("failed to parse max-non-active-revisions: {e}"))?;
                if v > i64::MAX as u64 {
                    return Err(format!(
                        "failed to parse max-non-active-revisions: value should be lower than {}",
                        i64::MAX
                    ));
                }
                c.max_non_active_revisions = Some(v as i64);
            }
        }
        if c.min_non_active_revisions < 0 {
            return Err(format!(
                "min-non-active-revisions must be non-negative, was: {}",
                c.min_non_active_revisions
            ));
        }
        if let Some(max) = c.max_non_active_revisions
            && c.min_non_active_revisions > max
        {
            return Err(format!(
                "min-non-active-revisions({}) must be <= max-non-active-revisions({max})",
                c.min_non_active_revisions
            ));
        }
        Ok(c)
    }

    /// Nothing is ever collected.
    pub fn all_disabled(&self) -> bool {
        self.max_non_active_revisions.is_none()
            && self.retain_since_create_time.is_none()
            && self.retain_since_last_active_time.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[super::super::Case] = &[
            (&[], Ok(())),
            (
                &[
                    ("retain-since-create-time", "disabled"),
                    ("max-non-active-revisions", "DISABLED"),
                ],
                Ok(()),
            ),
            (
                &[("retain-since-create-time", "2 days")],
                Err(
                    "failed to parse retain-since-create-time: time: unknown unit \" days\" in duration \"2 days\"",
                ),
            ),
            (
                &[("retain-since-last-active-time", "-1h")],
                Err("failed to parse retain-since-last-active-time: must be non-negative"),
            ),
            (
                &[("min-non-active-revisions", "-1")],
                Err("min-non-active-revisions must be non-negative, was: -1"),
            ),
            (
                &[("min-non-active-revisions", "x")],
                Err(
                    "failed to parse data: failed to parse \"min-non-active-revisions\": strconv.ParseInt: parsing \"x\": invalid syntax",
                ),
            ),
            (
                &[
                    ("min-non-active-revisions", "5"),
                    ("max-non-active-revisions", "3"),
                ],
                Err("min-non-active-revisions(5) must be <= max-non-active-revisions(3)"),
            ),
            (
                &[("max-non-active-revisions", "-3")],
                Err(
                    "failed to parse max-non-active-revisions: strconv.ParseUint: parsing \"-3\": invalid syntax",
                ),
            ),
        ];
        for (input, want) in cases {
            let data = input
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(
                GcConfig::from_configmap(&data).map(|_| ()),
                want.map_err(str::to_string),
                "{input:?}"
            );
        }
    }
}
