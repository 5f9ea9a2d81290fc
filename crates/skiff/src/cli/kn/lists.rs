//! `skiff service list`, `skiff revision list`, `skiff route list` with kn's
//! columns.

use std::process::ExitCode;

use http::Method;
use serde_json::Value;
use skiff_api::object::{REVISION, ROUTE, SERVICE};

use super::{ListArgs, RevisionListArgs};
use crate::client::Client;
use crate::table::{self, age};

async fn items(client: &Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let v = client.call(Method::GET, path, None).await?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn ready(o: &Value) -> (String, String) {
    o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            let status = s(&c["status"]);
            let reason = if status == "True" {
                String::new()
            } else {
                s(&c["reason"])
            };
            (status, reason)
        })
        .unwrap_or_else(|| ("<unknown>".into(), String::new()))
}

/// kn's CONDITIONS column: `3 OK / 4`.
fn conditions(o: &Value) -> String {
    let cs = o["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ok = cs.iter().filter(|c| c["status"] == "True").count();
    format!("{ok} OK / {}", cs.len())
}

fn print(headers: &[&str], rows: Vec<Vec<String>>, ns: &str) {
    if rows.is_empty() {
        eprintln!("No resources found in {ns} namespace.");
    } else {
        print!("{}", table::render(headers, &rows));
    }
}

pub async fn services(client: &Client, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let rows = items(client, &SERVICE.collection_path(Some(&a.namespace)))
        .await?
        .iter()
        .map(|o| {
            let (r, reason) = ready(o);
            vec![
                s(&o["metadata"]["name"]),
                s(&o["status"]["url"]),
                s(&o["status"]["latestCreatedRevisionName"]),
                age(o["metadata"]["creationTimestamp"].as_str()),
                conditions(o),
                r,
                reason,
            ]
        })
        .collect();
    print(
        &[
            "NAME",
            "URL",
            "LATEST",
            "AGE",
            "CONDITIONS",
            "READY",
            "REASON",
        ],
        rows,
        &a.namespace,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn routes(client: &Client, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let rows = items(client, &ROUTE.collection_path(Some(&a.namespace)))
        .await?
        .iter()
        .map(|o| {
            vec![
                s(&o["metadata"]["name"]),
                s(&o["status"]["url"]),
                ready(o).0,
            ]
        })
        .collect();
    print(&["NAME", "URL", "READY"], rows, &a.namespace);
    Ok(ExitCode::SUCCESS)
}

/// Traffic and tags of each revision, from its Service's status.traffic.
pub async fn revisions(client: &Client, a: &RevisionListArgs) -> anyhow::Result<ExitCode> {
    let ns = &a.namespace;
    let services = items(client, &SERVICE.collection_path(Some(ns))).await?;
    let mut revs: Vec<Value> = items(client, &REVISION.collection_path(Some(ns)))
        .await?
        .into_iter()
        .filter(|r| {
            a.service
                .as_deref()
                .is_none_or(|svc| r["metadata"]["labels"]["serving.knative.dev/service"] == svc)
        })
        .collect();
    let generation = |r: &Value| -> i64 {
        s(&r["metadata"]["labels"]["serving.knative.dev/configurationGeneration"])
            .parse()
            .unwrap_or(0)
    };
    // kn's order: by service, newest generation first.
    revs.sort_by(|x, y| {
        let sx = s(&x["metadata"]["labels"]["serving.knative.dev/service"]);
        let sy = s(&y["metadata"]["labels"]["serving.knative.dev/service"]);
        sx.cmp(&sy).then(generation(y).cmp(&generation(x)))
    });
    let rows = revs
        .iter()
        .map(|r| {
            let name = s(&r["metadata"]["name"]);
            let svc_name = s(&r["metadata"]["labels"]["serving.knative.dev/service"]);
            let traffic: Vec<Value> = services
                .iter()
                .find(|svc| svc["metadata"]["name"] == svc_name.as_str())
                .and_then(|svc| svc["status"]["traffic"].as_array().cloned())
                .unwrap_or_default();
            let mine = traffic
                .iter()
                .filter(|t| t["revisionName"] == name.as_str());
            let pct: i64 = mine
                .clone()
                .map(|t| t["percent"].as_i64().unwrap_or(0))
                .sum();
            let tags: Vec<String> = mine
                .filter_map(|t| t["tag"].as_str().map(str::to_string))
                .collect();
            let (rd, reason) = ready(r);
            vec![
                name,
                svc_name,
                if pct > 0 {
                    format!("{pct}%")
                } else {
                    String::new()
                },
                tags.join(","),
                generation(r).to_string(),
                age(r["metadata"]["creationTimestamp"].as_str()),
                conditions(r),
                rd,
                reason,
            ]
        })
        .collect();
    print(
        &[
            "NAME",
            "SERVICE",
            "TRAFFIC",
            "TAGS",
            "GENERATION",
            "AGE",
            "CONDITIONS",
            "READY",
            "REASON",
        ],
        rows,
        ns,
    );
    Ok(ExitCode::SUCCESS)
}
