//! Recovery: scanning segments, yielding records from a given LSN, telling a torn tail
//! from corruption in the middle of the log, and saying how to repair the tail.
//!
//! The scanner works on whole segment images in memory, fetched through a
//! [`SegmentSource`]: files through [`crate::file::Dir`], or byte slices through
//! [`MemSegments`] (which is what the fuzz target and the unit tests use). A segment is at
//! most [`ReadOptions::max_segment_bytes`] long and a reassembled record at most
//! [`ReadOptions::max_record`], so memory is bounded by two segment images (the current one
//! and a look-ahead) plus one record.
//!
//! ## How damage is classified
//!
//! Reading stops being simple at the first bytes that do not decode as the expected next
//! frame (position `p`, next expected LSN `E`). The scanner then looks ahead, checking
//! every 4 KiB boundary after `p` (every batch starts on one) in this segment and the
//! later ones for a valid frame:
//!
//! - If the first valid frame found carries LSN `E`, nothing was lost (a damaged padding
//!   frame); reading continues there.
//! - If any valid frame after `p` has a watermark above `E`, then LSN `E` was durable when
//!   that frame's batch was sealed, so durable data is damaged: **corruption in the middle
//!   of the log**.
//! - Otherwise the damage is a **torn tail**: nothing after `p` proves that anything from
//!   `E` on was ever acknowledged (several batches may have been in flight, so a hole
//!   followed by unacknowledged batches is a torn tail too).
//!
//! A segment whose header is damaged while its data area holds frames is corruption
//! (headers are synced before any batch is written to the segment); a last segment whose
//! header is damaged and which holds no frame is an incomplete creation, a clean end.
//! Damage at the end of the last batch of the log cannot be told from a torn write: like
//! every WAL without redundant copies, it is treated as one.
//!
//! What each [`RecoveryMode`] does with each case is in its docs.

use std::fmt;

use crate::codec::{decode_frame, has_frame_magic, peek_lsn, FrameProblem};
use crate::error::WalError;
use crate::format::{
    page_align_up, FrameKind, HeaderProblem, SegmentHeader, FRAME_HEADER_LEN, PAGE,
    SEGMENT_HEADER_LEN,
};
use crate::Lsn;

/// What recovery does with damage; the four modes of RocksDB's WAL recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// A torn tail is cut off and the log continues from the last whole record;
    /// corruption in the middle of the log is an error. The default.
    #[default]
    TolerateCorruptedTail,
    /// Any damage at all, a torn tail included, is an error. A clean end (zero-filled or
    /// stale bytes after the last batch) is not damage.
    AbsoluteConsistency,
    /// Recovery stops at the first damage of any kind and returns the records before it;
    /// everything after is cut off.
    PointInTime,
    /// Damaged records are skipped, and reading goes on with the next valid batch; each
    /// skip is reported with the LSNs it lost. A torn tail is cut off.
    SkipCorrupted,
}

impl RecoveryMode {
    /// Parses the CLI spelling: `tolerate-tail`, `absolute`, `point-in-time`, `skip`.
    pub fn parse(s: &str) -> Option<RecoveryMode> {
        Some(match s {
            "tolerate-tail" => RecoveryMode::TolerateCorruptedTail,
            "absolute" => RecoveryMode::AbsoluteConsistency,
            "point-in-time" => RecoveryMode::PointInTime,
            "skip" => RecoveryMode::SkipCorrupted,
            _ => return None,
        })
    }
}

/// Options for one read of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// What to do with damage.
    pub mode: RecoveryMode,
    /// Records with a lower LSN are checked but not yielded; whole segments below it are
    /// not read at all.
    pub from: Lsn,
    /// A record larger than this is damage (it cannot have been written).
    pub max_record: usize,
    /// A segment file larger than this is refused rather than read.
    pub max_segment_bytes: u64,
}

impl Default for ReadOptions {
    /// Tolerate a corrupted tail, from the start, records up to 1 GiB, segments up to
    /// 1 GiB plus the header.
    fn default() -> Self {
        ReadOptions {
            mode: RecoveryMode::default(),
            from: 0,
            max_record: crate::config::MAX_RECORD_LIMIT,
            max_segment_bytes: crate::config::MAX_SEGMENT_LIMIT,
        }
    }
}

/// Where segment images come from.
pub trait SegmentSource {
    /// The first LSNs (names) of all segments, ascending.
    fn list(&mut self) -> Result<Vec<Lsn>, WalError>;
    /// Replaces `buf` with the whole image of segment `id`; refuses one longer than
    /// `limit` bytes.
    fn read(&mut self, id: Lsn, buf: &mut Vec<u8>, limit: u64) -> Result<(), WalError>;
}

/// Segment images held in memory (tests, fuzzing, tools).
#[derive(Clone, Debug, Default)]
pub struct MemSegments<'a> {
    segments: Vec<(Lsn, &'a [u8])>,
}

impl<'a> MemSegments<'a> {
    /// Segments given as `(first LSN, image)`, in any order; a repeated LSN keeps the
    /// last image.
    pub fn new(segments: impl IntoIterator<Item = (Lsn, &'a [u8])>) -> MemSegments<'a> {
        let mut segments: Vec<_> = segments.into_iter().collect();
        segments.reverse();
        segments.sort_by_key(|s| s.0);
        segments.dedup_by_key(|s| s.0);
        MemSegments { segments }
    }
}

impl SegmentSource for MemSegments<'_> {
    fn list(&mut self) -> Result<Vec<Lsn>, WalError> {
        Ok(self.segments.iter().map(|s| s.0).collect())
    }

    fn read(&mut self, id: Lsn, buf: &mut Vec<u8>, limit: u64) -> Result<(), WalError> {
        let image = self
            .segments
            .iter()
            .find(|s| s.0 == id)
            .map(|s| s.1)
            .ok_or_else(|| {
                WalError::io(
                    format!("segment {id:020}"),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
        if image.len() as u64 > limit {
            return Err(too_large(id, image.len() as u64, limit));
        }
        buf.clear();
        buf.extend_from_slice(image);
        Ok(())
    }
}

pub(crate) fn too_large(id: Lsn, len: u64, limit: u64) -> WalError {
    WalError::io(
        format!("segment {id:020} is {len} B, more than the {limit} B limit"),
        std::io::ErrorKind::InvalidData.into(),
    )
}

/// What is wrong at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The segment header did not decode.
    Header(HeaderProblem),
    /// The segment header names another first LSN than the file name.
    NameMismatch {
        /// The LSN in the header.
        header_lsn: Lsn,
    },
    /// The bytes are not a valid frame.
    Frame(FrameProblem),
    /// A valid frame with another LSN than the next expected one.
    UnexpectedLsn {
        /// The LSN found.
        found: Lsn,
    },
    /// A valid frame of a kind that cannot come here (a `Middle` with no `First`, ...).
    UnexpectedKind(FrameKind),
    /// A record longer than the configured maximum.
    RecordTooLarge {
        /// The maximum.
        max: usize,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Header(p) => write!(f, "{p}"),
            Damage::NameMismatch { header_lsn } => {
                write!(
                    f,
                    "segment header says first LSN {header_lsn}, unlike its name"
                )
            }
            Damage::Frame(p) => write!(f, "{p}"),
            Damage::UnexpectedLsn { found } => write!(f, "frame with LSN {found}"),
            Damage::UnexpectedKind(k) => write!(f, "unexpected {} frame", k.name()),
            Damage::RecordTooLarge { max } => {
                write!(f, "record longer than the {max} B maximum")
            }
        }
    }
}

/// How bad a [`Corruption`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Nothing after the damage proves that any record from `expected_lsn` on was durable:
    /// a torn write.
    TornTail,
    /// A later batch proves that `expected_lsn` was durable: durable data is damaged.
    MidLog {
        /// Where the proof is: a batch sealed after `expected_lsn` was durable.
        proof_segment: Lsn,
        /// Its offset.
        proof_offset: u64,
    },
    /// Only padding was damaged: reading continued with `expected_lsn` right after it.
    NothingLost,
}

/// Damage found by recovery: where, what, and what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The segment (its first LSN).
    pub segment: Lsn,
    /// Byte offset in the segment file.
    pub offset: u64,
    /// The LSN that was expected there.
    pub expected_lsn: Lsn,
    /// What is wrong.
    pub damage: Damage,
    /// What it means.
    pub severity: Severity,
    /// In [`RecoveryMode::SkipCorrupted`], the LSN reading resumed at (records from
    /// `expected_lsn` below it are lost).
    pub resumed_at: Option<Lsn>,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.severity {
            Severity::TornTail => "torn tail",
            Severity::MidLog { .. } => "corruption in the middle of the log",
            Severity::NothingLost => "damaged padding",
        };
        write!(
            f,
            "{what}: segment {:020} offset {}: {} (expected LSN {})",
            self.segment, self.offset, self.damage, self.expected_lsn
        )?;
        if let Severity::MidLog {
            proof_segment,
            proof_offset,
        } = self.severity
        {
            write!(
                f,
                "; the batch at segment {proof_segment:020} offset {proof_offset} was sealed \
                 after LSN {} was durable",
                self.expected_lsn
            )?;
        }
        if let Some(lsn) = self.resumed_at {
            write!(f, "; skipped to LSN {lsn}")?;
        }
        Ok(())
    }
}

/// How the log ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Zero-filled or stale bytes after the last batch, or the end of the file.
    Clean,
    /// A torn write at the end; it is cut off by the repair.
    Torn(Corruption),
    /// [`RecoveryMode::PointInTime`] stopped at corruption; everything after is cut off.
    Cut(Corruption),
}

/// How to repair the directory so that new appends continue cleanly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Cut segment `.0` down to `.1` bytes (the end of its last whole record).
    pub cut: Option<(Lsn, u64)>,
    /// Delete these segments: they lie wholly past the end of the log.
    pub delete: Vec<Lsn>,
}

impl Repair {
    /// Whether nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.cut.is_none() && self.delete.is_empty()
    }
}

/// At most this many skipped-damage entries are kept in a report; the count goes on.
pub const MAX_REPORTED_SKIPS: usize = 1024;

/// What a complete scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The mode used.
    pub mode: RecoveryMode,
    /// The first LSN of the log (the name of its first segment), or the next LSN if the
    /// log is empty.
    pub first_lsn: Lsn,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// Whole records checked (yielded or below `from`).
    pub records: u64,
    /// Segment files in the directory.
    pub segments: usize,
    /// How the log ended.
    pub tail: Tail,
    /// Damage skipped ([`RecoveryMode::SkipCorrupted`]) or found harmless, oldest first
    /// (at most [`MAX_REPORTED_SKIPS`]).
    pub skipped: Vec<Corruption>,
    /// How many were skipped in all.
    pub skipped_count: u64,
    /// What must be done before appending.
    pub repair: Repair,
}

/// A record borrowed from the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its bytes.
    pub payload: &'a [u8],
    /// The segment holding its first frame.
    pub segment: Lsn,
    /// The offset of its first frame in that segment.
    pub offset: u64,
    /// The stored CRC of its first frame (for a one-frame record, the record's CRC).
    pub crc: u32,
}

/// An owned record, from the [`Iterator`] impl of [`LogReader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// A valid frame found by the look-ahead.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    seg: usize,
    off: usize,
    lsn: Lsn,
}

#[derive(Default)]
struct LookAhead {
    /// The first frame, in log order, that can start a record at or above the expected LSN.
    first: Option<Candidate>,
    /// A frame whose watermark is above the expected LSN.
    proof: Option<Candidate>,
}

enum Found {
    Image { start: usize, end: usize },
    Assembled,
}

enum Phase {
    Fresh,
    Reading,
    Done,
}

enum Failure {
    Corrupt(Corruption),
    Io(String, std::io::ErrorKind),
}

/// Reads the log in LSN order: a lending reader ([`LogReader::next_record`]) and an
/// [`Iterator`] of owned records; [`LogReader::finish`] gives the report.
pub struct LogReader<S: SegmentSource> {
    src: S,
    opts: ReadOptions,
    ids: Vec<Lsn>,
    cur: usize,
    image: Vec<u8>,
    scratch: Vec<u8>,
    header: Option<SegmentHeader>,
    pos: usize,
    stop: Lsn,
    expected: Lsn,
    asm: Vec<u8>,
    asm_start: Option<usize>,
    last_good: (usize, usize),
    phase: Phase,
    failure: Option<Failure>,
    report: RecoveryReport,
    rec_offset: usize,
    rec_crc: u32,
    asm_crc: u32,
}

impl<S: SegmentSource> LogReader<S> {
    /// A reader over `src`; nothing is read until the first call.
    pub fn new(src: S, opts: ReadOptions) -> LogReader<S> {
        LogReader {
            src,
            opts,
            ids: Vec::new(),
            cur: 0,
            image: Vec::new(),
            scratch: Vec::new(),
            header: None,
            pos: 0,
            stop: Lsn::MAX,
            expected: 1,
            asm: Vec::new(),
            asm_start: None,
            last_good: (0, 0),
            phase: Phase::Fresh,
            failure: None,
            report: RecoveryReport {
                mode: opts.mode,
                first_lsn: 1,
                next_lsn: 1,
                records: 0,
                segments: 0,
                tail: Tail::Clean,
                skipped: Vec::new(),
                skipped_count: 0,
                repair: Repair::default(),
            },
            rec_offset: 0,
            rec_crc: 0,
            asm_crc: 0,
        }
    }

    /// The next record at or above `from`, borrowed until the next call; `Ok(None)` at the
    /// end of the log. After an error, every later call returns `Ok(None)`.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, WalError> {
        let found = match self.advance() {
            Ok(f) => f,
            Err(e) => {
                self.phase = Phase::Done;
                return Err(e);
            }
        };
        let Some(found) = found else { return Ok(None) };
        let payload = match found {
            Found::Image { start, end } => &self.image[start..end],
            Found::Assembled => &self.asm[..],
        };
        Ok(Some(RecordRef {
            lsn: self.expected - 1,
            payload,
            segment: self.ids[self.cur],
            offset: self.rec_offset as u64,
            crc: self.rec_crc,
        }))
    }

    /// Reads to the end and returns the report, or the error that stopped the scan.
    pub fn finish(mut self) -> Result<RecoveryReport, WalError> {
        loop {
            match self.advance() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break,
            }
        }
        match self.failure {
            Some(Failure::Corrupt(c)) => Err(WalError::Corrupt(c)),
            Some(Failure::Io(ctx, kind)) => Err(WalError::io(ctx, kind.into())),
            None => Ok(self.report),
        }
    }

    fn fail_io(&mut self, e: WalError) -> WalError {
        let (ctx, kind) = match &e {
            WalError::Io { context, source } => (context.clone(), source.kind()),
            other => (other.to_string(), std::io::ErrorKind::Other),
        };
        self.failure = Some(Failure::Io(ctx, kind));
        self.phase = Phase::Done;
        e
    }

    fn fail_corrupt(&mut self, c: Corruption) -> WalError {
        self.failure = Some(Failure::Corrupt(c));
        self.phase = Phase::Done;
        WalError::Corrupt(c)
    }

    fn start(&mut self) -> Result<(), WalError> {
        self.ids = self.src.list().map_err(|e| self.fail_io(e))?;
        self.report.segments = self.ids.len();
        let Some(&first) = self.ids.first() else {
            self.phase = Phase::Done;
            return Ok(());
        };
        self.report.first_lsn = first;
        self.report.next_lsn = first;
        let start = self
            .ids
            .iter()
            .rposition(|&id| id <= self.opts.from)
            .unwrap_or(0);
        self.expected = self.ids[start];
        self.last_good = (start, 0);
        self.phase = Phase::Reading;
        self.enter(start)
    }

    /// Loads segment `idx` as the current one, positioned at its first frame.
    fn enter(&mut self, idx: usize) -> Result<(), WalError> {
        let id = self.ids[idx];
        self.src
            .read(id, &mut self.image, self.opts.max_segment_bytes)
            .map_err(|e| self.fail_io(e))?;
        self.cur = idx;
        self.stop = self.ids.get(idx + 1).copied().unwrap_or(Lsn::MAX);
        self.asm_start = None;
        match SegmentHeader::decode(&self.image) {
            Ok(h) if h.first_lsn == id => {
                self.header = Some(h);
                self.pos = SEGMENT_HEADER_LEN;
                self.last_good = (idx, SEGMENT_HEADER_LEN);
                Ok(())
            }
            decoded => {
                self.header = None;
                self.pos = 0;
                let damage = match decoded {
                    Ok(h) => Damage::NameMismatch {
                        header_lsn: h.first_lsn,
                    },
                    Err(p) => Damage::Header(p),
                };
                self.on_damage(0, damage)
            }
        }
    }

    /// Moves to the next record; `Ok(None)` at the end.
    fn advance(&mut self) -> Result<Option<Found>, WalError> {
        loop {
            match self.phase {
                Phase::Done => {
                    self.report.next_lsn = self.expected.max(self.report.next_lsn);
                    return Ok(None);
                }
                Phase::Fresh => {
                    self.start()?;
                    continue;
                }
                Phase::Reading => {}
            }
            if self.asm_start.is_none() && self.expected >= self.stop {
                // The next segment starts here; anything left in this one is superseded.
                self.enter(self.cur + 1)?;
                continue;
            }
            // `enter` leaves no header only after `on_damage` has ended the scan or moved
            // to another segment; should that ever not hold, end rather than loop.
            let Some(header) = self.header else {
                self.end(Tail::Clean);
                continue;
            };
            let pos = self.pos;
            let frame = match decode_frame(&self.image, pos, header.signature) {
                Ok(f) => f,
                Err(p) => {
                    self.on_damage(pos, Damage::Frame(p))?;
                    continue;
                }
            };
            let h = frame.header;
            let span = h.span();
            let payload_start = pos + FRAME_HEADER_LEN;
            let payload_end = payload_start + h.len as usize;
            if h.lsn != self.expected {
                self.on_damage(pos, Damage::UnexpectedLsn { found: h.lsn })?;
                continue;
            }
            let max = self.opts.max_record;
            let assembling = self.asm_start.is_some();
            let done = match (h.kind, assembling) {
                (FrameKind::Full, false) => {
                    if h.len as usize > max {
                        self.on_damage(pos, Damage::RecordTooLarge { max })?;
                        continue;
                    }
                    self.asm_crc = h.crc;
                    Some((
                        pos,
                        Found::Image {
                            start: payload_start,
                            end: payload_end,
                        },
                    ))
                }
                (FrameKind::First, false) | (FrameKind::Middle, true) | (FrameKind::Last, true) => {
                    let had = if assembling { self.asm.len() } else { 0 };
                    if had + h.len as usize > max {
                        self.on_damage(pos, Damage::RecordTooLarge { max })?;
                        continue;
                    }
                    if !assembling {
                        self.asm.clear();
                        self.asm_start = Some(pos);
                        self.asm_crc = h.crc;
                    }
                    self.asm
                        .extend_from_slice(&self.image[payload_start..payload_end]);
                    if h.kind == FrameKind::Last {
                        let start = self.asm_start.take().unwrap_or(pos);
                        Some((start, Found::Assembled))
                    } else {
                        None
                    }
                }
                (FrameKind::Padding, false) => {
                    self.pos = pos + span;
                    self.last_good = (self.cur, self.pos);
                    None
                }
                (kind, _) => {
                    self.on_damage(pos, Damage::UnexpectedKind(kind))?;
                    continue;
                }
            };
            if h.kind != FrameKind::Padding {
                self.pos = pos + span;
            }
            if let Some((start, found)) = done {
                self.expected += 1;
                self.report.records += 1;
                self.last_good = (self.cur, self.pos);
                if h.lsn >= self.opts.from {
                    self.rec_offset = start;
                    self.rec_crc = self.asm_crc;
                    return Ok(Some(found));
                }
            }
        }
    }

    /// Handles damage at `pos` of the current segment (see the module docs).
    fn on_damage(&mut self, pos: usize, damage: Damage) -> Result<(), WalError> {
        let e = self.expected;
        let seg = self.ids[self.cur];
        let mut c = Corruption {
            segment: seg,
            offset: pos as u64,
            expected_lsn: e,
            damage,
            severity: Severity::TornTail,
            resumed_at: None,
        };
        let look = self.look_ahead(pos)?;
        let header_with_data = self.header.is_none() && self.has_frames_after(0);
        if let Some(first) = look.first.filter(|f| f.lsn == e) {
            c.severity = Severity::NothingLost;
            if self.opts.mode == RecoveryMode::AbsoluteConsistency {
                return Err(self.fail_corrupt(c));
            }
            tracing::warn!("ringfort-wal recovery: {c}");
            self.note_skip(c);
            return self.jump(first);
        }
        if let Some(proof) = look.proof {
            c.severity = Severity::MidLog {
                proof_segment: self.ids[proof.seg],
                proof_offset: proof.off as u64,
            };
        } else if header_with_data {
            c.severity = Severity::MidLog {
                proof_segment: seg,
                proof_offset: 0,
            };
        }
        match (c.severity, self.opts.mode) {
            (Severity::MidLog { .. }, RecoveryMode::SkipCorrupted) => match look.first {
                Some(first) => {
                    c.resumed_at = Some(first.lsn);
                    tracing::warn!("ringfort-wal recovery: {c}");
                    self.note_skip(c);
                    self.expected = first.lsn;
                    self.jump(first)
                }
                None => self.end_cut(c),
            },
            (Severity::MidLog { .. }, RecoveryMode::PointInTime) => self.end_cut(c),
            (Severity::MidLog { .. }, _) => Err(self.fail_corrupt(c)),
            _ => {
                let clean = look.first.is_none() && self.tail_is_clean(pos);
                if clean {
                    self.end(Tail::Clean);
                    Ok(())
                } else if self.opts.mode == RecoveryMode::AbsoluteConsistency {
                    Err(self.fail_corrupt(c))
                } else {
                    tracing::warn!("ringfort-wal recovery: {c}; cutting the log there");
                    self.end(Tail::Torn(c));
                    Ok(())
                }
            }
        }
    }

    fn note_skip(&mut self, c: Corruption) {
        self.report.skipped_count += 1;
        if self.report.skipped.len() < MAX_REPORTED_SKIPS {
            self.report.skipped.push(c);
        }
    }

    fn end_cut(&mut self, c: Corruption) -> Result<(), WalError> {
        tracing::warn!("ringfort-wal recovery: {c}; stopping there (point in time)");
        self.end(Tail::Cut(c));
        Ok(())
    }

    /// Ends the scan at the last whole record and plans the repair.
    fn end(&mut self, tail: Tail) {
        let (seg, off) = self.last_good;
        self.report.tail = tail;
        if !matches!(tail, Tail::Clean) {
            self.report.repair.cut = Some((self.ids[seg], off as u64));
        }
        self.report.repair.delete = self.ids[seg + 1..].to_vec();
        self.asm_start = None;
        self.phase = Phase::Done;
    }

    /// Continues reading at a look-ahead candidate.
    fn jump(&mut self, to: Candidate) -> Result<(), WalError> {
        self.asm_start = None;
        if to.seg != self.cur {
            self.enter(to.seg)?;
        }
        self.pos = to.off;
        Ok(())
    }

    /// Whether the bytes from `pos` to the end of the (last) segment are a clean end.
    fn tail_is_clean(&self, pos: usize) -> bool {
        if self.asm_start.is_some() || self.cur + 1 != self.ids.len() {
            return false;
        }
        match self.header {
            None => !self.has_frames_after(0),
            Some(h) if h.recyclable() => {
                peek_lsn(&self.image, pos).is_none_or(|lsn| lsn < h.first_lsn)
            }
            Some(_) => self
                .image
                .get(pos..)
                .is_none_or(|r| r.iter().all(|&b| b == 0)),
        }
    }

    /// Whether any page boundary of the current image after the header holds frame magic.
    fn has_frames_after(&self, pos: usize) -> bool {
        let mut off = page_align_up(pos.max(SEGMENT_HEADER_LEN) as u64) as usize;
        while off < self.image.len() {
            if has_frame_magic(&self.image, off) {
                return true;
            }
            off += PAGE;
        }
        false
    }

    /// Looks for valid frames after `pos` in this segment and in the later ones.
    fn look_ahead(&mut self, pos: usize) -> Result<LookAhead, WalError> {
        let e = self.expected;
        let mut out = LookAhead::default();
        if let Some(h) = self.header {
            scan(
                &self.image,
                h.signature,
                pos + 1,
                self.stop,
                e,
                self.cur,
                &mut out,
            );
        }
        let mut j = self.cur + 1;
        while j < self.ids.len() && (out.first.is_none() || out.proof.is_none()) {
            let id = self.ids[j];
            if let Err(err) = self
                .src
                .read(id, &mut self.scratch, self.opts.max_segment_bytes)
            {
                return Err(self.fail_io(err));
            }
            if let Ok(h) = SegmentHeader::decode(&self.scratch) {
                if h.first_lsn == id {
                    let stop = self.ids.get(j + 1).copied().unwrap_or(Lsn::MAX);
                    scan(
                        &self.scratch,
                        h.signature,
                        SEGMENT_HEADER_LEN,
                        stop,
                        e,
                        j,
                        &mut out,
                    );
                }
            }
            j += 1;
        }
        Ok(out)
    }
}

/// Checks every page boundary at or after `from` of one segment image for valid frames.
fn scan(
    image: &[u8],
    signature: u64,
    from: usize,
    stop: Lsn,
    expected: Lsn,
    seg: usize,
    out: &mut LookAhead,
) {
    let mut off = page_align_up(from as u64) as usize;
    while off.saturating_add(FRAME_HEADER_LEN) <= image.len() {
        if has_frame_magic(image, off) {
            if let Ok(f) = decode_frame(image, off, signature) {
                let h = f.header;
                let starts_record = matches!(
                    h.kind,
                    FrameKind::Full | FrameKind::First | FrameKind::Padding
                );
                if out.first.is_none() && starts_record && h.lsn >= expected && h.lsn < stop {
                    out.first = Some(Candidate {
                        seg,
                        off,
                        lsn: h.lsn,
                    });
                }
                if out.proof.is_none() && h.watermark > expected {
                    out.proof = Some(Candidate {
                        seg,
                        off,
                        lsn: h.lsn,
                    });
                }
                if out.first.is_some() && out.proof.is_some() {
                    return;
                }
            }
        }
        off += PAGE;
    }
}

impl<S: SegmentSource> Iterator for LogReader<S> {
    type Item = Result<Record, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
            .map(|r| {
                r.map(|r| Record {
                    lsn: r.lsn,
                    payload: r.payload.to_vec(),
                })
            })
            .transpose()
    }
}
