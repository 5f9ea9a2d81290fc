//! Istio traffic management as Envoy implements it, as pure building blocks
//! for the gateway's request path: each module compiles the user's
//! resources once per routing snapshot into structures the hot path reads
//! without locks, and decides one thing per request. See
//! `docs/istio-wiring.md` for the order they run in.

pub mod access_log;
pub mod authz;
pub mod binding;
pub mod circuit_breaker;
pub mod cluster_state;
pub mod cors;
pub mod fault;
pub mod flags;
pub mod hash;
pub mod header_ops;
pub mod lb;
pub mod local_reply;
pub mod matcher;
pub mod outlier;
pub mod policy;
pub mod rand;
pub mod request;
pub mod retry;
pub mod rewrite;
pub mod route;
pub mod time;

#[cfg(test)]
pub(crate) mod testing {
    /// A value from YAML, the way manifests arrive (YAML → JSON → type).
    pub fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        let v: serde_json::Value = serde_saphyr::from_str(s).expect("test YAML parses");
        serde_json::from_value(v).expect("test YAML has the type's shape")
    }
}
