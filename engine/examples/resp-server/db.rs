//! One shard's keyspace: string values, per-key expiry, memory accounting and checkpoints.
//!
//! A [`Db`] maps keys to values. Values are [`BufChain`]s stored exactly as they were
//! received: a `SET` keeps the chain the parser produced, sharing its pool blocks, and a
//! `GET` hands the same blocks to the reply. Nothing is copied just to be stored, up to
//! [`MAX_STRING_LEN`] bytes per value.
//!
//! # Expiry
//!
//! An expiry is an absolute unix time in milliseconds. A key is expired when
//! `now > expire_at`, which is Redis's rule: at `now == expire_at` the key is still alive,
//! with a PTTL of 0. Expired keys are removed two ways:
//!
//! - **Lazily.** Every accessor that takes `now` removes an expired key it finds and
//!   reports the key as absent.
//! - **Actively.** Keys that have an expiry are also kept in an index ordered by deadline.
//!   [`Db::expire_cycle`] pops due keys from the front of that index, at most `max_checks`
//!   per call. It never scans, so one call costs O(max_checks · log n) however many keys
//!   exist.
//!
//! Neither kind of removal is a logged write (see `commands::LogRecord`). Replay calls
//! the same accessors with `now = 0`, so nothing counts as expired during replay.
//!
//! # Memory accounting
//!
//! [`Db::used_memory`] is an estimate kept up to date on every change. It counts key bytes,
//! value bytes, [`ENTRY_OVERHEAD`] per key and [`EXPIRY_OVERHEAD`] per key with an
//! expiry. Value bytes are the value's length, not the size of the pool blocks it pins. A
//! 10-byte value received in a 64 KiB block keeps that block alive (shared with whatever
//! else the block holds). `INFO memory` should show the arena's own statistics next to
//! this figure.
//!
//! # Checkpoint format (version 1)
//!
//! All integers are little-endian.
//!
//! ```text
//! header   magic     8 B   "RFCKPT\0\x01"
//!          version   u32   1
//!          reserved  u32   0
//!          count     u64   number of records
//! record   key_len   u32   <= MAX_KEY_LEN
//!          value_len u64   <= MAX_STRING_LEN
//!          expire_at u64   unix ms, or u64::MAX for no expiry
//!          key       key_len bytes
//!          value     value_len bytes
//! trailer  crc32     u32   CRC-32 (IEEE, crc32fast) of every byte before it
//! ```
//!
//! Nothing may follow the trailer. [`Db::write_checkpoint`] skips keys that are already
//! expired. [`Db::read_checkpoint`] keeps every record, expired or not, because WAL
//! records logged after the checkpoint may still touch those keys (an `APPEND` or
//! `PERSIST` logged while the key was alive must find it on replay). The first
//! [`Db::expire_cycle`] after recovery removes them. A bad magic, an unknown version, an
//! oversized length, a duplicate key, a checksum mismatch, trailing bytes or a short read
//! each give an error that names the byte offset and the reason. Reading never panics.
//! Small values read back are packed several to a pool block, so a checkpoint of a
//! million 10-byte values needs a few thousand blocks, not a million.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::mem::size_of;
use std::ops::Range;
use std::sync::Arc;

use ringfort::pool::{Arena, BufChain, PoolBuf, PoolError};

/// The longest value a key may hold (Redis's default `proto-max-bulk-len`, 512 MiB).
pub const MAX_STRING_LEN: usize = 512 << 20;

/// The longest key a checkpoint may hold (Redis's limit, 512 MiB).
pub const MAX_KEY_LEN: usize = 512 << 20;

/// Estimated bytes per key besides the key and value bytes: the hash-table slot, the
/// `Arc` header of the key and hash-table control bytes and slack.
pub const ENTRY_OVERHEAD: usize = size_of::<(Key, Entry)>() + 2 * size_of::<usize>() + 8;

/// Estimated bytes per key with an expiry: its slot in the deadline index plus B-tree
/// node slack.
pub const EXPIRY_OVERHEAD: usize = size_of::<(u64, Key)>() + 8;

const MAGIC: &[u8; 8] = b"RFCKPT\0\x01";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 20;
const NO_EXPIRY: u64 = u64::MAX;
const IO_BUF: usize = 64 << 10;

/// A key, shared between the map and the deadline index.
type Key = Arc<[u8]>;

/// A stored value and its expiry.
#[derive(Clone)]
struct Entry {
    value: BufChain,
    expire_at: Option<u64>,
}

impl Entry {
    fn is_expired(&self, now: u64) -> bool {
        self.expire_at.is_some_and(|at| now > at)
    }
}

/// Something that names a key: bytes, or a chain such as a parsed argument.
pub trait AsKey {
    /// The key's bytes: borrowed when they are contiguous, else copied.
    fn key_bytes(&self) -> Cow<'_, [u8]>;
}

impl AsKey for [u8] {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<const N: usize> AsKey for [u8; N] {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

impl AsKey for Vec<u8> {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

impl AsKey for Cow<'_, [u8]> {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

/// A chain of one segment (the usual case for a parsed key) is borrowed; a key that
/// straddles blocks is copied.
impl AsKey for BufChain {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        if self.segment_count() <= 1 {
            Cow::Borrowed(self.chunks().next().unwrap_or(&[]))
        } else {
            Cow::Owned(self.to_vec())
        }
    }
}

impl<T: AsKey + ?Sized> AsKey for &T {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        (**self).key_bytes()
    }
}

/// One shard's keyspace. See the module docs. A clone shares every value's blocks (no
/// value bytes are copied), for example to write a checkpoint on another thread.
#[derive(Clone, Default)]
pub struct Db {
    map: HashMap<Key, Entry>,
    /// `(expire_at, key)` for every key with an expiry; kept in step with `map`.
    expires: BTreeSet<(u64, Key)>,
    used: usize,
    /// While a write runs: how to take back each change it makes.
    journal: Option<Vec<Undo>>,
}

/// How to take back one change to a [`Db`]: what a key held before it, or the whole
/// keyspace before a flush. Values are shared, not copied. See [`Db::begin_journal`].
#[derive(Clone)]
pub struct Undo(UndoKind);

#[derive(Clone)]
enum UndoKind {
    /// The key's entry before the change (`None`: it was absent).
    Key(Key, Option<Entry>),
    /// Everything before a flush.
    All(HashMap<Key, Entry>, BTreeSet<(u64, Key)>, usize),
}

impl Db {
    /// An empty keyspace.
    pub fn new() -> Db {
        Db::default()
    }

    /// Starts recording how to take back every change from now on (a write about to
    /// run), replacing any record not taken.
    pub fn begin_journal(&mut self) {
        self.journal = Some(Vec::new());
    }

    /// Stops recording; returns the changes made since [`Db::begin_journal`], oldest
    /// first. Handing them to [`Db::undo`] restores the keyspace as it was.
    pub fn end_journal(&mut self) -> Vec<Undo> {
        self.journal.take().unwrap_or_default()
    }

    /// Takes back `changes` (as [`Db::end_journal`] returned them, or several such lists
    /// concatenated in the order they were made), newest first.
    pub fn undo(&mut self, changes: &[Undo]) {
        debug_assert!(self.journal.is_none(), "undo while journaling");
        for u in changes.iter().rev() {
            match &u.0 {
                UndoKind::Key(k, before) => {
                    self.remove(k);
                    if let Some(e) = before {
                        self.set(&**k, e.value.clone(), e.expire_at);
                    }
                }
                UndoKind::All(map, expires, used) => {
                    self.map = map.clone();
                    self.expires = expires.clone();
                    self.used = *used;
                }
            }
        }
    }

    /// Journals `key`'s entry before a change to it.
    fn note(&mut self, key: &[u8]) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let undo = match self.map.get_key_value(key) {
            Some((k, e)) => UndoKind::Key(k.clone(), Some(e.clone())),
            None => UndoKind::Key(Arc::from(key), None),
        };
        journal.push(Undo(undo));
    }

    /// Keys held, including expired keys not yet removed (what `DBSIZE` reports in Redis
    /// too).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Keys that have an expiry (`expires=` in `INFO keyspace`).
    pub fn expires_len(&self) -> usize {
        self.expires.len()
    }

    /// Estimated bytes held by keys, values and bookkeeping (see the module docs).
    pub fn used_memory(&self) -> usize {
        self.used
    }

    fn entry_cost(key_len: usize, value_len: usize) -> usize {
        key_len + value_len + ENTRY_OVERHEAD
    }

    /// Removes `key` if it has expired at `now`; returns whether a live entry remains.
    fn live(&mut self, key: &[u8], now: u64) -> bool {
        match self.map.get(key) {
            None => false,
            Some(e) if e.is_expired(now) => {
                self.remove(key);
                false
            }
            Some(_) => true,
        }
    }

    /// Removes `key` whatever its expiry; returns its value and expiry.
    fn remove(&mut self, key: &[u8]) -> Option<(BufChain, Option<u64>)> {
        let (k, e) = self.map.remove_entry(key)?;
        self.used -= Self::entry_cost(k.len(), e.value.len());
        if let Some(at) = e.expire_at {
            self.expires.remove(&(at, k));
            self.used -= EXPIRY_OVERHEAD;
        }
        Some((e.value, e.expire_at))
    }

    /// Moves `key` in the deadline index from `old` to `new`.
    fn reindex(&mut self, key: &Key, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            self.expires.remove(&(at, key.clone()));
            self.used -= EXPIRY_OVERHEAD;
        }
        if let Some(at) = new {
            self.expires.insert((at, key.clone()));
            self.used += EXPIRY_OVERHEAD;
        }
    }

    /// The value of `key`, or `None` if it is absent or expired at `now` (an expired key
    /// is removed).
    pub fn get<K: AsKey + ?Sized>(&mut self, key: &K, now: u64) -> Option<&BufChain> {
        let key = key.key_bytes();
        let key = &*key;
        if !self.expires.is_empty() && !self.live(key, now) {
            return None;
        }
        self.map.get(key).map(|e| &e.value)
    }

    /// The value and expiry of `key`, or `None` if it is absent or expired at `now`.
    pub fn get_with_expiry<K: AsKey + ?Sized>(
        &mut self,
        key: &K,
        now: u64,
    ) -> Option<(&BufChain, Option<u64>)> {
        let key = key.key_bytes();
        let key = &*key;
        if !self.live(key, now) {
            return None;
        }
        self.map.get(key).map(|e| (&e.value, e.expire_at))
    }

    /// Whether `key` exists and has not expired at `now`.
    pub fn exists<K: AsKey + ?Sized>(&mut self, key: &K, now: u64) -> bool {
        let key = key.key_bytes();
        let key = &*key;
        self.live(key, now)
    }

    /// Stores `value` under `key` with `expire_at` (absolute unix ms, `None` for no
    /// expiry), replacing any previous value and expiry. The chain is kept as it is.
    pub fn set<K: AsKey + ?Sized>(&mut self, key: &K, value: BufChain, expire_at: Option<u64>) {
        let key = key.key_bytes();
        let key = &*key;
        self.note(key);
        let new_len = value.len();
        if let Some(e) = self.map.get_mut(key) {
            let old_len = std::mem::replace(&mut e.value, value).len();
            let old_exp = std::mem::replace(&mut e.expire_at, expire_at);
            self.used = self.used - old_len + new_len;
            if old_exp != expire_at {
                if let Some((k, _)) = self.map.get_key_value(key) {
                    let k = k.clone();
                    self.reindex(&k, old_exp, expire_at);
                }
            }
            return;
        }
        let k: Key = Arc::from(key);
        self.used += Self::entry_cost(k.len(), new_len);
        self.reindex(&k, None, expire_at);
        self.map.insert(k, Entry { value, expire_at });
    }

    /// Changes the expiry of a live `key`; returns `false` (and changes nothing) if the
    /// key is absent or expired at `now`.
    pub fn set_expire<K: AsKey + ?Sized>(
        &mut self,
        key: &K,
        expire_at: Option<u64>,
        now: u64,
    ) -> bool {
        let key = key.key_bytes();
        let key = &*key;
        if !self.live(key, now) {
            return false;
        }
        self.note(key);
        let Some((k, e)) = self.map.get_key_value(key) else {
            return false;
        };
        let (k, old) = (k.clone(), e.expire_at);
        if let Some(e) = self.map.get_mut(key) {
            e.expire_at = expire_at;
        }
        self.reindex(&k, old, expire_at);
        true
    }

    /// Deletes `key`; returns whether a live key was deleted (an expired one is removed
    /// too, but reports `false`).
    pub fn del<K: AsKey + ?Sized>(&mut self, key: &K, now: u64) -> bool {
        let key = key.key_bytes();
        let key = &*key;
        if !self.live(key, now) {
            return false;
        }
        self.note(key);
        self.remove(key).is_some()
    }

    /// Appends a copy of `data` to the value of `key`, or stores `data` itself (shared, not
    /// copied) if the key is absent or expired at `now`; keeps the expiry. Returns the
    /// new length. The caller checks the result against [`MAX_STRING_LEN`] first. All or
    /// nothing: on error the value is as it was.
    pub fn append<K: AsKey + ?Sized>(
        &mut self,
        key: &K,
        data: &BufChain,
        arena: &Arena,
        now: u64,
    ) -> Result<usize, PoolError> {
        let key = key.key_bytes();
        let key = &*key;
        if !self.live(key, now) {
            self.set(key, data.clone(), None);
            return Ok(data.len());
        }
        self.note(key);
        let Some(e) = self.map.get_mut(key) else {
            return Ok(0);
        };
        let old = e.value.len();
        let new = old + data.len();
        if e.value.max_len() < new {
            // The parser's chain refuses to grow this far: move its segments (no copy)
            // into a chain that may reach the string limit.
            let mut grown = BufChain::new(MAX_STRING_LEN.max(new));
            grown.append(&mut e.value)?;
            e.value = grown;
        }
        for chunk in data.chunks() {
            if let Err(err) = e.value.append_slice(arena, chunk) {
                e.value.truncate(old);
                return Err(err);
            }
        }
        self.used += data.len();
        Ok(new)
    }

    /// Removes every key.
    pub fn flush(&mut self) {
        let map = std::mem::take(&mut self.map);
        let expires = std::mem::take(&mut self.expires);
        let used = std::mem::replace(&mut self.used, 0);
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo(UndoKind::All(map, expires, used)));
        }
    }

    /// Removes keys whose expiry is before `now`, earliest deadline first, at most
    /// `max_checks` of them; returns how many were removed. A return equal to
    /// `max_checks` means more may be due.
    pub fn expire_cycle(&mut self, now: u64, max_checks: usize) -> usize {
        let mut removed = 0;
        while removed < max_checks {
            match self.expires.first() {
                Some((at, _)) if now > *at => {}
                _ => break,
            }
            let Some((_, key)) = self.expires.pop_first() else {
                break;
            };
            self.used -= EXPIRY_OVERHEAD;
            if let Some((k, e)) = self.map.remove_entry(&*key) {
                self.used -= Self::entry_cost(k.len(), e.value.len());
            }
            removed += 1;
        }
        removed
    }

    /// Writes every key not expired at `now_ms` in the checkpoint format of the module
    /// docs; returns the bytes written. Buffers internally and flushes `w` at the end;
    /// the caller makes the file durable (fsync, rename).
    pub fn write_checkpoint(&self, w: &mut impl Write, now_ms: u64) -> io::Result<u64> {
        let live = || self.map.iter().filter(|(_, e)| !e.is_expired(now_ms));
        let mut out = CrcWriter {
            inner: BufWriter::with_capacity(IO_BUF, w),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&(live().count() as u64).to_le_bytes());
        out.put(&header)?;
        for (key, e) in live() {
            let key_len = u32::try_from(key.len())
                .ok()
                .filter(|&n| n as usize <= MAX_KEY_LEN)
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "checkpoint: key too long")
                })?;
            let mut rec = [0u8; RECORD_HEADER_LEN];
            rec[..4].copy_from_slice(&key_len.to_le_bytes());
            rec[4..12].copy_from_slice(&(e.value.len() as u64).to_le_bytes());
            rec[12..20].copy_from_slice(&e.expire_at.unwrap_or(NO_EXPIRY).to_le_bytes());
            out.put(&rec)?;
            out.put(key)?;
            for chunk in e.value.chunks() {
                out.put(chunk)?;
            }
        }
        let crc = out.crc.clone().finalize();
        out.inner.write_all(&crc.to_le_bytes())?;
        out.inner.flush()?;
        Ok(out.bytes + 4)
    }

    /// Reads a checkpoint written by [`Db::write_checkpoint`], putting values into chains
    /// from `arena`. Every error names the byte offset and the reason; see the module docs
    /// for why expired records are kept.
    pub fn read_checkpoint(r: &mut impl Read, arena: &Arena) -> io::Result<Db> {
        let mut inp = CrcReader {
            inner: BufReader::with_capacity(IO_BUF, r),
            crc: crc32fast::Hasher::new(),
            offset: 0,
        };
        let mut header = [0u8; HEADER_LEN];
        inp.field("the header", &mut header)?;
        if &header[..8] != MAGIC {
            return Err(corrupt(0, "bad magic: not a Ringfort checkpoint"));
        }
        let version = le_u32(&header[8..12]);
        if version != VERSION {
            return Err(corrupt(8, format!("unsupported version {version}")));
        }
        let count = le_u64(&header[16..24]);
        let mut db = Db::new();
        let mut packer = Packer::new(arena);
        for _ in 0..count {
            let at = inp.offset;
            let mut rec = [0u8; RECORD_HEADER_LEN];
            inp.field("a record header", &mut rec)?;
            let key_len = le_u32(&rec[..4]) as usize;
            let value_len = le_u64(&rec[4..12]);
            let expire_at = Some(le_u64(&rec[12..20])).filter(|&e| e != NO_EXPIRY);
            if key_len > MAX_KEY_LEN {
                return Err(corrupt(
                    at,
                    format!("key length {key_len} exceeds the limit"),
                ));
            }
            let value_len = usize::try_from(value_len)
                .ok()
                .filter(|&n| n <= MAX_STRING_LEN)
                .ok_or_else(|| {
                    corrupt(at, format!("value length {value_len} exceeds the limit"))
                })?;
            let mut key = Vec::new();
            let key_at = inp.offset;
            (&mut inp).take(key_len as u64).read_to_end(&mut key)?;
            if key.len() != key_len {
                return Err(truncated(key_at, "a key", key_len));
            }
            if packer.fits(value_len) {
                packer.read(&mut inp, &mut db, key, expire_at, value_len, at)?;
            } else {
                let value = read_value(&mut inp, arena, value_len)?;
                db.insert_loaded(&key, value, expire_at, at)?;
            }
        }
        packer.seal(&mut db)?;
        let computed = inp.crc.clone().finalize();
        let crc_at = inp.offset;
        let mut trailer = [0u8; 4];
        inp.inner
            .read_exact(&mut trailer)
            .map_err(|e| eof_context(e, crc_at, "the checksum", 4))?;
        let stored = u32::from_le_bytes(trailer);
        if stored != computed {
            return Err(corrupt(
                crc_at,
                format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        let mut extra = [0u8; 1];
        if inp.inner.read(&mut extra)? != 0 {
            return Err(corrupt(crc_at + 4, "trailing bytes after the checksum"));
        }
        Ok(db)
    }

    /// Inserts a record read from a checkpoint; a key seen twice is corruption.
    fn insert_loaded(
        &mut self,
        key: &[u8],
        value: BufChain,
        expire_at: Option<u64>,
        at: u64,
    ) -> io::Result<()> {
        if self.map.contains_key(key) {
            return Err(corrupt(at, "duplicate key"));
        }
        self.set(key, value, expire_at);
        Ok(())
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("keys", &self.map.len())
            .field("expires", &self.expires.len())
            .field("used_memory", &self.used)
            .finish()
    }
}

/// Counts and checksums what goes through to the writer.
struct CrcWriter<W: Write> {
    inner: BufWriter<W>,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// Counts and checksums what is read through it.
struct CrcReader<R: Read> {
    inner: BufReader<R>,
    crc: crc32fast::Hasher,
    offset: u64,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> CrcReader<R> {
    /// Fills `buf`, naming `what` and where it started if the input ends first.
    fn field(&mut self, what: &str, buf: &mut [u8]) -> io::Result<()> {
        let at = self.offset;
        self.read_exact(buf)
            .map_err(|e| eof_context(e, at, what, buf.len()))
    }
}

/// Packs small values read from a checkpoint several to a block. A block cannot be
/// written once it is shared, so records wait in `pending` until their block is full
/// and then go into the keyspace sharing it.
struct Packer<'a> {
    arena: &'a Arena,
    /// Values up to this size are packed: a quarter of the smallest block.
    limit: usize,
    block: Option<PoolBuf>,
    fill: usize,
    pending: Vec<Pending>,
}

/// A packed record waiting for its block to be sealed.
struct Pending {
    key: Vec<u8>,
    expire_at: Option<u64>,
    range: Range<usize>,
    at: u64,
}

impl<'a> Packer<'a> {
    fn new(arena: &'a Arena) -> Packer<'a> {
        Packer {
            arena,
            limit: arena.class_sizes().next().unwrap_or(0) / 4,
            block: None,
            fill: 0,
            pending: Vec::new(),
        }
    }

    fn fits(&self, len: usize) -> bool {
        len <= self.limit
    }

    /// Reads a value of `len <= limit` bytes into the current block.
    fn read<R: Read>(
        &mut self,
        inp: &mut CrcReader<R>,
        db: &mut Db,
        key: Vec<u8>,
        expire_at: Option<u64>,
        len: usize,
        at: u64,
    ) -> io::Result<()> {
        if len == 0 {
            return db.insert_loaded(&key, BufChain::new(MAX_STRING_LEN), expire_at, at);
        }
        if self
            .block
            .as_ref()
            .is_some_and(|b| b.capacity() - self.fill < len)
        {
            self.seal(db)?;
        }
        let block = match &mut self.block {
            Some(b) => b,
            None => self
                .block
                .insert(self.arena.alloc_class(0).map_err(io::Error::other)?),
        };
        let range = self.fill..self.fill + len;
        inp.field("a value", &mut block[range.clone()])?;
        self.fill = range.end;
        self.pending.push(Pending {
            key,
            expire_at,
            range,
            at,
        });
        Ok(())
    }

    /// Shares the current block among the records waiting for it and inserts them.
    fn seal(&mut self, db: &mut Db) -> io::Result<()> {
        self.fill = 0;
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let shared = block.into_shared();
        for p in self.pending.drain(..) {
            let mut value = BufChain::new(MAX_STRING_LEN);
            value
                .push_shared(shared.clone(), p.range)
                .map_err(io::Error::other)?;
            db.insert_loaded(&p.key, value, p.expire_at, p.at)?;
        }
        Ok(())
    }
}

/// Reads a `len`-byte value into blocks of the classes the arena picks for it.
fn read_value<R: Read>(inp: &mut CrcReader<R>, arena: &Arena, len: usize) -> io::Result<BufChain> {
    let mut value = BufChain::new(MAX_STRING_LEN);
    let mut left = len;
    while left > 0 {
        let mut block = arena
            .alloc_class(arena.fill_class(left))
            .map_err(io::Error::other)?;
        let n = left.min(block.capacity());
        inp.field("a value", &mut block[..n])?;
        value
            .push_buf(block, n)
            .map_err(|(_, e)| io::Error::other(e))?;
        left -= n;
    }
    Ok(value)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn corrupt(offset: u64, reason: impl Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("checkpoint corrupt at offset {offset}: {reason}"),
    )
}

fn truncated(offset: u64, what: &str, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("checkpoint truncated at offset {offset}: {what} of {len} bytes is cut short"),
    )
}

/// Turns a bare end-of-file into [`truncated`]; other errors pass through.
fn eof_context(e: io::Error, offset: u64, what: &str, len: usize) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        truncated(offset, what, len)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfort::pool::{BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass};

    fn arena() -> Arena {
        Arena::new(PoolConfig {
            classes: vec![
                SizeClass {
                    size: 4096,
                    count: 256,
                },
                SizeClass {
                    size: 65536,
                    count: 32,
                },
            ],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .unwrap()
    }

    fn chain(arena: &Arena, bytes: &[u8]) -> BufChain {
        let mut c = BufChain::new(MAX_STRING_LEN);
        c.append_slice(arena, bytes).unwrap();
        c
    }

    /// Every key, value and expiry, sorted, the expiry index size and the memory estimate.
    type Contents = (Vec<(Vec<u8>, Vec<u8>, Option<u64>)>, usize, usize);
    type Step<'a> = Box<dyn Fn(&mut Db) + 'a>;

    fn contents(db: &Db) -> Contents {
        let mut v: Vec<_> = db
            .map
            .iter()
            .map(|(k, e)| (k.to_vec(), e.value.to_vec(), e.expire_at))
            .collect();
        v.sort();
        (v, db.expires.len(), db.used)
    }

    #[test]
    fn undo_takes_back_journaled_writes_newest_first() {
        let arena = arena();
        let mut db = Db::new();
        db.set(b"a", chain(&arena, b"1"), None);
        db.set(b"b", chain(&arena, b"2"), Some(9_000));
        db.set(b"gone", chain(&arena, b"x"), Some(5));
        let before = contents(&db);
        let mut undo = Vec::new();
        let steps: Vec<Step> = vec![
            Box::new(|db| db.set(b"a", chain(&arena, b"one"), Some(7_000))),
            Box::new(|db| {
                db.append(b"a", &chain(&arena, b"+more"), &arena, 0)
                    .unwrap();
            }),
            Box::new(|db| {
                db.append(b"new", &chain(&arena, b"fresh"), &arena, 0)
                    .unwrap();
            }),
            Box::new(|db| {
                db.del(b"b", 0);
            }),
            Box::new(|db| {
                db.set_expire(b"a", None, 0);
            }),
            Box::new(|db| db.flush()),
            Box::new(|db| db.set(b"after", chain(&arena, b"flush"), None)),
            Box::new(|db| {
                db.set_expire(b"after", Some(1), 0);
            }),
        ];
        for step in &steps {
            db.begin_journal();
            step(&mut db);
            undo.extend(db.end_journal());
        }
        assert_ne!(contents(&db), before);
        // Taking back a suffix restores the state after the prefix.
        let mut partial = db.clone();
        let mut replayed = Db::new();
        replayed.set(b"a", chain(&arena, b"1"), None);
        replayed.set(b"b", chain(&arena, b"2"), Some(9_000));
        replayed.set(b"gone", chain(&arena, b"x"), Some(5));
        let mut prefix = Vec::new();
        for step in &steps[..3] {
            replayed.begin_journal();
            step(&mut replayed);
            prefix.extend(replayed.end_journal());
        }
        partial.undo(&undo[prefix.len()..]);
        assert_eq!(contents(&partial), contents(&replayed));
        db.undo(&undo);
        assert_eq!(contents(&db), before);
    }

    fn value(db: &mut Db, key: &[u8], now: u64) -> Option<(Vec<u8>, Option<u64>)> {
        db.get_with_expiry(key, now).map(|(v, e)| (v.to_vec(), e))
    }

    #[test]
    fn set_get_del_and_memory_accounting() {
        let arena = arena();
        let mut db = Db::new();
        assert_eq!(db.used_memory(), 0);
        db.set(b"key", chain(&arena, b"hello"), None);
        assert_eq!(db.len(), 1);
        assert_eq!(db.used_memory(), 3 + 5 + ENTRY_OVERHEAD);
        assert_eq!(db.get(b"key", 0).unwrap().to_vec(), b"hello");
        assert!(db.exists(b"key", 0));
        assert!(!db.exists(b"nokey", 0));
        // Replacing changes the value bytes only; an expiry adds its overhead.
        db.set(b"key", chain(&arena, b"hi"), Some(100));
        assert_eq!(db.used_memory(), 3 + 2 + ENTRY_OVERHEAD + EXPIRY_OVERHEAD);
        assert_eq!(db.expires_len(), 1);
        db.set(b"key", chain(&arena, b"hi"), Some(200));
        assert_eq!(db.expires_len(), 1);
        assert!(db.set_expire(b"key", None, 0));
        assert_eq!(db.expires_len(), 0);
        assert_eq!(db.used_memory(), 3 + 2 + ENTRY_OVERHEAD);
        assert!(!db.set_expire(b"nokey", Some(5), 0));
        assert!(db.del(b"key", 0));
        assert!(!db.del(b"key", 0));
        assert_eq!((db.len(), db.used_memory()), (0, 0));
        for i in 0..100u32 {
            db.set(
                &i.to_le_bytes(),
                chain(&arena, &[1; 10]),
                (i % 2 == 0).then_some(1000),
            );
        }
        assert_eq!(db.expires_len(), 50);
        assert_eq!(
            db.used_memory(),
            100 * (4 + 10 + ENTRY_OVERHEAD) + 50 * EXPIRY_OVERHEAD
        );
        db.flush();
        assert_eq!((db.len(), db.expires_len(), db.used_memory()), (0, 0, 0));
        const { assert!(ENTRY_OVERHEAD >= 64 && ENTRY_OVERHEAD <= 256) };
    }

    #[test]
    fn lazy_expiry_removes_on_access() {
        let arena = arena();
        let mut db = Db::new();
        db.set(b"k", chain(&arena, b"v"), Some(1000));
        assert_eq!(
            value(&mut db, b"k", 1000),
            Some((b"v".to_vec(), Some(1000)))
        );
        assert!(db.get(b"k", 1001).is_none());
        assert_eq!((db.len(), db.expires_len(), db.used_memory()), (0, 0, 0));
        for access in 0..4 {
            db.set(b"k", chain(&arena, b"v"), Some(10));
            let present = match access {
                0 => db.exists(b"k", 11),
                1 => db.del(b"k", 11),
                2 => db.set_expire(b"k", None, 11),
                _ => db.get_with_expiry(b"k", 11).is_some(),
            };
            assert!(!present);
            assert_eq!(db.len(), 0);
        }
        // Appending to an expired key starts a new value without the old expiry.
        db.set(b"k", chain(&arena, b"old"), Some(10));
        assert_eq!(
            db.append(b"k", &chain(&arena, b"new"), &arena, 11).unwrap(),
            3
        );
        assert_eq!(value(&mut db, b"k", 11), Some((b"new".to_vec(), None)));
    }

    #[test]
    fn expire_cycle_is_bounded_and_ordered() {
        let arena = arena();
        let mut db = Db::new();
        for i in 0..100u64 {
            db.set(
                format!("k{i}").as_bytes(),
                chain(&arena, b"v"),
                Some(1000 + i),
            );
        }
        db.set(b"forever", chain(&arena, b"v"), None);
        db.set(b"later", chain(&arena, b"v"), Some(5000));
        // Nothing is due at a deadline itself, only after it.
        assert_eq!(db.expire_cycle(1000, 1000), 0);
        assert_eq!(db.expire_cycle(1001, 1000), 1);
        assert_eq!(db.len(), 101);
        // At most max_checks per call, earliest first.
        assert_eq!(db.expire_cycle(2000, 10), 10);
        assert_eq!(db.len(), 91);
        assert!(!db.exists(b"k10", 0));
        assert!(db.exists(b"k11", 0));
        assert_eq!(db.expire_cycle(2000, 1000), 89);
        assert_eq!(db.expire_cycle(2000, 1000), 0);
        assert_eq!(db.len(), 2);
        assert_eq!(db.expire_cycle(u64::MAX, 0), 0);
        // A moved deadline is honoured.
        assert!(db.set_expire(b"later", Some(3000), 0));
        assert_eq!(db.expire_cycle(3000, 10), 0);
        assert_eq!(db.expire_cycle(3001, 10), 1);
        assert_eq!(db.len(), 1);
        assert_eq!(db.expires_len(), 0);
        assert_eq!(db.used_memory(), 7 + 1 + ENTRY_OVERHEAD);
    }

    #[test]
    fn append_copies_and_keeps_the_expiry() {
        let arena = arena();
        let mut db = Db::new();
        let first = chain(&arena, &[b'a'; 100_000]);
        let shared = first.chunks().next().unwrap().as_ptr();
        assert_eq!(db.append(b"k", &first, &arena, 0).unwrap(), 100_000);
        // A new key stores the chain itself.
        assert_eq!(
            db.get(b"k", 0).unwrap().chunks().next().unwrap().as_ptr(),
            shared
        );
        db.set_expire(b"k", Some(77), 0);
        let more = chain(&arena, &[b'b'; 70_000]);
        assert_eq!(db.append(b"k", &more, &arena, 0).unwrap(), 170_000);
        let v = db.get(b"k", 0).unwrap().to_vec();
        assert!(v[..100_000].iter().all(|&b| b == b'a'));
        assert!(v[100_000..].iter().all(|&b| b == b'b'));
        assert_eq!(value(&mut db, b"k", 0).unwrap().1, Some(77));
        assert_eq!(
            db.used_memory(),
            1 + 170_000 + ENTRY_OVERHEAD + EXPIRY_OVERHEAD
        );
        // The appended bytes were copied: the caller's chain is untouched.
        assert_eq!(more.len(), 70_000);
    }

    fn sample(arena: &Arena) -> Db {
        let mut db = Db::new();
        db.set(b"small", chain(arena, b"v"), None);
        db.set(b"empty", BufChain::new(16), None);
        db.set(b"ttl", chain(arena, b"with expiry"), Some(5_000));
        db.set(b"expired", chain(arena, b"x"), Some(10));
        db.set(b"", chain(arena, b"empty key"), None);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        db.set(b"big", chain(arena, &big), None);
        // Small values as the parser leaves them: split off one received chain.
        let all: Vec<u8> = (0..500u32).flat_map(u32::to_le_bytes).collect();
        let mut received = chain(arena, &all);
        for i in 0..500u32 {
            db.set(format!("key:{i}").as_bytes(), received.split_to(4), None);
        }
        db
    }

    fn checkpoint(db: &Db, now: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = db.write_checkpoint(&mut out, now).unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn checkpoint_round_trip() {
        let arena = arena();
        let mut db = sample(&arena);
        let bytes = checkpoint(&db, 100);
        let blocks_before = arena.live_buffers();
        let mut back = Db::read_checkpoint(&mut bytes.as_slice(), &arena).unwrap();
        // The expired key was not written; everything else came back.
        assert_eq!(back.len(), db.len() - 1);
        assert!(!back.exists(b"expired", 0));
        for key in [
            &b"small"[..],
            b"empty",
            b"ttl",
            b"",
            b"big",
            b"key:0",
            b"key:499",
        ] {
            assert_eq!(
                value(&mut back, key, 100),
                value(&mut db, key, 100),
                "{key:?}"
            );
        }
        assert_eq!(back.expires_len(), 1);
        db.del(b"expired", 0);
        assert_eq!(back.used_memory(), db.used_memory());
        // The 300 KB value spans several blocks; the 500 small values share a handful.
        assert!(back.get(b"big", 0).unwrap().segment_count() > 1);
        let added = arena.live_buffers() - blocks_before;
        assert!(added < 20, "{added} blocks for the checkpoint");
        // Writing it again gives the same length (order may differ).
        assert_eq!(checkpoint(&back, 100).len(), bytes.len());
        // An empty keyspace is a header and a checksum.
        assert_eq!(checkpoint(&Db::new(), 0).len(), HEADER_LEN + 4);
        assert_eq!(
            Db::read_checkpoint(&mut checkpoint(&Db::new(), 0).as_slice(), &arena)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn checkpoint_keeps_keys_that_expire_after_it_was_written() {
        let arena = arena();
        let mut db = Db::new();
        db.set(b"k", chain(&arena, b"v"), Some(50));
        let bytes = checkpoint(&db, 40);
        let mut back = Db::read_checkpoint(&mut bytes.as_slice(), &arena).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back.expire_cycle(1000, 10), 1);
    }

    #[test]
    fn checkpoint_corruption_is_an_error() {
        let arena = arena();
        let mut db = Db::new();
        db.set(b"alpha", chain(&arena, b"one"), None);
        db.set(b"beta", chain(&arena, &[9; 2000]), Some(123));
        let bytes = checkpoint(&db, 0);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            let err = Db::read_checkpoint(&mut bad.as_slice(), &arena).err();
            assert!(err.is_some(), "flipped byte {i} was accepted");
        }
        for len in 0..bytes.len() {
            let err = Db::read_checkpoint(&mut &bytes[..len], &arena).unwrap_err();
            assert!(err.to_string().contains("offset"), "{err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = Db::read_checkpoint(&mut longer.as_slice(), &arena).unwrap_err();
        assert!(err.to_string().contains("trailing bytes"), "{err}");
        let err =
            Db::read_checkpoint(&mut &b"not a checkpoint at all, no"[..], &arena).unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
        let mut v2 = bytes.clone();
        v2[8] = 2;
        let err = Db::read_checkpoint(&mut v2.as_slice(), &arena).unwrap_err();
        assert!(err.to_string().contains("unsupported version 2"), "{err}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        let err = Db::read_checkpoint(&mut flipped.as_slice(), &arena).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // A huge claimed length fails on the missing bytes, not by allocating them.
        let mut huge = bytes[..HEADER_LEN].to_vec();
        huge.extend_from_slice(&(MAX_KEY_LEN as u32).to_le_bytes());
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&NO_EXPIRY.to_le_bytes());
        let err = Db::read_checkpoint(&mut huge.as_slice(), &arena).unwrap_err();
        assert!(err.to_string().contains("truncated at offset 44"), "{err}");
        // A duplicate key (from a broken writer) is refused.
        let mut dup = Vec::new();
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&VERSION.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&2u64.to_le_bytes());
        for _ in 0..2 {
            body.extend_from_slice(&1u32.to_le_bytes());
            body.extend_from_slice(&1u64.to_le_bytes());
            body.extend_from_slice(&NO_EXPIRY.to_le_bytes());
            body.extend_from_slice(b"kv");
        }
        dup.extend_from_slice(&body);
        dup.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        let err = Db::read_checkpoint(&mut dup.as_slice(), &arena).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }
}
