//! `skiff analyze [-f FILE]`: run the analyzer over what the server holds,
//! or over manifests offline.

use std::process::ExitCode;
use std::time::Duration;

use http::Method;
use skiff_api::DynamicObject;
use skiff_api::object::KINDS;

use super::{AnalyzeArgs, Output, to_yaml};
use crate::analyze::{self, Objects, Settings, Severity};
use crate::client::Client;

/// istioctl analyze's exit code when it finds errors.
const EXIT_ERRORS: u8 = 79;

/// `--lb-idle-timeout 0` turns the load-balancer checks off.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    skiff_api::istio::duration::parse(s)
}

async fn from_server(client: &Client) -> anyhow::Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for kind in KINDS {
        let list = client
            .call(Method::GET, &kind.collection_path(None), None)
            .await?;
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let mut obj: DynamicObject = serde_json::from_value(item)?;
            // Lists are served in the kind's version.
            if obj.api_version.is_empty() {
                obj.api_version = kind.api_version();
            }
            if obj.kind.is_empty() {
                obj.kind = kind.kind.to_string();
            }
            out.push(obj);
        }
    }
    Ok(out)
}

fn from_files(args: &AnalyzeArgs) -> anyhow::Result<(Vec<DynamicObject>, Vec<String>)> {
    let mut objs = Vec::new();
    let mut errors = Vec::new();
    let ns = args.namespace.as_deref().unwrap_or("default");
    for (name, text) in super::apply::sources(&args.files, false)? {
        match skiff_api::parse::parse_manifest(&name, &text, ns) {
            Ok(docs) => objs.extend(docs.into_iter().map(|d| d.object)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok((objs, errors))
}

pub async fn run(client: impl FnOnce() -> Client, args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let (objs, parse_errors) = if args.files.is_empty() {
        (from_server(&client()).await?, Vec::new())
    } else {
        from_files(args)?
    };
    let count = objs.len();
    let objects = Objects::from_dynamic(objs);
    let settings = Settings {
        lb_idle_timeout: args.lb_idle_timeout.filter(|d| !d.is_zero()),
        upstream_keepalive: args.upstream_keepalive,
        ..Settings::default()
    };
    let mut findings = analyze::analyze(&objects, &settings);
    if let Some(ns) = &args.namespace
        && args.files.is_empty()
    {
        findings.retain(|f| f.namespace() == ns);
    }
    for e in &parse_errors {
        eprintln!("error: {e}");
    }
    match args.output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&findings)?),
        Some(Output::Yaml) => print!("{}", to_yaml(&serde_json::to_value(&findings)?)?),
        None => {
            if findings.is_empty() {
                println!("No issues found when analyzing {count} objects.");
            }
            for f in &findings {
                print!("{f}");
            }
        }
    }
    let errors = findings.iter().any(|f| f.severity == Severity::Error) || !parse_errors.is_empty();
    Ok(if errors {
        ExitCode::from(EXIT_ERRORS)
    } else {
        ExitCode::SUCCESS
    })
}
