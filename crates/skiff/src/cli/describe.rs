//! `skiff describe ksvc NAME`: kn's service description (metadata, URLs,
//! revisions with their traffic, conditions) and the recent events of the
//! Service and everything it owns, as `kubectl describe` lists them.

use std::process::ExitCode;

use http::Method;
use serde_json::Value;
use skiff_api::object::{EVENT, REVISION, SERVICE};
use skiff_api::serving::{Revision, Service};

use super::{DescribeArgs, kind_arg};
use crate::client::Client;
use crate::table::{self, age};

pub async fn run(client: &Client, args: &DescribeArgs) -> anyhow::Result<ExitCode> {
    let kind = kind_arg(&args.kind)?;
    if kind.kind != "Service" {
        anyhow::bail!(
            "skiff describe shows Knative services (ksvc); for {} use `skiff get {} NAME -o yaml`",
            kind.plural,
            kind.singular
        );
    }
    print!(
        "{}",
        describe_service(client, &args.namespace, &args.name).await?
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn describe_service(client: &Client, ns: &str, name: &str) -> anyhow::Result<String> {
    let path = format!("{}/{name}", SERVICE.collection_path(Some(ns)));
    let svc_json = client.call(Method::GET, &path, None).await?;
    let svc: Service = serde_json::from_value(svc_json.clone())?;
    let revisions: Vec<Revision> = list(client, &REVISION.collection_path(Some(ns)))
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Revision>(v).ok())
        .filter(|r| r.metadata.label(skiff_api::labels::SERVICE) == Some(name))
        .collect();
    let events = list(client, &EVENT.collection_path(Some(ns))).await?;

    let mut out = String::new();
    let m = &svc.metadata;
    let st = svc.status.clone().unwrap_or_default();
    let mut attrs: Vec<(&str, String)> =
        vec![("Name", m.name.clone()), ("Namespace", m.namespace.clone())];
    let shown: Vec<String> = m
        .annotations
        .iter()
        .filter(|(k, _)| k.as_str() != skiff_api::labels::LAST_APPLIED)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !m.labels.is_empty() {
        let l: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        attrs.push(("Labels", l.join(", ")));
    }
    if !shown.is_empty() {
        attrs.push(("Annotations", shown.join(", ")));
    }
    attrs.push(("Age", age(m.creation_timestamp.as_deref())));
    attrs.push(("URL", st.url.clone().unwrap_or_default()));
    if let Some(a) = st.address.as_ref().and_then(|a| a.url.clone()) {
        attrs.push(("Cluster", a));
    }
    let width = attrs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 3;
    for (k, v) in &attrs {
        out.push_str(&format!("{:<width$}{v}\n", format!("{k}:")));
    }

    // Revisions: those with traffic first (as status.traffic lists them),
    // then the rest, newest first.
    out.push_str("\nRevisions:\n");
    let mut listed: Vec<String> = Vec::new();
    let by_name = |n: &str| revisions.iter().find(|r| r.metadata.name == n);
    for t in &st.traffic {
        let Some(rn) = t.revision_name.as_deref() else {
            continue;
        };
        let pct = t.percent.unwrap_or(0);
        let latest = t.latest_revision == Some(true);
        let mut header = if latest {
            format!("@latest ({rn})")
        } else {
            rn.to_string()
        };
        if let Some(tag) = t.tag.as_deref() {
            header.push_str(&format!(" #{tag}"));
        }
        out.push_str(&revision_block(by_name(rn), pct, &header));
        listed.push(rn.to_string());
    }
    let mut rest: Vec<&Revision> = revisions
        .iter()
        .filter(|r| !listed.contains(&r.metadata.name))
        .collect();
    rest.sort_by_key(|r| std::cmp::Reverse(generation(r)));
    for r in rest {
        let n = &r.metadata.name;
        let header = if st.latest_ready_revision_name.as_deref() == Some(n) {
            format!("{n} (current @latest)")
        } else if st.latest_created_revision_name.as_deref() == Some(n) {
            format!("{n} (latest created)")
        } else {
            n.clone()
        };
        out.push_str(&revision_block(Some(r), 0, &header));
    }

    out.push_str("\nConditions:\n");
    out.push_str(&conditions_table(&svc_json["status"]["conditions"]));

    // Events of the Service and of what it owns.
    let owned: Vec<(String, String)> = [
        ("Service", name.to_string()),
        ("Configuration", name.to_string()),
        ("Route", name.to_string()),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .chain(
        revisions
            .iter()
            .map(|r| ("Revision".to_string(), r.metadata.name.clone())),
    )
    .collect();
    let mut evs: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            owned
                .iter()
                .any(|(k, n)| io["kind"] == k.as_str() && io["name"] == n.as_str())
        })
        .collect();
    evs.sort_by(|a, b| {
        a["lastTimestamp"]
            .as_str()
            .unwrap_or("")
            .cmp(b["lastTimestamp"].as_str().unwrap_or(""))
            .then_with(|| {
                // Same second: in the order the store wrote them.
                let rv = |e: &Value| {
                    e["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|r| r.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                rv(a).cmp(&rv(b))
            })
    });
    let recent = evs.len().saturating_sub(20);
    out.push_str("\nEvents:\n");
    if evs.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = evs[recent..]
            .iter()
            .map(|e| {
                let io = &e["involvedObject"];
                let count = e["count"].as_i64().unwrap_or(1);
                let seen = age(e["lastTimestamp"].as_str());
                vec![
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    if count > 1 {
                        format!("{seen} (x{count})")
                    } else {
                        seen
                    },
                    format!(
                        "{}/{}",
                        io["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                        io["name"].as_str().unwrap_or("")
                    ),
                    e["message"].as_str().unwrap_or("").to_string(),
                ]
            })
            .collect();
        for line in table::render(&["TYPE", "REASON", "AGE", "OBJECT", "MESSAGE"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    Ok(out)
}

async fn list(client: &Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let v = client.call(Method::GET, path, None).await?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

fn generation(r: &Revision) -> i64 {
    r.metadata
        .label(skiff_api::labels::CONFIGURATION_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

fn ready_status(r: Option<&Revision>) -> (String, String) {
    r.and_then(|r| r.status.as_ref())
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            (
                c.status.as_str().to_string(),
                c.reason.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_else(|| ("Unknown".into(), String::new()))
}

/// kn's bullet: `100%` for a ready revision with traffic, `   +` ready
/// without, `!` failed, `?` not ready yet.
fn bullet(pct: i64, ready: &str) -> String {
    let symbol = match ready {
        "True" if pct > 0 => "%",
        "True" => "+",
        "False" => "!",
        _ => "?",
    };
    if pct == 0 {
        format!("   {symbol}")
    } else {
        format!("{pct:3}{symbol}")
    }
}

fn revision_block(r: Option<&Revision>, pct: i64, header: &str) -> String {
    let (ready, reason) = ready_status(r);
    let gen_age = r
        .map(|r| {
            format!(
                " [{}] ({})",
                generation(r),
                age(r.metadata.creation_timestamp.as_deref())
            )
        })
        .unwrap_or_else(|| " (not found)".to_string());
    let mut out = format!("  {}  {header}{gen_age}\n", bullet(pct, &ready));
    let Some(r) = r else {
        return out;
    };
    if ready == "False" {
        out.push_str(&format!("        Error:     {reason}\n"));
    }
    if let Some(c) = r.spec.pod.containers.first() {
        out.push_str(&format!("        Image:     {}\n", c.image));
    }
    if let Some(s) = &r.status
        && let (Some(a), Some(d)) = (s.actual_replicas, s.desired_replicas)
    {
        out.push_str(&format!("        Replicas:  {a}/{d}\n"));
    }
    out
}

/// kn's conditions table: Ready first, `++` True, `!!` False, `??` Unknown;
/// the message is shown for conditions that are not True.
fn conditions_table(conds: &Value) -> String {
    let mut list: Vec<&Value> = conds
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    list.sort_by_key(|c| {
        (
            c["type"] != "Ready",
            c["type"].as_str().unwrap_or("").to_string(),
        )
    });
    let width = list
        .iter()
        .map(|c| c["type"].as_str().unwrap_or("").len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "  {:<2} {:<width$} {:>6} {}\n",
        "OK", "TYPE", "AGE", "REASON"
    );
    for c in list {
        let ok = match c["status"].as_str() {
            Some("True") => "++",
            Some("False") => "!!",
            _ => "??",
        };
        let mut reason = c["reason"].as_str().unwrap_or("").to_string();
        if ok != "++"
            && let Some(m) = c["message"].as_str().filter(|m| !m.is_empty())
        {
            reason = format!("{reason} ({m})");
        }
        let line = format!(
            "  {ok:<2} {:<width$} {:>6} {reason}",
            c["type"].as_str().unwrap_or(""),
            age(c["lastTransitionTime"].as_str())
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bullets_like_kn() {
        assert_eq!(bullet(100, "True"), "100%");
        assert_eq!(bullet(0, "True"), "   +");
        assert_eq!(bullet(50, "Unknown"), " 50?");
        assert_eq!(bullet(0, "False"), "   !");
    }
}
