//! The per-core arena: chunks of mapped memory carved into size classes, with owner-local
//! free lists and a lock-free return path for buffers freed on other threads.
//!
//! The owning thread is the one that created the arena (an [`Arena`] is neither `Send` nor
//! `Sync`). Its alloc and free touch only plain memory: a pop or push on a preallocated
//! index stack and a few counters. A [`PoolBuf`] dropped on any other thread goes into its
//! class's [`ReturnQueue`], which the owner drains when a free list runs dry or when
//! [`Arena::reclaim`] is called.
//!
//! Buffers are named by a packed index, `chunk << 24 | slot`, so the address, the
//! registered iovec and the reference count of a buffer all follow from the index with
//! shifts, masks and one multiply.

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::backing::{Backing, Mapping};
use crate::buf::PoolBuf;
use crate::config::{Layout, PoolConfig, MAX_CHUNKS};
use crate::error::PoolError;
use crate::memlock::{self, RegistrationReport};
use crate::numa::NumaBinding;
use crate::remote::ReturnQueue;
use crate::stats::{ArenaStats, ChunkStats, ClassStats};

pub(crate) const SLOT_BITS: u32 = 24;
pub(crate) const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// A small number naming the current thread, unique for the life of the process.
#[inline]
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        let v = NEXT.fetch_add(1, Ordering::Relaxed);
        t.set(v);
        v
    })
}

/// State of one size class.
pub(crate) struct Class {
    pub size: usize,
    pub count: usize,
    pub region_off: usize,
    pub bufs_per_iovec: usize,
    pub iovec_off: usize,
    /// Touched only by the owning thread.
    local: UnsafeCell<ClassLocal>,
    /// Buffers freed on other threads, waiting for the owner.
    pub returns: ReturnQueue,
    /// One count per buffer at the cap (`chunk * count + slot`), used by shared buffers.
    pub refcounts: Box<[AtomicU32]>,
}

struct ClassLocal {
    /// Free packed indices; capacity reserved for the cap, so pushes never reallocate.
    free: Vec<u32>,
    capacity: usize,
    in_use: usize,
    high_water: usize,
    failures: u64,
    allocs: u64,
    /// One bit per buffer at the cap: set while handed out. Catches double frees.
    #[cfg(debug_assertions)]
    live: Vec<u64>,
}

impl Class {
    #[inline]
    pub fn flat(&self, idx: u32) -> usize {
        (idx >> SLOT_BITS) as usize * self.count + (idx & SLOT_MASK) as usize
    }
}

/// Everything an arena owns. Lives on the heap at a fixed address so that buffers can
/// point to it; freed when the arena drops with no buffer outstanding.
pub(crate) struct Inner {
    pub owner: u64,
    pub classes: Box<[Class]>,
    /// Chunk mappings; touched only by the owner. Capacity reserved for the cap.
    chunks: UnsafeCell<Vec<Mapping>>,
    /// Chunk base addresses, for the alloc path.
    bases: UnsafeCell<[*mut u8; MAX_CHUNKS]>,
    pub iovecs_per_chunk: usize,
    layout: Layout,
    config: PoolConfig,
    registration: RegistrationReport,
}

impl Inner {
    /// Returns `idx` of class `class` to the owner's free list.
    ///
    /// # Safety
    /// Must run on the owning thread, with `idx` a buffer of that class that is handed out
    /// and not referenced any more.
    #[inline]
    pub unsafe fn free_local(&self, class: usize, idx: u32) {
        let c = self.classes.get_unchecked(class);
        // SAFETY: owner thread only (caller's promise); no other borrow of `local` is live.
        let local = &mut *c.local.get();
        #[cfg(debug_assertions)]
        debug_check_and_clear(local, c.flat(idx), class, idx);
        local.in_use -= 1;
        debug_assert!(local.free.len() < local.free.capacity());
        local.free.push(idx);
    }

    /// Frees a buffer from whichever thread drops it.
    #[inline]
    pub fn release(&self, class: usize, idx: u32) {
        if thread_token() == self.owner {
            // SAFETY: we are on the owning thread, and the caller is the buffer's last user.
            unsafe { self.free_local(class, idx) }
        } else {
            self.classes[class].returns.push(idx);
        }
    }
}

#[cfg(debug_assertions)]
fn debug_check_and_clear(local: &mut ClassLocal, flat: usize, class: usize, idx: u32) {
    let (word, bit) = (flat / 64, 1u64 << (flat % 64));
    assert!(
        local.live[word] & bit != 0,
        "buffer {idx:#x} of class {class} freed while not handed out (double free)"
    );
    local.live[word] &= !bit;
}

/// One core's buffer arena. Create it on the thread that will own it; see the crate docs.
pub struct Arena {
    inner: NonNull<Inner>,
    /// Not `Send`, not `Sync`: the owner's free lists are plain memory.
    _owner_only: PhantomData<*mut ()>,
}

impl Arena {
    /// Maps, binds and prefaults the first chunk, and checks `RLIMIT_MEMLOCK` for the whole
    /// cap when the arena is to be registered. Logs one line with the backing, the NUMA
    /// binding and the registration outcome.
    pub fn new(config: PoolConfig) -> Result<Arena, PoolError> {
        let layout = config.layout()?;
        let registration =
            memlock::check(layout.chunk_len * layout.max_chunks, config.registration)?;
        let cap = layout.max_chunks;
        let classes = layout
            .classes
            .iter()
            .map(|c| Class {
                size: c.size,
                count: c.count,
                region_off: c.region_off,
                bufs_per_iovec: c.bufs_per_iovec,
                iovec_off: c.iovec_off,
                local: UnsafeCell::new(ClassLocal {
                    free: Vec::with_capacity(c.count * cap),
                    capacity: 0,
                    in_use: 0,
                    high_water: 0,
                    failures: 0,
                    allocs: 0,
                    #[cfg(debug_assertions)]
                    live: vec![0; (c.count * cap).div_ceil(64)],
                }),
                returns: ReturnQueue::new(c.count * cap),
                refcounts: (0..c.count * cap).map(|_| AtomicU32::new(0)).collect(),
            })
            .collect();
        let inner = Box::new(Inner {
            owner: thread_token(),
            classes,
            chunks: UnsafeCell::new(Vec::with_capacity(cap)),
            bases: UnsafeCell::new([std::ptr::null_mut(); MAX_CHUNKS]),
            iovecs_per_chunk: layout.iovecs_per_chunk,
            layout,
            config,
            registration,
        });
        let arena = Arena {
            inner: NonNull::from(Box::leak(inner)),
            _owner_only: PhantomData,
        };
        arena.grow()?;
        tracing::info!("{}", arena.report());
        Ok(arena)
    }

    #[inline]
    pub(crate) fn inner_ptr(&self) -> NonNull<Inner> {
        self.inner
    }

    fn inner(&self) -> &Inner {
        // SAFETY: `inner` came from `Box::leak` in `new` and is freed only in `drop`.
        unsafe { self.inner.as_ref() }
    }

    /// Maps one more chunk and puts its buffers on the free lists.
    #[cold]
    fn grow(&self) -> Result<(), PoolError> {
        let inner = self.inner();
        // SAFETY: owner thread (`Arena` is !Send/!Sync); no other borrow of `chunks` is live.
        let chunks = unsafe { &mut *inner.chunks.get() };
        let n = chunks.len();
        debug_assert!(n < inner.layout.max_chunks);
        let map = Mapping::new(
            inner.layout.chunk_len,
            inner.config.backing,
            inner.config.numa,
        )?;
        if let Some(why) = &map.fallback {
            tracing::info!("ringfort-pool chunk {n}: strongest backing unavailable: {why}");
        }
        // SAFETY: owner thread; `n < MAX_CHUNKS` because the cap is validated by `layout`.
        unsafe { (*inner.bases.get())[n] = map.ptr().as_ptr() };
        chunks.push(map);
        for c in inner.classes.iter() {
            // SAFETY: owner thread; no other borrow of this class's `local` is live.
            let local = unsafe { &mut *c.local.get() };
            let first = (n as u32) << SLOT_BITS;
            local
                .free
                .extend((0..c.count as u32).rev().map(|s| first | s));
            local.capacity += c.count;
        }
        Ok(())
    }

    /// A buffer of the smallest class that holds `size` bytes.
    #[inline]
    pub fn alloc(&self, size: usize) -> Result<PoolBuf, PoolError> {
        match self.class_for(size) {
            Some(class) => self.alloc_class(class),
            None => Err(PoolError::TooLarge {
                requested: size,
                largest: self.largest_class_size(),
            }),
        }
    }

    /// A buffer of class `class` (an index into the configured classes).
    #[inline]
    pub fn alloc_class(&self, class: usize) -> Result<PoolBuf, PoolError> {
        let inner = self.inner();
        let Some(c) = inner.classes.get(class) else {
            return Err(PoolError::NoSuchClass {
                class,
                classes: inner.classes.len(),
            });
        };
        // SAFETY: owner thread (`Arena` is !Send/!Sync); the borrow ends before any call
        // that could borrow `local` again.
        let popped = unsafe { (*c.local.get()).free.pop() };
        let idx = match popped {
            Some(idx) => idx,
            None => self.refill(class)?,
        };
        // SAFETY: as above.
        let local = unsafe { &mut *c.local.get() };
        local.in_use += 1;
        local.allocs += 1;
        if local.in_use > local.high_water {
            local.high_water = local.in_use;
        }
        #[cfg(debug_assertions)]
        {
            let flat = c.flat(idx);
            local.live[flat / 64] |= 1 << (flat % 64);
        }
        // SAFETY: owner thread; chunk `idx >> SLOT_BITS` is mapped (its slots were only
        // ever put on the free list by `grow` after mapping it).
        let base = unsafe { (*inner.bases.get())[(idx >> SLOT_BITS) as usize] };
        let off = c.region_off + (idx & SLOT_MASK) as usize * c.size;
        // SAFETY: `off + size <= chunk_len`, inside the chunk mapping.
        let ptr = unsafe { NonNull::new_unchecked(base.add(off)) };
        // SAFETY: the slot was free, so nothing else refers to it; `inner` outlives it.
        Ok(unsafe { PoolBuf::from_raw(ptr, self.inner, class as u8, idx) })
    }

    /// Called when a free list is empty: drain remote returns, else grow, else fail.
    #[cold]
    fn refill(&self, class: usize) -> Result<u32, PoolError> {
        self.reclaim();
        let inner = self.inner();
        let c = &inner.classes[class];
        // SAFETY: owner thread; no other borrow of `local` is live.
        if let Some(idx) = unsafe { (*c.local.get()).free.pop() } {
            return Ok(idx);
        }
        // SAFETY: owner thread.
        let chunks = unsafe { (*inner.chunks.get()).len() };
        if chunks < inner.layout.max_chunks {
            self.grow()?;
            // SAFETY: owner thread; `grow` just pushed this class's slots of the new chunk.
            if let Some(idx) = unsafe { (*c.local.get()).free.pop() } {
                return Ok(idx);
            }
        }
        // SAFETY: owner thread; no other borrow of `local` is live.
        let local = unsafe { &mut *c.local.get() };
        local.failures += 1;
        Err(PoolError::Exhausted {
            class,
            size: c.size,
            in_use: local.in_use,
            chunks,
        })
    }

    /// Moves every buffer that other threads have returned back onto the owner's free
    /// lists. Returns how many came back.
    pub fn reclaim(&self) -> usize {
        let inner = self.inner();
        let mut n = 0;
        for (class, c) in inner.classes.iter().enumerate() {
            // SAFETY: owner thread (`Arena` is !Send/!Sync) is the queue's only consumer.
            while let Some(idx) = unsafe { c.returns.pop() } {
                // SAFETY: owner thread; the buffer was handed out and its last user pushed
                // it here, so nothing refers to it.
                unsafe { inner.free_local(class, idx) };
                n += 1;
            }
        }
        n
    }

    /// The smallest class whose buffers hold `size` bytes.
    #[inline]
    pub fn class_for(&self, size: usize) -> Option<usize> {
        self.inner().classes.iter().position(|c| c.size >= size)
    }

    /// The class to carry the next part of a `remaining`-byte message in a chain: the
    /// smallest class that holds it all when that block would be at least three quarters
    /// full, else the largest class it fills completely (so a 256 KiB reply takes four
    /// 64 KiB blocks, not one 1 MiB block). Never more than the largest class.
    #[inline]
    pub fn fill_class(&self, remaining: usize) -> usize {
        let classes = &self.inner().classes;
        let up = classes
            .iter()
            .position(|c| c.size >= remaining)
            .unwrap_or(classes.len() - 1);
        let waste = classes[up].size.saturating_sub(remaining);
        if waste <= classes[up].size / 4 || up == 0 {
            return up;
        }
        classes
            .iter()
            .rposition(|c| c.size <= remaining)
            .unwrap_or(up)
    }

    /// How far class `class` is from exhaustion: `(available, at_cap)`, the buffers it
    /// can still hand out (free now, plus what the chunks not yet mapped would add) and
    /// the buffers it holds at the growth cap. Buffers freed on other threads count as
    /// available only after [`reclaim`](Arena::reclaim). Constant time, so a caller can
    /// check it per request and refuse work before the class runs dry. `None` for a class
    /// index out of range.
    #[inline]
    pub fn headroom(&self, class: usize) -> Option<(usize, usize)> {
        let inner = self.inner();
        let c = inner.classes.get(class)?;
        let max = inner.layout.max_chunks;
        // SAFETY: owner thread (`Arena` is !Send/!Sync); short reads of the free list and
        // the chunk list, with no other borrow of either live.
        let (free, chunks) = unsafe { ((*c.local.get()).free.len(), (*inner.chunks.get()).len()) };
        Some((free + (max - chunks) * c.count, max * c.count))
    }

    /// Bytes per buffer of each class, ascending.
    pub fn class_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.inner().classes.iter().map(|c| c.size)
    }

    /// Bytes per buffer of the largest class.
    pub fn largest_class_size(&self) -> usize {
        self.inner().classes.last().map_or(0, |c| c.size)
    }

    /// Buffers handed out and not yet back on the owner's free lists (a buffer freed on
    /// another thread counts until [`reclaim`](Arena::reclaim) drains it).
    pub fn live_buffers(&self) -> usize {
        self.inner()
            .classes
            .iter()
            // SAFETY: owner thread; a short read of counters.
            .map(|c| unsafe { (*c.local.get()).in_use })
            .sum()
    }

    /// The iovecs to register with io_uring, in registered-index order, for the chunks
    /// mapped so far. Chunk `k`'s iovecs occupy indices `k * iovecs_per_chunk ..`; register
    /// a sparse table of [`max_iovecs`](Arena::max_iovecs) entries to leave room for growth.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        let inner = self.inner();
        // SAFETY: owner thread; a shared borrow while nothing mutates the chunk list.
        let chunks = unsafe { &*inner.chunks.get() };
        let mut out = Vec::with_capacity(chunks.len() * inner.iovecs_per_chunk);
        for m in chunks {
            for c in inner.classes.iter() {
                let mut left = c.count;
                let mut off = c.region_off;
                while left > 0 {
                    let n = left.min(c.bufs_per_iovec);
                    out.push(libc::iovec {
                        // SAFETY: `off + n * size` stays within the chunk mapping.
                        iov_base: unsafe { m.ptr().as_ptr().add(off) }.cast(),
                        iov_len: n * c.size,
                    });
                    off += n * c.size;
                    left -= n;
                }
            }
        }
        out
    }

    /// Chunks mapped so far. When it grows, register the new chunk's iovecs (indices
    /// `old * iovecs_per_chunk ..`) before using its buffers in fixed-buffer operations.
    pub fn chunk_count(&self) -> usize {
        // SAFETY: owner thread (`Arena` is !Send/!Sync); a short read of the length.
        unsafe { (*self.inner().chunks.get()).len() }
    }

    /// Registered iovecs in each chunk.
    pub fn iovecs_per_chunk(&self) -> usize {
        self.inner().iovecs_per_chunk
    }

    /// Registered iovecs at the cap: the size of the sparse table to register.
    pub fn max_iovecs(&self) -> usize {
        let inner = self.inner();
        inner.iovecs_per_chunk * inner.layout.max_chunks
    }

    /// Bytes io_uring pins when the arena is registered at its cap: what `RLIMIT_MEMLOCK`
    /// must cover.
    pub fn memlock_bytes(&self) -> usize {
        let l = &self.inner().layout;
        l.chunk_len * l.max_chunks
    }

    /// What the arena got: backing, NUMA binding, registration. Its `Display` is the log
    /// line written at creation.
    pub fn report(&self) -> ArenaReport {
        let s = self.stats();
        ArenaReport {
            chunk_bytes: self.inner().layout.chunk_len,
            max_chunks: self.inner().layout.max_chunks,
            chunks: s.chunks,
            registration: s.registration,
        }
    }

    /// Counters per class and per chunk.
    pub fn stats(&self) -> ArenaStats {
        let inner = self.inner();
        // SAFETY: owner thread; shared borrows while nothing mutates.
        let chunks: Vec<ChunkStats> = unsafe { &*inner.chunks.get() }
            .iter()
            .map(|m| ChunkStats {
                bytes: m.len(),
                backing: m.backing,
                numa: m.numa.clone(),
                fallback: m.fallback.clone(),
            })
            .collect();
        let weakest = chunks
            .iter()
            .map(|c| c.backing)
            .min_by_key(|b| b.rank())
            .unwrap_or(Backing::SmallPages);
        let classes = inner
            .classes
            .iter()
            .map(|c| {
                // SAFETY: owner thread; a short shared read of counters.
                let l = unsafe { &*c.local.get() };
                ClassStats {
                    size: c.size,
                    capacity: l.capacity,
                    in_use: l.in_use,
                    high_water: l.high_water,
                    failures: l.failures,
                    allocs: l.allocs,
                    backing: weakest,
                }
            })
            .collect();
        ArenaStats {
            classes,
            chunks,
            max_chunks: inner.layout.max_chunks,
            registration: inner.registration.clone(),
        }
    }
}

impl Drop for Arena {
    /// Unmaps everything when no buffer is outstanding. When some are (still in another
    /// thread's hands, or in flight in the kernel), the memory is deliberately leaked
    /// rather than risk a use after free, and a warning names the count.
    fn drop(&mut self) {
        self.reclaim();
        let live = self.live_buffers();
        if live == 0 {
            // SAFETY: `inner` came from `Box::leak`; no buffer refers to it (all are back
            // on the free lists) and the arena is going away, so nothing else can.
            drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
        } else {
            tracing::warn!(
                "ringfort-pool arena dropped with {live} buffers outstanding: its {} B are \
                 leaked so those buffers stay valid",
                self.memlock_bytes()
            );
        }
    }
}

/// What an arena got from the system; `Display` gives the creation log line.
#[derive(Clone, Debug)]
pub struct ArenaReport {
    /// Bytes per chunk.
    pub chunk_bytes: usize,
    /// The growth cap in chunks.
    pub max_chunks: usize,
    /// Backing and NUMA placement of each mapped chunk.
    pub chunks: Vec<ChunkStats>,
    /// Whether the arena may be registered, and the memlock figures.
    pub registration: RegistrationReport,
}

impl ArenaReport {
    /// The backing of the first chunk.
    pub fn backing(&self) -> Backing {
        self.chunks[0].backing
    }

    /// The NUMA placement of the first chunk.
    pub fn numa(&self) -> &NumaBinding {
        &self.chunks[0].numa
    }
}

impl fmt::Display for ArenaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ringfort-pool arena: {} chunk(s) of {} MiB (cap {}), backing: {}, numa: {}, {}",
            self.chunks.len(),
            self.chunk_bytes >> 20,
            self.max_chunks,
            self.backing(),
            self.numa(),
            self.registration
        )?;
        if let Some(why) = &self.chunks[0].fallback {
            write!(f, " [fallback: {why}]")?;
        }
        Ok(())
    }
}
