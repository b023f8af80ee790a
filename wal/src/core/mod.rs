//! The sans-IO core: LSNs, batches, segment placement, completions and the acknowledged
//! watermark. It holds no file handle and no ring, and it never touches an
//! [`Arena`] except in [`LogCore::refill`], so it can sit behind a lock shared by appender
//! threads while the arena's owner thread drives it.

pub(crate) mod batch;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use ringfort_pool::{Arena, BufChain, PoolBuf};

use crate::config::{Durability, Limits, SyncMethod, WalConfig};
use crate::error::{Full, IoFailure, WalError};
use crate::format::{PAGE, SEGMENT_HEADER_LEN};
use crate::plan::{CreatePlan, Failure, Io, Progress, SyncKind, WriteJob, WritePlan};
use crate::Lsn;
use batch::Batch;

/// The segment being written.
#[derive(Clone, Copy, Debug)]
struct Segment {
    id: Lsn,
    signature: u64,
    /// Where the next batch goes.
    offset: u64,
}

/// A batch handed to the driver, in LSN order.
#[derive(Clone, Copy, Debug)]
struct Pending {
    id: u64,
    first: Lsn,
    end: Lsn,
    segment: Lsn,
    synced: bool,
    done: bool,
}

/// A segment creation handed to the driver.
#[derive(Clone, Copy, Debug)]
struct Creating {
    segment: Lsn,
    /// A failure rewound the log after this was issued: its outcome no longer matters.
    stale: bool,
}

/// The write-ahead log's state machine. See the crate docs for the data flow.
///
/// Bounds: at most `max_batches` batches exist at once (filling, sealed or in flight);
/// records are at most `max_record` bytes; the block reserve keeps at most enough blocks
/// for `max_batches` batches of `batch_bytes`. At a bound, [`LogCore::append`] returns
/// [`WalError::Full`] and changes nothing.
pub struct LogCore {
    lim: Limits,
    sync: SyncKind,
    flags: u32,
    next_lsn: Lsn,
    acked: Lsn,
    synced: Lsn,
    open: Option<Batch>,
    closed: VecDeque<Batch>,
    pending: VecDeque<Pending>,
    zombies: Vec<u64>,
    spare_batches: Vec<Batch>,
    reserve: Vec<PoolBuf>,
    wanted: usize,
    segment: Option<Segment>,
    creating: Option<Creating>,
    next_batch_id: u64,
    rng: u64,
}

impl LogCore {
    /// A core whose first append gets `next_lsn` (from recovery; 1 for a new log). Every
    /// LSN below it must already be durable: the open path syncs what recovery read. The
    /// first batch goes to a new segment named after its first LSN.
    pub fn new(config: &WalConfig, next_lsn: Lsn) -> Result<LogCore, WalError> {
        let lim = config.limits()?;
        if next_lsn == 0 {
            return Err(WalError::Config("LSNs start at 1".into()));
        }
        let sync = match (config.durability, config.sync_method) {
            (Durability::Sync, SyncMethod::Fdatasync) => SyncKind::Data,
            (Durability::Sync, SyncMethod::Dsync) => SyncKind::Dsync,
            _ => SyncKind::None,
        };
        let flags = if config.recycle_segments > 0 {
            crate::format::FLAG_RECYCLABLE
        } else {
            0
        };
        let seed = RandomState::new().build_hasher();
        let mut h = seed;
        h.write_u64(next_lsn);
        h.write_u32(std::process::id());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        Ok(LogCore {
            sync,
            flags,
            next_lsn,
            acked: next_lsn,
            synced: next_lsn,
            open: None,
            closed: VecDeque::with_capacity(lim.max_batches),
            pending: VecDeque::with_capacity(lim.max_batches),
            zombies: Vec::with_capacity(lim.max_batches),
            spare_batches: (0..lim.max_batches).map(|_| Batch::new(&lim)).collect(),
            reserve: Vec::with_capacity(lim.max_batches * lim.max_batch_blocks),
            wanted: 0,
            segment: None,
            creating: None,
            next_batch_id: 1,
            rng: h.finish() | 1,
            lim,
        })
    }

    /// Appends a record: copies `payload` into pool blocks and returns its LSN at once.
    /// No framing and no CRC happen here; they happen when the batch is sealed.
    ///
    /// Errors: [`WalError::RecordTooLarge`]; [`WalError::Full`] when every batch slot is
    /// taken or the block reserve is short (call [`LogCore::refill`] or complete I/O, then
    /// retry; nothing changed).
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, WalError> {
        let (lsn, first) = self.place(payload.len())?;
        let open = self.open.as_mut().expect("placed in the open batch");
        open.copy_in(first, payload);
        self.after_place();
        Ok(lsn)
    }

    /// Appends a record held in a [`BufChain`] without copying it now: the chain is kept
    /// in the batch and copied into place when the batch is sealed, then dropped. On error
    /// the chain is handed back.
    // The chain travels back by value: boxing it would allocate on the backpressure path,
    // which must stay allocation-free.
    #[allow(clippy::result_large_err)]
    pub fn append_chain(&mut self, chain: BufChain) -> Result<Lsn, (BufChain, WalError)> {
        match self.place(chain.len()) {
            Ok((lsn, first)) => {
                let open = self.open.as_mut().expect("placed in the open batch");
                open.keep_chain(first, chain);
                self.after_place();
                Ok(lsn)
            }
            Err(e) => Err((chain, e)),
        }
    }

    fn place(&mut self, len: usize) -> Result<(Lsn, u32), WalError> {
        if len > self.lim.max_record {
            return Err(WalError::RecordTooLarge {
                len,
                max: self.lim.max_record,
            });
        }
        if self.open.is_none() {
            let mut b = self
                .spare_batches
                .pop()
                .ok_or(WalError::Full(Full::Batches))?;
            b.reset(self.next_batch_id, self.next_lsn);
            self.next_batch_id += 1;
            self.open = Some(b);
        }
        let open = self.open.as_mut().expect("just opened");
        let needed = open.blocks_needed(len);
        if needed > self.reserve.len() {
            self.wanted = self.wanted.max(needed);
            return Err(WalError::Full(Full::Blocks {
                needed,
                have: self.reserve.len(),
            }));
        }
        let lsn = self.next_lsn;
        let first = open.place(lsn, len, &mut self.reserve);
        self.next_lsn += 1;
        Ok((lsn, first))
    }

    fn after_place(&mut self) {
        self.wanted = 0;
        let open = self.open.as_ref().expect("open batch");
        if open.disk_len() >= self.lim.batch_bytes as u64
            || open.records() >= self.lim.max_batch_records
        {
            self.close_open();
        }
    }

    fn close_open(&mut self) {
        if let Some(b) = self.open.take() {
            if b.is_empty() {
                self.open = Some(b);
            } else {
                self.closed.push_back(b);
            }
        }
    }

    /// Seals the batch being filled (if it holds anything), so that [`LogCore::next_io`]
    /// hands it out: the group-commit point.
    pub fn flush(&mut self) {
        self.close_open();
    }

    /// Whether [`LogCore::next_io`] has something to hand out now, or would after a
    /// [`LogCore::flush`].
    pub fn has_work(&self) -> bool {
        self.creating.is_none()
            && (!self.closed.is_empty() || self.open.as_ref().is_some_and(|b| !b.is_empty()))
    }

    /// The next thing for the driver to do, if any: a segment to create (batches wait
    /// until it is done), or a sealed batch to seal and write.
    pub fn next_io(&mut self) -> Option<Io> {
        if self.creating.is_some() {
            return None;
        }
        let len = self.closed.front()?.disk_len();
        let fits = self
            .segment
            .is_some_and(|s| s.offset + len <= self.lim.segment_size);
        if !fits {
            let segment = self.closed.front().expect("checked").first_lsn;
            self.segment = None;
            self.creating = Some(Creating {
                segment,
                stale: false,
            });
            return Some(Io::Create(CreatePlan {
                segment,
                signature: self.next_signature(),
                flags: self.flags,
                size: self.lim.segment_size,
            }));
        }
        let batch = self.closed.pop_front().expect("checked");
        let seg = self.segment.as_mut().expect("fits");
        let offset = seg.offset;
        seg.offset += len;
        debug_assert_eq!(offset % PAGE as u64, 0);
        self.pending.push_back(Pending {
            id: batch.id,
            first: batch.first_lsn,
            end: batch.end_lsn,
            segment: seg.id,
            synced: self.sync != SyncKind::None,
            done: false,
        });
        Some(Io::Write(WriteJob {
            batch,
            segment: seg.id,
            offset,
            signature: seg.signature,
            watermark: self.synced,
            sync: self.sync,
        }))
    }

    /// Reports the outcome of a [`CreatePlan`]. A failure fails every record waiting for
    /// the segment (see [`Failure`]); the next append retries the creation.
    pub fn complete_create(&mut self, plan: CreatePlan, result: Result<(), IoFailure>) -> Progress {
        let Some(c) = self.creating.filter(|c| c.segment == plan.segment) else {
            debug_assert!(false, "completion for a creation that was not issued");
            return self.progress(None);
        };
        self.creating = None;
        if c.stale {
            return self.progress(None);
        }
        match result {
            Ok(()) => {
                self.segment = Some(Segment {
                    id: plan.segment,
                    signature: plan.signature,
                    offset: SEGMENT_HEADER_LEN as u64,
                });
                self.progress(None)
            }
            Err(error) => {
                let failed = self.rewind(plan.segment, error);
                self.progress(Some(failed))
            }
        }
    }

    /// Reports the outcome of a written [`WritePlan`] (the write and, per its
    /// [`SyncKind`], the sync). Acknowledgement advances in LSN order only.
    ///
    /// A failure abandons the plan's segment for good (it is never written or synced
    /// again: a retried fsync could report success for data the kernel dropped) and fails
    /// every record from the earliest unfinished batch in that segment on; their LSNs are
    /// handed out again, and the next batch goes to a new segment.
    pub fn complete_write(&mut self, plan: WritePlan, result: Result<(), IoFailure>) -> Progress {
        let id = plan.batch.id;
        self.recycle(plan.batch);
        if let Some(i) = self.zombies.iter().position(|&z| z == id) {
            self.zombies.swap_remove(i);
            return self.progress(None);
        }
        let Some(idx) = self.pending.iter().position(|p| p.id == id) else {
            debug_assert!(false, "completion for batch {id}, which is not in flight");
            return self.progress(None);
        };
        match result {
            Ok(()) => {
                self.pending[idx].done = true;
                while let Some(p) = self.pending.front().filter(|p| p.done) {
                    self.acked = p.end;
                    if p.synced {
                        self.synced = p.end;
                    }
                    self.pending.pop_front();
                }
                self.progress(None)
            }
            Err(error) => {
                let seg = self.pending[idx].segment;
                let from = self
                    .pending
                    .iter()
                    .position(|p| p.segment == seg && !p.done)
                    .unwrap_or(idx)
                    .min(idx);
                let first = self.pending[from].first;
                for p in self.pending.drain(from..) {
                    if p.id != id && !p.done {
                        self.zombies.push(p.id);
                    }
                }
                // The failed segment is poisoned; a newer one holds only failed LSNs.
                if self.segment.is_some_and(|s| s.id == seg || s.id >= first) {
                    self.segment = None;
                }
                let failed = self.rewind(first, error);
                self.progress(Some(failed))
            }
        }
    }

    /// Drops every batch not yet handed out and hands LSNs from `first` out again.
    fn rewind(&mut self, first: Lsn, error: IoFailure) -> Failure {
        let lsns = first..self.next_lsn;
        while let Some(b) = self.closed.pop_front() {
            self.recycle(b);
        }
        if let Some(b) = self.open.take() {
            self.recycle(b);
        }
        if let Some(c) = self.creating.as_mut() {
            c.stale = true;
        }
        self.next_lsn = first;
        tracing::warn!("ringfort-wal: {error}; LSNs {lsns:?} were not made durable");
        Failure { lsns, error }
    }

    fn progress(&self, failed: Option<Failure>) -> Progress {
        Progress {
            acked: self.acked,
            failed,
        }
    }

    fn recycle(&mut self, mut b: Batch) {
        let keep = self.lim.keep_blocks;
        let reserve = &mut self.reserve;
        b.clear(|block| {
            if reserve.len() < keep {
                reserve.push(block);
            }
        });
        self.spare_batches.push(b);
    }

    /// Tops the block reserve up from `arena` (call it on the arena's owner thread): to
    /// what one batch needs, or to what the last refused record needed. Returns how many
    /// blocks were added. An exhausted arena is an error only when nothing could be added
    /// and the reserve is short; in-flight batches give blocks back as they complete.
    pub fn refill(&mut self, arena: &Arena) -> Result<usize, WalError> {
        let target = self
            .wanted
            .max(self.lim.batch_bytes.div_ceil(self.lim.block) + 1)
            .min(self.reserve.capacity());
        let mut added = 0;
        while self.reserve.len() < target {
            match arena.alloc(self.lim.block) {
                Ok(b) => {
                    if b.capacity() < self.lim.block || b.as_ptr() as usize % PAGE != 0 {
                        return Err(WalError::Config(format!(
                            "the arena gave a {} B block at {:p} for {} B blocks: blocks must \
                             be page aligned and at least block_size",
                            b.capacity(),
                            b.as_ptr(),
                            self.lim.block
                        )));
                    }
                    self.reserve.push(b);
                    added += 1;
                }
                Err(e) if added == 0 => return Err(e.into()),
                Err(_) => break,
            }
        }
        Ok(added)
    }

    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Every LSN below this is acknowledged (per the configured durability).
    pub fn acked_lsn(&self) -> Lsn {
        self.acked
    }

    /// Every LSN below this is synced to the device.
    pub fn synced_lsn(&self) -> Lsn {
        self.synced
    }

    /// Batches handed to the driver and not yet completed (failed ones included).
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.zombies.len()
    }

    /// Blocks in the reserve.
    pub fn reserve_len(&self) -> usize {
        self.reserve.len()
    }

    /// Whether the reserve is below what [`LogCore::refill`] aims for.
    pub fn wants_blocks(&self) -> bool {
        let target = self
            .wanted
            .max(self.lim.batch_bytes.div_ceil(self.lim.block) + 1)
            .min(self.reserve.capacity());
        self.reserve.len() < target
    }

    /// Hands every pool block the core holds back to its arena, dropping any batch not
    /// yet handed out. For shutdown, on the arena's owner thread, with nothing in flight.
    pub fn release_blocks(&mut self) {
        while let Some(b) = self.closed.pop_front() {
            self.recycle(b);
        }
        if let Some(b) = self.open.take() {
            self.recycle(b);
        }
        self.reserve.clear();
    }

    fn next_signature(&mut self) -> u64 {
        // xorshift64*: a fresh, non-zero signature per segment incarnation.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d).max(1)
    }
}
