//! Time-bucketed metric windows (Knative `aggregation/bucketing.go`): values
//! recorded in the same bucket add up; the average is linear over the valid
//! part of the window, or exponentially weighted towards recent buckets.

use std::time::Duration;

use crate::time::{Time, dur_nanos};

/// Sum of weights the weighted average aims for.
const WEIGHT_PRECISION: f64 = 0.9999;
/// Smallest decay coefficient of the weighted average.
const MIN_EXPONENT: f64 = 0.2;
/// Linear averages are rounded to this many decimals.
const PRECISION: i32 = 6;

/// How a window's buckets are averaged (`metric-aggregation-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    Linear,
    WeightedExponential,
}

/// A ring of `ceil(window / granularity)` buckets.
#[derive(Debug, Clone)]
pub struct Buckets {
    buckets: Vec<f64>,
    /// None = never written (Go's zero time).
    first_write: Option<Time>,
    last_write: Option<Time>,
    granularity: Duration,
    window: Duration,
    /// Sum of every bucket (including stale ones outside [first, last]).
    window_total: f64,
    algorithm: Algorithm,
    smoothing: f64,
}

fn bucket_count(window: Duration, granularity: Duration) -> usize {
    let g = dur_nanos(granularity).max(1) as f64;
    ((dur_nanos(window) as f64 / g).ceil() as usize).max(1)
}

fn smoothing_coeff(nb: f64) -> f64 {
    (1.0 - (1.0 - WEIGHT_PRECISION).powf(1.0 / nb)).max(MIN_EXPONENT)
}

fn round_digits(n: i32, f: f64) -> f64 {
    let p = 10f64.powi(n);
    (f * p).round() / p
}

impl Buckets {
    pub fn new(window: Duration, granularity: Duration, algorithm: Algorithm) -> Buckets {
        let nb = bucket_count(window, granularity);
        Buckets {
            buckets: vec![0.0; nb],
            first_write: None,
            last_write: None,
            granularity,
            window,
            window_total: 0.0,
            algorithm,
            smoothing: smoothing_coeff(nb as f64),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn g(&self) -> i64 {
        dur_nanos(self.granularity).max(1)
    }

    /// Go: `int(t.Unix()) / int(granularity.Seconds())`.
    fn index(&self, t: Time) -> i64 {
        let gs = (self.granularity.as_secs() as i64).max(1);
        t.unix_secs() / gs
    }

    fn slot(&self, index: i64) -> usize {
        index.rem_euclid(self.buckets.len() as i64) as usize
    }

    fn is_empty_at(&self, now: Time) -> bool {
        match self.last_write {
            None => true,
            Some(lw) => now.since(lw) > dur_nanos(self.window),
        }
    }

    /// No data recorded within the window before `now`.
    pub fn is_empty(&self, now: Time) -> bool {
        self.is_empty_at(now.truncate(self.granularity))
    }

    /// Add `value` to the bucket of `now`. Gaps since the last write count
    /// as zeros; a gap of a whole window starts over.
    pub fn record(&mut self, now: Time, value: f64) {
        let bucket_time = now.truncate(self.granularity);
        let write_idx = self.index(now);
        let window = dur_nanos(self.window);
        if self.last_write != Some(bucket_time) {
            let recent = match self.last_write {
                None => true,
                Some(lw) => bucket_time.0.saturating_add(window) > lw.0,
            };
            if !recent {
                // Older than a window before the last write.
                return;
            }
            if self.first_write.is_none_or(|fw| fw > bucket_time) {
                self.first_write = Some(bucket_time);
            }
            let newer = self.last_write.is_none_or(|lw| bucket_time > lw);
            if newer {
                let gap_is_window = self
                    .last_write
                    .is_none_or(|lw| bucket_time.since(lw) >= window);
                if gap_is_window {
                    self.first_write = Some(bucket_time);
                    self.buckets.iter_mut().for_each(|b| *b = 0.0);
                    self.window_total = 0.0;
                } else if let Some(lw) = self.last_write {
                    for i in self.index(lw) + 1..=write_idx {
                        let s = self.slot(i);
                        self.window_total -= self.buckets[s];
                        self.buckets[s] = 0.0;
                    }
                }
                self.last_write = Some(bucket_time);
            }
        }
        let s = self.slot(write_idx);
        self.buckets[s] += value;
        self.window_total += value;
    }

    /// The window's average at `now`.
    pub fn window_average(&self, now: Time) -> f64 {
        match self.algorithm {
            Algorithm::Linear => self.linear_average(now),
            Algorithm::WeightedExponential => self.weighted_average(now),
        }
    }

    fn linear_average(&self, now: Time) -> f64 {
        let now = now.truncate(self.granularity);
        let (Some(lw), Some(fw)) = (self.last_write, self.first_write) else {
            return 0.0;
        };
        let d = now.since(lw);
        let valid = (lw.since(fw) / self.g() + 1) as f64;
        let n = self.buckets.len() as f64;
        if d <= 0 {
            round_digits(PRECISION, self.window_total / valid.min(n))
        } else if d < dur_nanos(self.window) {
            let st = self.index(lw);
            let end = self.index(now);
            let mut total = self.window_total;
            for i in st + 1..=end {
                total -= self.buckets[self.slot(i)];
            }
            let nb = valid.min(n - (end - st) as f64);
            round_digits(PRECISION, total / nb)
        } else {
            0.0
        }
    }

    fn weighted_average(&self, now: Time) -> f64 {
        let now = now.truncate(self.granularity);
        if self.is_empty_at(now) {
            return 0.0;
        }
        let Some(lw) = self.last_write else {
            return 0.0;
        };
        let total = self.buckets.len() as i64;
        let mut num = total;
        let mut multiplier = self.smoothing;
        if now > lw {
            let zeros = now.since(lw) / self.g();
            multiplier *= (1.0 - self.smoothing).powi(zeros.min(i32::MAX as i64) as i32);
            num -= zeros;
        }
        let start = self.index(lw) + total;
        let mut ret = 0.0;
        for i in 0..num.max(0) {
            ret += self.buckets[self.slot(start - i)] * multiplier;
            multiplier *= 1.0 - self.smoothing;
        }
        ret
    }

    /// Change the window length, keeping the newest buckets (the `window`
    /// annotation changed).
    pub fn resize(&mut self, window: Duration, now: Time) {
        if window == self.window {
            return;
        }
        let nb = bucket_count(window, self.granularity);
        let mut fresh = vec![0.0; nb];
        let mut total = 0.0;
        let written_recently = self
            .last_write
            .is_some_and(|lw| now.truncate(self.granularity).since(lw) <= dur_nanos(self.window));
        if let (true, Some(lw)) = (written_recently, self.last_write) {
            let old = self.buckets.len();
            let mut idx = self.index(lw);
            for _ in 0..nb.min(old) {
                let v = self.buckets[idx.rem_euclid(old as i64) as usize];
                fresh[idx.rem_euclid(nb as i64) as usize] = v;
                total += v;
                idx -= 1;
            }
            self.first_write = Some(lw.sub_dur(self.granularity * (old as u32 - 1)));
        } else {
            self.first_write = None;
        }
        self.window = window;
        self.buckets = fresh;
        self.window_total = total;
        self.smoothing = smoothing_coeff(nb as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn t(s: i64) -> Time {
        Time::from_secs(s)
    }

    fn linear(window: u64) -> Buckets {
        Buckets::new(Duration::from_secs(window), S, Algorithm::Linear)
    }

    #[test]
    fn partial_window_averages_since_first_write() {
        let mut b = linear(60);
        b.record(t(1000), 10.0);
        b.record(t(1001), 20.0);
        // Two buckets written: the average is over two, not sixty.
        assert_eq!(b.window_average(t(1001)), 15.0);
        // Same bucket adds up.
        b.record(t(1001), 5.0);
        assert_eq!(b.window_average(t(1001)), 17.5);
    }

    #[test]
    fn gaps_count_as_zeros_and_a_full_gap_starts_over() {
        let mut b = linear(6);
        b.record(t(100), 6.0);
        b.record(t(103), 6.0);
        // Buckets 100..=103: 6, 0, 0, 6.
        assert_eq!(b.window_average(t(103)), 3.0);
        // Two seconds later with no write: the two newest (empty) buckets are
        // dropped from the valid span but the divisor keeps the written span.
        assert_eq!(b.window_average(t(105)), 3.0);
        // Silent for a whole window: zero.
        assert_eq!(b.window_average(t(109)), 0.0);
        assert!(b.is_empty(t(110)));
        // A write after a whole window resets first_write.
        b.record(t(120), 4.0);
        assert_eq!(b.window_average(t(120)), 4.0);
    }

    #[test]
    fn old_writes_are_ignored_and_move_first_write_back() {
        let mut b = linear(6);
        b.record(t(100), 6.0);
        b.record(t(90), 100.0); // a window before the last write: ignored
        assert_eq!(b.window_average(t(100)), 6.0);
        b.record(t(98), 3.0); // within the window: counts, first write moves back
        assert_eq!(b.window_average(t(100)), 3.0);
    }

    #[test]
    fn rounding_to_six_digits() {
        let mut b = linear(3);
        b.record(t(10), 1.0);
        b.record(t(11), 0.0);
        b.record(t(12), 0.0);
        assert_eq!(b.window_average(t(12)), 0.333333);
        let mut tiny = linear(6);
        tiny.record(t(10), 0.000001);
        tiny.record(t(15), 0.0);
        // 1e-6 / 6 rounds to 0.
        assert_eq!(tiny.window_average(t(15)), 0.0);
    }

    #[test]
    fn weighted_average_prefers_recent_buckets() {
        let mut b = Buckets::new(Duration::from_secs(4), S, Algorithm::WeightedExponential);
        // Smoothing for 4 buckets: 1 - 0.0001^(1/4) = 0.9.
        for (i, v) in [10.0, 10.0, 5.0, 5.0].into_iter().enumerate() {
            b.record(t(100 + i as i64), v);
        }
        let m: f64 = 0.9;
        let want = 5.0 * m
            + 5.0 * m * (1.0 - m)
            + 10.0 * m * (1.0 - m).powi(2)
            + 10.0 * m * (1.0 - m).powi(3);
        assert!((b.window_average(t(103)) - want).abs() < 1e-12);
        // One empty bucket since the last write: everything decays one step.
        let later = b.window_average(t(104));
        let want_later = (5.0 * m + 5.0 * m * (1.0 - m) + 10.0 * m * (1.0 - m).powi(2)) * (1.0 - m);
        assert!(
            (later - want_later).abs() < 1e-12,
            "{later} vs {want_later}"
        );
        assert_eq!(b.window_average(t(110)), 0.0);
    }

    #[test]
    fn weighted_coefficient_has_a_floor() {
        assert!((smoothing_coeff(60.0) - 0.2).abs() < 1e-12);
        assert!((smoothing_coeff(4.0) - 0.9).abs() < 1e-9);
    }

    #[test]
    fn resize_keeps_newest_buckets() {
        let mut b = linear(6);
        for i in 0..6 {
            b.record(t(100 + i), (i + 1) as f64);
        }
        b.resize(Duration::from_secs(3), t(105));
        // Newest three: 4, 5, 6.
        assert_eq!(b.window_average(t(105)), 5.0);
        b.resize(Duration::from_secs(10), t(105));
        // Growing keeps 4, 5, 6, and first_write moves back by (old-1) buckets.
        assert_eq!(b.window_average(t(105)), 5.0);
        let mut stale = linear(6);
        stale.record(t(100), 1.0);
        stale.resize(Duration::from_secs(12), t(200));
        assert!(stale.is_empty(t(200)));
    }
}
