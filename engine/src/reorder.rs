//! [`ReorderWindow`]: replies leave a connection in request order, however they complete.
//!
//! # Why (lesson 4 of the design notes)
//!
//! A pipelining client sends many requests before reading a reply, and the protocol says the
//! replies come back in the order the requests went out. Some requests are served on this
//! core, others on the core that owns their shard, so they complete out of order. A
//! Redis-compatible server once kept order by deleting the socket from epoll for every
//! command and re-adding it afterwards: one command in flight per connection, and two
//! syscalls per command. Ringfort instead numbers each request as it is parsed
//! ([`ReorderWindow::reserve`]), keeps reading (the multishot receive stays armed), stores
//! each reply under its number as it completes ([`ReorderWindow::complete`]), and sends
//! replies only from the front, in number order ([`ReorderWindow::pop_ready`]).
//!
//! # The bound, and what happens at it
//!
//! At most `capacity` requests are in flight: numbered but not yet released. The window is
//! a ring of `capacity` slots allocated once in [`ReorderWindow::new`]; sequence number `s`
//! lives in slot `s % capacity`, so reserving, completing and releasing never allocate.
//! When `capacity` requests are in flight, [`ReorderWindow::reserve`] returns
//! [`WindowFull`]: the reactor stops parsing that connection's input (bytes already
//! received stay in its receive chain, and the kernel's socket buffer and TCP flow control
//! push back on the client) until the front reply is released, then resumes. One slow
//! request therefore stalls only its own connection, and that connection's memory stays
//! bounded.
//!
//! # Closing a connection
//!
//! [`ReorderWindow::cancel_all`] drops every stored reply and forgets the outstanding
//! numbers. Replies still on their way from other cores arrive later; their
//! [`ReorderWindow::complete`] returns [`ReorderError::Cancelled`] (or
//! [`ReorderError::Released`] for numbers cancelled by an earlier `cancel_all`), and the
//! reply is dropped. Nothing panics and nothing leaks. Sequence numbers keep increasing
//! across `cancel_all`, so a window reused for a new connection never mistakes a late reply
//! for the old connection as one of its own.
//!
//! ```
//! use ringfort::reorder::ReorderWindow;
//!
//! let mut w = ReorderWindow::new(2);
//! let a = w.reserve()?;
//! let b = w.reserve()?;
//! assert!(w.reserve().is_err()); // full: stop reading this connection
//! w.complete(b, "second").unwrap();
//! assert_eq!(w.pop_ready(), None); // `a` is still outstanding
//! w.complete(a, "first").unwrap();
//! assert_eq!(w.pop_ready(), Some("first"));
//! assert_eq!(w.pop_ready(), Some("second"));
//! # Ok::<(), ringfort::reorder::WindowFull>(())
//! ```

use std::fmt;

/// A request's sequence number within its connection. Numbers start at 0 and increase by
/// one per [`ReorderWindow::reserve`]; they are never reused.
pub type Seq = u64;

/// [`ReorderWindow::reserve`] refused: `capacity` requests are already in flight. Stop
/// reading the connection until a reply is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reorder window full: {capacity} requests in flight; stop reading until one is released")]
pub struct WindowFull {
    /// The window's capacity (also the number in flight).
    pub capacity: usize,
}

/// Why [`ReorderWindow::complete`] refused a reply. The reply is dropped; the window is
/// unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReorderError {
    /// The sequence number was never issued by this window.
    #[error("reply for seq {seq}, which was never issued (the next seq is {next})")]
    NotIssued {
        /// The number given.
        seq: Seq,
        /// The next number [`ReorderWindow::reserve`] will issue.
        next: Seq,
    },
    /// The reply for this number was already sent (released by
    /// [`ReorderWindow::pop_ready`]), or the number was cancelled by a `cancel_all` before
    /// the most recent one.
    #[error("reply for seq {seq}, which was already released")]
    Released {
        /// The number given.
        seq: Seq,
    },
    /// The number was outstanding when [`ReorderWindow::cancel_all`] last ran (its
    /// connection closed). Expected for replies that race a close; safe to ignore.
    #[error("reply for seq {seq}, which was cancelled when its connection closed")]
    Cancelled {
        /// The number given.
        seq: Seq,
    },
    /// A reply for this number is already stored.
    #[error("a second reply for seq {seq}")]
    Duplicate {
        /// The number given.
        seq: Seq,
    },
}

/// Per-connection reorder window. See the module docs.
pub struct ReorderWindow<T> {
    /// Slot `s % capacity` holds the reply for outstanding seq `s` once it completes.
    slots: Box<[Option<T>]>,
    /// Lowest outstanding seq: the next one to release.
    head: Seq,
    /// Next seq to issue. `head..next` are in flight.
    next: Seq,
    /// The seqs the most recent `cancel_all` forgot (empty before the first).
    cancelled: (Seq, Seq),
}

impl<T> ReorderWindow<T> {
    /// A window that allows `capacity` requests in flight. Allocates its `capacity` slots
    /// here, once. A capacity of 0 refuses every [`reserve`](Self::reserve).
    pub fn new(capacity: usize) -> ReorderWindow<T> {
        ReorderWindow {
            slots: (0..capacity).map(|_| None).collect(),
            head: 0,
            next: 0,
            cancelled: (0, 0),
        }
    }

    /// The most requests this window allows in flight.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Requests numbered but not yet released (completed or not).
    #[inline]
    pub fn in_flight(&self) -> usize {
        // `next - head <= capacity`, which fits in a usize.
        (self.next - self.head) as usize
    }

    /// Whether [`reserve`](Self::reserve) would refuse.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.in_flight() >= self.capacity()
    }

    /// The number the next [`reserve`](Self::reserve) will issue.
    #[inline]
    pub fn next_seq(&self) -> Seq {
        self.next
    }

    #[inline]
    fn slot(&self, seq: Seq) -> usize {
        // Only called for `head <= seq < next`, so the capacity is not zero.
        (seq % self.slots.len() as u64) as usize
    }

    /// Issues the next sequence number for a newly parsed request, or [`WindowFull`] when
    /// `capacity` requests are in flight (or, after 2^64 - 1 requests, when the numbers run
    /// out, which at a billion requests a second takes 584 years).
    pub fn reserve(&mut self) -> Result<Seq, WindowFull> {
        let full = WindowFull {
            capacity: self.capacity(),
        };
        if self.is_full() {
            return Err(full);
        }
        let seq = self.next;
        self.next = seq.checked_add(1).ok_or(full)?;
        debug_assert!(self.slots[self.slot(seq)].is_none(), "reserved a live slot");
        Ok(seq)
    }

    /// Stores the reply for `seq`. It leaves through [`pop_ready`](Self::pop_ready) once
    /// every lower number has left. On error the reply is dropped and nothing changes.
    pub fn complete(&mut self, seq: Seq, reply: T) -> Result<(), ReorderError> {
        if seq >= self.next {
            return Err(ReorderError::NotIssued {
                seq,
                next: self.next,
            });
        }
        if seq < self.head {
            let (lo, hi) = self.cancelled;
            return Err(if (lo..hi).contains(&seq) {
                ReorderError::Cancelled { seq }
            } else {
                ReorderError::Released { seq }
            });
        }
        let i = self.slot(seq);
        match &mut self.slots[i] {
            Some(_) => Err(ReorderError::Duplicate { seq }),
            slot @ None => {
                *slot = Some(reply);
                Ok(())
            }
        }
    }

    /// Releases the reply for the lowest outstanding number, if it has completed; `None`
    /// when nothing is in flight or the front request is still being served.
    pub fn pop_ready(&mut self) -> Option<T> {
        if self.head == self.next {
            return None;
        }
        let i = self.slot(self.head);
        let reply = self.slots[i].take()?;
        self.head += 1;
        Some(reply)
    }

    /// Releases every reply that is ready, in order, handing each to `f`; returns how many.
    pub fn drain_ready(&mut self, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        while let Some(reply) = self.pop_ready() {
            f(reply);
            n += 1;
        }
        n
    }

    /// For connection close: drops every stored reply and releases every outstanding
    /// number without sending anything. Later [`complete`](Self::complete) calls for those
    /// numbers return [`ReorderError::Cancelled`]. Numbering continues where it was.
    pub fn cancel_all(&mut self) {
        for seq in self.head..self.next {
            let i = self.slot(seq);
            self.slots[i] = None;
        }
        self.cancelled = (self.head, self.next);
        self.head = self.next;
    }
}

impl<T> fmt::Debug for ReorderWindow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReorderWindow")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("next", &self.next)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_releases_immediately() {
        let mut w = ReorderWindow::new(4);
        for i in 0..10u64 {
            let s = w.reserve().unwrap();
            assert_eq!(s, i);
            w.complete(s, i * 10).unwrap();
            assert_eq!(w.pop_ready(), Some(i * 10));
            assert_eq!(w.in_flight(), 0);
        }
        assert_eq!(w.next_seq(), 10);
    }

    #[test]
    fn out_of_order_waits_for_the_front() {
        let mut w = ReorderWindow::new(3);
        let s: Vec<Seq> = (0..3).map(|_| w.reserve().unwrap()).collect();
        w.complete(s[2], 'c').unwrap();
        w.complete(s[1], 'b').unwrap();
        assert_eq!(w.pop_ready(), None);
        assert_eq!(w.in_flight(), 3);
        w.complete(s[0], 'a').unwrap();
        let mut out = String::new();
        assert_eq!(w.drain_ready(|c| out.push(c)), 3);
        assert_eq!(out, "abc");
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.drain_ready(|_| unreachable!()), 0);
    }

    #[test]
    fn full_at_capacity_and_reopens_on_release() {
        let mut w = ReorderWindow::new(2);
        let a = w.reserve().unwrap();
        let b = w.reserve().unwrap();
        assert!(w.is_full());
        assert_eq!(w.reserve(), Err(WindowFull { capacity: 2 }));
        // Completing without releasing does not free a slot.
        w.complete(b, 2).unwrap();
        assert_eq!(w.reserve(), Err(WindowFull { capacity: 2 }));
        w.complete(a, 1).unwrap();
        assert_eq!(w.pop_ready(), Some(1));
        assert!(!w.is_full());
        let c = w.reserve().unwrap();
        assert_eq!(c, 2);
        // Seq 2 reuses seq 0's slot; seq 1's reply is untouched.
        assert_eq!(w.pop_ready(), Some(2));
        assert_eq!(w.pop_ready(), None);
        w.complete(c, 3).unwrap();
        assert_eq!(w.pop_ready(), Some(3));
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let mut w = ReorderWindow::<u8>::new(0);
        assert!(w.is_full());
        assert_eq!(w.reserve(), Err(WindowFull { capacity: 0 }));
        assert_eq!(
            w.complete(0, 1),
            Err(ReorderError::NotIssued { seq: 0, next: 0 })
        );
        assert_eq!(w.pop_ready(), None);
        w.cancel_all();
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn errors_never_panic_and_change_nothing() {
        let mut w = ReorderWindow::new(4);
        let a = w.reserve().unwrap();
        let b = w.reserve().unwrap();
        assert_eq!(
            w.complete(2, "x"),
            Err(ReorderError::NotIssued { seq: 2, next: 2 })
        );
        assert_eq!(
            w.complete(u64::MAX, "x"),
            Err(ReorderError::NotIssued {
                seq: u64::MAX,
                next: 2
            })
        );
        w.complete(b, "b").unwrap();
        assert_eq!(w.complete(b, "b2"), Err(ReorderError::Duplicate { seq: b }));
        w.complete(a, "a").unwrap();
        assert_eq!(w.pop_ready(), Some("a"));
        assert_eq!(w.complete(a, "a2"), Err(ReorderError::Released { seq: a }));
        // The duplicate did not replace the stored reply.
        assert_eq!(w.pop_ready(), Some("b"));
        assert_eq!(w.complete(b, "b3"), Err(ReorderError::Released { seq: b }));
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn cancel_all_drops_replies_and_rejects_late_ones() {
        use std::rc::Rc;
        let payload = Rc::new(());
        let mut w = ReorderWindow::new(4);
        let s: Vec<Seq> = (0..4).map(|_| w.reserve().unwrap()).collect();
        w.complete(s[1], Rc::clone(&payload)).unwrap();
        w.complete(s[3], Rc::clone(&payload)).unwrap();
        assert_eq!(Rc::strong_count(&payload), 3);
        w.cancel_all();
        assert_eq!(Rc::strong_count(&payload), 1, "stored replies were dropped");
        assert_eq!(w.in_flight(), 0);
        assert!(!w.is_full());
        // Late replies from other cores: an error to ignore, and the reply is dropped.
        for &seq in &s {
            let e = w.complete(seq, Rc::clone(&payload)).unwrap_err();
            assert_eq!(e, ReorderError::Cancelled { seq });
        }
        assert_eq!(Rc::strong_count(&payload), 1);
        // Numbering continues, so a reused window never takes an old reply as new.
        let n = w.reserve().unwrap();
        assert_eq!(n, 4);
        assert_eq!(
            w.complete(s[0], Rc::clone(&payload)),
            Err(ReorderError::Cancelled { seq: s[0] })
        );
        assert_eq!(w.pop_ready(), None);
        w.complete(n, Rc::clone(&payload)).unwrap();
        assert!(w.pop_ready().is_some());
        // A second close: the first close's numbers now read as released.
        let m = w.reserve().unwrap();
        w.cancel_all();
        assert_eq!(
            w.complete(m, Rc::clone(&payload)),
            Err(ReorderError::Cancelled { seq: m })
        );
        assert_eq!(
            w.complete(s[0], Rc::clone(&payload)),
            Err(ReorderError::Released { seq: s[0] })
        );
        drop(w);
        assert_eq!(Rc::strong_count(&payload), 1);
    }

    #[test]
    fn dropping_the_window_drops_stored_replies() {
        use std::rc::Rc;
        let payload = Rc::new(());
        let mut w = ReorderWindow::new(3);
        let _a = w.reserve().unwrap();
        let b = w.reserve().unwrap();
        w.complete(b, Rc::clone(&payload)).unwrap();
        drop(w);
        assert_eq!(Rc::strong_count(&payload), 1);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            WindowFull { capacity: 8 }.to_string(),
            "reorder window full: 8 requests in flight; stop reading until one is released"
        );
        assert!(ReorderError::Cancelled { seq: 7 }
            .to_string()
            .contains("seq 7"));
        assert!(ReorderError::NotIssued { seq: 9, next: 3 }
            .to_string()
            .contains("never issued"));
    }
}
