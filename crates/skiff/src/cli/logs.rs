//! `skiff logs ksvc NAME [-f]`

use std::io::Write;
use std::process::ExitCode;

use http_body_util::BodyExt;

use super::{LogsArgs, kind_arg};
use crate::client::Client;

pub async fn run(client: &Client, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let kind = kind_arg(&args.kind)?;
    if !matches!(kind.kind, "Service" | "Configuration" | "Revision") {
        anyhow::bail!(
            "logs are kept for services, configurations and revisions, not {}",
            kind.plural
        );
    }
    let path = format!(
        "/apis/skiff.dev/v1/namespaces/{}/{}/{}/logs?follow={}",
        args.namespace, kind.plural, args.name, args.follow
    );
    let mut body = client.stream(&path).await?;
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.write_all(&data)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
