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
    Ok((r.rlim_cur, r.rlim_max))
}

/// Clock ticks of a set of CPUs since boot, from `/proc/stat` (machine-wide: every
/// process counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Running tasks: user, nice and system time.
    pub tasks: u64,
    /// Interrupts and softirqs (on loopback, much of the TCP receive path runs here, and
    /// is charged to no process).
    pub irq: u64,
    /// Time the hypervisor gave to someone else.
    pub steal: u64,
    /// Everything, idle included.
    pub total: u64,
}

/// Shares of a set of CPUs' time between two [`cpu_ticks`] readings (1.0 = all of them,
/// all the time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuShares {
    /// Running tasks, of every process.
    pub tasks: f64,
    /// Interrupts and softirqs.
    pub irq: f64,
    /// Stolen by the hypervisor.
    pub steal: f64,
}

/// The ticks of `cpus` summed, from `/proc/stat`.
pub fn cpu_ticks(cpus: &[usize]) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut t = CpuTicks::default();
    for &c in cpus {
        let name = format!("cpu{c}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let f = |i: usize| v.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        t.tasks += f(0) + f(1) + f(2);
        t.irq += f(5) + f(6);
        t.steal += f(7);
        t.total += (0..8).map(f).sum::<u64>();
    }
    Some(t)
}

/// How the time of the CPUs went between readings `a` and `b`; `None` when no tick passed.
pub fn shares_between(a: &CpuTicks, b: &CpuTicks) -> Option<CpuShares> {
    let total = b.total.saturating_sub(a.total);
    (total > 0).then(|| {
        let share = |x: u64, y: u64| y.saturating_sub(x) as f64 / total as f64;
        CpuShares {
            tasks: share(a.tasks, b.tasks),
            irq: share(a.irq, b.irq),
            steal: share(a.steal, b.steal),
        }
    })
}

/// CPU ticks (user + system) of every user-space process on the machine but this one
/// and its children, by pid, from `/proc/PID/stat`. Kernel threads are left out: some of
/// them work for this process (writeback, extent conversion, discards).
fn other_process_ticks() -> std::collections::HashMap<u32, u64> {
    let me = std::process::id();
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
        let (Some(ppid), Some(flags), Some(utime), Some(stime)) =
            (num(1), num(6), num(11), num(12))
        else {
            continue;
        };
        const PF_KTHREAD: u64 = 0x0020_0000;
        if pid == me || ppid == u64::from(me) || flags & PF_KTHREAD != 0 {
            continue;
        }
        out.insert(pid, utime + stime);
    }
    out
}

/// The share of the machine's CPUs (1.0 = all of them, all the time) that other
/// user-space processes used over the next `d`: the other work on a shared machine.
pub fn others_busy(d: Duration) -> Option<f64> {
    // SAFETY: sysconf only reads system values.
    let (hz, cpus) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
        )
    };
    if hz <= 0 || cpus <= 0 {
        return None;
    }
    let a = other_process_ticks();
    let t0 = std::time::Instant::now();
    std::thread::sleep(d);
    let b = other_process_ticks();
    let secs = t0.elapsed().as_secs_f64();
    let ticks: u64 = b
        .iter()
        .map(|(pid, t)| t.saturating_sub(a.get(pid).copied().unwrap_or(0)))
        .sum();
    Some(ticks as f64 / hz as f64 / secs / cpus as f64)
}

/// The `/proc/diskstats` name, busy milliseconds (`io_ticks`) and sectors written of the
/// block device holding `path`.
fn disk_ticks(path: &Path) -> Option<(String, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 13 || f[0].parse::<u32>().ok()? != major || f[1].parse::<u32>().ok()? != minor
        {
            return None;
        }
        Some((f[2].to_string(), f[12].parse().ok()?, f[9].parse().ok()?))
    })
}

/// What the disk holding `path` did over the next `d`: its name, the share of the time it
/// was busy, and MB/s written. Run with nothing of the bench going, it measures other work.
pub fn disk_busy(path: &Path, d: Duration) -> Option<(String, f64, f64)> {
    let (name, busy0, sect0) = disk_ticks(path)?;
    let t0 = std::time::Instant::now();
    std::thread::sleep(d);
    let (_, busy1, sect1) = disk_ticks(path)?;
    let secs = t0.elapsed().as_secs_f64();
    Some((
        name,
        busy1.saturating_sub(busy0) as f64 / 1000.0 / secs,
        sect1.saturating_sub(sect0) as f64 * 512.0 / 1e6 / secs,
    ))
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
        assert!(a.tasks + a.irq + a.steal <= a.total);
        assert_eq!(shares_between(&a, &a), None);
        let b = CpuTicks {
            tasks: a.tasks + 50,
            irq: a.irq + 25,
            total: a.total + 100,
            ..a
        };
        let s = shares_between(&a, &b).unwrap();
        assert_eq!((s.tasks, s.irq, s.steal), (0.5, 0.25, 0.0));
    }

    #[test]
    fn others_busy_is_a_share() {
        // Whatever else runs on the machine, the reading is a share of its CPUs.
        let b = others_busy(Duration::from_millis(50)).unwrap();
        assert!((0.0..=1.5).contains(&b), "{b}");
    }

    #[test]
    fn disk_of_a_data_dir() {
        let d = DataDir::new("disktest").unwrap();
        // Not every sandbox has the device in /proc/diskstats; when it does, the shares
        // are sane.
        if let Some((name, busy, mbs)) = disk_busy(d.path(), Duration::from_millis(20)) {
            assert!(!name.is_empty());
            assert!(busy >= 0.0 && mbs >= 0.0);
        }
    }
}
