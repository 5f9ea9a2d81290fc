//! Gateway worker threads (see [`crate::worker`] for why one runtime per
//! core).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::server::{Gateway, ListenerScope, serve};

/// The gateway's worker threads: one single-threaded runtime per thread, each
/// accepting on its own `SO_REUSEPORT` socket bound to the same address.
pub struct GatewayThreads {
    pub addr: SocketAddr,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl GatewayThreads {
    /// Bind `addr` once per thread and start serving. Returns once every
    /// thread listens.
    pub fn start(
        addr: SocketAddr,
        threads: usize,
        gateway: Arc<Gateway>,
        scope: ListenerScope,
        shutdown: tokio::sync::watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> std::io::Result<GatewayThreads> {
        let threads = threads.max(1);
        let mut sockets = Vec::with_capacity(threads);
        let mut bound = addr;
        for _ in 0..threads {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(bound)?;
            // Port 0 picks a port once; the other sockets share it.
            bound = socket.local_addr()?;
            sockets.push(socket);
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let mut handles = Vec::with_capacity(threads);
        for (i, socket) in sockets.into_iter().enumerate() {
            let gateway = gateway.clone();
            let mut shutdown = shutdown.clone();
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
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
                        let listener = match socket.listen(4096) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready.send(Ok(()));
                        // Keep a near timer pending: tokio's timer driver
                        // wakes its own thread (an eventfd write and an extra
                        // epoll_wait) whenever a new timer is the earliest,
                        // which every request's timeout otherwise is.
                        tokio::spawn(async {
                            let mut tick = tokio::time::interval(Duration::from_secs(1));
                            loop {
                                tick.tick().await;
                            }
                        });
                        let stop = async move {
                            let _ = shutdown.wait_for(|s| *s).await;
                        };
                        serve(listener, gateway, scope, stop, drain_timeout).await;
                    });
                })?;
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::other(
                        "a gateway thread died while starting",
                    ));
                }
            }
        }
        Ok(GatewayThreads {
            addr: bound,
            handles,
        })
    }

    /// Wait for every thread to finish (after shutdown was signalled).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}
