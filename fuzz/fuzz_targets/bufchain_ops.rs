//! BufChain operation sequences against a `Vec<u8>` model: the chain must always hold
//! exactly the model's bytes, never panic on in-range operations, and return every block.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Append(Vec<u8>),
    AppendRepeat(u8, u16),
    Split(u32),
    Advance(u32),
    Truncate(u32),
    CloneKeep,
    AppendKept(u8),
    ReadU32(u32),
    Clear,
}

thread_local! {
    static ARENA: Arena = Arena::new(PoolConfig {
        classes: vec![
            SizeClass { size: 64, count: 64 },
            SizeClass { size: 4096, count: 32 },
            SizeClass { size: 65536, count: 4 },
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
        let mut chain = BufChain::new(200_000);
        let mut model = Vec::new();
        let mut kept: Vec<(BufChain, Vec<u8>)> = Vec::new();
        for op in ops.into_iter().take(64) {
            match op {
                Op::Append(d) => {
                    if chain.append_slice(arena, &d).is_ok() {
                        model.extend_from_slice(&d);
                    }
                }
                Op::AppendRepeat(b, n) => {
                    let d = vec![b; n as usize];
                    if chain.append_slice(arena, &d).is_ok() {
                        model.extend_from_slice(&d);
                    }
                }
                Op::Split(at) => {
                    let at = at as usize % (model.len() + 1);
                    let front = chain.split_to(at);
                    let rest = model.split_off(at);
                    kept.push((front, std::mem::replace(&mut model, rest)));
                }
                Op::Advance(n) => {
                    let n = n as usize % (model.len() + 1);
                    chain.advance(n);
                    model.drain(..n);
                }
                Op::Truncate(n) => {
                    let n = n as usize % (model.len() + 1);
                    chain.truncate(n);
                    model.truncate(n);
                }
                Op::CloneKeep => kept.push((chain.clone(), model.clone())),
                Op::AppendKept(i) => {
                    if !kept.is_empty() {
                        let (mut other, m) = kept.swap_remove(i as usize % kept.len());
                        if chain.append(&mut other).is_ok() {
                            model.extend_from_slice(&m);
                        } else {
                            kept.push((other, m));
                        }
                    }
                }
                Op::ReadU32(off) => {
                    let off = off as usize % (model.len() + 1);
                    let want = model
                        .get(off..off + 4)
                        .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
                    assert_eq!(chain.get_u32_le(off), want);
                }
                Op::Clear => {
                    chain.clear();
                    model.clear();
                }
            }
            assert_eq!(chain.to_vec(), model);
        }
        for (k, m) in &kept {
            assert_eq!(&k.to_vec(), m);
        }
        drop(chain);
        drop(kept);
        assert_eq!(arena.live_buffers(), 0, "a block leaked");
    });
});
