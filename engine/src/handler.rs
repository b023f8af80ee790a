//! The completion-driven handler API. Rust code implements [`Handler`]; the C ABI maps a
//! struct of function pointers plus `void *user_data` onto the same calls one to one.
//!
//! Every callback runs on the core thread that owns the object it names, with a
//! [`Ctx`](crate::Ctx) for queueing more work. Callbacks must not block: they queue
//! operations and return, and the results come back as further callbacks.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use ringfort_pool::{BufChain, PoolBuf};

use crate::ctx::Ctx;

/// A core's index in the engine (0-based, in the order of [`crate::EngineConfig::cpus`]).
pub type CoreId = usize;

/// A connection: its core, its slot and a generation, so an id that outlives its
/// connection is recognized as stale rather than reaching a newer one. Packs into a u64
/// for the C ABI.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) core: u8,
    pub(crate) gen: u32,
    pub(crate) key: u32,
}

impl ConnId {
    /// The core that owns this connection; send work for it there.
    pub fn core(self) -> CoreId {
        self.core as usize
    }

    /// The id as one integer (core in the top 8 bits, then 24 bits of generation, then
    /// the 32-bit slot).
    pub fn to_u64(self) -> u64 {
        (self.core as u64) << 56 | ((self.gen & 0xff_ffff) as u64) << 32 | self.key as u64
    }

    /// The inverse of [`ConnId::to_u64`].
    pub fn from_u64(v: u64) -> ConnId {
        ConnId {
            core: (v >> 56) as u8,
            gen: ((v >> 32) & 0xff_ffff) as u32,
            key: v as u32,
        }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conn {}:{}#{}",
            self.core,
            self.key,
            self.gen & 0xff_ffff
        )
    }
}

/// A listener opened by [`Ctx::listen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u32);

impl ListenerId {
    /// The id as an integer (for the C ABI). A core numbers its listeners 0, 1, ... in the
    /// order it opens them.
    pub fn to_u32(self) -> u32 {
        self.0
    }

    /// The inverse of [`ListenerId::to_u32`]. An id that names no listener of the core
    /// it is used on is simply not found.
    pub fn from_u32(v: u32) -> ListenerId {
        ListenerId(v)
    }
}

/// A timer set by [`Ctx::timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(pub(crate) u64);

impl TimerId {
    /// The id as an integer (for the C ABI).
    pub fn to_u64(self) -> u64 {
        self.0
    }

    /// The inverse of [`TimerId::to_u64`]. An id that names no armed timer (a stale or
    /// made-up one) is harmless: [`Ctx::cancel_timer`] returns false for it.
    pub fn from_u64(v: u64) -> TimerId {
        TimerId(v)
    }
}

/// A file operation queued by one of the `Ctx::file_*` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) u64);

/// A write-ahead log opened by [`Ctx::wal_open`] on this core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalId(pub(crate) u32);

impl WalId {
    /// The id as an integer (for the C ABI).
    pub fn to_u32(self) -> u32 {
        self.0
    }

    /// The inverse of [`WalId::to_u32`]. An id that names no log of the core it is used
    /// on gets an error from the `Ctx::wal_*` calls, never another core's log.
    pub fn from_u32(v: u32) -> WalId {
        WalId(v)
    }
}

/// Why a connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (receive returned 0). A peer may only have shut down
    /// its sending side, so the connection stays open until every request it sent
    /// (begun with [`crate::Ctx::begin_request`]) is answered and the replies are sent,
    /// for at most a few seconds; then it closes with this reason.
    PeerClosed,
    /// The handler called [`Ctx::close`].
    Local,
    /// A socket error (reset, timeout, ...).
    Error(i32),
    /// The peer sent more unconsumed bytes than `limits.max_recv_bytes`.
    RecvLimit,
    /// The outbound queue crossed a limit (a subscriber or client that does not read);
    /// the text is the limit crossed.
    Evicted(String),
    /// Nothing was received for `idle_timeout`.
    IdleTimeout,
    /// The engine is stopping.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Error(e) => {
                write!(f, "socket error: {}", io::Error::from_raw_os_error(*e))
            }
            CloseReason::RecvLimit => f.write_str("receive limit reached"),
            CloseReason::Evicted(why) => write!(f, "evicted: {why}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Shutdown => f.write_str("engine shutdown"),
        }
    }
}

/// What a file operation produced.
#[derive(Debug)]
pub struct FileDone {
    /// Bytes read or written, a new file descriptor for opens, or the error.
    pub result: io::Result<u32>,
    /// The buffer the operation used, handed back.
    pub buf: Option<PoolBuf>,
    /// The token given when the operation was queued.
    pub token: u64,
}

/// One core's application logic. The engine creates one per core, on that core's thread,
/// from the factory given to [`crate::Engine::start`], so a handler needs no locks.
pub trait Handler: 'static {
    /// Messages other cores (or outside threads) send to this core.
    type Msg: Send + 'static;

    /// The core is up: open listeners, files, timers.
    fn on_start(&mut self, cx: &mut Ctx<'_, Self::Msg>) {
        let _ = cx;
    }

    /// A connection was accepted on `listener` (or an outbound connect completed, with
    /// `listener` `None`).
    fn on_open(
        &mut self,
        cx: &mut Ctx<'_, Self::Msg>,
        conn: ConnId,
        listener: Option<ListenerId>,
        peer: Option<SocketAddr>,
    ) {
        let _ = (cx, conn, listener, peer);
    }

    /// Bytes arrived. `data` holds everything received and not yet consumed: take what
    /// forms whole requests (`split_to`, `advance`) and leave the rest for next time.
    fn on_data(&mut self, cx: &mut Ctx<'_, Self::Msg>, conn: ConnId, data: &mut BufChain);

    /// The connection is gone; its id is stale from now on.
    fn on_close(&mut self, cx: &mut Ctx<'_, Self::Msg>, conn: ConnId, reason: CloseReason) {
        let _ = (cx, conn, reason);
    }

    /// An outbound connect failed.
    fn on_connect_failed(&mut self, cx: &mut Ctx<'_, Self::Msg>, token: u64, err: io::Error) {
        let _ = (cx, token, err);
    }

    /// A message from another core (`from`), or from outside the engine (`from` is
    /// `None`).
    fn on_message(&mut self, cx: &mut Ctx<'_, Self::Msg>, from: Option<CoreId>, msg: Self::Msg) {
        let _ = (cx, from, msg);
    }

    /// A timer fired.
    fn on_timer(&mut self, cx: &mut Ctx<'_, Self::Msg>, timer: TimerId, token: u64) {
        let _ = (cx, timer, token);
    }

    /// A file operation completed.
    fn on_file(&mut self, cx: &mut Ctx<'_, Self::Msg>, op: OpId, done: FileDone) {
        let _ = (cx, op, done);
    }

    /// Every record of `wal` below LSN `durable` is durable (written, and synced under
    /// `Durability::Sync`): acknowledge the appends below it.
    fn on_wal_durable(
        &mut self,
        cx: &mut Ctx<'_, Self::Msg>,
        wal: WalId,
        durable: ringfort_wal::Lsn,
    ) {
        let _ = (cx, wal, durable);
    }

    /// Records of `wal` failed to become durable (`failure.lsns`; a failed sync poisons
    /// the segment and the log moves to a new one). Their appenders must be told; the LSNs
    /// are handed out again.
    fn on_wal_failed(
        &mut self,
        cx: &mut Ctx<'_, Self::Msg>,
        wal: WalId,
        failure: ringfort_wal::Failure,
    ) {
        let _ = (cx, wal, failure);
    }

    /// Called once per loop iteration after completions were handled, before submitting.
    fn on_tick(&mut self, cx: &mut Ctx<'_, Self::Msg>) {
        let _ = cx;
    }

    /// The engine is stopping: listeners are closed; finish or abandon work.
    fn on_stop(&mut self, cx: &mut Ctx<'_, Self::Msg>) {
        let _ = cx;
    }
}
