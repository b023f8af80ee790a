//! [`Ctx`]: what a handler can do from inside a callback. Every call queues work on the
//! current core and returns at once; results arrive as later callbacks.

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, types};
use ringfort_pool::{Arena, BufChain, PoolBuf};

use crate::channel::Full;
use crate::core::WalSlot;
use crate::core::{Io, Op, Tick, PAUSE_HANDLER, PAUSE_OUTBOX, PAUSE_WINDOW};
use crate::error::EngineError;
use crate::handler::{ConnId, CoreId, ListenerId, OpId, TimerId, WalId};
use crate::metrics::CoreMetrics;
use crate::reorder::{ReorderWindow, Seq};
use crate::wal_driver::WalDriver;

/// The handle a callback gets to its core.
pub struct Ctx<'a, M> {
    pub(crate) io: &'a mut Io<M>,
}

impl<M: Send + 'static> Ctx<'_, M> {
    /// This core's index.
    pub fn core(&self) -> CoreId {
        self.io.core
    }

    /// How many cores the engine runs.
    pub fn cores(&self) -> usize {
        self.io.ncores
    }

    /// This core's buffer arena, for building replies.
    pub fn arena(&self) -> &Arena {
        &self.io.arena
    }

    /// This core's counters so far.
    pub fn metrics(&self) -> &CoreMetrics {
        &self.io.metrics
    }

    /// Whether the engine is stopping.
    pub fn stopping(&self) -> bool {
        self.io.stopping()
    }

    /// Opens a listener on `addr` with `SO_REUSEPORT` and arms a multishot accept. Call it
    /// on every core (usually in `on_start`) so the kernel spreads connections. Port 0
    /// picks a free port; [`Ctx::listener_addr`] tells which.
    pub fn listen(&mut self, addr: SocketAddr) -> Result<ListenerId, EngineError> {
        self.io.listen(addr)
    }

    /// The address a listener is bound to.
    pub fn listener_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.io.listener_addr(id)
    }

    /// Connects to `addr`. Success arrives as `on_open` (with no listener); failure as
    /// `on_connect_failed` with `token`.
    pub fn connect(&mut self, addr: SocketAddr, token: u64) -> Result<(), EngineError> {
        self.io.connect(addr, token)
    }

    /// Whether `conn` is an open connection of this core: false once it is closing (after
    /// [`Ctx::close`], a peer close or an error), and for stale ids and other cores' ids.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.io.conn_key(conn).is_some()
    }

    fn key(&self, conn: ConnId) -> Result<u32, EngineError> {
        self.io.conn_key(conn).ok_or(EngineError::NoConn)
    }

    /// Queues `data` for `conn`, after everything queued before. Sends are gathered per
    /// tick into one SQE per connection. Crossing the outbound limits closes the
    /// connection with [`crate::CloseReason::Evicted`].
    pub fn send(&mut self, conn: ConnId, data: BufChain) -> Result<(), EngineError> {
        let key = self.key(conn)?;
        self.io.queue_send(key, data);
        Ok(())
    }

    /// Copies `bytes` into pool blocks and queues them for `conn`.
    pub fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), EngineError> {
        let key = self.key(conn)?;
        let mut chain = BufChain::new(bytes.len());
        chain.append_slice(&self.io.arena, bytes)?;
        self.io.queue_send(key, chain);
        Ok(())
    }

    /// Queues `payload` (shared, not copied) for each live subscriber in `subs` that is on
    /// this core. A subscriber whose outbound queue crosses its limits is closed with a
    /// reason; the others are unaffected and nothing waits. Returns how many were queued.
    pub fn publish(&mut self, subs: &[ConnId], payload: &BufChain) -> usize {
        let mut queued = 0;
        for &id in subs {
            if let Some(key) = self.io.conn_key(id) {
                self.io.queue_send(key, payload.clone());
                queued += 1;
            }
        }
        queued
    }

    /// Gives `conn` its own outbound queue limits (for example Redis's pub/sub limits for
    /// a client that subscribes). Crossing them evicts the connection with a reason.
    pub fn set_outbox_limits(
        &mut self,
        conn: ConnId,
        limits: crate::outbox::OutboxLimits,
    ) -> Result<(), EngineError> {
        let key = self.key(conn)?;
        let c = &mut self.io.conns[key as usize];
        let bad = |e: crate::outbox::LimitsError| EngineError::Config(e.to_string());
        match c.outbox.as_mut() {
            Some(o) => o.set_limits(limits).map_err(bad),
            None => {
                c.outbox = Some(crate::outbox::Outbox::new(limits).map_err(bad)?);
                Ok(())
            }
        }
    }

    /// Closes `conn` after its queued replies are sent (for at most a few seconds).
    /// `on_close` follows.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(key) = self.io.conn_key(conn) {
            self.io.close(key, crate::CloseReason::Local, true);
        }
    }

    /// Whether reading `conn` is paused because its client is not taking replies (its
    /// outbound queue is over `limits.pause_outbox_bytes`) or its reorder window is full.
    /// A handler should stop consuming requests while this is true; the unconsumed bytes
    /// are delivered again when the pause lifts. Gone connections count as backpressured.
    pub fn backpressured(&self, conn: ConnId) -> bool {
        self.io.conn_key(conn).is_none_or(|key| {
            self.io.conns[key as usize].paused & (PAUSE_OUTBOX | PAUSE_WINDOW) != 0
        })
    }

    /// Stops reading `conn` until [`Ctx::resume_reading`].
    pub fn pause_reading(&mut self, conn: ConnId) {
        if let Some(key) = self.io.conn_key(conn) {
            self.io.pause(key, PAUSE_HANDLER);
        }
    }

    /// Resumes reading `conn`; bytes already buffered are delivered again.
    pub fn resume_reading(&mut self, conn: ConnId) {
        if let Some(key) = self.io.conn_key(conn) {
            self.io.resume(key, PAUSE_HANDLER);
        }
    }

    /// Reserves the next reply slot of `conn` for ordered pipelining: replies given to
    /// [`Ctx::reply`] leave in the order their slots were reserved, whichever core
    /// produced them. When `limits.max_in_flight` requests are outstanding this fails
    /// with [`EngineError::Limit`] and reading `conn` pauses until a reply is released:
    /// leave the rest of the request bytes unconsumed, and they are delivered again.
    pub fn begin_request(&mut self, conn: ConnId) -> Result<Seq, EngineError> {
        let key = self.key(conn)?;
        let cap = self.io.cfg.limits.max_in_flight;
        let c = &mut self.io.conns[key as usize];
        let window = c.window.get_or_insert_with(|| ReorderWindow::new(cap));
        match window.reserve() {
            Ok(seq) => Ok(seq),
            Err(_) => {
                self.io.pause(key, PAUSE_WINDOW);
                Err(EngineError::Limit("limits.max_in_flight"))
            }
        }
    }

    /// Whether [`Ctx::begin_request`] would succeed for `conn` now. When it would not, reading
    /// pauses as if it had been called (check before consuming a request's bytes).
    pub fn request_room(&mut self, conn: ConnId) -> bool {
        let Some(key) = self.io.conn_key(conn) else {
            return false;
        };
        let full = self.io.conns[key as usize]
            .window
            .as_ref()
            .is_some_and(|w| w.is_full());
        if full {
            self.io.pause(key, PAUSE_WINDOW);
        }
        !full
    }

    /// Completes reply slot `seq` of `conn`. Replies are released in slot order.
    pub fn reply(&mut self, conn: ConnId, seq: Seq, data: BufChain) -> Result<(), EngineError> {
        let key = self.key(conn)?;
        let c = &mut self.io.conns[key as usize];
        let window = c
            .window
            .as_mut()
            .ok_or(EngineError::Limit("reply without begin_request"))?;
        window.complete(seq, data).map_err(|_| {
            EngineError::Limit("reply for a slot that was not reserved or already completed")
        })?;
        self.io.release_replies(key);
        Ok(())
    }

    /// Sends `msg` to core `core`'s handler (`on_message`). A full channel, or a core
    /// index out of range, hands the message back: this is backpressure, never an
    /// unbounded buffer.
    pub fn submit_to(&mut self, core: CoreId, msg: M) -> Result<(), Full<M>> {
        self.io.submit_to(core, msg)
    }

    /// Calls `on_timer` with `token` after `after`. Fails at `limits.max_timers`.
    pub fn timer(&mut self, after: Duration, token: u64) -> Result<TimerId, EngineError> {
        let at = self.io.now + after;
        self.io
            .timers
            .add(at, Tick::User(token))
            .map(TimerId)
            .ok_or(EngineError::Limit("limits.max_timers"))
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.io.timers.cancel(timer.0)
    }

    /// Opens `path` (with `open(2)` flags and mode) on the ring; `on_file` receives the
    /// new descriptor as the result.
    pub fn file_open(
        &mut self,
        path: &str,
        flags: i32,
        mode: u32,
        token: u64,
    ) -> Result<OpId, EngineError> {
        let path = CString::new(path)
            .map_err(|_| EngineError::Config(format!("path {path:?} contains a NUL byte")))?;
        let e = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
            .flags(flags | libc::O_CLOEXEC)
            .mode(mode)
            .build();
        Ok(self.io.file_op(
            e,
            Op::File {
                token,
                buf: None,
                _path: Some(path),
            },
        ))
    }

    /// Checks what O_DIRECT requires of a transfer: buffer address, length and offset all
    /// multiples of `align` (the device's logical block size; 4096 is always safe).
    pub fn check_direct(
        buf: &PoolBuf,
        len: usize,
        offset: u64,
        align: usize,
    ) -> Result<(), EngineError> {
        let bad = |what: &str, v: u64| {
            Err(EngineError::Config(format!(
                "O_DIRECT needs {what} aligned to {align} B, got {v}"
            )))
        };
        if buf.as_ptr() as usize % align != 0 {
            return bad("the buffer address", buf.as_ptr() as u64);
        }
        if len % align != 0 {
            return bad("the length", len as u64);
        }
        if offset % align as u64 != 0 {
            return bad("the offset", offset);
        }
        Ok(())
    }

    /// The registered index of `buf` when it is a block of this core's arena and that arena
    /// is registered with the ring (a block from another core's arena is not).
    fn fixed_index(&self, buf: &PoolBuf) -> Option<u16> {
        (self.io.registered && buf.is_from(&self.io.arena)).then(|| buf.reg_slot().index)
    }

    /// Queues a read or write that hands `buf` back in `on_file`.
    fn buffer_op(&mut self, e: io_uring::squeue::Entry, buf: PoolBuf, token: u64) -> OpId {
        self.io.file_op(
            e,
            Op::File {
                token,
                buf: Some(buf),
                _path: None,
            },
        )
    }

    /// Reads up to `len` bytes at `offset` of `fd` into `buf` (`READ_FIXED` when the arena
    /// is registered). `on_file` hands `buf` back with the byte count. For an O_DIRECT
    /// file, check the transfer first with [`Ctx::check_direct`].
    pub fn file_read(
        &mut self,
        fd: RawFd,
        mut buf: PoolBuf,
        len: usize,
        offset: u64,
        token: u64,
    ) -> OpId {
        let len = len.min(buf.capacity()) as u32;
        let ptr = buf.as_mut_ptr();
        let e = match self.fixed_index(&buf) {
            Some(index) => opcode::ReadFixed::new(types::Fd(fd), ptr, len, index)
                .offset(offset)
                .build(),
            None => opcode::Read::new(types::Fd(fd), ptr, len)
                .offset(offset)
                .build(),
        };
        self.buffer_op(e, buf, token)
    }

    /// Writes the first `len` bytes of `buf` at `offset` of `fd` (`WRITE_FIXED` when the
    /// arena is registered). `on_file` hands `buf` back with the byte count.
    pub fn file_write(
        &mut self,
        fd: RawFd,
        buf: PoolBuf,
        len: usize,
        offset: u64,
        token: u64,
    ) -> OpId {
        let len = len.min(buf.capacity()) as u32;
        let ptr = buf.as_ptr();
        let e = match self.fixed_index(&buf) {
            Some(index) => opcode::WriteFixed::new(types::Fd(fd), ptr, len, index)
                .offset(offset)
                .build(),
            None => opcode::Write::new(types::Fd(fd), ptr, len)
                .offset(offset)
                .build(),
        };
        self.buffer_op(e, buf, token)
    }

    /// `fsync` (or `fdatasync` when `data_only`) on the ring.
    pub fn file_sync(&mut self, fd: RawFd, data_only: bool, token: u64) -> OpId {
        let mut f = opcode::Fsync::new(types::Fd(fd));
        if data_only {
            f = f.flags(types::FsyncFlags::DATASYNC);
        }
        self.io.file_op(
            f.build(),
            Op::File {
                token,
                buf: None,
                _path: None,
            },
        )
    }

    /// `fallocate(fd, mode, offset, len)` on the ring.
    pub fn file_allocate(
        &mut self,
        fd: RawFd,
        mode: i32,
        offset: u64,
        len: u64,
        token: u64,
    ) -> OpId {
        let e = opcode::Fallocate::new(types::Fd(fd), len)
            .offset(offset)
            .mode(mode)
            .build();
        self.io.file_op(
            e,
            Op::File {
                token,
                buf: None,
                _path: None,
            },
        )
    }

    /// Opens (creating if needed) a write-ahead log in directory `path`, driven by this
    /// core's ring. Recovery runs here, synchronously (`config.recovery` decides what
    /// damage is tolerated; a torn tail is cut): every record at or above `from` is handed
    /// to `replay`, with this core's arena, in LSN order before this returns. Appends acknowledge through
    /// [`crate::Handler::on_wal_durable`].
    pub fn wal_open(
        &mut self,
        path: &std::path::Path,
        config: ringfort_wal::WalConfig,
        from: ringfort_wal::Lsn,
        mut replay: impl FnMut(
            ringfort_wal::RecordRef<'_>,
            &Arena,
        ) -> Result<(), ringfort_wal::WalError>,
    ) -> Result<(WalId, ringfort_wal::RecoveryReport), EngineError> {
        let sq = self.io.cfg.ring_entries as usize;
        let arena = &self.io.arena;
        let (driver, report) =
            WalDriver::open(path, config, arena, sq, from, |r| replay(r, arena))?;
        let id = self.io.wals.insert(WalSlot::new(driver));
        Ok((WalId(id as u32), report))
    }

    fn wal(&mut self, wal: WalId) -> Result<&mut WalDriver, EngineError> {
        self.io
            .wals
            .get_mut(wal.0 as usize)
            .map(|s| &mut s.driver)
            .ok_or(EngineError::Limit("no such write-ahead log on this core"))
    }

    /// Appends a record (copied into pool blocks) and returns its LSN at once; it goes out
    /// with this tick's group commit. [`ringfort_wal::WalError::Full`] is backpressure:
    /// retry after the durable LSN moves.
    pub fn wal_append(
        &mut self,
        wal: WalId,
        payload: &[u8],
    ) -> Result<ringfort_wal::Lsn, EngineError> {
        let arena = &self.io.arena;
        let slot = self
            .io
            .wals
            .get_mut(wal.0 as usize)
            .ok_or(EngineError::Limit("no such write-ahead log on this core"))?;
        Ok(slot.driver.append(arena, payload)?)
    }

    /// Appends a record held in a chain, without copying it until its batch is sealed.
    /// On error the chain is handed back.
    #[allow(clippy::result_large_err)]
    pub fn wal_append_chain(
        &mut self,
        wal: WalId,
        chain: BufChain,
    ) -> Result<ringfort_wal::Lsn, (BufChain, EngineError)> {
        let arena = &self.io.arena;
        let Some(slot) = self.io.wals.get_mut(wal.0 as usize) else {
            return Err((
                chain,
                EngineError::Limit("no such write-ahead log on this core"),
            ));
        };
        slot.driver
            .append_chain(arena, chain)
            .map_err(|(c, e)| (c, EngineError::Wal(e)))
    }

    /// Every record of `wal` below this LSN is durable.
    pub fn wal_durable(&mut self, wal: WalId) -> Result<ringfort_wal::Lsn, EngineError> {
        Ok(self.wal(wal)?.durable_lsn())
    }

    /// The LSN the next append to `wal` gets.
    pub fn wal_next_lsn(&mut self, wal: WalId) -> Result<ringfort_wal::Lsn, EngineError> {
        Ok(self.wal(wal)?.next_lsn())
    }

    /// Removes whole segments of `wal` below `checkpoint` (never one holding records that
    /// are not durable yet). Returns how many went.
    pub fn wal_truncate_prefix(
        &mut self,
        wal: WalId,
        checkpoint: ringfort_wal::Lsn,
    ) -> Result<usize, EngineError> {
        Ok(self.wal(wal)?.truncate_prefix(checkpoint)?)
    }

    /// Asks the whole engine to stop (as [`crate::Engine::stop`] with a drain deadline).
    pub fn stop_engine(&mut self, drain: Duration) {
        self.io.shared.request_stop(drain);
    }
}
