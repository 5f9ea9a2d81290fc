//! The routing table: an immutable snapshot from hosts to weighted revisions
//! to endpoints, built by the controller and swapped in atomically.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::split::Split;

/// A revision as a traffic target.
pub struct Backend {
    /// `namespace/revision`.
    pub revision: Arc<str>,
    pub endpoints: Box<[Arc<Endpoint>]>,
    next: AtomicUsize,
    /// The revision's request timeout (`timeoutSeconds`).
    pub timeout: Duration,
    /// Why there are no endpoints, when the runtime knows.
    pub unavailable: Option<Box<str>>,
}

impl Backend {
    /// The next endpoint in round-robin order, skipping `tried` (endpoint
    /// addresses, `Arc::as_ptr as usize`) and retired
    /// ones when others are left.
    pub fn pick(&self, tried: &[usize]) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let usable =
            |e: &Arc<Endpoint>| !e.is_retired() && !tried.contains(&(Arc::as_ptr(e) as usize));
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| usable(e))
            .or_else(|| {
                // Everything was tried: a fresh connection to any live one.
                (0..n)
                    .map(|i| &self.endpoints[(start + i) % n])
                    .find(|e| !e.is_retired())
            })
    }
}

/// What a host routes to: revisions and their weights.
pub struct HostRoute {
    /// `namespace/route` (and tag), for error bodies and logs.
    pub name: Box<str>,
    split: Split,
    targets: Box<[Arc<Backend>]>,
}

impl HostRoute {
    #[inline]
    pub fn pick(&self) -> &Arc<Backend> {
        &self.targets[self.split.pick()]
    }

    pub fn targets(&self) -> &[Arc<Backend>] {
        &self.targets
    }
}

#[derive(Default)]
pub struct RoutingTable {
    pub version: u64,
    external: HashMap<Box<str>, Arc<HostRoute>>,
    local: HashMap<Box<str>, Arc<HostRoute>>,
}

impl RoutingTable {
    /// The route for `host` (lowercase, without port).
    #[inline]
    pub fn lookup(&self, host: &str, external: bool, local: bool) -> Option<&Arc<HostRoute>> {
        let found = if external {
            self.external.get(host)
        } else {
            None
        };
        found.or_else(|| if local { self.local.get(host) } else { None })
    }

    pub fn hosts(&self) -> impl Iterator<Item = (&str, bool, &Arc<HostRoute>)> {
        self.external
            .iter()
            .map(|(h, r)| (&**h, false, r))
            .chain(self.local.iter().map(|(h, r)| (&**h, true, r)))
    }
}

/// Builds a [`RoutingTable`].
#[derive(Default)]
pub struct TableBuilder {
    version: u64,
    backends: HashMap<String, Arc<Backend>>,
    external: HashMap<Box<str>, Arc<HostRoute>>,
    local: HashMap<Box<str>, Arc<HostRoute>>,
}

impl TableBuilder {
    pub fn new(version: u64) -> TableBuilder {
        TableBuilder {
            version,
            ..Default::default()
        }
    }

    /// Declare a revision (`namespace/name`) and its ready endpoints.
    pub fn backend(
        &mut self,
        revision: &str,
        endpoints: Vec<Arc<Endpoint>>,
        timeout: Duration,
        unavailable: Option<String>,
    ) {
        self.backends.insert(
            revision.to_string(),
            Arc::new(Backend {
                revision: revision.into(),
                endpoints: endpoints.into_boxed_slice(),
                next: AtomicUsize::new(0),
                timeout,
                unavailable: unavailable.map(Into::into),
            }),
        );
    }

    /// Route `hosts` to revisions by weight. `local`: served only on
    /// listeners for cluster-local traffic. Revisions not declared with
    /// [`TableBuilder::backend`] are routed to but have no endpoints.
    pub fn route(&mut self, name: &str, hosts: &[String], local: bool, targets: &[(String, u32)]) {
        if targets.is_empty() {
            return;
        }
        let backends: Vec<Arc<Backend>> = targets
            .iter()
            .map(|(rev, _)| {
                self.backends
                    .entry(rev.clone())
                    .or_insert_with(|| {
                        Arc::new(Backend {
                            revision: rev.as_str().into(),
                            endpoints: Box::new([]),
                            next: AtomicUsize::new(0),
                            timeout: Duration::from_secs(300),
                            unavailable: Some("the revision is not running".into()),
                        })
                    })
                    .clone()
            })
            .collect();
        let weights: Vec<u32> = targets.iter().map(|(_, w)| *w).collect();
        let route = Arc::new(HostRoute {
            name: name.into(),
            split: Split::new(&weights),
            targets: backends.into_boxed_slice(),
        });
        let map = if local {
            &mut self.local
        } else {
            &mut self.external
        };
        for h in hosts {
            map.insert(h.to_ascii_lowercase().into_boxed_str(), route.clone());
        }
    }

    pub fn build(self) -> RoutingTable {
        RoutingTable {
            version: self.version,
            external: self.external,
            local: self.local,
        }
    }
}
