//! The autoscaling loop: Knative's autoscaler (metric collection every
//! second, a decision every two) and the KPA reconciler (bounds,
//! scale-to-zero, the activator in or out of the path), driving the runtime
//! directly. The decisions themselves are `skiff_autoscaler`'s pure code.
//!
//! - Every second each revision's queue-proxy and activator statistics are
//!   cut and recorded into its metric windows.
//! - Every two seconds each revision's decider runs; its PodAutoscaler
//!   turns the result into an instance count for the runtime and a mode for
//!   the activator.
//! - A request at zero pokes the loop, which decides at once: no waiting for
//!   a tick, a reconcile or a store round trip on the cold-start path.
//! - Readiness changes re-run the PodAutoscaler (its Active condition).
//! - Revision status (actual/desired replicas, Active) is written by the
//!   controller's revision reconciler, which this loop enqueues on change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use skiff_api::ConditionStatus;
use skiff_api::config::AutoscalerConfig;
use skiff_api::labels;
use skiff_api::serving::Revision;
use skiff_autoscaler::decider::{DeciderStatus, ScaleResult};
use skiff_autoscaler::{
    Active, Autoscaler, Collection, Mode, PodAutoscaler, Reachability, RevisionSettings,
    ScalingMetric, Stat, Time,
};
use skiff_proxy::{Backend, Gateway};
use skiff_runtime::{RevisionKey, Runtime, RuntimeState};
use tokio::sync::{mpsc, watch};

/// Statistics are cut every second; decisions are made every other cut.
const COLLECT: Duration = Duration::from_secs(1);

fn now() -> Time {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Time(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a revision's status shows of its scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleStatus {
    /// Ready instances.
    pub actual: i32,
    /// Instances wanted (the PodAutoscaler's desired scale once known, else
    /// what the runtime was asked for).
    pub desired: i32,
    pub active: ConditionStatus,
    pub active_reason: &'static str,
    pub active_message: &'static str,
}

struct Entry {
    rev: Revision,
    settings: RevisionSettings,
    reach: Reachability,
    decider: Autoscaler,
    status: DeciderStatus,
    collection: Collection,
    pa: PodAutoscaler,
    backend: Arc<Backend>,
    ready: i32,
    requeue_at: Option<Time>,
    observed: Option<(f64, f64)>,
    published: Option<ScaleStatus>,
}

impl Entry {
    fn scale_status(&self) -> ScaleStatus {
        let (reason, message) = self.pa.active_reason();
        ScaleStatus {
            actual: self.ready,
            desired: self.pa.desired_scale().unwrap_or(self.pa.replicas()),
            active: match self.pa.active() {
                Active::Active => ConditionStatus::True,
                Active::Inactive => ConditionStatus::False,
                Active::Activating => ConditionStatus::Unknown,
            },
            active_reason: reason,
            active_message: message,
        }
    }
}

struct State {
    config: Arc<AutoscalerConfig>,
    entries: BTreeMap<RevisionKey, Entry>,
    routed: HashSet<RevisionKey>,
    ever_routed: HashSet<RevisionKey>,
    /// Ready counts from the runtime.
    ready: HashMap<RevisionKey, i32>,
}

struct Shared {
    state: Mutex<State>,
    runtime: Arc<dyn Runtime>,
    gateway: Arc<Gateway>,
    status_tx: mpsc::UnboundedSender<RevisionKey>,
    wake: tokio::sync::Notify,
}

/// Handle on the autoscaling state, shared by the controller, the loop and
/// the metrics collector.
#[derive(Clone)]
pub struct Autoscaling {
    shared: Arc<Shared>,
}

fn generation(rev: &Revision) -> i64 {
    rev.metadata
        .label(labels::CONFIGURATION_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

impl State {
    /// Knative's routingState: routed (active), no longer routed (reserve),
    /// or not yet routed (pending: the newest revision of its configuration
    /// that no route has picked up yet).
    fn reachability(&self, key: &RevisionKey, rev: &Revision) -> Reachability {
        if self.routed.contains(key) {
            return Reachability::Reachable;
        }
        if self.ever_routed.contains(key) {
            return Reachability::Unreachable;
        }
        let cfg = rev.metadata.label(labels::CONFIGURATION);
        let newer = self.entries.iter().any(|(k, e)| {
            k.namespace == key.namespace
                && e.rev.metadata.label(labels::CONFIGURATION) == cfg
                && generation(&e.rev) > generation(rev)
        });
        if newer {
            Reachability::Unreachable
        } else {
            Reachability::Unknown
        }
    }
}

impl Autoscaling {
    /// The handle and the feed of revisions whose status should be
    /// rewritten.
    pub fn new(
        runtime: Arc<dyn Runtime>,
        gateway: Arc<Gateway>,
        config: Arc<AutoscalerConfig>,
    ) -> (Autoscaling, mpsc::UnboundedReceiver<RevisionKey>) {
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        let a = Autoscaling {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    config,
                    entries: BTreeMap::new(),
                    routed: HashSet::new(),
                    ever_routed: HashSet::new(),
                    ready: HashMap::new(),
                }),
                runtime,
                gateway,
                status_tx,
                wake: tokio::sync::Notify::new(),
            }),
        };
        (a, status_rx)
    }

    /// Track `rev` (create or update its autoscaler) and run the instance
    /// count it wants now. Called by the revision reconciler.
    pub fn apply(&self, rev: &Revision) {
        let key = RevisionKey::new(&rev.metadata.namespace, &rev.metadata.name);
        let t = now();
        let mut st = lock(&self.shared.state);
        let settings = RevisionSettings::resolve(
            &st.config,
            &rev.metadata.annotations,
            rev.spec.container_concurrency,
        );
        let timeout =
            Duration::from_secs(rev.spec.timeout_seconds.filter(|t| *t > 0).unwrap_or(300) as u64);
        let reach = st.reachability(&key, rev);
        let ready = st.ready.get(&key).copied().unwrap_or(0);
        let name = format!("{}/{}", key.namespace, key.name);
        match st.entries.get_mut(&key) {
            Some(e) => {
                e.rev = rev.clone();
                if e.settings != settings || e.reach != reach {
                    update_settings(e, settings, reach, t);
                }
            }
            None => {
                let backend = self.shared.gateway.backends().get(&name);
                let spec = settings.decider_spec(reach != Reachability::Unreachable);
                let status = DeciderStatus::initial(&spec);
                let e = Entry {
                    rev: rev.clone(),
                    decider: Autoscaler::new(spec, Some(ready), t),
                    status,
                    collection: Collection::new(
                        settings.stable_window,
                        settings.panic_window,
                        settings.algorithm,
                        settings.scraped(),
                    ),
                    pa: PodAutoscaler::new(&settings, reach, t),
                    settings,
                    reach,
                    backend,
                    ready,
                    requeue_at: None,
                    observed: None,
                    published: None,
                };
                st.entries.insert(key.clone(), e);
            }
        }
        let e = st.entries.get_mut(&key).expect("inserted");
        e.backend
            .configure(e.settings.container_concurrency.max(0) as usize, timeout);
        let secs = |s: Option<i64>| s.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
        e.backend.set_stream_timeouts(
            secs(rev.spec.response_start_timeout_seconds),
            secs(rev.spec.idle_timeout_seconds),
        );
        if e.published.is_none() {
            // A new revision: its bounds hold from the first instance on.
            self.shared.reconcile(&key, e, t);
        }
        self.shared
            .runtime
            .apply(&e.rev, e.pa.replicas().max(0) as u32);
        e.published = Some(e.scale_status());
    }

    /// The revision is gone.
    pub fn remove(&self, key: &RevisionKey) {
        let mut st = lock(&self.shared.state);
        st.entries.remove(key);
        st.routed.remove(key);
        st.ever_routed.remove(key);
    }

    pub fn status(&self, key: &RevisionKey) -> Option<ScaleStatus> {
        let mut st = lock(&self.shared.state);
        let e = st.entries.get_mut(key)?;
        let s = e.scale_status();
        e.published = Some(s.clone());
        Some(s)
    }

    /// The revisions routes send traffic to now.
    pub fn set_routed(&self, routed: HashSet<RevisionKey>) {
        let t = now();
        let mut st = lock(&self.shared.state);
        if st.routed == routed {
            return;
        }
        st.ever_routed.extend(routed.iter().cloned());
        st.routed = routed;
        let keys: Vec<RevisionKey> = st.entries.keys().cloned().collect();
        for key in keys {
            let rev = st.entries[&key].rev.clone();
            let reach = st.reachability(&key, &rev);
            let e = st.entries.get_mut(&key).expect("listed");
            if e.reach != reach {
                tracing::info!(revision = %key, from = ?e.reach, to = ?reach, "reachability changed");
                let settings = e.settings.clone();
                update_settings(e, settings, reach, t);
                self.shared.reconcile(&key, e, t);
            }
        }
    }

    /// The cluster's config-autoscaler changed.
    fn set_config(&self, config: Arc<AutoscalerConfig>) {
        let t = now();
        let mut st = lock(&self.shared.state);
        st.config = config;
        let st = &mut *st;
        for (key, e) in st.entries.iter_mut() {
            let settings = RevisionSettings::resolve(
                &st.config,
                &e.rev.metadata.annotations,
                e.rev.spec.container_concurrency,
            );
            if settings != e.settings {
                let reach = e.reach;
                update_settings(e, settings, reach, t);
                self.shared.reconcile(key, e, t);
            }
        }
    }

    /// Run the loop until `shutdown` resolves.
    pub async fn run(
        self,
        mut pokes: mpsc::UnboundedReceiver<Arc<str>>,
        mut runtime: watch::Receiver<Arc<RuntimeState>>,
        mut config: watch::Receiver<Arc<AutoscalerConfig>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut collect = tokio::time::interval(COLLECT);
        collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cuts: u64 = 0;
        let mut config_open = true;
        tokio::pin!(shutdown);
        loop {
            let due = self.next_requeue();
            tokio::select! {
                _ = collect.tick() => {
                    let t = now();
                    self.shared.collect(t);
                    cuts += 1;
                    if cuts.is_multiple_of(2) {
                        self.shared.decide_all(t);
                    }
                }
                Some(rev) = pokes.recv() => self.shared.poke(&rev, now()),
                changed = runtime.changed() => {
                    if changed.is_err() { break }
                    let state = runtime.borrow_and_update().clone();
                    self.shared.runtime_changed(&state, now());
                }
                changed = config.changed(), if config_open => {
                    if changed.is_ok() {
                        let c = config.borrow_and_update().clone();
                        self.set_config(c);
                    } else {
                        config_open = false;
                    }
                }
                _ = sleep_until(due) => self.shared.requeue_due(now()),
                _ = self.shared.wake.notified() => {}
                _ = &mut shutdown => break,
            }
        }
    }

    fn next_requeue(&self) -> Option<tokio::time::Instant> {
        let st = lock(&self.shared.state);
        let t = now();
        st.entries
            .values()
            .filter_map(|e| e.requeue_at)
            .min()
            .map(|at| {
                let wait = Duration::from_nanos(at.since(t).max(0) as u64);
                tokio::time::Instant::now() + wait
            })
    }

    /// Prometheus view of the autoscaler.
    pub fn collector(&self) -> AutoscalingCollector {
        AutoscalingCollector(self.clone())
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn update_settings(e: &mut Entry, settings: RevisionSettings, reach: Reachability, t: Time) {
    e.collection.update(
        settings.stable_window,
        settings.panic_window,
        settings.scraped(),
        t,
    );
    e.decider
        .update(settings.decider_spec(reach != Reachability::Unreachable));
    e.settings = settings;
    e.reach = reach;
}

impl Shared {
    /// Cut every revision's statistics and record them.
    fn collect(&self, t: Time) {
        let at = Instant::now();
        let mut st = lock(&self.state);
        for e in st.entries.values_mut() {
            let r = e.backend.report(at);
            if r.ready > 0 && e.settings.scraped() {
                e.collection.record(
                    t,
                    &Stat {
                        average_concurrent_requests: r.pods.average_concurrency,
                        average_proxied_concurrent_requests: r.pods.average_proxied_concurrency,
                        request_count: r.pods.requests,
                        proxied_request_count: r.pods.proxied_requests,
                    },
                );
            }
            if r.activator.average_concurrency > 0.0 || r.activator.requests > 0.0 {
                e.collection.record(
                    t,
                    &Stat {
                        average_concurrent_requests: r.activator.average_concurrency,
                        request_count: r.activator.requests,
                        ..Default::default()
                    },
                );
            }
        }
    }

    fn decide_all(&self, t: Time) {
        let mut st = lock(&self.state);
        let keys: Vec<RevisionKey> = st.entries.keys().cloned().collect();
        for key in keys {
            let e = st.entries.get_mut(&key).expect("listed");
            self.decide(&key, e, t);
        }
    }

    /// One tick of a revision's decider, then its PodAutoscaler.
    fn decide(&self, key: &RevisionKey, e: &mut Entry, t: Time) {
        let r = if e.settings.is_kpa() {
            let observed = match e.settings.metric {
                ScalingMetric::Concurrency => e.collection.stable_and_panic_concurrency(t),
                ScalingMetric::Rps => e.collection.stable_and_panic_rps(t),
            };
            e.observed = observed.ok();
            e.decider.scale(Ok::<i32, ()>(e.ready), observed, t)
        } else {
            // Other classes (HPA) are not scaled on requests here: hold
            // their lower bound.
            ScaleResult {
                desired_pod_count: e.settings.min_scale.max(e.settings.initial_scale).max(1),
                excess_burst_capacity: -1,
                scale_valid: true,
            }
        };
        e.status.update(&r);
        self.reconcile(key, e, t);
    }

    /// The PodAutoscaler's reconcile: apply a changed instance count, set
    /// the activator's mode, and have the revision status rewritten when it
    /// changed.
    fn reconcile(&self, key: &RevisionKey, e: &mut Entry, t: Time) {
        let before = e.pa.replicas();
        let d = e.pa.reconcile(&e.settings, e.reach, &e.status, e.ready, t);
        e.backend.set_proxy_mode(d.mode == Mode::Proxy);
        e.requeue_at = d.requeue.map(|r| t.plus(r));
        if let Some(n) = d.apply {
            tracing::info!(
                revision = %key, from = before, to = n, ready = e.ready,
                reason = d.reason.as_deref().unwrap_or(""),
                metric = e.settings.metric.as_str(),
                stable = e.observed.map(|o| o.0),
                panic = e.observed.map(|o| o.1),
                target = e.settings.target,
                panicking = e.decider.panicking(),
                activator_in_path = d.mode == Mode::Proxy,
                "scaling"
            );
            self.runtime.apply(&e.rev, n.max(0) as u32);
        }
        let status = e.scale_status();
        if e.published.as_ref() != Some(&status) {
            e.published = Some(status);
            let _ = self.status_tx.send(key.clone());
        }
    }

    /// A request arrived at zero: count it and decide at once.
    fn poke(&self, revision: &str, t: Time) {
        let Some((ns, name)) = revision.split_once('/') else {
            return;
        };
        let key = RevisionKey::new(ns, name);
        let mut st = lock(&self.state);
        let Some(e) = st.entries.get_mut(&key) else {
            return;
        };
        e.collection.record(
            t,
            &Stat {
                average_concurrent_requests: 1.0,
                request_count: 1.0,
                ..Default::default()
            },
        );
        if e.status.desired_scale <= 0 {
            self.decide(&key, e, t);
        }
    }

    fn runtime_changed(&self, state: &RuntimeState, t: Time) {
        let mut st = lock(&self.state);
        st.ready = state
            .revisions
            .iter()
            .map(|(k, s)| (k.clone(), s.ready_count() as i32))
            .collect();
        let st = &mut *st;
        for (key, e) in st.entries.iter_mut() {
            let ready = st.ready.get(key).copied().unwrap_or(0);
            if ready != e.ready {
                e.ready = ready;
                self.reconcile(key, e, t);
            }
        }
    }

    fn requeue_due(&self, t: Time) {
        let mut st = lock(&self.state);
        for (key, e) in st.entries.iter_mut() {
            if e.requeue_at.is_some_and(|at| at <= t) {
                e.requeue_at = None;
                self.reconcile(key, e, t);
            }
        }
    }
}

/// Per-revision autoscaler gauges for `/metrics`.
pub struct AutoscalingCollector(Autoscaling);

impl std::fmt::Debug for AutoscalingCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AutoscalingCollector")
    }
}

impl Collector for AutoscalingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        struct Row {
            rev: String,
            desired: i64,
            actual: i64,
            requested: i64,
            panic: i64,
            ebc: i64,
            stable: f64,
            panic_value: f64,
        }
        let rows: Vec<Row> = {
            let st = lock(&self.0.shared.state);
            st.entries
                .iter()
                .map(|(k, e)| Row {
                    rev: format!("{}/{}", k.namespace, k.name),
                    desired: i64::from(e.pa.desired_scale().unwrap_or(e.pa.replicas())),
                    actual: i64::from(e.ready),
                    requested: i64::from(e.pa.replicas()),
                    panic: i64::from(e.decider.panicking()),
                    ebc: i64::from(e.status.excess_burst_capacity),
                    stable: e.observed.map_or(0.0, |o| o.0),
                    panic_value: e.observed.map_or(0.0, |o| o.1),
                })
                .collect()
        };
        type Int = fn(&Row) -> i64;
        let ints: [(&str, &str, Int); 5] = [
            (
                "skiff_autoscaler_desired_pods",
                "Instances the autoscaler wants for the revision",
                |r| r.desired,
            ),
            (
                "skiff_autoscaler_actual_pods",
                "Ready instances of the revision",
                |r| r.actual,
            ),
            (
                "skiff_autoscaler_requested_pods",
                "Instances the runtime is asked to run (after bounds and scale-to-zero)",
                |r| r.requested,
            ),
            (
                "skiff_autoscaler_panic_mode",
                "1 while the revision's autoscaler is in panic mode",
                |r| r.panic,
            ),
            (
                "skiff_autoscaler_excess_burst_capacity",
                "Spare capacity beyond the target burst capacity (negative: the activator stays in the path)",
                |r| r.ebc,
            ),
        ];
        for (name, help, f) in ints {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for r in &rows {
                ConstGauge::new(f(r))
                    .encode(family.encode_family(&[("revision", r.rev.as_str())])?)?;
            }
        }
        type Float = fn(&Row) -> f64;
        let floats: [(&str, &str, Float); 2] = [
            (
                "skiff_autoscaler_stable_metric",
                "The stable-window average the last decision saw (revision total)",
                |r| r.stable,
            ),
            (
                "skiff_autoscaler_panic_metric",
                "The panic-window average the last decision saw (revision total)",
                |r| r.panic_value,
            ),
        ];
        for (name, help, f) in floats {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for r in &rows {
                ConstGauge::new(f(r))
                    .encode(family.encode_family(&[("revision", r.rev.as_str())])?)?;
            }
        }
        Ok(())
    }
}
