//! Model test for `ringfort::channel`: random single-threaded interleavings of every
//! operation, checked against a `VecDeque` with the same (rounded) capacity and a plain
//! `bool` for the park flag.

use std::collections::VecDeque;

use proptest::prelude::*;
use ringfort::channel::{channel, ChannelError};

#[derive(Debug, Clone)]
enum Op {
    Send(u32),
    Recv,
    Drain(usize),
    Park,
    Unpark,
    NeedsWake,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u32>().prop_map(Op::Send),
        3 => Just(Op::Recv),
        2 => (0usize..7).prop_map(Op::Drain),
        1 => Just(Op::Park),
        1 => Just(Op::Unpark),
        1 => Just(Op::NeedsWake),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    #[cfg_attr(miri, ignore)] // slow under Miri; the unit tests cover the unsafe code there
    fn channel_matches_vecdeque_model(
        requested in 1usize..=9,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let (mut tx, mut rx) = channel::<u32>(requested).unwrap();
        let cap = requested.next_power_of_two();
        prop_assert_eq!(tx.capacity(), cap);
        prop_assert_eq!(rx.capacity(), cap);

        let mut model: VecDeque<u32> = VecDeque::with_capacity(cap);
        let mut parked = false;
        let (mut sent, mut rejected, mut received) = (0u64, 0u64, 0u64);

        for op in ops {
            match op {
                Op::Send(v) => match tx.try_send(v) {
                    Ok(()) => {
                        prop_assert!(model.len() < cap, "accepted beyond capacity");
                        model.push_back(v);
                        sent += 1;
                    }
                    Err(full) => {
                        prop_assert_eq!(model.len(), cap, "rejected below capacity");
                        prop_assert_eq!(full.into_inner(), v, "message not handed back intact");
                        rejected += 1;
                    }
                },
                Op::Recv => {
                    let got = rx.try_recv();
                    let want = model.pop_front();
                    if want.is_some() {
                        received += 1;
                    }
                    prop_assert_eq!(got, want);
                }
                Op::Drain(max) => {
                    let mut got = Vec::new();
                    let n = rx.drain(max, |m| got.push(m));
                    let k = max.min(model.len());
                    let want: Vec<u32> = model.drain(..k).collect();
                    prop_assert_eq!(n, k);
                    prop_assert_eq!(got, want);
                    received += k as u64;
                }
                Op::Park => {
                    let may_sleep = rx.park();
                    prop_assert_eq!(may_sleep, model.is_empty());
                    parked = may_sleep;
                }
                Op::Unpark => {
                    rx.unpark();
                    parked = false;
                }
                Op::NeedsWake => {
                    prop_assert_eq!(tx.needs_wake(), parked);
                    parked = false;
                }
            }
            prop_assert_eq!(tx.len(), model.len());
            prop_assert_eq!(rx.len(), model.len());
            prop_assert_eq!(tx.is_empty(), model.is_empty());
            prop_assert_eq!(rx.is_empty(), model.is_empty());
            prop_assert_eq!(tx.sent(), sent);
            prop_assert_eq!(tx.rejected(), rejected);
            prop_assert_eq!(rx.received(), received);
        }
    }
}

#[test]
fn channel_zero_capacity_is_a_clear_error() {
    let err = channel::<u8>(0).unwrap_err();
    assert_eq!(err, ChannelError::ZeroCapacity);
    assert!(err.to_string().contains("at least 1"));
}
