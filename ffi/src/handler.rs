//! `rf_handler`, the C callbacks, and `FfiHandler`, the engine handler that calls them.
//!
//! The engine builds one `FfiHandler` per core, on that core's thread. Each callback gets
//! a `rf_core` handle that lives on the handler's stack for the duration of the call; a
//! thread-local names the handle currently valid on this thread, so a handle used after
//! its callback returned, or from another thread, is refused by comparing pointers, never
//! dereferenced (see [`crate::core`]).

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ringfort::pool::BufChain;
use ringfort::wal::{Failure, Lsn};
use ringfort::{CloseReason, ConnId, CoreId, Ctx, Handler, ListenerId, TimerId, WalId};

use crate::core::rf_core;
use crate::data::rf_data;

/// A connection id: the core in the top 8 bits, then a generation and a slot, so an id
/// that outlived its connection is recognised as stale (`RF_ERR_NO_CONN`).
pub type rf_conn = u64;

/// A timer id from `rf_core_timer`.
pub type rf_timer = u64;

/// Why a connection closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_close_reason {
    /// The peer closed its side.
    RF_CLOSE_PEER = 0,
    /// `rf_conn_close` was called.
    RF_CLOSE_LOCAL = 1,
    /// A socket error (reset, timeout, ...); the detail text names it.
    RF_CLOSE_ERROR = 2,
    /// The peer sent more unconsumed bytes than `rf_config_set_max_recv_bytes` allows.
    RF_CLOSE_RECV_LIMIT = 3,
    /// The outbound queue crossed a limit (a peer that does not read); the detail text
    /// names the limit.
    RF_CLOSE_EVICTED = 4,
    /// Nothing was received for the idle timeout.
    RF_CLOSE_IDLE = 5,
    /// The engine is stopping.
    RF_CLOSE_SHUTDOWN = 6,
}

/// A peer address: `family` 4 or 6 (0 when unknown), the port, and the address bytes in
/// network order (the first 4 for IPv4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct rf_peer {
    /// 4, 6, or 0 when the address is unknown.
    pub family: u8,
    /// The port.
    pub port: u16,
    /// The address bytes, network order.
    pub addr: [u8; 16],
}

/// The application's callbacks. Every callback but `on_data` may be NULL. Each runs on a
/// core thread (named in its description) and must not block: it queues work with the
/// `rf_core_*` and `rf_conn_*` calls and returns. Callbacks of different cores run at
/// the same time on different threads, all with the same `user_data`; keep per-core state
/// in an array indexed by `rf_core_index`. The `rf_core` handle is valid only during the
/// callback that received it, and only on its thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rf_handler {
    /// The core is up and its configured listeners are open (connections are accepted
    /// once it returns). Runs once on each core's thread; `rf_engine_start` returns after
    /// every core has run it.
    pub on_start: Option<unsafe extern "C" fn(user_data: *mut c_void, core: *mut rf_core)>,
    /// A connection was accepted on `listener` (the configured listeners are 0, 1, ... in
    /// the order they were added, on every core). `peer` is NULL when unknown. Runs on the
    /// thread of the core that owns the connection.
    pub on_accept: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            conn: rf_conn,
            listener: u32,
            peer: *const rf_peer,
        ),
    >,
    /// Bytes arrived. `data` holds everything received and not yet consumed: consume
    /// whole requests (`rf_data_consume`, `rf_conn_send_data`, `rf_data_retain`) and leave
    /// the rest; it is offered again with the next bytes. `data` is valid only during this
    /// call. Required. Runs on the thread of the core that owns the connection.
    pub on_data: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            conn: rf_conn,
            data: *mut rf_data,
        ),
    >,
    /// The connection is gone; its id is stale from now on. `detail` is a short text
    /// (valid during the call). Runs on the thread of the core that owned the connection.
    pub on_close: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            conn: rf_conn,
            reason: rf_close_reason,
            detail: *const c_char,
        ),
    >,
    /// A timer set with `rf_core_timer` fired. Runs on the thread of the core that set it.
    pub on_timer: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            timer: rf_timer,
            token: u64,
        ),
    >,
    /// A message from `rf_core_post` (`from_core` is the sender's index) or
    /// `rf_engine_post` (`from_core` is -1). The receiver owns whatever `msg` points to.
    /// Runs on the thread of the core the message was sent to.
    pub on_message: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            from_core: i32,
            tag: u64,
            msg: *mut c_void,
        ),
    >,
    /// A message that was accepted by `rf_core_post` or `rf_engine_post` but never
    /// delivered (the engine stopped first, or `on_message` is NULL): free what `msg`
    /// points to here. Runs on whichever thread drops it (a core thread, or the thread in
    /// `rf_engine_wait` or `rf_engine_free`), with no core handle.
    pub on_message_dropped:
        Option<unsafe extern "C" fn(user_data: *mut c_void, tag: u64, msg: *mut c_void)>,
    /// Every record of core log `wal` below `durable_lsn` is durable (written, and synced
    /// under `RF_DURABILITY_SYNC`). Runs on the thread of the core that opened the log.
    pub on_wal_durable: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            wal: u32,
            durable_lsn: u64,
        ),
    >,
    /// Records `first_lsn` up to (not including) `end_lsn` of core log `wal` failed to
    /// become durable; their LSNs will be handed out again. `why` is valid during the
    /// call. Runs on the thread of the core that opened the log.
    pub on_wal_failed: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            core: *mut rf_core,
            wal: u32,
            first_lsn: u64,
            end_lsn: u64,
            why: *const c_char,
        ),
    >,
    /// The engine is stopping: listeners are closed, connections are being drained. Runs
    /// once on each core's thread.
    pub on_stop: Option<unsafe extern "C" fn(user_data: *mut c_void, core: *mut rf_core)>,
}

/// The callbacks and their `user_data`, as every core's handler holds them.
#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    pub h: rf_handler,
    pub user_data: *mut c_void,
}

// SAFETY: `rf_engine_start`'s contract makes the callbacks and `user_data` usable from
// every core thread at once (the header says so); Rust never dereferences `user_data`.
unsafe impl Send for Callbacks {}
// SAFETY: as above; the struct is only copied, never mutated, after start.
unsafe impl Sync for Callbacks {}

/// A message between cores: a tag and a pointer C owns. Dropped undelivered, it tells C
/// through `on_message_dropped` so the pointee can be freed.
pub(crate) struct Msg {
    pub tag: u64,
    pub ptr: *mut c_void,
    /// Armed while the message is in flight: `on_message_dropped` and `user_data`.
    dropped: Option<(
        unsafe extern "C" fn(*mut c_void, u64, *mut c_void),
        *mut c_void,
    )>,
}

// SAFETY: the pointers are opaque to Rust (never dereferenced here); handing them to
// another thread is what `rf_core_post`/`rf_engine_post` promise C, whose contract makes
// the pointee safe to use there.
unsafe impl Send for Msg {}

impl Msg {
    pub fn new(tag: u64, ptr: *mut c_void, cb: &Callbacks) -> Msg {
        Msg {
            tag,
            ptr,
            dropped: cb.h.on_message_dropped.map(|f| (f, cb.user_data)),
        }
    }

    /// Hands the message back to C without `on_message_dropped` (C keeps it).
    pub fn disarm(mut self) {
        self.dropped = None;
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        if let Some((f, ud)) = self.dropped.take() {
            // SAFETY: `f` is the application's on_message_dropped, which accepts any
            // undelivered message's tag and pointer from any thread (its contract).
            unsafe { f(ud, self.tag, self.ptr) };
        }
    }
}

/// Start-up and shutdown bookkeeping the engine handle waits on.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Cores whose configured listeners are open.
    listening: usize,
    /// The first listener that failed to open.
    failed: Option<String>,
    /// Cores whose handler is gone (the core finished, or died).
    finished: usize,
}

/// How start-up went, as [`Gate::wait_started`] sees it.
pub(crate) enum Started {
    Ok,
    Failed(String),
    Ended,
}

impl Gate {
    fn update(&self, f: impl FnOnce(&mut GateState)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut st);
        self.cv.notify_all();
    }

    /// Waits until every core listens, one failed to, or a core ended first.
    pub fn wait_started(&self, cores: usize) -> Started {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(why) = &st.failed {
                return Started::Failed(why.clone());
            }
            if st.finished > 0 {
                return Started::Ended;
            }
            if st.listening == cores {
                return Started::Ok;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until every core's handler is gone.
    pub fn wait_finished(&self, cores: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.finished < cores {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

thread_local! {
    /// Set on core threads: blocking engine calls from them would wait for themselves.
    static CORE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is a core thread of some engine.
pub(crate) fn on_core_thread() -> bool {
    CORE_THREAD.with(|c| c.get())
}

/// The engine handler behind the C callbacks: one per core.
pub(crate) struct FfiHandler {
    cb: Callbacks,
    core: CoreId,
    listeners: Arc<[SocketAddr]>,
    gate: Arc<Gate>,
}

impl FfiHandler {
    /// Built by the engine's factory, on the core's own thread.
    pub fn new(
        cb: Callbacks,
        core: CoreId,
        listeners: Arc<[SocketAddr]>,
        gate: Arc<Gate>,
    ) -> FfiHandler {
        CORE_THREAD.with(|c| c.set(true));
        FfiHandler {
            cb,
            core,
            listeners,
            gate,
        }
    }
}

impl Drop for FfiHandler {
    fn drop(&mut self) {
        self.gate.update(|st| st.finished += 1);
    }
}

fn peer_of(addr: SocketAddr) -> rf_peer {
    let mut p = rf_peer {
        port: addr.port(),
        ..rf_peer::default()
    };
    match addr {
        SocketAddr::V4(a) => {
            p.family = 4;
            p.addr[..4].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            p.family = 6;
            p.addr.copy_from_slice(&a.ip().octets());
        }
    }
    p
}

fn close_reason(r: &CloseReason) -> rf_close_reason {
    match r {
        CloseReason::PeerClosed => rf_close_reason::RF_CLOSE_PEER,
        CloseReason::Local => rf_close_reason::RF_CLOSE_LOCAL,
        CloseReason::Error(_) => rf_close_reason::RF_CLOSE_ERROR,
        CloseReason::RecvLimit => rf_close_reason::RF_CLOSE_RECV_LIMIT,
        CloseReason::Evicted(_) => rf_close_reason::RF_CLOSE_EVICTED,
        CloseReason::IdleTimeout => rf_close_reason::RF_CLOSE_IDLE,
        CloseReason::Shutdown => rf_close_reason::RF_CLOSE_SHUTDOWN,
    }
}

/// A C string for text handed to a callback (NUL bytes cannot occur in the engine's texts,
/// but are escaped rather than trusted).
fn c_text(s: String) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

impl Handler for FfiHandler {
    type Msg = Msg;

    fn on_start(&mut self, cx: &mut Ctx<'_, Msg>) {
        for addr in self.listeners.iter() {
            if let Err(e) = cx.listen(*addr) {
                let why = format!("core {}: listening on {addr}: {e}", self.core);
                self.gate.update(|st| {
                    st.failed.get_or_insert(why);
                });
                cx.stop_engine(Duration::ZERO);
                return;
            }
        }
        if let Some(f) = self.cb.h.on_start {
            let ud = self.cb.user_data;
            // SAFETY: the application's callback with its user_data, on a core thread,
            // with a core handle valid for the call (`with_core_handle`).
            crate::core::with_core_handle(cx, self.cb, |core| unsafe { f(ud, core) });
        }
        // Counted after on_start, so rf_engine_start returns once every core ran it.
        self.gate.update(|st| st.listening += 1);
    }

    fn on_open(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        conn: ConnId,
        listener: Option<ListenerId>,
        peer: Option<SocketAddr>,
    ) {
        let Some(f) = self.cb.h.on_accept else {
            return;
        };
        let ud = self.cb.user_data;
        let peer = peer.map(peer_of);
        let peer_ptr = peer
            .as_ref()
            .map_or(std::ptr::null(), |p| p as *const rf_peer);
        let listener = listener.map_or(u32::MAX, ListenerId::to_u32);
        // SAFETY: as in on_start; `peer_ptr` is NULL or points to `peer`, which outlives
        // the call.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe {
            f(ud, core, conn.to_u64(), listener, peer_ptr)
        });
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, data: &mut BufChain) {
        let Some(f) = self.cb.h.on_data else {
            return;
        };
        let ud = self.cb.user_data;
        crate::data::with_data_view(data, |view| {
            // SAFETY: as in on_start; `view` is valid for the call (`with_data_view`).
            crate::core::with_core_handle(cx, self.cb, |core| unsafe {
                f(ud, core, conn.to_u64(), view)
            });
        });
    }

    fn on_close(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, reason: CloseReason) {
        let Some(f) = self.cb.h.on_close else {
            return;
        };
        let ud = self.cb.user_data;
        let detail = c_text(reason.to_string());
        let r = close_reason(&reason);
        // SAFETY: as in on_start; `detail` outlives the call.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe {
            f(ud, core, conn.to_u64(), r, detail.as_ptr())
        });
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, Msg>, from: Option<CoreId>, msg: Msg) {
        let (tag, ptr) = (msg.tag, msg.ptr);
        let Some(f) = self.cb.h.on_message else {
            // No receiver: the message goes to on_message_dropped when `msg` drops.
            return;
        };
        msg.disarm();
        let ud = self.cb.user_data;
        let from = from.map_or(-1, |c| c as i32);
        // SAFETY: as in on_start; C owns `ptr` from here on.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe { f(ud, core, from, tag, ptr) });
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_, Msg>, timer: TimerId, token: u64) {
        let Some(f) = self.cb.h.on_timer else {
            return;
        };
        let ud = self.cb.user_data;
        // SAFETY: as in on_start.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe {
            f(ud, core, timer.to_u64(), token)
        });
    }

    fn on_wal_durable(&mut self, cx: &mut Ctx<'_, Msg>, wal: WalId, durable: Lsn) {
        let Some(f) = self.cb.h.on_wal_durable else {
            return;
        };
        let ud = self.cb.user_data;
        // SAFETY: as in on_start.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe {
            f(ud, core, wal.to_u32(), durable)
        });
    }

    fn on_wal_failed(&mut self, cx: &mut Ctx<'_, Msg>, wal: WalId, failure: Failure) {
        let Some(f) = self.cb.h.on_wal_failed else {
            return;
        };
        let ud = self.cb.user_data;
        let why = c_text(failure.error.to_string());
        let (first, end) = (failure.lsns.start, failure.lsns.end);
        // SAFETY: as in on_start; `why` outlives the call.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe {
            f(ud, core, wal.to_u32(), first, end, why.as_ptr())
        });
    }

    fn on_stop(&mut self, cx: &mut Ctx<'_, Msg>) {
        let Some(f) = self.cb.h.on_stop else {
            return;
        };
        let ud = self.cb.user_data;
        // SAFETY: as in on_start.
        crate::core::with_core_handle(cx, self.cb, |core| unsafe { f(ud, core) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_carry_family_port_and_bytes() {
        let p = peer_of("10.1.2.3:80".parse().unwrap());
        assert_eq!((p.family, p.port), (4, 80));
        assert_eq!(&p.addr[..4], &[10, 1, 2, 3]);
        let p = peer_of("[::1]:7".parse().unwrap());
        assert_eq!((p.family, p.port, p.addr[15]), (6, 7, 1));
    }
}
