//! The blocking driver: a thread-safe [`Wal`] handle over a [`Dir`], with a dedicated
//! flusher thread doing group commit and syncer threads running the groups' syncs.
//!
//! Appender threads take the state lock, copy their record into the core (pool blocks
//! from its reserve; no allocation, no CRC), register in a waiter slot and sleep on that
//! slot's condition variable. The flusher thread owns the buffer arena. Each round it
//! gathers the appenders the last completion woke (see [`gather`]), seals everything
//! appended so far into batches, releases the lock, frames and checksums them and writes
//! them with `pwritev2`. Under `fdatasync` syncing, it hands the written group to a
//! syncer thread and goes on to the next group, so up to `syncs_in_flight` syncs run on
//! the device at once. (When no other group is syncing and nothing new waits to be
//! written, it syncs the group itself: a lone appender then wakes one thread per record,
//! not two.) The syncer takes the lock when its sync returns, completes the plans,
//! releases the lock and only then wakes exactly the slots whose records are now
//! acknowledged or failed, so a woken appender does not at once block on the lock. (The
//! core acknowledges in LSN order, so a group that syncs first still waits for the
//! groups before it.) `RWF_DSYNC` and unsynced groups complete on the flusher thread.
//! Records appended while groups are on the device form the next group, so N concurrent
//! writers share each sync.
//!
//! A new segment is created only once every group of the old one is durable: recovery
//! takes a torn end of any segment but the last for corruption in the middle of the log.
//! It takes a zero-filled spare when one is ready (`zeroed_spares`): `open` builds the
//! first, and a [`SpareBuilder`] thread builds the next one once a segment of small groups
//! is half written ([`GroupSizes`]).
//!
//! Bounds: `max_waiters` appenders wait at once (more wait for a slot); `max_batches`
//! batches exist at once (appenders wait for one to complete); at most `syncs_in_flight`
//! groups (and never more than `max_batches - 1`) sync at once; the arena is sized for
//! that many batches of the largest size, so memory stays fixed.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
    MAX_CHUNKS,
};

use crate::config::{Durability, Limits, WalConfig};
use crate::core::LogCore;
use crate::error::{IoFailure, WalError};
use crate::file::{Dir, StdDir};
use crate::plan::{Io, Progress, SyncKind, WriteJob, WritePlan};
use crate::recovery::{RecordRef, RecoveryReport};
use crate::segment::{
    make_zeroed_spares, recover, truncate_prefix, GroupSizes, SegmentWriter, SpareBuilder, Unsynced,
};
use crate::Lsn;

#[derive(Clone, Debug)]
struct Slot {
    lsn: Lsn,
    outcome: Option<Result<(), IoFailure>>,
}

/// The state lock, held.
type Guard<'a, D> = MutexGuard<'a, State<<D as Dir>::File>>;

/// A written group waiting for its `fdatasync` on a syncer thread.
struct SyncJob<F> {
    written: Unsynced<F>,
    plans: Vec<WritePlan>,
}

struct State<F> {
    core: LogCore,
    slots: Vec<Slot>,
    free: Vec<u32>,
    busy: Vec<u32>,
    flusher_idle: bool,
    closing: bool,
    stopped: bool,
    deferred: Option<IoFailure>,
    /// While the flusher gathers a group: the LSN whose append completes it.
    gather_until: Option<Lsn>,
    /// Appenders woken and not yet sealed into a group (each is likely to append again at
    /// once): what the next groups gather.
    woken: usize,
    /// How long the last `fdatasync` took: bounds how long a group is gathered.
    last_sync: Duration,
    /// Written groups not yet handed to a syncer.
    to_sync: VecDeque<SyncJob<F>>,
    /// Groups written and not yet completed (queued or syncing).
    syncing: usize,
    /// Tells the syncer threads to exit once `to_sync` is empty.
    syncers_exit: bool,
    /// Plan vectors for the next groups, so that a group allocates nothing.
    plan_vecs: Vec<Vec<WritePlan>>,
    /// Appenders waiting on `space`: with none, nothing needs notifying (a notify is a
    /// system call, and most appends free a slot).
    space_waiters: usize,
}

impl<F> State<F> {
    fn usable(&mut self) -> Result<(), WalError> {
        if self.closing || self.stopped {
            return Err(WalError::Closed);
        }
        match self.deferred.take() {
            Some(f) => Err(WalError::Failed(f)),
            None => Ok(()),
        }
    }
}

struct Shared<D: Dir> {
    state: Mutex<State<D::File>>,
    /// The flusher waits here for work, and for a sync to finish.
    work: Condvar,
    /// Syncer threads wait here for written groups.
    sync_work: Condvar,
    /// Appenders wait here for room (a batch, blocks, or a waiter slot).
    space: Condvar,
    /// One per waiter slot: the appender in slot `i` waits on `slot_cvs[i]`.
    slot_cvs: Box<[Condvar]>,
    dir: D,
    /// Serialises segment creation with `truncate_prefix`.
    dir_lock: Mutex<()>,
    config: WalConfig,
}

impl<D: Dir> Shared<D> {
    fn lock(&self) -> Guard<'_, D> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick(&self, st: &mut State<D::File>) {
        if st.flusher_idle {
            st.flusher_idle = false;
            self.work.notify_one();
        }
    }

    /// Applies a completion: records the outcome of the slots it acknowledged or failed
    /// (counting them in `woken`) and adds them to `wake`, for [`Shared::wake`] once the
    /// lock is released. (Woken under the lock, each appender would at once block on it
    /// again: twice the context switches, on the path every durable append takes.)
    fn settle(&self, st: &mut State<D::File>, p: Progress, wake: &mut Vec<u32>) {
        if let Some(f) = &p.failed {
            if self.config.durability == Durability::None {
                st.deferred = Some(f.error.clone());
            }
        }
        let State {
            slots, busy, woken, ..
        } = st;
        let before = busy.len();
        busy.retain(|&i| {
            let s = &mut slots[i as usize];
            let outcome = match &p.failed {
                Some(f) if f.lsns.contains(&s.lsn) => Err(f.error.clone()),
                _ if s.lsn < p.acked => Ok(()),
                _ => return true,
            };
            s.outcome = Some(outcome);
            wake.push(i);
            false
        });
        *woken += before - busy.len();
    }

    /// Waits on `space`, counted in `space_waiters`.
    fn wait_space<'a>(&self, mut st: Guard<'a, D>) -> Guard<'a, D> {
        st.space_waiters += 1;
        st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
        st.space_waiters -= 1;
        st
    }

    /// Wakes the appenders waiting on `space`, if any.
    fn notify_space(&self, st: &State<D::File>) {
        if st.space_waiters > 0 {
            self.space.notify_all();
        }
    }

    /// Wakes the appenders of the slots in `wake` (call without the lock held).
    fn wake(&self, wake: &mut Vec<u32>) {
        for i in wake.drain(..) {
            self.slot_cvs[i as usize].notify_one();
        }
    }

    /// Releases the lock, wakes the slots in `wake`, and takes the lock again (at once when
    /// there is no one to wake).
    fn wake_unlocked<'a>(&'a self, st: Guard<'a, D>, wake: &mut Vec<u32>) -> Guard<'a, D> {
        if wake.is_empty() {
            return st;
        }
        drop(st);
        self.wake(wake);
        self.lock()
    }

    /// Marks the log stopped and wakes every thread that waits on it.
    fn stop(&self) {
        self.lock().stopped = true;
        for cv in self.slot_cvs.iter() {
            cv.notify_all();
        }
        self.space.notify_all();
        self.work.notify_all();
    }

    /// Completes a group's plans with `result` and returns the plan vector for reuse; the
    /// slots to wake go to `wake`, as in [`Shared::settle`].
    fn complete(
        &self,
        st: &mut State<D::File>,
        mut plans: Vec<WritePlan>,
        result: Result<(), IoFailure>,
        wake: &mut Vec<u32>,
    ) {
        for plan in plans.drain(..) {
            let p = st.core.complete_write(plan, result.clone());
            self.settle(st, p, wake);
        }
        st.plan_vecs.push(plans);
    }
}

/// Sets `stopped` and wakes everyone when the flusher thread ends, even by a panic.
struct StopGuard<D: Dir>(Arc<Shared<D>>);

impl<D: Dir> Drop for StopGuard<D> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Tells the syncer threads to exit when the flusher ends, even by a panic (the scope
/// they run in waits for them).
struct SyncersExit<'a, D: Dir>(&'a Shared<D>);

impl<D: Dir> Drop for SyncersExit<'_, D> {
    fn drop(&mut self) {
        self.0.lock().syncers_exit = true;
        self.0.sync_work.notify_all();
    }
}

/// A write-ahead log with a blocking, thread-safe API. See the module docs.
pub struct Wal<D: Dir = StdDir> {
    shared: Arc<Shared<D>>,
    flusher: Option<JoinHandle<()>>,
}

impl Wal<StdDir> {
    /// Opens (or creates) the log in directory `path`: recovers it with
    /// `config.recovery`, repairs the tail, syncs what was read, and starts the flusher.
    pub fn open(
        path: impl AsRef<std::path::Path>,
        config: WalConfig,
    ) -> Result<(Wal<StdDir>, RecoveryReport), WalError> {
        let dir = StdDir::open(path, config.direct_io)?;
        Wal::open_in(dir, config, 0, |_| Ok(()))
    }
}

impl<D: Dir> Wal<D> {
    /// Opens the log in `dir`, handing every record at or above `from` to `replay` in LSN
    /// order while recovering. Segments wholly below `from` are not read (pass 0 to check
    /// the whole log). An error from `replay` stops the open and is returned.
    pub fn open_in(
        dir: D,
        config: WalConfig,
        from: Lsn,
        replay: impl FnMut(RecordRef<'_>) -> Result<(), WalError>,
    ) -> Result<(Wal<D>, RecoveryReport), WalError> {
        let lim = config.limits()?;
        let report = recover(&dir, &config, from, replay)?;
        let core = LogCore::new(&config, report.next_lsn)?;
        let waiters = config.max_waiters;
        let groups = lim.max_batches;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core,
                slots: vec![
                    Slot {
                        lsn: 0,
                        outcome: None
                    };
                    waiters
                ],
                free: (0..waiters as u32).rev().collect(),
                busy: Vec::with_capacity(waiters),
                flusher_idle: false,
                closing: false,
                stopped: false,
                deferred: None,
                gather_until: None,
                woken: 0,
                last_sync: Duration::ZERO,
                to_sync: VecDeque::with_capacity(groups),
                syncing: 0,
                syncers_exit: false,
                plan_vecs: (0..groups + 1)
                    .map(|_| Vec::with_capacity(groups))
                    .collect(),
                space_waiters: 0,
            }),
            work: Condvar::new(),
            sync_work: Condvar::new(),
            space: Condvar::new(),
            slot_cvs: (0..waiters).map(|_| Condvar::new()).collect(),
            dir,
            dir_lock: Mutex::new(()),
            config,
        });
        let (tx, rx) = mpsc::channel();
        let sh = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("ringfort-wal-flush".into())
            .spawn(move || flusher(sh, lim, tx))
            .map_err(|e| WalError::io("spawning the WAL flusher thread", e))?;
        let wal = Wal {
            shared,
            flusher: Some(flusher),
        };
        match rx.recv() {
            Ok(Ok(())) => Ok((wal, report)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WalError::Closed),
        }
    }

    /// Appends a record and returns its LSN once it is acknowledged: synced under
    /// [`Durability::Sync`], written under `Buffered`, at once under `None`. Concurrent
    /// callers share writes and syncs (group commit).
    ///
    /// Errors: [`WalError::RecordTooLarge`]; [`WalError::Failed`] when the write or sync
    /// failed (the record is not durable, and its LSN is handed out again);
    /// [`WalError::Closed`].
    pub fn append(&self, payload: &[u8]) -> Result<Lsn, WalError> {
        self.append_with(|core| core.append(payload))
    }

    /// Appends a record held in a [`BufChain`]; it is copied into the batch when the batch
    /// is sealed, on the flusher thread. Otherwise like [`Wal::append`].
    pub fn append_chain(&self, chain: BufChain) -> Result<Lsn, WalError> {
        let mut chain = Some(chain);
        self.append_with(|core| {
            let c = chain.take().expect("chain handed back on every retry");
            core.append_chain(c).map_err(|(c, e)| {
                chain = Some(c);
                e
            })
        })
    }

    fn append_with(
        &self,
        mut f: impl FnMut(&mut LogCore) -> Result<Lsn, WalError>,
    ) -> Result<Lsn, WalError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        let wait = sh.config.durability != Durability::None;
        let slot = if wait {
            let (g, i) = self.acquire_slot(st)?;
            st = g;
            Some(i)
        } else {
            None
        };
        let lsn = loop {
            let attempt = st.usable().and_then(|()| f(&mut st.core));
            match attempt {
                Ok(lsn) => break lsn,
                Err(WalError::Full(_)) => {
                    sh.kick(&mut st);
                    st = sh.wait_space(st);
                }
                Err(e) => {
                    if let Some(i) = slot {
                        st.free.push(i);
                    }
                    return Err(e);
                }
            }
        };
        sh.kick(&mut st);
        if st.gather_until.is_some_and(|end| lsn + 1 >= end) {
            sh.work.notify_one();
        }
        let Some(i) = slot else { return Ok(lsn) };
        self.wait_slot(st, i, lsn).map(|()| lsn)
    }

    fn acquire_slot<'a>(&'a self, mut st: Guard<'a, D>) -> Result<(Guard<'a, D>, u32), WalError> {
        loop {
            st.usable()?;
            if let Some(i) = st.free.pop() {
                return Ok((st, i));
            }
            st = self.shared.wait_space(st);
        }
    }

    /// Waits in slot `i` until `lsn` is acknowledged or failed.
    fn wait_slot(&self, mut st: Guard<'_, D>, i: u32, lsn: Lsn) -> Result<(), WalError> {
        let sh = &*self.shared;
        st.slots[i as usize] = Slot { lsn, outcome: None };
        if lsn < st.core.acked_lsn() {
            st.free.push(i);
            return Ok(());
        }
        st.busy.push(i);
        loop {
            if let Some(outcome) = st.slots[i as usize].outcome.take() {
                st.free.push(i);
                sh.notify_space(&st);
                return outcome.map_err(WalError::Failed);
            }
            if st.stopped {
                st.busy.retain(|&b| b != i);
                st.free.push(i);
                return Err(WalError::Closed);
            }
            st = sh.slot_cvs[i as usize]
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until every record appended before the call is acknowledged (written, and
    /// synced under `Sync`); under `None` this waits for the writes.
    pub fn flush(&self) -> Result<(), WalError> {
        let sh = &*self.shared;
        let st = sh.lock();
        let last = st.core.next_lsn() - 1;
        let (mut st, i) = self.acquire_slot(st)?;
        sh.kick(&mut st);
        self.wait_slot(st, i, last)
    }

    /// Removes whole segments whose records all lie below `checkpoint` (keeping up to
    /// `recycle_segments` as spares); returns how many went.
    pub fn truncate_prefix(&self, checkpoint: Lsn) -> Result<usize, WalError> {
        let sh = &*self.shared;
        let _g = sh.dir_lock.lock().unwrap_or_else(|e| e.into_inner());
        truncate_prefix(&sh.dir, checkpoint, sh.config.recycle_segments)
    }

    /// Every LSN below this is acknowledged.
    pub fn acked_lsn(&self) -> Lsn {
        self.shared.lock().core.acked_lsn()
    }

    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.shared.lock().core.next_lsn()
    }

    /// The configuration in force.
    pub fn config(&self) -> &WalConfig {
        &self.shared.config
    }

    /// The directory.
    pub fn dir(&self) -> &D {
        &self.shared.dir
    }

    /// Writes out everything appended, stops the flusher and returns the last write
    /// error not yet reported (under `Durability::None`).
    pub fn close(mut self) -> Result<(), WalError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), WalError> {
        let Some(handle) = self.flusher.take() else {
            return Ok(());
        };
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.flusher_idle = false;
            self.shared.work.notify_one();
        }
        let joined = handle.join();
        let deferred = self.shared.lock().deferred.take();
        match (joined, deferred) {
            (Err(_), _) => Err(WalError::Closed),
            (Ok(()), Some(f)) => Err(WalError::Failed(f)),
            (Ok(()), None) => Ok(()),
        }
    }
}

impl<D: Dir> Drop for Wal<D> {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("ringfort-wal: closing: {e}");
        }
    }
}

/// The arena the flusher builds batches in: one class of `block_size` blocks, enough for
/// the reserve plus a largest batch in the first chunk, growing to every batch at its
/// largest.
fn pool_config(lim: &Limits) -> PoolConfig {
    let count = lim.keep_blocks + lim.max_batch_blocks + 1;
    let total = lim.max_batches * lim.max_batch_blocks + 2;
    let max_chunks = total.div_ceil(count).clamp(1, MAX_CHUNKS);
    PoolConfig {
        classes: vec![SizeClass {
            size: lim.block,
            count,
        }],
        growth: if max_chunks > 1 {
            Growth::Chunks { max_chunks }
        } else {
            Growth::Fixed
        },
        backing: BackingPref::Auto,
        registration: Registration::Off,
        numa: NumaPolicy::Local,
    }
}

/// Longest a group waits to gather appenders, however slow the last sync was.
const MAX_GATHER: Duration = Duration::from_millis(2);

/// Holds the next group open until the log reaches `until` (its share of the appenders
/// that completions woke has appended again) or for at most `limit` (capped at
/// [`MAX_GATHER`]).
///
/// Why: woken appenders need a moment to be scheduled and take the lock. A flusher that
/// seals at once gets the first one or two of them, and the rest wait a whole sync for
/// the next group: measured here with 16 writers, 8 records per sync instead of 16 and
/// 30 % fewer records/s. Waiting a fraction of the last sync's time keeps the groups
/// whole; a lone appender (one woken) never waits.
fn gather<'a, D: Dir>(
    sh: &'a Shared<D>,
    mut st: Guard<'a, D>,
    until: Lsn,
    limit: Duration,
) -> Guard<'a, D> {
    let deadline = Instant::now() + limit.min(MAX_GATHER);
    st.gather_until = Some(until);
    while st.core.next_lsn() < until && !st.closing {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st = sh
            .work
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    st.gather_until = None;
    st
}

fn flusher<D: Dir>(sh: Arc<Shared<D>>, lim: Limits, ready: mpsc::Sender<Result<(), WalError>>) {
    let _stop = StopGuard(Arc::clone(&sh));
    let arena = match Arena::new(pool_config(&lim)) {
        Ok(a) => a,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let header = match arena.alloc(lim.block) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let mut writer = SegmentWriter::<D>::new(header);
    {
        let mut st = sh.lock();
        if let Err(e) = st.core.refill(&arena) {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let spares = match sh.config.zeroed_spares {
        0 => None,
        _ => {
            prepare_spares(&sh, lim.segment_size, false);
            let theirs = Arc::clone(&sh);
            let size = lim.segment_size;
            match SpareBuilder::spawn(move || prepare_spares(&theirs, size, true)) {
                Ok(b) => Some(b),
                Err(e) => {
                    let _ = ready.send(Err(WalError::io("spawning the spare builder", e)));
                    return;
                }
            }
        }
    };
    let syncers = sh.config.syncs_in_flight.min(lim.max_batches - 1).max(1);
    std::thread::scope(|scope| {
        for _ in 0..syncers {
            scope.spawn(|| syncer(&sh));
        }
        let _exit = SyncersExit(&sh);
        let _ = ready.send(Ok(()));
        rounds(&sh, &lim, &arena, &mut writer, syncers, spares.as_ref());
    });
    drop(spares);
    let mut st = sh.lock();
    st.core.release_blocks();
    drop(st);
    drop(writer);
    arena.reclaim();
}

/// The flusher's loop: gather, seal, write, and hand the group to a syncer (or complete
/// it); create segments between groups. Returns when closing and everything is complete.
fn rounds<D: Dir>(
    sh: &Shared<D>,
    lim: &Limits,
    arena: &Arena,
    writer: &mut SegmentWriter<D>,
    syncers: usize,
    spares: Option<&SpareBuilder>,
) {
    let mut jobs: Vec<WriteJob> = Vec::with_capacity(lim.max_batches);
    let mut sizes = GroupSizes::new(lim.segment_size);
    let mut st = sh.lock();
    let mut wake = Vec::with_capacity(st.slots.len());
    let mut sealed_end = st.core.next_lsn();
    loop {
        if st.core.wants_blocks() {
            match st.core.refill(arena) {
                Ok(n) if n > 0 => sh.notify_space(&st),
                Ok(_) => {}
                Err(e) => tracing::warn!("ringfort-wal: refilling the block reserve: {e}"),
            }
        }
        if st.stopped {
            return;
        }
        let room = st.syncing < syncers;
        if !room || !st.core.has_work() {
            if st.closing && st.syncing == 0 && !st.core.has_work() {
                return;
            }
            st.flusher_idle = true;
            st = sh.work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        // Share the woken appenders among the free sync slots.
        let share = st.woken.div_ceil(syncers - st.syncing);
        if share > 1 && !st.closing {
            let (until, limit) = (sealed_end + share as Lsn, st.last_sync / 2);
            st = gather(sh, st, until, limit);
        }
        st.core.flush();
        let sealed = (st.core.next_lsn() - sealed_end) as usize;
        sealed_end = st.core.next_lsn();
        st.woken = st.woken.saturating_sub(sealed);
        let mut create = None;
        while let Some(io) = st.core.next_io() {
            match io {
                Io::Write(job) => jobs.push(job),
                Io::Create(plan) => {
                    create = Some(plan);
                    break;
                }
            }
        }
        let mut plans = st
            .plan_vecs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(lim.max_batches));
        drop(st);
        plans.extend(jobs.drain(..).map(WriteJob::seal));
        let sync = plans.first().map_or(SyncKind::None, |p| p.sync());
        let written = writer.write_unsynced(&plans, sync);
        if !plans.is_empty() && sizes.record(plans.iter().map(WritePlan::len).sum()) {
            if let Some(b) = spares {
                b.request();
            }
        }
        st = sh.lock();
        match written {
            // Nothing else on the device and nothing new to write: sync here rather than
            // wake a syncer thread, which for a lone appender is one more sleeping thread
            // to wake per record.
            Ok(Some(written))
                if sync == SyncKind::Data && st.syncing == 0 && !st.core.has_work() =>
            {
                st = sync_group(sh, st, SyncJob { written, plans }, &mut wake);
                st = sh.wake_unlocked(st, &mut wake);
            }
            Ok(Some(written)) if sync == SyncKind::Data => {
                st.to_sync.push_back(SyncJob { written, plans });
                st.syncing += 1;
                sh.sync_work.notify_one();
            }
            result => {
                sh.complete(&mut st, plans, result.map(drop), &mut wake);
                st = sh.wake_unlocked(st, &mut wake);
            }
        }
        if let Some(plan) = create {
            while st.syncing > 0 && !st.stopped {
                st = sh.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            drop(st);
            let r = {
                let _g = sh.dir_lock.lock().unwrap_or_else(|e| e.into_inner());
                writer.create(&sh.dir, &plan)
            };
            sizes.new_segment();
            st = sh.lock();
            let p = st.core.complete_create(plan, r);
            sh.settle(&mut st, p, &mut wake);
            st = sh.wake_unlocked(st, &mut wake);
        }
        sh.notify_space(&st);
    }
}

/// Tops the zero-filled spares up; a failure (say, no space) only costs speed, so it is
/// logged and the log goes on without a spare.
fn prepare_spares<D: Dir>(sh: &Shared<D>, size: u64, paced: bool) {
    let want = sh.config.zeroed_spares;
    if let Err(e) = make_zeroed_spares(&sh.dir, &sh.dir_lock, size, want, paced) {
        tracing::warn!("ringfort-wal: {e}; new segments are preallocated without zeros");
    }
}

/// Syncs a written group with the lock released, then completes it and notes how long the
/// sync took. Returns with the lock held and the slots to wake in `wake`.
fn sync_group<'a, D: Dir>(
    sh: &'a Shared<D>,
    st: Guard<'a, D>,
    job: SyncJob<D::File>,
    wake: &mut Vec<u32>,
) -> Guard<'a, D> {
    drop(st);
    let SyncJob { written, plans } = job;
    let started = Instant::now();
    let result = written.sync();
    let took = started.elapsed();
    drop(written);
    let mut st = sh.lock();
    st.last_sync = took;
    sh.complete(&mut st, plans, result, wake);
    st
}

/// A syncer thread: syncs written groups and completes them, until told to exit.
fn syncer<D: Dir>(sh: &Shared<D>) {
    let _stop = SyncerStop(sh);
    let mut st = sh.lock();
    let mut wake = Vec::with_capacity(st.slots.len());
    loop {
        let Some(job) = st.to_sync.pop_front() else {
            if st.syncers_exit {
                return;
            }
            st = sh.sync_work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        st = sync_group(sh, st, job, &mut wake);
        st.syncing -= 1;
        let space_waiters = st.space_waiters > 0;
        drop(st);
        sh.wake(&mut wake);
        sh.work.notify_one();
        if space_waiters {
            sh.space.notify_all();
        }
        st = sh.lock();
    }
}

/// Stops the log if a syncer thread dies by a panic: its group would never complete.
struct SyncerStop<'a, D: Dir>(&'a Shared<D>);

impl<D: Dir> Drop for SyncerStop<'_, D> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}
