//! `skiff service create|update|delete` with kn's flags and messages.

use std::process::ExitCode;
use std::time::Duration;

use http::Method;
use skiff_api::config::autoscaler::annotations as autoscaling;
use skiff_api::meta::ObjectMeta;
use skiff_api::object::{Resource, SERVICE};
use skiff_api::serving::{Container, ContainerPort, EnvVar, Service};

use super::{CreateArgs, DeleteArgs, EditFlags, UpdateArgs, WaitFlags, traffic, wait};
use crate::client::{Client, ServerError};

fn key_value(s: &str, what: &str) -> anyhow::Result<(String, Option<String>)> {
    if let Some(k) = s.strip_suffix('-')
        && !s.contains('=')
    {
        return Ok((k.to_string(), None));
    }
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Some(v.to_string()))),
        _ => anyhow::bail!("invalid {what} {s:?}: expected KEY=VALUE, or KEY- to remove"),
    }
}

/// Apply the template flags; true when the template changed.
fn edit(svc: &mut Service, f: &EditFlags) -> anyhow::Result<bool> {
    let before = serde_json::to_value(&svc.spec.template)?;
    let t = &mut svc.spec.template;
    if t.spec.pod.containers.is_empty() {
        t.spec.pod.containers.push(Container::default());
    }
    let c = &mut t.spec.pod.containers[0];
    if let Some(image) = &f.image {
        c.image = image.clone();
    }
    if !f.cmd.is_empty() {
        c.command = Some(f.cmd.clone());
    }
    if !f.args.is_empty() {
        c.args = Some(f.args.clone());
    }
    for e in &f.env {
        let (k, v) = key_value(e, "--env")?;
        c.env.retain(|x| x.name != k);
        if let Some(v) = v {
            c.env.push(EnvVar {
                name: k,
                value: Some(v),
                value_from: None,
            });
        }
    }
    if let Some(p) = &f.port {
        let (name, num) = match p.split_once(':') {
            Some((n, num)) => (Some(n.to_string()), num),
            None => (None, p.as_str()),
        };
        let container_port: i64 = num
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid --port {p:?}: expected PORT or NAME:PORT"))?;
        c.ports = vec![ContainerPort {
            name,
            container_port,
            ..Default::default()
        }];
    }
    if let Some(cc) = f.concurrency_limit {
        t.spec.container_concurrency = Some(cc);
    }
    let ann = &mut t.metadata.annotations;
    for (key, v) in [
        (autoscaling::MIN_SCALE.0, f.scale_min),
        (autoscaling::MAX_SCALE.0, f.scale_max),
    ] {
        if let Some(v) = v {
            ann.insert(key.into(), v.to_string());
        }
    }
    for a in &f.annotations {
        let (k, v) = key_value(a, "--annotation")?;
        // Autoscaling annotations belong on revisions only (Knative refuses
        // them on the Service).
        let on_service = !k.starts_with(autoscaling::PREFIX);
        match v {
            Some(v) => {
                t.metadata.annotations.insert(k.clone(), v.clone());
                if on_service {
                    svc.metadata.annotations.insert(k, v);
                }
            }
            None => {
                t.metadata.annotations.remove(&k);
                svc.metadata.annotations.remove(&k);
            }
        }
    }
    let t = &mut svc.spec.template;
    let changed = serde_json::to_value(&*t)? != before;
    match &f.revision_name {
        Some(n) => t.metadata.name = n.clone(),
        // A changed template needs a new name; let the server pick one.
        None if changed => t.metadata.name.clear(),
        None => {}
    }
    Ok(changed || f.revision_name.is_some())
}

fn path(ns: &str, name: Option<&str>) -> String {
    let c = SERVICE.collection_path(Some(ns));
    match name {
        Some(n) => format!("{c}/{n}"),
        None => c,
    }
}

/// What the progress output says, and what was there before.
struct Progress<'a> {
    doing: &'a str,
    done: &'a str,
    /// The latest ready revision before the change.
    previous_revision: Option<&'a str>,
    /// The latest created revision before the change.
    previous_created: Option<&'a str>,
}

async fn finish_wait(
    client: &Client,
    ns: &str,
    name: &str,
    w: &WaitFlags,
    p: Progress<'_>,
) -> anyhow::Result<ExitCode> {
    let Progress {
        doing,
        done,
        previous_revision,
        previous_created,
    } = p;
    if w.no_wait {
        println!("Service '{name}' {done} in namespace '{ns}'.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{doing} service '{name}' in namespace '{ns}':\n");
    let timeout = Duration::from_secs(w.wait_timeout);
    match wait::ready(client, ns, name, timeout, previous_created).await {
        Ok(svc) => {
            println!();
            let latest = svc["status"]["latestReadyRevisionName"]
                .as_str()
                .unwrap_or("");
            let url = svc["status"]["url"].as_str().unwrap_or("");
            if previous_revision == Some(latest) {
                println!(
                    "Service '{name}' with latest revision '{latest}' (unchanged) is available at URL:\n{url}"
                );
            } else {
                println!(
                    "Service '{name}' {done} to latest revision '{latest}' is available at URL:\n{url}"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn create(client: &Client, a: &CreateArgs) -> anyhow::Result<ExitCode> {
    if a.edit.image.is_none() {
        anyhow::bail!(
            "'service create' requires the image name to run provided with the --image option"
        );
    }
    let mut svc = Service {
        metadata: ObjectMeta {
            name: a.name.clone(),
            namespace: a.namespace.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    edit(&mut svc, &a.edit)?;
    let body = serde_json::to_value(svc.to_dynamic())?;
    match client
        .call(Method::POST, &path(&a.namespace, None), Some(&body))
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.downcast_ref::<ServerError>()
                .is_some_and(|s| s.code == 409) =>
        {
            anyhow::bail!(
                "cannot create service '{}' in namespace '{}' because the service already exists and no --force option was given",
                a.name,
                a.namespace
            );
        }
        Err(e) => return Err(e),
    }
    let p = Progress {
        doing: "Creating",
        done: "created",
        previous_revision: None,
        previous_created: None,
    };
    finish_wait(client, &a.namespace, &a.name, &a.wait, p).await
}

pub async fn update(client: &Client, a: &UpdateArgs) -> anyhow::Result<ExitCode> {
    let p = path(&a.namespace, Some(&a.name));
    // Read, change, write with the read's resourceVersion; retry on a
    // concurrent change (kn's UpdateServiceWithRetry).
    let mut attempts = 0;
    let (before, after) = loop {
        attempts += 1;
        let current = client.call(Method::GET, &p, None).await?;
        let mut svc: Service = serde_json::from_value(current.clone())?;
        edit(&mut svc, &a.edit)?;
        if !a.traffic.is_empty() || !a.tags.is_empty() || !a.untags.is_empty() {
            let spec_traffic = svc.spec.traffic.clone().unwrap_or_default();
            svc.spec.traffic = Some(traffic::compute(
                &spec_traffic,
                &a.traffic,
                &a.tags,
                &a.untags,
            )?);
        }
        let mut body = serde_json::to_value(svc.to_dynamic())?;
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        match client.call(Method::PUT, &p, Some(&body)).await {
            Ok(updated) => break (current, updated),
            Err(e)
                if attempts < 5
                    && e.downcast_ref::<ServerError>()
                        .is_some_and(|s| s.reason == "Conflict") => {}
            Err(e) => return Err(e),
        }
    };
    let previous = before["status"]["latestReadyRevisionName"]
        .as_str()
        .map(str::to_string);
    let created = before["status"]["latestCreatedRevisionName"].as_str();
    if before["metadata"]["generation"] == after["metadata"]["generation"] {
        let url = before["status"]["url"].as_str().unwrap_or("");
        println!(
            "Service '{}' with latest revision '{}' (unchanged) is available at URL:\n{url}",
            a.name,
            previous.as_deref().unwrap_or("")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let p = Progress {
        doing: "Updating",
        done: "updated",
        previous_revision: previous.as_deref(),
        previous_created: created,
    };
    finish_wait(client, &a.namespace, &a.name, &a.wait, p).await
}

pub async fn delete(client: &Client, a: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in &a.names {
        match client
            .call(Method::DELETE, &path(&a.namespace, Some(name)), None)
            .await
        {
            Ok(_) => println!(
                "Service '{name}' successfully deleted in namespace '{}'.",
                a.namespace
            ),
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_edit_the_template() {
        let mut svc = Service::default();
        let f = EditFlags {
            image: Some("img".into()),
            env: vec!["A=1".into(), "B=2".into(), "A-".into()],
            port: Some("h2c:9000".into()),
            annotations: vec!["team=x".into(), "autoscaling.knative.dev/target=5".into()],
            scale_min: Some(1),
            concurrency_limit: Some(10),
            ..Default::default()
        };
        assert!(edit(&mut svc, &f).unwrap());
        let c = &svc.spec.template.spec.pod.containers[0];
        assert_eq!(c.image, "img");
        assert_eq!(c.env.len(), 1);
        assert_eq!(c.env[0].name, "B");
        assert_eq!(c.ports[0].name.as_deref(), Some("h2c"));
        assert_eq!(c.ports[0].container_port, 9000);
        assert_eq!(svc.spec.template.spec.container_concurrency, Some(10));
        let ann = &svc.spec.template.metadata.annotations;
        assert_eq!(ann["autoscaling.knative.dev/min-scale"], "1");
        assert_eq!(ann["autoscaling.knative.dev/target"], "5");
        assert_eq!(svc.metadata.annotations.len(), 1);
        // Nothing new: unchanged.
        assert!(!edit(&mut svc, &EditFlags::default()).unwrap());
        assert!(key_value("nope", "--env").is_err());
    }
}
