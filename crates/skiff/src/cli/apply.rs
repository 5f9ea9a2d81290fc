//! `skiff apply -f FILE|DIR|-`

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use http::Method;
use serde_json::Value;
use skiff_api::parse::{self, Document};

use super::{ApplyArgs, Output, to_yaml};
use crate::client::{Client, ServerError};

/// Every manifest the arguments name: (display name, text). Directories give
/// their `.yaml`, `.yml` and `.json` files in name order (and their
/// subdirectories' with `recursive`, as `kubectl -R`).
pub(crate) fn sources(args: &[String], recursive: bool) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let path = Path::new(a);
        if path.is_dir() {
            dir_files(path, recursive, &mut out)?;
            if out.is_empty() {
                anyhow::bail!("no manifests (.yaml, .yml, .json) in {a}");
            }
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {a}: {e}"))?;
            out.push((a.clone(), text));
        }
    }
    Ok(out)
}

fn dir_files(dir: &Path, recursive: bool, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                dir_files(&p, recursive, out)?;
            }
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            out.push((p.display().to_string(), text));
        }
    }
    Ok(())
}

pub(crate) fn identity(d: &Document) -> String {
    let m = &d.object.metadata;
    let name = if m.name.is_empty() {
        m.generate_name
            .clone()
            .map(|g| format!("{g}*"))
            .unwrap_or_default()
    } else {
        m.name.clone()
    };
    format!("{} {}/{}", d.object.kind, m.namespace, name)
}

pub async fn run(client: &Client, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for (name, text) in sources(&args.files, args.recursive)? {
        let docs = match parse::parse_manifest(&name, &text, &args.namespace) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        let items: Vec<Value> = docs
            .iter()
            .map(|d| serde_json::to_value(&d.object))
            .collect::<Result<_, _>>()?;
        let path = if args.dry_run {
            "/apis/skiff.dev/v1/apply?dryRun=All"
        } else {
            "/apis/skiff.dev/v1/apply"
        };
        match client
            .call(Method::POST, path, Some(&Value::Array(items)))
            .await
        {
            Ok(resp) => print_results(&resp, args)?,
            Err(e) => {
                failed = true;
                match e.downcast_ref::<ServerError>() {
                    Some(se) if !se.causes.is_empty() => {
                        eprintln!("error: {name}: {}", se.message);
                        for (i, msg) in &se.causes {
                            match i.and_then(|i| docs.get(i)) {
                                Some(d) => eprintln!(
                                    "error: {name}: document {} ({}): {msg}",
                                    d.index,
                                    identity(d)
                                ),
                                None => eprintln!("error: {name}: {msg}"),
                            }
                        }
                    }
                    _ => eprintln!("error: {name}: {e}"),
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_results(resp: &Value, args: &ApplyArgs) -> anyhow::Result<()> {
    let results = resp["results"].as_array().cloned().unwrap_or_default();
    // Admission warnings never reject; kubectl prints them like this.
    for r in &results {
        for w in r["warnings"].as_array().into_iter().flatten() {
            if let Some(w) = w.as_str() {
                eprintln!("Warning: {w}");
            }
        }
    }
    match args.output {
        Some(Output::Yaml) => {
            for r in &results {
                print!("---\n{}", to_yaml(&r["object"])?);
            }
        }
        Some(Output::Json) => {
            let objs: Vec<&Value> = results.iter().map(|r| &r["object"]).collect();
            println!("{}", serde_json::to_string_pretty(&objs)?);
        }
        None => {
            for r in &results {
                let o = &r["object"];
                let kind = o["kind"].as_str().unwrap_or("");
                let group = o["apiVersion"]
                    .as_str()
                    .and_then(|v| v.split_once('/'))
                    .map_or("", |(g, _)| g);
                let dry = if args.dry_run {
                    " (server dry run)"
                } else {
                    ""
                };
                // kubectl's form: `kind.group/name`, `kind/name` for core kinds.
                let kind = kind.to_ascii_lowercase();
                let qualified = if group.is_empty() {
                    kind
                } else {
                    format!("{kind}.{group}")
                };
                println!(
                    "{qualified}/{} {}{dry}",
                    o["metadata"]["name"].as_str().unwrap_or(""),
                    r["action"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
