//! Reserving 2 MiB hugepages for a case and giving them back.
//!
//! A hugetlb-backed arena needs pages reserved in the system's 2 MiB pool
//! (`/proc/sys/vm/nr_hugepages`). When the pool is short and the bench runs as root, a
//! [`Reservation`] raises `nr_hugepages` by what is missing and sets the old value back
//! when it is released or dropped, which also covers error paths and panics. While the
//! pool is raised, SIGINT, SIGTERM and SIGHUP write the old value back before the process
//! exits, so an interrupted run does not leave a gigabyte of memory reserved.
//!
//! Lowering `nr_hugepages` while pages are still mapped is safe: the kernel turns the
//! mapped pages into surplus pages and frees them when they are unmapped.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use ringfort_pool::HugePages;

const NR_HUGEPAGES: &CStr = c"/proc/sys/vm/nr_hugepages";
/// `RESTORE_TO` when nothing is to be restored.
const NOTHING: usize = usize::MAX;
/// The `nr_hugepages` value to write back on a fatal signal, or [`NOTHING`].
static RESTORE_TO: AtomicUsize = AtomicUsize::new(NOTHING);
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The bench's hold on the 2 MiB hugepage pool for one case.
pub struct Reservation {
    /// The `nr_hugepages` to set back, when the bench raised it.
    restore_to: Option<usize>,
    /// Signal handlers replaced while the pool is raised.
    old_handlers: Vec<(libc::c_int, libc::sighandler_t)>,
    /// What was done, in words for the table.
    pub note: String,
}

impl Reservation {
    /// Makes sure `pages` 2 MiB hugepages are free for a new mapping, raising
    /// `nr_hugepages` when running as root and the pool is short. Never fails: whether
    /// the pages are there is for the mapping to find out; the note says what was done.
    pub fn ensure(pages: usize) -> Reservation {
        let mut r = Reservation {
            restore_to: None,
            old_handlers: Vec::new(),
            note: String::new(),
        };
        let Some(pool) = HugePages::read() else {
            r.note = "the kernel has no 2 MiB hugetlb pool".into();
            return r;
        };
        let available = pool.available();
        if available >= pages {
            r.note = format!(
                "{available} free 2 MiB hugepages were already reserved (nr_hugepages {}); \
                 the bench reserved none",
                pool.total
            );
            return r;
        }
        let want = pool.total + (pages - available);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            r.note = format!(
                "{pages} free 2 MiB hugepages needed, {available} available, and the bench is \
                 not root so it reserved none (as root: echo {want} > /proc/sys/vm/nr_hugepages)"
            );
            return r;
        }
        // Arm the signal path before raising, so there is no window without it.
        RESTORE_TO.store(pool.total, Ordering::SeqCst);
        for sig in SIGNALS {
            let handler = on_fatal_signal as extern "C" fn(libc::c_int);
            // SAFETY: the handler only calls async-signal-safe functions (open, write,
            // close, _exit) on static or stack data.
            let old = unsafe { libc::signal(sig, handler as libc::sighandler_t) };
            if old != libc::SIG_ERR {
                r.old_handlers.push((sig, old));
            }
        }
        r.restore_to = Some(pool.total);
        if let Err(e) = std::fs::write("/proc/sys/vm/nr_hugepages", want.to_string()) {
            r.note = format!(
                "{pages} free 2 MiB hugepages needed, {available} available; raising \
                 nr_hugepages from {} to {want} failed: {e}",
                pool.total
            );
            r.restore();
            return r;
        }
        let got = HugePages::read().map_or(0, |p| p.total);
        r.note = format!(
            "the bench raised nr_hugepages from {} to {want} for this case (the kernel \
             reserved {got}) and sets it back to {} afterwards",
            pool.total, pool.total
        );
        r
    }

    /// Sets `nr_hugepages` back now (after the case's mappings are gone) and says how it
    /// went, or `None` when the bench had not raised it.
    pub fn release(mut self) -> Option<String> {
        self.restore()
    }

    fn restore(&mut self) -> Option<String> {
        let old = self.restore_to.take()?;
        let outcome = match std::fs::write("/proc/sys/vm/nr_hugepages", old.to_string()) {
            Ok(()) => format!("nr_hugepages set back to {old}"),
            Err(e) => {
                let msg = format!(
                    "WARNING: setting nr_hugepages back to {old} failed ({e}); run \
                     `echo {old} > /proc/sys/vm/nr_hugepages` by hand"
                );
                eprintln!("{msg}");
                msg
            }
        };
        RESTORE_TO.store(NOTHING, Ordering::SeqCst);
        for (sig, old) in self.old_handlers.drain(..) {
            // SAFETY: `old` is the disposition `signal` returned for `sig` when we replaced it.
            unsafe { libc::signal(sig, old) };
        }
        Some(outcome)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Writes the saved `nr_hugepages` back and exits with `128 + sig`, as the default
/// disposition would have ended the process.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let old = RESTORE_TO.swap(NOTHING, Ordering::SeqCst);
    if old != NOTHING {
        let mut buf = [0u8; 24];
        let digits = decimal(old, &mut buf);
        // SAFETY: open, write and close are async-signal-safe; the path is a static
        // NUL-terminated string and `digits` points into our stack buffer.
        unsafe {
            let fd = libc::open(NR_HUGEPAGES.as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, digits.as_ptr().cast(), digits.len());
                libc::close(fd);
            }
        }
    }
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(128 + sig) }
}

/// `v` in decimal, without allocating (for the signal handler).
fn decimal(mut v: usize, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_without_allocation() {
        let mut b = [0u8; 24];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(512, &mut b), b"512");
        assert_eq!(
            decimal(usize::MAX, &mut b),
            usize::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn nothing_needed_means_nothing_done() {
        let r = Reservation::ensure(0);
        assert!(r.restore_to.is_none());
        assert!(!r.note.is_empty());
    }
}
