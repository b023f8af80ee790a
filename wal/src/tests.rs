//! Unit tests across the core, the codec and recovery, with an in-memory "disk" that
//! executes the core's plans.

use std::collections::BTreeMap;

use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};

use crate::format::{SegmentHeader, FRAME_HEADER_LEN, PAGE, SEGMENT_HEADER_LEN};
use crate::{
    Durability, Io, IoFailure, IoOp, LogCore, LogReader, MemSegments, ReadOptions, RecoveryMode,
    Severity, Tail, WalConfig, WalError, WritePlan,
};

pub(crate) fn small_config() -> WalConfig {
    WalConfig {
        segment_size: 256 << 10,
        block_size: 8 << 10,
        batch_bytes: 16 << 10,
        max_record: 64 << 10,
        max_batch_records: 64,
        max_batches: 4,
        ..WalConfig::default()
    }
}

pub(crate) fn arena_for(config: &WalConfig) -> Arena {
    Arena::new(PoolConfig {
        classes: vec![SizeClass {
            size: config.block_size,
            count: 256,
        }],
        growth: Growth::Fixed,
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    })
    .expect("test arena")
}

type ReadAll = (Vec<(u64, Vec<u8>)>, Result<crate::RecoveryReport, WalError>);

/// Segment images in memory; executes plans at once.
#[derive(Default, Clone)]
pub(crate) struct Disk {
    pub segs: BTreeMap<u64, Vec<u8>>,
}

impl Disk {
    pub fn run(&mut self, core: &mut LogCore) {
        while let Some(io) = core.next_io() {
            match io {
                Io::Create(plan) => {
                    self.segs.retain(|&id, _| id < plan.segment);
                    let mut img = vec![0u8; plan.size as usize];
                    plan.header().encode(&mut img);
                    self.segs.insert(plan.segment, img);
                    core.complete_create(plan, Ok(()));
                }
                Io::Write(job) => {
                    let plan = job.seal();
                    self.write(&plan);
                    core.complete_write(plan, Ok(()));
                }
            }
        }
    }

    pub fn write(&mut self, plan: &WritePlan) {
        let img = self.segs.get_mut(&plan.segment()).expect("segment exists");
        let mut off = plan.offset() as usize;
        for (b, len) in plan.blocks() {
            img[off..off + len].copy_from_slice(&b[..len]);
            off += len;
        }
    }

    pub fn reader(&self, mode: RecoveryMode) -> LogReader<MemSegments<'_>> {
        LogReader::new(
            MemSegments::new(self.segs.iter().map(|(&k, v)| (k, &v[..]))),
            ReadOptions {
                mode,
                ..ReadOptions::default()
            },
        )
    }

    pub fn read_all(&self, mode: RecoveryMode) -> ReadAll {
        let mut r = self.reader(mode);
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(rec)) => out.push((rec.lsn, rec.payload.to_vec())),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        (out, r.finish())
    }
}

pub(crate) fn payload(lsn: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (lsn as usize * 31 + i * 7) as u8)
        .collect()
}

/// Appends `lens` records (refilling as needed), flushing and running I/O.
pub(crate) fn append_all(core: &mut LogCore, arena: &Arena, disk: &mut Disk, lens: &[usize]) {
    for &len in lens {
        let lsn = core.next_lsn();
        let p = payload(lsn, len);
        loop {
            match core.append(&p) {
                Ok(got) => {
                    assert_eq!(got, lsn);
                    break;
                }
                Err(WalError::Full(_)) => {
                    core.refill(arena).unwrap();
                    core.flush();
                    disk.run(core);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    core.flush();
    disk.run(core);
}

fn check_records(got: &[(u64, Vec<u8>)], from: u64, to: u64, lens: &[usize]) {
    assert_eq!(got.len() as u64, to - from, "record count");
    for (i, (lsn, p)) in got.iter().enumerate() {
        assert_eq!(*lsn, from + i as u64);
        assert_eq!(
            *p,
            payload(*lsn, lens[(*lsn - 1) as usize]),
            "payload of {lsn}"
        );
    }
}

#[test]
fn round_trip_with_spanning_records_and_rotation() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    let lens: Vec<usize> = (0..300)
        .map(|i| match i % 7 {
            0 => 0,
            1 => 1,
            2 => 8192 - FRAME_HEADER_LEN,
            3 => 20_000,
            4 => 64 << 10,
            _ => (i * 37) % 3000,
        })
        .collect();
    append_all(&mut core, &arena, &mut disk, &lens);
    assert_eq!(core.acked_lsn(), 301);
    assert!(disk.segs.len() > 3, "rotation happened");
    let (got, report) = disk.read_all(RecoveryMode::AbsoluteConsistency);
    check_records(&got, 1, 301, &lens);
    let report = report.unwrap();
    assert_eq!(report.next_lsn, 301);
    assert_eq!(report.tail, Tail::Clean);
    assert!(report.repair.is_empty());
}

#[test]
fn chains_are_copied_at_sealing() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    core.refill(&arena).unwrap();
    let mut expect = Vec::new();
    for len in [0usize, 10, 5000, 30_000] {
        let lsn = core.next_lsn();
        let p = payload(lsn, len);
        let mut chain = BufChain::new(1 << 20);
        chain.append_slice(&arena, &p).unwrap();
        loop {
            match core.append_chain(chain) {
                Ok(got) => {
                    assert_eq!(got, lsn);
                    break;
                }
                Err((c, WalError::Full(_))) => {
                    chain = c;
                    core.refill(&arena).unwrap();
                    core.flush();
                    disk.run(&mut core);
                }
                Err((_, e)) => panic!("{e}"),
            }
        }
        expect.push((lsn, p));
    }
    core.flush();
    disk.run(&mut core);
    let (got, report) = disk.read_all(RecoveryMode::AbsoluteConsistency);
    report.unwrap();
    assert_eq!(got, expect);
}

#[test]
fn from_skips_earlier_records_and_segments() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    let lens = vec![3000usize; 200];
    append_all(&mut core, &arena, &mut disk, &lens);
    let mut r = LogReader::new(
        MemSegments::new(disk.segs.iter().map(|(&k, v)| (k, &v[..]))),
        ReadOptions {
            from: 150,
            ..ReadOptions::default()
        },
    );
    let got: Vec<_> = r.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(got.first().unwrap().lsn, 150);
    assert_eq!(got.len(), 51);
    assert!(
        r.finish().unwrap().records < 200,
        "whole segments below `from` were skipped"
    );
}

#[test]
fn record_too_large_and_backpressure_change_nothing() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    assert!(matches!(
        core.append(&vec![0; (64 << 10) + 1]),
        Err(WalError::RecordTooLarge { .. })
    ));
    assert!(matches!(core.append(b"x"), Err(WalError::Full(_))));
    assert_eq!(core.next_lsn(), 1);
    core.refill(&arena).unwrap();
    assert_eq!(core.append(b"x").unwrap(), 1);
    // Fill every batch slot without running I/O: appends must stop with Full::Batches.
    let mut saw_full = false;
    for _ in 0..10_000 {
        match core.append(&[1; 4000]) {
            Ok(_) => {}
            Err(WalError::Full(crate::Full::Batches)) => {
                saw_full = true;
                break;
            }
            Err(WalError::Full(crate::Full::Blocks { .. })) => {
                core.refill(&arena).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(saw_full);
}

#[test]
fn acknowledgement_is_in_lsn_order_with_out_of_order_completions() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    append_all(&mut core, &arena, &mut disk, &[10]);
    core.refill(&arena).unwrap();
    let mut plans = Vec::new();
    for _ in 0..3 {
        core.append(&[7; 100]).unwrap();
        core.flush();
        match core.next_io() {
            Some(Io::Write(job)) => plans.push(job.seal()),
            other => panic!("expected a write, got {other:?}"),
        }
    }
    assert_eq!(core.in_flight(), 3);
    let last = plans.pop().unwrap();
    let mid = plans.pop().unwrap();
    let first = plans.pop().unwrap();
    assert_eq!(core.complete_write(last, Ok(())).acked, 2);
    assert_eq!(core.complete_write(mid, Ok(())).acked, 2);
    assert_eq!(core.complete_write(first, Ok(())).acked, 5);
}

#[test]
fn a_failed_sync_poisons_the_segment_and_rewinds() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    append_all(&mut core, &arena, &mut disk, &[10, 20]);
    let first_segment = *disk.segs.keys().next().unwrap();
    core.refill(&arena).unwrap();
    core.append(&[1; 50]).unwrap();
    core.flush();
    let Some(Io::Write(job)) = core.next_io() else {
        panic!("expected a write")
    };
    let plan = job.seal();
    core.append(&[2; 50]).unwrap();
    let eio = IoFailure::new(
        IoOp::Sync,
        plan.segment(),
        &std::io::Error::from_raw_os_error(libc::EIO),
    );
    let p = core.complete_write(plan, Err(eio.clone()));
    let failed = p.failed.unwrap();
    assert_eq!(failed.lsns, 3..5);
    assert_eq!(failed.error, eio);
    assert_eq!(p.acked, 3);
    assert_eq!(core.next_lsn(), 3, "LSNs are handed out again");
    // The next batch goes to a new segment named after it, never to the poisoned one.
    core.append(&[3; 50]).unwrap();
    core.flush();
    match core.next_io() {
        Some(Io::Create(c)) => assert_eq!(c.segment, 3),
        other => panic!("expected a new segment, got {other:?}"),
    }
    assert_ne!(first_segment, 3);
}

#[test]
fn enospc_at_creation_fails_waiters_and_appends_work_again() {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    core.refill(&arena).unwrap();
    core.append(b"a").unwrap();
    core.append(b"b").unwrap();
    core.flush();
    let Some(Io::Create(plan)) = core.next_io() else {
        panic!("expected a creation")
    };
    let enospc = IoFailure::new(
        IoOp::Create,
        1,
        &std::io::Error::from_raw_os_error(libc::ENOSPC),
    );
    assert!(enospc.is_no_space());
    let p = core.complete_create(plan, Err(enospc));
    assert_eq!(p.failed.unwrap().lsns, 1..3);
    assert_eq!(core.next_lsn(), 1);
    append_all(&mut core, &arena, &mut disk, &[5, 6]);
    assert_eq!(core.acked_lsn(), 3);
    let (got, r) = disk.read_all(RecoveryMode::AbsoluteConsistency);
    r.unwrap();
    assert_eq!(got, vec![(1, payload(1, 5)), (2, payload(2, 6))]);
}

/// Builds a log of `n` batches of `per` records of `len` bytes, one batch per flush.
fn batches(n: usize, per: usize, len: usize) -> (Disk, Vec<usize>, Vec<(u64, u64)>) {
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    let mut starts = Vec::new();
    let mut lens = Vec::new();
    for _ in 0..n {
        let seg = *disk.segs.keys().last().unwrap_or(&1);
        let before = disk
            .segs
            .get(&seg)
            .map(|s| written_len(s))
            .unwrap_or(SEGMENT_HEADER_LEN);
        starts.push((core.next_lsn(), before as u64));
        lens.extend(std::iter::repeat_n(len, per));
        append_all(&mut core, &arena, &mut disk, &vec![len; per]);
    }
    (disk, lens, starts)
}

fn written_len(img: &[u8]) -> usize {
    let mut end = SEGMENT_HEADER_LEN;
    let mut off = SEGMENT_HEADER_LEN;
    while off < img.len() {
        if img[off..off + PAGE].iter().any(|&b| b != 0) {
            end = off + PAGE;
        }
        off += PAGE;
    }
    end
}

#[test]
fn torn_tail_is_cut_in_tolerant_modes_and_refused_in_absolute() {
    let (disk, lens, starts) = batches(4, 3, 500);
    let seg = *disk.segs.keys().next().unwrap();
    assert_eq!(disk.segs.len(), 1);
    let (last_first, last_off) = *starts.last().unwrap();
    for cut in [1usize, 31, 32, 100, 600, 1500] {
        let mut torn = disk.clone();
        let img = torn.segs.get_mut(&seg).unwrap();
        img[last_off as usize + cut..].fill(0);
        for mode in [
            RecoveryMode::TolerateCorruptedTail,
            RecoveryMode::PointInTime,
            RecoveryMode::SkipCorrupted,
        ] {
            let (got, report) = torn.read_all(mode);
            let report = report.unwrap();
            // Whole frames before the tear come back; nothing after it.
            assert!(got.len() as u64 >= last_first - 1);
            check_records(&got, 1, 1 + got.len() as u64, &lens);
            assert_eq!(report.next_lsn, 1 + got.len() as u64);
            match report.tail {
                Tail::Torn(c) => {
                    assert_eq!(c.segment, seg);
                    assert_eq!(c.severity, Severity::TornTail);
                    assert!(c.offset >= last_off);
                }
                other => panic!("cut {cut}: expected a torn tail, got {other:?}"),
            }
            assert_eq!(report.repair.cut.unwrap().0, seg);
        }
        let (_, report) = torn.read_all(RecoveryMode::AbsoluteConsistency);
        assert!(matches!(report, Err(WalError::Corrupt(c)) if c.severity == Severity::TornTail));
    }
}

#[test]
fn mid_log_bit_flip_in_each_mode() {
    let (disk, lens, starts) = batches(6, 2, 300);
    let seg = *disk.segs.keys().next().unwrap();
    let (bad_first, bad_off) = starts[2];
    let mut flipped = disk.clone();
    flipped.segs.get_mut(&seg).unwrap()[bad_off as usize + 100] ^= 0x10;

    for mode in [
        RecoveryMode::TolerateCorruptedTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let (got, report) = flipped.read_all(mode);
        check_records(&got, 1, bad_first, &lens);
        match report {
            Err(WalError::Corrupt(c)) => {
                assert_eq!(
                    (c.segment, c.offset, c.expected_lsn),
                    (seg, bad_off, bad_first)
                );
                assert!(matches!(c.severity, Severity::MidLog { .. }));
            }
            other => panic!("{mode:?}: expected corruption, got {other:?}"),
        }
    }

    let (got, report) = flipped.read_all(RecoveryMode::PointInTime);
    check_records(&got, 1, bad_first, &lens);
    let report = report.unwrap();
    assert!(matches!(report.tail, Tail::Cut(c) if c.offset == bad_off));
    assert_eq!(report.next_lsn, bad_first);
    assert_eq!(report.repair.cut, Some((seg, bad_off)));

    let (got, report) = flipped.read_all(RecoveryMode::SkipCorrupted);
    let report = report.unwrap();
    assert_eq!(report.skipped_count, 1);
    let skip = report.skipped[0];
    assert_eq!(skip.offset, bad_off);
    assert_eq!(skip.resumed_at, Some(bad_first + 2));
    let want: Vec<u64> = (1..bad_first).chain(bad_first + 2..13).collect();
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), want);
    for (lsn, p) in &got {
        assert_eq!(*p, payload(*lsn, lens[(*lsn - 1) as usize]));
    }
    assert_eq!(report.next_lsn, 13);
    assert_eq!(report.tail, Tail::Clean);
}

#[test]
fn a_hole_left_by_in_flight_batches_is_a_torn_tail() {
    // Two batches are in flight together; the first never lands but the second does.
    // Nothing proves the first was ever durable, so this is a torn tail, not corruption.
    let cfg = small_config();
    let arena = arena_for(&cfg);
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let mut disk = Disk::default();
    let lens = vec![300usize; 8];
    append_all(&mut core, &arena, &mut disk, &lens[..4]);
    core.refill(&arena).unwrap();
    let mut plans = Vec::new();
    for lsn in 5..=8 {
        core.append(&payload(lsn, 300)).unwrap();
        if lsn % 2 == 0 {
            core.flush();
            let Some(Io::Write(job)) = core.next_io() else {
                panic!("expected a write")
            };
            plans.push(job.seal());
        }
    }
    let (hole, landed) = (&plans[0], &plans[1]);
    disk.write(landed);
    let seg = hole.segment();
    let hole_off = hole.offset();
    let (got, report) = disk.read_all(RecoveryMode::TolerateCorruptedTail);
    check_records(&got, 1, 5, &lens);
    let report = report.unwrap();
    assert!(matches!(report.tail, Tail::Torn(c) if c.offset == hole_off && c.expected_lsn == 5));
    assert_eq!(report.repair.cut, Some((seg, hole_off)));
    assert_eq!(report.next_lsn, 5);
    // Had the second batch been sealed after the first was durable, the same hole would
    // be corruption: that is the watermark's job (see mid_log_bit_flip_in_each_mode).
}

#[test]
fn zero_tail_and_stale_recycled_bytes_never_decode() {
    let (disk, _lens, _) = batches(3, 4, 700);
    let seg = *disk.segs.keys().next().unwrap();
    // Re-initialise the same file with a new signature, as recycling does, and write a
    // shorter log into it: the old frames past its end must not come back.
    let old = disk.segs[&seg].clone();
    let mut recycled = old.clone();
    let h = SegmentHeader::decode(&old).unwrap();
    SegmentHeader {
        signature: h.signature ^ 0x5555,
        flags: crate::format::FLAG_RECYCLABLE,
        first_lsn: 100,
        ..h
    }
    .encode(&mut recycled);
    let mut d = Disk::default();
    d.segs.insert(100, recycled.clone());
    let (got, report) = d.read_all(RecoveryMode::AbsoluteConsistency);
    assert!(got.is_empty());
    let report = report.unwrap();
    assert_eq!(report.tail, Tail::Clean);
    assert_eq!(report.next_lsn, 100);
    // The same stale bytes in a file not marked recyclable are a torn tail.
    SegmentHeader {
        flags: 0,
        ..SegmentHeader::decode(&recycled).unwrap()
    }
    .encode(&mut recycled);
    d.segs.insert(100, recycled);
    assert!(d.read_all(RecoveryMode::AbsoluteConsistency).1.is_err());
    // A zero-filled preallocated tail is a clean end.
    let (_, report) = disk.read_all(RecoveryMode::AbsoluteConsistency);
    assert_eq!(report.unwrap().tail, Tail::Clean);
}

#[test]
fn reading_arbitrary_bytes_never_panics() {
    let mut x = 0x1234_5678_u64;
    for len in [0usize, 10, 4096, 4097, 9000, 20_000] {
        let mut img = vec![0u8; len];
        for b in img.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        for mode in [
            RecoveryMode::TolerateCorruptedTail,
            RecoveryMode::AbsoluteConsistency,
            RecoveryMode::PointInTime,
            RecoveryMode::SkipCorrupted,
        ] {
            let mut r = LogReader::new(
                MemSegments::new([(1, &img[..])]),
                ReadOptions {
                    mode,
                    ..ReadOptions::default()
                },
            );
            while let Ok(Some(_)) = r.next_record() {}
            let _ = r.finish();
        }
    }
}

#[test]
fn durability_none_and_buffered_plans_carry_no_sync() {
    for d in [Durability::Buffered, Durability::None] {
        let cfg = WalConfig {
            durability: d,
            ..small_config()
        };
        let arena = arena_for(&cfg);
        let mut core = LogCore::new(&cfg, 1).unwrap();
        let mut disk = Disk::default();
        append_all(&mut core, &arena, &mut disk, &[1]);
        core.append(b"x").unwrap();
        core.flush();
        let Some(Io::Write(job)) = core.next_io() else {
            panic!()
        };
        assert_eq!(job.seal().sync(), crate::SyncKind::None);
    }
}

#[test]
fn zero_filled_spares_pay_only_for_small_groups() {
    use crate::segment::{GroupSizes, ZERO_FILL_MAX_GROUP};
    let mut s = GroupSizes::new(1 << 20);
    // 64 groups of 8 KiB after one large one: half written at the 64th.
    let decisions: Vec<bool> = (0..128)
        .map(|i| s.record(if i == 0 { ZERO_FILL_MAX_GROUP } else { 8 << 10 }))
        .collect();
    assert_eq!(decisions.iter().position(|&d| d), Some(32), "half written");
    assert_eq!(
        decisions.iter().filter(|&&d| d).count(),
        1,
        "once a segment"
    );
    s.new_segment();
    let big = (0..4).any(|_| s.record(ZERO_FILL_MAX_GROUP * 2));
    assert!(!big, "large groups are bandwidth-bound");
}
