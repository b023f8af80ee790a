//! # ringfort-wal
//!
//! Ringfort's write-ahead log: a checksummed, segmented, group-committed log whose core is
//! sans-IO. The core ([`LogCore`]) holds no file handle and no ring; it turns appends into
//! write plans and completions into an acknowledged LSN. Drivers do the I/O: this crate
//! ships a blocking `std::fs` driver ([`Wal`]), and the engine drives the same core with
//! io_uring. Nothing here knows io_uring exists.
//!
//! ## How data flows through it
//!
//! 1. **Append.** [`LogCore::append`] (a slice) or [`LogCore::append_chain`] (a
//!    ringfort-pool [`BufChain`](ringfort_pool::BufChain)) gives the record its LSN at
//!    once. A slice is copied into pool blocks from the core's reserve; a chain is kept and
//!    copied later. The appender does no framing, no CRC and no allocation.
//! 2. **Seal.** A batch closes when it reaches `batch_bytes` or `max_batch_records`, or on
//!    [`LogCore::flush`] (the group-commit point). [`LogCore::next_io`] places it in a
//!    segment and hands it out as a [`WriteJob`]; the driver calls [`WriteJob::seal`] off
//!    the appenders' path, which writes frame headers, pads the batch to a 4 KiB boundary
//!    and computes the CRCs (crc32fast), giving a [`WritePlan`].
//! 3. **Write plan.** A plan names the segment, the offset (4 KiB aligned) and the pool
//!    blocks to write, each a whole number of pages (fit for `O_DIRECT` and fixed-buffer
//!    SQEs), and a [`SyncKind`]. Before the first batch of a segment the core asks for a
//!    [`CreatePlan`]: remove stale higher segments, create or recycle the file, preallocate,
//!    write and sync the header, sync the directory.
//! 4. **Driver.** [`Wal`] runs one flusher thread: every round it seals all that was
//!    appended, writes it with `pwritev2` and syncs once, so concurrent appenders share
//!    syncs. The file layer is the [`file::Dir`] trait, so tests plug in a simulated disk.
//! 5. **Completion.** The driver returns each plan with its outcome
//!    ([`LogCore::complete_write`]); blocks go back to the reserve. An LSN is acknowledged
//!    ([`LogCore::acked_lsn`]) only when its batch's write and sync completed and every
//!    earlier batch's did too: several batches may be in flight, but acknowledgement moves
//!    in LSN order.
//! 6. **Recovery.** [`LogReader`] scans the segments (from files, or byte slices through
//!    [`MemSegments`]) and yields records from a given LSN, in one of four RocksDB-style
//!    [`RecoveryMode`]s. It tells a torn tail from corruption in the middle of the log using
//!    the watermark every frame carries (the LSN below which everything was synced when its
//!    batch was sealed), reports segment, offset and reason, and plans a [`Repair`] that
//!    cuts the torn tail. A reopened log always continues in a new segment.
//!
//! The format is drawn byte by byte in `FORMAT.md` beside `Cargo.toml`.
//!
//! ## Errors and durability
//!
//! A failed write or sync abandons its segment for good: nothing writes to it or syncs it
//! again, because after a failed `fsync` the kernel may have dropped the dirty pages and a
//! retried `fsync` can report success for data that is gone (the fsyncgate lesson). Every
//! record from the earliest unfinished batch of that segment on fails: each waiting
//! appender gets [`WalError::Failed`] with the cause (so `ENOSPC` reaches every one of
//! them), their LSNs are handed out again, and the next batch goes to a new segment. When
//! the device is out of space, creating that segment fails the same way, and appends work
//! again as soon as space is back. Nothing that is not durable is acknowledged. As in
//! every WAL, a record whose append failed may or may not be found after a crash.
//!
//! ## Bounds
//!
//! Records: at most `max_record` bytes ([`WalError::RecordTooLarge`]). Batches: at most
//! `max_batches` exist at once, each at most `batch_bytes` plus one record; at the bound
//! the core answers [`WalError::Full`] and the blocking driver makes appenders wait.
//! Waiting appenders: at most `max_waiters` (more wait for a slot). Segments: at most
//! 1 GiB. Recovery: two segment images and one record in memory.
//!
//! ## Measured here (a quick check, not the bench suite)
//!
//! Release build, default configuration, this project's 2-core machine. Recovery from the
//! page cache read 1.0 GB/s of payload with 256 B records (4 M records/s), 1.2 GB/s with
//! 4 KiB records and 1.7 GB/s with 64 KiB records. Durable 256 B appends with `fdatasync`
//! ran at 5.7 k/s from 1 writer, 37 k/s from 16 and 86 k/s from 64, because concurrent
//! writers share each group's sync.
//!
//! The blocking driver's group commit, 16 writers of 256 B, one sync at a time, with the
//! machine's other work (load average about 4) running beside it: sealing a group as soon
//! as the flusher woke put 8 records in each sync (29 k records/s); gathering the woken
//! appenders first put 16 in each (38-40 k/s); zero-filled segments then gave 46-47 k/s.
//! Counted from the process's write calls, not timed by the bench suite. Waking the
//! acknowledged appenders after releasing the state lock rather than under it took the
//! same case from 43-50 k/s to 53-63 k/s (2026-11-22, 16 writers for 3 s, the two builds
//! alternated three times). Syncing on the flusher thread when no other group is syncing
//! and nothing new waits took one writer of 256 B from 5.2-8.2 k/s to 6.8-9.4 k/s (six
//! alternations; every pair went up), with 16 writers and 1 MiB records level.
//!
//! ## Sync method
//!
//! [`Durability::Sync`] can sync with `fdatasync` after the write or with an `RWF_DSYNC`
//! write ([`SyncMethod`]). Measured on this project's machine (ext4 on a virtio disk,
//! 2 cores, kernel 6.18) by one write plus its sync in a loop, median of 5 rounds, in
//! microseconds per write, buffered / `O_DIRECT`:
//!
//! | write size | `fdatasync` | `O_DSYNC` fd | `RWF_DSYNC` |
//! |---|---|---|---|
//! | 4 KiB | 181 / 161 | 182 / 157 | 171 / 145 |
//! | 64 KiB | 280 / 340 | 359 / 452 | 264 / 451 |
//! | 1 MiB | 2024 / 2860 | 2180 / 2798 | 1867 / 2670 |
//!
//! `RWF_DSYNC` is 5-10% faster for single writes, but the winner changes with the size, and
//! an earlier run on the same machine while it was busy was 15x slower across the board.
//! So on speed the two methods tie. `fdatasync` is the default because it covers a whole
//! group with one sync even when the group takes several `pwritev2` calls (more than 64
//! iovecs, or a short write). `RWF_DSYNC` syncs every call. For the io_uring driver,
//! `fdatasync` means one linked fsync SQE per group. `RWF_DSYNC` stays available for
//! devices where FUA writes are cheaper.
//!
//! ## Direct I/O
//!
//! Segments are written with `O_DIRECT` by default (`direct_io`). Batches are already
//! whole 4 KiB blocks in page-aligned pool buffers, so nothing changes but the copy into
//! the page cache, which large records no longer pay. Measured with group commit through
//! the blocking driver (2026-11-22; 3 s per run, buffered and direct alternated, 2 to 4
//! runs each):
//! - **1 MiB x1:** 438-468 MB/s buffered, 482-588 MB/s direct.
//! - **1 MiB x16:** 404-446 records/s buffered, 613-653 direct.
//! - **Small records, level:** 128 B x256, 256 B x16, 4 KiB x16 and 64 KiB x16 were
//!   within each other's spread.
//!
//! On the engine's io_uring driver, ext4 can complete an `O_DIRECT` overwrite of a
//! zero-filled segment without the io-wq worker thread that a buffered write needs.
//! Measured on the RESP server, durable SET -P1 from 50 clients went from 44-45k to
//! 49-50k/s on 2 cores, and from 55k to 65k/s on 1 core, at less CPU. At -P16 the two
//! were level. A file system that refuses `O_DIRECT` (some FUSE ones) falls back to
//! buffered writes with a warning.
//!
//! Without syncs ([`Durability::Buffered`], [`Durability::None`]) the page cache is worth
//! keeping. The RESP server's SET of 64 KiB values at `--durability none` fell from 15.5k
//! to 8.0k/s under `O_DIRECT`, bound by the disk. That server turns it off for those modes.

#![warn(missing_docs)]

pub mod codec;
mod config;
mod core;
mod driver;
mod error;
pub mod file;
pub mod format;
mod plan;
pub mod recovery;
pub mod segment;

pub use crate::config::{
    Durability, SyncMethod, WalConfig, MAX_BATCHES_LIMIT, MAX_BATCH_RECORDS_LIMIT,
    MAX_RECORD_LIMIT, MAX_SEGMENT_LIMIT,
};
pub use crate::core::LogCore;
pub use crate::driver::Wal;
pub use crate::error::{Full, IoFailure, IoOp, WalError};
pub use crate::plan::{CreatePlan, Failure, Io, Progress, SyncKind, WriteJob, WritePlan};
pub use crate::recovery::{
    Corruption, Damage, LogReader, MemSegments, ReadOptions, Record, RecordRef, RecoveryMode,
    RecoveryReport, Repair, SegmentSource, Severity, Tail,
};

/// A log sequence number: records are numbered 1, 2, 3, ... with no gaps.
pub type Lsn = u64;

#[cfg(test)]
mod tests;
