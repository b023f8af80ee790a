//! A write-ahead log driven by a core's io_uring: open with replay, append (returns the
//! LSN at once; `on_wal_durable` reports when it is durable), durable LSN, truncate.
//! The log is closed when the engine stops.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

use ringfort::wal::WalError;
use ringfort::WalId;

use crate::core::{rf_core, with_ctx};
use crate::status::{arg_bytes, arg_str, guard, need_out, put, rf_status, Error};
use crate::wal::{report_of, rf_record, rf_wal_config, rf_wal_report, wal_config_or_default};

/// A replay callback: gets each record in LSN order; return 0 to go on, anything else to
/// stop the open with `RF_ERR_ABORTED`. `record` and its bytes are valid during the call.
pub type rf_replay_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, record: *const rf_record) -> c_int>;

/// Opens (creating it if needed) a log in directory `dir`, driven by this core's ring.
/// Recovery runs now, synchronously: every record at or above `from` goes to `replay`
/// (may be NULL) in LSN order before this returns. The replay callback runs on this
/// thread inside this call and must not use `core`. `cfg` NULL means the defaults;
/// `report` (may be NULL) receives what recovery found; `wal` receives the log's id on
/// this core. Appends are reported durable through `on_wal_durable`.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated path; `cfg` is NULL or a live log configuration;
/// `replay` is NULL or a valid function; `report` and `wal` are NULL or writable.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_wal_open(
    core: *mut rf_core,
    dir: *const c_char,
    cfg: *const rf_wal_config,
    from: u64,
    replay: rf_replay_fn,
    replay_user_data: *mut c_void,
    report: *mut rf_wal_report,
    wal: *mut u32,
) -> rf_status {
    guard("rf_core_wal_open", || {
        need_out(wal, "wal")?;
        // SAFETY: NULL or NUL-terminated (the contract).
        let path = unsafe { arg_str(dir, "dir") }?;
        if path.is_empty() {
            return Err(Error::invalid("dir is empty"));
        }
        // SAFETY: NULL or live (the contract).
        let config = unsafe { wal_config_or_default(cfg) };
        let mut aborted = false;
        let (id, rep) = with_ctx(core, |cx, _| {
            Ok(cx.wal_open(Path::new(path), config, from, |r, _arena| {
                let Some(f) = replay else { return Ok(()) };
                let rec = rf_record {
                    lsn: r.lsn,
                    data: r.payload.as_ptr(),
                    len: r.payload.len(),
                };
                // SAFETY: the application's replay callback (the contract), with a record
                // that outlives the call.
                if unsafe { f(replay_user_data, &rec) } != 0 {
                    aborted = true;
                    return Err(WalError::Closed);
                }
                Ok(())
            }))
        })
        .and_then(|r| {
            r.map_err(|e| {
                if aborted {
                    Error::new(
                        rf_status::RF_ERR_ABORTED,
                        "the replay callback asked to stop",
                    )
                } else {
                    Error::from(e)
                }
            })
        })?;
        if !report.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { report.write(report_of(&rep)) };
        }
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(wal, "wal", id.to_u32()) }
    })
}

/// Appends a record (copied into pool blocks) to core log `wal` and returns its LSN in
/// `lsn` at once; it goes out with this tick's group commit, and `on_wal_durable` reports
/// it. `RF_ERR_FULL` is backpressure: retry after the durable LSN moves.
///
/// # Safety
/// `data` is NULL (only with `len` 0) or points to `len` readable bytes; `lsn` is NULL or
/// writable.
///
/// Threads: the callback's core thread (the one that opened `wal`), during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_wal_append(
    core: *mut rf_core,
    wal: u32,
    data: *const c_void,
    len: usize,
    lsn: *mut u64,
) -> rf_status {
    guard("rf_core_wal_append", || {
        need_out(lsn, "lsn")?;
        // SAFETY: NULL only with len 0, else readable (the contract).
        let bytes = unsafe { arg_bytes(data.cast(), len, "data") }?;
        let got = with_ctx(
            core,
            |cx, _| Ok(cx.wal_append(WalId::from_u32(wal), bytes)?),
        )?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(lsn, "lsn", got) }
    })
}

/// Every record of core log `wal` below `durable` is durable; `next` (may be NULL) gets
/// the LSN the next append will get.
///
/// # Safety
/// `durable` and `next` are NULL or writable.
///
/// Threads: the callback's core thread (the one that opened `wal`), during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_wal_lsns(
    core: *mut rf_core,
    wal: u32,
    durable: *mut u64,
    next: *mut u64,
) -> rf_status {
    guard("rf_core_wal_lsns", || {
        need_out(durable, "durable")?;
        let (d, n) = with_ctx(core, |cx, _| {
            let id = WalId::from_u32(wal);
            Ok((cx.wal_durable(id)?, cx.wal_next_lsn(id)?))
        })?;
        if !next.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { next.write(n) };
        }
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(durable, "durable", d) }
    })
}

/// Removes whole segments of core log `wal` below `checkpoint` (never one holding records
/// not yet durable); `removed` (may be NULL) receives how many went.
///
/// # Safety
/// `removed` is NULL or writable.
///
/// Threads: the callback's core thread (the one that opened `wal`), during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_wal_truncate_prefix(
    core: *mut rf_core,
    wal: u32,
    checkpoint: u64,
    removed: *mut usize,
) -> rf_status {
    guard("rf_core_wal_truncate_prefix", || {
        let n = with_ctx(core, |cx, _| {
            Ok(cx.wal_truncate_prefix(WalId::from_u32(wal), checkpoint)?)
        })?;
        if !removed.is_null() {
            // SAFETY: non-NULL and writable (the contract).
            unsafe { removed.write(n) };
        }
        Ok(())
    })
}
