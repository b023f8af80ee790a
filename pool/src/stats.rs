//! Counters an arena keeps per class and per chunk.

use crate::backing::Backing;
use crate::memlock::RegistrationReport;
use crate::numa::NumaBinding;

/// Counters of one size class. Read on the owning thread with [`crate::Arena::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes per buffer.
    pub size: usize,
    /// Buffers of this class in all mapped chunks.
    pub capacity: usize,
    /// Buffers handed out and not yet back (remote frees count until reclaimed).
    pub in_use: usize,
    /// The most buffers in use at once.
    pub high_water: usize,
    /// Allocations refused because the class was exhausted at the cap.
    pub failures: u64,
    /// Allocations served.
    pub allocs: u64,
    /// The weakest backing among the chunks (every class has a region in every chunk).
    pub backing: Backing,
}

/// Backing and placement of one mapped chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkStats {
    /// Bytes mapped.
    pub bytes: usize,
    /// The pages the kernel gave it.
    pub backing: Backing,
    /// Its NUMA placement, read back after prefault.
    pub numa: NumaBinding,
    /// Why a stronger backing was not used, when it was not.
    pub fallback: Option<String>,
}

/// A snapshot of an arena's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaStats {
    /// Per size class, ascending.
    pub classes: Vec<ClassStats>,
    /// Per mapped chunk, in mapping order.
    pub chunks: Vec<ChunkStats>,
    /// The growth cap in chunks.
    pub max_chunks: usize,
    /// The registration check made at creation.
    pub registration: RegistrationReport,
}
