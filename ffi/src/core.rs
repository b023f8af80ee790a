//! `rf_core`, the handle a callback gets to its core, and the calls made with it:
//! sending, closing, timers, cross-core messages, stopping, stats.
//!
//! A handle is a small struct on the callback wrapper's stack that points at the
//! engine's `Ctx`. While the callback runs, a thread-local holds its address; every call
//! compares the pointer it was given with that address before touching it. A handle kept
//! past its callback, or passed to another thread, therefore fails with
//! `RF_ERR_WRONG_THREAD` instead of reaching freed stack memory. While a call uses the
//! `Ctx`, the thread-local is cleared, so a callback nested inside it (a WAL replay) cannot
//! reach the same `Ctx` a second time.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::time::Duration;

use ringfort::{ConnId, Ctx, TimerId};

use crate::data::{data_chain, rf_buf, rf_data};
use crate::engine::{rf_stats, stats_of};
use crate::handler::{rf_conn, rf_timer, Msg};
use crate::status::{arg_bytes, arg_str, guard, guard_or, need_out, put, rf_status, Error};

/// A core's handle, valid only inside the callback that received it and only on that
/// callback's thread.
pub struct rf_core {
    ctx: *mut Ctx<'static, Msg>,
    cb: crate::handler::Callbacks,
}

thread_local! {
    /// The core handle of the callback running on this thread, if any.
    static CURRENT: Cell<*mut rf_core> = const { Cell::new(std::ptr::null_mut()) };
}

/// Calls `f` with a core handle for `cx`, valid until `f` returns.
pub(crate) fn with_core_handle<R>(
    cx: &mut Ctx<'_, Msg>,
    cb: crate::handler::Callbacks,
    f: impl FnOnce(*mut rf_core) -> R,
) -> R {
    let mut core = rf_core {
        // The lifetime is erased; `CURRENT` is reset before `cx`'s borrow ends, and every
        // use checks `CURRENT` first.
        ctx: (cx as *mut Ctx<'_, Msg>).cast(),
        cb,
    };
    let p: *mut rf_core = &mut core;
    let prev = CURRENT.with(|c| c.replace(p));
    let r = f(p);
    CURRENT.with(|c| c.set(prev));
    r
}

/// Runs `f` with the `Ctx` behind `core` when `core` is the handle of the callback running
/// on this thread; `RF_ERR_WRONG_THREAD` otherwise. The handle is suspended while `f` runs.
pub(crate) fn with_ctx<R>(
    core: *mut rf_core,
    f: impl FnOnce(&mut Ctx<'_, Msg>, &crate::handler::Callbacks) -> Result<R, Error>,
) -> Result<R, Error> {
    if core.is_null() {
        return Err(Error::invalid("core is NULL"));
    }
    if CURRENT.with(|c| c.get()) != core {
        return Err(Error::new(
            rf_status::RF_ERR_WRONG_THREAD,
            "this core handle is not the one of a callback running on this thread (kept past \
             its callback, passed to another thread, or used inside a nested callback)",
        ));
    }
    /// Puts the handle back when the call ends, by a return or a caught panic.
    struct Resume(*mut rf_core);
    impl Drop for Resume {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    CURRENT.with(|c| c.set(std::ptr::null_mut()));
    let _resume = Resume(core);
    // SAFETY: `core` equals `CURRENT`, which `with_core_handle` set to its live stack
    // handle and resets before returning, so the callback is still running on this thread
    // and the handle and its `Ctx` are live. The `Ctx` is used by nothing else meanwhile:
    // the engine is inside the callback, and clearing `CURRENT` keeps nested calls out.
    unsafe {
        let h = &*core;
        f(&mut *h.ctx, &h.cb)
    }
}

fn conn_id(conn: rf_conn) -> ConnId {
    ConnId::from_u64(conn)
}

fn no_conn() -> Error {
    Error::new(
        rf_status::RF_ERR_NO_CONN,
        "no such connection on this core (closed, stale, or another core's)",
    )
}

/// This core's index (0 .. cores-1); `SIZE_MAX` for an invalid handle.
///
/// Threads: the callback's core thread, during the callback.
#[no_mangle]
pub extern "C" fn rf_core_index(core: *mut rf_core) -> usize {
    guard_or("rf_core_index", usize::MAX, || {
        with_ctx(core, |cx, _| Ok(cx.core()))
    })
}

/// How many cores the engine runs; 0 for an invalid handle.
///
/// Threads: the callback's core thread, during the callback.
#[no_mangle]
pub extern "C" fn rf_core_count(core: *mut rf_core) -> usize {
    guard_or("rf_core_count", 0, || {
        with_ctx(core, |cx, _| Ok(cx.cores()))
    })
}

/// Opens another listener on this core only ("IP:PORT"; give the same explicit port on
/// every core to share it). `listener` receives its id.
///
/// # Safety
/// `addr` is NULL or a NUL-terminated string; `listener` is NULL or writable.
///
/// Threads: the callback's core thread, during the callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_listen(
    core: *mut rf_core,
    addr: *const c_char,
    listener: *mut u32,
) -> rf_status {
    guard("rf_core_listen", || {
        // SAFETY: NULL or NUL-terminated (the contract).
        let text = unsafe { arg_str(addr, "addr") }?;
        let addr = crate::config::parse_addr(text)?;
        need_out(listener, "listener")?;
        let id = with_ctx(core, |cx, _| Ok(cx.listen(addr)?))?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(listener, "listener", id.to_u32()) }
    })
}

/// Copies `len` bytes into pool blocks and queues them for `conn`, after everything
/// queued before; sends are gathered per tick. Crossing the outbound limits closes the
/// connection (`RF_CLOSE_EVICTED`). `RF_ERR_NO_CONN` if the connection is gone.
///
/// # Safety
/// `bytes` is NULL (only with `len` 0) or points to `len` readable bytes.
///
/// Threads: the callback's core thread, during the callback.
#[no_mangle]
pub unsafe extern "C" fn rf_conn_send(
    core: *mut rf_core,
    conn: rf_conn,
    bytes: *const c_void,
    len: usize,
) -> rf_status {
    guard("rf_conn_send", || {
        // SAFETY: NULL only with len 0, else `len` readable bytes (the contract).
        let bytes = unsafe { arg_bytes(bytes.cast(), len, "bytes") }?;
        with_ctx(core, |cx, _| {
            if !cx.is_open(conn_id(conn)) {
                return Err(no_conn());
            }
            Ok(cx.send_bytes(conn_id(conn), bytes)?)
        })
    })
}

/// Zero copy: moves the first `len` received bytes of `data` (the view `on_data` got)
/// into `conn`'s send queue; they are consumed from `data`. The same connection or another
/// on this core may be the target. `len` larger than `rf_data_len(data)` is
/// `RF_ERR_INVALID_ARGUMENT`.
///
/// Threads: the callback's core thread, during the `on_data` that received `data`.
#[no_mangle]
pub extern "C" fn rf_conn_send_data(
    core: *mut rf_core,
    conn: rf_conn,
    data: *mut rf_data,
    len: usize,
) -> rf_status {
    guard("rf_conn_send_data", || {
        let chain = data_chain(data)?;
        if len > chain.len() {
            return Err(Error::invalid(format!(
                "len {len} exceeds the {} bytes in data",
                chain.len()
            )));
        }
        with_ctx(core, |cx, _| {
            if !cx.is_open(conn_id(conn)) {
                return Err(no_conn());
            }
            let part = chain.split_to(len);
            Ok(cx.send(conn_id(conn), part)?)
        })
    })
}

/// Zero copy: queues every byte of a retained buffer for `conn`. The call consumes `buf`
/// in every case but a NULL `core` or `buf` (do not release it afterwards). A buffer
/// received on this core is sent without a copy; send one from another core with
/// `rf_conn_send` (a block of another core's memory cannot go out as a registered buffer).
///
/// # Safety
/// `buf` is NULL or a live buffer from `rf_data_retain`/`rf_buf_retain`, not used after
/// this call.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_conn_send_buf(
    core: *mut rf_core,
    conn: rf_conn,
    buf: *mut rf_buf,
) -> rf_status {
    guard("rf_conn_send_buf", || {
        if core.is_null() || buf.is_null() {
            return Err(Error::invalid("core or buf is NULL"));
        }
        // SAFETY: a live buffer handle from Box::into_raw, handed over by the caller.
        let buf = unsafe { Box::from_raw(buf) };
        with_ctx(core, |cx, _| {
            if !cx.is_open(conn_id(conn)) {
                return Err(no_conn());
            }
            Ok(cx.send(conn_id(conn), buf.chain)?)
        })
    })
}

/// Closes `conn` after its queued replies are sent (for at most a few seconds);
/// `on_close` follows. A second close, or a close of a stale id, returns
/// `RF_ERR_NO_CONN` and changes nothing.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub extern "C" fn rf_conn_close(core: *mut rf_core, conn: rf_conn) -> rf_status {
    guard("rf_conn_close", || {
        with_ctx(core, |cx, _| {
            if !cx.is_open(conn_id(conn)) {
                return Err(no_conn());
            }
            cx.close(conn_id(conn));
            Ok(())
        })
    })
}

/// Whether reading `conn` is paused because its peer is not taking replies or its
/// window is full: stop consuming requests while true. Gone connections count as
/// backpressured.
///
/// # Safety
/// `out` is NULL or writable.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_conn_backpressured(
    core: *mut rf_core,
    conn: rf_conn,
    out: *mut bool,
) -> rf_status {
    guard("rf_conn_backpressured", || {
        need_out(out, "out")?;
        let v = with_ctx(core, |cx, _| Ok(cx.backpressured(conn_id(conn))))?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", v) }
    })
}

/// Stops (`pause` true) or resumes reading `conn`; bytes already buffered are offered
/// again on resume.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub extern "C" fn rf_conn_pause_reading(
    core: *mut rf_core,
    conn: rf_conn,
    pause: bool,
) -> rf_status {
    guard("rf_conn_pause_reading", || {
        with_ctx(core, |cx, _| {
            if !cx.is_open(conn_id(conn)) {
                return Err(no_conn());
            }
            if pause {
                cx.pause_reading(conn_id(conn));
            } else {
                cx.resume_reading(conn_id(conn));
            }
            Ok(())
        })
    })
}

/// Calls `on_timer` with `token` on this core after `after_ms` milliseconds; `timer`
/// receives its id. `RF_ERR_FULL` at the configured timer bound.
///
/// # Safety
/// `timer` is NULL or writable.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_timer(
    core: *mut rf_core,
    after_ms: u64,
    token: u64,
    timer: *mut rf_timer,
) -> rf_status {
    guard("rf_core_timer", || {
        need_out(timer, "timer")?;
        let id = with_ctx(core, |cx, _| {
            Ok(cx.timer(Duration::from_millis(after_ms), token)?)
        })?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(timer, "timer", id.to_u64()) }
    })
}

/// Cancels a timer of this core. `RF_ERR_NOT_FOUND` if it already fired or was
/// cancelled (or never existed).
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub extern "C" fn rf_core_timer_cancel(core: *mut rf_core, timer: rf_timer) -> rf_status {
    guard("rf_core_timer_cancel", || {
        with_ctx(core, |cx, _| {
            if cx.cancel_timer(TimerId::from_u64(timer)) {
                Ok(())
            } else {
                Err(Error::new(
                    rf_status::RF_ERR_NOT_FOUND,
                    "no such timer (it fired, was cancelled, or never existed)",
                ))
            }
        })
    })
}

/// Sends `(tag, msg)` to core `to_core`'s `on_message` through a bounded channel (woken
/// with `IORING_OP_MSG_RING`). On `RF_OK` the receiver owns `msg`; on `RF_ERR_FULL` (the
/// channel is full: backpressure) or any other error the caller keeps it.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub extern "C" fn rf_core_post(
    core: *mut rf_core,
    to_core: usize,
    tag: u64,
    msg: *mut c_void,
) -> rf_status {
    guard("rf_core_post", || {
        with_ctx(core, |cx, cb| {
            if to_core >= cx.cores() {
                return Err(Error::invalid(format!(
                    "core {to_core} does not exist (the engine runs {})",
                    cx.cores()
                )));
            }
            cx.submit_to(to_core, Msg::new(tag, msg, cb))
                .map_err(|full| {
                    full.into_inner().disarm();
                    Error::new(
                        rf_status::RF_ERR_FULL,
                        format!("the channel to core {to_core} is full; retry later"),
                    )
                })
        })
    })
}

/// Asks the whole engine to stop, giving connections up to `drain_ms` to flush queued
/// replies (as `rf_engine_stop`).
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub extern "C" fn rf_core_stop_engine(core: *mut rf_core, drain_ms: u64) -> rf_status {
    guard("rf_core_stop_engine", || {
        with_ctx(core, |cx, _| {
            cx.stop_engine(Duration::from_millis(drain_ms));
            Ok(())
        })
    })
}

/// This core's counters so far.
///
/// # Safety
/// `out` is NULL or writable.
///
/// Threads: the callback's core thread, during a callback.
#[no_mangle]
pub unsafe extern "C" fn rf_core_stats(core: *mut rf_core, out: *mut rf_stats) -> rf_status {
    guard("rf_core_stats", || {
        need_out(out, "out")?;
        let s = with_ctx(core, |cx, _| Ok(stats_of(cx.metrics())))?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", s) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_outside_a_callback_are_refused_without_a_dereference() {
        // A made-up, non-NULL pointer: never dereferenced, only compared.
        let bogus = 0x1000 as *mut rf_core;
        assert_eq!(rf_conn_close(bogus, 1), rf_status::RF_ERR_WRONG_THREAD);
        assert_eq!(rf_core_index(bogus), usize::MAX);
        assert_eq!(
            rf_conn_close(std::ptr::null_mut(), 1),
            rf_status::RF_ERR_INVALID_ARGUMENT
        );
    }
}
