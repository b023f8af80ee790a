//! The `pool` suite: ringfort-pool's arena against the std allocator, and hugepage
//! backing against 4 KiB pages.
//!
//! - **alloc+free** of 4 KiB, 16 KiB, 64 KiB and 1 MiB: nanoseconds per pair, from
//!   `Arena::alloc(size)` plus drop, beside `Vec::<u8>::with_capacity(size)` plus drop.
//!   The size and each buffer pass through `std::hint::black_box` on both sides, so the
//!   compiler can neither fold the class lookup nor elide the allocation. Trials
//!   interleave ours and the peer; each side is warmed up first (for glibc this moves
//!   1 MiB blocks from `mmap` to the heap, its steady state).
//! - **random touch** of a 1 GiB arena: 8-byte writes at random offsets (xorshift64*)
//!   across 1024 buffers of 1 MiB, on 2 MiB hugetlb pages beside the same arena on 4 KiB
//!   pages. The bench reserves the hugepages itself when it runs as root and sets the pool
//!   back afterwards ([`crate::hugetlb`]). When hugetlb pages cannot be had it measures
//!   transparent huge pages instead and says so in the case name; when THP gives no huge
//!   pages either, the case is dropped with the reason. Nothing is ever substituted.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ringfort_pool::{
    Arena, Backing, BackingPref, Growth, NumaPolicy, PoolBuf, PoolConfig, Registration, SizeClass,
    HUGE_PAGE,
};

use crate::hugetlb::Reservation;
use crate::machine;
use crate::progress::{self, Progress};
use crate::report::{Dropped, Row, SuiteReport};
use crate::stats::Trials;
use crate::{BoxError, RunOpts};

const SUITE: &str = "pool";
const STD_PEER: &str = "std allocator (Vec::with_capacity + drop)";
const SMALL_PEER: &str = "4 KiB pages";

/// Sizes of the alloc+free cases, with their names.
const PAIR_SIZES: [(usize, &str); 4] = [
    (4 << 10, "4 KiB"),
    (16 << 10, "16 KiB"),
    (64 << 10, "64 KiB"),
    (1 << 20, "1 MiB"),
];

/// Bytes per buffer and buffers in the touch arena: 1 GiB in all.
const TOUCH_BUF: usize = 1 << 20;
const TOUCH_BUFS: usize = 1024;
const TOUCH_ARENA: usize = TOUCH_BUF * TOUCH_BUFS;

/// How long and how often to measure.
struct Plan {
    /// Trials per side of each alloc+free case.
    pair_trials: usize,
    /// Wall time one alloc+free trial aims at.
    pair_trial_time: Duration,
    /// Trials per side of the touch case.
    touch_trials: usize,
    /// Touches per touch trial.
    touches: u64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                pair_trials: 7,
                pair_trial_time: Duration::from_millis(40),
                touch_trials: 3,
                touches: 1 << 25,
            }
        } else {
            Plan {
                pair_trials: 25,
                pair_trial_time: Duration::from_millis(200),
                touch_trials: 9,
                touches: 1 << 26,
            }
        }
    }
}

/// Runs the suite.
pub fn run(opts: &RunOpts) -> Result<SuiteReport, BoxError> {
    let plan = Plan::new(opts.quick);
    let mut rows = Vec::new();
    let mut dropped = Vec::new();
    alloc_free_cases(&plan, &mut rows)?;
    match touch_case(&plan)? {
        Ok(row) => rows.push(row),
        Err(d) => dropped.push(d),
    }
    Ok(SuiteReport {
        suite: SUITE,
        rows,
        dropped,
    })
}

// ---------------------------------------------------------------------------------------
// alloc+free

/// `n` alloc+free pairs of `size` bytes from `arena`.
#[inline(never)]
fn arena_pairs(arena: &Arena, size: usize, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let buf = match arena.alloc(black_box(size)) {
            Ok(b) => b,
            Err(e) => panic!("arena alloc of {size} B failed mid-benchmark: {e}"),
        };
        drop(black_box(buf));
    }
    start.elapsed()
}

/// `n` alloc+free pairs of `size` bytes from the global allocator.
#[inline(never)]
fn std_pairs(size: usize, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let v = Vec::<u8>::with_capacity(black_box(size));
        drop(black_box(v));
    }
    start.elapsed()
}

/// Pairs per trial so that one trial takes about `target`, from a short timed run.
fn calibrate(target: Duration, mut pairs: impl FnMut(u64) -> Duration) -> u64 {
    let probe = 1 << 16;
    pairs(probe); // warm up
    let took = pairs(probe).max(Duration::from_nanos(1));
    let n = target.as_secs_f64() / took.as_secs_f64() * probe as f64;
    (n as u64).clamp(1 << 12, 1 << 32)
}

fn ns_per(took: Duration, n: u64) -> f64 {
    took.as_secs_f64() * 1e9 / n as f64
}

fn pair_arena() -> Result<Arena, BoxError> {
    // The default classes (4, 16, 64 KiB and 1 MiB) and backing; one chunk is plenty for
    // one buffer live at a time.
    let arena = Arena::new(PoolConfig {
        growth: Growth::Fixed,
        registration: Registration::Off,
        ..PoolConfig::default()
    })?;
    Ok(arena)
}

fn alloc_free_cases(plan: &Plan, rows: &mut Vec<Row>) -> Result<(), BoxError> {
    let arena = pair_arena()?;
    let arena_note = format!("arena: {}", arena.report());
    for (size, name) in PAIR_SIZES {
        let case = format!("alloc+free {name}");
        let n_ours = calibrate(plan.pair_trial_time, |n| arena_pairs(&arena, size, n));
        let n_std = calibrate(plan.pair_trial_time, |n| std_pairs(size, n));
        let progress = Progress::start(SUITE, &case, plan.pair_trials);
        let (mut ours, mut peer) = (Trials::new(), Trials::new());
        for _ in 0..plan.pair_trials {
            ours.push(ns_per(arena_pairs(&arena, size, n_ours), n_ours));
            peer.push(ns_per(std_pairs(size, n_std), n_std));
            progress.trial();
        }
        progress.finish();
        let (Some(ours), Some(peer)) = (ours.summary(), peer.summary()) else {
            return Err("no alloc+free trial ran".into());
        };
        rows.push(Row {
            suite: SUITE,
            case,
            metric: "ns/pair",
            higher_is_better: false,
            ours,
            peers: vec![(STD_PEER.into(), peer)],
            peers_not_run: Vec::new(),
            notes: vec![
                arena_note.clone(),
                format!(
                    "{n_ours} pairs per trial for ours, {n_std} for the std allocator, \
                     trials interleaved"
                ),
            ],
            latency: Vec::new(),
            extra: Vec::new(),
            sweep: None,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// random touch

fn touch_config(backing: BackingPref) -> PoolConfig {
    PoolConfig {
        classes: vec![SizeClass {
            size: TOUCH_BUF,
            count: TOUCH_BUFS,
        }],
        growth: Growth::Fixed,
        backing,
        registration: Registration::Off,
        numa: NumaPolicy::Local,
    }
}

/// An arena with all of its buffers handed out, and their addresses for the touch loop.
struct Touched {
    /// Field order matters: the buffers drop before the arena (an arena dropped with
    /// buffers outstanding leaks its memory on purpose).
    bufs: Vec<PoolBuf>,
    bases: Box<[*mut u8; TOUCH_BUFS]>,
    arena: Arena,
}

impl Touched {
    fn new(arena: Arena) -> Result<Touched, BoxError> {
        let mut bufs = (0..TOUCH_BUFS)
            .map(|_| arena.alloc(TOUCH_BUF))
            .collect::<Result<Vec<_>, _>>()?;
        let mut bases = Box::new([std::ptr::null_mut(); TOUCH_BUFS]);
        for (b, buf) in bases.iter_mut().zip(bufs.iter_mut()) {
            assert!(buf.capacity() >= TOUCH_BUF && buf.as_ptr() as usize % 8 == 0);
            *b = buf.as_mut_ptr();
        }
        Ok(Touched { bufs, bases, arena })
    }

    /// `n` random 8-byte writes, starting the generator from `seed`.
    #[inline(never)]
    fn touch(&mut self, n: u64, seed: u64) -> Duration {
        // Holding `&mut self` keeps every buffer exclusively ours for the whole loop.
        debug_assert_eq!(self.bufs.len(), TOUCH_BUFS);
        debug_assert_eq!(self.arena.live_buffers(), TOUCH_BUFS);
        let bases: &[*mut u8; TOUCH_BUFS] = &self.bases;
        let mut x = seed | 1;
        let start = Instant::now();
        for i in 0..n {
            // xorshift64*: take the high bits of the multiplied state.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let buf = (r >> 54) as usize; // 10 bits: which of the 1024 buffers
            let word = ((r >> 37) as usize) & (TOUCH_BUF / 8 - 1); // 17 bits: which u64
                                                                   // SAFETY: `buf < TOUCH_BUFS` and `word * 8 + 8 <= TOUCH_BUF`, so the write is
                                                                   // inside a buffer of at least TOUCH_BUF bytes that `self.bufs` owns and `&mut
                                                                   // self` keeps exclusive; buffers are 8-aligned (checked in `new`) and so is
                                                                   // `word * 8`.
            unsafe { bases[buf].add(word * 8).cast::<u64>().write_volatile(i) };
        }
        start.elapsed()
    }
}

/// Ours for the touch case: hugetlb, else THP that really gave huge pages.
/// Returns the arena, the case name, and notes; or the reason the case cannot run.
fn touch_ours(
    reservation: &Reservation,
    notes: &mut Vec<String>,
) -> Result<(Arena, &'static str), String> {
    let hugetlb_err = match Arena::new(touch_config(BackingPref::HugeTlb)) {
        Ok(a) if a.report().backing() == Backing::HugeTlb => {
            return Ok((a, "random touch 1 GiB arena (8 B writes)"));
        }
        Ok(a) => format!("the arena reported {} instead", a.report().backing()),
        Err(e) => e.to_string(),
    };
    notes.push(format!(
        "hugetlb 2 MiB pages could not be had ({hugetlb_err}; {}), so ours is transparent \
         huge pages",
        reservation.note
    ));
    progress::say(
        SUITE,
        &format!("no hugetlb pages: {hugetlb_err}; trying THP"),
    );
    let thp = Arena::new(touch_config(BackingPref::TransparentHuge))
        .map_err(|e| format!("hugetlb: {hugetlb_err}; THP arena: {e}"))?;
    match thp.report().backing() {
        Backing::TransparentHuge { huge_bytes } if huge_bytes > 0 => {
            Ok((thp, "random touch 1 GiB arena (THP vs 4 KiB)"))
        }
        other => Err(format!(
            "hugetlb: {hugetlb_err}; transparent huge pages gave no huge pages either \
             (backing: {other}; THP mode {})",
            machine::thp_mode().unwrap_or_else(|| "unsupported".into())
        )),
    }
}

/// The touch case: a row, or the reason it was dropped. The outer error is for failures
/// that stop the suite.
fn touch_case(plan: &Plan) -> Result<Result<Row, Dropped>, BoxError> {
    let pages = TOUCH_ARENA / HUGE_PAGE;
    progress::say(
        SUITE,
        &format!("random touch: mapping two 1 GiB arenas (needs {pages} 2 MiB hugepages)"),
    );
    let reservation = Reservation::ensure(pages);
    let mut notes = Vec::new();
    let measured = touch_measure(plan, &reservation, &mut notes);
    // Every mapping is gone now: give the pool back before building the row.
    if let Some(outcome) = reservation.release() {
        notes.push(outcome);
    }
    measured.map(|r| {
        r.map(|(case, ours, peer)| {
            let (peers, peers_not_run) = match peer {
                Ok(p) => (vec![(SMALL_PEER.to_string(), p)], Vec::new()),
                Err(why) => (Vec::new(), vec![(SMALL_PEER.to_string(), why)]),
            };
            Row {
                suite: SUITE,
                case: case.into(),
                metric: "ns/touch",
                higher_is_better: false,
                ours,
                peers,
                peers_not_run,
                notes,
                latency: Vec::new(),
                extra: Vec::new(),
                sweep: None,
            }
        })
    })
}

type TouchOutcome = (
    &'static str,
    crate::stats::Summary,
    Result<crate::stats::Summary, String>,
);

/// Maps both arenas, measures, and unmaps them before returning.
fn touch_measure(
    plan: &Plan,
    reservation: &Reservation,
    notes: &mut Vec<String>,
) -> Result<Result<TouchOutcome, Dropped>, BoxError> {
    let (ours_arena, case) = match touch_ours(reservation, notes) {
        Ok(x) => x,
        Err(reason) => {
            return Ok(Err(Dropped {
                case: "random touch 1 GiB arena (8 B writes)".into(),
                reason: format!("{reason}; {}", reservation.note),
            }))
        }
    };
    if ours_arena.report().backing() == Backing::HugeTlb {
        notes.push(format!("hugepages: {}", reservation.note));
    }
    notes.push(format!("ours: {}", ours_arena.report()));
    let mut ours = Touched::new(ours_arena)?;

    let peer = match Arena::new(touch_config(BackingPref::SmallPages)) {
        Err(e) => Err(format!("the 4 KiB-page arena could not be made: {e}")),
        Ok(a) => {
            notes.push(format!("peer: {}", a.report()));
            // With THP mode `always` the kernel may put even an un-advised mapping on huge
            // pages, and then the peer would not be 4 KiB pages.
            let base = Touched::new(a)?;
            let start = base.bases.iter().map(|&p| p as usize).min().unwrap_or(0);
            match machine::anon_huge_bytes(start, TOUCH_ARENA) {
                Some(huge) if huge > 0 => Err(format!(
                    "the kernel put {} MiB of the 4 KiB-page arena on transparent huge pages \
                     (THP mode {}), so it would not measure 4 KiB pages",
                    huge >> 20,
                    machine::thp_mode().unwrap_or_default()
                )),
                _ => Ok(base),
            }
        }
    };
    let mut peer = match peer {
        Ok(p) => Ok(p),
        Err(why) => {
            progress::say(SUITE, &format!("peer {SMALL_PEER} not run: {why}"));
            Err(why)
        }
    };

    // Warm both up (page tables and caches), then interleave trials.
    ours.touch(plan.touches / 8, 0x9e37_79b9_7f4a_7c15);
    if let Ok(p) = &mut peer {
        p.touch(plan.touches / 8, 0x9e37_79b9_7f4a_7c15);
    }
    let progress = Progress::start(SUITE, case, plan.touch_trials);
    let (mut ours_t, mut peer_t) = (Trials::new(), Trials::new());
    for trial in 0..plan.touch_trials as u64 {
        let seed = 0x2545_f491_4f6c_dd1d ^ (trial + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ours_t.push(ns_per(ours.touch(plan.touches, seed), plan.touches));
        if let Ok(p) = &mut peer {
            peer_t.push(ns_per(p.touch(plan.touches, seed), plan.touches));
        }
        progress.trial();
    }
    progress.finish();
    notes.push(format!(
        "{} random 8 B writes per trial over {} buffers of 1 MiB, same seeds for both sides",
        plan.touches, TOUCH_BUFS
    ));
    drop(ours);
    let peer_summary = match peer {
        Ok(p) => {
            drop(p);
            peer_t
                .summary()
                .ok_or_else(|| "no peer trial ran".to_string())
        }
        Err(why) => Err(why),
    };
    let ours_summary = ours_t.summary().ok_or("no touch trial ran")?;
    Ok(Ok((case, ours_summary, peer_summary)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrate_aims_at_the_target() {
        let n = calibrate(Duration::from_millis(1), Duration::from_nanos);
        assert_eq!(n, 1_000_000);
    }

    #[test]
    fn pairs_run_on_a_small_arena() {
        let arena = Arena::new(PoolConfig {
            classes: vec![SizeClass {
                size: 4096,
                count: 4,
            }],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .unwrap();
        arena_pairs(&arena, 4096, 100);
        assert_eq!(arena.live_buffers(), 0);
        std_pairs(4096, 100);
    }
}
