//! The `wal` suite: durable appends through ringfort-wal's blocking std driver, beside
//! okaywal and the device's own limits measured by fio, all in the same run.
//!
//! - **durable-append SIZE xN**: N appender threads each append records of SIZE bytes in
//!   a loop, each waiting until its own record is durable (`Wal::append` under
//!   `Durability::Sync`; okaywal's `begin_entry` + `write_chunk` + `commit`). The figure is
//!   records acknowledged per second inside the measured window, after a warm-up. Every
//!   side gets a fresh log directory per trial, on the same disk-backed file system
//!   ([`crate::sys::DataDir`]); opening and closing are not timed. Append latency (call to
//!   return) goes into an HDR histogram per side.
//! - **fio fdatasync limit x batch**: fio's io_uring sequential buffered write with
//!   `--fdatasync=1` at the size of one group commit of the case. With N writers each
//!   holding one record in flight, one sync can cover at most N records, so fio writes
//!   N x SIZE bytes (rounded up to 4 KiB, at most 4 MiB, so at most k = 4 MiB / SIZE
//!   records) and syncs; its syncs/s times k is the most records/s any WAL doing one sync
//!   per group could reach on this device.
//! - **fio O_DIRECT** (1 MiB cases only): fio's io_uring sequential `--direct=1` write of
//!   1 MiB blocks at queue depth 16 (and, in the full run, 1), as 1 MiB records/s and as
//!   MB/s in a separate `(bandwidth)` row: the device's sequential write bandwidth.
//!
//! Cases: 128 B, 256 B, 4 KiB and 1 MiB records at 1, 16 and 256 writers, plus 64 KiB at 16
//! writers; the x16 rows are the sweep the report's throughput-against-record-size plot
//! draws (in MB/s). `--quick` runs the x16 sweep and 1 MiB x1.
//!
//! Trials interleave the sides (rotating which goes first), and each side's median and
//! spread are reported. A side that fails is left out with the reason; ours failing drops
//! the case.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringfort_wal::{Wal, WalConfig};

use crate::fio::{self, Fio};
use crate::plots;
use crate::progress::{self, Progress};
use crate::report::{Dropped, Row, SuiteReport, Sweep};
use crate::stats::{latency_histogram, Latency, Trials};
use crate::sys::DataDir;
use crate::{BoxError, RunOpts};

const SUITE: &str = "wal";
const OKAYWAL: &str = "okaywal";
const FIO_SYNC: &str = "fio fdatasync limit x batch";
const FIO_DIRECT_QD1: &str = "fio O_DIRECT QD1";
const FIO_DIRECT_QD16: &str = "fio O_DIRECT QD16 (bandwidth limit)";

const MIB: usize = 1 << 20;
/// The largest fio write the fdatasync limit uses: one group commit is at most this big.
const FIO_MAX_BATCH: usize = 4 * MIB;
/// okaywal's segment preallocation, set to ringfort-wal's default segment size (64 MiB) so
/// that neither log rotates much more often than the other.
const OKAYWAL_PREALLOCATE: u32 = 64 << 20;
/// okaywal checkpoints (and starts a new segment) after this many bytes.
const OKAYWAL_CHECKPOINT_AFTER: u64 = 48 << 20;

/// One case: record size and appender threads.
#[derive(Clone, Copy, Debug)]
struct Case {
    size: usize,
    size_name: &'static str,
    writers: usize,
}

impl Case {
    fn name(&self) -> String {
        format!("durable-append {} x{}", self.size_name, self.writers)
    }

    /// Records one fio write of the fdatasync limit stands for, and its size.
    fn fio_batch(&self) -> (usize, usize) {
        let k = self.writers.min((FIO_MAX_BATCH / self.size).max(1));
        (k, (k * self.size).next_multiple_of(4096))
    }
}

const SIZES: [(usize, &str); 4] = [
    (128, "128 B"),
    (256, "256 B"),
    (4 << 10, "4 KiB"),
    (MIB, "1 MiB"),
];
const WRITERS: [usize; 3] = [1, 16, 256];
/// The writer count of the record-size sweep the WAL plot draws; 64 KiB fills the gap
/// between 4 KiB and 1 MiB there.
const SWEEP_WRITERS: usize = 16;
const SWEEP_EXTRA: (usize, &str) = (64 << 10, "64 KiB");

/// How long and how often to measure.
struct Plan {
    /// A smoke run: fewer cases and trials, and no QD1 O_DIRECT peer.
    quick: bool,
    trials: usize,
    warmup: Duration,
    measure: Duration,
    cases: Vec<Case>,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let mut all = SIZES
            .iter()
            .flat_map(|&(size, size_name)| {
                WRITERS.iter().map(move |&writers| Case {
                    size,
                    size_name,
                    writers,
                })
            })
            .collect::<Vec<_>>();
        all.push(Case {
            size: SWEEP_EXTRA.0,
            size_name: SWEEP_EXTRA.1,
            writers: SWEEP_WRITERS,
        });
        all.sort_by_key(|c| (c.size, c.writers));
        if quick {
            // The acceptance cases and the record-size sweep.
            let keep = |c: &Case| c.writers == SWEEP_WRITERS || (c.size, c.writers) == (MIB, 1);
            Plan {
                quick,
                trials: 3,
                warmup: Duration::from_millis(200),
                measure: Duration::from_millis(800),
                cases: all.into_iter().filter(keep).collect(),
            }
        } else {
            Plan {
                quick,
                trials: 5,
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(2),
                cases: all,
            }
        }
    }
}

/// Runs the suite.
pub fn run(opts: &RunOpts) -> Result<SuiteReport, BoxError> {
    let plan = Plan::new(opts.quick);
    let data = DataDir::new(SUITE)?;
    progress::say(SUITE, &data.note);
    let fio = Fio::find();
    if let Err(why) = &fio {
        progress::say(SUITE, &format!("fio peers left out: {why}"));
    }
    let mut rows = Vec::new();
    let mut dropped = Vec::new();
    for case in &plan.cases {
        match run_case(&plan, &data, fio.as_ref(), case) {
            Ok(mut r) => rows.append(&mut r),
            Err(reason) => {
                progress::say(SUITE, &format!("{}: NOT MEASURED: {reason}", case.name()));
                dropped.push(Dropped {
                    case: case.name(),
                    reason,
                });
            }
        }
    }
    Ok(SuiteReport {
        suite: SUITE,
        rows,
        dropped,
    })
}

// ---------------------------------------------------------------------------------------
// Appender threads

/// What one trial of appenders did inside the measured window.
struct Drive {
    /// Records acknowledged per second.
    per_sec: f64,
    /// Append latency, nanoseconds, of the appends that started and ended in the window.
    hist: Histogram<u64>,
}

/// Runs `writers` threads appending `size`-byte records with `append` for `warmup` plus
/// `measure`, counting the appends that return inside the measured window.
fn drive<F>(
    who: &str,
    writers: usize,
    size: usize,
    warmup: Duration,
    measure: Duration,
    append: F,
) -> Result<Drive, String>
where
    F: Fn(&[u8]) -> Result<(), String> + Sync,
{
    let start = OnceLock::<Instant>::new();
    let barrier = Barrier::new(writers + 1);
    let failed = AtomicBool::new(false);
    let watchdog = Watchdog::arm(
        warmup + measure + HANG_AFTER,
        format!(
            "{who}: {writers} appender thread(s) of {size} B records did not finish within {} s of \
             a {:.1} s run: an append never returned",
            (warmup + measure + HANG_AFTER).as_secs(),
            (warmup + measure).as_secs_f64()
        ),
    );
    let outcomes = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (start, barrier, failed, append) = (&start, &barrier, &failed, &append);
                s.spawn(move || -> Result<(u64, Histogram<u64>), String> {
                    let payload: Vec<u8> = (0..size)
                        .map(|i| (i.wrapping_mul(31) ^ w.wrapping_mul(131)) as u8)
                        .collect();
                    let mut hist = latency_histogram();
                    let mut n = 0u64;
                    barrier.wait();
                    let from = *start.get().expect("set before the barrier") + warmup;
                    let to = from + measure;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= to || failed.load(Ordering::Relaxed) {
                            return Ok((n, hist));
                        }
                        if let Err(e) = append(&payload) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        let t1 = Instant::now();
                        if t1 >= from && t1 <= to {
                            n += 1;
                            if t0 >= from {
                                hist.saturating_record(t1.duration_since(t0).as_nanos() as u64);
                            }
                        }
                    }
                })
            })
            .collect();
        let _ = start.set(Instant::now());
        barrier.wait();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("an appender thread panicked".into()))
            })
            .collect::<Vec<_>>()
    });
    watchdog.disarm();
    let mut records = 0u64;
    let mut hist = latency_histogram();
    for o in outcomes {
        let (n, h) = o?;
        records += n;
        hist.add(&h)
            .map_err(|e| format!("merging histograms: {e}"))?;
    }
    Ok(Drive {
        per_sec: records as f64 / measure.as_secs_f64(),
        hist,
    })
}

/// How long past its planned end a trial may run before it counts as hung.
const HANG_AFTER: Duration = Duration::from_secs(120);

/// Ends the process with a message when a trial hangs: a blocked append cannot be
/// cancelled, and a benchmark must stop by itself.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    fn arm(after: Duration, what: String) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                eprintln!();
                eprintln!("[{SUITE}] HANG: {what}; stopping the bench (exit 3)");
                std::process::exit(3);
            }
        });
        Watchdog { done: Some(tx) }
    }

    fn disarm(mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

/// One trial of ours: a fresh log with the default configuration.
fn ours_trial(data: &DataDir, plan: &Plan, case: &Case) -> Result<Drive, String> {
    let dir = data
        .fresh("ringfort-wal")
        .map_err(|e| format!("making the log directory: {e}"))?;
    let (wal, _) =
        Wal::open(&dir, WalConfig::default()).map_err(|e| format!("opening the WAL: {e}"))?;
    let d = drive(
        "ringfort-wal",
        case.writers,
        case.size,
        plan.warmup,
        plan.measure,
        |p| {
            wal.append(p)
                .map(|_| ())
                .map_err(|e| format!("Wal::append: {e}"))
        },
    );
    let closed = wal.close().map_err(|e| format!("closing the WAL: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let d = d?;
    closed?;
    Ok(d)
}

/// One trial of okaywal: a fresh log, each append one entry of one chunk, committed.
fn okaywal_trial(data: &DataDir, plan: &Plan, case: &Case) -> Result<Drive, String> {
    let dir = data
        .fresh("okaywal")
        .map_err(|e| format!("making the log directory: {e}"))?;
    let log = okaywal::Configuration::default_for(&dir)
        .preallocate_bytes(OKAYWAL_PREALLOCATE)
        .checkpoint_after_bytes(OKAYWAL_CHECKPOINT_AFTER)
        .open(okaywal::LogVoid)
        .map_err(|e| format!("opening okaywal: {e}"))?;
    let d = drive(
        OKAYWAL,
        case.writers,
        case.size,
        plan.warmup,
        plan.measure,
        |p| {
            let mut entry = log
                .begin_entry()
                .map_err(|e| format!("okaywal begin_entry: {e}"))?;
            entry
                .write_chunk(p)
                .map_err(|e| format!("okaywal write_chunk: {e}"))?;
            entry
                .commit()
                .map(|_| ())
                .map_err(|e| format!("okaywal commit: {e}"))
        },
    );
    let closed = log
        .shutdown()
        .map_err(|e| format!("shutting okaywal down: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let d = d?;
    closed?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------
// One case

/// Above this share of the CPUs used by other processes, or of disk time with nothing of
/// the bench running, a row says the machine was disturbed.
const DISTURBED: f64 = 0.15;
/// How long the machine is watched before and after a case.
const QUIET_CHECK: Duration = Duration::from_millis(300);

/// Other work on the machine: the share of the CPUs other processes used, and, with
/// nothing of ours running, the disk of the data directory (name, busy share, MB/s
/// written).
type Quiet = (Option<f64>, Option<(String, f64, f64)>);

fn quiet_check(data: &DataDir, disk: bool) -> Quiet {
    if disk {
        // Let our own earlier writes reach the disk first, so they are not counted.
        // SAFETY: sync(2) has no preconditions.
        unsafe { libc::sync() };
    }
    let cpu = crate::sys::others_busy(QUIET_CHECK);
    let disk = if disk {
        crate::sys::disk_busy(data.path(), QUIET_CHECK)
    } else {
        None
    };
    (cpu, disk)
}

/// A note when the machine was busy with other work just before or just after a case.
fn quiet_note(before: Quiet, after: Quiet) -> Option<String> {
    let cpu = |q: &Quiet| q.0.unwrap_or(0.0);
    let disk = |q: &Quiet| q.1.as_ref().map_or(0.0, |d| d.1);
    let worst = cpu(&before)
        .max(cpu(&after))
        .max(disk(&before))
        .max(disk(&after));
    (worst > DISTURBED).then(|| {
        let d = before
            .1
            .as_ref()
            .map_or("unknown".to_string(), |(n, busy, mbs)| {
                format!("{n} {:.0}% busy, {mbs:.1} MB/s written", busy * 100.0)
            });
        format!(
            "DISTURBED: other processes used {:.0}% of the CPUs and, with nothing of this \
             bench running, the disk was {d} just before this case; other processes used \
             {:.0}% of the CPUs just after ({} ms each); so other work shared the machine and \
             these figures are not clean",
            cpu(&before) * 100.0,
            cpu(&after) * 100.0,
            QUIET_CHECK.as_millis()
        )
    })
}

/// A side of a case: its name, its trials so far, or why it stopped.
struct Side {
    name: &'static str,
    kind: Kind,
    trials: Trials,
    hist: Option<Histogram<u64>>,
    failed: Option<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Ours,
    Okaywal,
    FioSync,
    FioDirect(u32),
}

impl Side {
    fn new(name: &'static str, kind: Kind, latency: bool) -> Side {
        Side {
            name,
            kind,
            trials: Trials::new(),
            hist: latency.then(latency_histogram),
            failed: None,
        }
    }
}

fn run_case(
    plan: &Plan,
    data: &DataDir,
    fio: Result<&Fio, &String>,
    case: &Case,
) -> Result<Vec<Row>, String> {
    let name = case.name();
    let big = case.size == MIB;
    let mut sides = vec![
        Side::new("ours", Kind::Ours, true),
        Side::new(OKAYWAL, Kind::Okaywal, true),
        Side::new(FIO_SYNC, Kind::FioSync, false),
    ];
    if big {
        if !plan.quick {
            sides.push(Side::new(FIO_DIRECT_QD1, Kind::FioDirect(1), false));
        }
        sides.push(Side::new(FIO_DIRECT_QD16, Kind::FioDirect(16), false));
    }
    if let Err(why) = fio {
        for s in sides.iter_mut() {
            if matches!(s.kind, Kind::FioSync | Kind::FioDirect(_)) {
                s.failed = Some(why.clone());
            }
        }
    }
    let (k, fio_bs) = case.fio_batch();
    let fio_job = |kind: Kind| -> fio::Job {
        let (bs, direct, fdatasync, iodepth) = match kind {
            Kind::FioDirect(qd) => (MIB, true, false, qd),
            _ => (fio_bs, false, true, 1),
        };
        fio::Job {
            bs,
            direct,
            fdatasync,
            iodepth,
            // O_DIRECT: large enough that the run rarely wraps around, fallocated so it
            // costs no writes up front. fdatasync: one WAL segment, written before the
            // run, as the WAL's zero-filled segments are.
            size: if direct { 4 << 30 } else { 64 << 20 },
            overwrite: !direct,
            ramp: plan.warmup,
            runtime: plan.measure,
        }
    };

    let before = quiet_check(data, true);
    let progress = Progress::start(SUITE, &name, plan.trials);
    for trial in 0..plan.trials {
        let n = sides.len();
        for i in 0..n {
            let side = &mut sides[(i + trial) % n];
            if side.failed.is_some() {
                continue;
            }
            let outcome = match side.kind {
                Kind::Ours => ours_trial(data, plan, case).map(|d| (d.per_sec, Some(d.hist))),
                Kind::Okaywal => okaywal_trial(data, plan, case).map(|d| (d.per_sec, Some(d.hist))),
                Kind::FioSync | Kind::FioDirect(_) => {
                    let fio = fio.expect("fio sides are failed up front without fio");
                    let job = fio_job(side.kind);
                    fio::run(fio, data.path(), &job).map(|o| match side.kind {
                        Kind::FioSync => (o.iops * k as f64, None),
                        _ => (o.bytes_per_sec / MIB as f64, None),
                    })
                }
            };
            match outcome {
                Ok((per_sec, hist)) => {
                    side.trials.push(per_sec);
                    if let (Some(acc), Some(h)) = (side.hist.as_mut(), hist) {
                        let _ = acc.add(&h);
                    }
                }
                Err(e) => {
                    eprintln!();
                    progress::say(SUITE, &format!("{name}: {} failed: {e}", side.name));
                    side.failed = Some(e);
                }
            }
        }
        progress.trial();
    }
    progress.finish();
    // Only the CPUs after: the disk is still busy with this case's deletes and discards.
    let after = quiet_check(data, false);

    let ours_side = &sides[0];
    if let Some(why) = &ours_side.failed {
        return Err(format!("ringfort-wal failed: {why}"));
    }
    let ours = ours_side.trials.summary().ok_or("no trial of ours ran")?;
    let mut peers = Vec::new();
    let mut peers_not_run = Vec::new();
    let mut latency = Vec::new();
    for s in &sides {
        if let Some(l) = s.hist.as_ref().and_then(Latency::from_histogram) {
            latency.push((s.name.to_string(), l));
        }
        if matches!(s.kind, Kind::Ours) {
            continue;
        }
        match (&s.failed, s.trials.summary()) {
            (Some(why), _) => peers_not_run.push((s.name.to_string(), why.clone())),
            (None, Some(sum)) => peers.push((s.name.to_string(), sum)),
            (None, None) => peers_not_run.push((s.name.to_string(), "no trial ran".into())),
        }
    }
    let mut notes = vec![
        format!(
            "{} appender thread(s), each waiting for its own record to be durable before the \
             next; records/s counts appends that returned inside a {:.1} s window after a \
             {:.1} s warm-up; a fresh log per trial; sides interleaved, {} trials",
            case.writers,
            plan.measure.as_secs_f64(),
            plan.warmup.as_secs_f64(),
            plan.trials
        ),
        {
            let c = WalConfig::default();
            format!(
                "ours: ringfort-wal Wal (std driver, group commit), WalConfig::default(): \
                 durability {:?}, sync {:?}, direct_io {}, batch_bytes {} KiB, max_batches {}, \
                 segment_size {} MiB, syncs_in_flight {}, zeroed_spares {} (the first built \
                 while opening, untimed, as okaywal zero-fills at open)",
                c.durability,
                c.sync_method,
                c.direct_io,
                c.batch_bytes >> 10,
                c.max_batches,
                c.segment_size >> 20,
                c.syncs_in_flight,
                c.zeroed_spares
            )
        },
        format!(
            "okaywal 0.3: begin_entry + write_chunk + commit per record (commit returns once \
             synced with fdatasync); segments preallocated to {} MiB, checkpoint after {} MiB, \
             the LogVoid manager",
            OKAYWAL_PREALLOCATE >> 20,
            OKAYWAL_CHECKPOINT_AFTER >> 20
        ),
        format!(
            "{FIO_SYNC}: fio writes {fio_bs} B then fdatasyncs, one write at a time \
             ({}); with {} writer(s) each holding one record in flight a group commit covers \
             at most {k} record(s), so the row is fio's syncs/s x {k}, the most records/s a \
             log doing one sync per group can reach here; fio's 64 MiB file is written before \
             the run (--overwrite=1), so its writes overwrite written blocks, as in \
             ringfort-wal's zero-filled segments and okaywal's zero-written preallocation",
            fio_job(Kind::FioSync).describe(),
            case.writers,
        ),
    ];
    if big {
        notes.push(format!(
            "fio O_DIRECT rows: 1 MiB writes/s = 1 MiB records/s ({}{}); the acceptance \
             target is ours >= 85% of the O_DIRECT bandwidth (QD16)",
            fio_job(Kind::FioDirect(16)).describe(),
            if plan.quick {
                ""
            } else {
                ", and the same with --iodepth=1"
            }
        ));
    }
    notes.push(data.note.clone());
    if let Some(n) = quiet_note(before, after) {
        progress::say(SUITE, &format!("{name}: {n}"));
        notes.push(n);
    }
    if let Ok(f) = fio {
        notes.push(format!("fio: {}", f.version));
    }

    let mut rows = vec![Row {
        suite: SUITE,
        case: name.clone(),
        metric: "records/s",
        higher_is_better: true,
        ours,
        peers: peers.clone(),
        peers_not_run: peers_not_run.clone(),
        notes,
        latency,
        extra: Vec::new(),
        sweep: (case.writers == SWEEP_WRITERS).then_some(Sweep {
            plot: plots::WAL_SIZES,
            x: case.size as f64,
            y_scale: case.size as f64 / 1e6,
        }),
    }];
    if big {
        // The same trials in MB/s (1 MiB = 1.048576 MB per record).
        let mb = MIB as f64 / 1e6;
        let scale = |s: crate::stats::Summary| crate::stats::Summary {
            min: s.min * mb,
            p25: s.p25 * mb,
            median: s.median * mb,
            p75: s.p75 * mb,
            max: s.max * mb,
            ..s
        };
        rows.push(Row {
            suite: SUITE,
            case: format!("{name} (bandwidth)"),
            metric: "MB/s",
            higher_is_better: true,
            ours: scale(ours),
            peers: peers.into_iter().map(|(n, s)| (n, scale(s))).collect(),
            peers_not_run,
            notes: vec![format!(
                "the trials of `{name}` in MB/s of payload (1 MiB records); the ratio to \
                 {FIO_DIRECT_QD16} is the acceptance figure (target: ours >= 0.85x)"
            )],
            latency: Vec::new(),
            extra: Vec::new(),
            sweep: None,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_and_fio_batches() {
        let c = Case {
            size: 256,
            size_name: "256 B",
            writers: 16,
        };
        assert_eq!(c.name(), "durable-append 256 B x16");
        assert_eq!(c.fio_batch(), (16, 4096));
        let big = Case {
            size: MIB,
            size_name: "1 MiB",
            writers: 256,
        };
        assert_eq!(big.fio_batch(), (4, 4 * MIB));
        let one = Case {
            size: 128,
            size_name: "128 B",
            writers: 1,
        };
        assert_eq!(one.fio_batch(), (1, 4096));
    }

    #[test]
    fn quick_plan_has_the_acceptance_cases() {
        let names: Vec<String> = Plan::new(true).cases.iter().map(Case::name).collect();
        assert!(names.contains(&"durable-append 256 B x16".to_string()));
        assert!(names.contains(&"durable-append 1 MiB x1".to_string()));
        for size in ["128 B", "256 B", "4 KiB", "64 KiB", "1 MiB"] {
            assert!(
                names.contains(&format!("durable-append {size} x16")),
                "{size}"
            );
        }
        assert_eq!(Plan::new(false).cases.len(), 13);
    }

    #[test]
    fn drive_counts_appends_in_the_window() {
        let d = drive(
            "test",
            2,
            16,
            Duration::from_millis(10),
            Duration::from_millis(50),
            |_| {
                std::thread::sleep(Duration::from_millis(1));
                Ok(())
            },
        )
        .unwrap();
        assert!(d.per_sec > 0.0);
        assert!(!d.hist.is_empty());
        let e = drive(
            "test",
            2,
            16,
            Duration::ZERO,
            Duration::from_millis(20),
            |_| Err("boom".to_string()),
        );
        assert!(e.is_err());
    }
}
