//! `skiff get KIND [NAME]` with kubectl's columns for Knative kinds.

use std::process::ExitCode;

use http::Method;
use serde_json::Value;
use skiff_api::ResourceKind;

use super::{GetArgs, GetOutput, kind_arg, to_yaml};
use crate::client::Client;
use crate::table;

fn ready_cond(o: &Value) -> (String, String) {
    o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `["a","b"]` as kubectl prints string lists.
fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().map_or_else(Vec::new, |a| {
        a.iter().map(|i| format!("{:?}", s(i))).collect()
    });
    if items.is_empty() {
        String::new()
    } else {
        format!("[{}]", items.join(","))
    }
}

/// Headers and one row per object, like the CRDs' additionalPrinterColumns.
fn columns(kind: &ResourceKind, items: &[Value]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers: Vec<&str> = match kind.kind {
        "Service" => vec![
            "NAME",
            "URL",
            "LATESTCREATED",
            "LATESTREADY",
            "READY",
            "REASON",
        ],
        "Configuration" => vec!["NAME", "LATESTCREATED", "LATESTREADY", "READY", "REASON"],
        "Revision" => vec![
            "NAME",
            "CONFIG NAME",
            "GENERATION",
            "READY",
            "REASON",
            "ACTUAL REPLICAS",
            "DESIRED REPLICAS",
        ],
        "Route" => vec!["NAME", "URL", "READY", "REASON"],
        // istioctl/kubectl columns of the Istio CRDs.
        "VirtualService" => vec!["NAME", "GATEWAYS", "HOSTS"],
        "DestinationRule" => vec!["NAME", "HOST"],
        "AuthorizationPolicy" => vec!["NAME", "ACTION"],
        "PeerAuthentication" => vec!["NAME", "MODE"],
        "Secret" => vec!["NAME", "TYPE", "DATA"],
        "ConfigMap" => vec!["NAME", "DATA", "AGE"],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        _ => vec!["NAME"],
    };
    let rows = items
        .iter()
        .map(|o| {
            let name = s(&o["metadata"]["name"]);
            let st = &o["status"];
            let (ready, reason) = ready_cond(o);
            match kind.kind {
                "Service" => vec![
                    name,
                    s(&st["url"]),
                    s(&st["latestCreatedRevisionName"]),
                    s(&st["latestReadyRevisionName"]),
                    ready,
                    reason,
                ],
                "Configuration" => vec![
                    name,
                    s(&st["latestCreatedRevisionName"]),
                    s(&st["latestReadyRevisionName"]),
                    ready,
                    reason,
                ],
                "Revision" => vec![
                    name,
                    s(&o["metadata"]["labels"]["serving.knative.dev/configuration"]),
                    s(&o["metadata"]["labels"]["serving.knative.dev/configurationGeneration"]),
                    ready,
                    reason,
                    s(&st["actualReplicas"]),
                    s(&st["desiredReplicas"]),
                ],
                "Route" => vec![name, s(&st["url"]), ready, reason],
                "VirtualService" => vec![
                    name,
                    list(&o["spec"]["gateways"]),
                    list(&o["spec"]["hosts"]),
                ],
                "DestinationRule" => vec![name, s(&o["spec"]["host"])],
                "AuthorizationPolicy" => vec![
                    name,
                    o["spec"]["action"].as_str().unwrap_or("ALLOW").to_string(),
                ],
                "PeerAuthentication" => vec![
                    name,
                    o["spec"]["mtls"]["mode"]
                        .as_str()
                        .unwrap_or("UNSET")
                        .to_string(),
                ],
                "Secret" => vec![
                    name,
                    o["type"].as_str().unwrap_or("Opaque").to_string(),
                    o["data"].as_object().map_or(0, |m| m.len()).to_string(),
                ],
                "ConfigMap" => vec![
                    name,
                    o["data"].as_object().map_or(0, |d| d.len()).to_string(),
                    table::age(o["metadata"]["creationTimestamp"].as_str()),
                ],
                "Event" => vec![
                    table::age(o["lastTimestamp"].as_str()),
                    s(&o["type"]),
                    s(&o["reason"]),
                    format!(
                        "{}/{}",
                        s(&o["involvedObject"]["kind"]).to_ascii_lowercase(),
                        s(&o["involvedObject"]["name"])
                    ),
                    s(&o["message"]),
                ],
                _ => vec![name],
            }
        })
        .collect();
    (headers, rows)
}

/// ACTUAL / DESIRED: ready and desired instances summed over each service's
/// revisions (the autoscaler's view).
async fn add_instance_columns(
    client: &Client,
    services: &[Value],
    headers: &mut Vec<&'static str>,
    rows: &mut [Vec<String>],
) -> anyhow::Result<()> {
    let mut by_ns: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for svc in services {
        let ns = s(&svc["metadata"]["namespace"]);
        if !by_ns.contains_key(&ns) {
            let path = skiff_api::object::REVISION.collection_path(Some(&ns));
            let revs = client.call(Method::GET, &path, None).await?;
            by_ns.insert(
                ns.clone(),
                revs["items"].as_array().cloned().unwrap_or_default(),
            );
        }
    }
    headers.extend(["ACTUAL", "DESIRED"]);
    for (row, svc) in rows.iter_mut().zip(services) {
        let ns = s(&svc["metadata"]["namespace"]);
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let (mut actual, mut desired) = (0i64, 0i64);
        for r in &by_ns[&ns] {
            if r["metadata"]["labels"]["serving.knative.dev/service"] == name {
                actual += r["status"]["actualReplicas"].as_i64().unwrap_or(0);
                desired += r["status"]["desiredReplicas"].as_i64().unwrap_or(0);
            }
        }
        row.push(actual.to_string());
        row.push(desired.to_string());
    }
    Ok(())
}

pub async fn run(client: &Client, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let kind = kind_arg(&args.kind)?;
    let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
    let mut path = kind.collection_path(ns);
    if let Some(name) = &args.name {
        if args.all_namespaces {
            anyhow::bail!("a resource cannot be retrieved by name across all namespaces");
        }
        path = format!("{path}/{name}");
    }
    let resp = client.call(Method::GET, &path, None).await?;
    let mut items: Vec<Value> = if args.name.is_some() {
        vec![resp.clone()]
    } else {
        resp["items"].as_array().cloned().unwrap_or_default()
    };
    if kind.kind == "Event" {
        // Oldest first, as they happened.
        items.sort_by(|a, b| {
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
    }
    match args.output {
        Some(GetOutput::Yaml) => print!("{}", to_yaml(&resp)?),
        Some(GetOutput::Json) => println!("{}", serde_json::to_string_pretty(&resp)?),
        Some(GetOutput::Wide) | None => {
            if items.is_empty() {
                match ns {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let (mut headers, mut rows) = columns(kind, &items);
            if args.output == Some(GetOutput::Wide) && kind.kind == "Service" {
                add_instance_columns(client, &items, &mut headers, &mut rows).await?;
            }
            if args.all_namespaces {
                headers.insert(0, "NAMESPACE");
                for (r, o) in rows.iter_mut().zip(&items) {
                    r.insert(0, s(&o["metadata"]["namespace"]));
                }
            }
            print!("{}", table::render(&headers, &rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}
