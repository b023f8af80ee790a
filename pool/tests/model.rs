//! Model tests: BufChain against `Vec<u8>`, and alloc/free sequences against a simple
//! ledger, including frees on other threads. Case counts are smaller under CI=true and Miri.

use std::collections::HashSet;

use proptest::prelude::*;
use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolBuf, PoolConfig, PoolError, Registration,
    SizeClass,
};

fn cases(full: u32) -> u32 {
    if cfg!(miri) {
        4
    } else if std::env::var_os("CI").is_some() {
        full / 4
    } else {
        full
    }
}

/// Largest single append; Miri interprets every byte copy, so it gets small payloads.
const MAX_APPEND: usize = if cfg!(miri) { 600 } else { 20_000 };
/// Longest op sequence.
const MAX_OPS: usize = if cfg!(miri) { 12 } else { 40 };

fn small_config(max_chunks: usize) -> PoolConfig {
    PoolConfig {
        classes: vec![
            SizeClass {
                size: 4096,
                count: 16,
            },
            SizeClass {
                size: 16384,
                count: 4,
            },
            SizeClass {
                size: 65536,
                count: 2,
            },
        ],
        growth: Growth::Chunks { max_chunks },
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    }
}

#[derive(Clone, Debug)]
enum ChainOp {
    Append(Vec<u8>),
    Split(prop::sample::Index),
    Advance(prop::sample::Index),
    Truncate(prop::sample::Index),
    CloneKeep,
    AppendKept(prop::sample::Index),
    DropKept(prop::sample::Index),
    ReadU32Le(prop::sample::Index),
    ReadU64Be(prop::sample::Index),
    CopyOut(prop::sample::Index, usize),
    Clear,
}

fn chain_op() -> impl Strategy<Value = ChainOp> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..MAX_APPEND).prop_map(ChainOp::Append),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::Split),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::Advance),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::Truncate),
        1 => Just(ChainOp::CloneKeep),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::AppendKept),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::DropKept),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::ReadU32Le),
        1 => any::<prop::sample::Index>().prop_map(ChainOp::ReadU64Be),
        1 => (any::<prop::sample::Index>(), 0usize..300).prop_map(|(i, n)| ChainOp::CopyOut(i, n)),
        1 => Just(ChainOp::Clear),
    ]
}

fn check(chain: &BufChain, model: &[u8]) {
    assert_eq!(chain.len(), model.len());
    assert_eq!(chain.to_vec(), model);
    let joined: Vec<u8> = chain.chunks().flatten().copied().collect();
    assert_eq!(joined, model);
    let iov_len: usize = chain.io_slices().map(|s| s.len()).sum();
    assert_eq!(iov_len, model.len());
    assert!(chain.chunks().all(|c| !c.is_empty()), "empty segment kept");
}

/// Index into 0..=len.
fn pos(i: &prop::sample::Index, len: usize) -> usize {
    i.index(len + 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn bufchain_matches_vec(ops in prop::collection::vec(chain_op(), 1..MAX_OPS)) {
        const MAX: usize = 120_000;
        let arena = Arena::new(small_config(3)).unwrap();
        let mut chain = BufChain::new(MAX);
        let mut model: Vec<u8> = Vec::new();
        let mut kept: Vec<(BufChain, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                ChainOp::Append(data) => match chain.append_slice(&arena, &data) {
                    Ok(()) => model.extend_from_slice(&data),
                    Err(PoolError::ChainFull { .. }) => {
                        prop_assert!(model.len() + data.len() > MAX)
                    }
                    // All or nothing: an exhausted arena leaves the chain unchanged.
                    Err(PoolError::Exhausted { .. }) => {}
                    Err(e) => panic!("unexpected error {e}"),
                },
                ChainOp::Split(i) => {
                    let at = pos(&i, model.len());
                    let front = chain.split_to(at);
                    let rest = model.split_off(at);
                    prop_assert_eq!(front.to_vec(), model.clone());
                    kept.push((front, std::mem::replace(&mut model, rest)));
                }
                ChainOp::Advance(i) => {
                    let n = pos(&i, model.len());
                    chain.advance(n);
                    model.drain(..n);
                }
                ChainOp::Truncate(i) => {
                    let n = pos(&i, model.len());
                    chain.truncate(n);
                    model.truncate(n);
                }
                ChainOp::CloneKeep => kept.push((chain.clone(), model.clone())),
                ChainOp::AppendKept(i) => {
                    if !kept.is_empty() {
                        let (mut other, other_model) = kept.swap_remove(i.index(kept.len()));
                        match chain.append(&mut other) {
                            Ok(()) => {
                                prop_assert!(other.is_empty());
                                model.extend_from_slice(&other_model);
                            }
                            Err(PoolError::ChainFull { .. }) => {
                                prop_assert_eq!(other.to_vec(), other_model.clone());
                                kept.push((other, other_model));
                            }
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                }
                ChainOp::DropKept(i) => {
                    if !kept.is_empty() {
                        kept.swap_remove(i.index(kept.len()));
                    }
                }
                ChainOp::ReadU32Le(i) => {
                    let off = pos(&i, model.len());
                    let want = model.get(off..off + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
                    prop_assert_eq!(chain.get_u32_le(off), want);
                }
                ChainOp::ReadU64Be(i) => {
                    let off = pos(&i, model.len());
                    let want = model.get(off..off + 8).map(|b| u64::from_be_bytes(b.try_into().unwrap()));
                    prop_assert_eq!(chain.get_u64_be(off), want);
                }
                ChainOp::CopyOut(i, n) => {
                    let off = pos(&i, model.len());
                    let n = n.min(model.len() - off);
                    let mut dst = vec![0; n];
                    chain.copy_to_slice(off, &mut dst);
                    prop_assert_eq!(&dst[..], &model[off..off + n]);
                }
                ChainOp::Clear => {
                    chain.clear();
                    model.clear();
                }
            }
            check(&chain, &model);
            // Writes to one chain never show through a chain that shares its blocks.
            for (k, m) in &kept {
                check(k, m);
            }
        }
        drop(chain);
        drop(kept);
        prop_assert_eq!(arena.live_buffers(), 0, "a block leaked");
    }
}

#[derive(Clone, Debug)]
enum PoolOp {
    Alloc(usize),
    Free(prop::sample::Index),
    FreeRemote(prop::sample::Index),
    Share(prop::sample::Index, u8),
    Reclaim,
}

fn pool_op() -> impl Strategy<Value = PoolOp> {
    prop_oneof![
        4 => (0usize..3).prop_map(PoolOp::Alloc),
        2 => any::<prop::sample::Index>().prop_map(PoolOp::Free),
        1 => any::<prop::sample::Index>().prop_map(PoolOp::FreeRemote),
        1 => (any::<prop::sample::Index>(), 1u8..5).prop_map(|(i, n)| PoolOp::Share(i, n)),
        1 => Just(PoolOp::Reclaim),
    ]
}

fn tag(buf: &mut PoolBuf, t: u64) {
    buf[..8].copy_from_slice(&t.to_le_bytes());
    let end = buf.len();
    buf[end - 8..].copy_from_slice(&t.to_le_bytes());
}

fn tag_of(buf: &[u8]) -> (u64, u64) {
    let end = buf.len();
    (
        u64::from_le_bytes(buf[..8].try_into().unwrap()),
        u64::from_le_bytes(buf[end - 8..].try_into().unwrap()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Every handed-out buffer is distinct (its tag survives until it is freed), exhaustion
    /// happens exactly at the cap, remote frees come back, and nothing leaks.
    #[test]
    fn alloc_free_sequences(ops in prop::collection::vec(pool_op(), 1..MAX_OPS * 5)) {
        let max_chunks = 2;
        let arena = Arena::new(small_config(max_chunks)).unwrap();
        let per_chunk = [16usize, 4, 2];
        let mut held: Vec<(usize, u64, PoolBuf)> = Vec::new();
        let mut remote_pending = 0usize;
        let mut next_tag = 1u64;
        for op in ops {
            match op {
                PoolOp::Alloc(class) => {
                    let live_in_class = held.iter().filter(|h| h.0 == class).count();
                    match arena.alloc_class(class) {
                        Ok(mut b) => {
                            prop_assert_eq!(b.class(), class);
                            tag(&mut b, next_tag);
                            held.push((class, next_tag, b));
                            next_tag += 1;
                        }
                        Err(PoolError::Exhausted { .. }) => {
                            // Remote frees have all been joined, and the arena drains them
                            // before failing: so only when every buffer at the cap is held.
                            prop_assert_eq!(live_in_class, per_chunk[class] * max_chunks);
                            remote_pending = 0;
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                PoolOp::Free(i) => {
                    if !held.is_empty() {
                        let (_, t, b) = held.swap_remove(i.index(held.len()));
                        prop_assert_eq!(tag_of(&b), (t, t), "buffer reused while held");
                    }
                }
                PoolOp::FreeRemote(i) => {
                    if !held.is_empty() {
                        let (_, t, b) = held.swap_remove(i.index(held.len()));
                        prop_assert_eq!(tag_of(&b), (t, t));
                        std::thread::spawn(move || drop(b)).join().unwrap();
                        remote_pending += 1;
                    }
                }
                PoolOp::Share(i, n) => {
                    if !held.is_empty() {
                        let (_, t, b) = held.swap_remove(i.index(held.len()));
                        let shared = b.into_shared();
                        let clones: Vec<_> = (0..n).map(|_| shared.clone()).collect();
                        prop_assert_eq!(shared.ref_count(), n as u32 + 1);
                        drop(shared);
                        // The last clone frees it, on another thread.
                        std::thread::spawn(move || {
                            for c in &clones {
                                assert_eq!(tag_of(c), (t, t));
                            }
                            drop(clones)
                        })
                        .join()
                        .unwrap();
                        remote_pending += 1;
                    }
                }
                PoolOp::Reclaim => {
                    // An alloc that found its free list empty may have drained some already.
                    prop_assert!(arena.reclaim() <= remote_pending);
                    remote_pending = 0;
                    prop_assert_eq!(arena.live_buffers(), held.len());
                }
            }
            for (_, t, b) in &held {
                prop_assert_eq!(tag_of(b), (*t, *t), "a held buffer was handed out twice");
            }
            let live = arena.live_buffers();
            prop_assert!(held.len() <= live && live <= held.len() + remote_pending);
        }
        drop(held);
        arena.reclaim();
        prop_assert_eq!(arena.live_buffers(), 0);
        let stats = arena.stats();
        for c in &stats.classes {
            prop_assert_eq!(c.in_use, 0);
            prop_assert!(c.high_water <= c.capacity);
        }
    }
}

/// Many threads free buffers concurrently while the owner keeps allocating: every buffer
/// comes back exactly once.
#[test]
fn concurrent_remote_frees_return_every_buffer() {
    let arena = Arena::new(small_config(1)).unwrap();
    let rounds = if cfg!(miri) { 2 } else { 200 };
    for _ in 0..rounds {
        let mut bufs = Vec::new();
        while let Ok(b) = arena.alloc_class(0) {
            bufs.push(b);
        }
        assert_eq!(bufs.len(), 16);
        let mut seen = HashSet::new();
        for b in &bufs {
            assert!(
                seen.insert(b.as_ptr() as usize),
                "one block handed out twice"
            );
        }
        let mut groups: Vec<Vec<PoolBuf>> = (0..4).map(|_| Vec::new()).collect();
        for (i, b) in bufs.into_iter().enumerate() {
            groups[i % 4].push(b);
        }
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| std::thread::spawn(move || drop(g)))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(arena.reclaim(), 16);
        assert_eq!(arena.live_buffers(), 0);
    }
}
