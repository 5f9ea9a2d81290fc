//! A level-triggered work queue: keys, deduplicated, processed in order of
//! arrival. Reconcilers are idempotent, so a key queued twice runs once.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use skiff_api::ObjectKey;
use tokio::time::Instant;

#[derive(Default)]
pub struct WorkQueue {
    order: VecDeque<ObjectKey>,
    queued: HashSet<ObjectKey>,
    /// Keys to retry later, by due time.
    delayed: BTreeMap<(Instant, u64), ObjectKey>,
    seq: u64,
}

impl WorkQueue {
    pub fn add(&mut self, key: ObjectKey) {
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    pub fn add_after(&mut self, key: ObjectKey, delay: Duration) {
        self.seq += 1;
        self.delayed.insert((Instant::now() + delay, self.seq), key);
    }

    pub fn pop(&mut self) -> Option<ObjectKey> {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.add(key);
        }
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    /// When the earliest delayed key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.keys().next().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::object::SERVICE;

    #[test]
    fn dedups_and_keeps_order() {
        let k = |n: &str| ObjectKey::new(&SERVICE, "default", n);
        let mut q = WorkQueue::default();
        q.add(k("a"));
        q.add(k("b"));
        q.add(k("a"));
        assert_eq!(q.pop(), Some(k("a")));
        q.add(k("a"));
        assert_eq!(q.pop(), Some(k("b")));
        assert_eq!(q.pop(), Some(k("a")));
        assert_eq!(q.pop(), None);
    }
}
