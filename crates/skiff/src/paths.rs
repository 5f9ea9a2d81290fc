//! Where Skiff keeps its state, and how the CLI finds a running server.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_GATEWAY: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:7780";
/// Istio's ingress gateway health check port.
pub const DEFAULT_HEALTH: &str = "127.0.0.1:15021";
/// The cluster-local listener (what Knative's cluster-local gateway is).
pub const DEFAULT_LOCAL_GATEWAY: &str = "127.0.0.1:8081";

/// `$SKIFF_DATA_DIR` is read by clap; this is the fallback:
/// `$XDG_DATA_HOME/skiff`, else `~/.local/share/skiff`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("skiff");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/skiff")
}

pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("token")
}

pub fn server_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server.json")
}

pub fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join("skiff.db")
}

pub fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// Written by `skiff serve` once it listens, so the CLI and tests can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Admin API base URL.
    pub admin: String,
    /// Gateway base URL (external routes).
    pub gateway: String,
    /// Cluster-local listener base URL (`*.svc.cluster.local` names).
    #[serde(default)]
    pub local_gateway: String,
    /// The load balancer health check URL, if it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    pub pid: u32,
}

impl ServerInfo {
    pub fn read(data_dir: &Path) -> Option<ServerInfo> {
        let text = std::fs::read_to_string(server_file(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}
