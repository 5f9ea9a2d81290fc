//! Clean-up of instances left behind by a previous `skiff serve` of the same
//! data directory that was killed with SIGKILL. Every instance carries
//! `SKIFF_OWNER=<data dir>` in its environment (children inherit it), so they
//! can be found in /proc and stopped before new ones start.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const OWNER_ENV: &str = "SKIFF_OWNER";

/// Kill every process whose environment says it belongs to `owner`. Returns
/// how many were found.
pub fn reap_orphans(owner: &str) -> usize {
    let marker = format!("{OWNER_ENV}={owner}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if owned_by(&entry.path(), &marker) {
            found += 1;
            tracing::warn!(pid, "stopping an instance left over from a previous run");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    found
}

fn owned_by(proc_dir: &Path, marker: &str) -> bool {
    std::fs::read(proc_dir.join("environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
}
