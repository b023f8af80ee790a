//! The crate's error type, and the clonable description of a failed driver I/O that is
//! handed to every appender waiting on the failed batch.

use std::fmt;
use std::io;

use ringfort_pool::PoolError;

use crate::recovery::Corruption;
use crate::Lsn;

/// Which driver step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Creating, preallocating and syncing a new segment file.
    Create,
    /// Writing a batch.
    Write,
    /// Syncing a batch (`fdatasync`, or the write of an `O_DSYNC` batch).
    Sync,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Create => "creating segment",
            IoOp::Write => "writing to segment",
            IoOp::Sync => "syncing segment",
        })
    }
}

/// A failed driver I/O, small and clonable so that one failure can be given to every
/// appender whose record it took down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoFailure {
    /// What was being done.
    pub op: IoOp,
    /// The segment (its first LSN).
    pub segment: Lsn,
    /// The error kind.
    pub kind: io::ErrorKind,
    /// The OS error number, when there was one.
    pub errno: Option<i32>,
}

impl IoFailure {
    /// Describes `err`, raised while doing `op` on `segment`.
    pub fn new(op: IoOp, segment: Lsn, err: &io::Error) -> IoFailure {
        IoFailure {
            op,
            segment,
            kind: err.kind(),
            errno: err.raw_os_error(),
        }
    }

    /// Whether the device ran out of space (`ENOSPC` or `EDQUOT`): appends can work again
    /// once space is freed.
    pub fn is_no_space(&self) -> bool {
        matches!(self.errno, Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || self.kind == io::ErrorKind::StorageFull
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:020}: ", self.op, self.segment)?;
        match self.errno {
            Some(e) => write!(f, "{}", io::Error::from_raw_os_error(e)),
            None => write!(f, "{}", io::Error::from(self.kind)),
        }
    }
}

/// Why the sans-IO core cannot take a record right now. The caller waits for the driver
/// (completions, or `refill`) and tries again; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Every batch slot is open, sealed or in flight (the `max_batches` bound).
    Batches,
    /// The core's reserve of pool blocks is short: the record needs `needed` blocks and
    /// `have` are on hand. The driver's `refill` tops the reserve up.
    Blocks {
        /// Blocks the record needs.
        needed: usize,
        /// Blocks in the reserve.
        have: usize,
    },
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Full::Batches => f.write_str("every batch slot is in use (max_batches)"),
            Full::Blocks { needed, have } => {
                write!(
                    f,
                    "the record needs {needed} pool blocks and {have} are reserved"
                )
            }
        }
    }
}

/// Everything that can go wrong in ringfort-wal.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The configuration is inconsistent; the text names the field.
    #[error("invalid WAL config: {0}")]
    Config(String),

    /// A record larger than the configured maximum.
    #[error("record of {len} B exceeds the configured maximum of {max} B")]
    RecordTooLarge {
        /// Bytes offered.
        len: usize,
        /// The configured `max_record`.
        max: usize,
    },

    /// Backpressure from the sans-IO core (see [`Full`]).
    #[error("the WAL cannot take the record yet: {0}")]
    Full(Full),

    /// The buffer pool refused a block.
    #[error("buffer pool: {0}")]
    Pool(#[from] PoolError),

    /// A write, sync or segment creation failed, so the record was not made durable. The
    /// failed segment is abandoned (never written or synced again) and its LSNs are handed
    /// out again; see the crate docs on errors.
    #[error("record not durable: {0}")]
    Failed(IoFailure),

    /// An I/O error outside the write path: opening, listing, reading or repairing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        source: io::Error,
    },

    /// Recovery found damage that its mode does not tolerate.
    #[error("{0}")]
    Corrupt(Corruption),

    /// The handle was closed, or its flusher thread stopped.
    #[error("the WAL is closed")]
    Closed,
}

impl WalError {
    /// Builds [`WalError::Io`] from a context string and an error.
    pub fn io(context: impl Into<String>, source: io::Error) -> WalError {
        WalError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this error means the device is out of space.
    pub fn is_no_space(&self) -> bool {
        match self {
            WalError::Failed(f) => f.is_no_space(),
            WalError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EDQUOT)
                )
            }
            _ => false,
        }
    }
}
