//! Fault injection for tests (cargo feature `fault-injection`, never in a release build).
//!
//! Tests make the engine's own I/O fail the way a sick disk, a full disk or a hostile
//! network does, at a chosen operation, and check what the engine and its handler do
//! about it. Two kinds of fault:
//!
//! - **Errors.** [`inject`] makes the `nth` (counted from the call) and the `count - 1`
//!   following operations at a [`Point`] fail with an errno, or (WAL writes only) report
//!   a short write. The fault is applied where the real error would surface: to the CQE
//!   result of a WAL write or `fdatasync`, to segment preallocation (after the file is
//!   created, as a real `fallocate` fails), to an accepted socket (closed, and reported as
//!   the errno) and to a receive (its bytes discarded). Everything above the engine sees
//!   exactly what a real failure would show it.
//! - **A crash.** With [`track_unsynced`] on, the WAL driver notes every write it submits
//!   and forgets it once its group's sync succeeded (or its `RWF_DSYNC` write), and notes
//!   every segment file whose creation (header, `fdatasync`, directory `fsync`) has not
//!   completed. [`crash`] is the crash point: from then on every WAL completion reports
//!   `EIO`, nothing more is created or removed, so nothing becomes durable or is
//!   acknowledged after it. Once the engine has stopped, [`lose_unsynced`] does to the
//!   files what a power cut may do: every page written since its last sync is kept, zeroed
//!   or filled with garbage (chosen per page by a seed), and segment files whose creation
//!   was not durable are removed. A test then reopens the log and checks that every
//!   acknowledged record came back.
//!
//! `RINGFORT_FAULTS` arms errors in a process the test cannot reach into (the RESP
//! server): [`Engine::start`](crate::Engine::start) reads it once. Its syntax is a
//! comma-separated list of `point@nth[+count]=fault`, for example
//! `fsync@3=EIO,fallocate@1+4=ENOSPC,write@2=short`; points are `write`, `fsync`,
//! `fallocate`, `accept` and `recv`, faults are `EIO`, `ENOSPC`, `EMFILE`, `ENFILE`,
//! `ECONNRESET` and `short`. A malformed value stops the start with an error naming it.
//!
//! The state is process-wide (faults are counted over every core), so tests that inject
//! faults must not run at the same time as each other. When nothing is armed, every hook
//! costs one relaxed atomic load.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// A WAL batch write (one SQE per pool block).
    Write,
    /// A WAL group commit's `fdatasync`.
    Fsync,
    /// Preallocating a new WAL segment (`fallocate`).
    Fallocate,
    /// An accepted connection.
    Accept,
    /// A receive on a connection.
    Recv,
}

const POINTS: usize = 5;

impl Point {
    fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<Point> {
        Some(match s {
            "write" => Point::Write,
            "fsync" => Point::Fsync,
            "fallocate" => Point::Fallocate,
            "accept" => Point::Accept,
            "recv" => Point::Recv,
            _ => return None,
        })
    }
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this errno (`libc::EIO`, `libc::ENOSPC`, ...).
    Errno(i32),
    /// A write reports half the bytes it was given (a short write). Only for
    /// [`Point::Write`].
    Short,
}

impl Fault {
    fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "EIO" => Fault::Errno(libc::EIO),
            "ENOSPC" => Fault::Errno(libc::ENOSPC),
            "EMFILE" => Fault::Errno(libc::EMFILE),
            "ENFILE" => Fault::Errno(libc::ENFILE),
            "ECONNRESET" => Fault::Errno(libc::ECONNRESET),
            "short" => Fault::Short,
            _ => return None,
        })
    }
}

struct Rule {
    point: Point,
    /// Operation numbers `first..first + count` of the point fail.
    first: u64,
    count: u64,
    fault: Fault,
}

/// A write submitted and not yet made durable.
struct Unsynced {
    path: PathBuf,
    offset: u64,
    len: u64,
}

#[derive(Default)]
struct State {
    /// Operations seen per point while anything was armed.
    seen: [u64; POINTS],
    /// Faults fired per point.
    fired: [u64; POINTS],
    rules: Vec<Rule>,
    tracking: bool,
    crashed: bool,
    unsynced: Vec<Unsynced>,
    /// Segment files created whose creation has not been made durable.
    fresh_files: Vec<PathBuf>,
}

/// Whether any rule, tracking or crash is in force: the hooks' fast path.
static ARMED: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<State> = Mutex::new(State {
    seen: [0; POINTS],
    fired: [0; POINTS],
    rules: Vec::new(),
    tracking: false,
    crashed: false,
    unsynced: Vec::new(),
    fresh_files: Vec::new(),
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn rearm(s: &State) {
    ARMED.store(
        !s.rules.is_empty() || s.tracking || s.crashed,
        Ordering::Release,
    );
}

/// Makes operations `nth..nth + count` at `point` (counted from now, the next one being
/// 1) fail with `fault`.
///
/// # Panics
///
/// If `nth` or `count` is 0, or `fault` is [`Fault::Short`] for a point other than
/// [`Point::Write`]: a test asking for a fault that cannot fire is a broken test.
pub fn inject(point: Point, nth: u64, count: u64, fault: Fault) {
    assert!(nth > 0 && count > 0, "nth and count start at 1");
    assert!(
        fault != Fault::Short || point == Point::Write,
        "only a write can be short"
    );
    let mut s = state();
    let first = s.seen[point.index()] + nth;
    s.rules.push(Rule {
        point,
        first,
        count,
        fault,
    });
    rearm(&s);
}

/// Clears every rule, the crash state and the tracked writes; counters keep counting.
pub fn reset() {
    let mut s = state();
    s.rules.clear();
    s.tracking = false;
    s.crashed = false;
    s.unsynced.clear();
    s.fresh_files.clear();
    rearm(&s);
}

/// How many faults fired at `point` so far.
pub fn fired(point: Point) -> u64 {
    state().fired[point.index()]
}

/// Arms the faults named in `RINGFORT_FAULTS` (see the module docs), once per process.
pub(crate) fn arm_from_env() -> Result<(), String> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    *done = true;
    let Ok(spec) = std::env::var("RINGFORT_FAULTS") else {
        return Ok(());
    };
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad =
            || format!("RINGFORT_FAULTS: cannot read {item:?} (want point@nth[+count]=fault)");
        let (target, fault) = item.split_once('=').ok_or_else(bad)?;
        let (point, when) = target.split_once('@').ok_or_else(bad)?;
        let (nth, count) = when.split_once('+').unwrap_or((when, "1"));
        let point = Point::parse(point).ok_or_else(bad)?;
        let fault = Fault::parse(fault).ok_or_else(bad)?;
        let nth: u64 = nth.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
        let count: u64 = count.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
        if fault == Fault::Short && point != Point::Write {
            return Err(bad());
        }
        inject(point, nth, count, fault);
        tracing::warn!("fault injection armed: {item}");
    }
    Ok(())
}

/// Whether any fault, tracking or crash is in force (hooks that must build arguments,
/// such as a path, check this first).
pub(crate) fn armed() -> bool {
    ARMED.load(Ordering::Relaxed)
}

/// Counts one operation at `point`; the fault to inject into it, if one is due.
pub(crate) fn hit(point: Point) -> Option<Fault> {
    if !ARMED.load(Ordering::Relaxed) {
        return None;
    }
    let mut s = state();
    let i = point.index();
    s.seen[i] += 1;
    let n = s.seen[i];
    let fault = s
        .rules
        .iter()
        .find(|r| r.point == point && (r.first..r.first + r.count).contains(&n))
        .map(|r| r.fault)?;
    s.fired[i] += 1;
    Some(fault)
}

/// The errno to fail an operation at `point` with, if one is due (a short write counts
/// as `EIO` where a length cannot be shortened).
pub(crate) fn hit_errno(point: Point) -> Option<i32> {
    hit(point).map(|f| match f {
        Fault::Errno(e) => e,
        Fault::Short => libc::EIO,
    })
}

/// The result a WAL CQE reports once faults are applied: `point` is `Write` or `Fsync`
/// for a group's SQEs and `None` for a segment creation's (which only a crash fails).
pub(crate) fn wal_result(point: Option<Point>, res: i32) -> i32 {
    if !ARMED.load(Ordering::Relaxed) {
        return res;
    }
    if crashed() {
        return -libc::EIO;
    }
    match point.and_then(hit) {
        Some(Fault::Errno(e)) => -e,
        Some(Fault::Short) if res > 1 => res / 2,
        _ => res,
    }
}

/// Starts (or stops) noting which WAL writes are not yet durable, for [`lose_unsynced`].
pub fn track_unsynced(on: bool) {
    let mut s = state();
    s.tracking = on;
    if !on {
        s.unsynced.clear();
        s.fresh_files.clear();
    }
    rearm(&s);
}

/// The crash point: from now on every WAL completion reports `EIO` and the WAL driver
/// neither creates nor removes files, so nothing more becomes durable or acknowledged.
pub fn crash() {
    let mut s = state();
    s.crashed = true;
    rearm(&s);
}

/// Whether [`crash`] was called (and [`lose_unsynced`] or [`reset`] not yet).
pub fn crashed() -> bool {
    ARMED.load(Ordering::Relaxed) && state().crashed
}

/// A WAL write of `len` bytes at `offset` of `path` was submitted.
pub(crate) fn note_write(path: &Path, offset: u64, len: u64) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut s = state();
    if s.tracking {
        s.unsynced.push(Unsynced {
            path: path.to_path_buf(),
            offset,
            len,
        });
    }
}

/// The write at `offset` of `path` is durable (its group's sync succeeded).
pub(crate) fn note_synced(path: &Path, offset: u64) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut s = state();
    if !s.crashed {
        s.unsynced
            .retain(|u| !(u.offset == offset && u.path == path));
    }
}

/// Segment file `path` was created; its creation is not durable yet.
pub(crate) fn note_created(path: &Path) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut s = state();
    if s.tracking {
        s.fresh_files.push(path.to_path_buf());
    }
}

/// The creation of segment file `path` is durable.
pub(crate) fn note_creation_durable(path: &Path) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut s = state();
    if !s.crashed {
        s.fresh_files.retain(|p| p != path);
    }
}

/// What [`lose_unsynced`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Pages written since their last sync and kept as written.
    pub kept: u64,
    /// Such pages zeroed.
    pub zeroed: u64,
    /// Such pages filled with garbage.
    pub garbled: u64,
    /// Segment files removed because their creation was not durable.
    pub files_removed: u64,
}

/// After [`crash`] and once the engine has stopped: keeps, zeroes or garbles (by `seed`)
/// every page written since its last sync, removes segment files whose creation was not
/// durable, and clears the crash state (tracking stays on). Files already removed are
/// skipped; any other I/O error is returned.
pub fn lose_unsynced(seed: u64) -> std::io::Result<Lost> {
    const PAGE: u64 = 4096;
    let mut s = state();
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut lost = Lost::default();
    for u in s.unsynced.drain(..) {
        let file = match std::fs::OpenOptions::new().write(true).open(&u.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut page = u.offset;
        while page < u.offset + u.len {
            let len = PAGE.min(u.offset + u.len - page) as usize;
            match next() % 3 {
                0 => lost.kept += 1,
                1 => {
                    file.write_all_at(&vec![0; len], page)?;
                    lost.zeroed += 1;
                }
                _ => {
                    let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    file.write_all_at(&junk, page)?;
                    lost.garbled += 1;
                }
            }
            page += PAGE;
        }
    }
    for path in s.fresh_files.drain(..) {
        match std::fs::remove_file(&path) {
            Ok(()) => lost.files_removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    s.crashed = false;
    rearm(&s);
    Ok(lost)
}
