//! The engine's WAL driver: runs ringfort-wal's sans-IO [`LogCore`] on a core's io_uring.
//!
//! The driver owns the log's state machine, its segment files and the bookkeeping of the
//! SQEs it has emitted. It knows nothing about the reactor beyond two calls: the reactor
//! hands it an SQE sink once per tick ([`WalDriver::flush`]) and gives back each
//! completion ([`WalDriver::complete`]). Only building SQEs is io_uring-specific here.
//!
//! # How a record becomes durable
//!
//! 1. **Append.** [`WalDriver::append`] (a slice) or [`WalDriver::append_chain`] (a
//!    [`BufChain`]) returns the record's LSN at once. A slice is copied into pool blocks
//!    from the core's reserve, a chain is kept as it is; no framing, no CRC, no I/O and no
//!    heap allocation happen here.
//! 2. **Seal, once per tick.** [`WalDriver::flush`] seals the batch being filled (the
//!    group-commit point) when no group is in the kernel (while one is, appends keep
//!    gathering, so one fsync covers everything that arrived meanwhile), takes every batch the core has ready, frames and checksums it
//!    ([`ringfort_wal::WriteJob::seal`]), and emits one write SQE per pool block: a
//!    `WRITE_FIXED` from the registered arena when the reactor says the arena is
//!    registered (`buf_index` is the block's [`ringfort_pool::RegSlot::index`]), a plain
//!    `WRITE` otherwise. Under `Durability::Sync` with `fdatasync` (the default), every
//!    write of the tick carries `IOSQE_IO_LINK` and the chain ends in one
//!    `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`: one group commit per tick, however
//!    many batches it holds. With `SyncMethod::Dsync` each write carries `RWF_DSYNC`
//!    instead and there is no fsync; under `Buffered` and `None` the writes are plain.
//!    Without an fsync the writes are not linked, since nothing has to wait for them.
//! 3. **Completion.** [`WalDriver::complete`] takes each CQE. When the last CQE of a group
//!    is in, every batch of the group goes back to the core with the group's outcome, and
//!    its blocks return to the reserve.
//! 4. **Durable LSN.** [`WalDriver::durable_lsn`]: every LSN below it was written and (per
//!    the durability) synced, and so was every LSN before it. It moves in LSN order even
//!    when several groups are in flight and complete out of order.
//! 5. **Acknowledge.** The handler acknowledges the appends below the durable LSN, and
//!    fails those named by each [`Failure`] it takes ([`WalDriver::take_failure`]).
//!
//! # Segment creation
//!
//! Segments are created half synchronously, half on the ring. The metadata steps run with
//! `std::fs` inside `flush` ([`ringfort_wal::segment::prepare_segment`]): remove abandoned
//! segments named at or above the new one, take a spare or create the file, and
//! preallocate it with `fallocate`. None of these waits for the device, and `fallocate` is
//! where a full disk answers `ENOSPC`, synchronously. The steps that do wait for the
//! device go on the ring as one linked chain: the header page write, `fdatasync` of the
//! file, `fsync` of the directory. Batches for the segment are held by the core until
//! that chain has completed. A rotation (every `segment_size` bytes of log) therefore
//! never blocks the core's other connections on a sync.
//!
//! With `zeroed_spares` (the default keeps one), a new segment takes a spare that a
//! background thread ([`ringfort_wal::segment::SpareBuilder`]) built by writing zeros, so
//! the group commits that follow overwrite written blocks and their `fdatasync`s have no
//! extent conversion to commit. When no spare is ready, `open` builds the first one itself,
//! on the calling thread, as the blocking driver does: a log whose first segment was only
//! preallocated syncs at about half the rate until its first rotation, which at small
//! writes can be minutes away (measured with the RESP server, one client, 64 B durable
//! SETs: 2,100-2,300/s on such a segment, 3,500-4,200/s on a zero-filled one). Zeroing
//! a 256 MiB segment took about 0.6 s here; a reopened log usually finds the spare its
//! last run built. Further spares are built in the background; a segment of small batches
//! asks for the next once it is half written ([`ringfort_wal::segment::GroupSizes`]): for
//! large ones bandwidth, not the sync rate, bounds the log, and zeroing would write it
//! twice.
//!
//! # Failures (the fsyncgate rules)
//!
//! A group fails when any of its CQEs reports an error, or a write reports fewer bytes
//! than it was given. A short write is treated as a failure, not resubmitted: on a
//! regular file it means the device is out of space or failing, and io_uring has already
//! cut the link chain, cancelling the fsync. With a linked chain, a failed write makes the
//! kernel cancel the rest (`-ECANCELED`); the group keeps the first real error rather than
//! the cancellations, whichever CQE arrives first. The core then abandons the segment for
//! good (it is never written or synced again, since a retried `fsync` can report success
//! for pages the kernel dropped), fails every record from the earliest unfinished batch of
//! that segment on, hands their LSNs out again, and sends the next batch to a new segment.
//! No LSN is acknowledged unless its write and its sync both succeeded, and so did those
//! of every LSN before it.
//!
//! The failure is queued in the driver (by `complete`, or by `flush` when a synchronous
//! creation step fails) until the handler takes it with [`WalDriver::take_failure`], and
//! until then every append is refused with [`WalError::Failed`] and the cause. The failed
//! LSNs are handed out again to the next appends, so without that gate a handler that
//! learns of the failure late (at the end of the tick, say) could append a record, get a
//! re-issued LSN, and then fail its own new record as part of the old range. With it, the
//! reactor may deliver failures whenever it likes. The queue needs no bound of its own:
//! while it is not empty nothing new is appended, so only the groups already in flight can
//! add to it, each at most once (`max_batches` plus one creation).
//!
//! # Memory the kernel uses
//!
//! Every SQE points at memory the driver owns until that SQE's completion: the pool blocks
//! of the sealed batches (kept in the group's plans), the header block (kept in the
//! creation's group), and the file and directory descriptors (each group holds a counted
//! reference to them, so no descriptor is closed, and its number reused, while a linked
//! SQE that names it has yet to start). Pool blocks are plain arena memory: moving a
//! [`PoolBuf`] handle does not move its bytes. Dropping the driver with SQEs in flight
//! leaks those groups instead of freeing memory under the kernel.
//!
//! # Bounds
//!
//! At most `max_batches` batches exist at once (being filled, sealed or in flight), so at
//! most `max_batches` write groups plus one creation are in flight: the group table is
//! that size and is allocated at open. One batch takes at most
//! [`WalConfig::max_batch_blocks`] writes plus an fsync; [`WalDriver::open`] refuses a
//! submission queue smaller than that, and [`WalDriver::flush`] takes a batch only while
//! the reactor's free SQ room can hold one whole, so a link chain is never split across
//! two submissions (a split chain would let the fsync start before the writes). At the
//! bounds, appends get [`WalError::Full`] and the handler retries after the durable LSN
//! moves.
//!
//! # What the reactor does
//!
//! - At start: [`WalDriver::open`] on the core thread (recovery runs synchronously and
//!   replays every record through the handler's callback).
//! - Each tick, before any other producer fills the SQ and after registering any arena
//!   chunks mapped since the last tick: [`WalDriver::flush`] with the SQ's free room and a
//!   sink that stores each [`WalTag`] in an op and pushes the entry with that op's
//!   `user_data`. The driver's contract makes that push sound: see `flush`.
//! - For each CQE of such an op: [`WalDriver::complete`]. Then, whenever it delivers
//!   events: every [`WalDriver::take_failure`] and the new [`WalDriver::durable_lsn`] to
//!   the handler (failures first; appends are refused until they are taken).
//! - At stop: keep calling `flush` and reaping until [`WalDriver::idle`]; drop the driver
//!   after the ring (or once it is idle) and before the arena.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use io_uring::{opcode, squeue, types};
use ringfort_pool::{Arena, BufChain, PoolBuf};
use ringfort_wal::file::StdDir;
#[cfg(feature = "fault-injection")]
use ringfort_wal::format::segment_file_name;
use ringfort_wal::format::{PAGE, SEGMENT_HEADER_LEN};
use ringfort_wal::segment::{
    make_zeroed_spares, prepare_segment, recover, truncate_prefix, GroupSizes, SpareBuilder,
};
use ringfort_wal::{
    CreatePlan, Failure, Full, Io, IoFailure, IoOp, LogCore, Lsn, RecordRef, RecoveryReport,
    SyncKind, WalConfig, WalError, WritePlan,
};

/// SQEs one segment creation takes: the header write, `fdatasync`, the directory `fsync`.
const CREATE_SQES: u32 = 3;

/// What one SQE of a group does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Writes `len` bytes; fewer is a failure.
    Write { len: u32 },
    /// `fdatasync` of the segment, or `fsync` of the directory.
    Sync,
}

/// Names one SQE the driver emitted: the reactor keeps it beside the SQE's `user_data`
/// and hands it back to [`WalDriver::complete`] with the CQE's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalTag {
    /// The group's slot in the driver's table.
    slot: u16,
    step: Step,
}

/// SQEs in flight for one group commit (write batches plus their fsync) or one segment
/// creation. A slot is free when it holds no file.
#[derive(Default)]
struct Group {
    /// SQEs emitted and not yet completed.
    outstanding: u32,
    /// The segment the SQEs go to.
    segment: Lsn,
    /// How the group's batches are made durable (which step a failed write counts as).
    sync: Option<SyncKind>,
    /// A write group's sealed batches, holding their pool blocks for the kernel. The
    /// capacity (`max_batches`) is reserved at open and reused.
    plans: Vec<WritePlan>,
    /// A creation's plan and the block its header is written from.
    create: Option<(CreatePlan, PoolBuf)>,
    /// The segment file, open while any SQE may name its descriptor.
    file: Option<Arc<OwnedFd>>,
    /// The directory (creations only), likewise.
    dir: Option<Arc<OwnedFd>>,
    /// The first real error of the group.
    error: Option<IoFailure>,
}

/// The write-ahead log of one core, driven through its io_uring. See the module docs.
pub(crate) struct WalDriver {
    core: LogCore,
    dir: Arc<StdDir>,
    /// Serialises the spare builder's renames with segment creation and truncation.
    dir_lock: Arc<Mutex<()>>,
    /// Builds zero-filled spares off the core thread (`zeroed_spares` > 0).
    spare_builder: Option<SpareBuilder>,
    /// The batch sizes of the current segment: whether the next spare is worth building.
    sizes: GroupSizes,
    dir_fd: Arc<OwnedFd>,
    /// `recycle_segments` of the configuration: spares kept by `truncate_prefix`.
    spares: usize,
    /// The segment batches go to (its name, its file), once its creation completed.
    current: Option<(Lsn, Arc<OwnedFd>)>,
    /// The header block, here while no creation is in flight.
    header: Option<PoolBuf>,
    /// `max_batches` write groups and one creation.
    groups: Vec<Group>,
    /// SQEs one batch can take: its most blocks, plus an fsync.
    batch_sqes: usize,
    /// SQEs emitted and not yet completed, over all groups.
    in_flight: usize,
    /// Failures not yet taken by the handler, oldest first; appends wait for them.
    failures: VecDeque<Failure>,
}

impl WalDriver {
    /// Opens (or creates) the log in directory `path` with `std::fs` (a cold path, run on
    /// the core thread before the loop starts): recovers it with `config.recovery`, hands
    /// every record at or above `from` to `replay` in LSN order (pass 0 to check and replay
    /// the whole log), cuts a torn tail, syncs what was read, and fills the block reserve
    /// from `arena`. An error from `replay` stops the open and is returned.
    ///
    /// `sq_entries` is the ring's submission queue size; one batch (its most blocks plus an
    /// fsync) must fit in it. The arena must have page-aligned blocks of at least
    /// `config.block_size` bytes and of one page (for segment headers); when the reactor
    /// writes from registered buffers, it is the arena registered with the ring.
    pub fn open(
        path: &Path,
        config: WalConfig,
        arena: &Arena,
        sq_entries: usize,
        from: Lsn,
        replay: impl FnMut(RecordRef<'_>) -> Result<(), WalError>,
    ) -> Result<(WalDriver, RecoveryReport), WalError> {
        let batch_sqes = config.max_batch_blocks()? + 1;
        if batch_sqes > sq_entries {
            return Err(WalError::Config(format!(
                "one batch can take {batch_sqes} SQEs (its blocks plus an fsync) but the \
                 submission queue has {sq_entries}: raise ring_entries, or lower batch_bytes \
                 or max_record, or raise block_size"
            )));
        }
        debug_assert!(CREATE_SQES as usize <= batch_sqes);
        let dir = Arc::new(StdDir::open(path, config.direct_io)?);
        let report = recover(&*dir, &config, from, replay)?;
        let dir_lock = Arc::new(Mutex::new(()));
        let spare_builder = match config.zeroed_spares {
            0 => None,
            want => {
                let size = config.segment_size;
                // The first segment takes this one (see the module docs).
                if let Err(e) = make_zeroed_spares(&*dir, &dir_lock, size, 1, false) {
                    tracing::warn!("{e}; the first segment is preallocated without zeros");
                }
                let (dir, lock) = (Arc::clone(&dir), Arc::clone(&dir_lock));
                let build = move || {
                    if let Err(e) = make_zeroed_spares(&*dir, &lock, size, want, true) {
                        tracing::warn!("{e}; new segments are preallocated without zeros");
                    }
                };
                let builder = SpareBuilder::spawn(build)
                    .map_err(|e| WalError::io("spawning the WAL spare builder", e))?;
                if want > 1 {
                    builder.request();
                }
                Some(builder)
            }
        };
        let mut core = LogCore::new(&config, report.next_lsn)?;
        core.refill(arena)?;
        let header = arena.alloc(SEGMENT_HEADER_LEN)?;
        if header.as_ptr() as usize % PAGE != 0 {
            return Err(WalError::Config(format!(
                "the arena gave a {} B block at {:p} for a segment header: the WAL needs \
                 page-aligned blocks (a size class that is a multiple of 4096)",
                header.capacity(),
                header.as_ptr()
            )));
        }
        let dir_fd = File::open(dir.path())
            .map_err(|e| WalError::io(format!("opening {}", dir.path().display()), e))?;
        let groups = (0..=config.max_batches)
            .map(|_| Group {
                plans: Vec::with_capacity(config.max_batches),
                ..Group::default()
            })
            .collect();
        let driver = WalDriver {
            core,
            dir,
            dir_lock,
            spare_builder,
            sizes: GroupSizes::new(config.segment_size),
            dir_fd: Arc::new(dir_fd.into()),
            spares: config.recycle_segments,
            current: None,
            header: Some(header),
            groups,
            batch_sqes,
            in_flight: 0,
            failures: VecDeque::with_capacity(config.max_batches + 1),
        };
        Ok((driver, report))
    }

    /// Appends a record, copying `payload` into pool blocks, and returns its LSN at once.
    /// No I/O happens here; the record goes out with the next [`WalDriver::flush`].
    ///
    /// Errors: [`WalError::RecordTooLarge`]; [`WalError::Full`] when every batch slot is
    /// taken or the block reserve is short even after topping it up from `arena` (nothing
    /// changed: retry once the durable LSN has moved); [`WalError::Failed`] with the cause
    /// while a failure waits to be taken ([`WalDriver::take_failure`]).
    pub fn append(&mut self, arena: &Arena, payload: &[u8]) -> Result<Lsn, WalError> {
        self.check_failures()?;
        match self.core.append(payload) {
            Err(WalError::Full(Full::Blocks { .. })) if self.refill(arena) => {
                self.core.append(payload)
            }
            r => r,
        }
    }

    /// Appends a record held in a [`BufChain`] without copying it now: it is copied into
    /// place when its batch is sealed, then dropped. On error the chain is handed back;
    /// otherwise like [`WalDriver::append`].
    // The chain travels back by value: boxing it would allocate on the backpressure path.
    #[allow(clippy::result_large_err)]
    pub fn append_chain(
        &mut self,
        arena: &Arena,
        chain: BufChain,
    ) -> Result<Lsn, (BufChain, WalError)> {
        if let Err(e) = self.check_failures() {
            return Err((chain, e));
        }
        match self.core.append_chain(chain) {
            Err((chain, WalError::Full(Full::Blocks { .. }))) if self.refill(arena) => {
                self.core.append_chain(chain)
            }
            r => r,
        }
    }

    /// Refuses appends while a failure waits to be taken: its LSNs are handed out again.
    fn check_failures(&self) -> Result<(), WalError> {
        match self.failures.front() {
            Some(f) => Err(WalError::Failed(f.error.clone())),
            None => Ok(()),
        }
    }

    /// The oldest failure not yet taken: the records it names (every LSN in
    /// [`Failure::lsns`]) were not made durable, and their LSNs go to the next appends.
    /// Fail their appenders, then append again; appends are refused until every failure
    /// is taken.
    pub fn take_failure(&mut self) -> Option<Failure> {
        self.failures.pop_front()
    }

    /// Tops the block reserve up; whether anything was added.
    fn refill(&mut self, arena: &Arena) -> bool {
        matches!(self.core.refill(arena), Ok(n) if n > 0)
    }

    /// Once per tick: tops the block reserve up from `arena`, seals the batch being
    /// filled, and emits the SQEs of every batch that is ready (one group commit) and of a
    /// segment creation the core asks for, through `push`. `fixed` says the arena is
    /// registered with the ring (writes use `WRITE_FIXED`, so every chunk the arena has
    /// mapped must be registered before this call). `sq_room` is how many SQEs the
    /// submission queue can take now; the driver emits no more than that, and takes a
    /// batch only when a whole one fits, so `push` never has to submit in the middle of a
    /// link chain. Ready batches that did not fit go out with the next call.
    ///
    /// `push` gets each entry without `user_data` and the [`WalTag`] to give back to
    /// [`WalDriver::complete`] with the entry's CQE. Contract, which makes pushing the
    /// entries onto the ring sound: every buffer and descriptor an entry names stays valid
    /// and untouched by the driver until `complete` has been called for that entry's tag
    /// (or until the ring is gone), and the entries must be queued in the order given,
    /// consecutively, with no submission in between.
    ///
    /// A segment creation whose synchronous steps fail is failed at once: see
    /// [`WalDriver::take_failure`].
    pub fn flush(
        &mut self,
        arena: &Arena,
        fixed: bool,
        sq_room: usize,
        push: &mut dyn FnMut(squeue::Entry, WalTag),
    ) {
        if self.core.wants_blocks() {
            // Exhaustion is not an error here: blocks come back as batches complete, and an
            // append that finds the reserve short says so itself.
            let _ = self.core.refill(arena);
        }
        // Group commit: while a group is in the kernel, appends accumulate in the open
        // batch (the core still seals it when it reaches `batch_bytes` or
        // `max_batch_records`); once the device is free, everything gathered goes out as
        // one group. Sealing every tick instead would use up the batch slots with tiny
        // batches while one fsync is in flight.
        if self.in_flight == 0 {
            self.core.flush();
        }
        let mut room = sq_room;
        let mut open: Option<usize> = None;
        // A batch is taken only while a whole one (its most blocks plus an fsync) fits, so
        // after the last one taken there is always room for the group's fsync, and before
        // a creation for that fsync and the creation's chain.
        while room >= self.batch_sqes {
            let Some(io) = self.core.next_io() else { break };
            match io {
                Io::Write(job) => {
                    let plan = job.seal();
                    if self.sizes.record(plan.len()) {
                        if let Some(b) = &self.spare_builder {
                            b.request();
                        }
                    }
                    let slot = match open {
                        Some(slot) => slot,
                        None => match self.start_group(&plan) {
                            Ok(slot) => *open.insert(slot),
                            Err(error) => {
                                let p = self.core.complete_write(plan, Err(error));
                                self.note(p.failed);
                                continue;
                            }
                        },
                    };
                    room -= self.push_writes(slot, plan, fixed, push);
                }
                Io::Create(plan) => {
                    if let Some(slot) = open.take() {
                        room -= self.close_group(slot, push);
                    }
                    if self.start_create(plan, fixed, push) {
                        room -= CREATE_SQES as usize;
                    }
                }
            }
        }
        if let Some(slot) = open {
            self.close_group(slot, push);
        }
    }

    /// Queues a failure for the handler.
    fn note(&mut self, failed: Option<Failure>) {
        if let Some(f) = failed {
            debug_assert!(self.failures.len() < self.failures.capacity());
            self.failures.push_back(f);
        }
    }

    /// A free slot of the group table.
    fn free_slot(&self) -> usize {
        self.groups
            .iter()
            .position(|g| g.file.is_none())
            .expect("at most max_batches write groups and one creation are in flight")
    }

    /// Opens a write group for `plan`'s segment, which must be the current one.
    fn start_group(&mut self, plan: &WritePlan) -> Result<usize, IoFailure> {
        let file = match &self.current {
            Some((id, file)) if *id == plan.segment() => Arc::clone(file),
            _ => {
                debug_assert!(false, "a batch for segment {} is not open", plan.segment());
                let e = io::Error::new(io::ErrorKind::NotFound, "segment is not open");
                return Err(IoFailure::new(IoOp::Write, plan.segment(), &e));
            }
        };
        let slot = self.free_slot();
        let g = &mut self.groups[slot];
        g.segment = plan.segment();
        g.sync = Some(plan.sync());
        g.file = Some(file);
        Ok(slot)
    }

    /// Emits one write per block of `plan` into group `slot`, and keeps the plan (its
    /// blocks) in the group until the group completes. Returns the SQEs emitted.
    fn push_writes(
        &mut self,
        slot: usize,
        plan: WritePlan,
        fixed: bool,
        push: &mut dyn FnMut(squeue::Entry, WalTag),
    ) -> usize {
        #[cfg(feature = "fault-injection")]
        if crate::fault::armed() {
            crate::fault::note_write(
                &self.dir.path().join(segment_file_name(plan.segment())),
                plan.offset(),
                plan.blocks().map(|(_, len)| len as u64).sum(),
            );
        }
        let g = &mut self.groups[slot];
        let fd = g.file.as_ref().expect("open group").as_raw_fd();
        let (flags, rw_flags) = match plan.sync() {
            SyncKind::Data => (squeue::Flags::IO_LINK, 0),
            SyncKind::Dsync => (squeue::Flags::empty(), libc::RWF_DSYNC),
            SyncKind::None => (squeue::Flags::empty(), 0),
        };
        let mut offset = plan.offset();
        let mut n = 0;
        for (block, len) in plan.blocks() {
            let e = write_entry(fd, block, len, offset, fixed, rw_flags).flags(flags);
            push(
                e,
                WalTag {
                    slot: slot as u16,
                    step: Step::Write { len: len as u32 },
                },
            );
            offset += len as u64;
            n += 1;
        }
        g.outstanding += n as u32;
        g.plans.push(plan);
        self.in_flight += n;
        n
    }

    /// Ends group `slot`'s link chain with its fsync, when its batches want one.
    /// Returns the SQEs emitted (0 or 1).
    fn close_group(&mut self, slot: usize, push: &mut dyn FnMut(squeue::Entry, WalTag)) -> usize {
        let g = &mut self.groups[slot];
        if g.sync != Some(SyncKind::Data) {
            return 0;
        }
        let fd = g.file.as_ref().expect("open group").as_raw_fd();
        let e = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        push(
            e,
            WalTag {
                slot: slot as u16,
                step: Step::Sync,
            },
        );
        g.outstanding += 1;
        self.in_flight += 1;
        1
    }

    /// Creates segment `plan.segment`: the metadata steps now, then the header write,
    /// `fdatasync` and directory `fsync` as one linked chain. Returns whether the chain
    /// was emitted; a failed synchronous step fails the creation at once instead.
    fn start_create(
        &mut self,
        plan: CreatePlan,
        fixed: bool,
        push: &mut dyn FnMut(squeue::Entry, WalTag),
    ) -> bool {
        self.current = None;
        #[cfg(feature = "fault-injection")]
        if crate::fault::crashed() {
            let e = io::Error::from_raw_os_error(libc::EIO);
            let p = self
                .core
                .complete_create(plan, Err(IoFailure::new(IoOp::Create, plan.segment, &e)));
            self.note(p.failed);
            return false;
        }
        let prepared = {
            let _g = self.dir_lock.lock().unwrap_or_else(|e| e.into_inner());
            prepare_segment(&*self.dir, &plan)
        };
        self.sizes.new_segment();
        let file: OwnedFd = match prepared {
            Ok(f) => f.into(),
            Err(error) => {
                let p = self.core.complete_create(plan, Err(error));
                self.note(p.failed);
                return false;
            }
        };
        #[cfg(feature = "fault-injection")]
        if crate::fault::armed() {
            let path = self.dir.path().join(segment_file_name(plan.segment));
            crate::fault::note_created(&path);
            // As a real `fallocate` fails: after the file exists, before anything is
            // written to it.
            if let Some(errno) = crate::fault::hit_errno(crate::fault::Point::Fallocate) {
                drop(file);
                let e = io::Error::from_raw_os_error(errno);
                let failure = IoFailure::new(IoOp::Create, plan.segment, &e);
                let p = self.core.complete_create(plan, Err(failure));
                self.note(p.failed);
                return false;
            }
        }
        let mut header = self.header.take().expect("one creation at a time");
        plan.header().encode(&mut header[..SEGMENT_HEADER_LEN]);
        let slot = self.free_slot();
        let tag = |step| WalTag {
            slot: slot as u16,
            step,
        };
        let fd = file.as_raw_fd();
        let link = squeue::Flags::IO_LINK;
        push(
            write_entry(fd, &header, SEGMENT_HEADER_LEN, 0, fixed, 0).flags(link),
            tag(Step::Write {
                len: SEGMENT_HEADER_LEN as u32,
            }),
        );
        let sync = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .flags(link);
        push(sync, tag(Step::Sync));
        push(
            opcode::Fsync::new(types::Fd(self.dir_fd.as_raw_fd())).build(),
            tag(Step::Sync),
        );
        let g = &mut self.groups[slot];
        g.segment = plan.segment;
        g.sync = None;
        g.create = Some((plan, header));
        g.file = Some(Arc::new(file));
        g.dir = Some(Arc::clone(&self.dir_fd));
        g.outstanding = CREATE_SQES;
        self.in_flight += CREATE_SQES as usize;
        true
    }

    /// Takes the completion of an SQE this driver emitted: `res` is the CQE's result. When
    /// it is the last of its group, the group's batches (or creation) go back to the core
    /// with the group's outcome, which may move [`WalDriver::durable_lsn`] or queue a
    /// failure ([`WalDriver::take_failure`]).
    pub fn complete(&mut self, tag: WalTag, res: i32) {
        let slot = tag.slot as usize;
        let g = &mut self.groups[slot];
        #[cfg(feature = "fault-injection")]
        let res = {
            use crate::fault::Point;
            let point = match (&g.create, tag.step) {
                (Some(_), _) => None,
                (None, Step::Write { .. }) => Some(Point::Write),
                (None, Step::Sync) => Some(Point::Fsync),
            };
            crate::fault::wal_result(point, res)
        };
        debug_assert!(g.outstanding > 0, "completion for an idle WAL group {slot}");
        g.outstanding -= 1;
        self.in_flight -= 1;
        if let Some(err) = step_error(tag.step, res) {
            let op = match (&g.create, tag.step, g.sync) {
                (Some(_), _, _) => IoOp::Create,
                (None, Step::Sync, _) | (None, _, Some(SyncKind::Dsync)) => IoOp::Sync,
                (None, _, _) => IoOp::Write,
            };
            let failure = IoFailure::new(op, g.segment, &err);
            let cancelled = |f: &IoFailure| f.errno == Some(libc::ECANCELED);
            if g.error
                .as_ref()
                .is_none_or(|prev| cancelled(prev) && !cancelled(&failure))
            {
                g.error = Some(failure);
            }
        }
        if g.outstanding == 0 {
            self.finish(slot);
        }
    }

    /// Hands a group whose every SQE has completed back to the core and frees its slot.
    fn finish(&mut self, slot: usize) {
        let g = &mut self.groups[slot];
        let result = match g.error.take() {
            Some(f) => Err(f),
            None => Ok(()),
        };
        let file = g.file.take().expect("busy group");
        g.dir = None;
        #[cfg(feature = "fault-injection")]
        let durable_writes = result.is_ok() && g.sync != Some(SyncKind::None);
        g.sync = None;
        if let Some((plan, header)) = g.create.take() {
            self.header = Some(header);
            if result.is_ok() {
                #[cfg(feature = "fault-injection")]
                if crate::fault::armed() {
                    crate::fault::note_creation_durable(
                        &self.dir.path().join(segment_file_name(plan.segment)),
                    );
                }
                self.current = Some((plan.segment, file));
            }
            let p = self.core.complete_create(plan, result);
            self.note(p.failed);
            return;
        }
        let mut failed = None;
        #[cfg(feature = "fault-injection")]
        if durable_writes && crate::fault::armed() {
            for plan in &g.plans {
                let path = self.dir.path().join(segment_file_name(plan.segment()));
                crate::fault::note_synced(&path, plan.offset());
            }
        }
        let g = &mut self.groups[slot];
        for plan in g.plans.drain(..) {
            // Every batch of a group shares its outcome; a failure takes down the first
            // and, with it, every later one (they come back as already failed).
            let p = self.core.complete_write(plan, result.clone());
            failed = failed.or(p.failed);
        }
        self.note(failed);
    }

    /// Every LSN below this one is durable (written, and synced under `Sync`): acknowledge
    /// the appends below it.
    pub fn durable_lsn(&self) -> Lsn {
        self.core.acked_lsn()
    }

    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.core.next_lsn()
    }

    /// Whether nothing is in flight and nothing appended waits to be written: a stopping
    /// core may drop the driver.
    pub fn idle(&self) -> bool {
        self.in_flight == 0 && !self.core.has_work()
    }

    /// Removes whole segments whose records all lie below `checkpoint` (keeping up to
    /// `recycle_segments` as spares for new segments), synchronously with `std::fs`, and
    /// syncs the directory. The checkpoint is first lowered to the durable LSN and to the
    /// first segment any SQE in flight goes to, so a segment with records not yet durable,
    /// or whose descriptor the kernel may still use, always stays. Returns how many
    /// segments went.
    pub fn truncate_prefix(&mut self, checkpoint: Lsn) -> Result<usize, WalError> {
        #[cfg(feature = "fault-injection")]
        if crate::fault::crashed() {
            let e = io::Error::from_raw_os_error(libc::EIO);
            return Err(WalError::io("truncating after the crash point", e));
        }
        let checkpoint = self
            .groups
            .iter()
            .filter(|g| g.file.is_some())
            .map(|g| g.segment)
            .fold(checkpoint.min(self.core.acked_lsn()), Lsn::min);
        let _g = self.dir_lock.lock().unwrap_or_else(|e| e.into_inner());
        truncate_prefix(&*self.dir, checkpoint, self.spares)
    }
}

impl Drop for WalDriver {
    /// Frees the pool blocks and descriptors, except those of SQEs still in flight: those
    /// are leaked, as the kernel may still read the blocks and start linked SQEs that name
    /// the descriptors.
    fn drop(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        tracing::error!(
            "WAL driver dropped with {} SQEs in flight; leaking their buffers and \
             descriptors rather than freeing them under the kernel",
            self.in_flight
        );
        for g in self.groups.iter_mut().filter(|g| g.outstanding > 0) {
            std::mem::forget(std::mem::take(&mut g.plans));
            std::mem::forget(g.create.take());
            std::mem::forget(g.file.take());
            std::mem::forget(g.dir.take());
        }
    }
}

/// A write of the first `len` bytes of `block` at `offset` of `fd`: `WRITE_FIXED` from
/// the block's registered buffer when `fixed`, `WRITE` otherwise.
fn write_entry(
    fd: i32,
    block: &PoolBuf,
    len: usize,
    offset: u64,
    fixed: bool,
    rw_flags: i32,
) -> squeue::Entry {
    debug_assert!(len <= block.capacity() && len % PAGE == 0 && offset % PAGE as u64 == 0);
    let (fd, ptr, len) = (types::Fd(fd), block.as_ptr(), len as u32);
    if fixed {
        opcode::WriteFixed::new(fd, ptr, len, block.reg_slot().index)
            .offset(offset)
            .rw_flags(rw_flags)
            .build()
    } else {
        opcode::Write::new(fd, ptr, len)
            .offset(offset)
            .rw_flags(rw_flags)
            .build()
    }
}

/// The error a CQE result means for `step`, if any: a negative errno, or a short write.
fn step_error(step: Step, res: i32) -> Option<io::Error> {
    if res < 0 {
        return Some(io::Error::from_raw_os_error(-res));
    }
    match step {
        Step::Write { len } if (res as u32) < len => Some(io::ErrorKind::WriteZero.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The driver against a real io_uring built here, with no reactor: a small loop
    //! flushes, submits, reaps and completes. Failures are real where the kernel can be
    //! made to produce them (a read-only descriptor, a full tmpfs) and injected into the
    //! CQE results where it cannot (an fsync `EIO`, a short write).

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::collections::{BTreeMap, HashSet};
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicU64, Ordering};

    use io_uring::IoUring;
    use ringfort_pool::{BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass};
    use ringfort_wal::format::segment_file_name;
    use ringfort_wal::{Durability, SyncMethod};
    use slab::Slab;

    use super::*;

    struct Counting;

    thread_local! {
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    // SAFETY: every method forwards to the system allocator unchanged; counting touches
    // only a const-initialised thread-local cell, which never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: forwarded with the caller's pointer, layout and size.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded with the caller's pointer and layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Counts heap allocations per thread, for the steady-state test; forwards everything.
    #[global_allocator]
    static GLOBAL: Counting = Counting;

    fn allocs() -> u64 {
        ALLOCS.with(|c| c.get())
    }

    /// Submission queue entries of the test rings.
    const SQ: u32 = 64;

    /// Record sizes around the frame, page and block boundaries of [`config`], up to
    /// `max_record` (eight blocks).
    const SIZES: [usize; 14] = [
        0, 1, 31, 32, 100, 4063, 4064, 4096, 8000, 8160, 8192, 12_345, 20_000, 65_536,
    ];

    /// Small sizes, so that records span blocks, batches fill and segments rotate.
    /// A config whose batches seal after `records` records, so a test can put several
    /// groups in flight (the driver seals on its own only when nothing is in flight).
    fn config_sealing_every(records: usize) -> WalConfig {
        WalConfig {
            max_batch_records: records,
            ..config()
        }
    }

    fn config() -> WalConfig {
        WalConfig {
            segment_size: 256 << 10,
            block_size: 8 << 10,
            batch_bytes: 16 << 10,
            max_record: 64 << 10,
            max_batch_records: 64,
            max_batches: 4,
            ..WalConfig::default()
        }
    }

    /// An arena with a page class (segment headers) and a `block_size` class.
    fn arena(cfg: &WalConfig, registration: Registration) -> Arena {
        Arena::new(PoolConfig {
            classes: vec![
                SizeClass {
                    size: 4096,
                    count: 16,
                },
                SizeClass {
                    size: cfg.block_size,
                    count: 128,
                },
            ],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration,
            numa: NumaPolicy::FirstTouch,
        })
        .unwrap()
    }

    fn payload(seed: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seed.wrapping_mul(2_654_435_761) as usize).wrapping_add(i * 13) as u8)
            .collect()
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "ringfort-wal-driver-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A tmpfs of a given size mounted on a temp directory; unmounted on drop.
    struct Tmpfs(TempDir);

    impl Tmpfs {
        /// Panics, saying why, where mounting is not allowed (not root, or a sandbox):
        /// the test needs a real full file system and must not pass without one.
        fn mount(size: &str) -> Tmpfs {
            let dir = TempDir::new("tmpfs");
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status();
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "cannot mount a {size} tmpfs on {} ({status:?}): this test needs root \
                 (CAP_SYS_ADMIN) to fill a real file system",
                dir.path().display()
            );
            Tmpfs(dir)
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
        }
    }

    /// The fields of an SQE the tests check, read back from the kernel's layout.
    #[derive(Clone, Copy, Debug)]
    struct Sqe {
        opcode: u8,
        flags: u8,
        fd: i32,
        off: u64,
        addr: u64,
        len: u32,
        /// `rw_flags` of a write, `fsync_flags` of an fsync.
        op_flags: u32,
        buf_index: u16,
    }

    impl Sqe {
        fn of(e: &squeue::Entry) -> Sqe {
            assert_eq!(std::mem::size_of::<squeue::Entry>(), 64);
            // SAFETY: `Entry` is `#[repr(C)]` around the kernel's 64-byte `io_uring_sqe`,
            // built from a zeroed one, so all 64 bytes are initialised plain data.
            let b: [u8; 64] = unsafe { std::mem::transmute_copy(e) };
            let u16_at = |o: usize| u16::from_ne_bytes(b[o..o + 2].try_into().unwrap());
            let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
            let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
            Sqe {
                opcode: b[0],
                flags: b[1],
                fd: u32_at(4) as i32,
                off: u64_at(8),
                addr: u64_at(16),
                len: u32_at(24),
                op_flags: u32_at(28),
                buf_index: u16_at(40),
            }
        }

        fn linked(&self) -> bool {
            self.flags & squeue::Flags::IO_LINK.bits() != 0
        }
    }

    /// A ring standing in for the reactor: tags live in a slab whose key is `user_data`.
    struct Rig {
        ring: IoUring,
        tags: Slab<WalTag>,
        fixed: bool,
        /// Sync SQEs pushed: write-group fsyncs plus two per segment creation.
        syncs: usize,
        /// SQEs whose CQEs a test has taken off the ring and holds back.
        withheld: usize,
        /// Every SQE pushed, when a test asks for them.
        record: Option<Vec<Sqe>>,
    }

    impl Rig {
        fn new(arena: &Arena, fixed: bool) -> Rig {
            let ring = IoUring::new(SQ).unwrap();
            if fixed {
                // SAFETY: the iovecs describe the arena's one chunk, mapped until the arena
                // drops, and every test drops its rig (the ring) before its arena.
                unsafe { ring.submitter().register_buffers(&arena.iovecs()) }.unwrap();
            }
            Rig {
                ring,
                tags: Slab::with_capacity(2 * SQ as usize),
                fixed,
                syncs: 0,
                withheld: 0,
                record: None,
            }
        }

        /// `flush` into the SQ, then submit without waiting.
        fn flush(&mut self, wal: &mut WalDriver, arena: &Arena) {
            let room = {
                let sq = self.ring.submission();
                sq.capacity() - sq.len()
            };
            self.flush_within(wal, arena, room);
        }

        /// `flush` with `room` SQEs offered, then submit; returns the SQEs pushed.
        fn flush_within(&mut self, wal: &mut WalDriver, arena: &Arena, room: usize) -> usize {
            let mut pushed = 0;
            let Rig {
                ring,
                tags,
                fixed,
                syncs,
                record,
                ..
            } = self;
            wal.flush(arena, *fixed, room, &mut |e, tag| {
                if tag.step == Step::Sync {
                    *syncs += 1;
                }
                if let Some(r) = record {
                    r.push(Sqe::of(&e));
                }
                pushed += 1;
                let key = tags.insert(tag) as u64;
                // SAFETY: by `flush`'s contract the driver keeps what the entry names alive
                // until `complete` is called for its tag, which happens only after the CQE;
                // the entries are queued in order with no submission in between.
                unsafe { ring.submission().push(&e.user_data(key)) }
                    .expect("flush stays within the room it was given");
            });
            self.ring.submit().unwrap();
            pushed
        }

        /// Waits for a CQE when anything is in flight, then completes every CQE there,
        /// passing each result through `hook` first.
        fn reap(&mut self, wal: &mut WalDriver, hook: &mut dyn FnMut(WalTag, i32) -> i32) {
            if wal.in_flight > self.withheld {
                self.ring.submit_and_wait(1).unwrap();
            }
            while let Some(cqe) = self.ring.completion().next() {
                let tag = self.tags.remove(cqe.user_data() as usize);
                let res = hook(tag, cqe.result());
                wal.complete(tag, res);
            }
        }
    }

    /// A driver, its ring and arena, and a model of what must come back.
    struct Harness {
        wal: WalDriver,
        rig: Rig,
        arena: Arena,
        cfg: WalConfig,
        path: PathBuf,
        /// The payload of every record appended and not failed, by LSN.
        model: BTreeMap<Lsn, Vec<u8>>,
        /// Failures seen so far, in order.
        failed: Vec<Failure>,
    }

    impl Harness {
        fn open(path: &Path, cfg: WalConfig, fixed: bool) -> Harness {
            let registration = if fixed {
                Registration::Required
            } else {
                Registration::Off
            };
            let arena = arena(&cfg, registration);
            let rig = Rig::new(&arena, fixed);
            let (wal, _) =
                WalDriver::open(path, cfg.clone(), &arena, SQ as usize, 0, |_| Ok(())).unwrap();
            Harness {
                wal,
                rig,
                arena,
                cfg,
                path: path.to_path_buf(),
                model: BTreeMap::new(),
                failed: Vec::new(),
            }
        }

        /// Appends (a slice, or a chain when `chain`), ticking while the log is full.
        fn append(&mut self, seed: u64, len: usize, chain: bool) -> Lsn {
            let p = payload(seed, len);
            let lsn = loop {
                let r = if chain {
                    let mut c = BufChain::new(len.max(1));
                    c.append_slice(&self.arena, &p).unwrap();
                    self.wal.append_chain(&self.arena, c).map_err(|(_, e)| e)
                } else {
                    self.wal.append(&self.arena, &p)
                };
                match r {
                    Ok(lsn) => break lsn,
                    Err(WalError::Full(_)) => self.tick(),
                    Err(e) => panic!("append: {e}"),
                }
            };
            assert!(self.model.insert(lsn, p).is_none(), "LSN {lsn} given twice");
            lsn
        }

        fn tick(&mut self) {
            self.tick_with(&mut |_, res| res);
        }

        fn tick_with(&mut self, hook: &mut dyn FnMut(WalTag, i32) -> i32) {
            self.rig.flush(&mut self.wal, &self.arena);
            self.rig.reap(&mut self.wal, hook);
            self.settle();
        }

        /// Takes the failures in: none names a durable LSN, and their records are dropped
        /// from the model (their LSNs will be given again).
        fn settle(&mut self) {
            while let Some(f) = self.wal.take_failure() {
                assert!(
                    self.wal.durable_lsn() <= f.lsns.start,
                    "failed LSNs {:?} were acknowledged (durable {})",
                    f.lsns,
                    self.wal.durable_lsn()
                );
                self.model.retain(|&lsn, _| lsn < f.lsns.start);
                self.failed.push(f);
            }
        }

        /// Ticks (with `hook` on the results) until a failure arrives.
        fn tick_until_failed(&mut self, hook: &mut dyn FnMut(WalTag, i32) -> i32) {
            for _ in 0..1000 {
                if !self.failed.is_empty() {
                    return;
                }
                self.tick_with(hook);
            }
            panic!("no failure was reported");
        }

        /// Ticks until nothing is in flight or waiting.
        fn drive(&mut self) {
            for _ in 0..100_000 {
                if self.wal.idle() {
                    return;
                }
                self.tick();
            }
            panic!("the WAL never went idle");
        }

        /// Closes the log, reads it back from `from`, and checks that it holds exactly the
        /// model's records from the first LSN it still has.
        fn verify(self, from: Lsn) -> RecoveryReport {
            let Harness {
                wal,
                rig,
                arena,
                cfg,
                path,
                model,
                ..
            } = self;
            assert_eq!(
                wal.durable_lsn(),
                wal.next_lsn(),
                "closing with records pending"
            );
            drop(wal);
            drop(rig);
            drop(arena);
            let (records, report) = read_back(&path, &cfg, from);
            let start = report.first_lsn.max(from);
            let want: Vec<(Lsn, Vec<u8>)> =
                model.range(start..).map(|(&l, p)| (l, p.clone())).collect();
            assert_eq!(records.len(), want.len(), "record count");
            for (got, want) in records.iter().zip(&want) {
                assert_eq!(got.0, want.0, "LSN order");
                assert!(got.1 == want.1, "payload of LSN {} differs", got.0);
            }
            report
        }
    }

    /// Every record at or above `from`, through the driver's own open path.
    fn read_back(path: &Path, cfg: &WalConfig, from: Lsn) -> (Vec<(Lsn, Vec<u8>)>, RecoveryReport) {
        let arena = arena(cfg, Registration::Off);
        let mut records = Vec::new();
        let (wal, report) = WalDriver::open(path, cfg.clone(), &arena, SQ as usize, from, |r| {
            records.push((r.lsn, r.payload.to_vec()));
            Ok(())
        })
        .unwrap();
        assert!(wal.idle());
        drop(wal);
        (records, report)
    }

    /// Appends records of every size (slices and chains), ticking now and then, drives
    /// the log idle, and checks it back. Returns the write-group fsyncs and the report.
    fn roundtrip(tag: &str, cfg: WalConfig, fixed: bool) -> (usize, RecoveryReport) {
        let dir = TempDir::new(tag);
        let mut h = Harness::open(dir.path(), cfg, fixed);
        for i in 0..280u64 {
            let len = SIZES[i as usize % SIZES.len()];
            h.append(i, len, i % 5 == 4);
            if i % 7 == 6 {
                h.tick();
            }
        }
        h.drive();
        assert!(h.failed.is_empty(), "{:?}", h.failed);
        assert_eq!(h.wal.durable_lsn(), 281);
        assert_eq!(h.wal.in_flight, 0);
        let syncs = h.rig.syncs;
        let report = h.verify(0);
        assert_eq!(report.next_lsn, 281);
        assert!(report.segments > 5, "segments rotated: {}", report.segments);
        (syncs - 2 * report.segments, report)
    }

    #[test]
    fn unregistered_writes_come_back_byte_identical() {
        let (group_syncs, _) = roundtrip("plain", config(), false);
        assert!(
            group_syncs > 0,
            "fdatasync groups commit with a linked fsync"
        );
    }

    #[test]
    fn fixed_direct_writes_come_back_byte_identical() {
        let cfg = WalConfig {
            direct_io: true,
            ..config()
        };
        let (group_syncs, _) = roundtrip("fixed", cfg, true);
        assert!(group_syncs > 0);
    }

    #[test]
    fn dsync_and_buffered_logs_need_no_fsync_sqes() {
        let dsync = WalConfig {
            sync_method: SyncMethod::Dsync,
            ..config()
        };
        assert_eq!(roundtrip("dsync", dsync, true).0, 0);
        let buffered = WalConfig {
            durability: Durability::Buffered,
            ..config()
        };
        assert_eq!(roundtrip("buffered", buffered, false).0, 0);
    }

    #[test]
    fn replay_starts_at_the_requested_lsn() {
        let dir = TempDir::new("from");
        let mut h = Harness::open(dir.path(), config(), false);
        for i in 0..120u64 {
            h.append(i, SIZES[i as usize % SIZES.len()], false);
        }
        h.drive();
        h.verify(77);
        let (records, report) = read_back(dir.path(), &config(), 77);
        assert_eq!(records.first().map(|r| r.0), Some(77));
        assert_eq!(report.next_lsn, 121);
    }

    #[test]
    fn acknowledgement_follows_lsn_order_across_groups() {
        let dir = TempDir::new("order");
        let mut h = Harness::open(dir.path(), config_sealing_every(3), false);
        h.append(0, 10, false);
        h.drive();
        let mut slots = Vec::new();
        for group in 0..2u64 {
            for i in 0..3 {
                h.append(100 * group + i, 1000, false);
            }
            h.rig.flush(&mut h.wal, &h.arena);
            slots.push(slots_in_flight(&h));
        }
        let second: HashSet<u16> = slots[1].difference(&slots[0]).copied().collect();
        assert!(!second.is_empty() && !slots[0].is_empty());
        let mut cqes = take_cqes(&mut h);
        // The second group completes first: nothing may be acknowledged yet.
        cqes.sort_by_key(|(t, _)| !second.contains(&t.slot));
        let before = h.wal.durable_lsn();
        for (i, &(tag, res)) in cqes.iter().enumerate() {
            h.wal.complete(tag, res);
            if i + 1 < cqes.len() {
                assert_eq!(h.wal.durable_lsn(), before, "acknowledged out of order");
            }
        }
        assert_eq!(h.wal.durable_lsn(), 8);
        assert!(h.wal.take_failure().is_none());
        h.verify(0);
    }

    #[test]
    fn in_flight_batches_are_bounded() {
        let dir = TempDir::new("bound");
        let cfg = config_sealing_every(1);
        let mut h = Harness::open(dir.path(), cfg.clone(), false);
        h.append(0, 10, false);
        h.drive();
        let p = payload(1, 1000);
        let mut full = false;
        for _ in 0..20 {
            match h.wal.append(&h.arena, &p) {
                Ok(lsn) => {
                    h.model.insert(lsn, p.clone());
                }
                Err(WalError::Full(Full::Batches)) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            // Submitted, never reaped: batches pile up in flight.
            h.rig.flush(&mut h.wal, &h.arena);
        }
        assert!(full, "appends never met the max_batches bound");
        let per_batch = cfg.max_batch_blocks().unwrap() + 1;
        assert!(h.wal.in_flight <= cfg.max_batches * per_batch);
        assert!(h.wal.in_flight > 0);
        h.drive();
        h.append(2, 1000, false);
        h.drive();
        h.verify(0);
    }

    #[test]
    fn a_failed_write_is_reported_and_never_acknowledged() {
        let dir = TempDir::new("ebadf");
        let mut h = Harness::open(dir.path(), config(), false);
        for i in 0..5 {
            h.append(i, 3000, false);
        }
        h.drive();
        let durable = h.wal.durable_lsn();
        let (segment, fd) = {
            let (id, file) = h.wal.current.as_ref().unwrap();
            (*id, file.as_raw_fd())
        };
        // The segment's descriptor now names a read-only open file: its writes fail with
        // EBADF and the kernel cancels the linked fsync.
        let ro = File::open(dir.path().join(segment_file_name(segment))).unwrap();
        // SAFETY: both descriptors are open; dup2 atomically repoints `fd`, which the
        // driver still owns and closes once.
        assert!(unsafe { libc::dup2(ro.as_raw_fd(), fd) } >= 0);
        drop(ro);
        for i in 0..5 {
            h.append(10 + i, 3000, false);
        }
        let mut sync_results = Vec::new();
        h.tick_until_failed(&mut |tag, res| {
            if tag.step == Step::Sync {
                sync_results.push(res);
            }
            res
        });
        assert_eq!(
            sync_results,
            [-libc::ECANCELED],
            "the fsync is linked behind the writes"
        );
        let f = &h.failed[0];
        assert_eq!(f.lsns, durable..durable + 5);
        assert_eq!(f.error.op, IoOp::Write);
        assert_eq!(
            f.error.errno,
            Some(libc::EBADF),
            "the cancelled fsync hid the cause"
        );
        assert_eq!(h.wal.durable_lsn(), durable);
        assert_eq!(
            h.wal.next_lsn(),
            durable,
            "failed LSNs are handed out again"
        );
        h.drive();
        for i in 0..5 {
            h.append(20 + i, 3000, false);
        }
        h.drive();
        assert_eq!(h.failed.len(), 1);
        assert_eq!(h.wal.current.as_ref().unwrap().0, durable, "a new segment");
        assert_eq!(h.wal.durable_lsn(), durable + 5);
        h.verify(0);
    }

    #[test]
    fn a_failed_fsync_poisons_the_segment() {
        let dir = TempDir::new("eio");
        let mut h = Harness::open(dir.path(), config(), true);
        for i in 0..5 {
            h.append(i, 3000, false);
        }
        h.drive();
        let durable = h.wal.durable_lsn();
        let old = h.wal.current.as_ref().unwrap().0;
        for i in 0..3 {
            h.append(10 + i, 3000, false);
        }
        // The batch is written for real; its fsync is made to report EIO.
        h.tick_until_failed(&mut |tag, res| {
            if tag.step == Step::Sync {
                -libc::EIO
            } else {
                res
            }
        });
        let f = &h.failed[0];
        assert_eq!(f.lsns, durable..durable + 3);
        assert_eq!(f.error.op, IoOp::Sync);
        assert_eq!(f.error.errno, Some(libc::EIO));
        assert_eq!(h.wal.durable_lsn(), durable);
        // The same LSNs again, with other bytes: recovery must return these, never the
        // ones written to the poisoned segment.
        for i in 0..3 {
            h.append(20 + i, 3000, false);
        }
        h.drive();
        let new = h.wal.current.as_ref().unwrap().0;
        assert!(
            new > old && new == durable,
            "the poisoned segment is not written again"
        );
        assert_eq!(h.failed.len(), 1);
        h.verify(0);
    }

    #[test]
    fn appends_are_refused_until_the_failure_is_taken() {
        let dir = TempDir::new("gate");
        let mut h = Harness::open(dir.path(), config(), false);
        h.append(0, 100, false);
        h.drive();
        let durable = h.wal.durable_lsn();
        h.append(1, 100, false);
        h.rig.flush(&mut h.wal, &h.arena);
        // Complete without taking the failure, as a reactor that delivers it later would.
        while !h.wal.idle() {
            h.rig.reap(&mut h.wal, &mut |tag, res| {
                if tag.step == Step::Sync {
                    -libc::EIO
                } else {
                    res
                }
            });
        }
        assert_eq!(h.wal.next_lsn(), durable, "the failed LSN is free again");
        match h.wal.append(&h.arena, b"late") {
            Err(WalError::Failed(e)) => assert_eq!(e.errno, Some(libc::EIO)),
            r => panic!("an append got {r:?} before the failure was taken"),
        }
        let mut chain = BufChain::new(4);
        chain.append_slice(&h.arena, b"late").unwrap();
        assert!(matches!(
            h.wal.append_chain(&h.arena, chain),
            Err((_, WalError::Failed(_)))
        ));
        let f = h.wal.take_failure().expect("queued");
        assert_eq!(f.lsns, durable..durable + 1);
        h.model.remove(&durable);
        assert!(h.wal.take_failure().is_none());
        assert_eq!(h.append(2, 100, false), durable);
        h.drive();
        h.verify(0);
    }

    #[test]
    fn a_short_write_fails_the_group() {
        let dir = TempDir::new("short");
        let mut h = Harness::open(dir.path(), config(), false);
        h.append(0, 100, false);
        h.drive();
        let durable = h.wal.durable_lsn();
        h.append(1, 20_000, false);
        let mut armed = true;
        h.tick_until_failed(&mut |tag, res| match tag.step {
            Step::Write { len } if armed && res == len as i32 => {
                armed = false;
                res / 2
            }
            _ => res,
        });
        let f = &h.failed[0];
        assert_eq!(f.lsns, durable..durable + 1);
        assert_eq!(f.error.op, IoOp::Write);
        assert_eq!(f.error.kind, io::ErrorKind::WriteZero);
        assert_eq!(h.wal.durable_lsn(), durable);
        h.append(2, 20_000, false);
        h.drive();
        h.verify(0);
    }

    #[test]
    fn a_full_device_fails_creation_and_recovers_once_space_is_freed() {
        let fs = Tmpfs::mount("1m");
        let path = fs.0.path().join("wal");
        let mut h = Harness::open(&path, config(), false);
        let mut seed = 0;
        while h.failed.is_empty() {
            h.append(seed, 10_000, false);
            seed += 1;
            h.tick();
            assert!(seed < 1000, "a 1 MiB tmpfs never filled up");
        }
        let f = h.failed[0].clone();
        assert_eq!(f.error.op, IoOp::Create);
        assert!(f.error.is_no_space(), "{}", f.error);
        assert!(h.wal.durable_lsn() <= f.lsns.start);
        // Dropping old segments frees the space; appends then work again.
        let removed = h.wal.truncate_prefix(h.wal.durable_lsn()).unwrap();
        assert!(removed > 0);
        for i in 0..10 {
            h.append(5000 + i, 10_000, false);
        }
        h.drive();
        assert_eq!(h.wal.durable_lsn(), h.wal.next_lsn());
        assert_eq!(h.failed.len(), 1, "{:?}", h.failed);
        h.verify(0);
        drop(fs);
    }

    #[test]
    fn truncation_keeps_what_is_not_durable_and_recycles_segments() {
        let dir = TempDir::new("truncate");
        let cfg = WalConfig {
            recycle_segments: 2,
            ..config()
        };
        let mut h = Harness::open(dir.path(), cfg, true);
        for i in 0..150u64 {
            h.append(i, SIZES[i as usize % SIZES.len()], false);
        }
        h.drive();
        for i in 0..3 {
            h.append(1000 + i, 500, false);
        }
        h.rig.flush(&mut h.wal, &h.arena);
        assert!(h.wal.in_flight > 0);
        let in_flight_segment = h.wal.current.as_ref().unwrap().0;
        // Asking for everything removes only durable segments the kernel is done with.
        let removed = h.wal.truncate_prefix(Lsn::MAX).unwrap();
        assert!(removed > 0);
        assert!(dir
            .path()
            .join(segment_file_name(in_flight_segment))
            .exists());
        h.drive();
        // New segments reuse the spares; their stale frames never validate.
        for i in 0..150u64 {
            h.append(2000 + i, SIZES[i as usize % SIZES.len()], true);
        }
        h.drive();
        let report = h.verify(0);
        assert!(report.first_lsn > 1);
    }

    #[test]
    fn truncation_spares_a_segment_still_being_written_behind_a_creation() {
        let dir = TempDir::new("truncate-rotating");
        let mut h = Harness::open(dir.path(), config(), false);
        for round in 0..200u64 {
            for i in 0..10 {
                h.append(round * 10 + i, 3000, false);
            }
            h.rig.flush(&mut h.wal, &h.arena);
            let creating = h.wal.groups.iter().any(|g| g.create.is_some());
            let writing: Vec<Lsn> = h
                .wal
                .groups
                .iter()
                .filter(|g| !g.plans.is_empty())
                .map(|g| g.segment)
                .collect();
            if creating && !writing.is_empty() {
                // The next segment's file exists, so the one still being written is no
                // longer the last: only the clamp keeps it.
                h.wal.truncate_prefix(Lsn::MAX).unwrap();
                for id in writing {
                    assert!(dir.path().join(segment_file_name(id)).exists());
                }
                h.drive();
                h.verify(0);
                return;
            }
            h.drive();
        }
        panic!("no flush wrote to one segment while creating the next");
    }

    /// The tags of the SQEs in flight, by group slot.
    fn slots_in_flight(h: &Harness) -> HashSet<u16> {
        h.rig.tags.iter().map(|(_, t)| t.slot).collect()
    }

    /// Waits for every SQE in flight and takes the CQEs off the ring without completing
    /// them.
    fn take_cqes(h: &mut Harness) -> Vec<(WalTag, i32)> {
        let total = h.wal.in_flight;
        h.rig.ring.submit_and_wait(total).unwrap();
        let cqes: Vec<(WalTag, i32)> = h
            .rig
            .ring
            .completion()
            .map(|c| (h.rig.tags.remove(c.user_data() as usize), c.result()))
            .collect();
        assert_eq!(cqes.len(), total);
        cqes
    }

    #[test]
    fn truncation_spares_a_poisoned_segment_with_sqes_still_in_flight() {
        let dir = TempDir::new("truncate-zombie");
        let mut h = Harness::open(dir.path(), config_sealing_every(1), false);
        h.append(0, 100, false);
        h.drive();
        let poisoned = h.wal.current.as_ref().unwrap().0;
        h.append(1, 1000, false);
        h.rig.flush(&mut h.wal, &h.arena);
        let first = slots_in_flight(&h);
        h.append(2, 1000, false);
        h.rig.flush(&mut h.wal, &h.arena);
        // The first group's fsync fails; the second group's CQEs are held back, as if its
        // fsync were stuck on the failing device.
        let mut held = Vec::new();
        for (tag, res) in take_cqes(&mut h) {
            if first.contains(&tag.slot) {
                let res = if tag.step == Step::Sync {
                    -libc::EIO
                } else {
                    res
                };
                h.wal.complete(tag, res);
            } else {
                held.push((tag, res));
            }
        }
        h.settle();
        assert_eq!(h.failed.len(), 1);
        assert!(!held.is_empty());
        h.rig.withheld = held.len();
        // The log moves on in a new segment, until it is durable well past the poisoned one.
        for i in 0..5 {
            h.append(10 + i, 1000, false);
        }
        for _ in 0..1000 {
            if h.wal.durable_lsn() == h.wal.next_lsn() {
                break;
            }
            h.tick();
        }
        assert_eq!(h.wal.durable_lsn(), 7);
        h.wal.truncate_prefix(Lsn::MAX).unwrap();
        assert!(
            dir.path().join(segment_file_name(poisoned)).exists(),
            "a segment the kernel may still write was removed"
        );
        for (tag, res) in held {
            h.wal.complete(tag, res);
            assert!(h.wal.take_failure().is_none(), "failed only once");
        }
        h.rig.withheld = 0;
        h.drive();
        h.verify(0);
    }

    #[test]
    fn flush_never_emits_more_sqes_than_the_room_it_is_given() {
        let dir = TempDir::new("room");
        let mut h = Harness::open(dir.path(), config(), false);
        h.append(0, 100, false);
        h.drive();
        // Three batches of eight blocks each.
        for i in 0..3 {
            h.append(1 + i, 60_000, false);
        }
        let room = h.wal.batch_sqes;
        let pushed = h.rig.flush_within(&mut h.wal, &h.arena, room);
        assert!(
            pushed > 0 && pushed <= room,
            "{pushed} SQEs for room {room}"
        );
        assert!(!h.wal.idle());
        h.drive();
        h.verify(0);
    }

    #[test]
    fn sqes_encode_the_plans_exactly() {
        let write_op = |fixed| {
            if fixed {
                opcode::WriteFixed::CODE
            } else {
                opcode::Write::CODE
            }
        };
        let datasync = types::FsyncFlags::DATASYNC.bits();
        for (fixed, method) in [
            (true, SyncMethod::Fdatasync),
            (false, SyncMethod::Fdatasync),
            (true, SyncMethod::Dsync),
        ] {
            let dir = TempDir::new("sqes");
            let cfg = WalConfig {
                sync_method: method,
                ..config()
            };
            let mut h = Harness::open(dir.path(), cfg, fixed);
            h.rig.record = Some(Vec::new());
            h.append(0, 100, false);
            h.tick();
            // The creation: header write -> fdatasync -> directory fsync, linked.
            let create = h.rig.record.replace(Vec::new()).unwrap();
            assert_eq!(create.len(), 3, "{create:?}");
            let (header, sync, dir_sync) = (create[0], create[1], create[2]);
            assert_eq!(header.opcode, write_op(fixed));
            assert_eq!((header.off, header.len), (0, SEGMENT_HEADER_LEN as u32));
            assert!(header.linked() && sync.linked() && !dir_sync.linked());
            assert_eq!(sync.opcode, opcode::Fsync::CODE);
            assert_eq!((sync.fd, sync.op_flags), (header.fd, datasync));
            assert_eq!(dir_sync.opcode, opcode::Fsync::CODE);
            assert_eq!(dir_sync.op_flags, 0);
            assert_ne!(dir_sync.fd, header.fd);
            h.drive();
            // Three batches of three blocks each, flushed in one tick.
            h.rig.record = Some(Vec::new());
            for i in 0..3 {
                h.append(1 + i, 20_000, false);
            }
            h.rig.flush(&mut h.wal, &h.arena);
            let sqes = h.rig.record.take().unwrap();
            let iovecs = h.arena.iovecs();
            let (writes, syncs): (Vec<Sqe>, Vec<Sqe>) =
                sqes.iter().partition(|s| s.opcode == write_op(fixed));
            assert_eq!(writes.len(), 9, "{sqes:?}");
            for (i, w) in writes.iter().enumerate() {
                assert_eq!(w.fd, writes[0].fd);
                assert!(w.off % PAGE as u64 == 0 && w.len as usize % PAGE == 0);
                if let Some(next) = writes.get(i + 1) {
                    assert_eq!(next.off, w.off + w.len as u64, "blocks go back to back");
                }
                if fixed {
                    let iov = iovecs[w.buf_index as usize];
                    let base = iov.iov_base as u64;
                    assert!(w.addr >= base && w.addr + w.len as u64 <= base + iov.iov_len as u64);
                }
                match method {
                    SyncMethod::Fdatasync => assert!(w.linked() && w.op_flags == 0),
                    SyncMethod::Dsync => {
                        assert!(!w.linked() && w.op_flags == libc::RWF_DSYNC as u32)
                    }
                }
            }
            match method {
                SyncMethod::Fdatasync => {
                    // One group commit: a single fsync, last, ending the chain.
                    assert_eq!(syncs.len(), 1);
                    let f = sqes.last().unwrap();
                    assert_eq!(
                        (f.opcode, f.op_flags, f.fd),
                        (opcode::Fsync::CODE, datasync, writes[0].fd)
                    );
                    assert!(!f.linked());
                }
                SyncMethod::Dsync => assert!(syncs.is_empty()),
            }
            h.drive();
            h.verify(0);
        }
    }

    #[test]
    fn open_refuses_a_submission_queue_smaller_than_a_batch() {
        let dir = TempDir::new("small-sq");
        let cfg = config();
        let arena = arena(&cfg, Registration::Off);
        let need = cfg.max_batch_blocks().unwrap() + 1;
        let err = WalDriver::open(dir.path(), cfg, &arena, need - 1, 0, |_| Ok(()))
            .err()
            .expect("a too-small queue is refused");
        assert!(matches!(err, WalError::Config(_)), "{err}");
        assert!(err.to_string().contains("ring_entries"), "{err}");
    }

    #[test]
    fn dropping_with_sqes_in_flight_leaks_instead_of_freeing() {
        let dir = TempDir::new("leak");
        let mut h = Harness::open(dir.path(), config(), false);
        h.append(0, 100, false);
        h.rig.flush(&mut h.wal, &h.arena);
        assert!(h.wal.in_flight > 0);
        let Harness {
            wal, rig, arena, ..
        } = h;
        let live = arena.live_buffers();
        drop(wal);
        // The header block of the creation in flight stays out of the arena.
        assert!(arena.live_buffers() > 0 && arena.live_buffers() < live);
        rig.ring.submit_and_wait(3).unwrap();
        drop(rig);
    }

    #[test]
    fn steady_state_appends_allocate_nothing() {
        let dir = TempDir::new("alloc");
        let cfg = WalConfig {
            segment_size: 16 << 20,
            ..config()
        };
        let mut h = Harness::open(dir.path(), cfg, true);
        let small = payload(1, 300);
        let big = payload(2, 20_000);
        let round = |h: &mut Harness| {
            for i in 0..10 {
                let p = if i == 7 { &big } else { &small };
                h.wal.append(&h.arena, p).unwrap();
            }
            let mut chain = BufChain::new(small.len());
            chain.append_slice(&h.arena, &small).unwrap();
            h.wal
                .append_chain(&h.arena, chain)
                .map_err(|(_, e)| e)
                .unwrap();
            while !h.wal.idle() {
                h.rig.flush(&mut h.wal, &h.arena);
                h.rig.reap(&mut h.wal, &mut |_, res| res);
            }
        };
        for _ in 0..20 {
            round(&mut h);
        }
        let before = allocs();
        for _ in 0..200 {
            round(&mut h);
        }
        assert_eq!(allocs() - before, 0, "steady-state appends allocated");
        assert!(h.wal.take_failure().is_none());
        assert_eq!(h.wal.durable_lsn(), 220 * 11 + 1);
    }
}
