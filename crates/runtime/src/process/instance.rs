//! One instance's supervisor: spawn the process, wait for readiness, watch it,
//! restart it with backoff when it exits, and stop it gracefully when asked.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::logs::LogSink;
use super::reap::OWNER_ENV;
use super::{Inner, Stop};
use crate::probe::probe_once;
use crate::state::{Failure, InstanceId, InstanceState, Phase, RevisionKey};
use crate::workload::Workload;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An instance that stayed up this long starts its next backoff from scratch.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct Supervisor {
    pub inner: Arc<Inner>,
    pub key: RevisionKey,
    pub id: InstanceId,
    pub workload: Arc<Workload>,
    pub stop: watch::Receiver<Stop>,
    /// Runs in a row that failed before readiness.
    pub start_failures: AtomicU32,
}

/// How one run of the process ended.
enum Ended {
    /// Asked to stop; the process is gone.
    Stopped,
    /// Could not start, exited, or never became ready: retry after backoff.
    /// `ready`: the run had passed readiness.
    Failed(Failure, bool),
}

impl Supervisor {
    pub async fn run(self) {
        let log = LogSink::open(
            &self
                .inner
                .log_dir(&self.key)
                .join(format!("{}.log", self.id)),
        );
        let mut restarts = 0u32;
        let mut backoff = BACKOFF_START;
        loop {
            if *self.stop.borrow() != Stop::Run {
                break;
            }
            let started = Instant::now();
            match self.run_once(&log, restarts).await {
                Ended::Stopped => break,
                Ended::Failed(failure, ready) => {
                    tracing::warn!(
                        revision = %self.key, instance = %self.id,
                        reason = %failure.reason, "{}", failure.message
                    );
                    let n = if ready {
                        0
                    } else {
                        self.start_failures.fetch_add(1, Ordering::Relaxed) + 1
                    };
                    self.inner
                        .instance_failed(&self.key, self.id, n, Some(failure));
                }
            }
            if started.elapsed() >= BACKOFF_RESET_AFTER {
                backoff = BACKOFF_START;
            }
            restarts += 1;
            // Wait out the backoff unless asked to stop.
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopping(&mut stop, |s| s != Stop::Run) => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.inner.instance_gone(&self.key, self.id);
    }

    fn publish(&self, addr: SocketAddr, phase: Phase, pid: Option<u32>, restarts: u32) {
        self.inner.set_instance(
            &self.key,
            InstanceState {
                id: self.id,
                addr,
                phase,
                pid,
                restarts,
                started: SystemTime::now(),
                h2c: self.workload.h2c,
                start_failures: self.start_failures.load(Ordering::Relaxed),
            },
        );
    }

    async fn run_once(&self, log: &Arc<LogSink>, restarts: u32) -> Ended {
        let w = self.workload.clone();
        // Booked until this run ends, so no other instance gets it meanwhile.
        let lease = match self.inner.ports.lease() {
            Ok(l) => l,
            Err(e) => {
                return Ended::Failed(
                    Failure {
                        reason: "PortUnavailable".into(),
                        message: format!("no free port for the instance: {e}"),
                        before_ready: !self.inner.ever_ready(&self.key),
                    },
                    false,
                );
            }
        };
        let port = lease.port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // Skiff's instance environment first, so the container's env wins.
        let mut env: Vec<(String, String)> = self
            .inner
            .config
            .env
            .iter()
            .filter(|(k, _)| !w.env.iter().any(|(ck, _)| ck == k))
            .cloned()
            .collect();
        env.extend(w.env.iter().cloned());
        env.extend([
            ("PORT".to_string(), port.to_string()),
            ("K_SERVICE".to_string(), w.service.clone()),
            ("K_CONFIGURATION".to_string(), w.configuration.clone()),
            ("K_REVISION".to_string(), w.revision.clone()),
        ]);
        log.clear_tail();
        let (mut child, mut pumps) = match self.spawn(&env, log) {
            Ok(c) => c,
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    "ContainerMissing"
                } else {
                    "ContainerCannotRun"
                };
                let message = format!("cannot start command {:?}: {e}", w.program);
                log.note(&format!("skiff: {message}"));
                return Ended::Failed(
                    Failure {
                        reason: reason.into(),
                        message,
                        before_ready: !self.inner.ever_ready(&self.key),
                    },
                    false,
                );
            }
        };
        let pid = child.id();
        self.publish(addr, Phase::Starting, pid, restarts);

        let mut stop = self.stop.clone();
        // Until first ready: probe fast, watch for exit, stop and deadline.
        let spawned = Instant::now();
        let deadline = tokio::time::Instant::now() + w.progress_deadline;
        tokio::time::sleep(w.readiness.initial_delay).await;
        loop {
            let interval = startup_probe_interval(spawned.elapsed());
            let probe = async {
                let r =
                    probe_once(&w.readiness.action, addr, w.readiness.timeout, &env, w.h2c).await;
                if r.is_err() {
                    tokio::time::sleep(interval).await;
                }
                r
            };
            tokio::select! {
                status = child.wait() => {
                    drain_pumps(&mut pumps).await;
                    return Ended::Failed(self.exited(status, log, spawned.elapsed()), false);
                }
                _ = stopping(&mut stop, |s| s != Stop::Run) => {
                    self.terminate(&mut child, addr, pid, restarts).await;
                    return Ended::Stopped;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    kill_group(pid, Signal::SIGKILL);
                    let _ = child.wait().await;
                    let message = format!(
                        "Initial scale was never achieved: the instance did not pass its readiness probe within {}s (progress deadline)",
                        w.progress_deadline.as_secs()
                    );
                    log.note(&format!("skiff: {message}"));
                    return Ended::Failed(Failure {
                        reason: "ProgressDeadlineExceeded".into(),
                        message,
                        before_ready: !self.inner.ever_ready(&self.key),
                    }, false);
                }
                r = probe => if r.is_ok() { break },
            }
        }
        tracing::info!(
            revision = %self.key, instance = %self.id, %addr,
            ready_after_ms = spawned.elapsed().as_millis() as u64, "instance ready"
        );
        self.start_failures.store(0, Ordering::Relaxed);
        self.publish(addr, Phase::Ready, pid, restarts);
        self.inner.set_failure(&self.key, None);

        // Ready: periodic probes, watch for exit and stop.
        let mut failures = 0u32;
        let mut phase = Phase::Ready;
        loop {
            tokio::select! {
                status = child.wait() => {
                    drain_pumps(&mut pumps).await;
                    return Ended::Failed(self.exited(status, log, spawned.elapsed()), true);
                }
                _ = stopping(&mut stop, |s| s != Stop::Run) => {
                    self.terminate(&mut child, addr, pid, restarts).await;
                    return Ended::Stopped;
                }
                _ = tokio::time::sleep(w.readiness.period) => {
                    match probe_once(&w.readiness.action, addr, w.readiness.timeout, &env, w.h2c).await {
                        Ok(()) => {
                            failures = 0;
                            if phase != Phase::Ready {
                                phase = Phase::Ready;
                                self.publish(addr, phase, pid, restarts);
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            if failures >= w.readiness.failure_threshold && phase == Phase::Ready {
                                tracing::warn!(revision = %self.key, instance = %self.id, "readiness probe failing: {e}");
                                phase = Phase::Unready;
                                self.publish(addr, phase, pid, restarts);
                            }
                        }
                    }
                }
            }
        }
    }

    fn spawn(
        &self,
        env: &[(String, String)],
        log: &Arc<LogSink>,
    ) -> std::io::Result<(Child, Vec<tokio::task::JoinHandle<()>>)> {
        let w = &self.workload;
        let mut cmd = Command::new(&w.program);
        cmd.args(&w.args);
        // Skiff's own settings (the admin token among them) stay with Skiff.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SKIFF_") {
                cmd.env_remove(&k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env(OWNER_ENV, &self.inner.config.owner)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so signals reach everything it starts.
            .process_group(0);
        if let Some(dir) = &w.working_dir {
            cmd.current_dir(dir);
        }
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // Die with Skiff even when it is SIGKILLed.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn()?;
        let mut pumps = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(log.clone().pump(out)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(log.clone().pump(err)));
        }
        Ok((child, pumps))
    }

    fn exited(
        &self,
        status: std::io::Result<ExitStatus>,
        log: &Arc<LogSink>,
        ran: Duration,
    ) -> Failure {
        let before_ready = !self.inner.ever_ready(&self.key);
        let (reason, what) = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => (
                    format!("ExitCode{code}"),
                    format!("exited with code {code}"),
                ),
                (None, Some(sig)) => (
                    format!("ExitCode{}", 128 + sig),
                    format!(
                        "was killed by signal {sig} ({})",
                        Signal::try_from(sig).map_or("unknown", |s| s.as_str())
                    ),
                ),
                _ => ("ExitCodeUnknown".to_string(), format!("ended: {s}")),
            },
            Err(e) => (
                "ExitCodeUnknown".to_string(),
                format!("could not be waited for: {e}"),
            ),
        };
        let tail = log.tail();
        let mut message = format!(
            "process {:?} {what} after {:.1}s",
            self.workload.program,
            ran.as_secs_f64()
        );
        if tail.is_empty() {
            message.push_str(" (no output)");
        } else {
            message.push_str("; last output:\n");
            message.push_str(&tail.join("\n"));
        }
        Failure {
            reason,
            message,
            before_ready,
        }
    }

    /// Leave the endpoint sets, drain, SIGTERM, then SIGKILL after the grace
    /// period (or at once when asked to stop now).
    async fn terminate(
        &self,
        child: &mut Child,
        addr: SocketAddr,
        pid: Option<u32>,
        restarts: u32,
    ) {
        self.publish(addr, Phase::Draining, pid, restarts);
        let mut stop = self.stop.clone();
        if *stop.borrow() != Stop::Now {
            let drain = self.inner.drainer.drain(&self.key, self.id);
            tokio::select! {
                _ = drain => {}
                _ = stopping(&mut stop, |s| s == Stop::Now) => {}
                _ = child.wait() => {}
            }
        }
        if *stop.borrow() != Stop::Now {
            kill_group(pid, Signal::SIGTERM);
            tokio::select! {
                _ = child.wait() => {}
                _ = tokio::time::sleep(self.workload.termination_grace) => {
                    tracing::warn!(revision = %self.key, instance = %self.id,
                        "instance did not exit within {}s of SIGTERM: killing it",
                        self.workload.termination_grace.as_secs());
                }
                _ = stopping(&mut stop, |s| s == Stop::Now) => {}
            }
        }
        // Whatever is left of the group (the process, or what it started).
        kill_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

fn kill_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), signal);
    }
}

/// Let the log pumps reach the end of the exited process's output, so that
/// the failure message carries its last lines. Bounded: a grandchild may
/// keep the pipes open.
async fn drain_pumps(pumps: &mut Vec<tokio::task::JoinHandle<()>>) {
    let all = async {
        for p in pumps.iter_mut() {
            let _ = p.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(250), all).await;
    pumps.clear();
}

/// Fast at first (cold starts), gentler for slow starters.
fn startup_probe_interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(1) {
        Duration::from_millis(2)
    } else if elapsed < Duration::from_secs(10) {
        Duration::from_millis(25)
    } else {
        Duration::from_millis(100)
    }
}

/// Resolves when the stop signal satisfies `f` (or its sender is gone). The
/// watch guard is dropped here, so callers may await afterwards.
async fn stopping(stop: &mut watch::Receiver<Stop>, f: impl Fn(Stop) -> bool) {
    let _ = stop.wait_for(|s| f(*s)).await;
}
