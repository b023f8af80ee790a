//! Recovery on arbitrary bytes and on mutated valid segments, in every recovery mode: it
//! must never panic, records must come back in increasing LSN order, and the report (or
//! error) must be produced.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfort_pool::{
    Arena, BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};
use ringfort_wal::{Io, LogCore, LogReader, MemSegments, ReadOptions, RecoveryMode, WalConfig};

/// Two valid segments of a small log (records of varied sizes, some spanning blocks).
fn valid_segments() -> &'static Vec<(u64, Vec<u8>)> {
    static SEGS: OnceLock<Vec<(u64, Vec<u8>)>> = OnceLock::new();
    SEGS.get_or_init(|| {
        let cfg = WalConfig {
            segment_size: 64 << 10,
            block_size: 8 << 10,
            batch_bytes: 8 << 10,
            max_record: 20 << 10,
            max_batch_records: 16,
            ..WalConfig::default()
        };
        let arena = Arena::new(PoolConfig {
            classes: vec![SizeClass { size: 8 << 10, count: 64 }],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .expect("arena");
        let mut core = LogCore::new(&cfg, 1).expect("core");
        let mut segs: Vec<(u64, Vec<u8>)> = Vec::new();
        for i in 0..40usize {
            let len = [0, 5, 100, 3000, 9000, 15000][i % 6];
            let payload = vec![i as u8; len];
            if core.append(&payload).is_err() {
                core.refill(&arena).expect("refill");
                core.append(&payload).expect("append");
            }
            if i % 3 == 2 {
                core.flush();
            }
            core.flush();
            while let Some(io) = core.next_io() {
                match io {
                    Io::Create(plan) => {
                        let mut img = vec![0u8; plan.size as usize];
                        plan.header().encode(&mut img);
                        segs.push((plan.segment, img));
                        core.complete_create(plan, Ok(()));
                    }
                    Io::Write(job) => {
                        let plan = job.seal();
                        let img = &mut segs.last_mut().expect("segment").1;
                        let mut off = plan.offset() as usize;
                        for (b, len) in plan.blocks() {
                            img[off..off + len].copy_from_slice(&b[..len]);
                            off += len;
                        }
                        core.complete_write(plan, Ok(()));
                    }
                }
            }
        }
        core.release_blocks();
        segs
    })
}

fn check(segs: &[(u64, &[u8])], mode: RecoveryMode) {
    let mut r = LogReader::new(
        MemSegments::new(segs.iter().copied()),
        ReadOptions {
            mode,
            max_record: 1 << 20,
            ..ReadOptions::default()
        },
    );
    let mut prev = 0;
    while let Ok(Some(rec)) = r.next_record() {
        assert!(rec.lsn > prev, "LSNs must increase");
        prev = rec.lsn;
    }
    let _ = r.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mode = [
        RecoveryMode::TolerateCorruptedTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupted,
    ][(ctl & 3) as usize];
    if ctl & 4 == 0 {
        // Arbitrary bytes as one or two segment images.
        let cut = rest.len() / 2;
        if ctl & 8 == 0 {
            check(&[(1, rest)], mode);
        } else {
            check(&[(1, &rest[..cut]), (u64::from(ctl >> 4) + 2, &rest[cut..])], mode);
        }
        return;
    }
    // Mutations of valid segments: (segment, offset, xor) triples, then an optional cut.
    let mut segs: Vec<(u64, Vec<u8>)> = valid_segments().clone();
    for m in rest.chunks_exact(6) {
        let s = m[0] as usize % segs.len();
        let img = &mut segs[s].1;
        let off = u32::from_le_bytes([m[1], m[2], m[3], m[4]]) as usize % img.len();
        img[off] ^= m[5];
    }
    if ctl & 8 != 0 {
        let s = ctl as usize % segs.len();
        let keep = (rest.len() * 4099) % (segs[s].1.len() + 1);
        segs[s].1.truncate(keep);
    }
    let views: Vec<(u64, &[u8])> = segs.iter().map(|(id, v)| (*id, &v[..])).collect();
    check(&views, mode);
});
