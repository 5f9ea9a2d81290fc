//! kn-style verbs: `skiff service create|update|delete|list|describe`,
//! `skiff revision list`, `skiff route list`, with kn's flags and output.

mod lists;
mod service;
mod traffic;
mod wait;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::client::Client;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Create a service and wait until it is ready.
    Create(CreateArgs),
    /// Update a service (a new revision when the template changes, traffic
    /// and tags) and wait until it is ready.
    Update(UpdateArgs),
    /// Delete services and everything they own.
    Delete(DeleteArgs),
    /// List services.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show a service: URLs, revisions and traffic, conditions, events.
    Describe(NameArgs),
}

#[derive(Subcommand)]
pub enum RevisionCommand {
    /// List revisions, with their traffic and tags.
    #[command(alias = "ls")]
    List(RevisionListArgs),
}

#[derive(Subcommand)]
pub enum RouteCommand {
    /// List routes.
    #[command(alias = "ls")]
    List(ListArgs),
}

/// The template flags of create and update (kn's ConfigurationEditFlags).
#[derive(Args, Default)]
pub struct EditFlags {
    /// Image to run.
    #[arg(long)]
    pub image: Option<String>,
    /// Command (entrypoint) instead of the image's; repeat for its words.
    #[arg(long = "cmd", value_name = "CMD", allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// Argument of the command; repeat for more.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Environment variable `KEY=VALUE` (`KEY-` removes it); repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The port the container listens on (`8080`, or `h2c:8080`).
    #[arg(short, long)]
    pub port: Option<String>,
    /// Annotation `KEY=VALUE` (`KEY-` removes it) on the Service and its
    /// revisions (autoscaling ones on revisions only); repeatable.
    #[arg(short, long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Minimum number of instances (autoscaling.knative.dev/min-scale).
    #[arg(long)]
    pub scale_min: Option<u32>,
    /// Maximum number of instances (autoscaling.knative.dev/max-scale).
    #[arg(long)]
    pub scale_max: Option<u32>,
    /// Hard limit of concurrent requests per instance (containerConcurrency).
    #[arg(long)]
    pub concurrency_limit: Option<i64>,
    /// Name of the new revision (must start with `SERVICE-`).
    #[arg(long)]
    pub revision_name: Option<String>,
}

#[derive(Args)]
pub struct WaitFlags {
    /// Do not wait for the service to become ready.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for readiness.
    #[arg(long, default_value_t = 600)]
    pub wait_timeout: u64,
}

#[derive(Args)]
pub struct CreateArgs {
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub edit: EditFlags,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Args)]
pub struct UpdateArgs {
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub edit: EditFlags,
    /// Traffic split `REVISION=PERCENT`, `TAG=PERCENT` or `@latest=PERCENT`;
    /// repeatable.
    #[arg(long = "traffic", value_name = "REF=PERCENT")]
    pub traffic: Vec<String>,
    /// Tag a revision `REVISION=TAG` (`@latest=TAG`); repeatable.
    #[arg(long = "tag", value_name = "REVISION=TAG")]
    pub tags: Vec<String>,
    /// Remove a tag; repeatable.
    #[arg(long = "untag", value_name = "TAG")]
    pub untags: Vec<String>,
    #[command(flatten)]
    pub wait: WaitFlags,
}

#[derive(Args)]
pub struct DeleteArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Args)]
pub struct NameArgs {
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Args)]
pub struct RevisionListArgs {
    /// Only the revisions of this service.
    #[arg(short, long)]
    pub service: Option<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

pub async fn service(client: &Client, cmd: &ServiceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCommand::Create(a) => service::create(client, a).await,
        ServiceCommand::Update(a) => service::update(client, a).await,
        ServiceCommand::Delete(a) => service::delete(client, a).await,
        ServiceCommand::List(a) => lists::services(client, a).await,
        ServiceCommand::Describe(a) => {
            print!(
                "{}",
                super::describe::describe_service(client, &a.namespace, &a.name).await?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn revision(client: &Client, cmd: &RevisionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RevisionCommand::List(a) => lists::revisions(client, a).await,
    }
}

pub async fn route(client: &Client, cmd: &RouteCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RouteCommand::List(a) => lists::routes(client, a).await,
    }
}
