//! `skiff delete KIND NAME...`

use std::process::ExitCode;

use http::Method;

use super::{DeleteArgs, kind_arg};
use crate::client::Client;

pub async fn run(client: &Client, args: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let kind = kind_arg(&args.kind)?;
    let mut code = ExitCode::SUCCESS;
    for name in &args.names {
        let path = format!("{}/{name}", kind.collection_path(Some(&args.namespace)));
        match client.call(Method::DELETE, &path, None).await {
            Ok(_) => println!("{}.{} {name:?} deleted", kind.singular, kind.group),
            Err(e) => {
                eprintln!("{e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}
