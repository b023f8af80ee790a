//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`) whose buffers are pool blocks.
//!
//! The kernel picks a buffer from the ring for each multishot receive completion and names
//! it by buffer id. The core then either copies a small receive into the connection's
//! chain and hands the same block straight back, or moves the block itself into the chain
//! (no copy) and puts a fresh block from the arena under that id. When the arena is
//! exhausted an id stays empty; the ring runs dry, receives fail with ENOBUFS, and reading
//! pauses until blocks come back. That is the receive path's memory bound.

use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;
use ringfort_pool::{Arena, PoolBuf};

use crate::error::EngineError;

pub(crate) struct BufRing {
    pub bgid: u16,
    /// Bytes per buffer.
    pub size: usize,
    mask: u16,
    /// Holds the ring's entries; page aligned (a pool block of 4 KiB or more).
    ring_mem: PoolBuf,
    /// The block under each buffer id, `None` while it is out of the ring.
    bufs: Vec<Option<PoolBuf>>,
    /// Ids waiting for a fresh block.
    empty: Vec<u16>,
    tail: u16,
    dirty: bool,
}

impl BufRing {
    /// Registers a ring of `count` (a power of two) buffers of `size` bytes as group `bgid`.
    pub fn new(
        ring: &IoUring,
        arena: &Arena,
        bgid: u16,
        count: u16,
        size: usize,
    ) -> Result<BufRing, EngineError> {
        let entries = count as usize;
        let mem_len = (entries * std::mem::size_of::<BufRingEntry>()).max(4096);
        let mut ring_mem = arena.alloc(mem_len)?;
        if ring_mem.as_ptr() as usize % 4096 != 0 {
            return Err(EngineError::Config(format!(
                "the pool block for buffer ring {bgid} is not page aligned: use size classes \
                 that are multiples of 4096 B"
            )));
        }
        ring_mem.fill(0);
        // SAFETY: `ring_mem` is page aligned and holds `entries` entries; it stays alive
        // (owned by this struct) until the ring is unregistered in `Drop` or the io_uring
        // instance is closed, which the core does before dropping its buffer rings.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem.as_ptr() as u64, count, bgid, 0)
        }
        .map_err(|e| {
            EngineError::io(
                format!("registering provided buffer ring {bgid} ({count} x {size} B)"),
                e,
            )
        })?;
        let mut r = BufRing {
            bgid,
            size,
            mask: count - 1,
            ring_mem,
            bufs: (0..count).map(|_| None).collect(),
            empty: (0..count).rev().collect(),
            tail: 0,
            dirty: false,
        };
        r.refill(arena);
        if r.empty.len() == entries {
            return Err(EngineError::Config(format!(
                "no {size} B pool blocks for buffer ring {bgid}"
            )));
        }
        Ok(r)
    }

    fn entries(&mut self) -> *mut BufRingEntry {
        self.ring_mem.as_mut_ptr().cast()
    }

    /// Puts `buf` back under id `bid` at the tail.
    fn add(&mut self, bid: u16, buf: PoolBuf) {
        let slot = (self.tail & self.mask) as usize;
        let addr = buf.as_ptr() as u64;
        let entries = self.entries();
        // SAFETY: `slot <= mask < count`, inside the ring memory; the kernel reads entries
        // only between its head and the published tail, and this slot is past the tail.
        let e = unsafe { &mut *entries.add(slot) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.bufs[bid as usize] = Some(buf);
        self.tail = self.tail.wrapping_add(1);
        self.dirty = true;
    }

    /// The block the kernel filled under `bid`, leaving the id empty.
    pub fn take(&mut self, bid: u16) -> Option<PoolBuf> {
        let buf = self.bufs.get_mut(bid as usize)?.take()?;
        self.empty.push(bid);
        Some(buf)
    }

    /// The block under `bid`, read in place, then handed back to the kernel as it is.
    pub fn with_recycled<R>(
        &mut self,
        bid: u16,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        let buf = self.bufs.get_mut(bid as usize)?.take()?;
        let r = f(&buf[..len.min(buf.len())]);
        self.add(bid, buf);
        Some(r)
    }

    /// Gives every empty id a fresh block while the arena has some; returns how many ids
    /// are still empty.
    pub fn refill(&mut self, arena: &Arena) -> usize {
        while let Some(&bid) = self.empty.last() {
            match arena.alloc(self.size) {
                Ok(buf) => {
                    self.empty.pop();
                    self.add(bid, buf);
                }
                Err(_) => break,
            }
        }
        self.empty.len()
    }

    /// Whether some ids are waiting for blocks.
    pub fn starved(&self) -> bool {
        !self.empty.is_empty()
    }

    /// Makes added buffers visible to the kernel.
    pub fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let base = self.entries();
        // SAFETY: the tail field overlays the first entry's reserved field; the ring memory
        // is live and aligned for u16. The kernel reads it atomically; a Release store
        // orders the entry writes before it.
        let tail = unsafe { &*(BufRingEntry::tail(base) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the ring; call before the io_uring instance goes away.
    pub fn unregister(&self, ring: &IoUring) {
        if let Err(e) = ring.submitter().unregister_buf_ring(self.bgid) {
            tracing::warn!("unregistering buffer ring {}: {e}", self.bgid);
        }
    }
}
