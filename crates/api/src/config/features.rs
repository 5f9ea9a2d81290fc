//! `config-features`: feature flags that widen what a revision may contain
//! (docs knative-api.md §11.2). Unknown values leave a flag at its default,
//! as Knative does; parsing never fails.

use std::collections::BTreeMap;

pub const CONFIGMAP: &str = "config-features";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Enabled,
    Allowed,
    Disabled,
    /// Only for `secure-pod-defaults`.
    AllowRootBounded,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Enabled => "Enabled",
            Flag::Allowed => "Allowed",
            Flag::Disabled => "Disabled",
            Flag::AllowRootBounded => "AllowRootBounded",
        }
    }
}

pub const MULTI_CONTAINER: &str = "multi-container";
pub const MULTI_CONTAINER_PROBING: &str = "multi-container-probing";
pub const SECURE_POD_DEFAULTS: &str = "secure-pod-defaults";
pub const TAG_HEADER_BASED_ROUTING: &str = "tag-header-based-routing";
pub const AUTODETECT_HTTP2: &str = "autodetect-http2";
pub const ADD_CAPABILITIES: &str = "kubernetes.containerspec-addcapabilities";
pub const FIELD_REF: &str = "kubernetes.podspec-fieldref";
pub const INIT_CONTAINERS: &str = "kubernetes.podspec-init-containers";
pub const SECURITY_CONTEXT: &str = "kubernetes.podspec-securitycontext";
pub const EMPTY_DIR: &str = "kubernetes.podspec-volumes-emptydir";
pub const HOST_PATH: &str = "kubernetes.podspec-volumes-hostpath";
pub const CSI: &str = "kubernetes.podspec-volumes-csi";
pub const EPHEMERAL: &str = "kubernetes.podspec-volumes-ephemeral";
pub const IMAGE_VOLUMES: &str = "kubernetes.podspec-volumes-image";
pub const MOUNT_PROPAGATION: &str = "kubernetes.podspec-volumes-mount-propagation";
pub const PVC: &str = "kubernetes.podspec-persistent-volume-claim";
pub const PV_WRITE: &str = "kubernetes.podspec-persistent-volume-write";

/// Every flag with its default.
const FLAGS: &[(&str, Flag)] = &[
    (AUTODETECT_HTTP2, Flag::Disabled),
    (PV_WRITE, Flag::Disabled),
    (MULTI_CONTAINER, Flag::Enabled),
    (MULTI_CONTAINER_PROBING, Flag::Disabled),
    ("queueproxy.mount-podinfo", Flag::Disabled),
    ("queueproxy.resource-defaults", Flag::Disabled),
    (SECURE_POD_DEFAULTS, Flag::Disabled),
    (TAG_HEADER_BASED_ROUTING, Flag::Disabled),
    (ADD_CAPABILITIES, Flag::Disabled),
    ("kubernetes.podspec-affinity", Flag::Disabled),
    ("kubernetes.podspec-dnsconfig", Flag::Disabled),
    ("kubernetes.podspec-dnspolicy", Flag::Disabled),
    (EMPTY_DIR, Flag::Enabled),
    (FIELD_REF, Flag::Disabled),
    ("kubernetes.podspec-hostaliases", Flag::Disabled),
    ("kubernetes.podspec-hostipc", Flag::Disabled),
    ("kubernetes.podspec-hostnetwork", Flag::Disabled),
    ("kubernetes.podspec-hostpid", Flag::Disabled),
    (HOST_PATH, Flag::Disabled),
    (CSI, Flag::Disabled),
    (EPHEMERAL, Flag::Disabled),
    (IMAGE_VOLUMES, Flag::Disabled),
    (INIT_CONTAINERS, Flag::Disabled),
    (MOUNT_PROPAGATION, Flag::Disabled),
    ("kubernetes.podspec-nodeselector", Flag::Disabled),
    (PVC, Flag::Disabled),
    ("kubernetes.podspec-priorityclassname", Flag::Disabled),
    ("kubernetes.podspec-runtimeclassname", Flag::Disabled),
    ("kubernetes.podspec-schedulername", Flag::Disabled),
    (SECURITY_CONTEXT, Flag::Disabled),
    ("kubernetes.podspec-shareprocessnamespace", Flag::Disabled),
    ("kubernetes.podspec-tolerations", Flag::Disabled),
    (
        "kubernetes.podspec-topologyspreadconstraints",
        Flag::Disabled,
    ),
];

/// PodSpec fields gated by a `kubernetes.podspec-*` flag (JSON name, flag).
pub const GATED_POD_FIELDS: &[(&str, &str)] = &[
    ("affinity", "kubernetes.podspec-affinity"),
    (
        "topologySpreadConstraints",
        "kubernetes.podspec-topologyspreadconstraints",
    ),
    ("hostAliases", "kubernetes.podspec-hostaliases"),
    ("nodeSelector", "kubernetes.podspec-nodeselector"),
    ("runtimeClassName", "kubernetes.podspec-runtimeclassname"),
    ("tolerations", "kubernetes.podspec-tolerations"),
    (
        "shareProcessNamespace",
        "kubernetes.podspec-shareprocessnamespace",
    ),
    ("priorityClassName", "kubernetes.podspec-priorityclassname"),
    ("schedulerName", "kubernetes.podspec-schedulername"),
    ("initContainers", INIT_CONTAINERS),
    ("dnsPolicy", "kubernetes.podspec-dnspolicy"),
    ("dnsConfig", "kubernetes.podspec-dnsconfig"),
    ("hostIPC", "kubernetes.podspec-hostipc"),
    ("hostPID", "kubernetes.podspec-hostpid"),
    ("hostNetwork", "kubernetes.podspec-hostnetwork"),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    flags: BTreeMap<&'static str, Flag>,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            flags: FLAGS.iter().copied().collect(),
        }
    }
}

impl Features {
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<Features, String> {
        let mut f = Features::default();
        for (key, _) in FLAGS {
            let Some(raw) = data.get(*key) else { continue };
            let choices: &[Flag] = if *key == SECURE_POD_DEFAULTS {
                &[Flag::Disabled, Flag::AllowRootBounded, Flag::Enabled]
            } else {
                &[Flag::Enabled, Flag::Allowed, Flag::Disabled]
            };
            if let Some(flag) = choices
                .iter()
                .find(|c| raw.eq_ignore_ascii_case(c.as_str()))
            {
                f.flags.insert(key, *flag);
            }
        }
        Ok(f)
    }

    pub fn flag(&self, key: &str) -> Flag {
        self.flags.get(key).copied().unwrap_or(Flag::Disabled)
    }

    pub fn enabled(&self, key: &str) -> bool {
        self.flag(key) == Flag::Enabled
    }

    pub fn disabled(&self, key: &str) -> bool {
        self.flag(key) == Flag::Disabled
    }

    /// `secure-pod-defaults` is Enabled or AllowRootBounded.
    pub fn secure_pod_defaults(&self) -> bool {
        matches!(
            self.flag(SECURE_POD_DEFAULTS),
            Flag::Enabled | Flag::AllowRootBounded
        )
    }

    #[cfg(test)]
    pub fn with(mut self, key: &'static str, flag: Flag) -> Features {
        self.flags.insert(key, flag);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_case_insensitively_and_ignore_junk() {
        let data = BTreeMap::from([
            (MULTI_CONTAINER.to_string(), "disabled".to_string()),
            (INIT_CONTAINERS.to_string(), "ENABLED".to_string()),
            (FIELD_REF.to_string(), "maybe".to_string()),
            (
                SECURE_POD_DEFAULTS.to_string(),
                "allowrootbounded".to_string(),
            ),
        ]);
        let f = Features::from_configmap(&data).unwrap();
        assert_eq!(f.flag(MULTI_CONTAINER), Flag::Disabled);
        assert!(f.enabled(INIT_CONTAINERS));
        assert_eq!(f.flag(FIELD_REF), Flag::Disabled);
        assert!(f.secure_pod_defaults());
        assert!(Features::default().enabled(EMPTY_DIR));
    }
}
