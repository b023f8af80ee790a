//! `RLIMIT_MEMLOCK` and `CAP_IPC_LOCK`: whether io_uring may pin the arena.
//!
//! io_uring charges registered buffers to the user's locked memory, against
//! `RLIMIT_MEMLOCK`, unless the process has `CAP_IPC_LOCK`. The arena checks this up front,
//! for its whole growth cap, so that registration never fails half way through a run.

use std::fmt;

use crate::config::Registration;
use crate::error::PoolError;

const CAP_IPC_LOCK: u32 = 14;

/// The outcome of the memlock check made when the arena was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationReport {
    /// What the configuration asked for.
    pub mode: Registration,
    /// Whether the engine may register the arena.
    pub registrable: bool,
    /// Bytes registration pins at the cap.
    pub needed: usize,
    /// The soft `RLIMIT_MEMLOCK` in bytes, `None` when unlimited or not checked.
    pub limit: Option<u64>,
    /// Whether the process has `CAP_IPC_LOCK`, which lifts the limit.
    pub cap_ipc_lock: bool,
}

impl fmt::Display for RegistrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = match self.limit {
            Some(l) => format!("{} KiB", l >> 10),
            None => "unlimited".into(),
        };
        match (self.mode, self.registrable) {
            (Registration::Off, _) => f.write_str("registration: off"),
            (_, true) if self.cap_ipc_lock => write!(
                f,
                "registration: ok (pins up to {} MiB; RLIMIT_MEMLOCK {limit} is lifted by \
                 CAP_IPC_LOCK)",
                self.needed >> 20
            ),
            (_, true) => write!(
                f,
                "registration: ok (pins up to {} MiB within RLIMIT_MEMLOCK {limit})",
                self.needed >> 20
            ),
            (_, false) => write!(
                f,
                "registration: UNAVAILABLE, using unregistered buffers (needs {} MiB, \
                 RLIMIT_MEMLOCK is {limit}; raise it with `ulimit -l` or LimitMEMLOCK=)",
                self.needed >> 20
            ),
        }
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes, `None` when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

/// Whether `CAP_IPC_LOCK` is in the calling thread's effective capability set.
pub fn has_cap_ipc_lock() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Checks that `needed` bytes can be pinned, as `mode` requires.
pub(crate) fn check(needed: usize, mode: Registration) -> Result<RegistrationReport, PoolError> {
    let mut report = RegistrationReport {
        mode,
        registrable: false,
        needed,
        limit: None,
        cap_ipc_lock: false,
    };
    if mode == Registration::Off {
        return Ok(report);
    }
    report.limit = memlock_limit();
    report.cap_ipc_lock = has_cap_ipc_lock();
    report.registrable = report.cap_ipc_lock || report.limit.is_none_or(|l| l >= needed as u64);
    match (report.registrable, mode) {
        (false, Registration::Required) => Err(PoolError::Memlock {
            needed,
            needed_kib: needed.div_ceil(1024),
            limit: report.limit.unwrap_or(0),
        }),
        (false, _) => {
            tracing::warn!("ringfort-pool: {report}");
            Ok(report)
        }
        (true, _) => Ok(report),
    }
}
