//! Gateway worker threads (see [`crate::worker`] for why one runtime per
//! core). Each thread runs a single-threaded tokio runtime and hands out its
//! [`Handle`]; the listener manager opens one `SO_REUSEPORT` socket per
//! worker on those handles, so a connection, its requests and its upstream
//! connections all stay on one thread.

use tokio::runtime::Handle;

use crate::alarm::AlarmThread;
use tokio::sync::watch;

/// The gateway's worker threads.
pub struct GatewayThreads {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Wakes the workers' deadline watchers; stopped after the workers.
    alarm: AlarmThread,
}

impl GatewayThreads {
    /// Start `n` workers (at least one); they run until `stop` says true.
    /// Returns once every worker's runtime is up.
    pub fn start(n: usize, stop: watch::Receiver<bool>) -> std::io::Result<GatewayThreads> {
        let n = n.max(1);
        let alarm = AlarmThread::start()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<Handle>>();
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let mut stop = stop.clone();
            let ready = ready_tx.clone();
            let alarm = alarm.alarm().clone();
            let t = std::thread::Builder::new()
                .name(format!("skiff-gateway-{i}"))
                .spawn(move || {
                    crate::worker::set_index(i + 1);
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let _ = ready.send(Ok(Handle::current()));
                        // Fires this worker's request deadlines. No tokio
                        // timer stays armed on a worker (see `alarm`).
                        tokio::spawn(crate::deadline::watcher(alarm));
                        let _ = stop.wait_for(|s| *s).await;
                    });
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(h)) => handles.push(h),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::other(
                        "a gateway thread died while starting",
                    ));
                }
            }
        }
        Ok(GatewayThreads {
            handles,
            threads,
            alarm,
        })
    }

    /// The workers' runtimes (for the listener manager).
    pub fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }

    /// Wait for every thread to finish (after `stop` was signalled; what
    /// still runs on them is dropped).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        drop(self.alarm);
    }
}
