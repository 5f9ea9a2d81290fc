//! Command-line interface.

pub mod analyze;
pub mod apply;
pub mod autoscaler;
pub mod delete;
pub mod describe;
pub mod get;
pub mod kn;
pub mod logs;
pub mod proxy_config;
pub mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "Knative Serving and Istio-grade traffic management in one binary",
    long_about = "Skiff runs Knative services from unmodified Knative YAML: `skiff serve` runs the \
                  platform on this machine, the other commands talk to it."
)]
pub struct Cli {
    /// Where `skiff serve` keeps its state (store, token, logs); the CLI reads
    /// the admin token and address from here.
    #[arg(long, env = "SKIFF_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Admin API of the Skiff server to talk to (default: the one running on
    /// --data-dir).
    #[arg(long, env = "SKIFF_SERVER", global = true, value_name = "URL")]
    pub server: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the platform in the foreground: store, controller, runtime, gateway, admin API.
    Serve(ServeArgs),
    /// Create or update objects from Knative manifests (a file is applied all or nothing).
    Apply(ApplyArgs),
    /// Check manifests offline as `apply` would (Knative's admission; no server needed).
    Validate(ValidateArgs),
    /// List objects, or show one.
    Get(GetArgs),
    /// Delete objects (and everything they own).
    Delete(DeleteArgs),
    /// Show a Knative service: URLs, revisions and traffic, conditions, events.
    Describe(DescribeArgs),
    /// kn-style service commands: create, update, delete, list, describe.
    #[command(subcommand, visible_alias = "ksvc")]
    Service(Box<kn::ServiceCommand>),
    /// kn-style revision commands.
    #[command(subcommand)]
    Revision(kn::RevisionCommand),
    /// kn-style route commands.
    #[command(subcommand)]
    Route(kn::RouteCommand),
    /// Show the instances' stdout and stderr.
    Logs(LogsArgs),
    /// Find the misconfigurations behind empty replies and 503s (in what the
    /// server holds, or in manifests with -f), with evidence and fixes.
    Analyze(AnalyzeArgs),
    /// Show what the gateway is doing now (like istioctl proxy-config):
    /// routes, clusters with live circuit-breaker counts, endpoints with
    /// their health and ejections, listeners.
    #[command(name = "proxy-config", visible_alias = "pc")]
    ProxyConfig(ProxyConfigArgs),
    /// Replay or simulate the KPA autoscaler's decisions (offline).
    #[command(subcommand)]
    Autoscaler(AutoscalerCommand),
    /// Run one of the example apps built into skiff (used by the default image map).
    #[command(hide = true)]
    Example {
        #[arg(value_parser = ["hello", "autoscale"])]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AutoscalerCommand {
    /// Replay the decider: JSON on stdin (spec, init, steps), one Scale()
    /// result per step as JSON on stdout.
    Decide,
    /// What the autoscaler would do with a load trace and a service's
    /// autoscaling settings: a table of decisions, and an SVG chart.
    Simulate(SimulateArgs),
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Per-second load samples: one `value` or `t_s,value` per line
    /// (concurrency, or requests per second with the rps metric).
    #[arg(long, value_name = "FILE.csv")]
    pub trace: std::path::PathBuf,
    /// A Service (or Configuration, Revision) whose template's annotations
    /// and containerConcurrency to use; Knative's defaults without it.
    #[arg(short = 'f', long = "filename", value_name = "service.yaml")]
    pub filename: Option<std::path::PathBuf>,
    /// Write a chart of load and instances over time.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<std::path::PathBuf>,
    /// Seconds an instance takes from start to ready.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub startup_seconds: f64,
    /// Seconds of zero load simulated after the trace (default: stable
    /// window + scale-to-zero grace/retention + 10 s).
    #[arg(long, value_name = "S")]
    pub tail_seconds: Option<u64>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Gateway listener for external routes (HTTP/1.1 and h2c).
    #[arg(long, default_value = crate::paths::DEFAULT_GATEWAY, value_name = "ADDR")]
    pub listen: String,
    /// Cluster-local listener: serves only the routes' `*.svc.cluster.local`
    /// names (cluster-local routes only here). Instances reach it through
    /// `HTTP_PROXY`.
    #[arg(long, default_value = crate::paths::DEFAULT_LOCAL_GATEWAY, value_name = "ADDR")]
    pub local_listen: String,
    /// Admin API listener.
    #[arg(long, default_value = crate::paths::DEFAULT_ADMIN, value_name = "ADDR")]
    pub admin: String,
    /// YAML file mapping image references to command lines, laid over the
    /// built-in map.
    #[arg(long, value_name = "FILE")]
    pub image_map: Option<PathBuf>,
    /// Gateway worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub gateway_threads: usize,
    /// Address Istio Gateway server ports listen on (a server on port P
    /// listens on ADDRESS:P unless --gateway-port-map says otherwise).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub gateway_address: String,
    /// Listen for a Gateway server port elsewhere: PORT=IP:PORT (repeat,
    /// or separate with commas), e.g. 443=127.0.0.1:8443 to serve a
    /// Gateway's port 443 without privileges.
    #[arg(long, value_name = "PORT=ADDR", value_delimiter = ',')]
    pub gateway_port_map: Vec<String>,
    /// Access log: `off`, `stdout`, or a file path (appended to).
    #[arg(long, default_value = "off", value_name = "off|stdout|PATH")]
    pub access_log: String,
    /// Access log line format: Istio's default TEXT line or its JSON object.
    #[arg(long, default_value = "TEXT", value_name = "TEXT|JSON")]
    pub access_log_encoding: String,
    /// Only log requests for which this expression holds, as in Istio's
    /// Telemetry filter, e.g. `response.code >= 400`.
    #[arg(long, value_name = "EXPR")]
    pub access_log_filter: Option<String>,
    /// Health check for a load balancer's target group:
    /// `GET /healthz/ready` answers 200 while the gateway serves and 503
    /// once it drains. `off` to disable.
    #[arg(long, default_value = crate::paths::DEFAULT_HEALTH, value_name = "ADDR|off")]
    pub health_listen: String,
    /// On SIGTERM, keep serving this long with the health check failing
    /// (and connections told to close) before closing the listeners: at
    /// least the load balancer's deregistration time (health check
    /// interval x unhealthy threshold). Ctrl-C does not wait.
    #[arg(long, default_value = "5s", value_parser = analyze::parse_duration, value_name = "DURATION")]
    pub termination_drain_duration: std::time::Duration,
    /// Listeners that expect a PROXY protocol v1/v2 header from the load
    /// balancer: `gateway` (--listen), `local` (--local-listen) or a
    /// Gateway server port (repeat, or separate with commas).
    #[arg(long, value_name = "gateway|local|PORT", value_delimiter = ',')]
    pub proxy_protocol: Vec<String>,
    /// Proxies in front of the gateway whose X-Forwarded-For entries are
    /// trusted: the original client is the Nth address from the right
    /// (Envoy's xff_num_trusted_hops, Istio's numTrustedProxies). With 0,
    /// the client's X-Forwarded-Proto is replaced.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub xff_num_trusted_hops: u32,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Yaml,
    Json,
}

/// `skiff get -o`: like kubectl, `wide` adds columns.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GetOutput {
    Yaml,
    Json,
    /// Extra columns: for ksvc, the ready and desired instances of its
    /// revisions.
    Wide,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// Manifest file, directory of manifests, or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub files: Vec<String>,
    /// Also the manifests in subdirectories of a directory.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Namespace for objects that name none.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Validate and default on the server, store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the resulting objects.
    #[arg(short, long)]
    pub output: Option<Output>,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Manifest file, directory of manifests, or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub files: Vec<String>,
    /// Also the manifests in subdirectories of a directory.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Namespace for objects that name none.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Print the defaulted objects.
    #[arg(short, long)]
    pub output: Option<Output>,
    /// Image map to check runnability against (as `skiff serve --image-map`).
    #[arg(long, value_name = "FILE")]
    pub image_map: Option<PathBuf>,
}

#[derive(Args)]
pub struct GetArgs {
    /// ksvc | configurations | revisions | routes | configmaps | events |
    /// virtualservices (vs) | destinationrules (dr) | gateways (gw) |
    /// authorizationpolicies | peerauthentications | secrets (singular and
    /// short names work).
    pub kind: String,
    pub name: Option<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short, long)]
    pub output: Option<GetOutput>,
}

#[derive(Args)]
pub struct DeleteArgs {
    pub kind: String,
    #[arg(required = true)]
    pub names: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Args)]
pub struct DescribeArgs {
    /// ksvc (service)
    pub kind: String,
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Analyze these manifests (file, directory or `-`) instead of what the
    /// server holds; no server is needed.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub files: Vec<String>,
    /// Report only on objects of this namespace (with -f: the namespace of
    /// objects that name none). Route hosts follow the Knative ConfigMaps
    /// (config-domain, config-network) among the objects.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[arg(short, long)]
    pub output: Option<Output>,
    /// Idle timeout of the load balancer in front of the gateway (AWS NLB:
    /// 350s); 0 when there is none.
    #[arg(long, default_value = "350s", value_parser = analyze::parse_duration)]
    pub lb_idle_timeout: Option<std::time::Duration>,
    /// How long the apps keep idle connections (Node.js: 5s).
    #[arg(long, default_value = "5s", value_parser = analyze::parse_duration)]
    pub upstream_keepalive: std::time::Duration,
}

/// What `skiff proxy-config` shows.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProxyConfigKind {
    /// VirtualService rules per listener and host, and Knative's routes.
    #[value(alias = "route", alias = "r")]
    Routes,
    /// Revisions and VirtualService destinations: policy, circuit
    /// breakers, outlier detection, requests in flight and queued.
    #[value(alias = "cluster", alias = "c")]
    Clusters,
    /// Every instance in every cluster: health, ejection, counts.
    #[value(alias = "endpoint", alias = "ep")]
    Endpoints,
    /// The running listeners: addresses, TLS, Gateway servers, connections.
    #[value(alias = "listener", alias = "l")]
    Listeners,
}

#[derive(Args)]
pub struct ProxyConfigArgs {
    pub kind: ProxyConfigKind,
    /// Only clusters (and their endpoints) whose name contains this.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Only routes for hosts containing this.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    #[arg(short, long)]
    pub output: Option<Output>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// ksvc | configuration | revision
    pub kind: String,
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Keep streaming new output.
    #[arg(short, long)]
    pub follow: bool,
}

/// The kind a user named, or an error listing what exists.
pub fn kind_arg(name: &str) -> anyhow::Result<&'static skiff_api::ResourceKind> {
    skiff_api::object::by_name(name).ok_or_else(|| {
        let known: Vec<&str> = skiff_api::object::KINDS.iter().map(|k| k.plural).collect();
        anyhow::anyhow!(
            "the server doesn't have a resource type {name:?} (known: ksvc, {})",
            known.join(", ")
        )
    })
}

/// YAML for `-o yaml`.
pub fn to_yaml(v: &serde_json::Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(v)?)
}
