//! `rf_engine`: start, post from outside, stats, stop, wait, free.
//!
//! The handle keeps the `Engine` behind a mutex that is held only briefly, so one thread
//! can block in `rf_engine_wait` while others post or stop. Waiting first waits for every
//! core's handler to be dropped (each core counts itself out as it finishes), and only
//! then takes the engine out to join its threads.

use std::ffi::c_void;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ringfort::{CoreMetrics, Engine};

use crate::config::rf_config;
use crate::handler::{on_core_thread, rf_handler, Callbacks, FfiHandler, Gate, Msg, Started};
use crate::status::{arg, guard, guard_or, need_out, put, rf_status, Error};

/// A running engine: one pinned thread per core. Free with `rf_engine_free`.
pub struct rf_engine {
    engine: Mutex<Option<Engine<Msg>>>,
    /// Counters read at the end of `rf_engine_wait`.
    last: Mutex<Option<Vec<CoreMetrics>>>,
    gate: Arc<Gate>,
    cores: usize,
    /// The port each configured listener got.
    ports: Vec<u16>,
    /// Sockets holding the ports picked for port-0 listeners, so nothing else takes them
    /// while the cores open theirs (bound with `SO_REUSEPORT`, never listening, so they
    /// get no connections).
    _reserved: Vec<OwnedFd>,
    cb: Callbacks,
}

/// One core's counters (a gauge says "now"; the rest count since start).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct rf_stats {
    /// Loop iterations.
    pub ticks: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// SQEs submitted.
    pub sqes: u64,
    /// CQEs handled.
    pub completions: u64,
    /// Bytes received from sockets.
    pub bytes_in: u64,
    /// Bytes sent to sockets.
    pub bytes_out: u64,
    /// Connections accepted.
    pub accepts: u64,
    /// Connections closed at once because the connection bound was reached.
    pub accept_refused: u64,
    /// Connections closed, for any reason.
    pub closes: u64,
    /// Connections closed because their outbound queue crossed a limit.
    pub evictions: u64,
    /// Connections closed for idleness.
    pub idle_closes: u64,
    /// Zero-copy send operations.
    pub sends_zc: u64,
    /// Copying send operations.
    pub sends_copy: u64,
    /// Cross-core messages received.
    pub messages_in: u64,
    /// Cross-core messages sent.
    pub messages_out: u64,
    /// Cross-core sends refused because the channel was full.
    pub channel_full: u64,
    /// Open connections (gauge).
    pub conns: u64,
    /// Armed timers (gauge).
    pub timers: u64,
    /// Operations in flight in the kernel (gauge).
    pub ops_in_flight: u64,
    /// Pool buffers still handed out when the core exited (0 after a clean stop with
    /// every retained buffer released).
    pub live_buffers_at_exit: u64,
}

pub(crate) fn stats_of(m: &CoreMetrics) -> rf_stats {
    rf_stats {
        ticks: m.ticks,
        enters: m.enters,
        sqes: m.sqes,
        completions: m.completions,
        bytes_in: m.bytes_in,
        bytes_out: m.bytes_out,
        accepts: m.accepts,
        accept_refused: m.accept_refused,
        closes: m.closes,
        evictions: m.evictions,
        idle_closes: m.idle_closes,
        sends_zc: m.sends_zc,
        sends_copy: m.sends_copy,
        messages_in: m.messages_in,
        messages_out: m.messages_out,
        channel_full: m.channel_full,
        conns: m.conns,
        timers: m.timers,
        ops_in_flight: m.ops_in_flight,
        live_buffers_at_exit: m.live_buffers_at_exit,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`ringfort::reserve_port`], with the error as a status.
fn reserve_port(addr: SocketAddr) -> Result<(OwnedFd, u16), Error> {
    ringfort::reserve_port(addr)
        .map(|(fd, got)| (fd, got.port()))
        .map_err(|e| {
            Error::new(
                rf_status::RF_ERR_IO,
                format!("reserving a port for listener {addr}: {e}"),
            )
        })
}

/// Starts the engine: probes the kernel, starts one core per configured CPU, opens the
/// configured listeners on every core, and returns once every core listens and has run
/// `on_start`. `handler` is
/// copied (`on_data` is required); `user_data` is passed to every callback, from every
/// core thread at once, so what it points to must be safe to use from those threads.
/// Errors: `RF_ERR_CONFIG` (the text names the field), `RF_ERR_UNSUPPORTED` (the kernel;
/// the text names cause and remedy), `RF_ERR_IO` (memlock, a listener's address, ...).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `handler` is NULL or points to an `rf_handler`
/// whose non-NULL members are valid functions; `out` is NULL or writable.
///
/// Threads: any thread but a core thread.
#[no_mangle]
pub unsafe extern "C" fn rf_engine_start(
    cfg: *const rf_config,
    handler: *const rf_handler,
    user_data: *mut c_void,
    out: *mut *mut rf_engine,
) -> rf_status {
    guard("rf_engine_start", || {
        need_out(out, "out")?;
        // SAFETY: NULL or live (the contract).
        let cfg = unsafe { arg(cfg, "cfg") }?;
        // SAFETY: NULL or a valid rf_handler (the contract).
        let h = *unsafe { arg(handler, "handler") }?;
        if h.on_data.is_none() {
            return Err(Error::invalid("handler->on_data is NULL (it is required)"));
        }
        if on_core_thread() {
            return Err(Error::new(
                rf_status::RF_ERR_WRONG_THREAD,
                "an engine cannot be started from a core thread",
            ));
        }
        cfg.engine.validate()?;
        let mut reserved = Vec::new();
        let mut listeners = Vec::with_capacity(cfg.listeners.len());
        for &addr in &cfg.listeners {
            if addr.port() == 0 {
                let (fd, port) = reserve_port(addr)?;
                reserved.push(fd);
                listeners.push(SocketAddr::new(addr.ip(), port));
            } else {
                listeners.push(addr);
            }
        }
        let ports = listeners.iter().map(|a| a.port()).collect();
        let listeners: Arc<[SocketAddr]> = listeners.into();
        let gate = Arc::new(Gate::default());
        let cb = Callbacks { h, user_data };
        let (g, l) = (Arc::clone(&gate), Arc::clone(&listeners));
        let engine = Engine::start(cfg.engine.clone(), move |core| {
            FfiHandler::new(cb, core, Arc::clone(&l), Arc::clone(&g))
        })?;
        let cores = engine.cores();
        match gate.wait_started(cores) {
            Started::Ok => {}
            Started::Failed(why) => {
                engine.stop(Duration::ZERO);
                let _ = engine.wait();
                return Err(Error::new(rf_status::RF_ERR_IO, why));
            }
            Started::Ended => {
                engine.stop(Duration::ZERO);
                let e = engine
                    .wait()
                    .err()
                    .map_or("a core stopped during start-up".into(), |e| e.to_string());
                return Err(Error::new(rf_status::RF_ERR_CORE_FAILED, e));
            }
        }
        let handle = rf_engine {
            engine: Mutex::new(Some(engine)),
            last: Mutex::new(None),
            gate,
            cores,
            ports,
            _reserved: reserved,
            cb,
        };
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", Box::into_raw(Box::new(handle))) }
    })
}

/// # Safety
/// `engine` is NULL or a live engine.
unsafe fn engine_ref<'a>(engine: *const rf_engine) -> Result<&'a rf_engine, Error> {
    // SAFETY: NULL or live (the caller's contract).
    unsafe { arg(engine, "engine") }
}

/// How many cores the engine runs; 0 for NULL.
///
/// # Safety
/// `engine` is NULL or a live engine.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_engine_cores(engine: *const rf_engine) -> usize {
    // SAFETY: NULL or live (the contract).
    guard_or("rf_engine_cores", 0, || {
        Ok(unsafe { engine_ref(engine) }?.cores)
    })
}

/// The port configured listener `index` (0-based, in `rf_config_add_listener` order)
/// listens on: the configured one, or the one picked for port 0.
///
/// # Safety
/// `engine` is NULL or a live engine; `port` is NULL or writable.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_engine_listener_port(
    engine: *const rf_engine,
    index: usize,
    port: *mut u16,
) -> rf_status {
    guard("rf_engine_listener_port", || {
        // SAFETY: NULL or live (the contract).
        let e = unsafe { engine_ref(engine) }?;
        let p = *e.ports.get(index).ok_or_else(|| {
            Error::new(
                rf_status::RF_ERR_NOT_FOUND,
                format!(
                    "no listener {index} (the configuration had {})",
                    e.ports.len()
                ),
            )
        })?;
        // SAFETY: NULL or writable (the contract).
        unsafe { put(port, "port", p) }
    })
}

/// Sends `(tag, msg)` from outside the engine to core `core`'s `on_message` (with
/// `from_core` -1). On `RF_OK` the receiver owns `msg`; on any error the caller keeps it:
/// `RF_ERR_FULL` when that core's queue is full (retry later), `RF_ERR_CLOSED` once the
/// engine is stopping.
///
/// # Safety
/// `engine` is NULL or a live engine.
///
/// Threads: any, core threads included.
#[no_mangle]
pub unsafe extern "C" fn rf_engine_post(
    engine: *const rf_engine,
    core: usize,
    tag: u64,
    msg: *mut c_void,
) -> rf_status {
    guard("rf_engine_post", || {
        // SAFETY: NULL or live (the contract).
        let e = unsafe { engine_ref(engine) }?;
        if core >= e.cores {
            return Err(Error::invalid(format!(
                "core {core} does not exist (the engine runs {})",
                e.cores
            )));
        }
        let g = lock(&e.engine);
        let Some(engine) = g.as_ref() else {
            return Err(closed("the engine was waited for"));
        };
        engine.post(core, Msg::new(tag, msg, &e.cb)).map_err(|m| {
            m.disarm();
            if engine.stopping() {
                closed("the engine is stopping")
            } else {
                Error::new(
                    rf_status::RF_ERR_FULL,
                    format!("core {core}'s queue of messages from outside is full; retry later"),
                )
            }
        })
    })
}

fn closed(why: &str) -> Error {
    Error::new(rf_status::RF_ERR_CLOSED, why)
}

/// Core `core`'s latest counters (after `rf_engine_wait`, its final ones).
///
/// # Safety
/// `engine` is NULL or a live engine; `out` is NULL or writable.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_engine_stats(
    engine: *const rf_engine,
    core: usize,
    out: *mut rf_stats,
) -> rf_status {
    guard("rf_engine_stats", || {
        need_out(out, "out")?;
        // SAFETY: NULL or live (the contract).
        let e = unsafe { engine_ref(engine) }?;
        let all = match lock(&e.engine).as_ref() {
            Some(engine) => engine.metrics(),
            None => lock(&e.last).clone().unwrap_or_default(),
        };
        let m = all.get(core).ok_or_else(|| {
            Error::invalid(format!(
                "core {core} does not exist (the engine runs {})",
                e.cores
            ))
        })?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", stats_of(m)) }
    })
}

/// Asks the cores to stop: listeners close at once, connections get up to `drain_ms` to
/// flush queued replies, then everything in flight is cancelled. Returns at once; stopping
/// again, or after the engine finished, is a harmless `RF_OK`.
///
/// # Safety
/// `engine` is NULL or a live engine.
///
/// Threads: any, core threads included.
#[no_mangle]
pub unsafe extern "C" fn rf_engine_stop(engine: *const rf_engine, drain_ms: u64) -> rf_status {
    guard("rf_engine_stop", || {
        // SAFETY: NULL or live (the contract).
        let e = unsafe { engine_ref(engine) }?;
        if let Some(engine) = lock(&e.engine).as_ref() {
            engine.stop(Duration::from_millis(drain_ms));
        }
        Ok(())
    })
}

/// Blocks until every core has finished (after a stop), then joins them. Only one wait
/// succeeds: a second returns `RF_ERR_CLOSED`. `RF_ERR_CORE_FAILED` if a core failed or
/// panicked. The final counters stay readable with `rf_engine_stats`.
///
/// # Safety
/// `engine` is NULL or a live engine.
///
/// Threads: any thread but a core thread (`RF_ERR_WRONG_THREAD`: it would wait for
/// itself).
#[no_mangle]
pub unsafe extern "C" fn rf_engine_wait(engine: *const rf_engine) -> rf_status {
    guard("rf_engine_wait", || {
        // SAFETY: NULL or live (the contract).
        let e = unsafe { engine_ref(engine) }?;
        wait(e)
    })
}

fn wait(e: &rf_engine) -> Result<(), Error> {
    if on_core_thread() {
        return Err(Error::new(
            rf_status::RF_ERR_WRONG_THREAD,
            "a core thread cannot wait for its own engine",
        ));
    }
    if lock(&e.engine).is_none() {
        return Err(closed("the engine was already waited for"));
    }
    e.gate.wait_finished(e.cores);
    let Some(engine) = lock(&e.engine).take() else {
        return Err(closed("the engine was already waited for"));
    };
    let result = engine.wait();
    let metrics = match &result {
        Ok(m) => m.clone(),
        Err(_) => Vec::new(),
    };
    *lock(&e.last) = Some(metrics);
    result.map(drop).map_err(Error::from)
}

/// Frees the engine. NULL is a no-op. A running engine is stopped with no drain time and
/// waited for first. Undelivered messages go to `on_message_dropped`.
///
/// # Safety
/// `engine` is NULL or a live engine, not used after this call (by any thread).
///
/// Threads: any thread but a core thread (there it does nothing but set the last-error
/// text: freeing would wait for the calling thread itself).
#[no_mangle]
pub unsafe extern "C" fn rf_engine_free(engine: *mut rf_engine) {
    guard_or("rf_engine_free", (), || {
        if engine.is_null() {
            return Ok(());
        }
        if on_core_thread() {
            return Err(Error::new(
                rf_status::RF_ERR_WRONG_THREAD,
                "an engine cannot be freed from a core thread (nothing was freed)",
            ));
        }
        // SAFETY: a live handle from Box::into_raw, freed once (the contract).
        let e = unsafe { Box::from_raw(engine) };
        let running = lock(&e.engine).is_some();
        if running {
            if let Some(engine) = lock(&e.engine).as_ref() {
                engine.stop(Duration::ZERO);
            }
            let _ = wait(&e);
        }
        drop(e);
        Ok(())
    })
}
