//! Property tests for [`ReorderWindow`]: whatever order replies complete in, they leave in
//! sequence order, none lost, none duplicated, and never more than `capacity` in flight.

use proptest::prelude::*;
use ringfort::reorder::{ReorderError, ReorderWindow, Seq, WindowFull};

/// The reply carried for a seq: derived from it, so a misrouted reply is caught.
fn reply_for(seq: Seq) -> (Seq, u64) {
    (seq, seq.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

proptest! {
    /// All N requests reserved up front (capacity >= N), completed in a random
    /// permutation, with `pop_ready` at random points in between.
    #[test]
    fn random_permutation_comes_out_in_order(
        (order, pops) in (0usize..200).prop_flat_map(|n| (
            Just((0..n as Seq).collect::<Vec<_>>()).prop_shuffle(),
            proptest::collection::vec(any::<bool>(), n),
        )),
        slack in 0usize..8,
    ) {
        let n = order.len();
        let mut w = ReorderWindow::new(n + slack);
        for i in 0..n as Seq {
            prop_assert_eq!(w.reserve(), Ok(i));
        }
        prop_assert!(w.in_flight() <= w.capacity());
        let mut out = Vec::with_capacity(n);
        for (&seq, &pop) in order.iter().zip(&pops) {
            prop_assert_eq!(w.complete(seq, reply_for(seq)), Ok(()));
            if pop {
                w.drain_ready(|r| out.push(r));
            }
        }
        w.drain_ready(|r| out.push(r));
        let want: Vec<_> = (0..n as Seq).map(reply_for).collect();
        prop_assert_eq!(out, want);
        prop_assert_eq!(w.in_flight(), 0);
        prop_assert_eq!(w.pop_ready(), None);
    }

    /// A window smaller than the request count: a reactor that reserves while the window
    /// has room, completes a random outstanding request, or pops, in a random interleaving.
    #[test]
    fn bounded_window_random_interleaving(
        capacity in 1usize..12,
        n in 0u64..300,
        ops in proptest::collection::vec((0u8..3, any::<usize>()), 0..600),
    ) {
        let mut sim = Sim {
            w: ReorderWindow::new(capacity),
            capacity,
            n,
            issued: 0,
            pending: Vec::new(),
            out: Vec::new(),
        };
        for &(op, pick) in &ops {
            sim.step(op, pick)?;
        }
        // Finish: keep going until every request is issued, completed and released.
        let mut k = 0usize;
        while sim.issued < n || !sim.pending.is_empty() || sim.w.in_flight() > 0 {
            let complete = !sim.pending.is_empty() && (sim.w.is_full() || sim.issued == n);
            sim.step(if complete { 1 } else { 0 }, k.wrapping_mul(7919))?;
            sim.step(2, 0)?;
            k += 1;
        }
        let want: Vec<_> = (0..n).map(reply_for).collect();
        prop_assert_eq!(sim.out, want);
    }

    /// Bad sequence numbers are refused with the right error and never disturb the window.
    #[test]
    fn bad_completions_are_errors(
        capacity in 1usize..8,
        done in 0u64..20,
        bogus in any::<u64>(),
    ) {
        let mut w = ReorderWindow::new(capacity);
        for i in 0..done {
            let s = w.reserve().unwrap();
            w.complete(s, i).unwrap();
            prop_assert_eq!(w.pop_ready(), Some(i));
        }
        let live = w.reserve().unwrap();
        let got = w.complete(bogus, 0);
        if bogus < live {
            prop_assert_eq!(got, Err(ReorderError::Released { seq: bogus }));
        } else if bogus > live {
            prop_assert_eq!(got, Err(ReorderError::NotIssued { seq: bogus, next: live + 1 }));
        } else {
            prop_assert_eq!(got, Ok(()));
            prop_assert_eq!(w.pop_ready(), Some(0));
            return Ok(());
        }
        w.complete(live, 42).unwrap();
        prop_assert_eq!(w.pop_ready(), Some(42));
        prop_assert_eq!(w.in_flight(), 0);
    }
}

/// A reactor's use of one window, with the requests it has issued but not completed.
struct Sim {
    w: ReorderWindow<(Seq, u64)>,
    capacity: usize,
    n: u64,
    issued: Seq,
    pending: Vec<Seq>,
    out: Vec<(Seq, u64)>,
}

impl Sim {
    /// Op 0 reserves (if requests remain), 1 completes the pending request `pick` selects,
    /// anything else drains; then checks the window's invariants.
    fn step(&mut self, op: u8, pick: usize) -> Result<(), TestCaseError> {
        match op {
            0 if self.issued < self.n => match self.w.reserve() {
                Ok(seq) => {
                    prop_assert_eq!(seq, self.issued);
                    self.issued += 1;
                    self.pending.push(seq);
                }
                Err(WindowFull { capacity }) => {
                    prop_assert_eq!(capacity, self.capacity);
                    prop_assert_eq!(self.w.in_flight(), self.capacity);
                }
            },
            1 if !self.pending.is_empty() => {
                let seq = self.pending.swap_remove(pick % self.pending.len());
                prop_assert_eq!(self.w.complete(seq, reply_for(seq)), Ok(()));
                prop_assert_eq!(
                    self.w.complete(seq, reply_for(seq)),
                    Err(ReorderError::Duplicate { seq })
                );
            }
            _ => {
                let out = &mut self.out;
                self.w.drain_ready(|r| out.push(r));
            }
        }
        prop_assert!(self.w.in_flight() <= self.capacity);
        prop_assert_eq!(self.w.is_full(), self.w.in_flight() == self.capacity);
        prop_assert_eq!(self.w.next_seq(), self.issued);
        Ok(())
    }
}
