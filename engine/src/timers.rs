//! Per-core timers: a binary heap of deadlines over a fixed-capacity slab, with lazy
//! cancellation. The loop sleeps in `io_uring_enter` until the earliest deadline, so timers
//! cost no SQE.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use slab::Slab;

struct Entry<T> {
    token: T,
    gen: u32,
}

/// Bounded timers. Ids pack the slab slot and a generation, so cancelling a timer that
/// already fired (or reusing its slot) is harmless.
pub(crate) struct Timers<T> {
    slots: Slab<Entry<T>>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    next_gen: u32,
    cap: usize,
}

impl<T> Timers<T> {
    pub fn new(cap: usize) -> Timers<T> {
        Timers {
            slots: Slab::with_capacity(cap),
            heap: BinaryHeap::with_capacity(cap * 2),
            next_gen: 0,
            cap,
        }
    }

    /// Arms a timer; `None` when `cap` timers are armed.
    pub fn add(&mut self, at: Instant, token: T) -> Option<u64> {
        if self.slots.len() >= self.cap {
            return None;
        }
        if self.heap.len() >= self.cap * 2 {
            self.compact();
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let key = self.slots.insert(Entry { token, gen }) as u32;
        self.heap.push(Reverse((at, key, gen)));
        Some((gen as u64) << 32 | key as u64)
    }

    /// Disarms a timer; false when it already fired or was cancelled.
    pub fn cancel(&mut self, id: u64) -> bool {
        let (key, gen) = (id as u32 as usize, (id >> 32) as u32);
        match self.slots.get(key) {
            Some(e) if e.gen == gen => {
                self.slots.remove(key);
                true
            }
            _ => false,
        }
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key, gen))) = self.heap.peek().copied() {
            if self.live(key, gen) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one timer due at `now`: `(id, token)`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(u64, T)> {
        while let Some(Reverse((at, key, gen))) = self.heap.peek().copied() {
            if !self.live(key, gen) {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            let e = self.slots.remove(key as usize);
            return Some(((gen as u64) << 32 | key as u64, e.token));
        }
        None
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn live(&self, key: u32, gen: u32) -> bool {
        self.slots.get(key as usize).is_some_and(|e| e.gen == gen)
    }

    /// Drops cancelled entries from the heap (they are otherwise removed lazily).
    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap.retain(|Reverse((_, key, gen))| {
            slots.get(*key as usize).is_some_and(|e| e.gen == *gen)
        });
    }
}

/// A `timespec` for `io_uring_enter`'s timeout argument.
pub(crate) fn timespec(d: Duration) -> io_uring::types::Timespec {
    io_uring::types::Timespec::new()
        .sec(d.as_secs())
        .nsec(d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_and_skips_cancelled() {
        let t0 = Instant::now();
        let mut t = Timers::new(4);
        let a = t.add(t0 + Duration::from_millis(30), 1).unwrap();
        let b = t.add(t0 + Duration::from_millis(10), 2).unwrap();
        let _c = t.add(t0 + Duration::from_millis(20), 3).unwrap();
        assert!(t.cancel(b));
        assert!(!t.cancel(b), "second cancel is a no-op");
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(20)));
        assert_eq!(
            t.pop_due(t0 + Duration::from_millis(25)).map(|x| x.1),
            Some(3)
        );
        assert_eq!(t.pop_due(t0 + Duration::from_millis(25)), None);
        assert_eq!(t.pop_due(t0 + Duration::from_millis(40)), Some((a, 1)));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn bounded_and_compacts() {
        let t0 = Instant::now();
        let mut t = Timers::new(2);
        for i in 0..1000 {
            let id = t.add(t0, i).unwrap();
            assert!(t.cancel(id));
        }
        assert!(t.heap.len() <= 4);
        t.add(t0, 1).unwrap();
        t.add(t0, 2).unwrap();
        assert!(t.add(t0, 3).is_none(), "third timer refused at the bound");
    }
}
