//! [`Outbox`] against a model of the queued byte stream, eviction isolation between
//! outboxes sharing one published payload, and zero heap allocation per push/send in the
//! steady state (a counting global allocator).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use ringfort::outbox::{Evict, EvictReason, Outbox, OutboxLimits, OverConsume};
use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};

mod counting;

use counting::allocs_during;

fn arena() -> Arena {
    Arena::new(PoolConfig {
        classes: vec![SizeClass {
            size: 4096,
            count: 256,
        }],
        growth: Growth::Fixed,
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    })
    .unwrap()
}

fn msg(arena: &Arena, bytes: &[u8]) -> BufChain {
    let mut c = BufChain::new(1 << 20);
    c.append_slice(arena, bytes).unwrap();
    c
}

/// The queued byte stream.
fn bytes(ob: &Outbox) -> Vec<u8> {
    ob.iter().flat_map(BufChain::to_vec).collect()
}

const EMPTY_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

#[derive(Clone, Debug)]
enum Op {
    /// Push `len` bytes starting at `first` (each next byte one higher).
    Push {
        len: usize,
        first: u8,
    },
    /// Report `n % (queued + 2)` bytes sent: sometimes one too many.
    Consume(usize),
    PopFront,
    /// Let this many seconds pass.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..6000, any::<u8>()).prop_map(|(len, first)| Op::Push { len, first }),
        3 => any::<usize>().prop_map(Op::Consume),
        1 => Just(Op::PopFront),
        1 => (0u64..40).prop_map(Op::Wait),
    ]
}

/// What the outbox should hold and decide, kept the simplest way.
struct Model {
    msgs: VecDeque<Vec<u8>>,
    soft_since: Option<Instant>,
    evicted: Option<Evict>,
}

impl Model {
    fn queued(&self) -> usize {
        self.msgs.iter().map(Vec::len).sum()
    }

    fn stream(&self) -> Vec<u8> {
        self.msgs.iter().flatten().copied().collect()
    }

    fn push(&mut self, l: &OutboxLimits, m: Vec<u8>, now: Instant) -> Result<(), Evict> {
        if let Some(e) = self.evicted {
            return Err(e);
        }
        if m.is_empty() {
            return Ok(());
        }
        let total = self.queued() + m.len();
        let items = self.msgs.len() + 1;
        let above_soft = l.soft_bytes > 0 && total > l.soft_bytes;
        let reason = if total > l.hard_bytes {
            Some(EvictReason::HardBytes {
                limit: l.hard_bytes,
            })
        } else if items > l.max_items {
            Some(EvictReason::MaxItems { limit: l.max_items })
        } else if above_soft
            && self
                .soft_since
                .is_some_and(|t| now - t > Duration::from_secs(l.soft_seconds))
        {
            Some(EvictReason::SoftBytes {
                limit: l.soft_bytes,
                seconds: l.soft_seconds,
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            let e = Evict {
                reason,
                queued_bytes: total,
                queued_items: items,
            };
            self.evicted = Some(e);
            return Err(e);
        }
        if above_soft && self.soft_since.is_none() {
            self.soft_since = Some(now);
        }
        self.msgs.push_back(m);
        Ok(())
    }

    fn drained(&mut self, l: &OutboxLimits) {
        if self.queued() <= l.soft_bytes {
            self.soft_since = None;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random pushes, partial sends, pops and waits: the outbox holds exactly the model's
    /// byte stream, message for message, and evicts exactly when the model does.
    #[test]
    fn matches_a_byte_stream_model(
        hard in 1usize..40_000,
        soft_frac in 0usize..=100,
        soft_seconds in 0u64..100,
        max_items in 1usize..16,
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let limits = OutboxLimits {
            hard_bytes: hard,
            soft_bytes: hard * soft_frac / 100,
            soft_seconds,
            max_items,
        };
        let arena = arena();
        let mut ob = Outbox::new(limits).unwrap();
        let mut model = Model { msgs: VecDeque::new(), soft_since: None, evicted: None };
        let mut now = Instant::now();
        for op in ops {
            match op {
                Op::Push { len, first } => {
                    let data: Vec<u8> = (0..len).map(|i| first.wrapping_add(i as u8)).collect();
                    let got = ob.push(msg(&arena, &data), now);
                    let want = model.push(&limits, data, now);
                    prop_assert_eq!(got, want);
                }
                Op::Consume(n) => {
                    let q = model.queued();
                    let n = n % (q + 2);
                    if n > q {
                        prop_assert_eq!(ob.consume(n), Err(OverConsume { sent: n, queued: q }));
                    } else {
                        prop_assert_eq!(ob.consume(n), Ok(()));
                        let mut left = n;
                        while left > 0 {
                            let front = model.msgs.front_mut().unwrap();
                            if front.len() <= left {
                                left -= front.len();
                                model.msgs.pop_front();
                            } else {
                                front.drain(..left);
                                left = 0;
                            }
                        }
                        model.drained(&limits);
                    }
                }
                Op::PopFront => {
                    let got = ob.pop_front().map(|c| c.to_vec());
                    prop_assert_eq!(got, model.msgs.pop_front());
                    model.drained(&limits);
                }
                Op::Wait(s) => now += Duration::from_secs(s),
            }
            prop_assert_eq!(bytes(&ob), model.stream());
            prop_assert_eq!(ob.queued_bytes(), model.queued());
            prop_assert_eq!(ob.len(), model.msgs.len());
            prop_assert_eq!(ob.is_empty(), model.msgs.is_empty());
            let front = ob.front().map(|c| c.to_vec());
            prop_assert_eq!(front.as_ref(), model.msgs.front());
            prop_assert_eq!(ob.soft_limit_since(), model.soft_since);
            prop_assert_eq!(ob.evicted().copied(), model.evicted);
            prop_assert!(ob.queued_bytes() <= hard && ob.len() <= max_items);
            // The gathered iovecs cover the stream exactly, in order.
            let mut iov = [EMPTY_IOV; 64];
            let k = ob.fill_iovecs(&mut iov);
            let chunks: Vec<&[u8]> = ob.iter().flat_map(|c| c.chunks()).collect();
            prop_assert_eq!(k, chunks.len());
            for (v, c) in iov[..k].iter().zip(&chunks) {
                prop_assert_eq!(v.iov_base as *const u8, c.as_ptr());
                prop_assert_eq!(v.iov_len, c.len());
            }
        }
    }
}

/// One published payload cloned into three subscribers' outboxes: a slow subscriber's
/// eviction and a fast one's partial sends leave the others, and the payload, intact.
#[test]
fn eviction_of_one_outbox_never_affects_another() {
    let arena = arena();
    let t = Instant::now();
    let payload_bytes: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
    let payload = msg(&arena, &payload_bytes);
    let tight = OutboxLimits {
        hard_bytes: 20_000,
        soft_bytes: 0,
        soft_seconds: 0,
        max_items: 100,
    };
    let mut slow = Outbox::new(tight).unwrap();
    let mut fast = Outbox::new(OutboxLimits::redis_pubsub_default()).unwrap();
    let mut idle = Outbox::new(OutboxLimits::redis_pubsub_default()).unwrap();

    // Publish three times; the publisher never waits, whatever each push says.
    let mut evictions = Vec::new();
    for _ in 0..3 {
        for (i, ob) in [&mut slow, &mut fast, &mut idle].into_iter().enumerate() {
            if let Err(e) = ob.push(payload.clone(), t) {
                evictions.push((i, e));
            }
        }
        // The fast subscriber sends everything but a few bytes each round.
        let n = fast.queued_bytes() - 3;
        fast.consume(n).unwrap();
    }
    assert_eq!(
        evictions,
        vec![(
            0,
            Evict {
                reason: EvictReason::HardBytes { limit: 20_000 },
                queued_bytes: 27_000,
                queued_items: 3,
            }
        )]
    );
    assert_eq!(slow.len(), 2);
    // The slow one partly sends, then is dropped (connection closed).
    slow.consume(12_345).unwrap();
    drop(slow);

    assert_eq!(
        payload.to_vec(),
        payload_bytes,
        "the published payload is intact"
    );
    assert_eq!(idle.len(), 3);
    for m in idle.iter() {
        assert_eq!(m.to_vec(), payload_bytes);
    }
    assert_eq!(fast.len(), 1);
    assert_eq!(bytes(&fast), payload_bytes[9000 - 3..]);
    assert!(fast.evicted().is_none() && idle.evicted().is_none());
}

/// Pushing clones of a published payload, gathering iovecs, partial sends and pops allocate
/// nothing once each outbox's slot ring has grown to its deepest queue.
#[test]
fn steady_state_push_and_send_allocate_nothing() {
    let arena = arena();
    let payload = msg(&arena, &[5u8; 6000]);
    let small = msg(&arena, b"+OK\r\n");
    let mut obs: Vec<Outbox> = (0..4)
        .map(|_| Outbox::new(OutboxLimits::redis_pubsub_default()).unwrap())
        .collect();
    let mut now = Instant::now();
    let mut iov = [EMPTY_IOV; 16];
    let mut round = |obs: &mut Vec<Outbox>, now: Instant| {
        for _ in 0..40 {
            for ob in obs.iter_mut() {
                ob.push(payload.clone(), now).unwrap();
                ob.push(small.clone(), now).unwrap();
            }
        }
        for ob in obs.iter_mut() {
            while !ob.is_empty() {
                let k = ob.fill_iovecs(&mut iov);
                let covered: usize = iov[..k].iter().map(|v| v.iov_len).sum();
                ob.consume(covered.min(7001)).unwrap();
                if ob.len() % 7 == 3 {
                    ob.pop_front();
                }
            }
        }
    };
    round(&mut obs, now);
    let n = allocs_during(|| {
        for _ in 0..200 {
            now += Duration::from_millis(10);
            round(&mut obs, now);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in steady-state outbox traffic");
}

#[test]
fn slot_ring_grows_only_to_the_deepest_queue() {
    let arena = arena();
    let m = msg(&arena, b"x");
    let t = Instant::now();
    let mut ob = Outbox::new(OutboxLimits {
        hard_bytes: 1 << 20,
        soft_bytes: 0,
        soft_seconds: 0,
        max_items: 100,
    })
    .unwrap();
    // 8 slots up front, then 16, 32, 64, 100 (clamped to max_items): four growths.
    let n = allocs_during(|| {
        for _ in 0..100 {
            ob.push(m.clone(), t).unwrap();
        }
    });
    assert_eq!(n, 4);
    assert!(ob.push(m.clone(), t).is_err());
}
