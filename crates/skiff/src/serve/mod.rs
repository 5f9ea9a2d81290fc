//! `skiff serve`: store, controller, process runtime, gateway and admin API in
//! one process, in the foreground.

mod admin;
mod admission;
mod health;
mod listeners;
mod logs;

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use skiff_controller::{Controller, GatewayDrainer, LiveConfig};
use skiff_proxy::access::{AccessLog, LogTarget};
use skiff_proxy::istio::access_log::{Encoding, LogFilter};
use skiff_proxy::listeners::ListenerManager;
use skiff_proxy::{EndpointRegistry, Gateway, GatewayThreads, HttpHandler, RoutingTable};
use skiff_runtime::Runtime;
use skiff_runtime::image_map::ImageMap;
use skiff_runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use skiff_store::SqliteStore;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::paths::{self, ServerInfo};

pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub local_listen: String,
    pub admin: String,
    pub image_map: Option<PathBuf>,
    /// Gateway worker threads (0: one per core).
    pub gateway_threads: usize,
    /// Where Gateway server ports listen, and exceptions by port.
    pub gateway_address: String,
    pub gateway_port_map: Vec<String>,
    /// `off`, `stdout` or a path; TEXT or JSON; a filter expression.
    pub access_log: String,
    pub access_log_encoding: String,
    pub access_log_filter: Option<String>,
    /// The load balancer's health check listener (`None`: off).
    pub health_listen: Option<String>,
    /// On SIGTERM, how long the gateway keeps serving with its health check
    /// failing before it closes its listeners.
    pub termination_drain: Duration,
    /// `--proxy-protocol` entries.
    pub proxy_protocol: Vec<String>,
    pub xff_trusted_hops: u32,
}

/// The access log the flags ask for (`None`: off).
fn access_log(opts: &ServeOptions) -> anyhow::Result<Option<AccessLog>> {
    let encoding = Encoding::parse(&opts.access_log_encoding)
        .map_err(|e| anyhow::anyhow!("--access-log-encoding: {e}"))?;
    let filter = opts
        .access_log_filter
        .as_deref()
        .map(LogFilter::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--access-log-filter: {e}"))?;
    if opts.access_log.eq_ignore_ascii_case("off") || opts.access_log.is_empty() {
        return Ok(None);
    }
    let target = LogTarget::parse(&opts.access_log);
    AccessLog::open(&target, encoding, filter)
        .map(Some)
        .with_context(|| format!("opening the access log {}", opts.access_log))
}

/// How long open gateway connections get to finish their requests once
/// shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let data_dir = prepare_data_dir(&opts.data_dir)?;
    let token = load_or_create_token(&data_dir)?;
    let store = SqliteStore::open(&paths::store_file(&data_dir))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;

    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let mut images = ImageMap::builtin(&exe);
    if let Some(path) = &opts.image_map {
        images.extend_from_file(path, &exe)?;
    }

    // Knative's ConfigMaps as they are in the store; reloaded on change.
    let config = LiveConfig::default();
    if let Err(e) = config.reload(&store).await {
        tracing::error!("starting with default configuration: {e}");
    }

    let gateway = Gateway::new();
    if let Some(log) = access_log(&opts)? {
        gateway.set_access_log(log);
    }
    let port_map = listeners::port_map(&opts.gateway_port_map)?;
    let front = listeners::Front {
        proxy_protocol: listeners::proxy_protocol(&opts.proxy_protocol)?,
        xff_trusted_hops: opts.xff_trusted_hops,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // The workers outlive the drain: they stop after it.
    let (workers_tx, workers_rx) = watch::channel(false);
    let threads = match opts.gateway_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let workers =
        GatewayThreads::start(threads, workers_rx).context("starting the gateway workers")?;
    let mut manager = ListenerManager::new(
        workers.handles(),
        Arc::new(HttpHandler::new(gateway.clone())),
    );
    // External routes on --listen, cluster-local ones on --local-listen.
    let (gateway_addr, local_addr) = listeners::open_defaults(
        &mut manager,
        listeners::parse_addr(&opts.listen, "gateway")?,
        listeners::parse_addr(&opts.local_listen, "cluster-local gateway")?,
        &front,
    )
    .await?;
    let plan = listeners::plan(
        gateway_addr,
        local_addr,
        &opts.gateway_address,
        port_map,
        front,
    )?;
    let live_listeners = manager.live();
    let admin_listener = bind(&opts.admin, "admin API").await?;
    let admin_addr = admin_listener.local_addr()?;
    let health_listener = match &opts.health_listen {
        Some(addr) => Some(bind(addr, "health check").await?),
        None => None,
    };
    let health_addr = health_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;

    let registry = Arc::new(Mutex::new(EndpointRegistry::default()));
    let runtime = ProcessRuntime::new(
        ProcessRuntimeConfig {
            logs_dir: paths::logs_dir(&data_dir),
            owner: data_dir.display().to_string(),
            images,
            env: instance_env(local_addr),
        },
        Arc::new(GatewayDrainer {
            gateway: gateway.clone(),
            registry: registry.clone(),
        }),
    );

    write_server_info(&data_dir, gateway_addr, local_addr, admin_addr, health_addr)?;

    println!("skiff serve: data in {}", data_dir.display());
    println!(
        "skiff serve: gateway listening on http://{gateway_addr} (HTTP/1.1 and h2c, {threads} threads)"
    );
    println!(
        "skiff serve: cluster-local gateway on http://{local_addr} (*.svc.cluster.local; instances use it as HTTP_PROXY)"
    );
    println!(
        "skiff serve: admin API on http://{admin_addr} (token in {})",
        paths::token_file(&data_dir).display()
    );
    if let Some(addr) = health_addr {
        println!(
            "skiff serve: load balancer health check on http://{addr}{}",
            health::READY_PATH
        );
    }
    let _ = std::io::stdout().flush();
    let health_task = health_listener.map(|l| tokio::spawn(health::serve(l, gateway.clone())));

    let listener_stop = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let (specs_tx, specs_rx) = tokio::sync::mpsc::unbounded_channel();
    let controller = Controller::new(
        store.clone(),
        Arc::new(runtime.clone()),
        gateway.clone(),
        registry,
        config.clone(),
    )
    .with_listeners(plan, specs_tx);
    let listener_task = tokio::spawn(listeners::run(
        manager,
        specs_rx,
        listener_stop,
        DRAIN_TIMEOUT,
    ));
    let mut metrics = prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(skiff_proxy::metrics::GatewayCollector(
        gateway.clone(),
    )));
    metrics.register_collector(Box::new(controller.autoscaling().collector()));
    let controller_task = tokio::spawn(controller.run(stopped()));
    let admin_state = Arc::new(admin::AdminState {
        store,
        runtime: runtime.clone(),
        token,
        config,
        metrics,
        gateway: gateway.clone(),
        listeners: live_listeners,
    });
    let admin_task = tokio::spawn({
        let stopped = stopped();
        async move {
            let app = admin::router(admin_state);
            if let Err(e) = axum::serve(admin_listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!("admin API failed: {e}");
            }
        }
    });

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let terminated = tokio::select! {
        _ = sigint.recv() => false,
        _ = sigterm.recv() => true,
    };
    // From here the health check fails and responses close their
    // connections; SIGTERM (an orchestrator, behind a load balancer) keeps
    // serving for the deregistration window first, Ctrl-C does not wait.
    gateway.drain().start();
    let window = if terminated {
        opts.termination_drain
    } else {
        Duration::ZERO
    };
    if !window.is_zero() {
        println!(
            "skiff serve: draining: the health check fails; still serving for {window:?} while load balancers deregister this gateway"
        );
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = tokio::time::sleep(window) => {}
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    }
    println!(
        "skiff serve: shutting down: finishing in-flight requests (signal again to stop at once)"
    );
    let _ = std::io::stdout().flush();
    let _ = stop_tx.send(true);
    let drain = async {
        // Listeners stop accepting; open connections finish their requests.
        let _ = listener_task.await;
        let _ = workers_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || workers.join()).await;
        let _ = admin_task.await;
        let _ = controller_task.await;
        // Nothing routes to instances any more: they stop without waiting
        // for the gateway.
        gateway.publish(RoutingTable::default());
        for b in gateway.backends().all() {
            b.set_endpoints(Vec::new());
        }
        runtime.shutdown().await;
    };
    tokio::pin!(drain);
    tokio::select! {
        _ = &mut drain => {}
        _ = sigint.recv() => {
            runtime.kill_all_now();
            drain.await;
        }
        _ = sigterm.recv() => {
            runtime.kill_all_now();
            drain.await;
        }
    }
    if let Some(t) = health_task {
        t.abort();
    }
    let _ = std::fs::remove_file(paths::server_file(&data_dir));
    println!("skiff serve: stopped");
    Ok(())
}

async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("{what} address {addr:?} is not IP:PORT"))?;
    TcpListener::bind(sock)
        .await
        .with_context(|| format!("cannot listen on {sock} for the {what}"))
}

fn prepare_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    let path = paths::token_file(dir);
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

/// What every instance finds in its environment: the cluster-local listener
/// as its HTTP proxy, so `http://NAME.NS.svc.cluster.local` reaches other
/// services the way it does inside a cluster (loopback stays direct).
fn instance_env(local: SocketAddr) -> Vec<(String, String)> {
    let proxy = format!("http://{local}");
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    vec![
        ("HTTP_PROXY".into(), proxy.clone()),
        ("http_proxy".into(), proxy.clone()),
        ("NO_PROXY".into(), no_proxy.clone()),
        ("no_proxy".into(), no_proxy),
        ("SKIFF_LOCAL_GATEWAY".into(), proxy),
    ]
}

fn write_server_info(
    dir: &Path,
    gateway: SocketAddr,
    local_gateway: SocketAddr,
    admin: SocketAddr,
    health: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let info = ServerInfo {
        admin: format!("http://{admin}"),
        gateway: format!("http://{gateway}"),
        local_gateway: format!("http://{local_gateway}"),
        health: health.map(|h| format!("http://{h}{}", health::READY_PATH)),
        pid: std::process::id(),
    };
    let tmp = dir.join("server.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&info)?)?;
    std::fs::rename(&tmp, paths::server_file(dir))?;
    Ok(())
}
