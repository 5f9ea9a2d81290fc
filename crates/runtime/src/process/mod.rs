//! The one-machine runtime: each instance is a local process in its own
//! process group, listening on a port Skiff picked for it (`$PORT`).

mod instance;
mod logs;
mod ports;
mod reap;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use skiff_api::FieldError;
use skiff_api::serving::{Revision, RevisionSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::image_map::ImageMap;
use crate::state::{
    Failure, InstanceId, InstanceState, Phase, RevisionKey, RevisionState, RuntimeState,
};
use crate::workload::{self, Workload};
use crate::{BoxFuture, Drainer, Runtime};

pub use reap::reap_orphans;

pub struct ProcessRuntimeConfig {
    /// Instance logs go to `<logs_dir>/<namespace>/<revision>/<instance>.log`.
    pub logs_dir: PathBuf,
    /// Identifies this Skiff's instances (the data directory): leftovers of a
    /// killed predecessor with the same owner are reaped at start.
    pub owner: String,
    pub images: ImageMap,
    /// Environment every instance gets (the container's `env` wins), e.g.
    /// the proxy variables that point at the cluster-local listener.
    pub env: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

/// How an instance should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stop {
    Run,
    /// Drain, SIGTERM, SIGKILL after the grace period.
    Graceful,
    /// SIGKILL now.
    Now,
}

pub(crate) struct Inner {
    config: ProcessRuntimeConfig,
    drainer: Arc<dyn Drainer>,
    table: Mutex<Table>,
    state: watch::Sender<Arc<RuntimeState>>,
    shutting_down: AtomicBool,
    ports: ports::PortBook,
}

#[derive(Default)]
struct Table {
    version: u64,
    revisions: BTreeMap<RevisionKey, Entry>,
}

struct Entry {
    workload: Option<Arc<Workload>>,
    /// Set by `remove`: forget the entry once its last instance is gone.
    removing: bool,
    next_id: u64,
    handles: BTreeMap<InstanceId, Handle>,
    state: RevisionState,
}

struct Handle {
    stop: watch::Sender<Stop>,
    task: Option<JoinHandle<()>>,
}

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig, drainer: Arc<dyn Drainer>) -> ProcessRuntime {
        let found = reap_orphans(&config.owner);
        if found > 0 {
            tracing::warn!(found, "stopped instances of a previous run");
        }
        let (state, _) = watch::channel(Arc::new(RuntimeState::default()));
        ProcessRuntime {
            inner: Arc::new(Inner {
                config,
                drainer,
                table: Mutex::new(Table::default()),
                state,
                shutting_down: AtomicBool::new(false),
                ports: ports::PortBook::default(),
            }),
        }
    }

    /// Log files of a revision's instances (existing ones, sorted).
    pub fn log_files(&self, revision: &RevisionKey) -> Vec<PathBuf> {
        let dir = self.inner.log_dir(revision);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    fn reconcile(&self, key: &RevisionKey, table: &mut Table) {
        let Some(entry) = table.revisions.get_mut(key) else {
            return;
        };
        let active: Vec<InstanceId> = entry
            .handles
            .iter()
            .filter(|(_, h)| *h.stop.borrow() == Stop::Run)
            .map(|(id, _)| *id)
            .collect();
        let desired = entry.state.desired as usize;
        if active.len() < desired {
            let Some(workload) = entry.workload.clone() else {
                return;
            };
            for _ in active.len()..desired {
                entry.next_id += 1;
                let id = InstanceId(entry.next_id);
                let (stop, stop_rx) = watch::channel(Stop::Run);
                let task = tokio::spawn(
                    instance::Supervisor {
                        inner: self.inner.clone(),
                        key: key.clone(),
                        id,
                        workload: workload.clone(),
                        stop: stop_rx,
                        start_failures: Default::default(),
                    }
                    .run(),
                );
                entry.handles.insert(
                    id,
                    Handle {
                        stop,
                        task: Some(task),
                    },
                );
            }
        } else if active.len() > desired {
            // Stop instances that serve nothing first, then the newest.
            let surplus = active.len() - desired;
            let mut victims = active;
            let phase = |id: &InstanceId| {
                entry
                    .state
                    .instances
                    .iter()
                    .find(|i| i.id == *id)
                    .map(|i| i.phase)
            };
            victims.sort_by_key(|id| (phase(id) == Some(Phase::Ready), std::cmp::Reverse(*id)));
            for id in victims.into_iter().take(surplus) {
                if let Some(h) = entry.handles.get(&id) {
                    h.stop.send_replace(Stop::Graceful);
                }
            }
        }
    }
}

impl Inner {
    fn log_dir(&self, key: &RevisionKey) -> PathBuf {
        self.config.logs_dir.join(&key.namespace).join(&key.name)
    }

    /// Mutate a revision's state and publish the result.
    fn update(&self, key: &RevisionKey, f: impl FnOnce(&mut RevisionState)) {
        let mut table = self.table.lock().expect("runtime table lock");
        let Some(entry) = table.revisions.get_mut(key) else {
            return;
        };
        let before = entry.state.clone();
        f(&mut entry.state);
        if entry.state != before {
            publish(&self.state, &mut table);
        }
    }

    pub(crate) fn set_instance(&self, key: &RevisionKey, inst: InstanceState) {
        self.update(key, |s| {
            if inst.phase == Phase::Ready {
                s.ever_ready = true;
            }
            match s.instances.iter_mut().find(|i| i.id == inst.id) {
                Some(i) => *i = inst,
                None => {
                    s.instances.push(inst);
                    s.instances.sort_by_key(|i| i.id);
                }
            }
        });
    }

    pub(crate) fn set_failure(&self, key: &RevisionKey, failure: Option<Failure>) {
        self.update(key, |s| s.failure = failure);
    }

    /// A run of an instance failed: record its start-failure count and the
    /// revision's failure in one change.
    pub(crate) fn instance_failed(
        &self,
        key: &RevisionKey,
        id: InstanceId,
        start_failures: u32,
        failure: Option<Failure>,
    ) {
        self.update(key, |s| {
            if let Some(i) = s.instances.iter_mut().find(|i| i.id == id) {
                i.start_failures = start_failures;
                if i.phase == Phase::Ready || i.phase == Phase::Unready {
                    i.phase = Phase::Starting;
                }
            }
            s.failure = failure;
        });
    }

    pub(crate) fn ever_ready(&self, key: &RevisionKey) -> bool {
        let table = self.table.lock().expect("runtime table lock");
        table.revisions.get(key).is_some_and(|e| e.state.ever_ready)
    }

    /// An instance's supervisor has finished: forget it, and the revision too
    /// if it is being removed and this was its last instance.
    pub(crate) fn instance_gone(&self, key: &RevisionKey, id: InstanceId) {
        let mut table = self.table.lock().expect("runtime table lock");
        let Some(entry) = table.revisions.get_mut(key) else {
            return;
        };
        entry.handles.remove(&id);
        entry.state.instances.retain(|i| i.id != id);
        if entry.removing && entry.handles.is_empty() {
            table.revisions.remove(key);
        }
        publish(&self.state, &mut table);
    }
}

fn publish(tx: &watch::Sender<Arc<RuntimeState>>, table: &mut Table) {
    table.version += 1;
    let snapshot = RuntimeState {
        version: table.version,
        revisions: table
            .revisions
            .iter()
            .filter(|(_, e)| !e.removing)
            .map(|(k, e)| (k.clone(), e.state.clone()))
            .collect(),
    };
    tx.send_replace(Arc::new(snapshot));
}

impl Runtime for ProcessRuntime {
    fn check(&self, spec: &RevisionSpec) -> FieldError {
        workload::check(spec, &self.inner.config.images)
    }

    fn apply(&self, revision: &Revision, scale: u32) {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let key = RevisionKey::new(&revision.metadata.namespace, &revision.metadata.name);
        let resolved = workload::resolve(revision, &self.inner.config.images);
        let mut table = self.inner.table.lock().expect("runtime table lock");
        let mut changed = false;
        let entry = table.revisions.entry(key.clone()).or_insert_with(|| {
            changed = true;
            Entry {
                workload: None,
                removing: false,
                next_id: 0,
                handles: BTreeMap::new(),
                state: RevisionState::default(),
            }
        });
        let before = entry.state.clone();
        entry.removing = false;
        entry.state.desired = scale;
        match resolved {
            Ok(w) => {
                if entry.workload.as_deref() != Some(&w) {
                    entry.workload = Some(Arc::new(w));
                }
            }
            Err(e) => {
                entry.workload = None;
                entry.state.failure = Some(Failure {
                    reason: "ContainerMissing".to_string(),
                    message: format!("the process runtime cannot run this revision: {e}"),
                    before_ready: !entry.state.ever_ready,
                });
            }
        }
        changed |= entry.state != before;
        self.reconcile(&key, &mut table);
        // Applying the same desired state again is a no-op, not a change.
        if changed {
            publish(&self.inner.state, &mut table);
        }
    }

    fn remove(&self, key: &RevisionKey) {
        let mut table = self.inner.table.lock().expect("runtime table lock");
        let Some(entry) = table.revisions.get_mut(key) else {
            return;
        };
        entry.removing = true;
        entry.state.desired = 0;
        for h in entry.handles.values() {
            h.stop.send_if_modified(|s| {
                let changed = *s < Stop::Graceful;
                *s = (*s).max(Stop::Graceful);
                changed
            });
        }
        if entry.handles.is_empty() {
            table.revisions.remove(key);
        }
        publish(&self.inner.state, &mut table);
    }

    fn subscribe(&self) -> watch::Receiver<Arc<RuntimeState>> {
        self.inner.state.subscribe()
    }

    fn shutdown(&self) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.shutting_down.store(true, Ordering::SeqCst);
            let tasks: Vec<JoinHandle<()>> = {
                let mut table = inner.table.lock().expect("runtime table lock");
                let mut tasks = Vec::new();
                for entry in table.revisions.values_mut() {
                    entry.removing = true;
                    entry.state.desired = 0;
                    for h in entry.handles.values_mut() {
                        h.stop.send_if_modified(|s| {
                            let changed = *s < Stop::Graceful;
                            *s = (*s).max(Stop::Graceful);
                            changed
                        });
                        tasks.extend(h.task.take());
                    }
                }
                tasks
            };
            for t in tasks {
                let _ = t.await;
            }
        })
    }
}

impl ProcessRuntime {
    /// Skip remaining grace periods: SIGKILL every instance now (a second
    /// Ctrl-C).
    pub fn kill_all_now(&self) {
        let table = self.inner.table.lock().expect("runtime table lock");
        for entry in table.revisions.values() {
            for h in entry.handles.values() {
                h.stop.send_replace(Stop::Now);
            }
        }
    }
}
