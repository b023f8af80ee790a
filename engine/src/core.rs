//! One core: its io_uring, arena, connections and operations, and the loop that drives
//! them.
//!
//! Each loop iteration (a tick) flushes queued work into SQEs (sends gathered per
//! connection, buffer-ring refills, cross-core wake-ups), enters the kernel once to submit
//! and reap, dispatches every completion to the handler, drains inbound channels, and
//! fires due timers. The core sleeps in that one `io_uring_enter` only when nothing is
//! pending locally and every inbound channel has been parked (so a producer knows to wake
//! it with `IORING_OP_MSG_RING`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use ringfort_pool::{Arena, BufChain, PoolError, SharedBuf};
use slab::Slab;

use crate::bufring::BufRing;
use crate::channel::{Receiver, Sender};
use crate::config::EngineConfig;
use crate::ctx::Ctx;
use crate::engine::Shared;
use crate::error::EngineError;
use crate::handler::{CloseReason, ConnId, FileDone, Handler, ListenerId, OpId, TimerId, WalId};
use crate::metrics::CoreMetrics;
use crate::outbox::Outbox;
use crate::probe::Features;
use crate::reorder::ReorderWindow;
use crate::timers::{timespec, Timers};
use crate::wal_driver::{WalDriver, WalTag};

/// `user_data` of the CQEs other cores post into this ring with `IORING_OP_MSG_RING`.
pub(crate) const WAKE_TAG: u64 = u64::MAX;
/// iovecs per gathered send.
const IOV_PER_SEND: usize = 64;
/// `SEND_ZC` flag (Linux 6.2): the notification reports whether the data was copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// Set in a `SEND_ZC` notification's result when the kernel copied the data after all.
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// Receives up to this fraction of a ring buffer are copied into the connection's chain
/// and the buffer handed straight back; larger ones move the block itself.
const COPY_DIVISOR: usize = 4;
/// Full-buffer receives in a row before a connection moves to the large buffer group.
const GROW_AFTER: u8 = 4;
/// Small receives in a row before a connection on the large group moves back.
const SHRINK_AFTER: u8 = 32;
/// How long accept backs off after EMFILE/ENFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a graceful close waits for queued replies to drain.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// How long a stop waits for the kernel to return cancelled operations before it gives
/// up and leaks what is left (memory the kernel may still touch is never freed).
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Reading a connection is paused for these reasons (a bit each).
pub(crate) const PAUSE_HANDLER: u8 = 1;
pub(crate) const PAUSE_WINDOW: u8 = 2;
pub(crate) const PAUSE_OUTBOX: u8 = 4;

/// What each in-flight operation is; its slab key is the SQE's `user_data`.
pub(crate) enum Op {
    Accept {
        listener: u32,
    },
    Recv {
        conn: u32,
        gen: u32,
        large: bool,
    },
    Send {
        conn: u32,
        gen: u32,
        slot: u32,
    },
    SendZc {
        conn: u32,
        gen: u32,
        /// Held until the kernel's notification says it no longer reads the block.
        _buf: SharedBuf,
        /// Bytes of the block this send pinned (counted against the connection's bound
        /// until the notification).
        len: u32,
    },
    Connect {
        conn: u32,
        gen: u32,
        token: u64,
        _addr: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    },
    File {
        token: u64,
        buf: Option<ringfort_pool::PoolBuf>,
        _path: Option<std::ffi::CString>,
    },
    Wal {
        wal: u32,
        tag: WalTag,
    },
    Cancel,
    Wake,
    EventFd,
}

/// A write-ahead log of this core and the durable LSN last reported to the handler.
pub(crate) struct WalSlot {
    pub driver: WalDriver,
    reported: ringfort_wal::Lsn,
}

impl WalSlot {
    pub fn new(driver: WalDriver) -> WalSlot {
        let reported = driver.durable_lsn();
        WalSlot { driver, reported }
    }
}

/// A log's durable LSN moved.
pub(crate) struct WalEvent(ringfort_wal::Lsn);

/// Timer payloads: the handler's, and the core's own.
#[derive(Clone, Copy)]
pub(crate) enum Tick {
    User(u64),
    IdleSweep,
    AcceptRetry(u32),
    CloseDeadline(u32, u32),
}

/// Memory a gathered send points the kernel at; lives in a fixed-capacity slab, so its
/// address is stable while the send is in flight.
pub(crate) struct SendCtx {
    msg: libc::msghdr,
    iov: [libc::iovec; IOV_PER_SEND],
}

pub(crate) struct Listener {
    fd: OwnedFd,
    op: Option<u32>,
}

pub(crate) struct Conn {
    pub fd: RawFd,
    pub gen: u32,
    pub recv: BufChain,
    pub outbox: Option<Outbox>,
    pub window: Option<ReorderWindow<BufChain>>,
    recv_op: Option<u32>,
    cancel_sent: bool,
    send_in_flight: bool,
    /// The in-flight send's op, so a hard close can cancel it (a send to a peer that
    /// never reads would otherwise wait forever).
    send_op: Option<u32>,
    /// Bytes held by zero-copy sends whose notification has not come: the kernel still
    /// reads them (on loopback, until the peer reads), so they count toward the pause.
    zc_pinned: usize,
    /// The kernel reported that a zero-copy send to this peer was copied after all (a
    /// local destination): later replies are sent by copy, which is cheaper then.
    zc_copied: bool,
    dirty: bool,
    redeliver: bool,
    large: bool,
    streak: u8,
    pub paused: u8,
    closing: Option<CloseReason>,
    flush_on_close: bool,
    /// Ticks of `IDLE_UNIT` since the core started, at the last receive.
    last_active: u32,
    /// When the peer shut down its sending side (ticks of `IDLE_UNIT`): reading has
    /// stopped, and the connection closes once the requests it sent are answered.
    eof_at: Option<u32>,
}

const IDLE_UNIT: Duration = Duration::from_millis(100);

/// Everything a core owns except its handler and inbound channels; what [`Ctx`] exposes.
pub(crate) struct Io<M> {
    pub core: usize,
    pub ncores: usize,
    pub ring: IoUring,
    pub arena: Arena,
    pub features: Features,
    pub cfg: Arc<EngineConfig>,
    pub ops: Slab<Op>,
    pub conns: Slab<Conn>,
    conn_gen: u32,
    pub listeners: Slab<Listener>,
    sends: Slab<SendCtx>,
    dirty: Vec<u32>,
    redeliver: Vec<u32>,
    starved: Vec<u32>,
    /// Connections whose peer shut down its sending side and that still owe replies.
    half_closed: Vec<u32>,
    pub closed: Vec<(ConnId, CloseReason)>,
    pub connect_failed: Vec<(u64, std::io::Error)>,
    pub opened: Vec<(ConnId, Option<ListenerId>)>,
    small: BufRing,
    large: BufRing,
    pub timers: Timers<Tick>,
    pub wals: Slab<WalSlot>,
    wal_events: Vec<(u32, WalEvent)>,
    pub senders: Vec<Option<Sender<M>>>,
    pushed: Vec<bool>,
    pub shared: Arc<Shared<M>>,
    pub metrics: CoreMetrics,
    registered_chunks: usize,
    /// Whether the arena is registered with the ring (fixed-buffer ops allowed).
    pub registered: bool,
    cqes: Vec<(u64, i32, u32)>,
    /// Completions the last tick reaped (the batch a busy core waits for next).
    last_reaped: u32,
    /// `EngineConfig::batch_wait` in microseconds; zero when off or unsupported.
    batch_us: u32,
    pub epoch: Instant,
    pub now: Instant,
    /// Owned by `shared`, which outlives this core.
    eventfd: RawFd,
    efd_buf: Box<u64>,
    stopping: Option<Instant>,
    forced: bool,
}

impl<M: Send + 'static> Io<M> {
    /// Sets up the ring, registration and buffer rings on the calling (core) thread.
    pub fn new(
        core: usize,
        cfg: Arc<EngineConfig>,
        features: Features,
        shared: Arc<Shared<M>>,
        senders: Vec<Option<Sender<M>>>,
    ) -> Result<Io<M>, EngineError> {
        let arena = Arena::new(cfg.pool.clone())?;
        let mut b = IoUring::builder();
        b.setup_cqsize(cfg.ring_entries * 2);
        features.apply_setup(&mut b);
        let ring = b
            .build(cfg.ring_entries)
            .map_err(|e| EngineError::io(format!("core {core}: io_uring_setup"), e))?;
        if let Err(e) = ring.submitter().register_ring_fd() {
            tracing::debug!("core {core}: register_ring_fd unavailable ({e}); using the plain fd");
        }
        let registered = arena.report().registration.registrable;
        if registered {
            ring.submitter()
                .register_buffers_sparse(arena.max_iovecs() as u32)
                .map_err(|e| {
                    EngineError::io(
                        format!(
                            "core {core}: registering a sparse buffer table of {} entries",
                            arena.max_iovecs()
                        ),
                        e,
                    )
                })?;
        }
        let small = BufRing::new(&ring, &arena, 0, cfg.recv.small_count, cfg.recv.small_size)?;
        let large = BufRing::new(&ring, &arena, 1, cfg.recv.large_count, cfg.recv.large_size)?;
        let eventfd = shared.eventfd(core);
        let l = &cfg.limits;
        let now = Instant::now();
        let batch_us = if features.min_timeout {
            u32::try_from(cfg.batch_wait.as_micros()).unwrap_or(u32::MAX)
        } else {
            0
        };
        let mut io = Io {
            core,
            ncores: senders.len(),
            arena,
            features,
            ops: Slab::with_capacity(l.max_conns + l.max_sends_in_flight + 1024),
            conns: Slab::with_capacity(l.max_conns),
            conn_gen: 0,
            listeners: Slab::new(),
            sends: Slab::with_capacity(l.max_sends_in_flight),
            dirty: Vec::with_capacity(l.max_conns),
            redeliver: Vec::with_capacity(l.max_conns),
            starved: Vec::with_capacity(l.max_conns),
            half_closed: Vec::with_capacity(l.max_conns),
            closed: Vec::with_capacity(1024),
            connect_failed: Vec::new(),
            opened: Vec::with_capacity(1024),
            small,
            large,
            timers: Timers::new(l.max_timers + 16),
            last_reaped: 0,
            batch_us,
            wals: Slab::new(),
            wal_events: Vec::new(),
            pushed: vec![false; senders.len()],
            senders,
            shared,
            metrics: CoreMetrics::default(),
            registered_chunks: 0,
            registered,
            cqes: Vec::with_capacity(cfg.ring_entries as usize * 2),
            epoch: now,
            now,
            eventfd,
            efd_buf: Box::new(0),
            stopping: None,
            forced: false,
            ring,
            cfg,
        };
        io.sync_registration()?;
        io.arm_eventfd();
        if let Some(idle) = io.cfg.idle_timeout {
            let every = (idle / 4).clamp(IDLE_UNIT, Duration::from_secs(1));
            io.timers.add(now + every, Tick::IdleSweep);
        }
        Ok(io)
    }

    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Registers the iovecs of chunks the arena mapped since the last call.
    fn sync_registration(&mut self) -> Result<(), EngineError> {
        let chunks = self.arena.chunk_count();
        if !self.registered || chunks == self.registered_chunks {
            return Ok(());
        }
        let per = self.arena.iovecs_per_chunk();
        let iovecs = self.arena.iovecs();
        let new = &iovecs[self.registered_chunks * per..];
        // SAFETY: the iovecs describe arena chunks, which stay mapped until the arena
        // drops, and the arena outlives the ring (the core drops the ring first).
        unsafe {
            self.ring.submitter().register_buffers_update(
                (self.registered_chunks * per) as u32,
                new,
                None,
            )
        }
        .map_err(|e| EngineError::io("registering arena buffers with io_uring", e))?;
        self.registered_chunks = chunks;
        Ok(())
    }

    /// Queues an SQE, flushing the submission queue first when it is full.
    ///
    /// # Safety
    /// Every buffer and struct the entry points at must stay valid until its completion
    /// (the callers keep them in the op, the conn, or fixed-capacity slabs).
    unsafe fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: the caller's promise covers the entry's memory.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                self.metrics.sqes += 1;
                return;
            }
            self.enter(false, None);
        }
    }

    fn new_op(&mut self, op: Op) -> u64 {
        self.ops.insert(op) as u64
    }

    /// One `io_uring_enter`: submit what is queued, run deferred completions, and wait for
    /// at least one completion (up to `timeout`) when `wait`; a busy core waits for a batch
    /// (see [`batch_want`]).
    fn enter(&mut self, wait: bool, timeout: Option<Duration>) {
        const GETEVENTS: u32 = 1;
        const EXT_ARG: u32 = 8;
        let to_submit = self.ring.submission().len() as u32;
        self.metrics.enters += 1;
        let want = batch_want(wait, self.last_reaped, self.batch_us);
        let res = if want > 1 || (wait && timeout.is_some()) {
            let ts = timeout.map(timespec);
            let mut args = types::SubmitArgs::new();
            if want > 1 {
                args = args.min_wait_usec(self.batch_us);
            }
            let args = match &ts {
                Some(ts) => args.timespec(ts),
                None => args,
            };
            // SAFETY: `args` (and the timespec it may point at) is a valid getevents
            // argument for EXT_ARG, live for the call.
            unsafe {
                self.ring
                    .submitter()
                    .enter(to_submit, want, GETEVENTS | EXT_ARG, Some(&args))
            }
        } else {
            // SAFETY: no argument is passed; the flags ask only to submit and reap.
            unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    to_submit,
                    wait as u32,
                    GETEVENTS,
                    None,
                )
            }
        };
        if let Err(e) = res {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => tracing::error!("core {}: io_uring_enter: {e}", self.core),
            }
        }
    }

    fn arm_eventfd(&mut self) {
        let key = self.new_op(Op::EventFd);
        let e = opcode::Read::new(
            types::Fd(self.eventfd),
            (&mut *self.efd_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(key);
        // SAFETY: `efd_buf` is boxed and lives as long as `self`; the fd is ours.
        unsafe { self.push(e) };
    }

    pub fn conn_id(&self, key: u32, gen: u32) -> ConnId {
        ConnId {
            core: self.core as u8,
            gen,
            key,
        }
    }

    /// The live connection `id` names, if it is on this core and not stale.
    pub fn conn_key(&self, id: ConnId) -> Option<u32> {
        if id.core as usize != self.core {
            return None;
        }
        match self.conns.get(id.key as usize) {
            Some(c) if c.gen & 0xff_ffff == id.gen & 0xff_ffff && c.closing.is_none() => {
                Some(id.key)
            }
            _ => None,
        }
    }

    // ---- listeners and connections ----

    pub fn listen(&mut self, addr: std::net::SocketAddr) -> Result<ListenerId, EngineError> {
        if self.stopping.is_some() {
            return Err(EngineError::Stopping);
        }
        let fd = crate::net::listener(addr, &self.cfg.net)
            .map_err(|e| EngineError::io(format!("listening on {addr}"), e))?;
        let key = self.listeners.insert(Listener { fd, op: None }) as u32;
        self.arm_accept(key);
        Ok(ListenerId(key))
    }

    pub fn listener_addr(&self, id: ListenerId) -> Option<std::net::SocketAddr> {
        let l = self.listeners.get(id.0 as usize)?;
        crate::net::local_addr(l.fd.as_raw_fd()).ok()
    }

    fn arm_accept(&mut self, listener: u32) {
        let fd = self.listeners[listener as usize].fd.as_raw_fd();
        let key = self.new_op(Op::Accept { listener });
        self.listeners[listener as usize].op = Some(key as u32);
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(key);
        // SAFETY: multishot accept without address buffers references no memory.
        unsafe { self.push(e) };
    }

    fn add_conn(&mut self, fd: RawFd) -> Option<u32> {
        if self.conns.len() >= self.cfg.limits.max_conns {
            self.metrics.accept_refused += 1;
            // SAFETY: `fd` was just accepted and nothing else owns it.
            unsafe { libc::close(fd) };
            return None;
        }
        self.conn_gen = self.conn_gen.wrapping_add(1);
        let last_active = self.idle_ticks();
        let key = self.conns.insert(Conn {
            fd,
            gen: self.conn_gen,
            recv: BufChain::new(self.cfg.limits.max_recv_bytes),
            outbox: None,
            window: None,
            recv_op: None,
            cancel_sent: false,
            send_in_flight: false,
            send_op: None,
            zc_pinned: 0,
            zc_copied: false,
            dirty: false,
            redeliver: false,
            large: false,
            streak: 0,
            paused: 0,
            closing: None,
            flush_on_close: false,
            last_active,
            eof_at: None,
        }) as u32;
        self.metrics.conns = self.conns.len() as u64;
        Some(key)
    }

    fn idle_ticks(&self) -> u32 {
        (self.now.duration_since(self.epoch).as_millis() / IDLE_UNIT.as_millis()) as u32
    }

    fn arm_recv(&mut self, key: u32) {
        let c = &self.conns[key as usize];
        if c.recv_op.is_some() || c.closing.is_some() || c.paused != 0 || c.eof_at.is_some() {
            return;
        }
        let (fd, gen, large) = (c.fd, c.gen, c.large);
        let bgid = if large {
            self.large.bgid
        } else {
            self.small.bgid
        };
        let op = self.new_op(Op::Recv {
            conn: key,
            gen,
            large,
        });
        let c = &mut self.conns[key as usize];
        c.recv_op = Some(op as u32);
        c.cancel_sent = false;
        let e = opcode::RecvMulti::new(types::Fd(fd), bgid)
            .build()
            .user_data(op);
        // SAFETY: buffers come from the registered buffer ring, which outlives the ring's
        // use of it; the SQE references no other memory.
        unsafe { self.push(e) };
    }

    fn cancel_op(&mut self, target: u64) {
        let key = self.new_op(Op::Cancel);
        let e = opcode::AsyncCancel::new(target).build().user_data(key);
        // SAFETY: a cancel references no memory.
        unsafe { self.push(e) };
    }

    /// Stops reading `key` for `why` (a PAUSE_* bit).
    pub fn pause(&mut self, key: u32, why: u8) {
        let c = &mut self.conns[key as usize];
        if c.paused & why != 0 {
            return;
        }
        c.paused |= why;
        self.metrics.read_pauses += 1;
        if let (Some(op), false) = (c.recv_op, c.cancel_sent) {
            c.cancel_sent = true;
            self.cancel_op(op as u64);
        }
    }

    /// Clears pause reason `why`; re-arms the receive and redelivers buffered bytes once
    /// no reason is left.
    pub fn resume(&mut self, key: u32, why: u8) {
        let c = &mut self.conns[key as usize];
        if c.paused & why == 0 {
            return;
        }
        c.paused &= !why;
        if c.paused == 0 && c.closing.is_none() {
            if !c.recv.is_empty() && !c.redeliver {
                c.redeliver = true;
                self.redeliver.push(key);
            }
            if c.eof_at.is_none() {
                self.metrics.recv_rearms += 1;
                self.arm_recv(key);
            }
        }
    }

    /// Starts closing `key`: reading stops at once; with `flush`, queued replies are sent
    /// first (for at most `CLOSE_LINGER`).
    pub fn close(&mut self, key: u32, reason: CloseReason, flush: bool) {
        let Some(c) = self.conns.get_mut(key as usize) else {
            return;
        };
        if c.closing.is_some() {
            if !flush && c.flush_on_close {
                c.flush_on_close = false;
                if let Some(op) = c.send_op {
                    self.cancel_op(op as u64);
                }
                self.try_finish(key);
            }
            return;
        }
        if matches!(reason, CloseReason::Evicted(_)) {
            self.metrics.evictions += 1;
        }
        if reason == CloseReason::IdleTimeout {
            self.metrics.idle_closes += 1;
        }
        c.closing = Some(reason);
        c.flush_on_close = flush;
        let gen = c.gen;
        if let Some(w) = c.window.as_mut() {
            w.cancel_all();
        }
        let send_op = if flush { None } else { c.send_op };
        if let (Some(op), false) = (c.recv_op, c.cancel_sent) {
            c.cancel_sent = true;
            self.cancel_op(op as u64);
        }
        if let Some(op) = send_op {
            self.cancel_op(op as u64);
        }
        if flush {
            self.timers
                .add(self.now + CLOSE_LINGER, Tick::CloseDeadline(key, gen));
        }
        self.try_finish(key);
    }

    /// Closes the socket and forgets `key` once nothing of it is in flight.
    fn try_finish(&mut self, key: u32) {
        let c = &self.conns[key as usize];
        let Some(reason) = c.closing.clone() else {
            return;
        };
        let unsent = c.outbox.as_ref().is_some_and(|o| !o.is_empty());
        if c.recv_op.is_some() || c.send_in_flight || (c.flush_on_close && unsent) {
            if c.flush_on_close && unsent && !c.send_in_flight {
                self.mark_dirty(key);
            }
            return;
        }
        let c = self.conns.remove(key as usize);
        // SAFETY: the connection owns `fd`, and no operation on it is in flight.
        unsafe { libc::close(c.fd) };
        self.metrics.closes += 1;
        self.metrics.conns = self.conns.len() as u64;
        self.closed.push((self.conn_id(key, c.gen), reason));
    }

    /// Closes a half-closed connection once it owes nothing: no request in flight, no
    /// input waiting to be handled (the rest of its input is an unfinished request that
    /// can never complete). Its queued replies are flushed first. After `CLOSE_LINGER` it
    /// closes anyway. Returns whether it is closing (or gone).
    fn finish_half_closed(&mut self, key: u32) -> bool {
        let now_ticks = self.idle_ticks();
        let Some(c) = self.conns.get(key as usize) else {
            return true;
        };
        let Some(eof_at) = c.eof_at else {
            return true;
        };
        if c.closing.is_some() {
            return true;
        }
        let owed = c.window.as_ref().is_some_and(|w| w.in_flight() > 0);
        let lingered = now_ticks.saturating_sub(eof_at)
            >= (CLOSE_LINGER.as_millis() / IDLE_UNIT.as_millis()) as u32;
        if lingered {
            self.close(key, CloseReason::PeerClosed, false);
        } else if !owed && c.paused == 0 && !c.redeliver {
            let unsent = c.outbox.as_ref().is_some_and(|o| !o.is_empty()) || c.send_in_flight;
            self.close(key, CloseReason::PeerClosed, unsent);
        } else {
            return false;
        }
        true
    }

    /// Once per tick: closes the half-closed connections that owe nothing any more.
    pub fn sweep_half_closed(&mut self) {
        let mut i = 0;
        while i < self.half_closed.len() {
            let key = self.half_closed[i];
            if self.finish_half_closed(key) {
                self.half_closed.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn mark_dirty(&mut self, key: u32) {
        let c = &mut self.conns[key as usize];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Queues `data` on `key`'s outbound queue; evicts the connection at its limits.
    pub fn queue_send(&mut self, key: u32, data: BufChain) {
        let now = self.now;
        let limits = self.cfg.limits.outbox;
        let pause_at = self.cfg.limits.pause_outbox_bytes;
        let c = &mut self.conns[key as usize];
        if data.is_empty() {
            return;
        }
        let outbox = c
            .outbox
            .get_or_insert_with(|| Outbox::new(limits).expect("limits validated at start"));
        match outbox.push(data, now) {
            Ok(()) => {
                let over = outbox.queued_bytes() + c.zc_pinned > pause_at;
                self.mark_dirty(key);
                if over {
                    self.pause(key, PAUSE_OUTBOX);
                }
            }
            Err(evict) => {
                let why = evict.to_string();
                tracing::info!("core {}: evicting conn {key}: {why}", self.core);
                self.close(key, CloseReason::Evicted(why), false);
            }
        }
    }

    /// Releases ready replies of `key`'s reorder window, in order, into its outbox.
    pub fn release_replies(&mut self, key: u32) {
        loop {
            let Some(c) = self.conns.get_mut(key as usize) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            let Some(reply) = c.window.as_mut().and_then(|w| w.pop_ready()) else {
                break;
            };
            self.queue_send(key, reply);
        }
        let c = &self.conns[key as usize];
        if c.paused & PAUSE_WINDOW != 0 && c.window.as_ref().is_some_and(|w| !w.is_full()) {
            self.resume(key, PAUSE_WINDOW);
        }
    }

    // ---- per-tick flush ----

    fn flush_sends(&mut self) {
        let mut i = 0;
        while i < self.dirty.len() {
            let key = self.dirty[i];
            i += 1;
            let Some(c) = self.conns.get_mut(key as usize) else {
                continue;
            };
            c.dirty = false;
            if c.send_in_flight {
                continue;
            }
            if c.closing.is_some() && !c.flush_on_close {
                continue;
            }
            let Some(outbox) = c.outbox.as_ref() else {
                continue;
            };
            if outbox.is_empty() {
                continue;
            }
            let (fd, gen) = (c.fd, c.gen);
            let zc = self.zc_candidate(key);
            if let Some((buf, range)) = zc {
                // A block from another core's arena (a reply built there) is not in
                // this ring's registration: it goes zero-copy without a fixed index.
                let index = buf.is_from(&self.arena).then(|| buf.reg_slot().index);
                // SAFETY: `range` lies inside the block.
                let ptr = unsafe { buf.as_ptr().add(range.start) };
                let len = range.len();
                self.conns[key as usize].zc_pinned += len;
                let op = self.new_op(Op::SendZc {
                    conn: key,
                    gen,
                    _buf: buf,
                    len: len as u32,
                });
                let zc_flags = if self.features.zc_report_usage {
                    IORING_SEND_ZC_REPORT_USAGE
                } else {
                    0
                };
                let e = opcode::SendZc::new(types::Fd(fd), ptr, range.len() as u32)
                    .buf_index(index)
                    .flags(libc::MSG_NOSIGNAL)
                    .zc_flags(zc_flags)
                    .build()
                    .user_data(op);
                // SAFETY: the block is held by the op until the kernel's notification CQE,
                // and a fixed index is given only for a block of this ring's arena.
                unsafe { self.push(e) };
                self.metrics.sends_zc += 1;
                self.conns[key as usize].send_op = Some(op as u32);
            } else {
                if self.sends.len() >= self.cfg.limits.max_sends_in_flight {
                    // At the bound: try again next tick.
                    self.conns[key as usize].dirty = true;
                    self.dirty.push(key);
                    break;
                }
                let slot = self.sends.insert(SendCtx {
                    // SAFETY: msghdr is plain old data; zeroes are a valid value.
                    msg: unsafe { std::mem::zeroed() },
                    iov: [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; IOV_PER_SEND],
                });
                let ctx = &mut self.sends[slot];
                let outbox = self.conns[key as usize].outbox.as_ref().expect("checked");
                let n = outbox.fill_iovecs(&mut ctx.iov);
                ctx.msg.msg_iov = ctx.iov.as_mut_ptr();
                ctx.msg.msg_iovlen = n;
                let msg_ptr: *const libc::msghdr = &ctx.msg;
                let op = self.new_op(Op::Send {
                    conn: key,
                    gen,
                    slot: slot as u32,
                });
                let e = opcode::SendMsg::new(types::Fd(fd), msg_ptr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
                    .user_data(op);
                // SAFETY: the msghdr and iovecs live in the fixed-capacity `sends` slab
                // (never reallocated) until this op completes; the iovecs point into
                // chains held by the connection's outbox, which keeps them until the
                // completion consumes them.
                unsafe { self.push(e) };
                self.metrics.sends_copy += 1;
                self.conns[key as usize].send_op = Some(op as u32);
            }
            self.conns[key as usize].send_in_flight = true;
        }
        self.dirty.drain(..i);
    }

    /// The first segment of `key`'s outbox when it is large enough and registered for a
    /// zero-copy send.
    fn zc_candidate(&self, key: u32) -> Option<(SharedBuf, std::ops::Range<usize>)> {
        if !self.features.send_zc || !self.registered {
            return None;
        }
        let conn = &self.conns[key as usize];
        if conn.zc_copied {
            return None;
        }
        let front = conn.outbox.as_ref()?.front()?;
        let (buf, range) = front.segments().next()?;
        (range.len() >= self.cfg.send_zc_threshold).then(|| (buf.clone(), range))
    }

    /// One group commit per log: seals what was appended and queues linked writes plus
    /// one fdatasync, within the room the submission queue has.
    fn flush_wals(&mut self) {
        let fixed = self.registered;
        for (id, slot) in self.wals.iter_mut() {
            let room = {
                let sq = self.ring.submission();
                sq.capacity() - sq.len()
            };
            let (ops, ring, metrics) = (&mut self.ops, &mut self.ring, &mut self.metrics);
            slot.driver.flush(&self.arena, fixed, room, &mut |e, tag| {
                let key = ops.insert(Op::Wal {
                    wal: id as u32,
                    tag,
                });
                // SAFETY: the driver keeps every buffer and descriptor the entry names
                // until `complete` gets its tag (its `flush` contract); it emits no more
                // entries than `room`, so none is dropped and the chain stays consecutive.
                let pushed = unsafe { ring.submission().push(&e.user_data(key as u64)) };
                debug_assert!(pushed.is_ok(), "the WAL driver exceeded its room");
                metrics.sqes += 1;
            });
        }
    }

    /// Queues a durable-LSN event for each log whose durable LSN moved.
    fn note_wal_progress(&mut self) {
        for (id, slot) in self.wals.iter_mut() {
            let d = slot.driver.durable_lsn();
            if d > slot.reported {
                slot.reported = d;
                self.wal_events.push((id as u32, WalEvent(d)));
            }
        }
    }

    fn refill_rings(&mut self) {
        if self.small.starved() {
            self.small.refill(&self.arena);
        }
        if self.large.starved() {
            self.large.refill(&self.arena);
        }
        self.small.publish();
        self.large.publish();
        if !self.starved.is_empty() && !self.small.starved() {
            let starved = std::mem::take(&mut self.starved);
            for &key in &starved {
                if self.conns.contains(key as usize) {
                    self.metrics.recv_rearms += 1;
                    self.arm_recv(key);
                }
            }
            self.starved = starved;
            self.starved.clear();
        }
    }

    fn send_wakes(&mut self) {
        for target in 0..self.pushed.len() {
            if !std::mem::take(&mut self.pushed[target]) {
                continue;
            }
            let needs = self.senders[target]
                .as_ref()
                .is_some_and(|s| s.needs_wake());
            if !needs {
                continue;
            }
            let fd = self.shared.ring_fds[target].load(Ordering::Acquire);
            if fd < 0 {
                // That core has closed its ring: it reads no more messages.
                continue;
            }
            let op = self.new_op(Op::Wake);
            let e = opcode::MsgRingData::new(types::Fd(fd), 0, WAKE_TAG, None)
                .build()
                .user_data(op);
            // SAFETY: MSG_RING carries only integers. A core clears its ring fd before it
            // closes the ring, so a closed ring is not targeted from then on; an SQE
            // queued just before that (submitted at the next enter) can still reach the
            // old number, which then fails with EBADFD or, if another ring took the
            // number, posts a WAKE_TAG completion there that carries nothing.
            unsafe { self.push(e) };
            self.metrics.wakes_sent += 1;
        }
    }

    /// Sends `msg` to core `target` through its channel.
    pub fn submit_to(&mut self, target: usize, msg: M) -> Result<(), crate::channel::Full<M>> {
        let Some(tx) = self.senders.get_mut(target).and_then(Option::as_mut) else {
            return Err(crate::channel::Full::new(msg));
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.metrics.messages_out += 1;
                self.pushed[target] = true;
                Ok(())
            }
            Err(full) => {
                self.metrics.channel_full += 1;
                Err(full)
            }
        }
    }

    /// Files: queues an op that hands `buf` back on completion.
    pub fn file_op(&mut self, e: squeue::Entry, op: Op) -> OpId {
        let key = self.new_op(op);
        // SAFETY: the file ops built by `Ctx` reference only the buffer and path held in
        // `op`, which stays in the slab until the completion.
        unsafe { self.push(e.user_data(key)) };
        OpId(key)
    }

    pub fn connect(&mut self, addr: std::net::SocketAddr, token: u64) -> Result<(), EngineError> {
        if self.stopping.is_some() {
            return Err(EngineError::Stopping);
        }
        let sock = crate::net::outbound(&addr, &self.cfg.net)
            .map_err(|e| EngineError::io(format!("socket for {addr}"), e))?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(sock);
        let Some(key) = self.add_conn(fd) else {
            return Err(EngineError::Limit("limits.max_conns"));
        };
        let gen = self.conns[key as usize].gen;
        let sa = Box::new(crate::net::to_sockaddr(addr));
        let ptr: *const libc::sockaddr = (&sa.0 as *const libc::sockaddr_storage).cast();
        let len = sa.1;
        let op = self.new_op(Op::Connect {
            conn: key,
            gen,
            token,
            _addr: sa,
        });
        let e = opcode::Connect::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(op);
        // SAFETY: the boxed sockaddr stays in the op until the completion.
        unsafe { self.push(e) };
        Ok(())
    }

    pub fn stopping(&self) -> bool {
        self.stopping.is_some()
    }
}

/// A core: the handler, its `Io`, and its inbound channels.
pub(crate) struct Core<H: Handler> {
    pub io: Io<H::Msg>,
    pub handler: H,
    pub inbound: Vec<(usize, Receiver<H::Msg>)>,
}

/// Completions to wait for: one when `wait`, none otherwise; with batching on (a nonzero
/// `batch_us`), as many as the last tick reaped when that was two or more (a busy core), at
/// most [`MAX_BATCH`]. The kernel returns with fewer once `batch_us` has passed.
fn batch_want(wait: bool, last_reaped: u32, batch_us: u32) -> u32 {
    if !wait {
        0
    } else if batch_us > 0 && last_reaped >= 2 {
        last_reaped.min(MAX_BATCH)
    } else {
        1
    }
}

/// The largest completion batch a core waits for.
const MAX_BATCH: u32 = 64;

impl<H: Handler> Core<H> {
    fn ctx(&mut self) -> (&mut H, Ctx<'_, H::Msg>) {
        (&mut self.handler, Ctx { io: &mut self.io })
    }

    /// Runs until the engine stops and every operation has come back from the kernel.
    pub fn run(mut self) {
        {
            let (h, mut cx) = self.ctx();
            h.on_start(&mut cx);
        }
        self.deliver_events();
        loop {
            self.io.now = Instant::now();
            self.check_stop();
            if self.io.stopping.is_some() && self.drained() {
                break;
            }
            self.flush();
            let sleep = self.can_sleep();
            let timeout = self.sleep_timeout();
            self.io.enter(sleep, timeout);
            for (_, rx) in &self.inbound {
                rx.unpark();
            }
            self.io.now = Instant::now();
            self.io.metrics.ticks += 1;
            self.reap();
            self.drain_inbound();
            self.fire_timers();
            self.redeliver();
            self.io.sweep_half_closed();
            {
                let (h, mut cx) = self.ctx();
                h.on_tick(&mut cx);
            }
            self.deliver_events();
            self.publish_metrics();
        }
        self.teardown();
    }

    fn flush(&mut self) {
        if let Err(e) = self.io.sync_registration() {
            tracing::error!("core {}: {e}", self.io.core);
        }
        self.io.flush_sends();
        self.io.flush_wals();
        self.deliver_wal_failures();
        self.io.refill_rings();
        self.io.send_wakes();
        self.io.metrics.ops_in_flight = self.io.ops.len() as u64;
        self.io.metrics.timers = self.io.timers.len() as u64;
    }

    fn can_sleep(&mut self) -> bool {
        if !self.io.dirty.is_empty() || !self.io.redeliver.is_empty() {
            return false;
        }
        if self.io.stopping.is_some() && self.io.ops.is_empty() {
            return false;
        }
        if !self.io.shared.external_is_empty(self.io.core) {
            return false;
        }
        let mut sleep = true;
        for (_, rx) in &self.inbound {
            if !rx.park() {
                sleep = false;
            }
        }
        sleep
    }

    fn sleep_timeout(&mut self) -> Option<Duration> {
        let mut next = self.io.timers.next_deadline();
        if let Some(deadline) = self.io.stopping {
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
        next.map(|t| t.saturating_duration_since(self.io.now))
    }

    fn reap(&mut self) {
        let io = &mut self.io;
        io.cqes.clear();
        let cap = io.cqes.capacity();
        for cqe in io.ring.completion() {
            io.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
            if io.cqes.len() == cap {
                break;
            }
        }
        let n = io.cqes.len() as u64;
        io.last_reaped = n as u32;
        io.metrics.completions += n;
        io.metrics.max_completions_per_tick = io.metrics.max_completions_per_tick.max(n);
        for i in 0..self.io.cqes.len() {
            let (user_data, res, flags) = self.io.cqes[i];
            self.dispatch(user_data, res, flags);
        }
    }

    fn dispatch(&mut self, user_data: u64, res: i32, flags: u32) {
        if user_data == WAKE_TAG {
            return;
        }
        let key = user_data as usize;
        let more = cqueue::more(flags);
        let Some(op) = self.io.ops.get_mut(key) else {
            tracing::error!("core {}: completion for unknown op {key}", self.io.core);
            return;
        };
        match op {
            Op::Recv { conn, gen, large } => {
                let (conn, gen, large) = (*conn, *gen, *large);
                if !more {
                    self.io.ops.remove(key);
                }
                self.on_recv(conn, gen, large, res, flags, more);
            }
            Op::Send { conn, gen, slot } => {
                let (conn, gen, slot) = (*conn, *gen, *slot);
                self.io.ops.remove(key);
                self.io.sends.remove(slot as usize);
                self.on_sent(conn, gen, res);
            }
            Op::SendZc { conn, gen, len, .. } => {
                let (conn, gen, len) = (*conn, *gen, *len as usize);
                if cqueue::notif(flags) {
                    self.io.ops.remove(key);
                    let copied = res as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0;
                    self.on_zc_released(conn, gen, len, copied);
                    return;
                }
                if !more {
                    // No notification follows (the send failed): nothing stays pinned.
                    self.io.ops.remove(key);
                    self.on_zc_released(conn, gen, len, false);
                }
                self.on_sent(conn, gen, res);
            }
            Op::Accept { listener } => {
                let listener = *listener;
                if !more {
                    self.io.ops.remove(key);
                }
                self.on_accept(listener, res, more);
            }
            Op::Connect { .. } => {
                let Op::Connect {
                    conn, gen, token, ..
                } = self.io.ops.remove(key)
                else {
                    unreachable!()
                };
                self.on_connect(conn, gen, token, res);
            }
            Op::File { .. } => {
                let Op::File { token, buf, .. } = self.io.ops.remove(key) else {
                    unreachable!()
                };
                let result = if res < 0 {
                    Err(std::io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as u32)
                };
                let (h, mut cx) = self.ctx();
                h.on_file(&mut cx, OpId(key as u64), FileDone { result, buf, token });
            }
            Op::Wal { wal, tag } => {
                let (wal, tag) = (*wal, *tag);
                self.io.ops.remove(key);
                if let Some(slot) = self.io.wals.get_mut(wal as usize) {
                    slot.driver.complete(tag, res);
                }
                self.deliver_wal_failures();
            }
            Op::Cancel | Op::Wake => {
                self.io.ops.remove(key);
            }
            Op::EventFd => {
                self.io.ops.remove(key);
                if self.io.stopping.is_none() || !self.io.forced {
                    self.io.arm_eventfd();
                }
            }
        }
    }

    fn on_recv(&mut self, key: u32, gen: u32, large: bool, res: i32, flags: u32, more: bool) {
        let io = &mut self.io;
        let live = io.conns.get(key as usize).is_some_and(|c| c.gen == gen);
        let bid = cqueue::buffer_select(flags);
        #[cfg(feature = "fault-injection")]
        let (res, bid) = match crate::fault::hit_errno(crate::fault::Point::Recv) {
            Some(errno) if res > 0 && live => {
                // The bytes never arrived: their buffer goes straight back.
                if let Some(bid) = bid {
                    let ring = if large { &mut io.large } else { &mut io.small };
                    ring.with_recycled(bid, 0, |_| ());
                }
                (-errno, None)
            }
            _ => (res, bid),
        };
        if !live {
            if let Some(bid) = bid {
                let ring = if large { &mut io.large } else { &mut io.small };
                ring.with_recycled(bid, 0, |_| ());
            }
            return;
        }
        if !more {
            io.conns[key as usize].recv_op = None;
        }
        if res > 0 {
            let n = res as usize;
            io.metrics.bytes_in += n as u64;
            let Some(bid) = bid else {
                tracing::error!("core {}: receive without a buffer id", io.core);
                return;
            };
            let now_ticks = io.idle_ticks();
            let ring = if large { &mut io.large } else { &mut io.small };
            let ring_size = ring.size;
            let c = &mut io.conns[key as usize];
            c.last_active = now_ticks;
            let stored: Result<(), PoolError> = if n <= ring_size / COPY_DIVISOR {
                ring.with_recycled(bid, n, |bytes| c.recv.append_slice(&io.arena, bytes))
                    .unwrap_or(Ok(()))
            } else {
                match ring.take(bid) {
                    Some(block) => c.recv.push_buf(block, n).map_err(|(_, e)| e),
                    None => Ok(()),
                }
            };
            // Adaptive buffer group: move up after full small buffers, down after small
            // receives on the large group.
            if !large && n == ring_size {
                c.streak += 1;
                if c.streak >= GROW_AFTER {
                    c.large = true;
                    c.streak = 0;
                }
            } else if large && n <= io.small.size / 2 {
                c.streak += 1;
                if c.streak >= SHRINK_AFTER {
                    c.large = false;
                    c.streak = 0;
                }
            } else {
                c.streak = 0;
            }
            let switch = c.large != large && c.recv_op.is_some() && !c.cancel_sent;
            if let Err(e) = stored {
                let reason = match e {
                    PoolError::ChainFull { .. } => CloseReason::RecvLimit,
                    _ => CloseReason::Error(libc::ENOMEM),
                };
                io.close(key, reason, false);
                return;
            }
            if switch {
                let c = &mut io.conns[key as usize];
                c.cancel_sent = true;
                let op = c.recv_op.expect("checked");
                io.cancel_op(op as u64);
            }
            self.deliver_data(key);
        } else if res == 0 {
            // A half close: the requests already received are still answered.
            let now_ticks = io.idle_ticks();
            let c = &mut io.conns[key as usize];
            if c.eof_at.is_none() {
                c.eof_at = Some(now_ticks);
                io.half_closed.push(key);
            }
            io.finish_half_closed(key);
        } else if res == -libc::ENOBUFS {
            io.metrics.recv_enobufs += 1;
            if !more && io.conns[key as usize].closing.is_none() {
                io.starved.push(key);
                return;
            }
            // A closing connection whose receive ended this way must still finish below:
            // with nothing of it left in flight, nothing else would close it.
        } else if res != -libc::ECANCELED {
            io.close(key, CloseReason::Error(-res), false);
        }
        let io = &mut self.io;
        if more {
            return;
        }
        // The connection may be gone: closed by the handler or by the branches above.
        match io.conns.get(key as usize) {
            Some(c) if c.gen == gen && c.closing.is_some() => io.try_finish(key),
            Some(c) if c.gen == gen && c.paused == 0 && c.eof_at.is_none() => {
                io.metrics.recv_rearms += 1;
                io.arm_recv(key);
            }
            _ => {}
        }
    }

    /// Hands `key`'s buffered bytes to the handler.
    fn deliver_data(&mut self, key: u32) {
        let core = self.io.core as u8;
        let c = &mut self.io.conns[key as usize];
        if c.closing.is_some() || c.recv.is_empty() {
            return;
        }
        let id = ConnId {
            core,
            gen: c.gen,
            key,
        };
        let max = c.recv.max_len();
        let mut data = std::mem::replace(&mut c.recv, BufChain::new(max));
        let (h, mut cx) = self.ctx();
        h.on_data(&mut cx, id, &mut data);
        if let Some(c) = self.io.conns.get_mut(key as usize) {
            if c.gen == id.gen {
                c.recv = data;
            }
        }
    }

    fn redeliver(&mut self) {
        let mut list = std::mem::take(&mut self.io.redeliver);
        for &key in &list {
            if let Some(c) = self.io.conns.get_mut(key as usize) {
                c.redeliver = false;
                if c.paused == 0 {
                    self.deliver_data(key);
                }
            }
        }
        list.clear();
        // Keep the allocation; anything queued meanwhile goes after.
        list.append(&mut self.io.redeliver);
        self.io.redeliver = list;
    }

    fn on_sent(&mut self, key: u32, gen: u32, res: i32) {
        let io = &mut self.io;
        let Some(c) = io.conns.get_mut(key as usize).filter(|c| c.gen == gen) else {
            return;
        };
        c.send_in_flight = false;
        c.send_op = None;
        if res < 0 {
            if c.closing.is_some() {
                io.try_finish(key);
            } else {
                io.close(key, CloseReason::Error(-res), false);
            }
            return;
        }
        io.metrics.bytes_out += res as u64;
        let pause_at = io.cfg.limits.pause_outbox_bytes;
        let outbox = c.outbox.as_mut().expect("a send had an outbox");
        if outbox.consume(res as usize).is_err() {
            tracing::error!(
                "core {}: the kernel reported more bytes sent than queued",
                io.core
            );
        }
        let left = outbox.queued_bytes();
        let held = left + c.zc_pinned;
        let paused_on_outbox = c.paused & PAUSE_OUTBOX != 0;
        if left > 0 {
            io.mark_dirty(key);
        }
        if paused_on_outbox && held <= pause_at / 2 {
            io.resume(key, PAUSE_OUTBOX);
        }
        if io
            .conns
            .get(key as usize)
            .is_some_and(|c| c.closing.is_some())
        {
            io.try_finish(key);
        }
    }

    /// The kernel no longer reads a zero-copy send's block; `copied` when its notification
    /// said the data was copied after all.
    fn on_zc_released(&mut self, key: u32, gen: u32, len: usize, copied: bool) {
        let io = &mut self.io;
        let pause_at = io.cfg.limits.pause_outbox_bytes;
        if copied {
            io.metrics.zc_copied += 1;
        }
        let Some(c) = io.conns.get_mut(key as usize).filter(|c| c.gen == gen) else {
            return;
        };
        c.zc_pinned -= len;
        c.zc_copied |= copied;
        let held = c.zc_pinned + c.outbox.as_ref().map_or(0, |o| o.queued_bytes());
        if c.paused & PAUSE_OUTBOX != 0 && held <= pause_at / 2 {
            io.resume(key, PAUSE_OUTBOX);
        }
    }

    fn on_accept(&mut self, listener: u32, res: i32, more: bool) {
        let io = &mut self.io;
        #[cfg(feature = "fault-injection")]
        let res = match crate::fault::hit_errno(crate::fault::Point::Accept) {
            Some(errno) if res >= 0 => {
                // SAFETY: freshly accepted fd that nothing else owns.
                unsafe { libc::close(res) };
                -errno
            }
            _ => res,
        };
        if !more {
            if let Some(l) = io.listeners.get_mut(listener as usize) {
                l.op = None;
            }
        }
        if res >= 0 {
            io.metrics.accepts += 1;
            if io.stopping.is_some() {
                // SAFETY: freshly accepted fd that nothing else owns.
                unsafe { libc::close(res) };
            } else if let Some(key) = io.add_conn(res) {
                io.arm_recv(key);
                let gen = io.conns[key as usize].gen;
                io.opened
                    .push((io.conn_id(key, gen), Some(ListenerId(listener))));
            }
        } else if res == -libc::EMFILE || res == -libc::ENFILE {
            io.metrics.accept_backoffs += 1;
            tracing::warn!(
                "core {}: accept: {}; backing off {ACCEPT_BACKOFF:?} and serving existing \
                 connections (raise RLIMIT_NOFILE or lower limits.max_conns)",
                io.core,
                std::io::Error::from_raw_os_error(-res)
            );
            if !more && io.stopping.is_none() {
                io.timers
                    .add(io.now + ACCEPT_BACKOFF, Tick::AcceptRetry(listener));
            }
            return;
        } else if res != -libc::ECANCELED {
            tracing::warn!(
                "core {}: accept: {}",
                io.core,
                std::io::Error::from_raw_os_error(-res)
            );
        }
        if !more && io.stopping.is_none() && io.listeners.contains(listener as usize) {
            io.arm_accept(listener);
        }
        if !more && io.stopping.is_some() {
            io.listeners.try_remove(listener as usize);
        }
    }

    fn on_connect(&mut self, key: u32, gen: u32, token: u64, res: i32) {
        let io = &mut self.io;
        if io.conns.get(key as usize).is_none_or(|c| c.gen != gen) {
            return;
        }
        if res < 0 {
            let c = io.conns.remove(key as usize);
            // SAFETY: the connection owns `fd`; the connect was its only operation.
            unsafe { libc::close(c.fd) };
            io.metrics.conns = io.conns.len() as u64;
            io.connect_failed
                .push((token, std::io::Error::from_raw_os_error(-res)));
            return;
        }
        io.arm_recv(key);
        io.opened.push((io.conn_id(key, gen), None));
    }

    /// Hands WAL failures to the handler one at a time, as soon as they are known: the
    /// failed LSNs are handed out again, so the handler must hear of one failure before
    /// anything appends (the driver refuses appends until every failure was taken).
    fn deliver_wal_failures(&mut self) {
        loop {
            let next = self
                .io
                .wals
                .iter_mut()
                .find_map(|(id, slot)| slot.driver.take_failure().map(|f| (id as u32, f)));
            let Some((wal, failure)) = next else {
                return;
            };
            let (h, mut cx) = self.ctx();
            h.on_wal_failed(&mut cx, WalId(wal), failure);
        }
    }

    /// Calls the handler for opens, connect failures and closes queued by the core.
    fn deliver_events(&mut self) {
        self.io.note_wal_progress();
        while !self.io.opened.is_empty()
            || !self.io.closed.is_empty()
            || !self.io.connect_failed.is_empty()
            || !self.io.wal_events.is_empty()
        {
            let mut events = std::mem::take(&mut self.io.wal_events);
            for (wal, WalEvent(lsn)) in events.drain(..) {
                let (h, mut cx) = self.ctx();
                h.on_wal_durable(&mut cx, WalId(wal), lsn);
            }
            events.append(&mut self.io.wal_events);
            self.io.wal_events = events;
            let opened = std::mem::take(&mut self.io.opened);
            for &(id, listener) in &opened {
                if self.io.conn_key(id).is_none() {
                    continue;
                }
                let fd = self.io.conns[id.key as usize].fd;
                let peer = crate::net::peer_addr(fd);
                let (h, mut cx) = self.ctx();
                h.on_open(&mut cx, id, listener, peer);
            }
            self.io.opened = opened;
            self.io.opened.clear();
            for (token, err) in std::mem::take(&mut self.io.connect_failed) {
                let (h, mut cx) = self.ctx();
                h.on_connect_failed(&mut cx, token, err);
            }
            let mut closed = std::mem::take(&mut self.io.closed);
            for (id, reason) in closed.drain(..) {
                let (h, mut cx) = self.ctx();
                h.on_close(&mut cx, id, reason);
            }
            closed.append(&mut self.io.closed);
            self.io.closed = closed;
        }
    }

    fn drain_inbound(&mut self) {
        let max = self.io.cfg.limits.drain_per_tick;
        for i in 0..self.inbound.len() {
            let from = self.inbound[i].0;
            let Core {
                io,
                handler,
                inbound,
            } = self;
            let got = inbound[i].1.drain(max, |msg| {
                let mut cx = Ctx { io: &mut *io };
                handler.on_message(&mut cx, Some(from), msg);
            });
            self.io.metrics.messages_in += got as u64;
        }
        let core = self.io.core;
        for _ in 0..max {
            let Some(msg) = self.io.shared.pop_external(core) else {
                break;
            };
            let (h, mut cx) = self.ctx();
            h.on_message(&mut cx, None, msg);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.io.now;
        while let Some((id, tick)) = self.io.timers.pop_due(now) {
            match tick {
                Tick::User(token) => {
                    let (h, mut cx) = self.ctx();
                    h.on_timer(&mut cx, TimerId(id), token);
                }
                Tick::IdleSweep => self.idle_sweep(),
                Tick::AcceptRetry(listener) => {
                    let io = &mut self.io;
                    if io.stopping.is_none()
                        && io
                            .listeners
                            .get(listener as usize)
                            .is_some_and(|l| l.op.is_none())
                    {
                        io.arm_accept(listener);
                    }
                }
                Tick::CloseDeadline(key, gen) => {
                    let io = &mut self.io;
                    if io.conns.get(key as usize).is_some_and(|c| c.gen == gen) {
                        io.close(key, CloseReason::Local, false);
                    }
                }
            }
        }
    }

    fn idle_sweep(&mut self) {
        let io = &mut self.io;
        let Some(idle) = io.cfg.idle_timeout else {
            return;
        };
        let limit = (idle.as_millis() / IDLE_UNIT.as_millis()) as u32;
        let now = io.idle_ticks();
        let expired: Vec<u32> = io
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_none() && now.saturating_sub(c.last_active) >= limit)
            .map(|(k, _)| k as u32)
            .collect();
        for key in expired {
            io.close(key, CloseReason::IdleTimeout, false);
        }
        let every = (idle / 4).clamp(IDLE_UNIT, Duration::from_secs(1));
        io.timers.add(io.now + every, Tick::IdleSweep);
    }

    fn check_stop(&mut self) {
        let Some(deadline) = self.io.shared.stop_deadline() else {
            return;
        };
        if self.io.stopping.is_none() {
            self.io.stopping = Some(deadline);
            let accepts: Vec<u32> = self.io.listeners.iter().filter_map(|(_, l)| l.op).collect();
            for op in accepts {
                self.io.cancel_op(op as u64);
            }
            self.io.listeners.retain(|_, l| l.op.is_some());
            {
                let (h, mut cx) = self.ctx();
                h.on_stop(&mut cx);
            }
            let keys: Vec<u32> = self.io.conns.iter().map(|(k, _)| k as u32).collect();
            for key in keys {
                self.io.close(key, CloseReason::Shutdown, true);
            }
            self.deliver_events();
        }
        if !self.io.forced && self.io.now >= deadline {
            self.force_stop();
        }
    }

    /// Past the deadline: drop queued replies and cancel everything in flight.
    fn force_stop(&mut self) {
        self.io.forced = true;
        let keys: Vec<u32> = self.io.conns.iter().map(|(k, _)| k as u32).collect();
        for key in keys {
            self.io.close(key, CloseReason::Shutdown, false);
        }
        let inflight: Vec<u64> = self
            .io
            .ops
            .iter()
            .filter(|(_, op)| !matches!(op, Op::Cancel | Op::Wake))
            .map(|(k, _)| k as u64)
            .collect();
        for key in inflight {
            self.io.cancel_op(key);
        }
        self.deliver_events();
    }

    /// Whether a stopping core may exit: no connection left and nothing in the kernel.
    fn drained(&mut self) -> bool {
        if !self.io.conns.is_empty() || self.io.wals.iter().any(|(_, w)| !w.driver.idle()) {
            return false;
        }
        let only_eventfd = self.io.ops.iter().all(|(_, op)| matches!(op, Op::EventFd));
        if only_eventfd && !self.io.ops.is_empty() && !self.io.forced {
            self.force_stop();
            return false;
        }
        if self.io.ops.is_empty() {
            self.io.metrics.ops_in_flight = 0;
            return true;
        }
        let grace = self.io.stopping.expect("stopping") + CANCEL_GRACE;
        if self.io.forced && self.io.now >= grace {
            tracing::error!(
                "core {}: {} operations did not come back from the kernel after cancellation; \
                 leaking their memory rather than freeing it under the kernel",
                self.io.core,
                self.io.ops.len()
            );
            self.io.metrics.ops_in_flight = self.io.ops.len() as u64;
            std::mem::forget(std::mem::take(&mut self.io.ops));
            return true;
        }
        false
    }

    fn publish_metrics(&mut self) {
        self.io
            .shared
            .publish_metrics(self.io.core, &self.io.metrics);
    }

    /// Frees everything in an order that never frees memory the kernel or another core
    /// may still use: the ring first (the kernel holds nothing after it closes), then
    /// everything holding pool blocks, then, once every core has done the same (blocks
    /// cross cores in messages), the arena.
    fn teardown(self) {
        self.io
            .shared
            .publish_metrics(self.io.core, &self.io.metrics);
        self.io.small.unregister(&self.io.ring);
        self.io.large.unregister(&self.io.ring);
        let Core {
            io,
            handler,
            inbound,
        } = self;
        let (core, self_metrics) = (io.core, io.metrics);
        io.shared.ring_fds[core].store(-1, Ordering::Release);
        let Io {
            ring,
            arena,
            ops,
            conns,
            small,
            large,
            senders,
            shared,
            wals,
            ..
        } = io;
        drop(ring);
        drop(ops);
        drop(wals);
        drop(conns);
        drop(small);
        drop(large);
        drop(handler);
        drop(inbound);
        drop(senders);
        shared.quiesced.fetch_add(1, Ordering::AcqRel);
        let cores = shared.ring_fds.len();
        let give_up = Instant::now() + CANCEL_GRACE;
        while shared.quiesced.load(Ordering::Acquire) < cores && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        arena.reclaim();
        let mut metrics = self_metrics;
        metrics.live_buffers_at_exit = arena.live_buffers() as u64;
        shared.publish_metrics(core, &metrics);
        drop(arena);
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_want, MAX_BATCH};

    #[test]
    fn a_core_waits_for_a_batch_only_when_busy_and_batching() {
        assert_eq!(batch_want(false, 40, 50), 0, "no wait, no batch");
        assert_eq!(batch_want(true, 40, 0), 1, "batching off");
        assert_eq!(batch_want(true, 0, 50), 1, "idle core");
        assert_eq!(batch_want(true, 1, 50), 1, "one completion is not busy");
        assert_eq!(batch_want(true, 12, 50), 12);
        assert_eq!(batch_want(true, 5000, 50), MAX_BATCH);
    }
}
