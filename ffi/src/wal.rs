//! The write-ahead log outside the engine: `rf_wal_config`, `rf_wal` (ringfort-wal's
//! blocking, thread-safe driver: concurrent appenders share each group commit), and
//! `rf_wal_reader`, a replay iterator over a log directory.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard};

use ringfort::wal::file::{DirSegments, StdDir};
use ringfort::wal::recovery::{LogReader, ReadOptions, RecoveryReport, SegmentSource, Tail};
use ringfort::wal::{Durability, Lsn, RecoveryMode, SyncMethod, Wal, WalConfig, WalError};

use crate::status::{
    arg, arg_bytes, arg_mut, arg_str, guard, guard_or, need_out, put, rf_status, Error,
};

/// When an append counts as done.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_durability {
    /// After its batch is written and synced to the device (the default).
    RF_DURABILITY_SYNC = 0,
    /// After its batch is written (in the page cache); a power loss can lose it.
    RF_DURABILITY_BUFFERED = 1,
    /// At once; written in the background. A crash can lose it.
    RF_DURABILITY_NONE = 2,
}

/// What opening a log does with damage (RocksDB's four recovery modes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_recovery_mode {
    /// A torn tail is cut off; corruption in the middle is an error (the default).
    RF_RECOVERY_TOLERATE_TAIL = 0,
    /// Any damage at all is an error.
    RF_RECOVERY_ABSOLUTE = 1,
    /// Stop at the first damage and keep what came before.
    RF_RECOVERY_POINT_IN_TIME = 2,
    /// Skip damaged records and go on.
    RF_RECOVERY_SKIP = 3,
}

/// How a log ended when it was read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_wal_tail {
    /// Nothing but zeroes or stale bytes after the last batch.
    RF_TAIL_CLEAN = 0,
    /// A torn write at the end, cut off.
    RF_TAIL_TORN = 1,
    /// Point-in-time recovery stopped at damage; the rest is cut off.
    RF_TAIL_CUT = 2,
}

/// What reading a log found.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct rf_wal_report {
    /// The LSN of the log's first record (or `next_lsn` when empty).
    pub first_lsn: u64,
    /// The LSN the next append gets.
    pub next_lsn: u64,
    /// Whole records checked.
    pub records: u64,
    /// Segment files found.
    pub segments: u64,
    /// How the log ended.
    pub tail: rf_wal_tail,
    /// Damaged stretches skipped (`RF_RECOVERY_SKIP`).
    pub skipped: u64,
}

/// One record: its LSN and bytes. `data` is valid until the next call on the reader (or
/// the end of the replay callback).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rf_record {
    /// The record's log sequence number (1, 2, 3, ... with no gaps).
    pub lsn: u64,
    /// The first byte.
    pub data: *const u8,
    /// Bytes in the record.
    pub len: usize,
}

pub(crate) fn report_of(r: &RecoveryReport) -> rf_wal_report {
    rf_wal_report {
        first_lsn: r.first_lsn,
        next_lsn: r.next_lsn,
        records: r.records,
        segments: r.segments as u64,
        tail: match r.tail {
            Tail::Clean => rf_wal_tail::RF_TAIL_CLEAN,
            Tail::Torn(_) => rf_wal_tail::RF_TAIL_TORN,
            Tail::Cut(_) => rf_wal_tail::RF_TAIL_CUT,
        },
        skipped: r.skipped_count,
    }
}

/// A log configuration: segment and block sizes, batching, durability, recovery mode.
/// Starts from ringfort-wal's defaults (64 MiB segments, 256 KiB blocks, 1 MiB batches,
/// 8 MiB records, sync durability with fdatasync, tolerate a torn tail).
pub struct rf_wal_config {
    pub(crate) wal: WalConfig,
}

/// A new log configuration with the defaults. NULL only on an internal error.
///
/// Threads: any.
#[no_mangle]
pub extern "C" fn rf_wal_config_new() -> *mut rf_wal_config {
    guard_or("rf_wal_config_new", std::ptr::null_mut(), || {
        Ok(Box::into_raw(Box::new(rf_wal_config {
            wal: WalConfig::default(),
        })))
    })
}

/// Frees a log configuration. NULL is a no-op.
///
/// # Safety
/// `cfg` is NULL or a pointer from `rf_wal_config_new` not yet freed.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_free(cfg: *mut rf_wal_config) {
    guard_or("rf_wal_config_free", (), || {
        if !cfg.is_null() {
            // SAFETY: from Box::into_raw in rf_wal_config_new, freed once (the contract).
            drop(unsafe { Box::from_raw(cfg) });
        }
        Ok(())
    })
}

/// Bytes per segment file, header included: a multiple of 4096 that holds the largest
/// batch (checked by `rf_wal_config_validate` and at open).
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_segment_size(
    cfg: *mut rf_wal_config,
    bytes: u64,
) -> rf_status {
    guard("rf_wal_config_set_segment_size", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        unsafe { arg_mut(cfg, "cfg") }?.wal.segment_size = bytes;
        Ok(())
    })
}

/// Bytes per pool block batches are built in: a multiple of 4096 from 8 KiB to 16 MiB.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_block_size(
    cfg: *mut rf_wal_config,
    bytes: usize,
) -> rf_status {
    guard("rf_wal_config_set_block_size", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        unsafe { arg_mut(cfg, "cfg") }?.wal.block_size = bytes;
        Ok(())
    })
}

/// A batch is sealed (one group commit) once it holds this many bytes: 4 KiB to 256 MiB.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_batch_bytes(
    cfg: *mut rf_wal_config,
    bytes: usize,
) -> rf_status {
    guard("rf_wal_config_set_batch_bytes", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        unsafe { arg_mut(cfg, "cfg") }?.wal.batch_bytes = bytes;
        Ok(())
    })
}

/// The largest record accepted (at most 1 GiB); a larger append is
/// `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_max_record(
    cfg: *mut rf_wal_config,
    bytes: usize,
) -> rf_status {
    guard("rf_wal_config_set_max_record", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        unsafe { arg_mut(cfg, "cfg") }?.wal.max_record = bytes;
        Ok(())
    })
}

/// When an append counts as done: one of `rf_durability` (taken as an integer, so any
/// value is safe; others are `RF_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_durability(
    cfg: *mut rf_wal_config,
    durability: u32,
) -> rf_status {
    guard("rf_wal_config_set_durability", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        cfg.wal.durability = match durability {
            0 => Durability::Sync,
            1 => Durability::Buffered,
            2 => Durability::None,
            v => {
                return Err(Error::invalid(format!(
                    "durability {v} is not an rf_durability"
                )))
            }
        };
        Ok(())
    })
}

/// Sync with `RWF_DSYNC` writes (`dsync` true) instead of a write then `fdatasync`.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_dsync(
    cfg: *mut rf_wal_config,
    dsync: bool,
) -> rf_status {
    guard("rf_wal_config_set_dsync", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        unsafe { arg_mut(cfg, "cfg") }?.wal.sync_method = if dsync {
            SyncMethod::Dsync
        } else {
            SyncMethod::Fdatasync
        };
        Ok(())
    })
}

fn recovery_mode(mode: u32) -> Result<RecoveryMode, Error> {
    Ok(match mode {
        0 => RecoveryMode::TolerateCorruptedTail,
        1 => RecoveryMode::AbsoluteConsistency,
        2 => RecoveryMode::PointInTime,
        3 => RecoveryMode::SkipCorrupted,
        v => {
            return Err(Error::invalid(format!(
                "recovery mode {v} is not an rf_recovery_mode"
            )))
        }
    })
}

/// What opening the log does with damage: one of `rf_recovery_mode` (taken as an
/// integer; others are `RF_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_recovery(
    cfg: *mut rf_wal_config,
    mode: u32,
) -> rf_status {
    guard("rf_wal_config_set_recovery", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        let cfg = unsafe { arg_mut(cfg, "cfg") }?;
        cfg.wal.recovery = recovery_mode(mode)?;
        Ok(())
    })
}

/// Write segments with `O_DIRECT` (falling back, with a warning, where the file system
/// refuses it). On by default.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_set_direct_io(
    cfg: *mut rf_wal_config,
    on: bool,
) -> rf_status {
    guard("rf_wal_config_set_direct_io", || {
        // SAFETY: NULL or live and owned by this thread (the contract).
        unsafe { arg_mut(cfg, "cfg") }?.wal.direct_io = on;
        Ok(())
    })
}

/// Checks the whole log configuration: `RF_ERR_CONFIG` names the first bad field.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_config_validate(cfg: *const rf_wal_config) -> rf_status {
    guard("rf_wal_config_validate", || {
        // SAFETY: NULL or live (the contract).
        unsafe { arg(cfg, "cfg") }?.wal.validate()?;
        Ok(())
    })
}

/// The configuration `cfg` names, or the defaults for NULL.
///
/// # Safety
/// `cfg` is NULL or a live log configuration.
pub(crate) unsafe fn wal_config_or_default(cfg: *const rf_wal_config) -> WalConfig {
    // SAFETY: NULL or live (the caller's contract).
    unsafe { cfg.as_ref() }.map_or_else(WalConfig::default, |c| c.wal.clone())
}

/// A write-ahead log opened with `rf_wal_open`: thread-safe, so several threads may
/// append at once and share group commits. Close with `rf_wal_close`, free with
/// `rf_wal_free`.
pub struct rf_wal {
    wal: RwLock<Option<Wal>>,
}

/// Opens (creating it if needed) the log in directory `dir`: recovers it with the
/// configured mode, cuts a torn tail, syncs what was read, and starts its flusher thread.
/// `cfg` NULL means the defaults; `report` (may be NULL) receives what recovery found.
/// To read the records, use `rf_wal_reader_open` before opening or after closing.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated path; `cfg` is NULL or a live log configuration;
/// `report` is NULL or writable; `out` is NULL or writable.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_open(
    dir: *const c_char,
    cfg: *const rf_wal_config,
    report: *mut rf_wal_report,
    out: *mut *mut rf_wal,
) -> rf_status {
    guard("rf_wal_open", || {
        need_out(out, "out")?;
        // SAFETY: NULL or NUL-terminated (the contract).
        let path = unsafe { arg_str(dir, "dir") }?;
        if path.is_empty() {
            return Err(Error::invalid("dir is empty"));
        }
        // SAFETY: NULL or live (the contract).
        let config = unsafe { wal_config_or_default(cfg) };
        let (wal, rep) = Wal::open(path, config)?;
        if !report.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { report.write(report_of(&rep)) };
        }
        let handle = rf_wal {
            wal: RwLock::new(Some(wal)),
        };
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", Box::into_raw(Box::new(handle))) }
    })
}

/// The open log behind `wal`, read-locked (appends run side by side; close waits).
///
/// # Safety
/// `wal` is NULL or a live log handle.
unsafe fn open_wal<'a>(wal: *const rf_wal) -> Result<RwLockReadGuard<'a, Option<Wal>>, Error> {
    // SAFETY: NULL or live (the caller's contract).
    let w = unsafe { arg(wal, "wal") }?;
    let g = w.wal.read().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        return Err(Error::from(WalError::Closed));
    }
    Ok(g)
}

/// Appends a record and returns once it is done by the configured durability (synced,
/// under `RF_DURABILITY_SYNC`); `lsn` (may be NULL) receives its LSN. Blocks the calling
/// thread; appends from several threads share writes and syncs. Errors: `RF_ERR_WAL` when
/// the write or sync failed (the record is not durable, and its LSN will be reused),
/// `RF_ERR_INVALID_ARGUMENT` for a record over the maximum, `RF_ERR_CLOSED`.
///
/// # Safety
/// `wal` is NULL or a live log handle; `data` is NULL (only with `len` 0) or points to
/// `len` readable bytes; `lsn` is NULL or writable.
///
/// Threads: any, concurrently.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_append(
    wal: *const rf_wal,
    data: *const c_void,
    len: usize,
    lsn: *mut u64,
) -> rf_status {
    guard("rf_wal_append", || {
        // SAFETY: NULL only with len 0, else readable (the contract).
        let bytes = unsafe { arg_bytes(data.cast(), len, "data") }?;
        // SAFETY: NULL or live (the contract).
        let g = unsafe { open_wal(wal) }?;
        let got = g.as_ref().expect("checked open").append(bytes)?;
        if !lsn.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { lsn.write(got) };
        }
        Ok(())
    })
}

/// Waits until every record appended before the call is done (written, and synced under
/// `RF_DURABILITY_SYNC`; under `RF_DURABILITY_NONE` this is how to make them durable).
///
/// # Safety
/// `wal` is NULL or a live log handle.
///
/// Threads: any, concurrently.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_flush(wal: *const rf_wal) -> rf_status {
    guard("rf_wal_flush", || {
        // SAFETY: NULL or live (the contract).
        let g = unsafe { open_wal(wal) }?;
        g.as_ref().expect("checked open").flush()?;
        Ok(())
    })
}

/// The LSN the next append gets, and (if `acked` is not NULL) the LSN below which every
/// record is done.
///
/// # Safety
/// `wal` is NULL or a live log handle; `next` and `acked` are NULL or writable.
///
/// Threads: any, concurrently.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_lsns(
    wal: *const rf_wal,
    next: *mut u64,
    acked: *mut u64,
) -> rf_status {
    guard("rf_wal_lsns", || {
        need_out(next, "next")?;
        // SAFETY: NULL or live (the contract).
        let g = unsafe { open_wal(wal) }?;
        let w = g.as_ref().expect("checked open");
        if !acked.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { acked.write(w.acked_lsn()) };
        }
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(next, "next", w.next_lsn()) }
    })
}

/// Removes whole segments whose records all lie below `checkpoint` (the last segment
/// always stays); `removed` (may be NULL) receives how many went.
///
/// # Safety
/// `wal` is NULL or a live log handle; `removed` is NULL or writable.
///
/// Threads: any, concurrently.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_truncate_prefix(
    wal: *const rf_wal,
    checkpoint: u64,
    removed: *mut usize,
) -> rf_status {
    guard("rf_wal_truncate_prefix", || {
        // SAFETY: NULL or live (the contract).
        let g = unsafe { open_wal(wal) }?;
        let n = g
            .as_ref()
            .expect("checked open")
            .truncate_prefix(checkpoint)?;
        if !removed.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { removed.write(n) };
        }
        Ok(())
    })
}

/// Writes out everything appended, stops the flusher, and closes the log; waits for
/// appends in progress first. The handle stays valid (every call on it then returns
/// `RF_ERR_CLOSED`, a second close included) until `rf_wal_free`.
///
/// # Safety
/// `wal` is NULL or a live log handle.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_close(wal: *const rf_wal) -> rf_status {
    guard("rf_wal_close", || {
        // SAFETY: NULL or live (the contract).
        let w = unsafe { arg(wal, "wal") }?;
        let open = w.wal.write().unwrap_or_else(|e| e.into_inner()).take();
        match open {
            Some(log) => Ok(log.close()?),
            None => Err(Error::new(
                rf_status::RF_ERR_CLOSED,
                "the log is already closed",
            )),
        }
    })
}

/// Frees a log handle, closing the log first if it is open. NULL is a no-op.
///
/// # Safety
/// `wal` is NULL or a live log handle, not used after this call (by any thread).
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_free(wal: *mut rf_wal) {
    guard_or("rf_wal_free", (), || {
        if !wal.is_null() {
            // SAFETY: from Box::into_raw in rf_wal_open, freed once (the contract).
            drop(unsafe { Box::from_raw(wal) });
        }
        Ok(())
    })
}

/// A log directory's segments, owned, as recovery's source.
struct OwnedDir(StdDir);

impl SegmentSource for OwnedDir {
    fn list(&mut self) -> Result<Vec<Lsn>, WalError> {
        DirSegments(&self.0).list()
    }

    fn read(&mut self, id: Lsn, buf: &mut Vec<u8>, limit: u64) -> Result<(), WalError> {
        DirSegments(&self.0).read(id, buf, limit)
    }
}

/// A replay iterator over a log directory: reads only, repairs nothing.
pub struct rf_wal_reader {
    reader: Option<LogReader<OwnedDir>>,
    report: Option<RecoveryReport>,
}

/// Opens a replay iterator over the log in `dir`, yielding records from LSN `from` on
/// (0 or 1: all) in LSN order, with recovery mode `mode` (one of `rf_recovery_mode`). It
/// only reads: open it while no `rf_wal` has the directory open for appending.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated path; `out` is NULL or writable.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_reader_open(
    dir: *const c_char,
    from: u64,
    mode: u32,
    out: *mut *mut rf_wal_reader,
) -> rf_status {
    guard("rf_wal_reader_open", || {
        need_out(out, "out")?;
        // SAFETY: NULL or NUL-terminated (the contract).
        let path = PathBuf::from(unsafe { arg_str(dir, "dir") }?);
        let mode = recovery_mode(mode)?;
        if !path.is_dir() {
            return Err(Error::new(
                rf_status::RF_ERR_IO,
                format!("{} is not a directory", path.display()),
            ));
        }
        let dir = StdDir::open(&path, false)?;
        let reader = LogReader::new(
            OwnedDir(dir),
            ReadOptions {
                mode,
                from,
                ..ReadOptions::default()
            },
        );
        let r = rf_wal_reader {
            reader: Some(reader),
            report: None,
        };
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", Box::into_raw(Box::new(r))) }
    })
}

/// The next record: `RF_OK` with `record` filled (its bytes valid until the next call on
/// the reader), `RF_DONE` at the end of the log (then `rf_wal_reader_report` has the
/// report), or an error such as `RF_ERR_CORRUPT` (after which the reader is done).
///
/// # Safety
/// `reader` is NULL or a live reader; `record` is NULL or writable.
///
/// Threads: any, one at a time per reader.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_reader_next(
    reader: *mut rf_wal_reader,
    record: *mut rf_record,
) -> rf_status {
    let mut done = false;
    let s = guard("rf_wal_reader_next", || {
        need_out(record, "record")?;
        // SAFETY: NULL or live and used by one thread (the contract).
        let r = unsafe { arg_mut(reader, "reader") }?;
        let Some(lr) = r.reader.as_mut() else {
            done = true;
            return Ok(());
        };
        match lr.next_record() {
            Ok(Some(rec)) => {
                let out = rf_record {
                    lsn: rec.lsn,
                    data: rec.payload.as_ptr(),
                    len: rec.payload.len(),
                };
                // SAFETY: checked non-NULL; writable (the contract).
                unsafe { put(record, "record", out) }
            }
            Ok(None) => {
                let lr = r.reader.take().expect("present");
                r.report = Some(lr.finish()?);
                done = true;
                Ok(())
            }
            Err(e) => {
                r.reader = None;
                Err(e.into())
            }
        }
    });
    if s == rf_status::RF_OK && done {
        rf_status::RF_DONE
    } else {
        s
    }
}

/// What the read found, once `rf_wal_reader_next` returned `RF_DONE`
/// (`RF_ERR_INVALID_ARGUMENT` before).
///
/// # Safety
/// `reader` is NULL or a live reader; `report` is NULL or writable.
///
/// Threads: any, one at a time per reader.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_reader_report(
    reader: *const rf_wal_reader,
    report: *mut rf_wal_report,
) -> rf_status {
    guard("rf_wal_reader_report", || {
        // SAFETY: NULL or live (the contract).
        let r = unsafe { arg(reader, "reader") }?;
        let rep = r
            .report
            .as_ref()
            .ok_or_else(|| Error::invalid("the reader has not reached the end of the log"))?;
        // SAFETY: NULL or writable (the contract).
        unsafe { put(report, "report", report_of(rep)) }
    })
}

/// Frees a reader. NULL is a no-op.
///
/// # Safety
/// `reader` is NULL or a live reader, not used after this call.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_wal_reader_free(reader: *mut rf_wal_reader) {
    guard_or("rf_wal_reader_free", (), || {
        if !reader.is_null() {
            // SAFETY: from Box::into_raw in rf_wal_reader_open, freed once (the contract).
            drop(unsafe { Box::from_raw(reader) });
        }
        Ok(())
    })
}
