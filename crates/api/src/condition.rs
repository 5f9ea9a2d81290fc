//! Knative status conditions and the "living" condition set: `Ready` is derived
//! from the dependent conditions (knative/pkg apis/condition_set.go semantics).

use serde::{Deserialize, Serialize};

use crate::meta;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub const READY: &str = "Ready";

/// Helpers over a `conditions` list with a fixed set of dependents of `Ready`.
pub struct Conditions<'a> {
    pub list: &'a mut Vec<Condition>,
    pub dependents: &'static [&'static str],
}

impl<'a> Conditions<'a> {
    pub fn new(list: &'a mut Vec<Condition>, dependents: &'static [&'static str]) -> Self {
        Conditions { list, dependents }
    }

    /// Start every dependent (and Ready) as Unknown if absent.
    pub fn initialize(&mut self) {
        for t in self.dependents.iter().chain(std::iter::once(&READY)) {
            if get(self.list, t).is_none() {
                set(self.list, t, ConditionStatus::Unknown, None, None);
            }
        }
    }

    pub fn mark_true(&mut self, type_: &str) {
        set(self.list, type_, ConditionStatus::True, None, None);
        self.recompute_ready();
    }

    pub fn mark_unknown(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        set(
            self.list,
            type_,
            ConditionStatus::Unknown,
            Some(reason),
            Some(message.into()),
        );
        self.recompute_ready();
    }

    pub fn mark_false(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        set(
            self.list,
            type_,
            ConditionStatus::False,
            Some(reason),
            Some(message.into()),
        );
        self.recompute_ready();
    }

    /// Ready is True iff all dependents are True; otherwise it copies the first
    /// False dependent, else the first Unknown one.
    fn recompute_ready(&mut self) {
        let mut unknown: Option<Condition> = None;
        for dep in self.dependents {
            match get(self.list, dep) {
                Some(c) if c.status == ConditionStatus::True => {}
                Some(c) if c.status == ConditionStatus::False => {
                    let (r, m) = (c.reason.clone(), c.message.clone());
                    set(self.list, READY, ConditionStatus::False, r.as_deref(), m);
                    return;
                }
                Some(c) => {
                    if unknown.is_none() {
                        unknown = Some(c.clone());
                    }
                }
                None => {
                    if unknown.is_none() {
                        unknown = Some(Condition {
                            type_: dep.to_string(),
                            status: ConditionStatus::Unknown,
                            severity: None,
                            last_transition_time: None,
                            reason: None,
                            message: None,
                        });
                    }
                }
            }
        }
        match unknown {
            Some(c) => set(
                self.list,
                READY,
                ConditionStatus::Unknown,
                c.reason.as_deref(),
                c.message,
            ),
            None => set(self.list, READY, ConditionStatus::True, None, None),
        }
    }
}

pub fn get<'c>(list: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    list.iter().find(|c| c.type_ == type_)
}

pub fn is_true(list: &[Condition], type_: &str) -> bool {
    get(list, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

pub fn is_false(list: &[Condition], type_: &str) -> bool {
    get(list, type_).is_some_and(|c| c.status == ConditionStatus::False)
}

/// Sets a condition; `lastTransitionTime` only moves when status, reason or
/// message change, so status writes are idempotent. Conditions stay sorted by
/// type (Knative sorts them the same way).
pub fn set(
    list: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: Option<&str>,
    message: Option<String>,
) {
    let reason = reason.filter(|r| !r.is_empty()).map(str::to_string);
    let message = message.filter(|m| !m.is_empty());
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status && c.reason == reason && c.message == message {
            return;
        }
        c.status = status;
        c.reason = reason;
        c.message = message;
        c.last_transition_time = Some(meta::now());
        return;
    }
    list.push(Condition {
        type_: type_.to_string(),
        status,
        severity: None,
        last_transition_time: Some(meta::now()),
        reason,
        message,
    });
    list.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPS: &[&str] = &["A", "B"];

    #[test]
    fn ready_follows_dependents() {
        let mut list = Vec::new();
        let mut c = Conditions::new(&mut list, DEPS);
        c.initialize();
        c.mark_true("A");
        assert_eq!(get(c.list, READY).unwrap().status, ConditionStatus::Unknown);
        c.mark_false("B", "Broken", "b is broken");
        let ready = get(c.list, READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("Broken"));
        c.mark_true("B");
        assert!(is_true(c.list, READY));
    }

    #[test]
    fn unchanged_condition_keeps_transition_time() {
        let mut list = Vec::new();
        set(&mut list, "A", ConditionStatus::True, None, None);
        list[0].last_transition_time = Some("2020-01-01T00:00:00Z".into());
        set(&mut list, "A", ConditionStatus::True, None, None);
        assert_eq!(
            list[0].last_transition_time.as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
    }
}
