//! A simulated file layer for crash tests. It keeps, per file, what is durable and the
//! writes made since the last sync. A crash (after a chosen number of operations) freezes
//! the disk: every later operation fails with EIO. [`SimDisk::crash_image`] then builds the
//! disk a reboot would see: directory entries as of the last directory sync, file contents
//! as of the last sync plus each later write kept, lost, or torn at any byte (writes made
//! with `RWF_DSYNC` are kept whole).

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};

use ringfort_wal::file::{Dir, SegmentFile};

#[derive(Clone, Debug)]
enum Op {
    Write {
        off: u64,
        data: Vec<u8>,
        certain: bool,
    },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct File {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Op>,
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<u64, File>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    next_ino: u64,
    ops: u64,
    crash_after: Option<u64>,
    crashed: bool,
    fail_with: Option<i32>,
}

impl Inner {
    fn tick(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.ops += 1;
        if self.crash_after.is_some_and(|n| self.ops > n) {
            self.crashed = true;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn injected(&self) -> io::Result<()> {
        match self.fail_with {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }
}

/// A simulated directory; clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<Inner>>);

/// A small deterministic generator for crash choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn apply(data: &mut Vec<u8>, op: &Op, keep: usize) {
    match op {
        Op::Write {
            off, data: bytes, ..
        } => {
            let off = *off as usize;
            let n = keep.min(bytes.len());
            if data.len() < off + n {
                data.resize(off + n, 0);
            }
            data[off..off + n].copy_from_slice(&bytes[..n]);
        }
        Op::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Crashes after `n` more operations.
    pub fn crash_after(&self, n: u64) {
        let mut g = self.lock();
        g.crash_after = Some(g.ops + n);
    }

    /// Makes writes, preallocation and creation fail with `errno` (None: stop).
    pub fn fail_with(&self, errno: Option<i32>) {
        self.lock().fail_with = errno;
    }

    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The disk a reboot would find; `rng` picks the fate of every unsynced write.
    pub fn crash_image(&self, rng: &mut Rng) -> SimDisk {
        let g = self.lock();
        let mut out = Inner {
            next_ino: g.next_ino,
            ..Inner::default()
        };
        for (name, ino) in &g.durable_names {
            let f = &g.files[ino];
            let mut data = f.durable.clone();
            for op in &f.pending {
                match op {
                    Op::Write {
                        data: bytes,
                        certain: true,
                        ..
                    } => apply(&mut data, op, bytes.len()),
                    Op::Write { data: bytes, .. } => match rng.below(3) {
                        0 => apply(&mut data, op, bytes.len()),
                        1 => {}
                        _ => apply(&mut data, op, rng.below(bytes.len() as u64 + 1) as usize),
                    },
                    Op::SetLen(_) => {
                        if rng.below(2) == 0 {
                            apply(&mut data, op, 0);
                        }
                    }
                }
            }
            out.files.insert(
                *ino,
                File {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
            out.names.insert(name.clone(), *ino);
            out.durable_names.insert(name.clone(), *ino);
        }
        SimDisk(Arc::new(Mutex::new(out)))
    }

    /// A file's current bytes (for corrupting in tests).
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        let g = self.lock();
        g.names.get(name).map(|i| g.files[i].data.clone())
    }

    /// Replaces a file's bytes, durably.
    pub fn set_bytes(&self, name: &str, bytes: Vec<u8>) {
        let mut g = self.lock();
        let ino = g.names[name];
        let f = g.files.get_mut(&ino).unwrap();
        f.data = bytes.clone();
        f.durable = bytes;
        f.pending.clear();
    }
}

/// An open simulated file.
pub struct SimFile {
    disk: SimDisk,
    ino: u64,
}

impl Dir for SimDisk {
    type File = SimFile;

    fn list(&self) -> io::Result<Vec<String>> {
        let mut g = self.lock();
        g.tick()?;
        Ok(g.names.keys().cloned().collect())
    }

    fn read(&self, name: &str, buf: &mut Vec<u8>, limit: u64) -> io::Result<()> {
        let mut g = self.lock();
        g.tick()?;
        let ino = *g.names.get(name).ok_or(io::ErrorKind::NotFound)?;
        let data = &g.files[&ino].data;
        if data.len() as u64 > limit {
            return Err(io::ErrorKind::InvalidData.into());
        }
        buf.clear();
        buf.extend_from_slice(data);
        Ok(())
    }

    fn create(&self, name: &str) -> io::Result<SimFile> {
        let mut g = self.lock();
        g.tick()?;
        g.injected()?;
        if g.names.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let ino = g.next_ino;
        g.next_ino += 1;
        g.files.insert(ino, File::default());
        g.names.insert(name.to_owned(), ino);
        Ok(SimFile {
            disk: self.clone(),
            ino,
        })
    }

    fn open(&self, name: &str) -> io::Result<SimFile> {
        let mut g = self.lock();
        g.tick()?;
        let ino = *g.names.get(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(SimFile {
            disk: self.clone(),
            ino,
        })
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut g = self.lock();
        g.tick()?;
        g.names.remove(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut g = self.lock();
        g.tick()?;
        let ino = g.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        g.names.insert(to.to_owned(), ino);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut g = self.lock();
        g.tick()?;
        g.durable_names = g.names.clone();
        Ok(())
    }

    fn describe(&self) -> String {
        "sim".into()
    }
}

impl SegmentFile for SimFile {
    fn write_at(&self, bufs: &[IoSlice<'_>], offset: u64, dsync: bool) -> io::Result<usize> {
        let mut g = self.disk.lock();
        g.tick()?;
        g.injected()?;
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let n = data.len();
        let f = g.files.get_mut(&self.ino).unwrap();
        let op = Op::Write {
            off: offset,
            data,
            certain: dsync,
        };
        apply(&mut f.data, &op, n);
        f.pending.push(op);
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut g = self.disk.lock();
        g.tick()?;
        let f = g.files.get_mut(&self.ino).unwrap();
        f.durable = f.data.clone();
        f.pending.clear();
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut g = self.disk.lock();
        g.tick()?;
        g.injected()?;
        let f = g.files.get_mut(&self.ino).unwrap();
        if (f.data.len() as u64) < len {
            let op = Op::SetLen(len);
            apply(&mut f.data, &op, 0);
            f.pending.push(op);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut g = self.disk.lock();
        g.tick()?;
        let f = g.files.get_mut(&self.ino).unwrap();
        let op = Op::SetLen(len);
        apply(&mut f.data, &op, 0);
        f.pending.push(op);
        Ok(())
    }
}
