//! The routing table: an immutable snapshot from hosts to weighted revisions,
//! built by the controller and swapped in atomically. A revision is its
//! long-lived [`Backend`] (instances, queue, counters), shared by every
//! snapshot that routes to it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::activator::Backend;
use crate::split::Split;

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

    /// Route `hosts` to revisions by weight. `local`: served only on
    /// listeners for cluster-local traffic.
    pub fn route(
        &mut self,
        name: &str,
        hosts: &[String],
        local: bool,
        targets: &[(Arc<Backend>, u32)],
    ) {
        if targets.is_empty() {
            return;
        }
        let weights: Vec<u32> = targets.iter().map(|(_, w)| *w).collect();
        let route = Arc::new(HostRoute {
            name: name.into(),
            split: Split::new(&weights),
            targets: targets.iter().map(|(b, _)| b.clone()).collect(),
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
