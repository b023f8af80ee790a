//! Arena configuration: size classes, growth, backing, registration and NUMA policy.

use crate::error::PoolError;

/// The most size classes one arena may have.
pub const MAX_CLASSES: usize = 16;
/// The most chunks one arena may grow to.
pub const MAX_CHUNKS: usize = 256;
/// The most buffers of one class in one chunk (the slot part of a packed buffer index).
pub const MAX_BUFFERS_PER_CLASS_CHUNK: usize = 1 << 24;
/// io_uring accepts at most this many registered buffers (iovecs) per ring.
pub const MAX_IOVECS: usize = 16384;
/// io_uring accepts registered iovecs of at most 1 GiB each.
pub const MAX_IOVEC_LEN: usize = 1 << 30;
/// Class regions start on this boundary, so page-multiple buffers are page aligned
/// (O_DIRECT wants that).
pub const REGION_ALIGN: usize = 4096;
/// Chunks are a whole number of 2 MiB hugepages.
pub const HUGE_PAGE: usize = 2 << 20;

/// One size class: every buffer in it has `size` bytes, and each chunk of the arena holds
/// `count` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeClass {
    /// Bytes per buffer. A multiple of 64, at most 1 GiB.
    pub size: usize,
    /// Buffers of this class in each chunk.
    pub count: usize,
}

/// What the arena does when a class has no free buffer left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// Never map more than the first chunk: exhaustion is an immediate
    /// [`PoolError::Exhausted`].
    Fixed,
    /// Map another whole chunk (same layout) when a class runs dry, up to `max_chunks`
    /// chunks in all; past that, [`PoolError::Exhausted`].
    Chunks {
        /// The cap, counting the first chunk. At most [`MAX_CHUNKS`].
        max_chunks: usize,
    },
}

impl Growth {
    pub(crate) fn max_chunks(self) -> usize {
        match self {
            Growth::Fixed => 1,
            Growth::Chunks { max_chunks } => max_chunks,
        }
    }
}

/// Which pages back the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingPref {
    /// 2 MiB hugetlb pages when enough are free, else transparent huge pages when the
    /// kernel allows them, else 4 KiB pages. The default.
    Auto,
    /// 2 MiB hugetlb pages or an error that says how many to reserve.
    HugeTlb,
    /// Transparent huge pages by `madvise`, falling back to 4 KiB pages when THP is off.
    TransparentHuge,
    /// Plain 4 KiB pages.
    SmallPages,
}

/// Whether the arena's memory will be registered with io_uring, which pins it and counts it
/// against `RLIMIT_MEMLOCK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The caller will register the arena: creation fails with [`PoolError::Memlock`] when
    /// the limit cannot cover the arena at its cap. The default.
    Required,
    /// Register when the limit allows; otherwise the arena is still created, and its report
    /// says the engine must fall back to unregistered I/O and why.
    AllowUnregistered,
    /// The arena will not be registered; the limit is not checked.
    Off,
}

/// Where the arena's pages are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumaPolicy {
    /// Bind to the NUMA node of the CPU the creating thread runs on. Create the arena on
    /// the pinned core thread that will own it. The default.
    Local,
    /// Bind to the NUMA node of this OS CPU index.
    Cpu(usize),
    /// Bind to this NUMA node (OS index).
    Node(u32),
    /// Do not bind: pages land where the prefaulting thread runs (first touch).
    FirstTouch,
}

/// The whole configuration of one arena. [`PoolConfig::default`] gives the documented
/// defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Size classes, strictly ascending by size.
    pub classes: Vec<SizeClass>,
    /// Growth policy at exhaustion.
    pub growth: Growth,
    /// Page backing preference.
    pub backing: BackingPref,
    /// Whether the memory will be registered with io_uring.
    pub registration: Registration,
    /// NUMA placement.
    pub numa: NumaPolicy,
}

impl Default for PoolConfig {
    /// 4 KiB x 2048, 16 KiB x 512, 64 KiB x 128 and 1 MiB x 8: 32 MiB per chunk, growing
    /// to at most 4 chunks (128 MiB), automatic backing, registration required, bound to
    /// the local NUMA node.
    fn default() -> Self {
        PoolConfig {
            classes: vec![
                SizeClass {
                    size: 4 << 10,
                    count: 2048,
                },
                SizeClass {
                    size: 16 << 10,
                    count: 512,
                },
                SizeClass {
                    size: 64 << 10,
                    count: 128,
                },
                SizeClass {
                    size: 1 << 20,
                    count: 8,
                },
            ],
            growth: Growth::Chunks { max_chunks: 4 },
            backing: BackingPref::Auto,
            registration: Registration::Required,
            numa: NumaPolicy::Local,
        }
    }
}

/// Where each class lives inside a chunk, and how the chunk splits into registered iovecs.
/// Every chunk of an arena has this same layout.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub classes: Vec<ClassLayout>,
    /// Bytes per chunk, a multiple of [`HUGE_PAGE`].
    pub chunk_len: usize,
    /// Registered iovecs per chunk.
    pub iovecs_per_chunk: usize,
    pub max_chunks: usize,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ClassLayout {
    pub size: usize,
    pub count: usize,
    /// Byte offset of this class's region inside a chunk.
    pub region_off: usize,
    /// Buffers per registered iovec: a buffer never straddles two iovecs.
    pub bufs_per_iovec: usize,
    /// Index of this region's first iovec inside the chunk's iovecs.
    pub iovec_off: usize,
}

impl PoolConfig {
    /// Checks the configuration; the error names the field at fault.
    pub fn validate(&self) -> Result<(), PoolError> {
        self.layout().map(drop)
    }

    /// Bytes per chunk: every class's region, page aligned, rounded up to whole 2 MiB
    /// hugepages. The arena maps this much at creation and at each growth step, so a
    /// memory budget divided by it gives the growth cap. Checks the configuration first.
    pub fn chunk_bytes(&self) -> Result<usize, PoolError> {
        self.layout().map(|l| l.chunk_len)
    }

    /// Checks the configuration and computes the chunk layout.
    pub(crate) fn layout(&self) -> Result<Layout, PoolError> {
        let bad = |msg: String| Err(PoolError::Config(msg));
        if self.classes.is_empty() {
            return bad("at least one size class is needed".into());
        }
        if self.classes.len() > MAX_CLASSES {
            return bad(format!(
                "{} size classes given; at most {MAX_CLASSES} are supported",
                self.classes.len()
            ));
        }
        let max_chunks = self.growth.max_chunks();
        if max_chunks == 0 || max_chunks > MAX_CHUNKS {
            return bad(format!(
                "growth cap of {max_chunks} chunks is outside 1..={MAX_CHUNKS}"
            ));
        }
        let mut classes = Vec::with_capacity(self.classes.len());
        let mut off = 0usize;
        let mut iovecs = 0usize;
        let mut prev = 0usize;
        for (i, c) in self.classes.iter().enumerate() {
            if c.size == 0 || c.size % 64 != 0 || c.size > MAX_IOVEC_LEN {
                return bad(format!(
                    "class {i}: size {} B must be a non-zero multiple of 64 and at most 1 GiB",
                    c.size
                ));
            }
            if c.size <= prev {
                return bad(format!(
                    "class {i}: sizes must be strictly ascending ({} B after {prev} B)",
                    c.size
                ));
            }
            if c.count == 0 || c.count > MAX_BUFFERS_PER_CLASS_CHUNK {
                return bad(format!(
                    "class {i}: count {} is outside 1..={MAX_BUFFERS_PER_CLASS_CHUNK}",
                    c.count
                ));
            }
            prev = c.size;
            let bufs_per_iovec = (MAX_IOVEC_LEN / c.size).min(c.count);
            let region = c
                .size
                .checked_mul(c.count)
                .ok_or_else(|| PoolError::Config(format!("class {i}: size x count overflows")))?;
            classes.push(ClassLayout {
                size: c.size,
                count: c.count,
                region_off: off,
                bufs_per_iovec,
                iovec_off: iovecs,
            });
            iovecs += c.count.div_ceil(bufs_per_iovec);
            off = off
                .checked_add(region)
                .and_then(|o| o.checked_next_multiple_of(REGION_ALIGN))
                .ok_or_else(|| PoolError::Config("chunk size overflows".into()))?;
        }
        let chunk_len = off
            .checked_next_multiple_of(HUGE_PAGE)
            .ok_or_else(|| PoolError::Config("chunk size overflows".into()))?;
        if chunk_len.checked_mul(max_chunks).is_none() {
            return bad("chunk size x growth cap overflows".into());
        }
        if iovecs * max_chunks > MAX_IOVECS {
            return bad(format!(
                "{iovecs} iovecs per chunk x {max_chunks} chunks exceeds io_uring's limit of \
                 {MAX_IOVECS} registered buffers"
            ));
        }
        Ok(Layout {
            classes,
            chunk_len,
            iovecs_per_chunk: iovecs,
            max_chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_page_aligned_and_hugepage_sized() {
        let l = PoolConfig::default().layout().unwrap();
        assert_eq!(l.chunk_len, 32 << 20);
        assert_eq!(PoolConfig::default().chunk_bytes().unwrap(), l.chunk_len);
        assert_eq!(l.iovecs_per_chunk, 4);
        for c in &l.classes {
            assert_eq!(c.region_off % REGION_ALIGN, 0);
        }
    }

    #[test]
    fn bad_configs_are_named() {
        let mut c = PoolConfig::default();
        c.classes.swap(0, 1);
        assert!(c.layout().unwrap_err().to_string().contains("ascending"));
        let mut c = PoolConfig::default();
        c.classes[0].size = 100;
        assert!(c
            .layout()
            .unwrap_err()
            .to_string()
            .contains("multiple of 64"));
        let c = PoolConfig {
            growth: Growth::Chunks { max_chunks: 0 },
            ..PoolConfig::default()
        };
        assert!(c.layout().unwrap_err().to_string().contains("growth cap"));
        let c = PoolConfig {
            classes: vec![SizeClass {
                size: 64,
                count: (1 << 24) + 1,
            }],
            ..PoolConfig::default()
        };
        assert!(c.layout().unwrap_err().to_string().contains("count"));
    }

    #[test]
    fn iovecs_never_exceed_one_gib() {
        let c = PoolConfig {
            classes: vec![SizeClass {
                size: 3 << 20,
                count: 1000,
            }],
            growth: Growth::Fixed,
            ..PoolConfig::default()
        };
        let l = c.layout().unwrap();
        let cl = l.classes[0];
        assert!(cl.bufs_per_iovec * cl.size <= MAX_IOVEC_LEN);
        assert_eq!(l.iovecs_per_chunk, 1000usize.div_ceil(cl.bufs_per_iovec));
    }
}
