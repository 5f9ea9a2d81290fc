//! The scale-down delay window (Knative `aggregation/max`): the maximum of
//! the values recorded in the last `ceil(delay / 2s)` two-second slots,
//! kept as a descending-maxima deque.

use std::time::Duration;

use crate::time::Time;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    value: i32,
    index: i64,
}

#[derive(Debug, Clone)]
pub struct MaxWindow {
    maxima: Vec<Entry>,
    first: usize,
    len: usize,
    granularity_secs: i64,
}

impl MaxWindow {
    pub fn new(duration: Duration, granularity: Duration) -> MaxWindow {
        let g = granularity.as_secs_f64().max(1e-9);
        let size = ((duration.as_secs_f64() / g).ceil() as usize).max(1);
        MaxWindow {
            maxima: vec![Entry::default(); size],
            first: 0,
            len: 0,
            granularity_secs: (granularity.as_secs() as i64).max(1),
        }
    }

    fn at(&self, i: usize) -> usize {
        i % self.maxima.len()
    }

    /// Record `value` at `now` (slot = whole Unix seconds / granularity).
    pub fn record(&mut self, now: Time, value: i32) {
        self.record_index(now.unix_secs() / self.granularity_secs, value);
    }

    fn record_index(&mut self, index: i64, mut value: i32) {
        // Smaller (or equal) older values can never be the maximum again.
        while self.len > 0 {
            if value < self.maxima[self.at(self.first + self.len - 1)].value {
                break;
            }
            self.len -= 1;
        }
        // Drop entries that left the window.
        while self.len > 0 && index - self.maxima[self.first].index >= self.maxima.len() as i64 {
            self.len -= 1;
            self.first = self.at(self.first + 1);
        }
        // Two values for one slot: keep the larger.
        if self.len > 0 {
            let last = self.maxima[self.at(self.first + self.len - 1)];
            if last.index == index {
                value = value.max(last.value);
                self.len -= 1;
            }
        }
        let slot = self.at(self.first + self.len);
        self.maxima[slot] = Entry { value, index };
        self.len = (self.len + 1).min(self.maxima.len());
    }

    /// The maximum over the window.
    pub fn current(&self) -> i32 {
        self.maxima[self.first].value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_maximum_for_the_delay() {
        // 6 s delay, 2 s slots: 3 slots.
        let mut w = MaxWindow::new(Duration::from_secs(6), Duration::from_secs(2));
        w.record(Time::from_secs(0), 10);
        assert_eq!(w.current(), 10);
        w.record(Time::from_secs(2), 3);
        w.record(Time::from_secs(4), 5);
        assert_eq!(w.current(), 10);
        // Slot 3: the 10 from slot 0 has left the window.
        w.record(Time::from_secs(6), 1);
        assert_eq!(w.current(), 5);
        w.record(Time::from_secs(8), 1);
        w.record(Time::from_secs(10), 1);
        assert_eq!(w.current(), 1);
        // Same slot twice: the larger value wins.
        w.record(Time::from_secs(11), 7);
        w.record(Time::from_secs(11), 2);
        assert_eq!(w.current(), 7);
    }
}
