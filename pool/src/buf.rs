//! Buffer handles: [`PoolBuf`], one exclusively owned block, and [`SharedBuf`], a
//! reference-counted block that several chains (or several receivers) can hold at once.
//!
//! Either handle may move to and be dropped on any thread; the block goes back to its
//! owning arena's free list directly on the owner thread and through the return queue
//! elsewhere.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use crate::arena::{Arena, Inner, SLOT_BITS, SLOT_MASK};

/// Where a buffer sits in the arena's io_uring registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegSlot {
    /// The registered buffer index (`buf_index` in a fixed-buffer SQE).
    pub index: u16,
    /// Byte offset of the buffer from the start of that registered iovec.
    pub offset: usize,
}

/// One block from an arena, owned exclusively. Its contents are always initialized (fresh
/// memory is zeroed; reused memory holds old bytes). Returned to the arena on drop.
pub struct PoolBuf {
    ptr: NonNull<u8>,
    inner: NonNull<Inner>,
    class: u8,
    idx: u32,
}

// SAFETY: a PoolBuf is the only handle to its block, and freeing it from another thread
// goes through the arena's thread-safe return queue (`Inner::release`).
unsafe impl Send for PoolBuf {}
// SAFETY: `&PoolBuf` only reads the block; mutation needs `&mut`.
unsafe impl Sync for PoolBuf {}

impl PoolBuf {
    /// # Safety
    /// `ptr` must be the address of free buffer `idx` of class `class` in `inner`, which
    /// must stay alive until the buffer is released.
    pub(crate) unsafe fn from_raw(
        ptr: NonNull<u8>,
        inner: NonNull<Inner>,
        class: u8,
        idx: u32,
    ) -> Self {
        PoolBuf {
            ptr,
            inner,
            class,
            idx,
        }
    }

    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: the arena keeps `Inner` alive while any buffer is outstanding.
        unsafe { self.inner.as_ref() }
    }

    /// Bytes in the block (its class size).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.inner().classes[self.class as usize].size
    }

    /// The size class index.
    #[inline]
    pub fn class(&self) -> usize {
        self.class as usize
    }

    /// The block's address, stable for its lifetime (for SQEs).
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The block's address for writing (for read SQEs).
    #[inline]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The registered iovec index and offset of this block.
    pub fn reg_slot(&self) -> RegSlot {
        reg_slot(self.inner(), self.class, self.idx)
    }

    /// Whether the block belongs to `arena`. A registered index means something only to
    /// the ring its own arena is registered with: a block that came from another core's
    /// arena needs a plain (unregistered) operation.
    #[inline]
    pub fn is_from(&self, arena: &Arena) -> bool {
        self.inner == arena.inner_ptr()
    }

    /// Turns this block into a shared one with a reference count of one.
    pub fn into_shared(self) -> SharedBuf {
        let me = ManuallyDrop::new(self);
        let rc = me.refcount();
        rc.store(1, Ordering::Relaxed);
        SharedBuf {
            ptr: me.ptr,
            inner: me.inner,
            class: me.class,
            idx: me.idx,
        }
    }

    fn refcount(&self) -> &AtomicU32 {
        let c = &self.inner().classes[self.class as usize];
        &c.refcounts[c.flat(self.idx)]
    }
}

fn reg_slot(inner: &Inner, class: u8, idx: u32) -> RegSlot {
    let c = &inner.classes[class as usize];
    let chunk = (idx >> SLOT_BITS) as usize;
    let slot = (idx & SLOT_MASK) as usize;
    let index = chunk * inner.iovecs_per_chunk + c.iovec_off + slot / c.bufs_per_iovec;
    RegSlot {
        index: index as u16,
        offset: (slot % c.bufs_per_iovec) * c.size,
    }
}

impl Deref for PoolBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the block is `capacity` initialized bytes that this handle owns.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity()) }
    }
}

impl DerefMut for PoolBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity()) }
    }
}

impl Drop for PoolBuf {
    #[inline]
    fn drop(&mut self) {
        self.inner().release(self.class as usize, self.idx);
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("class", &self.class)
            .field("idx", &format_args!("{:#x}", self.idx))
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A reference-counted block: cloning shares it, and the block returns to its arena
/// exactly once, when the last clone drops. Reading is always allowed; writing needs the
/// block to be unshared ([`SharedBuf::get_mut`]).
pub struct SharedBuf {
    ptr: NonNull<u8>,
    inner: NonNull<Inner>,
    class: u8,
    idx: u32,
}

// SAFETY: the count is atomic, the block is only written through `get_mut` while the count
// is one, and the final release goes through the thread-safe `Inner::release`.
unsafe impl Send for SharedBuf {}
// SAFETY: shared access only reads the block and bumps the atomic count.
unsafe impl Sync for SharedBuf {}

impl SharedBuf {
    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: the arena keeps `Inner` alive while any buffer is outstanding.
        unsafe { self.inner.as_ref() }
    }

    #[inline]
    fn refcount(&self) -> &AtomicU32 {
        let c = &self.inner().classes[self.class as usize];
        &c.refcounts[c.flat(self.idx)]
    }

    /// Bytes in the block.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.inner().classes[self.class as usize].size
    }

    /// The block's address.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// How many handles share the block now.
    pub fn ref_count(&self) -> u32 {
        self.refcount().load(Ordering::Acquire)
    }

    /// The registered iovec index and offset of this block.
    pub fn reg_slot(&self) -> RegSlot {
        reg_slot(self.inner(), self.class, self.idx)
    }

    /// Whether the block belongs to `arena`. A registered index means something only to
    /// the ring its own arena is registered with: a block that came from another core's
    /// arena needs a plain (unregistered) operation.
    #[inline]
    pub fn is_from(&self, arena: &Arena) -> bool {
        self.inner == arena.inner_ptr()
    }

    /// The whole block for writing, when this is the only handle.
    #[inline]
    pub fn get_mut(&mut self) -> Option<&mut [u8]> {
        if self.refcount().load(Ordering::Acquire) != 1 {
            return None;
        }
        // SAFETY: a count of one means no other handle exists, and `&mut self` excludes
        // other borrows of this one; the Acquire load orders us after the last clone's drop.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity()) })
    }
}

impl Clone for SharedBuf {
    #[inline]
    fn clone(&self) -> Self {
        let old = self.refcount().fetch_add(1, Ordering::Relaxed);
        if old > u32::MAX / 2 {
            // The count would overflow into a premature free; refuse loudly.
            std::process::abort();
        }
        SharedBuf {
            ptr: self.ptr,
            inner: self.inner,
            class: self.class,
            idx: self.idx,
        }
    }
}

impl Deref for SharedBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the block is `capacity` initialized bytes, kept alive by our count;
        // writes happen only through `get_mut`, which needs this to be the sole handle.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity()) }
    }
}

impl Drop for SharedBuf {
    #[inline]
    fn drop(&mut self) {
        let rc = self.refcount();
        // A count of one means we are the last handle: no other exists to race with, so no
        // read-modify-write is needed (the Acquire load syncs with earlier drops).
        if rc.load(Ordering::Acquire) != 1 {
            if rc.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            fence(Ordering::Acquire);
        }
        self.inner().release(self.class as usize, self.idx);
    }
}

impl std::fmt::Debug for SharedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBuf")
            .field("class", &self.class)
            .field("idx", &format_args!("{:#x}", self.idx))
            .field("refs", &self.ref_count())
            .finish()
    }
}
