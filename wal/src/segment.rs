//! Segment files on a [`Dir`]: creating (or recycling) them, writing and syncing sealed
//! batches, removing whole segments below a checkpoint, and opening a log for appending
//! (recovery plus the repair it asks for).
//!
//! Every creation, removal and rename is followed by an `fsync` of the directory before
//! anything depends on it.

use std::io::{self, IoSlice};
use std::sync::{Arc, Condvar, Mutex};

use ringfort_pool::PoolBuf;

use crate::config::{WalConfig, MAX_RECORD_LIMIT, MAX_SEGMENT_LIMIT};
use crate::error::{IoFailure, IoOp, WalError};
use crate::file::{list_segments, Dir, DirSegments, SegmentFile};
use crate::format::{
    parse_segment_file_name, segment_file_name, PREPARING_SPARE, SEGMENT_HEADER_LEN, SPARE_PREFIX,
};
use crate::plan::{CreatePlan, SyncKind, WritePlan};
use crate::recovery::{LogReader, ReadOptions, RecordRef, RecoveryReport, Repair};
use crate::Lsn;

/// iovecs per `pwritev2` call (kept on the stack).
const IOV_BATCH: usize = 64;

/// Writes one log's segments: the driver side of [`CreatePlan`] and [`WritePlan`].
pub struct SegmentWriter<D: Dir> {
    current: Option<(Lsn, Arc<D::File>)>,
    header: PoolBuf,
}

impl<D: Dir> SegmentWriter<D> {
    /// A writer with no open segment. `header` is a page-aligned block of at least
    /// [`SEGMENT_HEADER_LEN`] bytes used to write segment headers (`O_DIRECT` safe).
    pub fn new(header: PoolBuf) -> SegmentWriter<D> {
        debug_assert!(header.capacity() >= SEGMENT_HEADER_LEN);
        SegmentWriter {
            current: None,
            header,
        }
    }

    /// Carries out a [`CreatePlan`]: removes segments named at or above it (they hold
    /// nothing durable), takes a spare or creates the file, preallocates it, writes and
    /// syncs the header, and syncs the directory. On success the new segment is the one
    /// written to; the previous one is closed.
    pub fn create(&mut self, dir: &D, plan: &CreatePlan) -> Result<(), IoFailure> {
        let fail = |e: io::Error| IoFailure::new(IoOp::Create, plan.segment, &e);
        let file = prepare_segment(dir, plan)?;
        plan.header().encode(&mut self.header[..SEGMENT_HEADER_LEN]);
        write_all(
            &file,
            &mut [IoSlice::new(&self.header[..SEGMENT_HEADER_LEN])],
            0,
            false,
        )
        .map_err(fail)?;
        file.sync_data().map_err(fail)?;
        dir.sync().map_err(fail)?;
        self.current = Some((plan.segment, Arc::new(file)));
        Ok(())
    }

    /// Writes sealed plans (all for the current segment, in offset order) with as few
    /// `pwritev2` calls as the iovec batch allows, then makes them durable per `sync`: one
    /// `fdatasync` for the whole group, or `RWF_DSYNC` on every write.
    pub fn write(&mut self, plans: &[WritePlan], sync: SyncKind) -> Result<(), IoFailure> {
        match self.write_unsynced(plans, sync)? {
            Some(written) if sync == SyncKind::Data => written.sync(),
            _ => Ok(()),
        }
    }

    /// [`SegmentWriter::write`] without the `fdatasync` of [`SyncKind::Data`]: the caller
    /// syncs the returned [`Unsynced`], on another thread if it likes, while later groups
    /// are written. `None` when `plans` is empty.
    pub fn write_unsynced(
        &mut self,
        plans: &[WritePlan],
        sync: SyncKind,
    ) -> Result<Option<Unsynced<D::File>>, IoFailure> {
        let Some(first) = plans.first() else {
            return Ok(None);
        };
        let segment = first.segment();
        let (cur, file) = match self.current.as_mut() {
            Some((id, f)) if *id == segment => (*id, f),
            _ => {
                let e = io::Error::new(io::ErrorKind::NotFound, "segment is not open");
                return Err(IoFailure::new(IoOp::Write, segment, &e));
            }
        };
        let dsync = sync == SyncKind::Dsync;
        let op = if dsync { IoOp::Sync } else { IoOp::Write };
        let fail = |e: io::Error| IoFailure::new(op, cur, &e);
        let mut iov = [IoSlice::new(&[]); IOV_BATCH];
        let mut n = 0;
        let mut start = first.offset();
        let mut next = start;
        for plan in plans {
            if plan.segment() != cur || plan.offset() != next {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "plans are not contiguous");
                return Err(fail(e));
            }
            for (block, len) in plan.blocks() {
                if n == IOV_BATCH {
                    write_all(&**file, &mut iov[..n], start, dsync).map_err(fail)?;
                    start = next;
                    n = 0;
                }
                iov[n] = IoSlice::new(&block[..len]);
                n += 1;
                next += len as u64;
            }
        }
        write_all(&**file, &mut iov[..n], start, dsync).map_err(fail)?;
        Ok(Some(Unsynced {
            segment: cur,
            file: Arc::clone(file),
        }))
    }
}

/// Groups written to a segment and not yet synced. The file stays open while this lives,
/// even after the writer moves to a new segment.
pub struct Unsynced<F> {
    segment: Lsn,
    file: Arc<F>,
}

impl<F: SegmentFile> Unsynced<F> {
    /// `fdatasync`s the segment: every group written to it before the call is durable
    /// when this returns `Ok`.
    pub fn sync(&self) -> Result<(), IoFailure> {
        self.file
            .sync_data()
            .map_err(|e| IoFailure::new(IoOp::Sync, self.segment, &e))
    }
}

/// The metadata half of a [`CreatePlan`], for drivers that do the rest themselves (the
/// engine's io_uring driver writes the header and syncs on its ring): removes segments
/// named at or above the plan's (they hold nothing durable), takes a spare or creates the
/// file, and preallocates it. The caller must then write the header
/// ([`CreatePlan::header`]) at offset 0, `fdatasync` the file and `fsync` the directory,
/// in that order, before any batch goes to the segment.
pub fn prepare_segment<D: Dir>(dir: &D, plan: &CreatePlan) -> Result<D::File, IoFailure> {
    let fail = |e: io::Error| IoFailure::new(IoOp::Create, plan.segment, &e);
    let name = segment_file_name(plan.segment);
    let names = dir.list().map_err(fail)?;
    for n in &names {
        if parse_segment_file_name(n).is_some_and(|id| id >= plan.segment) {
            dir.remove(n).map_err(fail)?;
        }
    }
    let spare = names.iter().find(|n| n.starts_with(SPARE_PREFIX));
    let file = match spare {
        Some(s) => {
            dir.rename(s, &name).map_err(fail)?;
            dir.open(&name).map_err(fail)?
        }
        None => dir.create(&name).map_err(fail)?,
    };
    file.allocate(plan.size).map_err(fail)?;
    Ok(file)
}

/// Builds zero-filled spare segments of `size` bytes until `dir` holds `want` spares
/// (recycled or zeroed): each is created as [`PREPARING_SPARE`], preallocated, written
/// with zeros where unwritten and synced, then renamed to a spare name while holding
/// `dir_lock` (which must serialise renames with segment creation and `truncate_prefix`;
/// it is held only for a listing and the rename), and the directory is synced. One call at
/// a time per directory. A leftover `PREPARING_SPARE` from a crash is removed first. With
/// `paced` (a background build beside a live log) the zeros are written at a bounded share
/// of the device ([`SegmentFile::zero_fill`]). Returns how many it built.
pub fn make_zeroed_spares<D: Dir>(
    dir: &D,
    dir_lock: &Mutex<()>,
    size: u64,
    want: usize,
    paced: bool,
) -> Result<usize, WalError> {
    let ctx = |what: &str| format!("{what} a zero-filled spare in {}", dir.describe());
    let names = dir
        .list()
        .map_err(|e| WalError::io(ctx("listing for"), e))?;
    let have = names.iter().filter(|n| n.starts_with(SPARE_PREFIX)).count();
    if names.iter().any(|n| n == PREPARING_SPARE) {
        dir.remove(PREPARING_SPARE)
            .map_err(|e| WalError::io(ctx("removing the leftover of"), e))?;
    }
    let mut built = 0;
    for _ in have..want {
        let made = dir.create(PREPARING_SPARE).and_then(|f| {
            f.allocate(size)?;
            f.zero_fill(size, paced)?;
            f.sync_data()
        });
        if let Err(e) = made {
            let _ = dir.remove(PREPARING_SPARE);
            return Err(WalError::io(ctx("building"), e));
        }
        {
            let _g = dir_lock.lock().unwrap_or_else(|e| e.into_inner());
            let names = dir
                .list()
                .map_err(|e| WalError::io(ctx("listing for"), e))?;
            let name = (0..)
                .map(|i| format!("{SPARE_PREFIX}zeroed-{i}"))
                .find(|n| !names.contains(n))
                .expect("some index is free");
            dir.rename(PREPARING_SPARE, &name)
                .map_err(|e| WalError::io(ctx("naming"), e))?;
        }
        // A spare lost to a crash before this sync is only a missed speed-up.
        dir.sync().map_err(|e| WalError::io(ctx("syncing"), e))?;
        built += 1;
    }
    Ok(built)
}

/// Mean group size up to which a new zero-filled spare is worth building.
pub const ZERO_FILL_MAX_GROUP: u64 = 256 << 10;

/// Decides, segment by segment, whether to build a zero-filled spare for the next one.
/// It pays when the log's groups are small: the sync rate bounds the log, and every
/// `fdatasync` after overwriting saves an extent conversion. It does not when groups are
/// large: bandwidth bounds the log, and building a spare would write every segment twice.
/// The decision comes when a segment is half written: the spare's writes then compete
/// with the log's own for half a segment's time, not in a burst at its start, and a short
/// run never pays for a spare it does not reach.
#[derive(Clone, Copy, Debug)]
pub struct GroupSizes {
    half: u64,
    bytes: u64,
    groups: u64,
}

impl GroupSizes {
    /// Counts for segments of `segment_size` bytes.
    pub fn new(segment_size: u64) -> GroupSizes {
        GroupSizes {
            half: segment_size / 2,
            bytes: 0,
            groups: 0,
        }
    }

    /// Counts one group of `bytes` written to the current segment; true exactly once per
    /// segment, when it becomes half written and its mean group is at most
    /// [`ZERO_FILL_MAX_GROUP`]: then a spare should be built.
    pub fn record(&mut self, bytes: u64) -> bool {
        let before = self.bytes;
        self.bytes += bytes;
        self.groups += 1;
        before < self.half
            && self.bytes >= self.half
            && self.bytes / self.groups <= ZERO_FILL_MAX_GROUP
    }

    /// A new segment: counting starts afresh.
    pub fn new_segment(&mut self) {
        self.bytes = 0;
        self.groups = 0;
    }
}

/// A thread that builds spares (runs a job) whenever asked: requests that arrive while
/// the job runs make it run once more, never more. Dropping the builder waits for the job
/// in progress, then ends the thread.
pub struct SpareBuilder {
    shared: Arc<(Mutex<BuilderState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct BuilderState {
    wanted: bool,
    exit: bool,
}

impl SpareBuilder {
    /// Starts the thread; `job` runs on it once per (coalesced) [`SpareBuilder::request`].
    pub fn spawn(mut job: impl FnMut() + Send + 'static) -> io::Result<SpareBuilder> {
        let shared = Arc::new((Mutex::new(BuilderState::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ringfort-wal-spares".into())
            .spawn(move || {
                let (lock, cv) = &*theirs;
                let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if st.exit {
                        return;
                    }
                    if !st.wanted {
                        st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                    st.wanted = false;
                    drop(st);
                    job();
                    st = lock.lock().unwrap_or_else(|e| e.into_inner());
                }
            })?;
        Ok(SpareBuilder {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for one more run of the job; returns at once.
    pub fn request(&self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).wanted = true;
        cv.notify_one();
    }
}

impl Drop for SpareBuilder {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).exit = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the log in `dir` for appending: reads it with `config.recovery`, handing every
/// record at or above `from` to `replay` in LSN order (segments wholly below `from` are
/// not read; pass 0 to check the whole log), cuts a torn tail as the report's [`Repair`]
/// says, and syncs every segment so that what was read is durable before new batches
/// claim it in their watermark. An error from `replay` stops the open and is returned.
/// The report's `next_lsn` is where [`LogCore::new`](crate::LogCore::new) continues.
pub fn recover<D: Dir>(
    dir: &D,
    config: &WalConfig,
    from: Lsn,
    mut replay: impl FnMut(RecordRef<'_>) -> Result<(), WalError>,
) -> Result<RecoveryReport, WalError> {
    config.validate()?;
    let mut reader = LogReader::new(
        DirSegments(dir),
        ReadOptions {
            mode: config.recovery,
            from,
            max_record: MAX_RECORD_LIMIT,
            max_segment_bytes: MAX_SEGMENT_LIMIT,
        },
    );
    while let Some(rec) = reader.next_record()? {
        replay(rec)?;
    }
    let report = reader.finish()?;
    apply_repair(dir, &report.repair)?;
    sync_all(dir)?;
    Ok(report)
}

/// Writes every byte of `bufs` at `offset`, continuing after short writes.
fn write_all<F: SegmentFile>(
    file: &F,
    mut bufs: &mut [IoSlice<'_>],
    mut offset: u64,
    dsync: bool,
) -> io::Result<()> {
    while !bufs.is_empty() {
        match file.write_at(bufs, offset, dsync) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes every segment whose records all lie below `checkpoint` (a segment goes when the
/// next one starts at or below `checkpoint`; the last segment always stays). Up to
/// `keep_spares` removed files are kept as spares for reuse instead. Syncs the directory.
/// Returns how many segments went.
pub fn truncate_prefix<D: Dir>(
    dir: &D,
    checkpoint: Lsn,
    keep_spares: usize,
) -> Result<usize, WalError> {
    let ids = list_segments(dir)?;
    let ctx = |what: &str, n: &str| format!("{what} {}/{n}", dir.describe());
    let names = dir
        .list()
        .map_err(|e| WalError::io(format!("listing {}", dir.describe()), e))?;
    let mut spares = names.iter().filter(|n| n.starts_with(SPARE_PREFIX)).count();
    let mut removed = 0;
    for w in ids.windows(2) {
        if w[1] > checkpoint {
            break;
        }
        let name = segment_file_name(w[0]);
        if spares < keep_spares {
            let spare = format!("{SPARE_PREFIX}{name}");
            dir.rename(&name, &spare)
                .map_err(|e| WalError::io(ctx("recycling", &name), e))?;
            spares += 1;
        } else {
            dir.remove(&name)
                .map_err(|e| WalError::io(ctx("removing", &name), e))?;
        }
        removed += 1;
    }
    if removed > 0 {
        dir.sync()
            .map_err(|e| WalError::io(format!("syncing {}", dir.describe()), e))?;
    }
    Ok(removed)
}

/// Carries out a recovery [`Repair`]: removes the segments past the end, cuts the last
/// one to the end of its last whole record and syncs it, then syncs the directory.
pub fn apply_repair<D: Dir>(dir: &D, repair: &Repair) -> Result<(), WalError> {
    for &id in &repair.delete {
        let name = segment_file_name(id);
        dir.remove(&name)
            .map_err(|e| WalError::io(format!("removing {}/{name}", dir.describe()), e))?;
    }
    if let Some((id, len)) = repair.cut {
        let name = segment_file_name(id);
        let ctx = || format!("cutting {}/{name} to {len} B", dir.describe());
        let f = dir.open(&name).map_err(|e| WalError::io(ctx(), e))?;
        f.set_len(len).map_err(|e| WalError::io(ctx(), e))?;
        f.sync_data().map_err(|e| WalError::io(ctx(), e))?;
    }
    if !repair.is_empty() {
        dir.sync()
            .map_err(|e| WalError::io(format!("syncing {}", dir.describe()), e))?;
    }
    Ok(())
}

/// `fdatasync`s every segment, so that everything recovery read is durable before new
/// batches claim it in their watermark.
pub fn sync_all<D: Dir>(dir: &D) -> Result<(), WalError> {
    for id in list_segments(dir)? {
        let name = segment_file_name(id);
        let ctx = || format!("syncing {}/{name}", dir.describe());
        dir.open(&name)
            .and_then(|f| f.sync_data())
            .map_err(|e| WalError::io(ctx(), e))?;
    }
    Ok(())
}
