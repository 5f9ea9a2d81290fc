//! A per-thread random source for the hot path (fault percentages, RANDOM
//! and least-request load balancing, backoff jitter): xorshift64* seeded
//! once per thread, no lock, no syscall per draw. Not for secrets.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // RandomState's keys come from the OS once per thread and change with
    // every instance: hashing nothing with them is a random seed.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1
}

/// The next 64 random bits of this thread's generator.
#[inline]
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Uniform in `0..n` (`n > 0`), by multiply-shift (no modulo bias worth
/// speaking of for the small `n` used here).
#[inline]
pub fn below(n: u64) -> u64 {
    ((u128::from(next_u64()) * u128::from(n)) >> 64) as u64
}

/// A roll in parts per million, `0..1_000_000`, for percentages.
#[inline]
pub fn ppm_roll() -> u32 {
    below(1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_varied() {
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let v = below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every bucket is hit in 10k draws");
        assert!((0..1000).all(|_| ppm_roll() < 1_000_000));
        assert_ne!(next_u64(), next_u64());
    }
}
