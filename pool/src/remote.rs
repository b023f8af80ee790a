//! The bounded lock-free path by which buffers freed on other threads return to their
//! owning core.
//!
//! It is a bounded multi-producer, single-consumer ring in the style of Dmitry Vyukov's
//! bounded queue: every slot carries a sequence number that says whether it is free for
//! the producer at a position or full for the consumer at a position. Producers (any
//! thread) claim positions with a CAS on `tail`. The consumer is the owning core alone; it
//! keeps `head` in a plain cell and only loads and stores atomics, so the owner's path has
//! no read-modify-write.
//!
//! The ring holds at least as many slots as the class has buffers at the arena's cap. A
//! buffer is in the ring at most once (it can be freed again only after the owner has
//! drained it and handed it out anew), so a push always finds a slot: nothing is lost and
//! nothing waits.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Slot {
    seq: AtomicUsize,
    value: Cell<u32>,
}

pub(crate) struct ReturnQueue {
    slots: Box<[Slot]>,
    mask: usize,
    tail: AtomicUsize,
    /// Consumer position; touched only by the owning thread.
    head: Cell<usize>,
}

// SAFETY: `value` cells are written only by the producer that won the slot's position by
// CAS and read only by the consumer after it observes the slot's sequence (Release/Acquire
// pairs order the two). `head` is touched only by the owning thread: `pop` is unsafe and
// its caller promises that.
unsafe impl Sync for ReturnQueue {}
// SAFETY: as above; nothing in the queue is tied to the thread that built it.
unsafe impl Send for ReturnQueue {}

impl ReturnQueue {
    /// A queue with room for at least `capacity` entries.
    pub fn new(capacity: usize) -> ReturnQueue {
        let cap = capacity.max(2).next_power_of_two();
        let slots = (0..cap)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                value: Cell::new(0),
            })
            .collect();
        ReturnQueue {
            slots,
            mask: cap - 1,
            tail: AtomicUsize::new(0),
            head: Cell::new(0),
        }
    }

    /// Pushes from any thread. Never fails while the ring's capacity bounds the number of
    /// distinct values in flight, which the arena guarantees.
    pub fn push(&self, value: u32) {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as isize - pos as isize;
            if diff == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.value.set(value);
                        slot.seq.store(pos + 1, Ordering::Release);
                        return;
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // Full: impossible while capacity covers every buffer (see module doc).
                // Yield rather than lose the buffer if that invariant is ever broken.
                debug_assert!(false, "return queue full: capacity invariant broken");
                std::thread::yield_now();
                pos = self.tail.load(Ordering::Relaxed);
            } else {
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest entry, if a producer has finished publishing it.
    ///
    /// # Safety
    /// Only the one owning thread may call `pop`.
    pub unsafe fn pop(&self) -> Option<u32> {
        let head = self.head.get();
        let slot = &self.slots[head & self.mask];
        if slot.seq.load(Ordering::Acquire) != head + 1 {
            return None;
        }
        let value = slot.value.get();
        slot.seq.store(head + self.mask + 1, Ordering::Release);
        self.head.set(head + 1);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_and_wraparound() {
        let q = ReturnQueue::new(4);
        for round in 0..10u32 {
            for i in 0..4 {
                q.push(round * 10 + i);
            }
            for i in 0..4 {
                // SAFETY: this test thread is the only consumer.
                assert_eq!(unsafe { q.pop() }, Some(round * 10 + i));
            }
            // SAFETY: as above.
            assert_eq!(unsafe { q.pop() }, None);
        }
    }

    #[test]
    fn concurrent_producers_lose_nothing() {
        let threads = 4;
        let per = if cfg!(miri) { 20 } else { 2000 };
        let q = Arc::new(ReturnQueue::new(threads * per));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..per {
                        q.push((t * per + i) as u32);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut seen = vec![false; threads * per];
        // SAFETY: producers have joined; this thread is the only consumer.
        while let Some(v) = unsafe { q.pop() } {
            assert!(!seen[v as usize], "value {v} popped twice");
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "a pushed value was lost");
    }
}
