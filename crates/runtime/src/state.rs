use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

/// A revision, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevisionKey {
    pub namespace: String,
    pub name: String,
}

impl RevisionKey {
    pub fn new(namespace: &str, name: &str) -> RevisionKey {
        RevisionKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for RevisionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An instance of a revision; numbered from 1 per revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Spawned (or waiting to be respawned); not yet passing readiness.
    Starting,
    /// Passing readiness: may receive requests.
    Ready,
    /// Was ready, now failing its readiness probe.
    Unready,
    /// Leaving: no new requests; finishing in-flight ones, then stopped.
    Draining,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "Starting",
            Phase::Ready => "Ready",
            Phase::Unready => "Unready",
            Phase::Draining => "Draining",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceState {
    pub id: InstanceId,
    pub addr: SocketAddr,
    pub phase: Phase,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// When the current process was spawned.
    pub started: SystemTime,
    /// Whether the app speaks HTTP/2 cleartext.
    pub h2c: bool,
    /// Runs of this instance in a row that ended before passing readiness
    /// (0 once it is ready): more than zero with no instance ready means the
    /// revision cannot start now.
    pub start_failures: u32,
}

/// Why a revision's instances are not (all) running.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Knative-style reason: `ExitCode1`, `ContainerMissing`,
    /// `ProgressDeadlineExceeded`, ...
    pub reason: String,
    pub message: String,
    /// True when the revision never became ready (a failed revision) rather
    /// than a ready one losing an instance.
    pub before_ready: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RevisionState {
    pub desired: u32,
    pub instances: Vec<InstanceState>,
    /// The most recent failure, cleared when an instance becomes ready again.
    pub failure: Option<Failure>,
    /// Some instance has been ready at least once.
    pub ever_ready: bool,
}

impl RevisionState {
    pub fn ready(&self) -> impl Iterator<Item = &InstanceState> {
        self.instances.iter().filter(|i| i.phase == Phase::Ready)
    }

    pub fn ready_count(&self) -> usize {
        self.ready().count()
    }
}

/// Every revision the runtime runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeState {
    /// Bumped on every change.
    pub version: u64,
    pub revisions: BTreeMap<RevisionKey, RevisionState>,
}
