//! What machine the figures come from: cores, kernel, hugepages and THP mode, read once
//! at start and printed above the table and into every JSON row.

use std::ffi::CStr;
use std::fmt;

use ringfort_pool::HugePages;
use serde::Serialize;

/// The machine a run measured, as it was when the run started.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPUs this process may run on (`std::thread::available_parallelism`).
    pub cores: usize,
    /// CPUs the kernel has online (`sysconf(_SC_NPROCESSORS_ONLN)`).
    pub cpus_online: usize,
    /// The first `model name` of `/proc/cpuinfo`, when there is one.
    pub cpu_model: Option<String>,
    /// `uname`: system name, release and version.
    pub kernel: String,
    /// The 2 MiB hugetlb pool at start, `None` when the kernel has none.
    pub hugepages_2m: Option<HugePool>,
    /// The selected word of `/sys/kernel/mm/transparent_hugepage/enabled`.
    pub thp: Option<String>,
    /// Memory the kernel reports in `/proc/meminfo` (`MemTotal`), in MiB.
    pub mem_total_mib: Option<u64>,
    /// The 1-minute load average when the run started (`/proc/loadavg`): other work on a
    /// shared machine disturbs every figure.
    pub loadavg_1m: Option<f64>,
}

/// The 2 MiB hugetlb pool (`/sys/kernel/mm/hugepages/hugepages-2048kB`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HugePool {
    /// `nr_hugepages`: pages reserved in the pool.
    pub total: usize,
    /// `free_hugepages`: pages nobody has faulted in.
    pub free: usize,
    /// `resv_hugepages`: free pages already promised to mappings.
    pub reserved_by_mappings: usize,
}

impl From<HugePages> for HugePool {
    fn from(h: HugePages) -> Self {
        HugePool {
            total: h.total,
            free: h.free,
            reserved_by_mappings: h.reserved,
        }
    }
}

impl Machine {
    /// Reads the machine now.
    pub fn read() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpus_online: cpus_online(),
            cpu_model: cpu_model(),
            kernel: uname(),
            hugepages_2m: HugePages::read().map(HugePool::from),
            thp: thp_mode(),
            mem_total_mib: mem_total_mib(),
            loadavg_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine: {} cores usable", self.cores)?;
        if self.cpus_online != self.cores {
            write!(f, " ({} online)", self.cpus_online)?;
        }
        if let Some(m) = &self.cpu_model {
            write!(f, ", {m}")?;
        }
        if let Some(mib) = self.mem_total_mib {
            write!(f, ", {} GiB RAM", mib.div_ceil(1024))?;
        }
        writeln!(f)?;
        writeln!(f, "kernel:  {}", self.kernel)?;
        match self.hugepages_2m {
            Some(h) if h.total == 0 => writeln!(f, "hugepages (2 MiB): none reserved at start")?,
            Some(h) => writeln!(
                f,
                "hugepages (2 MiB): {} reserved at start ({} free, {} promised to mappings)",
                h.total, h.free, h.reserved_by_mappings
            )?,
            None => writeln!(f, "hugepages (2 MiB): the kernel has no 2 MiB hugetlb pool")?,
        }
        write!(
            f,
            "transparent huge pages: {}",
            self.thp.as_deref().unwrap_or("unsupported")
        )?;
        if let Some(l) = self.loadavg_1m {
            write!(f, "\nload average (1 min) at start: {l:.2}")?;
        }
        Ok(())
    }
}

fn cpus_online() -> usize {
    // SAFETY: sysconf only reads a system value; it has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(0)
}

fn cpu_model() -> Option<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn mem_total_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib >> 10)
}

/// `sysname release version` from `uname(2)`.
fn uname() -> String {
    // SAFETY: `utsname` is plain C data (arrays of c_char); all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `utsname`; uname fills it and NUL-terminates each field.
    if unsafe { libc::uname(&mut u) } != 0 {
        return format!(
            "unknown (uname failed: {})",
            std::io::Error::last_os_error()
        );
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname succeeded, so the field holds a NUL-terminated string within it.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    format!(
        "{} {} {}",
        field(&u.sysname),
        field(&u.release),
        field(&u.version)
    )
}

/// The bracketed (selected) word of the THP `enabled` file, e.g. `madvise`.
pub fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

/// Bytes of `/proc/self/smaps` `AnonHugePages` over the mappings that overlap
/// `addr..addr + len`: how much of that range the kernel has put on transparent huge pages.
pub fn anon_huge_bytes(addr: usize, len: usize) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let end = addr.checked_add(len)?;
    let mut inside = false;
    let mut total = 0usize;
    let mut seen = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo < end && addr < hi;
                seen |= inside;
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix("AnonHugePages:") {
                let kib: usize = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                total += kib << 10;
            }
        }
    }
    seen.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_something_sensible() {
        let m = Machine::read();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        let shown = m.to_string();
        assert!(shown.contains("kernel:"));
        assert!(serde_json::to_value(&m).unwrap().get("cores").is_some());
    }

    #[test]
    fn smaps_finds_a_live_mapping() {
        let v = vec![1u8; 8 << 20];
        assert!(anon_huge_bytes(v.as_ptr() as usize, v.len()).is_some());
    }
}
