//! Waiting for a Service to become Ready, printing progress the way kn does:
//! one line per new message of the Ready condition, with the elapsed time,
//! plus the phases Skiff passes quickly (revision created, route ready).

use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;
use skiff_api::object::SERVICE;

use crate::client::Client;

const POLL: Duration = Duration::from_millis(100);
/// How long a Ready=False may last before it is final (kn's error window).
const ERROR_WINDOW: Duration = Duration::from_secs(2);

fn line(start: Instant, msg: &str) {
    println!("{:7.3}s {msg}", start.elapsed().as_secs_f64());
}

fn cond<'a>(o: &'a Value, t: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

/// Wait until `ns/name` is Ready for its current generation. Returns the
/// Service on success; the failure's `reason: message` otherwise.
pub async fn ready(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    known_revision: Option<&str>,
) -> anyhow::Result<Value> {
    let start = Instant::now();
    let path = format!("{}/{name}", SERVICE.collection_path(Some(ns)));
    let mut last_message = String::new();
    let mut seen_revision = known_revision.unwrap_or("").to_string();
    let mut routes_ready = false;
    let mut failing_since: Option<Instant> = None;
    loop {
        let o = client.call(Method::GET, &path, None).await?;
        let in_sync = o["status"]["observedGeneration"] == o["metadata"]["generation"];
        if in_sync {
            if let Some(rev) = o["status"]["latestCreatedRevisionName"].as_str()
                && rev != seen_revision
            {
                line(start, &format!("Revision {rev:?} created."));
                seen_revision = rev.to_string();
            }
            let ready = cond(&o, "Ready");
            let status = ready
                .and_then(|c| c["status"].as_str())
                .unwrap_or("Unknown");
            if !routes_ready
                && cond(&o, "RoutesReady").and_then(|c| c["status"].as_str()) == Some("True")
            {
                line(start, "Route is ready.");
                routes_ready = true;
            }
            match status {
                "True" => {
                    line(start, "Ready to serve.");
                    return Ok(o);
                }
                "False" => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= ERROR_WINDOW {
                        let c = ready.cloned().unwrap_or_default();
                        anyhow::bail!(
                            "{}: {}",
                            c["reason"].as_str().unwrap_or(""),
                            c["message"].as_str().unwrap_or("")
                        );
                    }
                }
                _ => failing_since = None,
            }
            if let Some(msg) = ready
                .and_then(|c| c["message"].as_str())
                .filter(|m| !m.is_empty() && *m != last_message)
            {
                line(start, msg);
                last_message = msg.to_string();
            }
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "timeout: service '{name}' not ready after {} seconds",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
