//! The blocking driver on real files: concurrent durable appends with group commit,
//! reopening and replay, chains, every durability mode and sync method, `O_DIRECT`,
//! `truncate_prefix` with segment recycling, zero-filled spare segments.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::TempDir;
use ringfort_pool::{Arena, BufChain, PoolConfig, Registration};
use ringfort_wal::format::{parse_segment_file_name, SPARE_PREFIX};
use ringfort_wal::{Durability, Lsn, RecoveryMode, SyncMethod, Tail, Wal, WalConfig};

fn reopen(
    tmp: &TempDir,
    cfg: WalConfig,
) -> (Wal, Vec<(Lsn, Vec<u8>)>, ringfort_wal::RecoveryReport) {
    let mut got = Vec::new();
    let dir = ringfort_wal::file::StdDir::open(tmp.path(), cfg.direct_io).unwrap();
    let (wal, report) = Wal::open_in(dir, cfg, 0, |r| {
        got.push((r.lsn, r.payload.to_vec()));
        Ok(())
    })
    .unwrap();
    (wal, got, report)
}

fn names(tmp: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn concurrent_durable_appends_come_back_in_order() {
    for (method, direct) in [(SyncMethod::Fdatasync, false), (SyncMethod::Dsync, true)] {
        let tmp = TempDir::new("concurrent");
        let cfg = WalConfig {
            sync_method: method,
            direct_io: direct,
            ..common::small_config()
        };
        let (wal, _, _) = reopen(&tmp, cfg.clone());
        let wal = Arc::new(wal);
        let written: Arc<Mutex<BTreeMap<Lsn, Vec<u8>>>> = Arc::default();
        let handles: Vec<_> = (0..8u64)
            .map(|w| {
                let wal = Arc::clone(&wal);
                let written = Arc::clone(&written);
                std::thread::spawn(move || {
                    for i in 0..60u64 {
                        let p = common::payload(w * 1000 + i, (i as usize * 397) % 12_000);
                        let lsn = wal.append(&p).unwrap();
                        assert!(lsn < wal.acked_lsn(), "acknowledged before returning");
                        assert!(written.lock().unwrap().insert(lsn, p).is_none());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let wal = Arc::try_unwrap(wal).ok().unwrap();
        assert_eq!(wal.next_lsn(), 481);
        wal.close().unwrap();
        let written = written.lock().unwrap();
        assert_eq!(
            written.keys().copied().collect::<Vec<_>>(),
            (1..=480).collect::<Vec<_>>()
        );
        let (wal, got, report) = reopen(&tmp, cfg);
        assert_eq!(report.tail, Tail::Clean);
        assert_eq!(got.len(), 480);
        for (lsn, p) in &got {
            assert!(written[lsn] == *p, "LSN {lsn} differs");
        }
        assert!(report.segments > 1, "segments rotated");
        assert_eq!(wal.append(b"after").unwrap(), 481, "the sequence continues");
    }
}

/// More appenders than waiter slots, and records that fill the batches: appenders wait
/// for a slot and for batch room (the `space` condition), and every one must be woken.
/// A lost wakeup leaves an appender blocked, which the join deadline reports.
#[test]
fn appenders_beyond_the_waiter_and_batch_bounds_all_finish() {
    let tmp = TempDir::new("bounds");
    let cfg = WalConfig {
        max_waiters: 2,
        max_batches: 2,
        ..common::small_config()
    };
    let (wal, _, _) = reopen(&tmp, cfg.clone());
    let wal = Arc::new(wal);
    let (done, finished) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..12u64)
        .map(|w| {
            let wal = Arc::clone(&wal);
            let done = done.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let p = common::payload(w * 1000 + i, 6_000 + (i as usize * 911) % 9_000);
                    wal.append(&p).unwrap();
                }
                done.send(w).unwrap();
            })
        })
        .collect();
    for _ in 0..12 {
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("an appender is still blocked after 120 s: a lost wakeup");
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(wal.next_lsn(), 481);
    assert_eq!(wal.acked_lsn(), 481, "every record acknowledged");
    let wal = Arc::try_unwrap(wal).ok().unwrap();
    wal.close().unwrap();
    let (_, got, report) = reopen(&tmp, cfg);
    assert_eq!(report.tail, Tail::Clean);
    assert_eq!(got.len(), 480);
}

#[test]
fn every_durability_mode_round_trips() {
    for durability in [Durability::Sync, Durability::Buffered, Durability::None] {
        let tmp = TempDir::new("durability");
        let cfg = WalConfig {
            durability,
            ..common::small_config()
        };
        let (wal, _, _) = reopen(&tmp, cfg.clone());
        for i in 0..100u64 {
            assert_eq!(wal.append(&common::payload(i, 100)).unwrap(), i + 1);
        }
        wal.flush().unwrap();
        assert_eq!(wal.acked_lsn(), 101);
        wal.close().unwrap();
        let (_, got, _) = reopen(&tmp, cfg);
        assert_eq!(got.len(), 100, "{durability:?}");
        assert_eq!(got[99].1, common::payload(99, 100));
    }
}

#[test]
fn chains_append_through_the_handle() {
    let tmp = TempDir::new("chains");
    let cfg = common::small_config();
    let (wal, _, _) = reopen(&tmp, cfg.clone());
    let arena = Arena::new(PoolConfig {
        registration: Registration::Off,
        ..PoolConfig::default()
    })
    .unwrap();
    let mut expect = Vec::new();
    for i in 0..20u64 {
        let p = common::payload(i, 1000 + i as usize * 1500);
        let mut chain = BufChain::new(1 << 20);
        chain.append_slice(&arena, &p).unwrap();
        assert_eq!(wal.append_chain(chain).unwrap(), i + 1);
        expect.push((i + 1, p));
    }
    wal.close().unwrap();
    let (_, got, _) = reopen(&tmp, cfg);
    assert!(got == expect);
}

#[test]
fn too_large_records_are_refused() {
    let tmp = TempDir::new("large");
    let (wal, _, _) = reopen(&tmp, common::small_config());
    let e = wal.append(&vec![0; (64 << 10) + 1]).unwrap_err();
    assert!(e.to_string().contains("maximum"), "{e}");
    assert_eq!(wal.append(b"ok").unwrap(), 1);
}

#[test]
fn truncate_prefix_removes_and_recycles_segments() {
    let tmp = TempDir::new("prefix");
    let cfg = WalConfig {
        recycle_segments: 2,
        zeroed_spares: 0,
        recovery: RecoveryMode::AbsoluteConsistency,
        ..common::small_config()
    };
    let (wal, _, _) = reopen(&tmp, cfg.clone());
    for i in 0..400u64 {
        wal.append(&common::payload(i, 3000)).unwrap();
    }
    let segs: Vec<Lsn> = names(&tmp)
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    assert!(segs.len() >= 5, "{segs:?}");
    let checkpoint = segs[3];
    let removed = wal.truncate_prefix(checkpoint).unwrap();
    assert_eq!(removed, 3);
    let after = names(&tmp);
    assert_eq!(
        after.iter().filter(|n| n.starts_with(SPARE_PREFIX)).count(),
        2
    );
    assert!(!after.contains(&ringfort_wal::format::segment_file_name(segs[0])));
    // New segments take the spares instead of new files.
    for i in 0..200u64 {
        wal.append(&common::payload(1000 + i, 3000)).unwrap();
    }
    let after = names(&tmp);
    assert_eq!(
        after.iter().filter(|n| n.starts_with(SPARE_PREFIX)).count(),
        0
    );
    wal.close().unwrap();
    // The recycled files hold stale frames past their ends; they never come back.
    let (_, got, report) = reopen(&tmp, cfg);
    assert_eq!(report.tail, Tail::Clean);
    assert_eq!(report.first_lsn, checkpoint);
    assert_eq!(got.first().unwrap().0, checkpoint);
    assert_eq!(got.last().unwrap().0, 600);
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert_eq!(got.last().unwrap().1, common::payload(1199, 3000));
}

/// Bytes of `path` (within its length) that hold no written data, by SEEK_HOLE/SEEK_DATA.
fn unwritten_bytes(path: &std::path::Path) -> u64 {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let seek = |from: u64, whence| {
        // SAFETY: plain syscall on a descriptor `f` owns.
        let r = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, whence) };
        if r < 0 {
            len
        } else {
            r as u64
        }
    };
    let (mut off, mut holes) = (0, 0);
    while off < len {
        let hole = seek(off, libc::SEEK_HOLE);
        let data = seek(hole, libc::SEEK_DATA).min(len);
        holes += data.saturating_sub(hole);
        off = data.max(hole + 1);
    }
    holes
}

#[test]
fn new_segments_take_zero_filled_spares() {
    let tmp = TempDir::new("zeroed");
    let cfg = common::small_config();
    assert_eq!(cfg.zeroed_spares, 1);
    let (wal, _, _) = reopen(&tmp, cfg.clone());
    // Open built one spare: full length, every byte written.
    let spare = tmp.path().join(format!("{SPARE_PREFIX}zeroed-0"));
    let meta = std::fs::metadata(&spare).expect("a zero-filled spare after open");
    assert_eq!(meta.len(), cfg.segment_size);
    assert_eq!(
        unwritten_bytes(&spare),
        0,
        "the spare has unwritten extents"
    );
    // A plain fallocated file does have them here, or this test proves nothing.
    let probe = tmp.path().join("probe");
    let f = std::fs::File::create(&probe).unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a descriptor `f` owns.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 1 << 20) };
        assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
    }
    assert_eq!(
        unwritten_bytes(&probe),
        1 << 20,
        "this file system hides unwritten extents"
    );
    std::fs::remove_file(&probe).unwrap();
    // Every segment is built from a spare: none has unwritten bytes. The builder is asked
    // once a segment is half written (each append here is one group of one 4 KiB page);
    // wait for it then, before the segment fills.
    let count = |prefix: &str| names(&tmp).iter().filter(|n| n.starts_with(prefix)).count();
    let segments = || {
        names(&tmp)
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .count()
    };
    let mut n = 0u64;
    let mut seen = 0;
    while seen < 4 {
        wal.append(&common::payload(n, 3000)).unwrap();
        n += 1;
        if segments() > seen {
            seen = segments();
            for _ in 0..cfg.segment_size / 2 / 4096 {
                wal.append(&common::payload(n, 3000)).unwrap();
                n += 1;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while count(SPARE_PREFIX) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no spare was prepared"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    wal.close().unwrap();
    let segs: Vec<String> = names(&tmp)
        .into_iter()
        .filter(|n| parse_segment_file_name(n).is_some())
        .collect();
    for seg in &segs {
        let path = tmp.path().join(seg);
        assert_eq!(unwritten_bytes(&path), 0, "{seg} was not zero-filled");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cfg.segment_size);
    }
    // The zero-filled tails read as a clean end, and everything comes back.
    let (_, got, report) = reopen(&tmp, cfg);
    assert_eq!(report.tail, Tail::Clean);
    assert_eq!(got.len() as u64, n);
    assert!(got
        .iter()
        .all(|(lsn, p)| *p == common::payload(lsn - 1, 3000)));
}

#[test]
fn reopen_cuts_a_torn_tail_and_continues_in_a_new_segment() {
    let tmp = TempDir::new("torn");
    let cfg = common::small_config();
    let (wal, _, _) = reopen(&tmp, cfg.clone());
    for i in 0..10u64 {
        wal.append(&common::payload(i, 2000)).unwrap();
    }
    wal.close().unwrap();
    let name = ringfort_wal::format::segment_file_name(1);
    let path = tmp.path().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[end - 500..].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (wal, got, report) = reopen(&tmp, cfg.clone());
    assert_eq!(got.len(), 9);
    assert!(matches!(report.tail, Tail::Torn(_)));
    let cut = report.repair.cut.unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        cut.1,
        "the tail was cut"
    );
    assert_eq!(wal.append(b"x").unwrap(), 10);
    wal.close().unwrap();
    assert!(names(&tmp).contains(&ringfort_wal::format::segment_file_name(10)));
    let (_, got, report) = reopen(
        &tmp,
        WalConfig {
            recovery: RecoveryMode::AbsoluteConsistency,
            ..cfg
        },
    );
    assert_eq!(report.tail, Tail::Clean);
    assert_eq!(got.len(), 10);
    assert_eq!(got[9].1, b"x");
}
