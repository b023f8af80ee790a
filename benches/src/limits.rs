//! The machine's physical limits, measured in the same run as the suites and shown beside
//! their results: what no implementation on this machine can beat.
//!
//! - **loopback TCP bandwidth**: one TCP stream over 127.0.0.1, a thread writing 128 KiB
//!   buffers pinned to the load generator's CPUs and a thread reading pinned to the
//!   server's (the echo suite's split), bytes read per second in a window after a warm-up.
//! - **fio fdatasync rate**: fio's io_uring sequential 4 KiB buffered writes, each followed
//!   by an fdatasync, on the suites' data file system ([`crate::fio`]), over a 64 MiB file
//!   written first (`--overwrite=1`, as the WAL's zero-filled segments are): syncs per second.
//! - **fio O_DIRECT sequential bandwidth**: fio's io_uring sequential 1 MiB `--direct=1`
//!   writes at queue depth 16: MB/s.
//! - **memory copy bandwidth**: `copy_from_slice` between two 64 MiB buffers (far larger
//!   than the caches), bytes copied per second by one thread (each byte is read once and
//!   written once).
//! - **crc32fast**: `crc32fast::hash` over a 256 KiB buffer that stays in cache, bytes per
//!   second by one thread: the checksum ceiling of the WAL's record path.
//!
//! Each limit runs a few trials and reports the median and spread, like a suite's row. A
//! limit that cannot be measured (fio missing, no disk-backed directory) carries the reason
//! and no number.

use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fio::{self, Fio};
use crate::progress::{self, Progress};
use crate::stats::{Summary, Trials};
use crate::sys::{self, DataDir};

/// One stream over 127.0.0.1.
pub const LOOPBACK: &str = "loopback TCP bandwidth (1 stream)";
/// fio's 4 KiB write + fdatasync rate.
pub const FIO_SYNC: &str = "fio fdatasync rate (4 KiB writes)";
/// fio's O_DIRECT sequential write bandwidth.
pub const FIO_DIRECT: &str = "fio O_DIRECT sequential write (1 MiB, QD16)";
/// One thread's memcpy bandwidth.
pub const MEMCPY: &str = "memory copy bandwidth (1 thread)";
/// One thread's crc32fast rate.
pub const CRC: &str = "crc32fast (1 thread)";

/// Which limits bear on which suite, in display order.
pub fn for_suite(suite: &str) -> &'static [&'static str] {
    match suite {
        "pool" => &[MEMCPY],
        "wal" => &[FIO_SYNC, FIO_DIRECT, CRC],
        "echo" => &[LOOPBACK],
        "resp" => &[LOOPBACK, FIO_SYNC],
        _ => &[],
    }
}

/// One measured limit.
#[derive(Clone, Debug)]
pub struct Limit {
    /// What it is, e.g. [`LOOPBACK`].
    pub name: &'static str,
    /// The unit of the figures.
    pub unit: &'static str,
    /// The median and spread of its trials, or why it could not be measured.
    pub outcome: Result<Summary, String>,
    /// How it was measured, in one line.
    pub how: String,
}

/// Every limit a run measured.
#[derive(Clone, Debug, Default)]
pub struct Limits(pub Vec<Limit>);

impl Limits {
    /// The limit named `name`, when it was measured.
    pub fn get(&self, name: &str) -> Option<&Summary> {
        self.0
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.outcome.as_ref().ok())
    }
}

/// How long and how often.
struct Plan {
    trials: usize,
    warmup: Duration,
    window: Duration,
    fio_trials: usize,
    fio_runtime: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                trials: 3,
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(300),
                fio_trials: 1,
                fio_runtime: Duration::from_millis(1500),
            }
        } else {
            Plan {
                trials: 5,
                warmup: Duration::from_millis(200),
                window: Duration::from_secs(1),
                fio_trials: 3,
                fio_runtime: Duration::from_secs(3),
            }
        }
    }
}

/// Measures the limits that bear on `suites`, each once per run.
pub fn measure(suites: &[&str], quick: bool) -> Limits {
    let plan = Plan::new(quick);
    let wanted = |name: &str| suites.iter().any(|s| for_suite(s).contains(&name));
    let mut out = Vec::new();
    if wanted(LOOPBACK) {
        out.push(timed(
            LOOPBACK,
            "GB/s",
            &plan,
            loopback_note(),
            loopback_trial,
        ));
    }
    if wanted(FIO_SYNC) || wanted(FIO_DIRECT) {
        out.extend(fio_limits(&plan, wanted(FIO_SYNC), wanted(FIO_DIRECT)));
    }
    if wanted(MEMCPY) {
        out.push(timed(
            MEMCPY,
            "GB/s",
            &plan,
            format!(
                "copy_from_slice between two {} MiB buffers, bytes copied per second",
                COPY_BYTES >> 20
            ),
            memcpy_trial,
        ));
    }
    if wanted(CRC) {
        out.push(timed(
            CRC,
            "GB/s",
            &plan,
            format!(
                "crc32fast::hash over a {} KiB buffer held in cache, bytes per second",
                CRC_BYTES >> 10
            ),
            crc_trial,
        ));
    }
    Limits(out)
}

/// Runs `trial` (warm-up, window) -> GB/s `plan.trials` times.
fn timed(
    name: &'static str,
    unit: &'static str,
    plan: &Plan,
    how: String,
    trial: fn(Duration, Duration) -> Result<f64, String>,
) -> Limit {
    let progress = Progress::start("limits", name, plan.trials);
    let mut t = Trials::new();
    let mut failed = None;
    for _ in 0..plan.trials {
        match trial(plan.warmup, plan.window) {
            Ok(x) => t.push(x),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        progress.trial();
    }
    progress.finish();
    let outcome = match (failed, t.summary()) {
        (Some(e), _) => Err(e),
        (None, Some(s)) => Ok(s),
        (None, None) => Err("no trial ran".into()),
    };
    Limit {
        name,
        unit,
        outcome,
        how,
    }
}

// ---------------------------------------------------------------------------------------
// Loopback

const PUMP_WRITE: usize = 128 << 10;

/// The CPUs of the sender (the load generator's half) and of the receiver (the server's),
/// as the echo suite splits them.
fn pump_cpus() -> (Vec<usize>, Vec<usize>) {
    let cpus = sys::allowed_cpus().unwrap_or_default();
    if cpus.len() < 2 {
        return (cpus.clone(), cpus);
    }
    let half = cpus.len() / 2;
    (cpus[..half].to_vec(), cpus[half..].to_vec())
}

fn loopback_note() -> String {
    let (tx, rx) = pump_cpus();
    format!(
        "one TCP stream over 127.0.0.1 (TCP_NODELAY), {} KiB writes from CPUs {tx:?}, reads \
         on CPUs {rx:?}, bytes read per second",
        PUMP_WRITE >> 10
    )
}

fn loopback_trial(warmup: Duration, window: Duration) -> Result<f64, String> {
    let (tx_cpus, rx_cpus) = pump_cpus();
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = l.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    let received = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<f64, String> {
        let (received, stop) = (&received, &stop);
        let reader = s.spawn(move || -> Result<(), String> {
            let _ = sys::pin_current_thread(&rx_cpus);
            let (mut c, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
            let mut buf = vec![0u8; 2 * PUMP_WRITE];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        });
        let writer = s.spawn(move || -> Result<(), String> {
            let _ = sys::pin_current_thread(&tx_cpus);
            let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            c.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
            let buf = vec![0x5au8; PUMP_WRITE];
            while !stop.load(Ordering::Relaxed) {
                c.write_all(&buf).map_err(|e| format!("write: {e}"))?;
            }
            Ok(())
        });
        std::thread::sleep(warmup);
        let (a, t0) = (received.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(window);
        let (b, secs) = (received.load(Ordering::Relaxed), t0.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        writer
            .join()
            .map_err(|_| "the writer panicked".to_string())??;
        reader
            .join()
            .map_err(|_| "the reader panicked".to_string())??;
        if b <= a {
            return Err("no byte crossed loopback in the window".into());
        }
        Ok((b - a) as f64 / secs / 1e9)
    })
}

// ---------------------------------------------------------------------------------------
// Memory

const COPY_BYTES: usize = 64 << 20;
const CRC_BYTES: usize = 256 << 10;

/// Repeats `step` (which processes `bytes`) through warm-up and window; GB/s in the window.
fn rate(warmup: Duration, window: Duration, bytes: usize, mut step: impl FnMut()) -> f64 {
    let until = Instant::now() + warmup;
    while Instant::now() < until {
        step();
    }
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < window {
        step();
        n += 1;
    }
    n as f64 * bytes as f64 / t0.elapsed().as_secs_f64() / 1e9
}

fn memcpy_trial(warmup: Duration, window: Duration) -> Result<f64, String> {
    let src: Vec<u8> = (0..COPY_BYTES).map(|i| i as u8).collect();
    let mut dst = vec![0u8; COPY_BYTES];
    Ok(rate(warmup, window, COPY_BYTES, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    }))
}

fn crc_trial(warmup: Duration, window: Duration) -> Result<f64, String> {
    let buf: Vec<u8> = (0..CRC_BYTES).map(|i| (i * 7) as u8).collect();
    Ok(rate(warmup, window, CRC_BYTES, || {
        black_box(crc32fast::hash(black_box(&buf)));
    }))
}

// ---------------------------------------------------------------------------------------
// fio

fn fio_limits(plan: &Plan, sync: bool, direct: bool) -> Vec<Limit> {
    let jobs = [
        (
            sync,
            FIO_SYNC,
            "syncs/s",
            fio::Job {
                bs: 4096,
                direct: false,
                fdatasync: true,
                iodepth: 1,
                size: 64 << 20,
                overwrite: true,
                ramp: plan.warmup,
                runtime: plan.fio_runtime,
            },
        ),
        (
            direct,
            FIO_DIRECT,
            "MB/s",
            fio::Job {
                bs: 1 << 20,
                direct: true,
                fdatasync: false,
                iodepth: 16,
                size: 4 << 30,
                overwrite: false,
                ramp: plan.warmup,
                runtime: plan.fio_runtime,
            },
        ),
    ];
    let setup = Fio::find().and_then(|f| {
        DataDir::new("limits")
            .map(|d| (f, d))
            .map_err(|e| format!("no data directory: {e}"))
    });
    if let Err(why) = &setup {
        progress::say("limits", &format!("fio limits not measured: {why}"));
    }
    jobs.into_iter()
        .filter(|j| j.0)
        .map(|(_, name, unit, job)| {
            let outcome = match &setup {
                Err(why) => Err(why.clone()),
                Ok((fio, data)) => {
                    let progress = Progress::start("limits", name, plan.fio_trials);
                    let mut t = Trials::new();
                    let mut failed = None;
                    for _ in 0..plan.fio_trials {
                        match fio::run(fio, data.path(), &job) {
                            Ok(o) if job.fdatasync => t.push(o.iops),
                            Ok(o) => t.push(o.bytes_per_sec / 1e6),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                        progress.trial();
                    }
                    progress.finish();
                    match (failed, t.summary()) {
                        (Some(e), _) => Err(e),
                        (None, Some(s)) => Ok(s),
                        (None, None) => Err("no trial ran".into()),
                    }
                }
            };
            let mut how = job.describe();
            if let Ok((f, d)) = &setup {
                how.push_str(&format!("; {}; {}", f.version, d.note));
            }
            Limit {
                name,
                unit,
                outcome,
                how,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_names_known_limits() {
        for s in ["pool", "wal", "echo", "resp"] {
            assert!(!for_suite(s).is_empty(), "{s}");
        }
        assert!(for_suite("nope").is_empty());
    }

    #[test]
    fn memory_limits_measure_something() {
        let ms = Duration::from_millis(20);
        assert!(memcpy_trial(ms, ms).unwrap() > 0.0);
        assert!(crc_trial(ms, ms).unwrap() > 0.0);
    }

    #[test]
    fn loopback_pump_moves_bytes() {
        let gbs = loopback_trial(Duration::from_millis(20), Duration::from_millis(50)).unwrap();
        assert!(gbs > 0.0);
    }

    #[test]
    fn only_the_wanted_limits_are_measured() {
        let l = measure(&["pool"], true);
        assert_eq!(l.0.len(), 1);
        assert_eq!(l.0[0].name, MEMCPY);
        assert!(l.get(MEMCPY).is_some());
        assert!(l.get(LOOPBACK).is_none());
    }
}
