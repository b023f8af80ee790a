//! The per-core handler: parsing, routing by key to the owning shard, ordered replies,
//! multi-shard gathers, pub/sub, durability waits, checkpoints and INFO.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringfort::outbox::OutboxLimits;
use ringfort::pool::{Arena, BufChain};
use ringfort::reorder::Seq;
use ringfort::wal::{Durability, Lsn, WalConfig};
use ringfort::{CloseReason, ConnId, CoreId, Ctx, Engine, Handler, ListenerId, WalId};
use slab::Slab;

use crate::commands::{self, CommandSpec, LogRecord};
use crate::db::{Db, Undo};
use crate::protocol::{Limits, Parser};
use crate::reply::Reply;
use crate::{glob, Args, DurabilityArg};

/// The most bytes one reply may take (a 512 MiB value plus its header).
const MAX_REPLY: usize = (512 << 20) + 64;
/// Keys the active expiry cycle examines per tick.
const EXPIRE_CHECKS: usize = 64;
static STOP: AtomicBool = AtomicBool::new(false);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The shard that owns `key`: a stable hash, so a key's log is always the same shard's.
pub fn shard_of(key: &BufChain, shards: usize) -> usize {
    let mut h = crc32fast::Hasher::new();
    for c in key.chunks() {
        h.update(c);
    }
    h.finalize() as usize % shards
}

/// Creates the data directory and checks it was made for this many shards.
pub fn prepare_dir(dir: &Path, cores: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let meta = dir.join("ringfort.meta");
    match std::fs::read_to_string(&meta) {
        Ok(s) => {
            let had: usize = s
                .trim()
                .strip_prefix("shards=")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{} is damaged: {s:?}", meta.display()))?;
            if had != cores {
                return Err(format!(
                    "{} holds {had} shards but {cores} cores were asked for: keys are \
                     placed by shard count, so run with --cores {had}",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("ringfort.meta.tmp");
            let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            writeln!(f, "shards={cores}").map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &meta).map_err(|e| e.to_string())?;
            sync_dir(dir).map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("reading {}: {e}", meta.display())),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Per-core figures for INFO, written by their core, read by any.
#[derive(Default)]
struct CoreStats {
    clients: AtomicU64,
    keys: AtomicU64,
    expires: AtomicU64,
    used_memory: AtomicU64,
    commands: AtomicU64,
    connections: AtomicU64,
    rejected: AtomicU64,
    evicted_clients: AtomicU64,
    channels: AtomicU64,
    patterns: AtomicU64,
    wal_durable: AtomicU64,
    wal_next: AtomicU64,
    checkpoints: AtomicU64,
    last_checkpoint: AtomicU64,
    replayed: AtomicU64,
    wal_failures: AtomicU64,
    /// Writes refused with the OOM error (the shard's `--maxmemory` share used, or an
    /// arena class down to its reserve).
    oom_refused: AtomicU64,
    /// The arena class nearest exhaustion: its block size, the blocks it can still hand
    /// out, and its blocks at the cap.
    tight_size: AtomicU64,
    tight_available: AtomicU64,
    tight_at_cap: AtomicU64,
}

/// Hashes a [`ConnId`] with a multiply per field. Ids are the engine's slot numbers and
/// generations, never chosen by a client, so they need none of the keyed SipHash that
/// guards the keyspace against chosen collisions (it was a few percent of a pipelined SET).
#[derive(Default)]
struct ConnIdHasher(u64);

impl ConnIdHasher {
    fn mix(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// State every core shares.
pub struct Shared {
    pub args: Args,
    pub cores: usize,
    pub addr: SocketAddr,
    clients: AtomicUsize,
    next_client_id: AtomicU64,
    stats: Vec<CoreStats>,
    started: Instant,
    run_id: String,
    ready: Mutex<(usize, Option<String>)>,
    ready_cv: Condvar,
    backing: Mutex<String>,
    /// The last write-ahead-log failure, for INFO.
    last_wal_error: Mutex<String>,
}

impl Shared {
    pub fn new(args: Args, cores: usize, addr: SocketAddr) -> Shared {
        Shared {
            args,
            cores,
            addr,
            clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            stats: (0..cores).map(|_| CoreStats::default()).collect(),
            started: Instant::now(),
            run_id: format!("{:040x}", now_ms() as u128 * 0x9e37_79b9_7f4a_7c15),
            ready: Mutex::new((0, None)),
            ready_cv: Condvar::new(),
            backing: Mutex::new(String::new()),
            last_wal_error: Mutex::new(String::new()),
        }
    }

    /// The memory budget over all cores (`--maxmemory`, resolved at start).
    pub fn maxmemory(&self) -> u64 {
        self.args.maxmemory.unwrap_or(u64::MAX)
    }

    fn report_ready(&self, result: Result<(), String>) {
        let mut r = self.ready.lock().unwrap();
        r.0 += 1;
        if let Err(e) = result {
            r.1.get_or_insert(e);
        }
        self.ready_cv.notify_all();
    }

    /// Waits until every core has replayed its shard and listens.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let r = self.ready.lock().unwrap();
        let (r, _) = self
            .ready_cv
            .wait_timeout_while(r, timeout, |r| r.0 < self.cores && r.1.is_none())
            .unwrap();
        match &r.1 {
            Some(e) => Err(e.clone()),
            None if r.0 < self.cores => Err("cores did not become ready in time".into()),
            None => Ok(()),
        }
    }

    /// What backs the arenas (from core 0's report).
    pub fn backing(&self) -> String {
        self.backing.lock().unwrap().clone()
    }

    /// Stops the engine on SIGINT or SIGTERM, draining for a few seconds, and returns
    /// once it has stopped.
    pub fn install_signal_stop<M: Send + 'static>(&self, engine: &Engine<M>) {
        extern "C" fn on_signal(_: libc::c_int) {
            STOP.store(true, Ordering::SeqCst);
        }
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if engine.finished() {
                return;
            }
        }
        eprintln!("ringfort resp-server: stopping");
        engine.stop(Duration::from_secs(5));
    }
}

/// One connection's protocol state (on its own core).
struct Client {
    id: u64,
    parser: Parser,
    authed: bool,
    name: Option<Vec<u8>>,
    channels: HashSet<Vec<u8>>,
    patterns: HashSet<Vec<u8>>,
    quitting: bool,
}

impl Client {
    fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// Pieces of a multi-shard command.
pub enum Part {
    MGet(Vec<(u32, BufChain)>),
    Exists(Vec<BufChain>),
    /// A write run as a command on the owning shard (DEL/MSET parts, FLUSHALL).
    Write(Vec<BufChain>),
    DbSize,
}

pub enum PartResult {
    Values(Vec<(u32, Option<BufChain>)>),
    Count(i64),
    Error(String),
}

/// Messages between cores.
pub enum Msg {
    /// Run a whole command on its owner and reply to `conn`'s core.
    Exec {
        origin: CoreId,
        conn: ConnId,
        seq: Seq,
        /// `args[0]`'s spec, looked up once on the receiving core.
        spec: &'static CommandSpec,
        args: Vec<BufChain>,
    },
    /// A reply to deliver on this core.
    Reply {
        conn: ConnId,
        seq: Seq,
        reply: BufChain,
    },
    Part {
        origin: CoreId,
        gather: u32,
        part: Part,
    },
    PartDone {
        gather: u32,
        result: PartResult,
    },
    Publish {
        origin: CoreId,
        gather: u32,
        channel: BufChain,
        message: BufChain,
    },
}

enum GatherKind {
    MGet,
    Sum,
    Ok,
}

struct Gather {
    conn: ConnId,
    seq: Seq,
    left: usize,
    kind: GatherKind,
    count: i64,
    values: Vec<Option<BufChain>>,
    error: Option<String>,
}

/// Who gets a reply once its log record is durable.
enum Waiter {
    Local {
        conn: ConnId,
        seq: Seq,
        reply: BufChain,
    },
    Remote {
        origin: CoreId,
        conn: ConnId,
        seq: Seq,
        reply: BufChain,
    },
    Part {
        origin: CoreId,
        gather: u32,
        result: PartResult,
    },
}

/// A command's outcome on its shard: the reply and, for a write, its log record and how
/// to take the write back.
type Executed = (BufChain, Logged);
/// A write's encoded log record and its undo journal.
type Logged = Option<(BufChain, Vec<Undo>)>;

/// A checkpoint being written by a background thread.
struct Checkpointing {
    lsn: Lsn,
    done: mpsc::Receiver<Result<u64, String>>,
}

/// One core's handler.
pub struct Server {
    core: CoreId,
    shared: Arc<Shared>,
    db: Db,
    dir: PathBuf,
    wal: Option<WalId>,
    clients: HashMap<ConnId, Client, BuildHasherDefault<ConnIdHasher>>,
    args: Vec<BufChain>,
    /// Logged writes waiting to be durable, in LSN order, each with how to take it back.
    waiting: VecDeque<(Lsn, Waiter, Vec<Undo>)>,
    /// Writes applied in memory whose records wait for room in the log, in order (all
    /// applied after every write in `waiting`).
    unlogged: VecDeque<(BufChain, Waiter, Vec<Undo>)>,
    gathers: Slab<Gather>,
    channels: HashMap<Vec<u8>, Vec<ConnId>>,
    patterns: Vec<(Vec<u8>, ConnId)>,
    retry: VecDeque<(CoreId, Msg)>,
    checkpoint_lsn: Lsn,
    /// Bytes of log records appended since the last checkpoint started.
    logged_bytes: u64,
    checkpointing: Option<Checkpointing>,
    last_checkpoint: Instant,
    listener: Option<ListenerId>,
    /// [`commands::OOM_ERROR`], built at start: the reply to any request whose own reply
    /// cannot be built because the arena is exhausted (cloning shares its block).
    oom_reply: BufChain,
}

impl Server {
    pub fn new(core: CoreId, shared: Arc<Shared>) -> Server {
        let dir = shared.args.dir.join(format!("shard-{core}"));
        Server {
            core,
            shared,
            db: Db::new(),
            dir,
            wal: None,
            clients: HashMap::default(),
            args: Vec::new(),
            waiting: VecDeque::new(),
            unlogged: VecDeque::new(),
            gathers: Slab::new(),
            channels: HashMap::new(),
            patterns: Vec::new(),
            retry: VecDeque::new(),
            checkpoint_lsn: 0,
            logged_bytes: 0,
            checkpointing: None,
            last_checkpoint: Instant::now(),
            listener: None,
            oom_reply: BufChain::new(0),
        }
    }

    fn stats(&self) -> &CoreStats {
        &self.shared.stats[self.core]
    }

    /// Loads the checkpoint, replays the log after it, opens the log for appends.
    fn recover(&mut self, cx: &mut Ctx<'_, Msg>) -> Result<(), String> {
        std::fs::create_dir_all(self.dir.join("wal"))
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let ckpt = self.dir.join("checkpoint");
        match std::fs::File::open(&ckpt) {
            Ok(f) => {
                let mut r = std::io::BufReader::new(f);
                let mut lsn_bytes = [0u8; 8];
                std::io::Read::read_exact(&mut r, &mut lsn_bytes)
                    .map_err(|e| format!("{}: {e}", ckpt.display()))?;
                self.checkpoint_lsn = u64::from_le_bytes(lsn_bytes);
                self.db = Db::read_checkpoint(&mut r, cx.arena()).map_err(|e| {
                    let hint = memory_hint(cx.arena());
                    format!("{}: {e}{hint}", ckpt.display())
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", ckpt.display())),
        }
        let durability = match self.shared.args.durability {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Buffered => Durability::Buffered,
            DurabilityArg::None => Durability::None,
        };
        let args = &self.shared.args;
        let config = wal_config(durability, args.wal_segment_size, args.wal_spares);
        let db = &mut self.db;
        let mut replayed = 0u64;
        let mut parser = Parser::new(Limits::default());
        parser.set_authenticated(true);
        let mut args = Vec::new();
        let (wal, _report) = cx
            .wal_open(
                &self.dir.join("wal"),
                config,
                self.checkpoint_lsn,
                |rec, arena| {
                    let mut chain = BufChain::new(usize::MAX);
                    chain
                        .append_slice(arena, rec.payload)
                        .map_err(|e| ringfort::wal::WalError::Config(e.to_string()))?;
                    match parser.parse(&mut chain, arena, &mut args) {
                        Ok(true) => {}
                        other => {
                            return Err(ringfort::wal::WalError::Config(format!(
                                "log record {} is not a command: {other:?}",
                                rec.lsn
                            )))
                        }
                    }
                    // As at run time, so the data fits the budget it was accepted in (a
                    // failed copy keeps the record's block; replay then fails, naming it).
                    compact(arena, &mut args);
                    commands::replay(db, &args, arena).map_err(|e| {
                        ringfort::wal::WalError::Config(format!("replaying {}: {e}", rec.lsn))
                    })?;
                    replayed += 1;
                    Ok(())
                },
            )
            .map_err(|e| {
                let hint = memory_hint(cx.arena());
                format!("opening the log in {}: {e}{hint}", self.dir.display())
            })?;
        self.wal = Some(wal);
        self.stats().replayed.store(replayed, Ordering::Relaxed);
        Ok(())
    }

    fn send_to(&mut self, cx: &mut Ctx<'_, Msg>, core: CoreId, msg: Msg) {
        if core == self.core {
            self.on_message(cx, Some(core), msg);
            return;
        }
        if let Err(full) = cx.submit_to(core, msg) {
            self.retry.push_back((core, full.into_inner()));
        }
    }

    /// Counts a write refused for want of memory and returns its reply, the prebuilt OOM
    /// error (a clone shares its block: nothing is allocated).
    fn refuse_for_memory(&self) -> BufChain {
        self.stats().oom_refused.fetch_add(1, Ordering::Relaxed);
        self.oom_reply.clone()
    }

    /// An error reply; when even that cannot be built (the arena is exhausted), the
    /// prebuilt OOM error, so no request goes unanswered.
    fn error_reply(&self, cx: &Ctx<'_, Msg>, msg: &str) -> BufChain {
        let mut r = Reply::new(cx.arena(), MAX_REPLY);
        match r.error(msg) {
            Ok(()) => r.out,
            Err(_) => self.oom_reply.clone(),
        }
    }

    fn reply(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, seq: Seq, reply: BufChain) {
        if conn.core() == self.core {
            let _ = cx.reply(conn, seq, reply);
        } else {
            self.send_to(cx, conn.core(), Msg::Reply { conn, seq, reply });
        }
    }

    /// Encodes `record` (of the command `request`) as a RESP command for the log: large
    /// arguments shared, small ones copied into one segment.
    fn encode(
        &self,
        cx: &Ctx<'_, Msg>,
        record: &LogRecord,
        request: &[BufChain],
    ) -> Result<BufChain, String> {
        let mut r = Reply::new(cx.arena(), MAX_REPLY);
        match r.command(record.args(request)) {
            Ok(()) => Ok(r.out),
            Err(e) => Err(format!("ERR {e}")),
        }
    }

    /// Whether this shard is out of memory for writes: its arena is down to its reserve,
    /// or its keyspace's estimated size has reached its share of `--maxmemory`.
    fn memory_full(&self, arena: &Arena) -> bool {
        let share = self.shared.maxmemory() / self.shared.cores as u64;
        self.db.used_memory() as u64 >= share || memory_short(arena)
    }

    /// Runs a command whose keys are all on this shard; returns the reply and, for a
    /// write, its encoded log record and how to take it back. A write whose record cannot
    /// be encoded is taken back at once and answered with the error. Small arguments are
    /// first copied into this shard's arena, so a shard's data lives in its own arena (as
    /// a restart's replay puts it). A command that may grow memory is refused with Redis's
    /// OOM error while the shard is out of memory ([`Server::memory_full`]).
    fn exec_here(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        spec: &'static CommandSpec,
        args: &mut [BufChain],
    ) -> Executed {
        // A value left uncompacted would pin its receive block, starving every
        // connection's receives; so a failed copy refuses the write too. When memory is
        // already full nothing is copied: only commands that store nothing go on. A read
        // keeps nothing, so its arguments are not copied.
        if spec.is_write() {
            let short = self.memory_full(cx.arena()) || !compact(cx.arena(), args);
            if short && spec.denies_oom() {
                return (self.refuse_for_memory(), None);
            }
        }
        let mut r = Reply::new(cx.arena(), MAX_REPLY);
        self.db.begin_journal();
        let result = commands::execute(&mut self.db, spec, args, now_ms(), &mut r);
        let undo = self.db.end_journal();
        match result {
            Ok(Some(record)) => {
                let out = r.out;
                match self.encode(cx, &record, args) {
                    Ok(rec) => (out, Some((rec, undo))),
                    Err(e) => {
                        self.db.undo(&undo);
                        (self.error_reply(cx, &e), None)
                    }
                }
            }
            Ok(None) => (r.out, None),
            Err(e) => {
                self.db.undo(&undo);
                (self.error_reply(cx, &format!("ERR {e}")), None)
            }
        }
    }

    /// Logs a write's record and holds its reply until the record is durable (per
    /// `--durability`); a read's reply goes at once. A full log is backpressure: records
    /// queue in order in `unlogged` and go in as the log drains.
    fn wait_or_send(&mut self, cx: &mut Ctx<'_, Msg>, record: Logged, waiter: Waiter) {
        match record {
            None => self.release(cx, waiter),
            Some((rec, undo)) if !self.unlogged.is_empty() => {
                self.unlogged.push_back((rec, waiter, undo))
            }
            Some((rec, undo)) => {
                if let Some(back) = self.append(cx, rec, waiter, undo) {
                    self.unlogged.push_back(back);
                }
            }
        }
    }

    /// Appends one record, the oldest of those not yet logged; hands it back when the
    /// log is full. If the log refuses it, it and every write applied after it (still in
    /// `unlogged`) are taken back and answered with the error.
    fn append(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        rec: BufChain,
        waiter: Waiter,
        undo: Vec<Undo>,
    ) -> Option<(BufChain, Waiter, Vec<Undo>)> {
        let Some(wal) = self.wal else {
            self.release(cx, waiter);
            return None;
        };
        let len = rec.len() as u64;
        match cx.wal_append_chain(wal, rec) {
            Ok(lsn) => {
                self.logged_bytes += len;
                match self.shared.args.durability {
                    DurabilityArg::None => self.release(cx, waiter),
                    _ => self.waiting.push_back((lsn, waiter, undo)),
                }
                None
            }
            Err((rec, ringfort::EngineError::Wal(ringfort::wal::WalError::Full(_)))) => {
                Some((rec, waiter, undo))
            }
            Err((_, e)) => {
                let text = format!("ERR write-ahead log refused the write: {e}");
                let mut failed = vec![(waiter, undo)];
                failed.extend(self.unlogged.drain(..).map(|(_, w, u)| (w, u)));
                self.take_back(cx, failed, &text);
                None
            }
        }
    }

    /// Takes back `failed` writes (in the order they were applied) and answers each with
    /// `text`.
    fn take_back(&mut self, cx: &mut Ctx<'_, Msg>, failed: Vec<(Waiter, Vec<Undo>)>, text: &str) {
        for (_, undo) in failed.iter().rev() {
            self.db.undo(undo);
        }
        for (waiter, _) in failed {
            let w = self.fail_waiter(cx, waiter, text);
            self.release(cx, w);
        }
    }

    /// Appends queued records while the log takes them.
    fn drain_unlogged(&mut self, cx: &mut Ctx<'_, Msg>) {
        while let Some((rec, waiter, undo)) = self.unlogged.pop_front() {
            if let Some(back) = self.append(cx, rec, waiter, undo) {
                self.unlogged.push_front(back);
                return;
            }
        }
    }

    /// The same waiter with its reply replaced by an error.
    fn fail_waiter(&self, cx: &Ctx<'_, Msg>, waiter: Waiter, text: &str) -> Waiter {
        match waiter {
            Waiter::Local { conn, seq, .. } => Waiter::Local {
                conn,
                seq,
                reply: self.error_reply(cx, text),
            },
            Waiter::Remote {
                origin, conn, seq, ..
            } => Waiter::Remote {
                origin,
                conn,
                seq,
                reply: self.error_reply(cx, text),
            },
            Waiter::Part { origin, gather, .. } => Waiter::Part {
                origin,
                gather,
                result: PartResult::Error(text.to_string()),
            },
        }
    }

    fn release(&mut self, cx: &mut Ctx<'_, Msg>, waiter: Waiter) {
        match waiter {
            Waiter::Local { conn, seq, reply } => {
                let _ = cx.reply(conn, seq, reply);
            }
            Waiter::Remote {
                origin,
                conn,
                seq,
                reply,
            } => self.send_to(cx, origin, Msg::Reply { conn, seq, reply }),
            Waiter::Part {
                origin,
                gather,
                result,
            } => self.send_to(cx, origin, Msg::PartDone { gather, result }),
        }
    }

    fn run_part(&mut self, cx: &mut Ctx<'_, Msg>, part: Part) -> (PartResult, Logged) {
        let now = now_ms();
        match part {
            Part::MGet(keys) => {
                let values = keys
                    .into_iter()
                    .map(|(i, k)| (i, self.db.get(&k, now).cloned()))
                    .collect();
                (PartResult::Values(values), None)
            }
            Part::Exists(keys) => {
                let n = keys.iter().filter(|k| self.db.exists(k, now)).count();
                (PartResult::Count(n as i64), None)
            }
            Part::DbSize => (PartResult::Count(self.db.len() as i64), None),
            Part::Write(mut args) => {
                // The server builds these parts from known commands (DEL, MSET, FLUSHALL).
                let Some(spec) = args.first().and_then(commands::lookup_chain) else {
                    let e = commands::unknown_command_error(&args);
                    return (PartResult::Error(e), None);
                };
                let (reply, record) = self.exec_here(cx, spec, &mut args);
                let bytes = reply.to_vec();
                let result = match bytes.first() {
                    Some(b':') => PartResult::Count(
                        std::str::from_utf8(&bytes[1..bytes.len() - 2])
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                    ),
                    Some(b'-') => PartResult::Error(
                        String::from_utf8_lossy(&bytes[1..bytes.len() - 2]).into_owned(),
                    ),
                    _ => PartResult::Count(0),
                };
                (result, record)
            }
        }
    }

    fn finish_part(&mut self, cx: &mut Ctx<'_, Msg>, gather: u32, result: PartResult) {
        let Some(g) = self.gathers.get_mut(gather as usize) else {
            return;
        };
        match result {
            PartResult::Values(vals) => {
                for (i, v) in vals {
                    g.values[i as usize] = v;
                }
            }
            PartResult::Count(n) => g.count += n,
            PartResult::Error(e) => {
                g.error.get_or_insert(e);
            }
        }
        g.left -= 1;
        if g.left > 0 {
            return;
        }
        let g = self.gathers.remove(gather as usize);
        let mut r = Reply::new(cx.arena(), MAX_REPLY);
        let written = match (&g.error, g.kind) {
            (Some(e), _) => r.error(e),
            (None, GatherKind::Sum) => r.integer(g.count),
            (None, GatherKind::Ok) => r.simple("OK"),
            (None, GatherKind::MGet) => (|| {
                r.array(g.values.len())?;
                for v in &g.values {
                    match v {
                        Some(v) => r.bulk_chain(v)?,
                        None => r.null_bulk()?,
                    }
                }
                Ok(())
            })(),
        };
        let reply = match written {
            Ok(()) => r.out,
            Err(e) => self.error_reply(cx, &format!("ERR {e}")),
        };
        let _ = cx.reply(g.conn, g.seq, reply);
    }

    /// Starts a gather over `parts` (by core), replying to (`conn`, `seq`) when all are in.
    fn gather(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        conn: ConnId,
        seq: Seq,
        kind: GatherKind,
        slots: usize,
        parts: Vec<(CoreId, Part)>,
    ) {
        let gather = self.gathers.insert(Gather {
            conn,
            seq,
            left: parts.len(),
            kind,
            count: 0,
            values: (0..slots).map(|_| None).collect(),
            error: None,
        }) as u32;
        let origin = self.core;
        for (core, part) in parts {
            self.send_to(
                cx,
                core,
                Msg::Part {
                    origin,
                    gather,
                    part,
                },
            );
        }
    }

    fn literal(cx: &Ctx<'_, Msg>, s: &[u8]) -> BufChain {
        let mut c = BufChain::new(s.len());
        let _ = c.append_slice(cx.arena(), s);
        c
    }

    /// Splits a multi-key command by shard.
    fn multi_key(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        conn: ConnId,
        seq: Seq,
        name: &str,
        args: Vec<BufChain>,
    ) {
        let shards = self.shared.cores;
        let mut by_core: Vec<Vec<(u32, BufChain, Option<BufChain>)>> =
            (0..shards).map(|_| Vec::new()).collect();
        let mut it = args.into_iter().skip(1);
        let mut i = 0u32;
        while let Some(k) = it.next() {
            let v = if name == "MSET" { it.next() } else { None };
            by_core[shard_of(&k, shards)].push((i, k, v));
            i += 1;
        }
        let mut parts = Vec::new();
        for (core, items) in by_core.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let part = match name {
                "MGET" => Part::MGet(items.into_iter().map(|(i, k, _)| (i, k)).collect()),
                "EXISTS" => Part::Exists(items.into_iter().map(|(_, k, _)| k).collect()),
                "DEL" => {
                    let mut a = vec![Self::literal(cx, b"DEL")];
                    a.extend(items.into_iter().map(|(_, k, _)| k));
                    Part::Write(a)
                }
                _ => {
                    let mut a = vec![Self::literal(cx, b"MSET")];
                    for (_, k, v) in items {
                        a.push(k);
                        a.push(v.expect("MSET arity checked"));
                    }
                    Part::Write(a)
                }
            };
            parts.push((core, part));
        }
        let kind = match name {
            "MGET" => GatherKind::MGet,
            "MSET" => GatherKind::Ok,
            _ => GatherKind::Sum,
        };
        self.gather(cx, conn, seq, kind, i as usize, parts);
    }

    fn all_cores(&self, part: impl Fn() -> Part) -> Vec<(CoreId, Part)> {
        (0..self.shared.cores).map(|c| (c, part())).collect()
    }

    /// Handles one parsed command of `conn`.
    fn command(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, seq: Seq, args: Vec<BufChain>) {
        let mut name_buf = [0u8; 32];
        let raw = &args[0];
        let n = raw.len().min(name_buf.len());
        raw.copy_to_slice(0, &mut name_buf[..n]);
        name_buf[..n].make_ascii_uppercase();
        let name = std::str::from_utf8(&name_buf[..n]).unwrap_or("");
        let Some(spec) = commands::lookup(&name_buf[..n]).filter(|_| raw.len() <= 32) else {
            let e = commands::unknown_command_error(&args);
            let r = self.error_reply(cx, &e);
            return self.reply(cx, conn, seq, r);
        };
        if let Err(e) = commands::check_arity(spec, args.len()) {
            let r = self.error_reply(cx, &e);
            return self.reply(cx, conn, seq, r);
        }
        let client = self.clients.get_mut(&conn).expect("client");
        if self.shared.args.requirepass.is_some()
            && !client.authed
            && !matches!(name, "AUTH" | "HELLO" | "QUIT")
        {
            let r = self.error_reply(cx, "NOAUTH Authentication required.");
            return self.reply(cx, conn, seq, r);
        }
        if client.subscriptions() > 0
            && !matches!(
                name,
                "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "PING" | "QUIT"
            )
        {
            let e = format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                name.to_ascii_lowercase()
            );
            let r = self.error_reply(cx, &e);
            return self.reply(cx, conn, seq, r);
        }
        // Values too large to compact stay in this core's receive blocks wherever their key
        // lives, so this arena is checked here as well as the owner's (in `exec_here`).
        if spec.denies_oom() && memory_short(cx.arena()) {
            let r = self.refuse_for_memory();
            return self.reply(cx, conn, seq, r);
        }
        match name {
            "PING" | "ECHO" | "QUIT" | "AUTH" | "SELECT" | "HELLO" | "CLIENT" | "COMMAND"
            | "CONFIG" | "INFO" | "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
                let reply = self.connection_command(cx, conn, name, &args);
                let _ = cx.reply(conn, seq, reply);
                if self.clients.get(&conn).is_some_and(|c| c.quitting) {
                    cx.close(conn);
                }
            }
            "DBSIZE" => {
                let parts = self.all_cores(|| Part::DbSize);
                self.gather(cx, conn, seq, GatherKind::Sum, 0, parts);
            }
            "FLUSHALL" => {
                let mut parts = Vec::new();
                for core in 0..self.shared.cores {
                    parts.push((core, Part::Write(vec![Self::literal(cx, b"FLUSHALL")])));
                }
                self.gather(cx, conn, seq, GatherKind::Ok, 0, parts);
            }
            "PUBLISH" => {
                let gather = self.gathers.insert(Gather {
                    conn,
                    seq,
                    left: self.shared.cores,
                    kind: GatherKind::Sum,
                    count: 0,
                    values: Vec::new(),
                    error: None,
                }) as u32;
                for core in 0..self.shared.cores {
                    let msg = Msg::Publish {
                        origin: self.core,
                        gather,
                        channel: args[1].clone(),
                        message: args[2].clone(),
                    };
                    self.send_to(cx, core, msg);
                }
            }
            "MGET" | "MSET" | "DEL" | "EXISTS" => {
                let shards = self.shared.cores;
                let step = if name == "MSET" { 2 } else { 1 };
                let first = shard_of(&args[1], shards);
                let single = args[1..]
                    .iter()
                    .step_by(step)
                    .all(|k| shard_of(k, shards) == first);
                if single {
                    self.route(cx, conn, seq, first, spec, args);
                } else {
                    self.multi_key(cx, conn, seq, name, args);
                }
            }
            _ => {
                let owner = if spec.first_key > 0 && args.len() > spec.first_key as usize {
                    shard_of(&args[spec.first_key as usize], self.shared.cores)
                } else {
                    self.core
                };
                self.route(cx, conn, seq, owner, spec, args);
            }
        }
    }

    fn route(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        conn: ConnId,
        seq: Seq,
        owner: CoreId,
        spec: &'static CommandSpec,
        mut args: Vec<BufChain>,
    ) {
        let size: usize = args.iter().map(|a| a.len()).sum();
        if size > MAX_LOGGED {
            let e = format!(
                "ERR command of {size} bytes exceeds the write-ahead log's record limit of {MAX_LOGGED} bytes"
            );
            let r = self.error_reply(cx, &e);
            return self.reply(cx, conn, seq, r);
        }
        if owner == self.core {
            let (reply, lsn) = self.exec_here(cx, spec, &mut args);
            self.wait_or_send(cx, lsn, Waiter::Local { conn, seq, reply });
        } else {
            self.send_to(
                cx,
                owner,
                Msg::Exec {
                    origin: self.core,
                    conn,
                    seq,
                    spec,
                    args,
                },
            );
        }
    }

    fn connection_command(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        conn: ConnId,
        name: &str,
        args: &[BufChain],
    ) -> BufChain {
        let mut limits = None;
        let mut r = Reply::new(cx.arena(), MAX_REPLY);
        let arg = |i: usize| args.get(i).map(|a| a.to_vec()).unwrap_or_default();
        let upper = |i: usize| String::from_utf8_lossy(&arg(i)).to_ascii_uppercase();
        let result = (|| -> Result<(), ringfort::pool::PoolError> {
            let client = self.clients.get_mut(&conn).expect("client");
            match name {
                "PING" if client.subscriptions() > 0 => {
                    r.array(2)?;
                    r.bulk(b"pong")?;
                    r.bulk(&arg(1))?;
                }
                "PING" if args.len() == 2 => r.bulk_chain(&args[1])?,
                "PING" => r.simple("PONG")?,
                "ECHO" => r.bulk_chain(&args[1])?,
                "QUIT" => {
                    client.quitting = true;
                    r.simple("OK")?;
                }
                "SELECT" => {
                    if arg(1) == b"0" {
                        r.simple("OK")?
                    } else if std::str::from_utf8(&arg(1))
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .is_none()
                    {
                        r.error("ERR value is not an integer or out of range")?
                    } else {
                        r.error("ERR DB index is out of range")?
                    }
                }
                "AUTH" => {
                    let pass = arg(args.len() - 1);
                    match &self.shared.args.requirepass {
                        None => r.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")?,
                        Some(p) if args.len() == 3 && arg(1) != b"default" => {
                            let _ = p;
                            r.error("WRONGPASS invalid username-password pair or user is disabled.")?
                        }
                        Some(p) if p.as_bytes() == pass.as_slice() => {
                            client.authed = true;
                            client.parser.set_authenticated(true);
                            r.simple("OK")?
                        }
                        Some(_) => r.error("WRONGPASS invalid username-password pair or user is disabled.")?,
                    }
                }
                "HELLO" => {
                    let ver = if args.len() >= 2 { Some(arg(1)) } else { None };
                    match ver.as_deref() {
                        Some(v) if v != b"2" => {
                            if std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.parse::<i64>().ok())
                                .is_none()
                            {
                                r.error("ERR Protocol version is not an integer or out of range")?
                            } else {
                                r.error("NOPROTO unsupported protocol version")?
                            }
                        }
                        _ => {
                            let mut i = 2;
                            let mut err = None;
                            while i < args.len() {
                                match upper(i).as_str() {
                                    "AUTH" if i + 2 < args.len() => {
                                        let ok =
                                            self.shared.args.requirepass.as_deref().is_some_and(
                                                |p| p.as_bytes() == arg(i + 2).as_slice(),
                                            ) && arg(i + 1) == b"default";
                                        if ok {
                                            client.authed = true;
                                            client.parser.set_authenticated(true);
                                        } else {
                                            err = Some("WRONGPASS invalid username-password pair or user is disabled.");
                                        }
                                        i += 3;
                                    }
                                    "SETNAME" if i + 1 < args.len() => {
                                        client.name = Some(arg(i + 1));
                                        i += 2;
                                    }
                                    _ => {
                                        err = Some("ERR Syntax error in HELLO option");
                                        break;
                                    }
                                }
                            }
                            if let Some(e) = err {
                                r.error(e)?;
                            } else if self.shared.args.requirepass.is_some() && !client.authed {
                                r.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")?;
                            } else {
                                r.array(14)?;
                                r.bulk(b"server")?;
                                r.bulk(b"redis")?;
                                r.bulk(b"version")?;
                                r.bulk(b"7.0.15")?;
                                r.bulk(b"proto")?;
                                r.integer(2)?;
                                r.bulk(b"id")?;
                                r.integer(client.id as i64)?;
                                r.bulk(b"mode")?;
                                r.bulk(b"standalone")?;
                                r.bulk(b"role")?;
                                r.bulk(b"master")?;
                                r.bulk(b"modules")?;
                                r.array(0)?;
                            }
                        }
                    }
                }
                "CLIENT" => match upper(1).as_str() {
                    "SETNAME" if args.len() == 3 => {
                        let n = arg(2);
                        if n.iter().any(|&b| b <= b' ' || b > b'~') {
                            r.error("ERR Client names cannot contain spaces, newlines or special characters.")?
                        } else {
                            client.name = if n.is_empty() { None } else { Some(n) };
                            r.simple("OK")?
                        }
                    }
                    "GETNAME" if args.len() == 2 => match &client.name {
                        Some(n) => r.bulk(n)?,
                        None => r.null_bulk()?,
                    },
                    "ID" if args.len() == 2 => r.integer(client.id as i64)?,
                    "SETINFO" => r.simple("OK")?,
                    _ => {
                        let sub = String::from_utf8_lossy(&arg(1)).into_owned();
                        r.error(&format!("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLIENT HELP."))?
                    }
                },
                "COMMAND" => commands::command_reply(&mut r, args)?,
                "CONFIG" => match upper(1).as_str() {
                    "GET" if args.len() >= 3 => {
                        let params = self.config_params();
                        let mut hits: Vec<(&str, String)> = Vec::new();
                        for i in 2..args.len() {
                            let pat = arg(i).to_ascii_lowercase();
                            for (k, v) in &params {
                                if glob::matches(&pat, k.as_bytes())
                                    && !hits.iter().any(|(h, _)| h == k)
                                {
                                    hits.push((k, v.clone()));
                                }
                            }
                        }
                        r.array(hits.len() * 2)?;
                        for (k, v) in hits {
                            r.bulk(k.as_bytes())?;
                            r.bulk(v.as_bytes())?;
                        }
                    }
                    _ => {
                        let sub = String::from_utf8_lossy(&arg(1)).into_owned();
                        r.error(&format!("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CONFIG HELP."))?
                    }
                },
                "INFO" => {
                    let section = if args.len() > 1 {
                        String::from_utf8_lossy(&arg(1)).to_ascii_lowercase()
                    } else {
                        "default".into()
                    };
                    let text = self.info(&section);
                    r.bulk(text.as_bytes())?
                }
                "SUBSCRIBE" | "PSUBSCRIBE" => {
                    let pattern = name == "PSUBSCRIBE";
                    if client.subscriptions() == 0 {
                        limits = Some(OutboxLimits::redis_pubsub_default());
                    }
                    for a in &args[1..] {
                        let ch = a.to_vec();
                        let client = self.clients.get_mut(&conn).expect("client");
                        let new = if pattern {
                            client.patterns.insert(ch.clone())
                        } else {
                            client.channels.insert(ch.clone())
                        };
                        if new {
                            if pattern {
                                self.patterns.push((ch.clone(), conn));
                            } else {
                                self.channels.entry(ch.clone()).or_default().push(conn);
                            }
                        }
                        let count = self.clients[&conn].subscriptions();
                        r.array(3)?;
                        r.bulk(if pattern {
                            b"psubscribe".as_slice()
                        } else {
                            b"subscribe"
                        })?;
                        r.bulk(&ch)?;
                        r.integer(count as i64)?;
                    }
                }
                "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
                    let pattern = name == "PUNSUBSCRIBE";
                    let kind: &[u8] = if pattern {
                        b"punsubscribe"
                    } else {
                        b"unsubscribe"
                    };
                    let targets: Vec<Vec<u8>> = if args.len() > 1 {
                        args[1..].iter().map(|a| a.to_vec()).collect()
                    } else if pattern {
                        client.patterns.iter().cloned().collect()
                    } else {
                        client.channels.iter().cloned().collect()
                    };
                    if targets.is_empty() {
                        r.array(3)?;
                        r.bulk(kind)?;
                        r.null_bulk()?;
                        r.integer(client.subscriptions() as i64)?;
                    }
                    for ch in targets {
                        self.unsubscribe(conn, &ch, pattern);
                        r.array(3)?;
                        r.bulk(kind)?;
                        r.bulk(&ch)?;
                        r.integer(self.clients[&conn].subscriptions() as i64)?;
                    }
                    if self.clients[&conn].subscriptions() == 0 {
                        limits = Some(OutboxLimits::normal_default());
                    }
                }
                _ => r.error("ERR unsupported")?,
            }
            Ok(())
        })();
        let out = match result {
            Ok(()) => r.out,
            Err(e) => self.error_reply(cx, &format!("ERR {e}")),
        };
        if let Some(l) = limits {
            let _ = cx.set_outbox_limits(conn, l);
        }
        out
    }

    fn unsubscribe(&mut self, conn: ConnId, ch: &[u8], pattern: bool) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if pattern {
            if client.patterns.remove(ch) {
                self.patterns.retain(|(p, c)| !(p == ch && *c == conn));
            }
        } else if client.channels.remove(ch) {
            if let Some(subs) = self.channels.get_mut(ch) {
                subs.retain(|&c| c != conn);
                if subs.is_empty() {
                    self.channels.remove(ch);
                }
            }
        }
    }

    fn config_params(&self) -> Vec<(&'static str, String)> {
        let a = &self.shared.args;
        vec![
            ("maxclients", a.maxclients.to_string()),
            ("requirepass", a.requirepass.clone().unwrap_or_default()),
            ("proto-max-bulk-len", a.proto_max_bulk_len.to_string()),
            ("port", a.port.to_string()),
            ("bind", a.bind.to_string()),
            ("dir", a.dir.display().to_string()),
            ("databases", "1".into()),
            ("save", String::new()),
            ("maxmemory", self.shared.maxmemory().to_string()),
            ("maxmemory-policy", "noeviction".into()),
            ("appendonly", "no".into()),
            (
                "appendfsync",
                match a.durability {
                    DurabilityArg::Sync => "always",
                    DurabilityArg::Buffered => "no",
                    DurabilityArg::None => "no",
                }
                .into(),
            ),
            ("timeout", "0".into()),
            (
                "client-output-buffer-limit",
                "normal 67108864 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60".into(),
            ),
        ]
    }

    fn info(&self, section: &str) -> String {
        let s = &self.shared.stats;
        let sum = |f: fn(&CoreStats) -> &AtomicU64| {
            s.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>()
        };
        let want =
            |name: &str| matches!(section, "default" | "all" | "everything") || section == name;
        let mut out = String::new();
        use std::fmt::Write as _;
        if want("server") {
            let up = self.shared.started.elapsed().as_secs();
            let _ = write!(
                out,
                "# Server\r\nredis_version:7.0.15\r\nringfort_version:{}\r\nredis_mode:standalone\r\nos:Linux\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nio_threads_active:0\r\nringfort_cores:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                self.shared.run_id,
                self.shared.args.port,
                up / 86400,
                self.shared.cores
            );
        }
        if want("clients") {
            let _ = write!(
                out,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\npubsub_clients:{}\r\n\r\n",
                sum(|c| &c.clients),
                self.shared.args.maxclients,
                sum(|c| &c.channels) + sum(|c| &c.patterns)
            );
        }
        if want("memory") {
            let used = sum(|c| &c.used_memory);
            let max = self.shared.maxmemory();
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            // The class nearest its reserve on any core: what the next OOM refusal is about.
            let tight = s
                .iter()
                .enumerate()
                .map(|(core, c)| {
                    let room = room_per_mille(load(&c.tight_available), load(&c.tight_at_cap));
                    (room, core, c)
                })
                .min_by_key(|&(room, ..)| room)
                .map(|(_, core, c)| {
                    format!(
                        "{}B {}/{} core {core}",
                        load(&c.tight_size),
                        load(&c.tight_available),
                        load(&c.tight_at_cap)
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{:.2}M\r\nused_memory_rss:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{:.2}M\r\nmaxmemory_policy:noeviction\r\nmem_allocator:ringfort-pool\r\nringfort_arena_backing:{}\r\nringfort_arena_tightest:{tight}\r\n\r\n",
                used as f64 / (1 << 20) as f64,
                resident_bytes(),
                max as f64 / (1 << 20) as f64,
                self.shared.backing()
            );
        }
        if want("persistence") {
            let _ = write!(
                out,
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\naof_enabled:0\r\nringfort_durability:{:?}\r\nringfort_wal_durable_lsn:{}\r\nringfort_wal_next_lsn:{}\r\nringfort_wal_failures:{}\r\nringfort_wal_last_error:{}\r\nringfort_checkpoints:{}\r\nringfort_last_checkpoint_time:{}\r\nringfort_records_replayed:{}\r\n\r\n",
                self.shared.args.durability,
                sum(|c| &c.wal_durable),
                sum(|c| &c.wal_next),
                sum(|c| &c.wal_failures),
                self.shared.last_wal_error.lock().unwrap(),
                sum(|c| &c.checkpoints),
                s.iter().map(|c| c.last_checkpoint.load(Ordering::Relaxed)).max().unwrap_or(0),
                sum(|c| &c.replayed)
            );
        }
        if want("stats") {
            let _ = write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nclient_output_buffer_limit_disconnections:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\nringfort_oom_refused:{}\r\n\r\n",
                sum(|c| &c.connections),
                sum(|c| &c.commands),
                sum(|c| &c.rejected),
                sum(|c| &c.evicted_clients),
                sum(|c| &c.channels),
                sum(|c| &c.patterns),
                sum(|c| &c.oom_refused)
            );
        }
        if want("keyspace") {
            let keys = sum(|c| &c.keys);
            out.push_str("# Keyspace\r\n");
            if keys > 0 {
                let _ = write!(
                    out,
                    "db0:keys={keys},expires={},avg_ttl=0\r\n",
                    sum(|c| &c.expires)
                );
            }
        }
        out
    }

    /// Publishes `message` on `channel` to this core's subscribers; returns how many.
    fn deliver(&mut self, cx: &mut Ctx<'_, Msg>, channel: &BufChain, message: &BufChain) -> i64 {
        let ch = channel.to_vec();
        let mut n = 0;
        if let Some(subs) = self.channels.get(&ch) {
            let mut r = Reply::new(cx.arena(), MAX_REPLY);
            let built = (|| {
                r.array(3)?;
                r.bulk(b"message")?;
                r.bulk_chain(channel)?;
                r.bulk_chain(message)
            })();
            if built.is_ok() {
                let subs = subs.clone();
                n += cx.publish(&subs, &r.out) as i64;
            }
        }
        let matching: Vec<(Vec<u8>, ConnId)> = self
            .patterns
            .iter()
            .filter(|(p, _)| glob::matches(p, &ch))
            .cloned()
            .collect();
        for (p, conn) in matching {
            let mut r = Reply::new(cx.arena(), MAX_REPLY);
            let built = (|| {
                r.array(4)?;
                r.bulk(b"pmessage")?;
                r.bulk(&p)?;
                r.bulk_chain(channel)?;
                r.bulk_chain(message)
            })();
            if built.is_ok() {
                n += cx.publish(&[conn], &r.out) as i64;
            }
        }
        n
    }

    fn start_checkpoint(&mut self, cx: &mut Ctx<'_, Msg>) {
        let Some(wal) = self.wal else {
            return;
        };
        // The checkpoint holds exactly the durable records' effects: the writes applied
        // in memory but not yet durable are taken back in the copy. Its LSN is the
        // durable LSN, so a write that later fails (and whose LSN is handed out again) is
        // never in a checkpoint that claims to cover it.
        let Ok(lsn) = cx.wal_durable(wal) else {
            return;
        };
        if lsn == self.checkpoint_lsn {
            self.last_checkpoint = Instant::now();
            return;
        }
        self.logged_bytes = 0;
        let mut snapshot = self.db.clone();
        for (_, _, undo) in self.unlogged.iter().rev() {
            snapshot.undo(undo);
        }
        for (_, _, undo) in self.waiting.iter().rev().take_while(|(l, ..)| *l >= lsn) {
            snapshot.undo(undo);
        }
        let dir = self.dir.clone();
        let (tx, rx) = mpsc::channel();
        let now = now_ms();
        let spawned = std::thread::Builder::new()
            .name(format!("checkpoint-{}", self.core))
            .spawn(move || {
                let _ = tx.send(write_checkpoint(&dir, &snapshot, lsn, now));
            });
        match spawned {
            Ok(_) => self.checkpointing = Some(Checkpointing { lsn, done: rx }),
            Err(e) => tracing::warn!("shard {}: cannot start a checkpoint: {e}", self.core),
        }
        self.last_checkpoint = Instant::now();
    }

    fn poll_checkpoint(&mut self, cx: &mut Ctx<'_, Msg>) {
        let Some(c) = &self.checkpointing else {
            return;
        };
        let result = match c.done.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err("checkpoint thread died".into()),
        };
        let lsn = c.lsn;
        self.checkpointing = None;
        match result {
            Ok(bytes) => {
                self.checkpoint_lsn = lsn;
                self.stats().checkpoints.fetch_add(1, Ordering::Relaxed);
                self.stats()
                    .last_checkpoint
                    .store(now_ms() / 1000, Ordering::Relaxed);
                if let Some(wal) = self.wal {
                    match cx.wal_truncate_prefix(wal, lsn) {
                        Ok(n) => tracing::info!("shard {}: checkpoint at LSN {lsn} ({bytes} B); {n} log segments removed", self.core),
                        Err(e) => tracing::warn!("shard {}: truncating the log after a checkpoint: {e}", self.core),
                    }
                }
            }
            Err(e) => tracing::error!(
                "shard {}: checkpoint failed (the log is kept): {e}",
                self.core
            ),
        }
    }

    fn publish_stats(&mut self, cx: &mut Ctx<'_, Msg>) {
        let s = &self.shared.stats[self.core];
        s.keys.store(self.db.len() as u64, Ordering::Relaxed);
        s.expires
            .store(self.db.expires_len() as u64, Ordering::Relaxed);
        s.used_memory
            .store(self.db.used_memory() as u64, Ordering::Relaxed);
        let arena = cx.arena();
        let tightest = arena
            .class_sizes()
            .zip((0..).map_while(|class| arena.headroom(class)))
            .min_by_key(|&(_, (available, at_cap))| {
                room_per_mille(available as u64, at_cap as u64)
            });
        if let Some((size, (available, at_cap))) = tightest {
            s.tight_size.store(size as u64, Ordering::Relaxed);
            s.tight_available.store(available as u64, Ordering::Relaxed);
            s.tight_at_cap.store(at_cap as u64, Ordering::Relaxed);
        }
        s.clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
        s.channels
            .store(self.channels.len() as u64, Ordering::Relaxed);
        s.patterns
            .store(self.patterns.len() as u64, Ordering::Relaxed);
        if let Some(wal) = self.wal {
            if let (Ok(d), Ok(n)) = (cx.wal_durable(wal), cx.wal_next_lsn(wal)) {
                s.wal_durable.store(d, Ordering::Relaxed);
                s.wal_next.store(n, Ordering::Relaxed);
            }
        }
    }
}

/// The largest write the log takes (a write is refused before it runs when its record
/// would exceed this; values up to `--proto-max-bulk-len` can still be read and sent).
pub const MAX_LOGGED: usize = 64 << 20;

/// Each shard's log: 1 MiB blocks, `segment_size` segments (`--wal-segment-size`),
/// `spares` zero-filled spares (`--wal-spares`), records up to [`MAX_LOGGED`] plus framing.
fn wal_config(durability: Durability, segment_size: u64, spares: usize) -> WalConfig {
    WalConfig {
        durability,
        block_size: 1 << 20,
        segment_size,
        zeroed_spares: spares,
        batch_bytes: 4 << 20,
        max_record: MAX_LOGGED + (64 << 10),
        // O_DIRECT only where every write waits for the device anyway: without syncs, the
        // page cache absorbs bursts (SET of 64 KiB values at `--durability none` halved
        // under O_DIRECT, bound by the disk).
        direct_io: durability == Durability::Sync,
        ..WalConfig::default()
    }
}

/// An arena class is short of memory when fewer than this fraction of its buffers at the
/// cap can still be handed out: `1 / MEMORY_RESERVE_DIV`.
const MEMORY_RESERVE_DIV: usize = 16;

/// Whether some class of `arena` is down to its reserve. Writes that may grow memory are
/// then refused (Redis's `noeviction` policy), so that the reserve stays for what must
/// not fail: receives, replies, log batches, and a restart replaying this data.
fn memory_short(arena: &Arena) -> bool {
    let short = |a: &Arena| {
        (0..)
            .map_while(|class| a.headroom(class))
            .any(|(available, at_cap)| available < at_cap / MEMORY_RESERVE_DIV)
    };
    // Buffers other cores have freed count only once reclaimed.
    short(arena) && {
        arena.reclaim();
        short(arena)
    }
}

/// How much of a class is still available, in thousandths of its buffers at the cap.
fn room_per_mille(available: u64, at_cap: u64) -> u64 {
    available * 1000 / at_cap.max(1)
}

/// The process's resident memory (`/proc/self/statm`), or 0 where it cannot be read.
fn resident_bytes() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// What to add to a start-up error when loading the data ran the arena short.
fn memory_hint(arena: &Arena) -> &'static str {
    if memory_short(arena) {
        " (the data needs more memory than --maxmemory gives each core: restart with a \
         larger --maxmemory)"
    } else {
        ""
    }
}

/// An argument is compacted when the blocks it shares hold more than this many times its
/// size (at least one 64 B block's worth).
const PIN_RATIO: usize = 2;

/// Copies arguments out of the blocks they arrived in (receive blocks, or a log record's at
/// replay) into right-sized blocks of `arena` when keeping them would pin more than
/// [`PIN_RATIO`] times their size: a 10 B value in a 4 KiB receive block, a 2 KiB value in
/// a 64 KiB one. Values that fill their blocks (large ones) keep them: zero copy. Returns
/// false when some copy failed for want of memory (that argument keeps its blocks).
fn compact(arena: &Arena, args: &mut [BufChain]) -> bool {
    let mut all = true;
    for a in args.iter_mut().skip(1) {
        let pinned: usize = a.segments().map(|(block, _)| block.capacity()).sum();
        if pinned <= PIN_RATIO * a.len().max(64) {
            continue;
        }
        let mut c = BufChain::new(a.len());
        if a.chunks()
            .try_for_each(|piece| c.append_slice(arena, piece))
            .is_ok()
        {
            *a = c;
        } else {
            all = false;
        }
    }
    all
}

/// Writes `db` as of LSN `lsn` to `dir/checkpoint`: a temp file, fsync, rename, directory
/// fsync. The file starts with the LSN the log continues from.
fn write_checkpoint(dir: &Path, db: &Db, lsn: Lsn, now: u64) -> Result<u64, String> {
    let tmp = dir.join("checkpoint.tmp");
    let fin = dir.join("checkpoint");
    let f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(f);
    w.write_all(&lsn.to_le_bytes()).map_err(|e| e.to_string())?;
    let bytes = db
        .write_checkpoint(&mut w, now)
        .map_err(|e| e.to_string())?;
    let f = w.into_inner().map_err(|e| e.to_string())?;
    f.sync_all()
        .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &fin).map_err(|e| format!("rename: {e}"))?;
    sync_dir(dir).map_err(|e| format!("fsync {}: {e}", dir.display()))?;
    Ok(bytes + 8)
}

impl Handler for Server {
    type Msg = Msg;

    fn on_start(&mut self, cx: &mut Ctx<'_, Msg>) {
        if self.core == 0 {
            *self.shared.backing.lock().unwrap() = cx.arena().report().backing().to_string();
        }
        let mut oom = Reply::new(cx.arena(), MAX_REPLY);
        let result = oom
            .error(commands::OOM_ERROR)
            .map_err(|e| format!("building the OOM reply: {e}"));
        self.oom_reply = oom.out;
        let result = result.and_then(|()| self.recover(cx)).and_then(|()| {
            cx.listen(self.shared.addr)
                .map(|l| self.listener = Some(l))
                .map_err(|e| format!("listening on {}: {e}", self.shared.addr))
        });
        if let Err(e) = &result {
            tracing::error!("shard {}: {e}", self.core);
            cx.stop_engine(Duration::ZERO);
        }
        self.shared.report_ready(result);
    }

    fn on_open(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        conn: ConnId,
        _l: Option<ListenerId>,
        _peer: Option<SocketAddr>,
    ) {
        self.stats().connections.fetch_add(1, Ordering::Relaxed);
        let now = self.shared.clients.fetch_add(1, Ordering::AcqRel) + 1;
        let limits = Limits {
            proto_max_bulk_len: self.shared.args.proto_max_bulk_len,
            ..Limits::default()
        };
        let mut parser = Parser::new(limits);
        let authed = self.shared.args.requirepass.is_none();
        parser.set_authenticated(authed);
        self.clients.insert(
            conn,
            Client {
                id: self.shared.next_client_id.fetch_add(1, Ordering::Relaxed),
                parser,
                authed,
                name: None,
                channels: HashSet::new(),
                patterns: HashSet::new(),
                quitting: false,
            },
        );
        self.stats()
            .clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
        if now > self.shared.args.maxclients {
            self.stats().rejected.fetch_add(1, Ordering::Relaxed);
            let _ = cx.send_bytes(conn, b"-ERR max number of clients reached\r\n");
            cx.close(conn);
        }
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, data: &mut BufChain) {
        loop {
            if cx.backpressured(conn) || !cx.request_room(conn) {
                return;
            }
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            if client.quitting {
                data.clear();
                return;
            }
            let mut args = std::mem::take(&mut self.args);
            match client.parser.parse(data, cx.arena(), &mut args) {
                Ok(false) => {
                    self.args = args;
                    return;
                }
                Err(e) => {
                    let _ = cx.send_bytes(conn, format!("-ERR {e}\r\n").as_bytes());
                    tracing::debug!("closing {conn:?}: {e}");
                    client.quitting = true;
                    data.clear();
                    cx.close(conn);
                    return;
                }
                Ok(true) => {}
            }
            let Ok(seq) = cx.begin_request(conn) else {
                return;
            };
            self.stats().commands.fetch_add(1, Ordering::Relaxed);
            let owned = std::mem::take(&mut args);
            self.args = args;
            self.command(cx, conn, seq, owned);
        }
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_, Msg>, conn: ConnId, reason: CloseReason) {
        if let Some(client) = self.clients.remove(&conn) {
            self.shared.clients.fetch_sub(1, Ordering::AcqRel);
            // At once, not at the next tick: a core may sleep long after its last close.
            self.stats()
                .clients
                .store(self.clients.len() as u64, Ordering::Relaxed);
            for ch in &client.channels {
                if let Some(subs) = self.channels.get_mut(ch) {
                    subs.retain(|&c| c != conn);
                    if subs.is_empty() {
                        self.channels.remove(ch);
                    }
                }
            }
            if !client.patterns.is_empty() {
                self.patterns.retain(|(_, c)| *c != conn);
            }
        }
        if let CloseReason::Evicted(why) = &reason {
            self.stats().evicted_clients.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("client {conn:?} closed for overcoming of output buffer limits: {why}");
        }
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, Msg>, _from: Option<CoreId>, msg: Msg) {
        match msg {
            Msg::Exec {
                origin,
                conn,
                seq,
                spec,
                mut args,
            } => {
                let (reply, lsn) = self.exec_here(cx, spec, &mut args);
                self.wait_or_send(
                    cx,
                    lsn,
                    Waiter::Remote {
                        origin,
                        conn,
                        seq,
                        reply,
                    },
                );
            }
            Msg::Reply { conn, seq, reply } => {
                let _ = cx.reply(conn, seq, reply);
            }
            Msg::Part {
                origin,
                gather,
                part,
            } => {
                let (result, lsn) = self.run_part(cx, part);
                self.wait_or_send(
                    cx,
                    lsn,
                    Waiter::Part {
                        origin,
                        gather,
                        result,
                    },
                );
            }
            Msg::PartDone { gather, result } => self.finish_part(cx, gather, result),
            Msg::Publish {
                origin,
                gather,
                channel,
                message,
            } => {
                let n = self.deliver(cx, &channel, &message);
                self.send_to(
                    cx,
                    origin,
                    Msg::PartDone {
                        gather,
                        result: PartResult::Count(n),
                    },
                );
            }
        }
    }

    fn on_wal_durable(&mut self, cx: &mut Ctx<'_, Msg>, _wal: WalId, durable: Lsn) {
        while self.waiting.front().is_some_and(|(lsn, ..)| *lsn < durable) {
            let (_, waiter, _) = self.waiting.pop_front().expect("checked");
            self.release(cx, waiter);
        }
        self.drain_unlogged(cx);
    }

    fn on_wal_failed(
        &mut self,
        cx: &mut Ctx<'_, Msg>,
        _wal: WalId,
        failure: ringfort::wal::Failure,
    ) {
        tracing::error!(
            "shard {}: log records {:?} failed: {}",
            self.core,
            failure.lsns,
            failure.error
        );
        self.stats().wal_failures.fetch_add(1, Ordering::Relaxed);
        *self.shared.last_wal_error.lock().unwrap() =
            format!("shard {}: {}", self.core, failure.error);
        let text = format!(
            "ERR write-ahead log failed, the write is not durable: {}",
            failure.error
        );
        // Every write from the failed LSN on, and every one not yet logged, was applied
        // after it: take them all back, newest first, so memory matches the log again
        // (a later write, an APPEND say, must not build on one the log lost).
        let split = self
            .waiting
            .iter()
            .position(|(lsn, ..)| *lsn >= failure.lsns.start)
            .unwrap_or(self.waiting.len());
        let mut failed: Vec<(Waiter, Vec<Undo>)> = self
            .waiting
            .drain(split..)
            .map(|(_, w, u)| (w, u))
            .collect();
        failed.extend(self.unlogged.drain(..).map(|(_, w, u)| (w, u)));
        self.take_back(cx, failed, &text);
    }

    fn on_tick(&mut self, cx: &mut Ctx<'_, Msg>) {
        self.drain_unlogged(cx);
        while let Some((core, msg)) = self.retry.pop_front() {
            if let Err(full) = cx.submit_to(core, msg) {
                self.retry.push_front((core, full.into_inner()));
                break;
            }
        }
        self.db.expire_cycle(now_ms(), EXPIRE_CHECKS);
        self.poll_checkpoint(cx);
        if self.checkpointing.is_none() && self.wal.is_some() {
            let wal = self.wal.expect("checked");
            let logged = cx
                .wal_next_lsn(wal)
                .map_or(0, |n| n.saturating_sub(self.checkpoint_lsn));
            let due = self.last_checkpoint.elapsed()
                >= Duration::from_secs(self.shared.args.checkpoint_secs);
            if self.logged_bytes >= self.shared.args.checkpoint_bytes || (due && logged > 0) {
                self.start_checkpoint(cx);
            }
        }
        self.publish_stats(cx);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_log_config_is_valid_and_fits_a_ring() {
        let c = super::wal_config(ringfort::wal::Durability::Sync, 256 << 20, 1);
        let blocks = c.max_batch_blocks().expect("valid");
        assert!(
            blocks < 4096,
            "{blocks} blocks per batch do not fit the ring"
        );
    }
}
