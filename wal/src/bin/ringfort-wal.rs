//! `ringfort-wal`: inspect, check and repair a Ringfort write-ahead log directory.
//!
//! - `stat DIR`: segments, record count, LSN range, how the log ends.
//! - `dump DIR [--from LSN] [--limit N] [--payload]`: one line per record (LSN, length,
//!   CRC, segment, offset), optionally the payload in hex.
//! - `verify DIR [--strict]`: reads everything, naming every damaged offset; exits 1 on
//!   corruption in the middle of the log (with `--strict`, on any damage, a torn tail
//!   included).
//! - `truncate DIR [--mode M]`: cuts a torn tail (what opening the log would do);
//!   `truncate DIR --prefix LSN` removes whole segments below `LSN`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringfort_wal::file::{list_segments, Dir, DirSegments, StdDir};
use ringfort_wal::format::{segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use ringfort_wal::segment::{apply_repair, truncate_prefix};
use ringfort_wal::{
    Corruption, LogReader, ReadOptions, RecoveryMode, RecoveryReport, Severity, Tail, WalError,
    MAX_SEGMENT_LIMIT,
};

#[derive(Parser)]
#[command(
    name = "ringfort-wal",
    version,
    about = "Inspect, check and repair a Ringfort WAL"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Segments, records, LSN range and tail state.
    Stat {
        /// The log directory.
        dir: PathBuf,
    },
    /// Print records: LSN, length, CRC, segment and offset.
    Dump {
        /// The log directory.
        dir: PathBuf,
        /// First LSN to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Also print each payload in hex.
        #[arg(long)]
        payload: bool,
    },
    /// Check every record; exit 1 on corruption, naming the offsets.
    Verify {
        /// The log directory.
        dir: PathBuf,
        /// Treat any damage, a torn tail included, as failure.
        #[arg(long)]
        strict: bool,
    },
    /// Cut a torn tail, or with --prefix remove whole segments below an LSN.
    Truncate {
        /// The log directory.
        dir: PathBuf,
        /// Remove segments whose records all lie below this LSN.
        #[arg(long)]
        prefix: Option<u64>,
        /// Recovery mode deciding where the log ends: tolerate-tail, absolute,
        /// point-in-time or skip.
        #[arg(long, default_value = "tolerate-tail", value_parser = parse_mode)]
        mode: RecoveryMode,
    },
}

fn parse_mode(s: &str) -> Result<RecoveryMode, String> {
    RecoveryMode::parse(s)
        .ok_or_else(|| format!("unknown mode {s:?}: tolerate-tail, absolute, point-in-time, skip"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringfort-wal: {e}");
            ExitCode::from(2)
        }
    }
}

fn open_dir(dir: &PathBuf) -> Result<StdDir, WalError> {
    if !dir.is_dir() {
        return Err(WalError::io(
            format!("opening {}", dir.display()),
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    StdDir::open(dir, false)
}

fn reader(dir: &StdDir, mode: RecoveryMode, from: u64) -> LogReader<DirSegments<'_, StdDir>> {
    LogReader::new(
        DirSegments(dir),
        ReadOptions {
            mode,
            from,
            max_segment_bytes: MAX_SEGMENT_LIMIT,
            ..ReadOptions::default()
        },
    )
}

fn run(cmd: Cmd) -> Result<ExitCode, WalError> {
    match cmd {
        Cmd::Stat { dir } => stat(&open_dir(&dir)?),
        Cmd::Dump {
            dir,
            from,
            limit,
            payload,
        } => dump(&open_dir(&dir)?, from, limit, payload),
        Cmd::Verify { dir, strict } => verify(&open_dir(&dir)?, strict),
        Cmd::Truncate { dir, prefix, mode } => truncate(&open_dir(&dir)?, prefix, mode),
    }
}

fn stat(dir: &StdDir) -> Result<ExitCode, WalError> {
    let mut buf = Vec::new();
    for id in list_segments(dir)? {
        let name = segment_file_name(id);
        dir.read(&name, &mut buf, MAX_SEGMENT_LIMIT)
            .map_err(|e| WalError::io(format!("reading {name}"), e))?;
        match SegmentHeader::decode(&buf) {
            Ok(h) => println!(
                "segment {name} bytes {} first_lsn {} signature {:#018x} flags {:#x}",
                buf.len(),
                h.first_lsn,
                h.signature,
                h.flags
            ),
            Err(p) => println!("segment {name} bytes {} header damaged: {p}", buf.len()),
        }
    }
    let report = reader(dir, RecoveryMode::SkipCorrupted, 0).finish()?;
    print_summary(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &RecoveryReport) {
    println!(
        "segments {} records {} first_lsn {} next_lsn {}",
        r.segments, r.records, r.first_lsn, r.next_lsn
    );
    match r.tail {
        Tail::Clean => println!("tail clean"),
        Tail::Torn(c) => println!("tail torn: {c}"),
        Tail::Cut(c) => println!("tail cut: {c}"),
    }
    for c in &r.skipped {
        println!("damage: {c}");
    }
    if r.skipped_count > r.skipped.len() as u64 {
        println!(
            "... {} more damaged regions",
            r.skipped_count - r.skipped.len() as u64
        );
    }
}

fn dump(dir: &StdDir, from: u64, limit: Option<u64>, payload: bool) -> Result<ExitCode, WalError> {
    let mut r = reader(dir, RecoveryMode::TolerateCorruptedTail, from);
    let mut n = 0u64;
    while let Some(rec) = r.next_record()? {
        if limit.is_some_and(|l| n >= l) {
            break;
        }
        println!(
            "lsn {} len {} crc {:#010x} segment {:020} offset {}",
            rec.lsn,
            rec.payload.len(),
            rec.crc,
            rec.segment,
            rec.offset
        );
        if payload {
            println!("  {}", hex(rec.payload));
        }
        n += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn verify(dir: &StdDir, strict: bool) -> Result<ExitCode, WalError> {
    let mut headers_bad = 0;
    let mut buf = Vec::new();
    for id in list_segments(dir)? {
        let name = segment_file_name(id);
        dir.read(&name, &mut buf, MAX_SEGMENT_LIMIT)
            .map_err(|e| WalError::io(format!("reading {name}"), e))?;
        if buf.len() >= SEGMENT_HEADER_LEN {
            if let Err(p) = SegmentHeader::decode(&buf) {
                println!("segment {name}: header damaged: {p}");
                headers_bad += 1;
            }
        }
    }
    let report = reader(dir, RecoveryMode::SkipCorrupted, 0).finish()?;
    print_summary(&report);
    let mid_log = |c: &Corruption| matches!(c.severity, Severity::MidLog { .. });
    let corrupt = report.skipped.iter().any(mid_log) || matches!(report.tail, Tail::Cut(_));
    let damaged = corrupt
        || headers_bad > 0
        || report.skipped_count > 0
        || !matches!(report.tail, Tail::Clean);
    if corrupt || (strict && damaged) {
        println!("verify: FAILED");
        Ok(ExitCode::from(1))
    } else {
        println!("verify: ok");
        Ok(ExitCode::SUCCESS)
    }
}

fn truncate(dir: &StdDir, prefix: Option<u64>, mode: RecoveryMode) -> Result<ExitCode, WalError> {
    if let Some(lsn) = prefix {
        let n = truncate_prefix(dir, lsn, 0)?;
        println!("removed {n} segment(s) below LSN {lsn}");
        return Ok(ExitCode::SUCCESS);
    }
    let report = reader(dir, mode, 0).finish()?;
    print_summary(&report);
    if report.repair.is_empty() {
        println!("nothing to cut");
    } else {
        apply_repair(dir, &report.repair)?;
        if let Some((seg, len)) = report.repair.cut {
            println!("cut segment {seg:020} to {len} B");
        }
        for id in &report.repair.delete {
            println!("removed segment {id:020}");
        }
    }
    println!("next_lsn {}", report.next_lsn);
    Ok(ExitCode::SUCCESS)
}
