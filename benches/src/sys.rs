//! Small system helpers the suites share: CPU affinity, the file-descriptor limit, CPU
//! time, and a data directory on a real disk.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The CPUs this process may run on, in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live and writable, and its size is passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads inside the set for every index below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Restricts the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} is out of range"),
            ));
        }
        // SAFETY: `c < CPU_SETSIZE`, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is live and its size is passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns `(soft, hard)` after.
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: `r` is a live rlimit with soft <= hard.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((r.rlim_cur as u64, r.rlim_max as u64))
}

/// CPU time (user + system) the whole process has used so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is live and writable.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Busy and total clock ticks of each CPU in `cpus` since boot, from `/proc/stat`
/// (machine-wide: every process counts). Busy is everything but idle and iowait.
pub fn cpu_ticks(cpus: &[usize]) -> Option<Vec<(u64, u64)>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    cpus.iter()
        .map(|&c| {
            let name = format!("cpu{c}");
            let line = stat
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest times are in user).
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            Some((total - idle, total))
        })
        .collect()
}

/// The share of `cpus` that was busy between two [`cpu_ticks`] readings (1.0 = all of
/// them, all the time).
pub fn busy_between(a: &[(u64, u64)], b: &[(u64, u64)]) -> Option<f64> {
    let (mut busy, mut total) = (0u64, 0u64);
    for (x, y) in a.iter().zip(b) {
        busy += y.0.saturating_sub(x.0);
        total += y.1.saturating_sub(x.1);
    }
    (total > 0).then(|| busy as f64 / total as f64)
}

/// The file system `path` lives on, by name (`ext4`, `xfs`, `tmpfs`, ...), from `statfs`.
pub fn fs_kind(path: &Path) -> io::Result<&'static str> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: statfs is plain old data; all zeroes is a valid value.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `s` is live and writable.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match s.f_type as u64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0x794c_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        0x0102_7961 => "9p",
        _ => "unknown",
    })
}

/// Whether a file system keeps data only in memory, where `fsync` measures nothing.
fn in_memory(kind: &str) -> bool {
    matches!(kind, "tmpfs" | "ramfs")
}

/// A directory for a suite's data files on a real disk, removed with everything in it when
/// dropped.
pub struct DataDir {
    path: PathBuf,
    /// Where it is and why, for the table.
    pub note: String,
}

impl DataDir {
    /// Makes `ringfort-bench-SUITE-PID` under the system temp dir when that is on a disk,
    /// else under the directory holding the bench binary (the cargo target dir).
    pub fn new(suite: &str) -> io::Result<DataDir> {
        let name = format!("ringfort-bench-{suite}-{}", std::process::id());
        let tmp = std::env::temp_dir();
        let tmp_kind = fs_kind(&tmp).unwrap_or("unknown");
        let (base, why) = if in_memory(tmp_kind) {
            let exe = std::env::current_exe()?;
            let dir = exe
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (
                dir,
                format!("{} is {tmp_kind}, so not there", tmp.display()),
            )
        } else {
            (tmp, String::new())
        };
        let path = base.join(name);
        std::fs::create_dir_all(&path)?;
        let kind = fs_kind(&path).unwrap_or("unknown");
        if in_memory(kind) {
            let _ = std::fs::remove_dir_all(&path);
            return Err(io::Error::other(format!(
                "no disk-backed directory for data files: {} is {kind}",
                path.display()
            )));
        }
        let mut note = format!("data files in {} ({kind})", path.display());
        if !why.is_empty() {
            note.push_str(&format!("; {why}"));
        }
        Ok(DataDir { path, note })
    }

    /// A fresh, empty subdirectory `name` (emptied when it exists).
    pub fn fresh(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.path.join(name);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_pinning() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        std::thread::spawn(move || pin_current_thread(&cpus[..1]).unwrap())
            .join()
            .unwrap();
    }

    #[test]
    fn data_dir_is_on_a_disk_and_goes_away() {
        let d = DataDir::new("selftest").unwrap();
        let p = d.path().to_path_buf();
        let sub = d.fresh("x").unwrap();
        std::fs::write(sub.join("f"), b"1").unwrap();
        assert!(!in_memory(fs_kind(&p).unwrap()));
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn proc_stat_ticks() {
        let cpus = allowed_cpus().unwrap();
        let a = cpu_ticks(&cpus).unwrap();
        assert_eq!(a.len(), cpus.len());
        assert!(a.iter().all(|&(busy, total)| busy <= total));
        assert_eq!(busy_between(&a, &a), None);
    }

    #[test]
    fn cpu_time_moves() {
        let a = process_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(process_cpu_time() >= a, "{x}");
    }
}
