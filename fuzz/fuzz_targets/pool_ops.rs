//! Arena alloc/free/share sequences: every held buffer keeps its tag (never handed out
//! twice), exhaustion is a value, and everything comes back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringfort_pool::{
    Arena, BackingPref, Growth, NumaPolicy, PoolBuf, PoolConfig, Registration, SharedBuf, SizeClass,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc(u32),
    AllocClass(u8),
    Free(u8),
    Share(u8, u8),
    DropShared(u8),
    Reclaim,
}

thread_local! {
    static ARENA: Arena = Arena::new(PoolConfig {
        classes: vec![
            SizeClass { size: 64, count: 8 },
            SizeClass { size: 4096, count: 8 },
            SizeClass { size: 16384, count: 2 },
        ],
        growth: Growth::Chunks { max_chunks: 2 },
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    })
    .expect("arena");
}

fuzz_target!(|ops: Vec<Op>| {
    ARENA.with(|arena| {
        let mut held: Vec<(u64, PoolBuf)> = Vec::new();
        let mut shared: Vec<(u64, SharedBuf)> = Vec::new();
        let mut tag = 0u64;
        for op in ops.into_iter().take(256) {
            let got = match op {
                Op::Alloc(size) => Some(arena.alloc(size as usize % 20_000)),
                Op::AllocClass(c) => Some(arena.alloc_class(c as usize % 4)),
                Op::Free(i) => {
                    if !held.is_empty() {
                        held.swap_remove(i as usize % held.len());
                    }
                    None
                }
                Op::Share(i, n) => {
                    if !held.is_empty() {
                        let (t, b) = held.swap_remove(i as usize % held.len());
                        let s = b.into_shared();
                        for _ in 0..n % 4 {
                            shared.push((t, s.clone()));
                        }
                        shared.push((t, s));
                    }
                    None
                }
                Op::DropShared(i) => {
                    if !shared.is_empty() {
                        shared.swap_remove(i as usize % shared.len());
                    }
                    None
                }
                Op::Reclaim => {
                    arena.reclaim();
                    None
                }
            };
            if let Some(Ok(mut b)) = got {
                tag += 1;
                b[..8].copy_from_slice(&tag.to_le_bytes());
                held.push((tag, b));
            }
            for (t, b) in &held {
                assert_eq!(b[..8], t.to_le_bytes(), "held buffer handed out twice");
            }
            for (t, s) in &shared {
                assert_eq!(s[..8], t.to_le_bytes(), "shared buffer reused");
            }
        }
        drop(held);
        drop(shared);
        arena.reclaim();
        assert_eq!(arena.live_buffers(), 0);
    });
});
