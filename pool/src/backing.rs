//! Mapping one chunk: choosing hugetlb, transparent huge or 4 KiB pages, binding it to a
//! NUMA node before first touch, and prefaulting it so it can never SIGBUS later.
//!
//! Prefaulting uses `MADV_POPULATE_WRITE` (Linux 5.14), which reports a page that cannot be
//! supplied as an error instead of a SIGBUS. That matters for hugetlb: the kernel reserves
//! hugepages per system at `mmap`, but a NUMA binding can still leave the chosen node short.

use std::fmt;
use std::ptr::NonNull;

use crate::config::{BackingPref, NumaPolicy, HUGE_PAGE};
use crate::error::PoolError;
use crate::numa::{self, NumaBinding};

/// The pages that back a chunk, as the kernel reported them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// 2 MiB hugetlb pages.
    HugeTlb,
    /// Transparent huge pages were asked for; `huge_bytes` of the chunk are on huge pages
    /// according to `/proc/self/smaps` after prefault (the rest is on 4 KiB pages).
    TransparentHuge {
        /// Bytes of the mapping the kernel put on huge pages.
        huge_bytes: usize,
    },
    /// 4 KiB pages.
    SmallPages,
    /// A heap allocation: only under Miri, which cannot model `mmap` flags.
    #[cfg(miri)]
    Heap,
}

impl Backing {
    /// Rank for "weakest backing" summaries: hugetlb > THP > 4 KiB.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Backing::HugeTlb => 3,
            Backing::TransparentHuge { .. } => 2,
            Backing::SmallPages => 1,
            #[cfg(miri)]
            Backing::Heap => 0,
        }
    }
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::HugeTlb => f.write_str("hugetlb 2 MiB pages"),
            Backing::TransparentHuge { huge_bytes } => {
                write!(f, "transparent huge pages ({} MiB huge)", huge_bytes >> 20)
            }
            Backing::SmallPages => f.write_str("4 KiB pages"),
            #[cfg(miri)]
            Backing::Heap => f.write_str("heap (Miri)"),
        }
    }
}

/// The system's 2 MiB hugetlb pool, from sysfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugePages {
    /// `nr_hugepages`: pages in the pool.
    pub total: usize,
    /// `free_hugepages`: pages not faulted in by anyone.
    pub free: usize,
    /// `resv_hugepages`: free pages already promised to existing mappings.
    pub reserved: usize,
}

impl HugePages {
    /// Reads the 2 MiB pool, or `None` when the kernel has no hugetlb support.
    pub fn read() -> Option<HugePages> {
        let dir = "/sys/kernel/mm/hugepages/hugepages-2048kB";
        let get = |name: &str| -> Option<usize> {
            std::fs::read_to_string(format!("{dir}/{name}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(HugePages {
            total: get("nr_hugepages")?,
            free: get("free_hugepages")?,
            reserved: get("resv_hugepages")?,
        })
    }

    /// Pages a new mapping can still reserve.
    pub fn available(&self) -> usize {
        self.free.saturating_sub(self.reserved)
    }
}

/// One mapped, bound and prefaulted chunk. Unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    pub backing: Backing,
    pub numa: NumaBinding,
    /// Why a stronger backing was not used, when it was not.
    pub fallback: Option<String>,
    /// Owns the mapping; dropping it unmaps.
    #[cfg(not(miri))]
    _map: memmap2::MmapMut,
    #[cfg(miri)]
    layout: std::alloc::Layout,
}

impl Mapping {
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Maps `len` bytes (a multiple of 2 MiB) with the preferred backing, falling back as
    /// the preference allows, binds them with `numa` and prefaults them.
    #[cfg(not(miri))]
    pub fn new(len: usize, pref: BackingPref, numa: NumaPolicy) -> Result<Mapping, PoolError> {
        debug_assert_eq!(len % HUGE_PAGE, 0);
        let mut fallback = None;
        if matches!(pref, BackingPref::Auto | BackingPref::HugeTlb) {
            match map_hugetlb(len, numa) {
                Ok(m) => return Ok(m),
                Err(why) if pref == BackingPref::Auto => fallback = Some(why),
                Err(why) => return Err(PoolError::HugeTlbUnavailable(why)),
            }
        }
        if pref != BackingPref::SmallPages {
            match thp_mode().as_deref() {
                Some("always") | Some("madvise") => {
                    let mut m = map_small(len, numa, true)?;
                    m.fallback = fallback;
                    return Ok(m);
                }
                mode => {
                    let why = format!(
                        "transparent huge pages are {}",
                        mode.map_or("unsupported".to_string(), |m| format!("'{m}'"))
                    );
                    fallback = Some(match fallback {
                        Some(f) => format!("{f}; {why}"),
                        None => why,
                    });
                }
            }
        }
        let mut m = map_small(len, numa, false)?;
        m.fallback = fallback;
        Ok(m)
    }

    /// Under Miri: a zeroed, page-aligned heap allocation (Miri cannot model mmap flags).
    #[cfg(miri)]
    pub fn new(len: usize, _pref: BackingPref, _numa: NumaPolicy) -> Result<Mapping, PoolError> {
        let layout = std::alloc::Layout::from_size_align(len, 4096)
            .map_err(|e| PoolError::Config(e.to_string()))?;
        // SAFETY: `len` is non-zero (a positive multiple of 2 MiB, checked by the layout).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| PoolError::Map {
            len,
            what: "the heap",
            source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
        })?;
        Ok(Mapping {
            ptr,
            len,
            backing: Backing::Heap,
            numa: NumaBinding::FirstTouch {
                reason: "Miri build".into(),
            },
            fallback: None,
            layout,
        })
    }
}

#[cfg(miri)]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` in `new` and is freed only here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(not(miri))]
fn map_hugetlb(len: usize, numa: NumaPolicy) -> Result<Mapping, String> {
    let pages = len / HUGE_PAGE;
    let Some(pool) = HugePages::read() else {
        return Err("the kernel has no 2 MiB hugetlb pool".into());
    };
    if pool.available() < pages {
        return Err(format!(
            "{pages} free 2 MiB hugepages needed, {} available (reserve more with \
             `echo {} > /proc/sys/vm/nr_hugepages`)",
            pool.available(),
            pool.total + pages - pool.available()
        ));
    }
    let mut map = memmap2::MmapOptions::new()
        .len(len)
        .huge(Some(21))
        .map_anon()
        .map_err(|e| format!("mmap(MAP_HUGETLB) failed: {e}"))?;
    let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap returned null");
    // SAFETY: `ptr..ptr+len` is the hugetlb mapping just made and owned by `map`.
    let binding = unsafe { numa::bind(ptr.as_ptr(), len, numa) }.map_err(|e| e.to_string())?;
    populate(ptr.as_ptr(), len).map_err(|e| {
        format!("prefaulting hugetlb pages failed ({e}); the bound node may be short of them")
    })?;
    Ok(Mapping {
        ptr,
        len,
        backing: Backing::HugeTlb,
        // SAFETY: the same live mapping, still owned by `map`.
        numa: unsafe { numa::read_back(ptr.as_ptr(), len, binding) },
        fallback: None,
        _map: map,
    })
}

#[cfg(not(miri))]
fn map_small(len: usize, numa: NumaPolicy, thp: bool) -> Result<Mapping, PoolError> {
    let map_err = |what, source| PoolError::Map { len, what, source };
    // THP needs 2 MiB-aligned ranges: map one extra hugepage and use an aligned window.
    let extra = if thp { HUGE_PAGE } else { 0 };
    let mut map = memmap2::MmapOptions::new()
        .len(len + extra)
        .map_anon()
        .map_err(|e| map_err("anonymous mmap", e))?;
    let base = map.as_mut_ptr();
    let skip = base.align_offset(if thp { HUGE_PAGE } else { 1 });
    // SAFETY: `skip < HUGE_PAGE == extra`, so `base + skip .. + len` lies inside the mapping.
    let ptr = NonNull::new(unsafe { base.add(skip) }).expect("mmap returned null");
    if thp {
        map.advise_range(memmap2::Advice::HugePage, skip, len)
            .map_err(|e| map_err("madvise(MADV_HUGEPAGE)", e))?;
    }
    // SAFETY: `ptr..ptr+len` lies inside the mapping just made and owned by `map`.
    let binding = unsafe { numa::bind(ptr.as_ptr(), len, numa) }?;
    populate(ptr.as_ptr(), len).map_err(|e| map_err("MADV_POPULATE_WRITE prefault", e))?;
    let backing = if thp {
        Backing::TransparentHuge {
            huge_bytes: anon_huge_bytes(ptr.as_ptr() as usize).unwrap_or(0).min(len),
        }
    } else {
        Backing::SmallPages
    };
    Ok(Mapping {
        ptr,
        len,
        backing,
        // SAFETY: the same live mapping, still owned by `map`.
        numa: unsafe { numa::read_back(ptr.as_ptr(), len, binding) },
        fallback: None,
        _map: map,
    })
}

/// Faults every page in for writing, returning an error where a page cannot be supplied.
#[cfg(not(miri))]
fn populate(ptr: *mut u8, len: usize) -> std::io::Result<()> {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // SAFETY: `ptr..ptr+len` is a private anonymous mapping owned by the caller; populating
    // it changes no contents (pages are zero-filled on first touch either way).
    let rc = unsafe { libc::madvise(ptr.cast(), len, MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        return Err(std::io::Error::new(
            err.kind(),
            "MADV_POPULATE_WRITE is not supported: ringfort-pool needs Linux 5.14 or later",
        ));
    }
    Err(err)
}

/// The bracketed word of `/sys/kernel/mm/transparent_hugepage/enabled`.
#[cfg(not(miri))]
fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

/// `AnonHugePages` of the smaps entry containing `addr`.
#[cfg(not(miri))]
fn anon_huge_bytes(addr: usize) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix("AnonHugePages:") {
                let kib: usize = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                return Some(kib << 10);
            }
        }
    }
    None
}
