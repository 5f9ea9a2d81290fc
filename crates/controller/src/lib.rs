//! Skiff's control loop. Store changes and runtime changes become keys on a
//! level-triggered work queue; one worker reconciles them in order (Service ->
//! Configuration + Route, Configuration -> Revisions, Revision -> instances,
//! Route -> resolved traffic), then the routing table is rebuilt and
//! published to the gateway.
//!
//! The controller talks to the store and the runtime only through their
//! traits, so the same reconcilers run against SQLite locally and against the
//! Kubernetes API later.

pub mod autoscaling;
mod children;
pub mod config;
mod drain;
pub mod endpoints;
pub mod events;
pub mod gateway_listeners;
pub mod gc;
pub mod istio;
pub mod labeler;
pub mod network;
mod queue;
mod reconcile;
pub mod rollout;
mod routing;
pub mod traffic;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_api::ObjectKey;
use skiff_api::config::{AutoscalerConfig, SYSTEM_NAMESPACE};
use skiff_api::istio::{
    AuthorizationPolicy, DestinationRule, Gateway as IstioGateway, VirtualService,
};
use skiff_api::labels;
use skiff_api::object::{self, CONFIGMAP, CONFIGURATION, EVENT, REVISION, ROUTE, SERVICE};
use skiff_api::secret::{SECRET, Secret};
use skiff_api::serving::{Revision, Route};
use skiff_proxy::istio::cluster_state::ClusterStates;
use skiff_proxy::listeners::ListenerSpec;
use skiff_proxy::{EndpointRegistry, Gateway};
use skiff_runtime::{RevisionKey, RevisionState, Runtime, RuntimeState};
use skiff_store::{Event, EventType, Store, TypedStore};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

pub use autoscaling::{Autoscaling, AutoscalingCollector};

pub use config::LiveConfig;
pub use drain::GatewayDrainer;
pub use gateway_listeners::{
    KNATIVE_INGRESS_GATEWAY, KNATIVE_LOCAL_GATEWAY, ListenerPlan, ProxyProtocolListeners,
};

use queue::WorkQueue;
use reconcile::Ctx;

const RESYNC: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(1);

pub struct Controller<S: Store, R: Runtime> {
    store: S,
    runtime: Arc<R>,
    gateway: Arc<Gateway>,
    config: LiveConfig,
    registry: Arc<Mutex<EndpointRegistry>>,
    queue: WorkQueue,
    routing_dirty: bool,
    table_version: u64,
    runtime_state: Arc<RuntimeState>,
    derived: Mutex<std::collections::HashMap<ObjectKey, String>>,
    requeue: Mutex<Vec<(ObjectKey, Duration)>>,
    autoscaling: Autoscaling,
    /// Revisions whose scaling status changed (from the autoscaling loop).
    scale_status: mpsc::UnboundedReceiver<RevisionKey>,
    /// config-autoscaler as the autoscaling loop sees it, fed from the live
    /// configuration whenever it reloads.
    autoscaler_config: watch::Sender<Arc<AutoscalerConfig>>,
    /// Breakers, outlier stats and router counters by cluster name, kept
    /// across snapshots (next to the endpoint registry).
    cluster_states: ClusterStates,
    /// Where listeners go, and where their specs are sent (`skiff serve`'s
    /// listener manager); none: only Knative's routes are served.
    listeners: Option<(ListenerPlan, mpsc::UnboundedSender<Vec<ListenerSpec>>)>,
    /// Gateways or Secrets changed: the listeners must be applied again.
    listeners_dirty: bool,
    /// Problems already logged (a rebuild happens on every runtime change).
    logged: std::collections::HashSet<String>,
    /// The Istio objects and Secrets as last listed: rebuilds on runtime
    /// changes reuse them; an event of their kinds (or a resync) drops them.
    istio_cache: Option<IstioObjects>,
}

/// Istio kinds (and Secrets) that shape the routing snapshot.
fn is_istio_kind(kind: &object::ResourceKind) -> bool {
    kind.group == skiff_api::istio::NETWORKING
        || kind.group == skiff_api::istio::SECURITY
        || std::ptr::eq(kind, &SECRET)
}

impl<S: Store, R: Runtime> Controller<S, R> {
    /// `config` is the live cluster configuration (Knative's ConfigMaps); a
    /// change of config-autoscaler applies to every revision at once.
    pub fn new(
        store: S,
        runtime: Arc<R>,
        gateway: Arc<Gateway>,
        registry: Arc<Mutex<EndpointRegistry>>,
        config: LiveConfig,
    ) -> Self {
        let autoscaler = Arc::new(config.current().autoscaler.clone());
        let (autoscaler_config, _) = watch::channel(autoscaler.clone());
        let (autoscaling, scale_status) = Autoscaling::new(
            runtime.clone() as Arc<dyn Runtime>,
            gateway.clone(),
            autoscaler,
        );
        Controller {
            store,
            runtime,
            gateway,
            config,
            registry,
            queue: WorkQueue::default(),
            routing_dirty: true,
            table_version: 0,
            runtime_state: Arc::new(RuntimeState::default()),
            derived: Mutex::new(Default::default()),
            requeue: Mutex::new(Vec::new()),
            autoscaling,
            scale_status,
            autoscaler_config,
            cluster_states: ClusterStates::default(),
            listeners: None,
            listeners_dirty: true,
            logged: Default::default(),
            istio_cache: None,
        }
    }

    /// Serve Gateway servers as listeners: their specs (the default
    /// listeners' included) go to `tx` whenever Gateways or Secrets change.
    pub fn with_listeners(
        mut self,
        plan: ListenerPlan,
        tx: mpsc::UnboundedSender<Vec<ListenerSpec>>,
    ) -> Self {
        self.listeners = Some((plan, tx));
        self
    }

    /// The live configuration this controller runs under (a clone shares
    /// it): `config().current().autoscaler` is config-autoscaler now, and
    /// `config().subscribe()` wakes on every change.
    pub fn config(&self) -> LiveConfig {
        self.config.clone()
    }

    /// The autoscaler (for its metrics).
    pub fn autoscaling(&self) -> &Autoscaling {
        &self.autoscaling
    }

    /// Run until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut events = self.store.watch();
        let mut runtime_rx = self.runtime.subscribe();
        // Endpoint sets follow the runtime directly (cold starts).
        let sync = tokio::spawn(endpoints::run(
            self.gateway.clone(),
            self.registry.clone(),
            self.runtime.subscribe(),
        ));
        let (poke_tx, poke_rx) = mpsc::unbounded_channel();
        self.gateway.backends().set_poke(poke_tx);
        let (stop_tx, stop_rx) = watch::channel(false);
        let scaler = tokio::spawn(self.autoscaling.clone().run(
            poke_rx,
            self.runtime.subscribe(),
            self.autoscaler_config.subscribe(),
            async move {
                let mut rx = stop_rx;
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        self.enqueue_all().await;
        let mut resync = tokio::time::interval(RESYNC);
        resync.tick().await;
        tokio::pin!(shutdown);
        loop {
            while let Some(key) = self.queue.pop() {
                self.reconcile(key).await;
                // Keep up with runtime changes between keys (cheap).
                if runtime_rx.has_changed().unwrap_or(false) {
                    let state = runtime_rx.borrow_and_update().clone();
                    self.runtime_changed(state);
                }
            }
            if self.routing_dirty {
                self.rebuild_routing().await;
            }
            let due = self.queue.next_due();
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => self.on_event(&ev).await,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "controller fell behind the store: resyncing");
                        self.enqueue_all().await;
                    }
                    Err(RecvError::Closed) => break,
                },
                changed = runtime_rx.changed() => {
                    if changed.is_err() { break }
                    let state = runtime_rx.borrow_and_update().clone();
                    self.runtime_changed(state);
                }
                _ = resync.tick() => self.enqueue_all().await,
                Some(key) = self.scale_status.recv() => {
                    self.queue.add(ObjectKey::new(&REVISION, &key.namespace, &key.name));
                }
                _ = sleep_until(due) => {}
                _ = &mut shutdown => break,
            }
        }
        let _ = stop_tx.send(true);
        let _ = scaler.await;
        sync.abort();
    }

    fn runtime_changed(&mut self, state: Arc<RuntimeState>) {
        let empty = RevisionState::default();
        let old = &self.runtime_state.revisions;
        for (key, s) in &state.revisions {
            if old.get(key) != Some(s) {
                self.queue
                    .add(ObjectKey::new(&REVISION, &key.namespace, &key.name));
            }
        }
        for key in old.keys() {
            if !state.revisions.contains_key(key) && old.get(key) != Some(&empty) {
                self.queue
                    .add(ObjectKey::new(&REVISION, &key.namespace, &key.name));
            }
        }
        self.runtime_state = state;
        self.routing_dirty = true;
    }

    async fn enqueue_all(&mut self) {
        self.reload_config().await;
        self.istio_cache = None;
        if let Err(e) = events::prune(&self.store).await {
            tracing::warn!("cannot prune old events: {e}");
        }
        for kind in object::KINDS {
            if std::ptr::eq(*kind, &EVENT) || std::ptr::eq(*kind, &CONFIGMAP) {
                continue;
            }
            match self.store.list(kind, None).await {
                Ok(objs) => {
                    for o in objs {
                        if let Some(k) = o.key() {
                            self.queue.add(k);
                        }
                    }
                }
                Err(e) => tracing::error!("cannot list {}: {e}", kind.plural),
            }
        }
        self.routing_dirty = true;
    }

    /// Load the configuration from the store's ConfigMaps; true if it
    /// changed.
    async fn reload_config(&mut self) -> bool {
        match self.config.reload(&self.store).await {
            Ok(changed) => {
                let autoscaler = &self.config.current().autoscaler;
                self.autoscaler_config.send_if_modified(|cur| {
                    let differs = **cur != *autoscaler;
                    if differs {
                        *cur = Arc::new(autoscaler.clone());
                    }
                    differs
                });
                changed
            }
            Err(e) => {
                tracing::error!("keeping the previous configuration: {e}");
                false
            }
        }
    }

    /// Queue the changed object and everything whose state depends on it.
    async fn on_event(&mut self, ev: &Event) {
        let key = &ev.key;
        let meta = &ev.object.metadata;
        if std::ptr::eq(key.kind, &EVENT) {
            return;
        }
        if is_istio_kind(key.kind) {
            // Istio objects and Secrets have no reconciler: they shape the
            // routing snapshot (and, Gateways and Secrets, the listeners).
            self.routing_dirty = true;
            self.istio_cache = None;
            if std::ptr::eq(key.kind, &skiff_api::istio::GATEWAY) || std::ptr::eq(key.kind, &SECRET)
            {
                self.listeners_dirty = true;
            }
            return;
        }
        if std::ptr::eq(key.kind, &CONFIGMAP) {
            // A Knative ConfigMap changed: new defaults, domains, templates,
            // GC settings. Everything is re-reconciled under them.
            if key.namespace == SYSTEM_NAMESPACE && self.reload_config().await {
                tracing::info!(configmap = %key.name, "configuration reloaded");
                self.enqueue_all().await;
            }
            return;
        }
        self.queue.add(key.clone());
        let ns = &key.namespace;
        let kind = key.kind;
        if std::ptr::eq(kind, &REVISION) || std::ptr::eq(kind, &CONFIGURATION) {
            if let Some(cfg) = meta.label(labels::CONFIGURATION) {
                self.queue.add(ObjectKey::new(&CONFIGURATION, ns, cfg));
            }
            if let Some(svc) = meta.label(labels::SERVICE) {
                self.queue.add(ObjectKey::new(&SERVICE, ns, svc));
            }
            // Routes may name this revision or configuration.
            match self.store.list_as::<Route>(Some(ns)).await {
                Ok(routes) => {
                    for r in routes {
                        self.queue.add(ObjectKey::new(&ROUTE, ns, &r.metadata.name));
                    }
                }
                Err(e) => tracing::error!("cannot list routes: {e}"),
            }
        }
        if std::ptr::eq(kind, &ROUTE) {
            if let Some(svc) = meta.label(labels::SERVICE) {
                self.queue.add(ObjectKey::new(&SERVICE, ns, svc));
            }
            self.routing_dirty = true;
        }
        // An owner deleted by hand is recreated by its owner's reconcile.
        if ev.event == EventType::Deleted
            && let Some(owner) = meta.controller()
            && owner.kind == "Service"
        {
            self.queue.add(ObjectKey::new(&SERVICE, ns, &owner.name));
        }
    }

    async fn reconcile(&mut self, key: ObjectKey) {
        let config = self.config.current();
        let ctx = Ctx {
            store: &self.store,
            autoscaling: &self.autoscaling,
            runtime: &*self.runtime,
            config: &config,
            runtime_state: &self.runtime_state,
            derived: &self.derived,
            requeue: &self.requeue,
        };
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let result = match key.kind.kind {
            "Service" => reconcile::service(&ctx, ns, name).await,
            "Configuration" => reconcile::configuration(&ctx, ns, name).await,
            "Revision" => reconcile::revision(&ctx, ns, name).await,
            "Route" => {
                self.routing_dirty = true;
                reconcile::route(&ctx, ns, name).await
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(object = %key, "reconcile failed, retrying: {e}");
            self.queue.add_after(key, RETRY);
        }
        let later = std::mem::take(&mut *self.requeue.lock().expect("requeue lock"));
        for (k, after) in later {
            self.queue.add_after(k, after);
        }
    }

    async fn rebuild_routing(&mut self) {
        let (routes, revisions) = match (
            self.store.list_as::<Route>(None).await,
            self.store.list_as::<Revision>(None).await,
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot list routes and revisions: {e}");
                return;
            }
        };
        let istio = match self.istio_cache.take() {
            Some(o) => o,
            None => match self.istio_objects().await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!("cannot list Istio objects: {e}");
                    return;
                }
            },
        };
        let config = self.config.current();
        let mut problems = Vec::new();
        let layouts = match &self.listeners {
            Some((plan, tx)) => {
                let (layouts, p) = gateway_listeners::layout(plan, &istio.gateways);
                problems.extend(p);
                if self.listeners_dirty {
                    let (specs, p) = gateway_listeners::specs(plan, &layouts, &istio.secrets);
                    problems.extend(p);
                    let _ = tx.send(specs);
                    self.listeners_dirty = false;
                }
                layouts
            }
            None => Vec::new(),
        };
        self.table_version += 1;
        let backends = self.gateway.backends();
        let inputs = istio::Inputs {
            routes: &routes,
            revisions: &revisions,
            gateways: &istio.gateways,
            virtual_services: &istio.virtual_services,
            destination_rules: &istio.destination_rules,
            authorization_policies: &istio.authorization_policies,
            config: &config,
        };
        let snap = routing::build(
            self.table_version,
            &inputs,
            &layouts,
            backends,
            &mut self.cluster_states,
            self.gateway.request_metrics(),
        );
        problems.extend(snap.problems);
        let names: std::collections::HashSet<String> = snap
            .table
            .istio
            .clusters
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        self.gateway.publish(snap.table);
        self.cluster_states.retain(|n| names.contains(n));
        self.gateway.request_metrics().sweep();
        // Backends of deleted revisions go (their requests fail fast).
        let existing: std::collections::HashSet<String> = revisions
            .iter()
            .map(|r| format!("{}/{}", r.metadata.namespace, r.metadata.name))
            .collect();
        backends.retain(|name| existing.contains(name));
        self.autoscaling.set_routed(snap.routed);
        let now: std::collections::HashSet<String> = problems.into_iter().collect();
        for p in now.difference(&self.logged) {
            tracing::warn!("routing: {p}");
            self.report(&istio, p).await;
        }
        self.logged = now;
        self.istio_cache = Some(istio);
        self.routing_dirty = false;
    }

    /// A Warning event on the object a routing problem is about (named by
    /// its message's prefix), so `skiff get events` shows it.
    async fn report(&self, istio: &IstioObjects, problem: &str) {
        let find = |prefix: &str| -> Option<(String, String)> {
            let rest = problem.strip_prefix(prefix)?;
            let id = rest.split([':', ' ']).next()?;
            let (ns, name) = id.split_once('/')?;
            Some((ns.to_string(), name.to_string()))
        };
        let is = |m: &skiff_api::meta::ObjectMeta, (ns, name): &(String, String)| {
            m.namespace == *ns && m.name == *name
        };
        const REASON: &str = "ConfigurationNotServed";
        let result = if let Some(id) = find("gateway ") {
            match istio.gateways.iter().find(|g| is(&g.metadata, &id)) {
                Some(g) => {
                    events::record(&self.store, g, events::WARNING, REASON, problem.to_string())
                        .await
                }
                None => Ok(()),
            }
        } else if let Some(id) = find("VirtualService ") {
            match istio.virtual_services.iter().find(|v| is(&v.metadata, &id)) {
                Some(v) => {
                    events::record(&self.store, v, events::WARNING, REASON, problem.to_string())
                        .await
                }
                None => Ok(()),
            }
        } else if let Some(id) = find("DestinationRule ") {
            match istio
                .destination_rules
                .iter()
                .find(|d| is(&d.metadata, &id))
            {
                Some(d) => {
                    events::record(&self.store, d, events::WARNING, REASON, problem.to_string())
                        .await
                }
                None => Ok(()),
            }
        } else if let Some(rest) = problem.strip_prefix("ns[") {
            // Authorization: `ns[NS]-policy[NAME]...`.
            let ns = rest.split(']').next().unwrap_or("");
            let name = rest
                .split_once("-policy[")
                .and_then(|(_, r)| r.split(']').next())
                .unwrap_or("");
            match istio
                .authorization_policies
                .iter()
                .find(|a| a.metadata.namespace == ns && a.metadata.name == name)
            {
                Some(a) => {
                    events::record(&self.store, a, events::WARNING, REASON, problem.to_string())
                        .await
                }
                None => Ok(()),
            }
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!("cannot record an event: {e}");
        }
    }

    async fn istio_objects(&self) -> Result<IstioObjects, skiff_store::StoreError> {
        Ok(IstioObjects {
            gateways: self.store.list_as::<IstioGateway>(None).await?,
            virtual_services: self.store.list_as::<VirtualService>(None).await?,
            destination_rules: self.store.list_as::<DestinationRule>(None).await?,
            authorization_policies: self.store.list_as::<AuthorizationPolicy>(None).await?,
            secrets: self.store.list_as::<Secret>(None).await?,
        })
    }
}

/// The Istio objects (and Secrets) of one rebuild.
struct IstioObjects {
    gateways: Vec<IstioGateway>,
    virtual_services: Vec<VirtualService>,
    destination_rules: Vec<DestinationRule>,
    authorization_policies: Vec<AuthorizationPolicy>,
    secrets: Vec<Secret>,
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Hosts the gateway serves now, by route (for `skiff get routes` and tests).
pub fn describe_table(gateway: &Gateway) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, local, route) in gateway.table().hosts() {
        out.entry(route.name.to_string()).or_default().push(format!(
            "{host}{}",
            if local { " (cluster-local)" } else { "" }
        ));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}
