//! Deterministic weighted split: smooth weighted round-robin (nginx's
//! algorithm) unrolled into a schedule once per routing snapshot, so the hot
//! path picks with one atomic increment and no lock. Over any window of
//! `sum(weights)` consecutive requests every target gets exactly its weight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Split {
    /// Target index per slot; empty when there is exactly one target.
    schedule: Box<[u16]>,
    /// Where in the schedule the next request is; may be shared with the
    /// same split of earlier snapshots, so that rebuilding the table does
    /// not restart the window.
    next: Arc<AtomicUsize>,
}

impl Split {
    /// `weights[i]` is target i's share; zero weights never get picked. At
    /// least one weight must be positive (otherwise target 0 always wins).
    pub fn new(weights: &[u32]) -> Split {
        Split::with_counter(weights, Arc::default())
    }

    /// Like [`Split::new`], continuing from `next` (kept across snapshots
    /// for the same weights).
    pub fn with_counter(weights: &[u32], next: Arc<AtomicUsize>) -> Split {
        let positive = weights.iter().filter(|w| **w > 0).count();
        if positive <= 1 {
            let only = weights.iter().position(|w| *w > 0).unwrap_or(0) as u16;
            return Split {
                schedule: vec![only].into_boxed_slice(),
                next,
            };
        }
        let total: i64 = weights.iter().map(|w| *w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += *w as i64;
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .expect("at least two targets");
            current[best] -= total;
            schedule.push(best as u16);
        }
        Split {
            schedule: schedule.into_boxed_slice(),
            next,
        }
    }

    /// The target for the next request.
    #[inline]
    pub fn pick(&self) -> usize {
        if self.schedule.len() == 1 {
            return self.schedule[0] as usize;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.schedule[n % self.schedule.len()] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn smooth_interleaving() {
        let s = Split::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| s.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weights_are_never_picked() {
        let s = Split::new(&[0, 100]);
        assert!((0..1000).all(|_| s.pick() == 1));
    }

    proptest! {
        /// Any window of sum(weights) requests gives each target exactly its
        /// weight, and nothing outside the targets is ever picked.
        #[test]
        fn exact_shares(weights in proptest::collection::vec(0u32..=100, 1..6), offset in 0usize..500) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let s = Split::new(&weights);
            for _ in 0..offset { s.pick(); }
            let total: u32 = weights.iter().sum();
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..total {
                let i = s.pick();
                prop_assert!(i < weights.len());
                counts[i] += 1;
            }
            if weights.iter().filter(|w| **w > 0).count() > 1 {
                prop_assert_eq!(counts, weights);
            } else {
                prop_assert!(counts.iter().zip(&weights).all(|(c, w)| (*w == 0) == (*c == 0)));
            }
        }
    }
}
