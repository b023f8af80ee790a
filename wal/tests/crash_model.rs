//! The crash model: the blocking driver over a simulated disk that loses unsynced data and
//! tears writes at any byte, crashed after a random number of operations, with concurrent
//! appenders. After recovery: every acknowledged record is present with identical bytes,
//! records come back in LSN order with no gaps, nothing corrupt comes back, and appends
//! continue the LSN sequence. Then bit flips in every recovery mode.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::sim::{Rng, SimDisk};
use proptest::prelude::*;
use ringfort_wal::{Lsn, RecoveryMode, Severity, SyncMethod, Tail, Wal, WalConfig, WalError};

/// A self-describing payload: tag, length, then a pattern derived from the tag.
fn record(tag: u64, len: usize) -> Vec<u8> {
    let len = len.max(12);
    let mut v = common::payload(tag, len);
    v[..8].copy_from_slice(&tag.to_le_bytes());
    v[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    v
}

/// Whether `bytes` is exactly a record some appender made (so it is not corrupt).
fn genuine(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && {
        let tag = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        len == bytes.len() && record(tag, len) == bytes
    }
}

fn config(method: SyncMethod) -> WalConfig {
    WalConfig {
        sync_method: method,
        ..common::small_config()
    }
}

/// `config` with up to `syncs` groups syncing at once.
fn pipelined(method: SyncMethod, syncs: usize) -> WalConfig {
    WalConfig {
        syncs_in_flight: syncs,
        ..config(method)
    }
}

type Recovered = (
    Wal<SimDisk>,
    Vec<(Lsn, Vec<u8>)>,
    ringfort_wal::RecoveryReport,
);

/// Recovers `disk`; returns the open handle, the records and the report.
fn recover(disk: &SimDisk, cfg: WalConfig) -> Result<Recovered, WalError> {
    let mut got = Vec::new();
    let (wal, report) = Wal::open_in(disk.clone(), cfg, 0, |r| {
        got.push((r.lsn, r.payload.to_vec()));
        Ok(())
    })?;
    Ok((wal, got, report))
}

const LENS: [usize; 6] = [12, 100, 700, 3000, 9000, 40_000];

fn run_crash_case(
    writers: usize,
    per: usize,
    lens: &[usize],
    crash_after: u64,
    seed: u64,
    method: SyncMethod,
    syncs: usize,
) {
    let disk = SimDisk::new();
    disk.crash_after(crash_after);
    let acked: Arc<Mutex<BTreeMap<Lsn, Vec<u8>>>> = Arc::default();
    if let Ok((wal, _, _)) = recover(&disk, pipelined(method, syncs)) {
        let wal = Arc::new(wal);
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let wal = Arc::clone(&wal);
                let acked = Arc::clone(&acked);
                let lens = lens.to_vec();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let tag = (w * 10_000 + i) as u64;
                        let p = record(tag, lens[(w + i) % lens.len()]);
                        match wal.append(&p) {
                            Ok(lsn) => {
                                let prev = acked.lock().unwrap().insert(lsn, p);
                                assert!(prev.is_none(), "LSN {lsn} acknowledged twice");
                            }
                            Err(WalError::Failed(_)) | Err(WalError::Closed) => break,
                            Err(e) => panic!("unexpected append error: {e}"),
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        drop(wal);
    }
    let image = disk.crash_image(&mut Rng(seed | 1));
    let (wal, got, report) = recover(&image, config(method)).expect("recovery after a crash");
    // LSN order, no gaps, nothing corrupt.
    for (i, (lsn, bytes)) in got.iter().enumerate() {
        assert_eq!(
            *lsn,
            report.first_lsn + i as u64,
            "records in LSN order without gaps"
        );
        assert!(genuine(bytes), "LSN {lsn}: corrupt record returned");
    }
    assert_eq!(report.next_lsn, report.first_lsn + got.len() as u64);
    // Every acknowledged record is there, byte for byte.
    let recovered: BTreeMap<Lsn, Vec<u8>> = got.iter().cloned().collect();
    for (lsn, p) in acked.lock().unwrap().iter() {
        assert!(
            recovered.get(lsn).is_some_and(|r| r == p),
            "acknowledged LSN {lsn} lost or changed"
        );
    }
    // Appends continue the sequence, and a clean reopen sees everything.
    let next = report.next_lsn;
    for k in 0..3u64 {
        assert_eq!(wal.append(&record(900_000 + k, 50)).unwrap(), next + k);
    }
    drop(wal);
    let (_, again, report2) = recover(&image, config(method)).expect("reopen");
    assert_eq!(report2.tail, Tail::Clean);
    assert_eq!(again.len(), got.len() + 3);
    assert!(
        again[..got.len()] == got[..],
        "reopen returned other records"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(128, 32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn acknowledged_records_survive_any_crash(
        writers in 1usize..6,
        per in 1usize..30,
        lens in proptest::collection::vec(proptest::sample::select(&LENS[..]), 1..5),
        crash_after in 0u64..400,
        seed in any::<u64>(),
        dsync in any::<bool>(),
        syncs in 1usize..4,
    ) {
        let method = if dsync { SyncMethod::Dsync } else { SyncMethod::Fdatasync };
        run_crash_case(writers, per, &lens, crash_after, seed, method, syncs);
    }
}

/// A log of `n` records written through the driver (no crash).
fn written_log(n: u64) -> (SimDisk, Vec<Vec<u8>>) {
    let disk = SimDisk::new();
    let (wal, _, _) = recover(&disk, config(SyncMethod::Fdatasync)).unwrap();
    let mut all = Vec::new();
    for i in 0..n {
        let p = record(i, LENS[(i as usize * 7) % LENS.len()]);
        assert_eq!(wal.append(&p).unwrap(), i + 1);
        all.push(p);
    }
    wal.close().unwrap();
    (disk, all)
}

fn check_flip(disk: &SimDisk, all: &[Vec<u8>], seg_pick: usize, off_pick: u64, bit: u8) {
    let names: Vec<String> = {
        use ringfort_wal::file::Dir;
        disk.list()
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".wal"))
            .collect()
    };
    let name = &names[seg_pick % names.len()];
    let mut bytes = disk.bytes(name).unwrap();
    let used = bytes.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
    let off = (off_pick % used as u64) as usize;
    bytes[off] ^= 1 << (bit % 8);
    let flipped = disk.crash_image(&mut Rng(1));
    flipped.set_bytes(name, bytes);
    for mode in [
        RecoveryMode::TolerateCorruptedTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupted,
    ] {
        let cfg = WalConfig {
            recovery: mode,
            ..config(SyncMethod::Fdatasync)
        };
        let copy = flipped.crash_image(&mut Rng(1));
        match recover(&copy, cfg) {
            Ok((_, got, report)) => {
                let mut prev = 0;
                for (lsn, bytes) in &got {
                    assert!(*lsn > prev, "{mode:?}: LSNs must increase");
                    prev = *lsn;
                    assert!(
                        bytes == &all[(*lsn - 1) as usize],
                        "{mode:?}: LSN {lsn} corrupt"
                    );
                }
                match mode {
                    RecoveryMode::SkipCorrupted => {}
                    _ => assert!(
                        got.iter().enumerate().all(|(i, r)| r.0 == i as u64 + 1),
                        "{mode:?}: a prefix of the log"
                    ),
                }
                if mode == RecoveryMode::AbsoluteConsistency {
                    assert_eq!(got.len(), all.len(), "absolute: all or an error");
                    assert_eq!(report.tail, Tail::Clean);
                }
                if got.len() < all.len() && mode != RecoveryMode::SkipCorrupted {
                    assert!(
                        !matches!(report.tail, Tail::Clean),
                        "{mode:?}: loss is reported"
                    );
                }
            }
            Err(WalError::Corrupt(c)) => {
                assert!(
                    matches!(
                        mode,
                        RecoveryMode::TolerateCorruptedTail | RecoveryMode::AbsoluteConsistency
                    ),
                    "{mode:?} must not fail on a flip: {c}"
                );
                if mode == RecoveryMode::TolerateCorruptedTail {
                    assert!(matches!(c.severity, Severity::MidLog { .. }), "{c}");
                }
                assert!(c.to_string().contains("offset"), "{c}");
            }
            Err(e) => panic!("{mode:?}: unexpected error {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(128, 32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn bit_flips_in_every_mode(seg in any::<usize>(), off in any::<u64>(), bit in any::<u8>()) {
        let (disk, all) = written_log(60);
        check_flip(&disk, &all, seg, off, bit);
    }
}

#[test]
fn enospc_reaches_every_waiter_and_appends_resume() {
    let disk = SimDisk::new();
    let cfg = WalConfig {
        segment_size: 128 << 10,
        ..config(SyncMethod::Fdatasync)
    };
    let (wal, _, _) = recover(&disk, cfg.clone()).unwrap();
    let wal = Arc::new(wal);
    wal.append(&record(1, 100)).unwrap();
    disk.fail_with(Some(libc::ENOSPC));
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || wal.append(&record(100 + w, 50_000)))
        })
        .collect();
    for h in handles {
        match h.join().unwrap() {
            Err(e) => assert!(e.is_no_space(), "{e}"),
            Ok(lsn) => panic!("LSN {lsn} acknowledged while the disk was full"),
        }
    }
    disk.fail_with(None);
    let lsn = wal.append(&record(7, 100)).unwrap();
    assert_eq!(lsn, 2, "failed LSNs are handed out again");
    drop(wal);
    let (_, got, _) = recover(&disk, cfg).unwrap();
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(got[1].1, record(7, 100));
}
