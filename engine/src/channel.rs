//! Bounded single-producer single-consumer (SPSC) channels between cores.
//!
//! Every ordered pair of cores `i -> j` owns one channel: core `i` holds the [`Sender`],
//! core `j` holds the [`Receiver`]. The channel itself does no I/O; the reactor pairs it
//! with `IORING_OP_MSG_RING` to wake a sleeping consumer (see [the wake
//! protocol](#the-wake-protocol)).
//!
//! # Structure
//!
//! One heap allocation, made by [`channel`], holds everything the two sides share (behind
//! an [`Arc`]):
//!
//! * a ring of `capacity` slots (`UnsafeCell<MaybeUninit<T>>`), where `capacity` is the
//!   requested capacity rounded up to a power of two, so a slot index is `counter & mask`;
//! * `head`, the free-running count of messages taken out, written only by the consumer;
//! * `tail`, the free-running count of messages put in, written only by the producer;
//! * `parked`, the consumer's "I am about to sleep" flag.
//!
//! `head`, `tail` and `parked` each sit in their own 128-byte aligned block so the two
//! cores never false-share a cache line (128 rather than 64 because x86's adjacent-line
//! prefetcher pulls cache lines in pairs). Each side also keeps a private copy of its own
//! index and a *cached* copy of the other side's index (Lamport's ring with the cached
//! indices of Vyukov / `rigtorp::SPSCQueue`): the producer re-reads `head` only when the
//! ring looks full from its cached value, and the consumer re-reads `tail` only when the
//! ring looks empty, so in the steady state each side touches the other's cache line once
//! per lap rather than once per message.
//!
//! Sending and receiving never allocate: a message is moved into a slot and moved out
//! again.
//!
//! # The bound, and what happens at it
//!
//! The channel holds at most [`capacity`](Sender::capacity) messages. When it is full,
//! [`Sender::try_send`] fails with [`Full`], which hands the message back to the caller
//! intact (get it with [`Full::into_inner`]); nothing is buffered on the side. The sender
//! counts these rejections ([`Sender::rejected`]) for metrics. What to do with a
//! rejected message (retry next tick, shed load, evict a slow peer) is the caller's
//! policy, never hidden unbounded buffering here.
//!
//! Capacities are validated: zero, or more than [`MAX_CAPACITY`], is a [`ChannelError`].
//!
//! # The wake protocol
//!
//! A consumer core that runs out of work sleeps in `io_uring_enter`. It must never sleep
//! while a message waits for it, and a producer must not pay a syscall per message. The
//! protocol:
//!
//! * **Consumer**, before sleeping: drain its inbound channels, then call
//!   [`Receiver::park`] on each. `park` sets `parked = true` and re-checks the ring. If
//!   any `park` returns `false`, messages arrived meanwhile, so don't sleep (drain
//!   instead). Otherwise sleep; after waking call [`Receiver::unpark`] (optional, it only
//!   saves the producer a spurious wake) and drain again.
//! * **Producer**, after pushing (once per tick, after the batch, not per message): call
//!   [`Sender::needs_wake`]. If it returns `true`, post one `IORING_OP_MSG_RING` to the
//!   consumer's ring. `needs_wake` swaps `parked` back to `false`, so at most one wake is
//!   sent per park.
//!
//! Spurious wakes are possible (a wake may land while the consumer is already awake) and
//! harmless: the consumer just drains an empty channel. Lost wakes are impossible:
//!
//! **Ordering argument.** Each side stores to its own variable, issues a `SeqCst` fence,
//! then loads the other side's variable: the producer stores `tail` (fence `Fp`) then
//! loads `parked`; the consumer stores `parked = true` (fence `Fc`) then loads `tail`.
//! `SeqCst` fences are totally ordered, and by the fence rule of the C++20 memory model
//! (\[atomics.order\]: if store `A` is sequenced before fence `X`, fence `Y` is sequenced
//! before load `B`, and `X` precedes `Y` in the total order, then `B` observes `A` or a
//! later modification) whichever fence comes second sees the other side's store. So if
//! the consumer's re-check saw the ring empty (it did not see the new `tail`), then
//! `Fc` precedes `Fp`, and the producer's `needs_wake` observes `parked = true` or a
//! later value of `parked`. A later value exists only if a previous `needs_wake` already
//! swapped this park's `true` (a wake was already sent) or the consumer stored `false`
//! itself after waking (it is awake and will drain or re-park, whose re-check repeats
//! this argument). Otherwise the swap reads `true` and returns it, and the wake is sent.
//! The message data itself is published by the `Release` store of `tail` and read after
//! an `Acquire` load of it, independently of the wake.
//!
//! # Example
//!
//! ```
//! use ringfort::channel::channel;
//!
//! let (mut tx, mut rx) = channel::<u64>(1000)?; // rounded up to 1024 slots
//! assert_eq!(tx.capacity(), 1024);
//!
//! // Consumer core: nothing to do, so announce the intention to sleep.
//! assert!(rx.park()); // ring empty: it may sleep in io_uring_enter
//!
//! // Producer core, during its tick:
//! tx.try_send(7).expect("room");
//! tx.try_send(8).expect("room");
//! // After its tick:
//! if tx.needs_wake() {
//!     // post IORING_OP_MSG_RING to the consumer's ring here
//! }
//! assert!(!tx.needs_wake(), "one wake per park");
//!
//! // Consumer core, on the MSG_RING completion:
//! rx.unpark();
//! let mut got = Vec::new();
//! let n = rx.drain(64, |m| got.push(m)); // bounded work per tick
//! assert_eq!((n, got), (2, vec![7, 8]));
//! # Ok::<(), ringfort::channel::ChannelError>(())
//! ```
//!
//! `Sender` and `Receiver` are not `Clone`: single producer and single consumer are
//! enforced by ownership, and the hot methods take `&mut self`.
//!
//! ```compile_fail
//! let (tx, _rx) = ringfort::channel::channel::<u32>(4).unwrap();
//! let _second_producer = tx.clone();
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The largest capacity [`channel`] accepts (after rounding up to a power of two):
/// 2^24 slots per core pair. Larger values are almost certainly configuration mistakes,
/// and they would make a single allocation of `capacity * size_of::<T>()` bytes.
pub const MAX_CAPACITY: usize = 1 << 24;

/// Why [`channel`] could not build a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// A capacity of zero was requested; a channel needs at least one slot.
    #[error("channel capacity must be at least 1 (got 0); set a positive per-core-pair channel capacity")]
    ZeroCapacity,
    /// The requested capacity, rounded up to a power of two, exceeds [`MAX_CAPACITY`].
    #[error("channel capacity {requested} exceeds the maximum of {max} slots per core pair")]
    TooLarge {
        /// The capacity that was asked for.
        requested: usize,
        /// The largest capacity allowed ([`MAX_CAPACITY`]).
        max: usize,
    },
}

/// The error of [`Sender::try_send`] when the channel is full: the message is handed back.
///
/// Nothing was enqueued; the caller keeps ownership of the message and decides what to do
/// (retry on a later tick, drop it, or treat the peer as too slow).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T> {
    msg: T,
}

impl<T> Full<T> {
    /// Wraps a refused message (the engine also refuses sends to a core that does not
    /// exist this way).
    pub(crate) fn new(msg: T) -> Full<T> {
        Full { msg }
    }

    /// Returns the message that could not be sent.
    pub fn into_inner(self) -> T {
        self.msg
    }

    /// Borrows the message that could not be sent.
    pub fn get_ref(&self) -> &T {
        &self.msg
    }
}

impl<T> fmt::Debug for Full<T> {
    // Like std's `TrySendError`, the message is not printed: it may be large, and `T`
    // need not be `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Full").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cross-core channel is full; the message was handed back to the sender")
    }
}

impl<T> std::error::Error for Full<T> {}

/// Aligns (and so pads) its content to 128 bytes, so it shares no cache line, nor an
/// adjacent-line-prefetch pair, with anything else.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// The state both sides share.
///
/// Invariants (indices are free-running counters compared with wrapping arithmetic):
/// * `0 <= tail - head <= capacity` at all times;
/// * the slots at indices `head .. tail` (mod capacity) hold initialised messages, all
///   other slots are uninitialised;
/// * only the [`Sender`] writes `tail` and writes slots; only the [`Receiver`] writes
///   `head` and reads (moves out of) slots.
struct Shared<T> {
    /// Count of messages taken out. Written by the consumer (`Release`) after it moved the
    /// message out of its slot.
    head: CachePadded<AtomicUsize>,
    /// Count of messages put in. Written by the producer (`Release`) after it wrote the
    /// message into its slot.
    tail: CachePadded<AtomicUsize>,
    /// The consumer announced it may sleep and no wake has been claimed since.
    parked: CachePadded<AtomicBool>,
    /// `capacity - 1`; capacity is a power of two.
    mask: usize,
    /// The ring. Read-only pointer and length; the cells are accessed per the invariants.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: `Shared<T>` is used from exactly two threads, the owner of the `Sender` and the
// owner of the `Receiver`. The atomics are `Sync`. The `UnsafeCell` slots are never
// accessed by both sides at once: the producer only writes slots in `tail .. head +
// capacity`, the consumer only reads slots in `head .. tail`, and those ranges are
// disjoint. A slot moves from one range to the other only through a `Release` store of
// `tail` (resp. `head`) that the other side reads with `Acquire`, so every access to a
// slot happens-before the next access by the other side. Messages are moved from the
// producer's thread to the consumer's, which requires `T: Send`; no `&T` is ever shared
// between threads, so `T: Sync` is not required.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: `Shared<T>` owns `T` values (inside the slots) and drops them on whichever
// thread drops the last `Arc`; that only requires `T: Send`. The rest is atomics and a
// boxed slice.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Moves `msg` into the slot for index `idx`.
    ///
    /// # Safety
    ///
    /// The caller is the unique producer, and slot `idx` is free: `idx - head < capacity`
    /// for a value of `head` it loaded with `Acquire` (so the consumer's move out of the
    /// previous occupant happened-before this write), and `idx` is not yet published in
    /// `tail` (so the consumer does not read it).
    unsafe fn write(&self, idx: usize, msg: T) {
        let slot = &self.slots[idx & self.mask];
        // SAFETY: per this function's contract no other access to this slot is in
        // progress or can start until `tail` is published past `idx`, so creating a
        // unique reference to the cell's content is sound. The slot holds no initialised
        // message (it is outside `head .. tail`), so overwriting it leaks nothing.
        unsafe { (*slot.get()).write(msg) };
    }

    /// Moves the message out of the slot for index `idx`, leaving it logically
    /// uninitialised.
    ///
    /// # Safety
    ///
    /// The caller is the unique consumer, `idx` lies in `head .. tail` for a value of
    /// `tail` it loaded with `Acquire` (so the producer's write happened-before this
    /// read), and the caller advances its head past `idx` before the slot can be read
    /// again (so the message is moved out exactly once).
    unsafe fn read(&self, idx: usize) -> T {
        let slot = &self.slots[idx & self.mask];
        // SAFETY: per this function's contract the slot holds an initialised message
        // whose write happened-before this read, and the producer will not touch the slot
        // until `head` is published past `idx`, so this is the only access; the caller
        // treats the slot as empty afterwards, so the message is not duplicated.
        unsafe { (*slot.get()).assume_init_read() }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both `Sender` and `Receiver` are gone (this is the last `Arc`), and `Arc`'s drop
        // synchronises with their final stores. Both sides publish their index before
        // their handle can be dropped (`try_recv` and `drain` publish `head` even if the
        // drain callback panics), so `head .. tail` is exactly the set of initialised
        // slots.
        let head = *self.head.get_mut();
        let tail = *self.tail.get_mut();
        debug_assert!(tail.wrapping_sub(head) <= self.capacity());
        let mut idx = head;
        while idx != tail {
            let slot = self.slots[idx & self.mask].get_mut();
            // SAFETY: `idx` is in `head .. tail`, so the slot holds an initialised message
            // that was not moved out; we have `&mut self`, so nothing else can access it;
            // each index is visited once, so each leftover message is dropped exactly
            // once.
            unsafe { slot.assume_init_drop() };
            idx = idx.wrapping_add(1);
        }
    }
}

/// Creates a bounded SPSC channel holding at least `capacity` messages.
///
/// The capacity is rounded up to the next power of two (read it back with
/// [`Sender::capacity`]). The ring is allocated once, here; sending and receiving never
/// allocate.
///
/// # Errors
///
/// [`ChannelError::ZeroCapacity`] if `capacity` is zero, and [`ChannelError::TooLarge`]
/// if the rounded capacity would exceed [`MAX_CAPACITY`].
pub fn channel<T: Send>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), ChannelError> {
    channel_starting_at(capacity, 0)
}

/// [`channel`] with both free-running indices starting at `start` instead of 0, so tests
/// can exercise the wrap of the counters around `usize::MAX`.
fn channel_starting_at<T: Send>(
    capacity: usize,
    start: usize,
) -> Result<(Sender<T>, Receiver<T>), ChannelError> {
    if capacity == 0 {
        return Err(ChannelError::ZeroCapacity);
    }
    let cap = match capacity.checked_next_power_of_two() {
        Some(cap) if cap <= MAX_CAPACITY => cap,
        _ => {
            return Err(ChannelError::TooLarge {
                requested: capacity,
                max: MAX_CAPACITY,
            })
        }
    };
    let slots: Box<[UnsafeCell<MaybeUninit<T>>]> = (0..cap)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(start)),
        tail: CachePadded(AtomicUsize::new(start)),
        parked: CachePadded(AtomicBool::new(false)),
        mask: cap - 1,
        slots,
    });
    let tx = Sender {
        shared: Arc::clone(&shared),
        tail: start,
        cached_head: start,
        sent: 0,
        rejected: 0,
    };
    let rx = Receiver {
        shared,
        head: start,
        cached_tail: start,
        received: 0,
    };
    Ok((tx, rx))
}

/// The producing half of a channel. Owned by one core; `Send`, not `Clone`.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    /// Private copy of `shared.tail` (only this side writes it).
    tail: usize,
    /// Last value of `shared.head` seen; stale values only make the ring look fuller.
    cached_head: usize,
    sent: u64,
    rejected: u64,
}

impl<T> Sender<T> {
    /// Tries to enqueue `msg` without blocking.
    ///
    /// On success the message is visible to the receiver immediately (a `Release` store).
    /// After a batch of sends, call [`needs_wake`](Self::needs_wake) once to learn whether
    /// the consumer must be woken.
    ///
    /// # Errors
    ///
    /// [`Full`] if the channel holds [`capacity`](Self::capacity) messages. The message is
    /// handed back untouched, and the [`rejected`](Self::rejected) counter is incremented.
    #[inline]
    pub fn try_send(&mut self, msg: T) -> Result<(), Full<T>> {
        let shared = &*self.shared;
        let tail = self.tail;
        if tail.wrapping_sub(self.cached_head) > shared.mask {
            // Looks full from the cached head: refresh it. `Acquire` pairs with the
            // consumer's `Release` store of `head`, so its moves out of the slots it
            // freed happen-before our writes into them.
            self.cached_head = shared.head.load(Ordering::Acquire);
            if tail.wrapping_sub(self.cached_head) > shared.mask {
                self.rejected += 1;
                return Err(Full { msg });
            }
        }
        // SAFETY: we are the unique producer (`&mut self`, `Sender` is not `Clone`);
        // `tail - cached_head < capacity` with `cached_head` loaded with `Acquire` (here
        // or earlier; `head` only grows, so an older value is conservative), so the slot
        // is free; `tail` is not yet published, so the consumer does not read it.
        unsafe { shared.write(tail, msg) };
        let next = tail.wrapping_add(1);
        // `Release`: publishes the slot write above to the consumer's `Acquire` load.
        shared.tail.store(next, Ordering::Release);
        self.tail = next;
        self.sent += 1;
        Ok(())
    }

    /// Whether the consumer must be woken: returns `true` if the receiver announced it
    /// is parked ([`Receiver::park`]) and no wake has been claimed since, and clears the
    /// announcement. Returns `true` at most once per park.
    ///
    /// Call it after pushing (once per tick, after the batch); when it returns `true`,
    /// post exactly one `IORING_OP_MSG_RING` to the consumer's ring. It costs one `SeqCst`
    /// fence, plus an atomic swap only when the consumer is parked. See the module docs
    /// for why no wake is lost.
    pub fn needs_wake(&self) -> bool {
        let parked = &self.shared.parked;
        // Fence `Fp`: orders our earlier `tail` stores before the load of `parked` below.
        // Either this fence follows the consumer's fence `Fc` in the SeqCst total order,
        // and then the load observes the consumer's `parked = true` (or a later value),
        // or it precedes `Fc`, and then the consumer's re-check of `tail` sees our
        // messages and it does not sleep.
        fence(Ordering::SeqCst);
        // Fast path: the consumer is awake, so don't take its cache line exclusively.
        if !parked.load(Ordering::Relaxed) {
            return false;
        }
        // Claim the wake: only one swap can read a given park's `true`. `Relaxed` is
        // enough, `parked` carries no data (messages are published through `tail`).
        parked.swap(false, Ordering::Relaxed)
    }

    /// The channel's capacity (the requested capacity rounded up to a power of two).
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Number of messages in the channel. Exact for what this side sent; the consumer
    /// may have taken more out since, so the value can only be an overestimate.
    pub fn len(&self) -> usize {
        let head = self.shared.head.load(Ordering::Relaxed);
        self.tail.wrapping_sub(head)
    }

    /// Whether the channel is empty (see [`len`](Self::len) for precision).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of messages successfully sent through this sender.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Number of [`try_send`](Self::try_send) calls rejected with [`Full`].
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether the [`Receiver`] has been dropped. A hint (it may become true right after
    /// this returns `false`). Messages sent to a dropped receiver stay in the ring (it
    /// fills up and then rejects with [`Full`]) and are dropped with the sender.
    pub fn is_disconnected(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("sent", &self.sent)
            .field("rejected", &self.rejected)
            .finish()
    }
}

/// The consuming half of a channel. Owned by one core; `Send`, not `Clone`.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Private copy of `shared.head` (only this side writes it). Between a `drain`'s
    /// moves and its final publish it may run ahead of `shared.head`.
    head: usize,
    /// Last value of `shared.tail` seen; stale values only make the ring look emptier.
    cached_tail: usize,
    received: u64,
}

impl<T> Receiver<T> {
    /// Takes the oldest message, or returns `None` if the channel is empty.
    #[inline]
    pub fn try_recv(&mut self) -> Option<T> {
        let shared = &*self.shared;
        let head = self.head;
        if head == self.cached_tail {
            // Looks empty from the cached tail: refresh it. `Acquire` pairs with the
            // producer's `Release` store of `tail`, so its slot writes happen-before our
            // reads.
            self.cached_tail = shared.tail.load(Ordering::Acquire);
            if head == self.cached_tail {
                return None;
            }
        }
        // SAFETY: we are the unique consumer (`&mut self`, `Receiver` is not `Clone`);
        // `head` is in `head .. cached_tail` with `cached_tail` loaded with `Acquire`;
        // we advance `head` right below, before any other read.
        let msg = unsafe { shared.read(head) };
        let next = head.wrapping_add(1);
        self.head = next;
        // `Release`: our move out of the slot happens-before the producer reuses it.
        shared.head.store(next, Ordering::Release);
        self.received += 1;
        Some(msg)
    }

    /// Takes up to `max` messages, oldest first, passing each to `f`; returns how many.
    ///
    /// Bounded work per tick: it considers only the messages present when it starts (at
    /// most `max`), and frees their slots for the producer with a single index store at
    /// the end. If `f` panics, the messages already taken stay taken (the one being
    /// handled is dropped by the unwinding `f`), so nothing is dropped twice or leaked.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut available = self.cached_tail.wrapping_sub(self.head);
        if available < max {
            // `Acquire`: see `try_recv`.
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            available = self.cached_tail.wrapping_sub(self.head);
        }
        let n = available.min(max);
        if n == 0 {
            return 0;
        }
        let guard = PublishHead { rx: self };
        for _ in 0..n {
            let head = guard.rx.head;
            // SAFETY: we are the unique consumer (`&mut self`); `head` is in `head ..
            // cached_tail` (we take `n <= cached_tail - head` messages) with `cached_tail`
            // loaded with `Acquire`; we advance our private `head` before handing the
            // message out, and `guard` publishes it to `shared.head` when the loop ends
            // or unwinds, so the slot is never read twice nor reclaimed while unread.
            let msg = unsafe { guard.rx.shared.read(head) };
            guard.rx.head = head.wrapping_add(1);
            guard.rx.received += 1;
            f(msg);
        }
        n
    }

    /// Announces that the consumer is about to sleep, and re-checks the ring.
    ///
    /// Returns `true` if the channel is empty: the consumer may sleep, and the producer's
    /// next [`Sender::needs_wake`] after a send will return `true`. Returns `false` if
    /// messages are already available: don't sleep, drain instead (the announcement is
    /// withdrawn). A core with several inbound channels parks each of them and sleeps
    /// only if all returned `true`.
    pub fn park(&self) -> bool {
        let shared = &*self.shared;
        shared.parked.store(true, Ordering::Relaxed);
        // Fence `Fc`: orders the store of `parked` before the load of `tail` below.
        // Either `Fc` precedes the producer's fence `Fp` in the SeqCst total order, and
        // then its `needs_wake` observes `parked = true` (or a later value, see the
        // module docs), or it follows `Fp`, and then the load below observes the
        // producer's `tail`.
        fence(Ordering::SeqCst);
        if shared.tail.load(Ordering::Acquire) != self.head {
            // Messages already available: withdraw. If the producer claimed the wake in
            // between, one spurious wake follows, which is harmless.
            shared.parked.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Withdraws a [`park`](Self::park) announcement after waking up (optional: it only
    /// saves the producer from sending a spurious wake for a park that already ended).
    /// Drain after calling it, then park again before the next sleep.
    pub fn unpark(&self) {
        self.shared.parked.store(false, Ordering::Relaxed);
    }

    /// The channel's capacity (the requested capacity rounded up to a power of two).
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Number of messages in the channel. Exact for what this side took out; the
    /// producer may have sent more since, so the value can only be an underestimate.
    pub fn len(&self) -> usize {
        let tail = self.shared.tail.load(Ordering::Relaxed);
        tail.wrapping_sub(self.head)
    }

    /// Whether the channel is empty (see [`len`](Self::len) for precision).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of messages received through this receiver.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether the [`Sender`] has been dropped. A hint (it may become true right after
    /// this returns `false`). Messages sent before the sender was dropped can still be
    /// received.
    pub fn is_disconnected(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("received", &self.received)
            .finish()
    }
}

/// Publishes the receiver's private `head` to `shared.head` when dropped, including
/// during unwinding from a panicking `drain` callback.
struct PublishHead<'a, T> {
    rx: &'a mut Receiver<T>,
}

impl<T> Drop for PublishHead<'_, T> {
    fn drop(&mut self) {
        // `Release`: our moves out of the slots happen-before the producer reuses them.
        self.rx.shared.head.store(self.rx.head, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{mpsc, Condvar, Mutex};
    use std::thread;
    use std::time::Duration;

    /// Counts its drops in a shared counter.
    struct Counted {
        id: usize,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn channel_handles_are_send_and_sync() {
        assert_send::<Sender<String>>();
        assert_send::<Receiver<String>>();
        assert_sync::<Sender<String>>();
        assert_sync::<Receiver<String>>();
        // Non-Sync payloads are fine: they are moved, never shared.
        assert_send::<Sender<std::cell::Cell<u8>>>();
        assert_send::<Receiver<std::cell::Cell<u8>>>();
    }

    #[test]
    fn channel_capacity_rounds_up_and_validates() {
        assert_eq!(channel::<u8>(0).unwrap_err(), ChannelError::ZeroCapacity);
        for (asked, got) in [(1, 1), (2, 2), (3, 4), (5, 8), (1000, 1024), (1024, 1024)] {
            let (tx, rx) = channel::<u8>(asked).unwrap();
            assert_eq!((tx.capacity(), rx.capacity()), (got, got));
        }
        let too_big = MAX_CAPACITY + 1;
        assert_eq!(
            channel::<u8>(too_big).unwrap_err(),
            ChannelError::TooLarge {
                requested: too_big,
                max: MAX_CAPACITY
            }
        );
        assert!(matches!(
            channel::<u8>(usize::MAX),
            Err(ChannelError::TooLarge { .. })
        ));
        let msg = ChannelError::ZeroCapacity.to_string();
        assert!(msg.contains("at least 1"), "{msg}");
    }

    #[test]
    fn channel_fifo_order() {
        let (mut tx, mut rx) = channel(8).unwrap();
        for i in 0..8 {
            tx.try_send(i).unwrap();
        }
        assert_eq!((tx.len(), rx.len()), (8, 8));
        for i in 0..8 {
            assert_eq!(rx.try_recv(), Some(i));
        }
        assert_eq!(rx.try_recv(), None);
        assert!(tx.is_empty() && rx.is_empty());
        assert_eq!((tx.sent(), rx.received()), (8, 8));
    }

    #[test]
    fn channel_wraparound_slots_and_counters() {
        // Start the free-running indices just below usize::MAX so they wrap too.
        for start in [0, usize::MAX - 5] {
            let (mut tx, mut rx) = channel_starting_at(4, start).unwrap();
            let mut next_out = 0u32;
            let mut next_in = 0u32;
            for round in 0..50u32 {
                // Varying fill levels walk the slot index around the ring many times.
                let burst = round % 4 + 1;
                for _ in 0..burst {
                    tx.try_send(next_in).unwrap();
                    next_in += 1;
                }
                assert_eq!(tx.len(), burst as usize);
                for _ in 0..burst {
                    assert_eq!(rx.try_recv(), Some(next_out));
                    next_out += 1;
                }
                assert_eq!(rx.try_recv(), None);
            }
            assert_eq!(next_out, next_in);
        }
    }

    #[test]
    fn channel_full_hands_message_back_intact() {
        let (mut tx, mut rx) = channel::<String>(2).unwrap();
        tx.try_send("a".to_owned()).unwrap();
        tx.try_send("b".to_owned()).unwrap();
        let err = tx.try_send("c".to_owned()).unwrap_err();
        assert_eq!(err.get_ref(), "c");
        assert_eq!(format!("{err:?}"), "Full { .. }");
        assert!(err.to_string().contains("full"));
        let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
        assert!(boxed.to_string().contains("handed back"));
        assert_eq!(err.into_inner(), "c");
        assert_eq!((tx.rejected(), tx.sent(), tx.len()), (1, 2, 2));

        // Space again after a receive; the rejected message can be resent.
        assert_eq!(rx.try_recv().as_deref(), Some("a"));
        tx.try_send("c".to_owned()).unwrap();
        assert_eq!(tx.try_send("d".to_owned()).unwrap_err().into_inner(), "d");
        assert_eq!(tx.rejected(), 2);
        let mut got = Vec::new();
        rx.drain(usize::MAX, |m| got.push(m));
        assert_eq!(got, ["b", "c"]);
    }

    #[test]
    fn channel_drain_respects_max() {
        let (mut tx, mut rx) = channel(16).unwrap();
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        let mut got = Vec::new();
        assert_eq!(rx.drain(0, |m| got.push(m)), 0);
        assert_eq!(rx.drain(3, |m| got.push(m)), 3);
        assert_eq!(got, [0, 1, 2]);
        assert_eq!((tx.len(), rx.len()), (7, 7));
        assert_eq!(rx.drain(100, |m| got.push(m)), 7);
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(rx.drain(100, |m| got.push(m)), 0);
        // The producer sees the freed space.
        for i in 0..16 {
            tx.try_send(i).unwrap();
        }
        assert!(tx.try_send(16).is_err());
    }

    #[test]
    fn channel_drop_with_leftovers_drops_each_exactly_once() {
        for receiver_first in [false, true] {
            for start in [0, usize::MAX - 2] {
                let drops = Arc::new(AtomicUsize::new(0));
                let make = |id| Counted {
                    id,
                    drops: Arc::clone(&drops),
                };
                let (mut tx, mut rx) = channel_starting_at(4, start).unwrap();
                // Wrap the ring once, then leave 3 messages in it.
                for id in 0..4 {
                    tx.try_send(make(id)).unwrap();
                }
                let rejected = tx.try_send(make(99)).unwrap_err();
                drop(rejected);
                assert_eq!(drops.load(Ordering::SeqCst), 1);
                let first = rx.try_recv().unwrap();
                assert_eq!(first.id, 0);
                drop(first);
                assert_eq!(rx.drain(2, drop), 2);
                tx.try_send(make(4)).unwrap();
                tx.try_send(make(5)).unwrap();
                assert_eq!(drops.load(Ordering::SeqCst), 4);
                if receiver_first {
                    drop(rx);
                    assert!(tx.is_disconnected());
                    tx.try_send(make(6)).unwrap();
                    assert_eq!(drops.load(Ordering::SeqCst), 4);
                    drop(tx);
                    // 3, 4, 5 and 6 were left in the ring.
                    assert_eq!(drops.load(Ordering::SeqCst), 8);
                } else {
                    drop(tx);
                    assert!(rx.is_disconnected());
                    assert_eq!(rx.try_recv().map(|m| m.id), Some(3));
                    assert_eq!(drops.load(Ordering::SeqCst), 5);
                    drop(rx);
                    // 4 and 5 were left in the ring.
                    assert_eq!(drops.load(Ordering::SeqCst), 7);
                }
            }
        }
    }

    #[test]
    fn channel_drain_callback_panic_neither_leaks_nor_double_drops() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = channel(8).unwrap();
        for id in 0..5 {
            tx.try_send(Counted {
                id,
                drops: Arc::clone(&drops),
            })
            .unwrap();
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.drain(10, |m| {
                if m.id == 2 {
                    panic!("handler failed");
                }
            })
        }));
        assert!(result.is_err());
        // 0, 1 dropped by the callback, 2 dropped while unwinding.
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        assert_eq!((tx.len(), rx.len()), (2, 2));
        assert_eq!(rx.try_recv().map(|m| m.id), Some(3));
        drop((tx, rx));
        assert_eq!(drops.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn channel_zero_sized_messages() {
        let (mut tx, mut rx) = channel::<()>(2).unwrap();
        tx.try_send(()).unwrap();
        tx.try_send(()).unwrap();
        assert!(tx.try_send(()).is_err());
        assert_eq!(rx.drain(8, |()| {}), 2);
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn channel_park_and_needs_wake_protocol() {
        let (mut tx, mut rx) = channel::<u32>(4).unwrap();
        // Nobody parked: no wake.
        tx.try_send(1).unwrap();
        assert!(!tx.needs_wake());
        // Messages available: park refuses and withdraws.
        assert!(!rx.park());
        assert!(!tx.needs_wake());
        assert_eq!(rx.drain(8, drop), 1);
        // Empty: park succeeds; the next needs_wake claims it, exactly once.
        assert!(rx.park());
        tx.try_send(2).unwrap();
        assert!(tx.needs_wake());
        assert!(!tx.needs_wake());
        tx.try_send(3).unwrap();
        assert!(!tx.needs_wake());
        // Woken: drain, park again, wake again.
        assert_eq!(rx.drain(8, drop), 2);
        assert!(rx.park());
        assert!(tx.needs_wake());
        // unpark withdraws an announcement nobody claimed.
        assert!(rx.park());
        rx.unpark();
        tx.try_send(4).unwrap();
        assert!(!tx.needs_wake());
    }

    #[test]
    fn channel_debug_output() {
        let (mut tx, rx) = channel::<u8>(3).unwrap();
        tx.try_send(1).unwrap();
        assert_eq!(
            format!("{tx:?}"),
            "Sender { capacity: 4, len: 1, sent: 1, rejected: 0 }"
        );
        assert_eq!(
            format!("{rx:?}"),
            "Receiver { capacity: 4, len: 1, received: 0 }"
        );
    }

    /// Messages per stress run: ~1e6 in release, fewer in debug builds and on CI, and a
    /// few hundred under Miri.
    fn stress_messages() -> u64 {
        if cfg!(miri) {
            return 300;
        }
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        match (cfg!(debug_assertions), ci) {
            (false, false) => 1_000_000,
            (false, true) => 200_000,
            (true, false) => 200_000,
            (true, true) => 50_000,
        }
    }

    /// Capacities small enough that the ring is often full and often empty.
    const STRESS_CAPACITY: usize = if cfg!(miri) { 4 } else { 64 };

    /// Waits for a spawned thread with a generous bound, so a lost wakeup fails the
    /// test with a message instead of hanging CI. This bounds a hang; it does not time
    /// anything.
    fn join_or_fail<R: Send + 'static>(
        what: &str,
        handle: thread::JoinHandle<R>,
        done: mpsc::Receiver<()>,
    ) -> R {
        match done.recv_timeout(Duration::from_secs(600)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{what} did not finish in 600 s: lost wakeup or deadlock")
            }
        }
        handle.join().unwrap_or_else(|_| panic!("{what} panicked"))
    }

    #[test]
    fn channel_stress_two_threads_spinning() {
        let n = stress_messages();
        let (mut tx, mut rx) = channel::<u64>(STRESS_CAPACITY).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let consumer = thread::spawn(move || {
            let mut expected = 0u64;
            while expected < n {
                let got = rx.drain(32, |v| {
                    assert_eq!(v, expected, "out of order, lost or duplicated");
                    expected += 1;
                });
                if got == 0 {
                    if let Some(v) = rx.try_recv() {
                        assert_eq!(v, expected, "out of order, lost or duplicated");
                        expected += 1;
                    } else {
                        thread::yield_now();
                    }
                }
            }
            assert_eq!(rx.try_recv(), None, "more messages than were sent");
            let _ = done_tx.send(());
            rx.received()
        });
        let mut rejected = 0u64;
        for i in 0..n {
            let mut msg = i;
            loop {
                match tx.try_send(msg) {
                    Ok(()) => break,
                    Err(full) => {
                        msg = full.into_inner();
                        rejected += 1;
                        thread::yield_now();
                    }
                }
            }
        }
        assert_eq!(tx.rejected(), rejected);
        assert_eq!(tx.sent(), n);
        assert_eq!(join_or_fail("consumer", consumer, done_rx), n);
    }

    /// Stands in for the consumer's io_uring: `ring` is `IORING_OP_MSG_RING` (it posts a
    /// completion that stays pending until reaped, even if nobody is sleeping yet), and
    /// `sleep` is `io_uring_enter` waiting for at least one completion.
    #[derive(Default)]
    struct Doorbell {
        pending: Mutex<u64>,
        cv: Condvar,
    }

    impl Doorbell {
        fn ring(&self) {
            *self.pending.lock().unwrap() += 1;
            self.cv.notify_one();
        }

        /// Sleeps until at least one wake is pending, then reaps all of them.
        fn sleep(&self) -> u64 {
            let mut pending = self.pending.lock().unwrap();
            while *pending == 0 {
                pending = self.cv.wait(pending).unwrap();
            }
            std::mem::take(&mut *pending)
        }
    }

    #[test]
    fn channel_stress_two_threads_parking_loses_no_wakeup() {
        let n = stress_messages();
        let (mut tx, mut rx) = channel::<u64>(STRESS_CAPACITY).unwrap();
        let bell = Arc::new(Doorbell::default());
        let (done_tx, done_rx) = mpsc::channel();

        let consumer_bell = Arc::clone(&bell);
        let consumer = thread::spawn(move || {
            let mut expected = 0u64;
            let mut sleeps = 0u64;
            while expected < n {
                // One "tick": bounded drain.
                let got = rx.drain(16, |v| {
                    assert_eq!(v, expected, "out of order, lost or duplicated");
                    expected += 1;
                });
                if got > 0 || expected == n {
                    continue;
                }
                // Out of work: announce, re-check, and sleep only if still empty. The
                // only thing that wakes us is the producer's needs_wake() == true.
                if rx.park() {
                    consumer_bell.sleep();
                    sleeps += 1;
                    rx.unpark();
                }
            }
            assert_eq!(rx.try_recv(), None, "more messages than were sent");
            let _ = done_tx.send(());
            sleeps
        });

        let mut wakes = 0u64;
        let mut wake_if_needed = |tx: &Sender<u64>| {
            if tx.needs_wake() {
                bell.ring();
                wakes += 1;
            }
        };
        let mut i = 0u64;
        while i < n {
            // One producer "tick": push a batch, stop early at the bound, then check
            // for a wake once.
            let batch_end = (i + 1 + i % 7).min(n);
            let mut hit_bound = false;
            while i < batch_end {
                match tx.try_send(i) {
                    Ok(()) => i += 1,
                    Err(full) => {
                        assert_eq!(full.into_inner(), i);
                        hit_bound = true;
                        break;
                    }
                }
            }
            wake_if_needed(&tx);
            if hit_bound || i % 5 == 0 {
                // Let the consumer catch up, empty the ring and go to sleep now and then.
                thread::yield_now();
            }
        }
        wake_if_needed(&tx);
        let sleeps = join_or_fail("parking consumer", consumer, done_rx);
        // Every sleep needed a wake; extra wakes (claimed after the consumer saw work
        // on its own) are allowed, so this is the only relation that must hold.
        assert!(wakes >= sleeps, "slept {sleeps} times on {wakes} wakes");
        eprintln!("parking stress: {n} messages, {sleeps} sleeps, {wakes} wakes");
    }
}
