//! Cluster configuration carried by Knative's ConfigMaps (namespace
//! `knative-serving`), as typed settings with Knative's defaults, and the
//! checks Knative's ConfigMap webhook applies to them.

pub mod autoscaler;
pub mod defaults;
pub mod domain;
pub mod features;
pub mod gc;
pub mod network;

use std::collections::BTreeMap;

pub use autoscaler::AutoscalerConfig;
pub use defaults::DefaultsConfig;
pub use domain::DomainConfig;
pub use features::{Features, Flag};
pub use gc::GcConfig;
pub use network::NetworkConfig;

use crate::go;

/// Where Knative keeps its ConfigMaps.
pub const SYSTEM_NAMESPACE: &str = "knative-serving";
/// The key of the commented example every shipped ConfigMap carries.
pub const EXAMPLE_KEY: &str = "_example";
pub const EXAMPLE_CHECKSUM_ANNOTATION: &str = "knative.dev/example-checksum";

/// The ConfigMaps Skiff reads, in the order it parses them.
pub const CONFIGMAPS: &[&str] = &[
    defaults::CONFIGMAP,
    features::CONFIGMAP,
    autoscaler::CONFIGMAP,
    network::CONFIGMAP,
    domain::CONFIGMAP,
    gc::CONFIGMAP,
];

/// Every setting admission and the controller read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterConfig {
    pub defaults: DefaultsConfig,
    pub features: Features,
    pub autoscaler: AutoscalerConfig,
    pub network: NetworkConfig,
    pub domain: DomainConfig,
    pub gc: GcConfig,
}

/// A ConfigMap that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigMapError {
    pub name: String,
    pub message: String,
}

impl ClusterConfig {
    /// Build from the data of the ConfigMaps that exist (by name); missing
    /// ones keep their defaults, unknown names are ignored.
    pub fn from_configmaps(
        maps: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<ClusterConfig, ConfigMapError> {
        let mut c = ClusterConfig::default();
        for (name, data) in maps {
            c.apply(name, data).map_err(|message| ConfigMapError {
                name: name.clone(),
                message,
            })?;
        }
        Ok(c)
    }

    /// Replace the settings of ConfigMap `name` with `data`.
    pub fn apply(&mut self, name: &str, data: &BTreeMap<String, String>) -> Result<(), String> {
        match name {
            defaults::CONFIGMAP => self.defaults = DefaultsConfig::from_configmap(data)?,
            features::CONFIGMAP => self.features = Features::from_configmap(data)?,
            autoscaler::CONFIGMAP => self.autoscaler = AutoscalerConfig::from_configmap(data)?,
            network::CONFIGMAP => self.network = NetworkConfig::from_configmap(data)?,
            domain::CONFIGMAP => self.domain = DomainConfig::from_configmap(data)?,
            gc::CONFIGMAP => self.gc = GcConfig::from_configmap(data)?,
            _ => {}
        }
        Ok(())
    }
}

/// What Knative's ConfigMap webhook says about a ConfigMap of `name` in the
/// system namespace: the example checksum rule, then the ConfigMap's own
/// parser. `Ok` for names Skiff does not read.
pub fn validate_configmap(
    name: &str,
    data: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<(), String> {
    if !CONFIGMAPS.contains(&name) {
        return Ok(());
    }
    if let (Some(example), Some(sum)) = (
        data.get(EXAMPLE_KEY),
        annotations.get(EXAMPLE_CHECKSUM_ANNOTATION),
    ) && *sum != checksum(example)
    {
        return Err(format!(
            "the update modifies a key in {} which is probably not what you want. Instead, copy the respective setting to the top-level of the ConfigMap, directly below {}",
            go::quote(EXAMPLE_KEY),
            go::quote("data")
        ));
    }
    ClusterConfig::default().apply(name, data)
}

/// knative/pkg configmap.Checksum: CRC-32 (IEEE) of the example, 8 hex digits.
pub fn checksum(s: &str) -> String {
    let mut crc: u32 = !0;
    for b in s.bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    format!("{:08x}", !crc)
}

/// A table case of ConfigMap tests: data, and the error it gives.
#[cfg(test)]
pub(crate) type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), &'a str>);

/// Parse `data[key]` with `parse` into `target` when present; the error names
/// the key as knative/pkg's configmap parsers do.
pub(crate) fn parse_with<T>(
    data: &BTreeMap<String, String>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    target: &mut T,
) -> Result<(), String> {
    if let Some(raw) = data.get(key) {
        *target = parse(raw).map_err(|e| format!("failed to parse {}: {e}", go::quote(key)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_crc32_ieee() {
        assert_eq!(checksum(""), "00000000");
        assert_eq!(checksum("123456789"), "cbf43926");
    }

    #[test]
    fn example_edits_are_refused() {
        let data = BTreeMap::from([(EXAMPLE_KEY.to_string(), "changed".to_string())]);
        let ann = BTreeMap::from([(
            EXAMPLE_CHECKSUM_ANNOTATION.to_string(),
            checksum("original"),
        )]);
        let err = validate_configmap("config-gc", &data, &ann).unwrap_err();
        assert!(
            err.starts_with("the update modifies a key in \"_example\""),
            "{err}"
        );
        let ann = BTreeMap::from([(EXAMPLE_CHECKSUM_ANNOTATION.to_string(), checksum("changed"))]);
        assert!(validate_configmap("config-gc", &data, &ann).is_ok());
        assert!(validate_configmap("config-unknown", &BTreeMap::new(), &ann).is_ok());
    }

    #[test]
    fn maps_build_the_config() {
        let maps = BTreeMap::from([
            (
                "config-defaults".to_string(),
                BTreeMap::from([("revision-timeout-seconds".to_string(), "100".to_string())]),
            ),
            (
                "config-domain".to_string(),
                BTreeMap::from([("example.com".to_string(), String::new())]),
            ),
        ]);
        let c = ClusterConfig::from_configmaps(&maps).unwrap();
        assert_eq!(c.defaults.revision_timeout_seconds, 100);
        assert_eq!(c.domain.lookup(&BTreeMap::new()), "example.com");
        let bad = BTreeMap::from([(
            "config-gc".to_string(),
            BTreeMap::from([("min-non-active-revisions".to_string(), "-1".to_string())]),
        )]);
        let e = ClusterConfig::from_configmaps(&bad).unwrap_err();
        assert_eq!(e.name, "config-gc");
    }
}
