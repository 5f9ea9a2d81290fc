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
pub mod gc;
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
use skiff_api::labels;
use skiff_api::object::{self, CONFIGMAP, CONFIGURATION, EVENT, REVISION, ROUTE, SERVICE};
use skiff_api::serving::{Revision, Route};
use skiff_proxy::{EndpointRegistry, Gateway};
use skiff_runtime::{RevisionKey, RevisionState, Runtime, RuntimeState};
use skiff_store::{Event, EventType, Store, TypedStore};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

pub use autoscaling::{Autoscaling, AutoscalingCollector};

pub use config::LiveConfig;
pub use drain::GatewayDrainer;

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
        }
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
        let routes = match self.store.list_as::<Route>(None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot list routes: {e}");
                return;
            }
        };
        let revisions = match self.store.list_as::<Revision>(None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot list revisions: {e}");
                return;
            }
        };
        self.table_version += 1;
        let backends = self.gateway.backends();
        let (table, routed) = routing::build(
            self.table_version,
            &routes,
            backends,
            &self.config.current(),
        );
        self.gateway.publish(table);
        // Backends of deleted revisions go (their requests fail fast).
        let existing: std::collections::HashSet<String> = revisions
            .iter()
            .map(|r| format!("{}/{}", r.metadata.namespace, r.metadata.name))
            .collect();
        backends.retain(|name| existing.contains(name));
        self.autoscaling.set_routed(routed);
        self.routing_dirty = false;
    }
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
