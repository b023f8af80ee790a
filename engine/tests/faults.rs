//! Injected faults (feature `fault-injection`) against the engine itself: the WAL under
//! failing writes, fsyncs and preallocations and a crash that loses unsynced pages, and
//! the network under failing accepts and receives.
//!
//! The oracle everywhere: no LSN is acknowledged (reported durable) unless it is; a failed
//! record is reported to the handler with its cause; the log carries on afterwards; and
//! after a restart every acknowledged record comes back byte for byte.
//!
//! Faults are process-wide, so the tests here take a lock and run one at a time.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use ringfort::fault::{self, Fault, Point};
use ringfort::wal::{Failure, IoOp, Lsn, WalConfig, WalError};
use ringfort::{Ctx, Engine, EngineError, Handler, WalId};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the test lock and clears every fault.
fn serial() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fault::reset();
    g
}

/// Small segments and batches, so that groups and rotations come often.
fn wal_config() -> WalConfig {
    WalConfig {
        segment_size: 256 << 10,
        block_size: 64 << 10,
        batch_bytes: 64 << 10,
        max_record: 16 << 10,
        max_batch_records: 16,
        ..WalConfig::default()
    }
}

/// What the handler did and saw, shared with the test thread.
#[derive(Default)]
struct Book {
    /// The model: payloads appended and not failed, by LSN.
    live: BTreeMap<Lsn, Vec<u8>>,
    /// Every payload ever appended under each LSN (failed LSNs are handed out again).
    history: HashMap<Lsn, Vec<Vec<u8>>>,
    /// Every LSN below this was reported durable.
    durable: Lsn,
    failures: Vec<Failure>,
    /// Records replayed at open, in order.
    replayed: Vec<(Lsn, Vec<u8>)>,
    /// Appends still to make (made from `on_tick`, at most 32 not yet durable).
    to_append: usize,
    /// Stop appending at the first failure (until the test asks for more).
    stop_on_failure: bool,
    tag: u64,
    seed: u64,
    /// Records in the log when the current crash cycle began (for the totals).
    live_at_start: Lsn,
}

impl Book {
    fn payload(&mut self, lsn: Lsn) -> Vec<u8> {
        self.tag += 1;
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let len = [0usize, 7, 300, 5000, 16_000][(self.seed % 5) as usize];
        let mut p = format!("lsn {lsn} tag {} ", self.tag).into_bytes();
        p.extend((0..len).map(|i| (self.seed as usize + i) as u8));
        p
    }
}

type Shared = Arc<Mutex<Book>>;

struct Writer {
    dir: PathBuf,
    wal: Option<WalId>,
    book: Shared,
}

impl Writer {
    fn append_some(&mut self, cx: &mut Ctx<'_, ()>) {
        let Some(wal) = self.wal else { return };
        if fault::crashed() {
            return;
        }
        let mut b = self.book.lock().unwrap();
        while b.to_append > 0 {
            let next = cx.wal_next_lsn(wal).unwrap();
            if next - b.durable >= 32 {
                return;
            }
            let payload = b.payload(next);
            match cx.wal_append(wal, &payload) {
                Ok(lsn) => {
                    assert_eq!(lsn, next);
                    b.history.entry(lsn).or_default().push(payload.clone());
                    assert!(b.live.insert(lsn, payload).is_none(), "LSN {lsn} twice");
                    b.to_append -= 1;
                }
                Err(EngineError::Wal(WalError::Full(_) | WalError::Failed(_))) => return,
                Err(e) => panic!("append: {e}"),
            }
        }
    }
}

impl Handler for Writer {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        let book = self.book.clone();
        let (wal, report) = cx
            .wal_open(&self.dir, wal_config(), 0, |r, _| {
                book.lock()
                    .unwrap()
                    .replayed
                    .push((r.lsn, r.payload.to_vec()));
                Ok(())
            })
            .expect("wal open");
        self.book.lock().unwrap().durable = report.next_lsn;
        self.wal = Some(wal);
    }

    fn on_data(
        &mut self,
        _: &mut Ctx<'_, ()>,
        _: ringfort::ConnId,
        _: &mut ringfort::pool::BufChain,
    ) {
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, _: Option<ringfort::CoreId>, _: ()) {
        self.append_some(cx);
    }

    fn on_tick(&mut self, cx: &mut Ctx<'_, ()>) {
        self.append_some(cx);
    }

    fn on_wal_durable(&mut self, cx: &mut Ctx<'_, ()>, _: WalId, durable: Lsn) {
        self.book.lock().unwrap().durable = durable;
        self.append_some(cx);
    }

    fn on_wal_failed(&mut self, _: &mut Ctx<'_, ()>, _: WalId, failure: Failure) {
        let mut b = self.book.lock().unwrap();
        assert!(
            b.durable <= failure.lsns.start,
            "failed LSNs {:?} were acknowledged (durable {})",
            failure.lsns,
            b.durable
        );
        b.live.retain(|&lsn, _| lsn < failure.lsns.start);
        if b.stop_on_failure {
            b.to_append = 0;
        }
        b.failures.push(failure);
    }
}

/// A one-core engine running a [`Writer`] on `dir`.
struct Rig {
    engine: Engine<()>,
    book: Shared,
}

impl Rig {
    fn open(dir: &Path, book: Shared) -> Rig {
        let d = dir.to_path_buf();
        let b = book.clone();
        let engine = Engine::start(config(1), move |_| Writer {
            dir: d.clone(),
            wal: None,
            book: b.clone(),
        })
        .expect("engine start");
        // The core replays and opens the log in `on_start`; wait for it.
        wait_for("the log to open", || {
            let _ = engine.post(0, ());
            book.lock().unwrap().durable > 0
        });
        Rig { engine, book }
    }

    /// Asks for `n` more appends and waits until they are made and settled: durable, or
    /// failed.
    fn append(&self, n: usize, stop_on_failure: bool) {
        {
            let mut b = self.book.lock().unwrap();
            b.to_append += n;
            b.stop_on_failure = stop_on_failure;
        }
        wait_for("appends to settle", || {
            let _ = self.engine.post(0, ());
            let b = self.book.lock().unwrap();
            let last = b.live.keys().next_back().map_or(0, |l| l + 1);
            b.to_append == 0 && b.durable >= last
        });
    }

    fn close(self) {
        self.engine.stop(Duration::from_secs(5));
        self.engine.wait().expect("engine stops");
    }
}

/// Polls `done` until it holds; panics naming `what` after a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringfort-faults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Reopens the log and checks it holds exactly the model; returns the restarted rig.
fn reopen_and_verify(dir: &Path, book: &Shared) -> Rig {
    let model: Vec<(Lsn, Vec<u8>)> = {
        let mut b = book.lock().unwrap();
        b.replayed.clear();
        b.durable = 0;
        b.live.iter().map(|(l, p)| (*l, p.clone())).collect()
    };
    let rig = Rig::open(dir, book.clone());
    let b = book.lock().unwrap();
    assert_eq!(b.replayed.len(), model.len(), "record count after restart");
    for (got, want) in b.replayed.iter().zip(&model) {
        assert_eq!(got.0, want.0, "LSN order after restart");
        assert!(got.1 == want.1, "record {} differs after restart", got.0);
    }
    drop(b);
    rig
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count()
}

#[test]
fn a_failed_fsync_poisons_the_segment_and_nothing_after_it_is_acknowledged() {
    let _g = serial();
    let dir = temp_dir("fsync");
    let book = Shared::default();
    let rig = Rig::open(&dir, book.clone());
    rig.append(40, true);
    let before = book.lock().unwrap().durable;
    let segs_before = segments(&dir);
    fault::inject(Point::Fsync, 1, 1, Fault::Errno(libc::EIO));
    rig.append(20, true);
    {
        let b = book.lock().unwrap();
        assert_eq!(b.failures.len(), 1, "{:?}", b.failures);
        let f = &b.failures[0];
        assert_eq!(f.error.op, IoOp::Sync);
        assert_eq!(f.error.errno, Some(libc::EIO));
        assert!(f.lsns.start >= before, "{:?} vs durable {before}", f.lsns);
        assert!(b.durable <= f.lsns.start);
    }
    assert_eq!(fault::fired(Point::Fsync), 1);
    // The poisoned segment is never written again: the next appends go to a new one.
    rig.append(30, false);
    assert!(
        segments(&dir) > segs_before,
        "no new segment after the failure"
    );
    assert_eq!(book.lock().unwrap().failures.len(), 1);
    rig.close();
    reopen_and_verify(&dir, &book).close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_and_short_writes_fail_their_group_and_the_log_carries_on() {
    let _g = serial();
    let dir = temp_dir("write");
    let book = Shared::default();
    let rig = Rig::open(&dir, book.clone());
    rig.append(20, true);
    for (fault, kind) in [
        (Fault::Errno(libc::EIO), Some(libc::EIO)),
        (Fault::Errno(libc::ENOSPC), Some(libc::ENOSPC)),
        (Fault::Short, None),
    ] {
        let seen = book.lock().unwrap().failures.len();
        fault::inject(Point::Write, 1, 1, fault);
        rig.append(20, true);
        let b = book.lock().unwrap();
        assert_eq!(b.failures.len(), seen + 1, "{fault:?}: {:?}", b.failures);
        let f = &b.failures[seen];
        assert_eq!(f.error.op, IoOp::Write, "{fault:?}");
        match kind {
            Some(errno) => assert_eq!(f.error.errno, Some(errno)),
            None => assert_eq!(f.error.kind, std::io::ErrorKind::WriteZero),
        }
        drop(b);
        rig.append(10, false);
    }
    assert_eq!(fault::fired(Point::Write), 3);
    rig.close();
    reopen_and_verify(&dir, &book).close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn enospc_on_preallocation_fails_writers_until_space_returns() {
    let _g = serial();
    let dir = temp_dir("fallocate");
    let book = Shared::default();
    let rig = Rig::open(&dir, book.clone());
    rig.append(10, false);
    // The next three segment creations find the disk full.
    fault::inject(Point::Fallocate, 1, 3, Fault::Errno(libc::ENOSPC));
    let mut rounds = 0;
    while fault::fired(Point::Fallocate) < 3 {
        rig.append(40, false);
        rounds += 1;
        assert!(rounds < 100, "segments never rotated");
    }
    {
        let b = book.lock().unwrap();
        let nospace: Vec<&Failure> = b
            .failures
            .iter()
            .filter(|f| f.error.op == IoOp::Create)
            .collect();
        assert_eq!(nospace.len(), 3, "{:?}", b.failures);
        assert!(nospace.iter().all(|f| f.error.is_no_space()));
    }
    // Space is back: appends succeed again.
    let failures = book.lock().unwrap().failures.len();
    rig.append(40, false);
    assert_eq!(book.lock().unwrap().failures.len(), failures);
    rig.close();
    reopen_and_verify(&dir, &book).close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Crash at a random moment under a steady append load, lose what a power cut may lose,
/// reopen: every acknowledged record is there, the log has no holes, and anything past
/// the acknowledged point is a record that really was appended under its LSN.
#[test]
fn a_crash_loses_only_unacknowledged_records() {
    let _g = serial();
    let cycles: usize = std::env::var("RINGFORT_FAULT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = temp_dir("crash");
    let book = Shared::default();
    book.lock().unwrap().seed = 0x9e37_79b9_7f4a_7c15;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut totals = fault::Lost::default();
    let mut acked_total = 0;
    for cycle in 0..cycles {
        if cycle % 20 == 0 {
            // A fresh log every 20 crashes keeps replays (two per crash) short.
            let _ = std::fs::remove_dir_all(&dir);
            let mut b = book.lock().unwrap();
            b.live.clear();
            b.history.clear();
            b.live_at_start = 0;
        }
        fault::track_unsynced(true);
        {
            // `Rig::open` waits for the open to report a durable LSN.
            let mut b = book.lock().unwrap();
            b.replayed.clear();
            b.durable = 0;
        }
        let rig = Rig::open(&dir, book.clone());
        {
            let b = book.lock().unwrap();
            let last = b.replayed.last().map_or(0, |r| r.0);
            assert_eq!(
                b.durable,
                last + 1,
                "cycle {cycle}: the log continues after its last record"
            );
        }
        book.lock().unwrap().to_append = 100_000;
        // Wake the core: it appends from its handler's callbacks.
        let _ = rig.engine.post(0, ());
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(5 + rng % 60));
        fault::crash();
        rig.close();
        // Nothing becomes durable after the crash point, so this is what was acknowledged.
        let acked = book.lock().unwrap().durable;
        let lost = fault::lose_unsynced(rng).expect("losing unsynced pages");
        totals.kept += lost.kept;
        totals.zeroed += lost.zeroed;
        totals.garbled += lost.garbled;
        totals.files_removed += lost.files_removed;
        // Reopen and check against what was acknowledged before the crash point.
        {
            let mut b = book.lock().unwrap();
            b.replayed.clear();
            b.durable = 0;
            b.to_append = 0;
        }
        fault::reset();
        let rig = Rig::open(&dir, book.clone());
        let mut b = book.lock().unwrap();
        let got: Vec<Lsn> = b.replayed.iter().map(|r| r.0).collect();
        assert!(
            got.iter().copied().eq(1..=got.len() as Lsn),
            "cycle {cycle}: the log has holes"
        );
        assert!(
            got.len() as Lsn + 1 >= acked,
            "cycle {cycle}: acknowledged up to {} but only {} records came back",
            acked - 1,
            got.len()
        );
        for (lsn, payload) in &b.replayed {
            if *lsn < acked {
                assert!(
                    b.live.get(lsn) == Some(payload),
                    "cycle {cycle}: acknowledged record {lsn} changed"
                );
            } else {
                assert!(
                    b.history.get(lsn).is_some_and(|h| h.contains(payload)),
                    "cycle {cycle}: record {lsn} was never appended"
                );
            }
        }
        // What is on disk now is the model the next cycle builds on.
        b.live = b.replayed.iter().cloned().collect();
        acked_total += acked - 1 - b.live_at_start;
        b.live_at_start = b.live.len() as Lsn;
        drop(b);
        rig.close();
    }
    fault::reset();
    assert!(
        totals.zeroed + totals.garbled > 0,
        "no crash ever caught an unsynced page: {totals:?}"
    );
    eprintln!(
        "crash model: {cycles} crashes, {acked_total} records acknowledged, none lost; \
         unsynced pages kept {}, zeroed {}, garbled {}; {} undurable segment files removed",
        totals.kept, totals.zeroed, totals.garbled, totals.files_removed
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_accepts_back_off_and_a_reset_receive_closes_only_its_connection() {
    let _g = serial();
    let (engine, addr) = start_echo(1);
    let mut good = connect(addr);
    assert_eq!(round_trip(&mut good, b"before"), b"before");
    fault::inject(Point::Accept, 1, 3, Fault::Errno(libc::EMFILE));
    for _ in 0..3 {
        // The kernel completed the handshake; the engine's accept "failed", so the
        // socket is closed under the client.
        let mut s = connect(addr);
        let _ = s.write_all(b"x");
        let mut buf = [0u8; 1];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "a refused accept served"
        );
        assert_eq!(round_trip(&mut good, b"during"), b"during");
    }
    assert_eq!(fault::fired(Point::Accept), 3);
    wait_for("accepts to resume after the back-off", || {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"y").is_ok() && {
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Ok(1))
        }
    });
    assert!(
        engine
            .metrics()
            .iter()
            .map(|m| m.accept_backoffs)
            .sum::<u64>()
            >= 1,
        "EMFILE did not back off"
    );
    // The next receive on any connection fails with ECONNRESET: that connection closes.
    let mut victim = connect(addr);
    assert_eq!(round_trip(&mut victim, b"v"), b"v");
    fault::inject(Point::Recv, 1, 1, Fault::Errno(libc::ECONNRESET));
    victim.write_all(b"lost").unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(victim.read(&mut buf), Ok(0) | Err(_)),
        "the reset connection served"
    );
    assert_eq!(fault::fired(Point::Recv), 1);
    assert_eq!(round_trip(&mut good, b"after"), b"after");
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}
