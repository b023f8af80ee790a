//! # ringfort-pool
//!
//! Ringfort's memory: one [`Arena`] per core, from which every socket receive, every reply
//! and every WAL batch takes its buffers, and which the engine registers with io_uring as
//! fixed buffers. It knows nothing of io_uring itself.
//!
//! ## How data flows through it
//!
//! 1. **Mapping.** [`Arena::new`] maps one chunk of memory, choosing 2 MiB hugetlb pages
//!    when enough are reserved, else transparent huge pages, else 4 KiB pages
//!    ([`Backing`]). It binds the chunk to its core's NUMA node before the first touch
//!    (hwloc, the `numa` feature), prefaults it so it can never SIGBUS later, reads the
//!    placement back, and logs one line saying what it got ([`ArenaReport`]).
//! 2. **Size classes.** Each chunk is carved into regions of fixed-size buffers (defaults 4,
//!    16 and 64 KiB and 1 MiB). [`Arena::alloc`] pops from the owner's per-class free list:
//!    O(1), no lock, no atomic read-modify-write. When a class runs dry the arena maps
//!    another whole chunk, up to its cap, or returns [`PoolError::Exhausted`].
//! 3. **Buffers.** A [`PoolBuf`] owns one block. It may travel to and be dropped on any
//!    thread; off the owner thread it goes back through a bounded lock-free return queue
//!    that the owner drains. [`PoolBuf::into_shared`] gives a reference-counted
//!    [`SharedBuf`] that many holders can read, freed once when the last one drops.
//! 4. **Messages.** A [`BufChain`] strings blocks together so a message of any size up to
//!    the chain's maximum is held without a contiguous copy; it splits, advances, clones
//!    by sharing, and reads integers across block boundaries.
//! 5. **Registration.** [`Arena::iovecs`] and [`PoolBuf::reg_slot`] give io_uring the
//!    iovecs (at most 16384, each at most 1 GiB) and each buffer's index and offset;
//!    [`Arena::memlock_bytes`] is what `RLIMIT_MEMLOCK` must cover, checked up front.
//!
//! ```
//! use ringfort_pool::{Arena, BufChain, PoolConfig, Registration};
//!
//! let arena = Arena::new(PoolConfig {
//!     registration: Registration::Off,
//!     ..PoolConfig::default()
//! })?;
//! let mut msg = BufChain::new(1 << 20);
//! msg.append_slice(&arena, b"hello, ")?;
//! msg.append_slice(&arena, &[b'x'; 10_000])?;
//! let head = msg.split_to(7);
//! assert_eq!(head.to_vec(), b"hello, ");
//! assert_eq!(msg.len(), 10_000);
//! # Ok::<(), ringfort_pool::PoolError>(())
//! ```
//!
//! ## Unsafe code
//!
//! The free lists, the return queue, the buffer handles and the chain use `unsafe`; each
//! block argues its soundness in a `// SAFETY:` comment, and the tests run under Miri
//! (`cargo +nightly miri test -p ringfort-pool --no-default-features`), where the arena
//! maps heap memory instead of `mmap`.

mod arena;
mod backing;
mod buf;
mod chain;
mod config;
mod error;
mod memlock;
pub mod numa;
mod remote;
mod stats;

pub use arena::{Arena, ArenaReport};
pub use backing::{Backing, HugePages};
pub use buf::{PoolBuf, RegSlot, SharedBuf};
pub use chain::BufChain;
pub use config::{
    BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass, HUGE_PAGE, MAX_CHUNKS,
    MAX_CLASSES, MAX_IOVECS, MAX_IOVEC_LEN,
};
pub use error::PoolError;
pub use memlock::{has_cap_ipc_lock, memlock_limit, RegistrationReport};
pub use numa::NumaBinding;
pub use stats::{ArenaStats, ChunkStats, ClassStats};
