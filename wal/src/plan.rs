//! What the core asks a driver to do, and what the driver reports back.
//!
//! [`LogCore::next_io`](crate::LogCore::next_io) hands out [`Io`] values. A
//! [`CreatePlan`] asks for a new segment file; a [`WriteJob`] is a batch placed in a
//! segment but not yet sealed: the driver calls [`WriteJob::seal`] wherever it likes (off
//! the appenders' lock, on its own thread) and gets the [`WritePlan`] to write. The plan
//! owns the batch's pool blocks, so a driver can hand them to the kernel and keep no
//! borrow on the core; it gives the plan back with the outcome through
//! [`LogCore::complete_write`](crate::LogCore::complete_write), and the blocks are reused.
//!
//! For an io_uring driver, [`WritePlan::blocks`] gives each block's [`PoolBuf`] (whose
//! [`PoolBuf::reg_slot`] is the fixed-buffer index and offset) and the bytes to write from
//! it; the blocks go to consecutive offsets from [`WritePlan::offset`], each a whole number
//! of 4 KiB pages, so they suit `O_DIRECT` fixed-buffer writes linked to one
//! `fdatasync` (or flagged `RWF_DSYNC` under [`SyncKind::Dsync`]).

use std::ops::Range;

use ringfort_pool::PoolBuf;

use crate::core::batch::Batch;
use crate::error::IoFailure;
use crate::format::{SegmentHeader, FORMAT_VERSION};
use crate::Lsn;

/// How a batch is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// No sync: done when the write is done.
    None,
    /// `fdatasync` after the write (a linked fsync SQE with `IORING_FSYNC_DATASYNC`).
    Data,
    /// The write itself carries `RWF_DSYNC`.
    Dsync,
}

/// One thing for the driver to do.
#[derive(Debug)]
pub enum Io {
    /// Create a segment file.
    Create(CreatePlan),
    /// Seal and write a batch.
    Write(WriteJob),
}

/// Create segment `segment`: remove any segment file named `segment` or higher (none holds
/// anything durable: see the crate docs), take a spare or create the file, preallocate
/// `size` bytes, write the header page at offset 0, `fdatasync` the file and `fsync` the
/// directory. Only then may batches be written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreatePlan {
    /// The segment's first LSN and name.
    pub segment: Lsn,
    /// The segment signature every frame in it is bound to.
    pub signature: u64,
    /// Header flags.
    pub flags: u32,
    /// Bytes to preallocate.
    pub size: u64,
}

impl CreatePlan {
    /// The header to write.
    pub fn header(&self) -> SegmentHeader {
        SegmentHeader {
            version: FORMAT_VERSION,
            flags: self.flags,
            signature: self.signature,
            first_lsn: self.segment,
        }
    }
}

/// A batch placed in a segment, waiting to be sealed.
pub struct WriteJob {
    pub(crate) batch: Batch,
    pub(crate) segment: Lsn,
    pub(crate) offset: u64,
    pub(crate) signature: u64,
    pub(crate) watermark: Lsn,
    pub(crate) sync: SyncKind,
}

impl WriteJob {
    /// The target segment.
    pub fn segment(&self) -> Lsn {
        self.segment
    }

    /// The byte offset in the segment (a multiple of 4 KiB).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes the batch takes on disk.
    pub fn len(&self) -> u64 {
        self.batch.disk_len()
    }

    /// Whether the batch is empty (never: the core issues no empty batches).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames the batch (headers, padding, CRCs bound to the segment signature) and
    /// returns the plan to write. This is the checksum work kept out of the appenders'
    /// calls.
    pub fn seal(mut self) -> WritePlan {
        self.batch.seal(self.signature, self.watermark);
        WritePlan {
            batch: self.batch,
            segment: self.segment,
            offset: self.offset,
            sync: self.sync,
        }
    }
}

impl std::fmt::Debug for WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteJob")
            .field("segment", &self.segment)
            .field("offset", &self.offset)
            .field("lsns", &(self.batch.first_lsn..self.batch.end_lsn))
            .finish()
    }
}

/// A sealed batch: the blocks to write at consecutive offsets, and how to sync them.
pub struct WritePlan {
    pub(crate) batch: Batch,
    segment: Lsn,
    offset: u64,
    sync: SyncKind,
}

impl WritePlan {
    /// The target segment (its first LSN, which is also its file name).
    pub fn segment(&self) -> Lsn {
        self.segment
    }

    /// The byte offset of the first block in the segment (a multiple of 4 KiB).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Total bytes to write (a multiple of 4 KiB).
    pub fn len(&self) -> u64 {
        self.batch.disk_len()
    }

    /// Whether there is nothing to write (never, for plans from the core).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How to make the write durable.
    pub fn sync(&self) -> SyncKind {
        self.sync
    }

    /// The LSNs in the batch.
    pub fn lsns(&self) -> Range<Lsn> {
        self.batch.first_lsn..self.batch.end_lsn
    }

    /// Each block and the bytes to write from its start, in file order; block `i` goes to
    /// `offset()` plus the lengths of the blocks before it.
    pub fn blocks(&self) -> impl ExactSizeIterator<Item = (&PoolBuf, usize)> + '_ {
        self.batch
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b, self.batch.block_len(i)))
    }
}

impl std::fmt::Debug for WritePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritePlan")
            .field("segment", &self.segment)
            .field("offset", &self.offset)
            .field("len", &self.len())
            .field("lsns", &self.lsns())
            .field("sync", &self.sync)
            .finish()
    }
}

/// Records taken down by a failed I/O. Their appenders must be told; the LSNs are handed
/// out again to the next appends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The LSNs that failed (every record appended from the first failed one on).
    pub lsns: Range<Lsn>,
    /// What failed.
    pub error: IoFailure,
}

/// What a completion changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Every LSN below this one is acknowledged (written, and synced under `Sync`).
    pub acked: Lsn,
    /// Records that failed, if the completion was a failure.
    pub failed: Option<Failure>,
}
