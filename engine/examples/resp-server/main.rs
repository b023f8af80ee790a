//! # The Ringfort RESP server
//!
//! A durable, sharded Redis-protocol (RESP2) server on the ringfort engine: the main job
//! people run, and the yardstick against redis-server.
//!
//! ## How a command flows
//!
//! 1. A connection's bytes arrive in a [`ringfort::pool::BufChain`]; [`protocol::Parser`]
//!    splits whole commands off it, arguments as chains (values are never copied into a
//!    contiguous buffer).
//! 2. Each command reserves a reply slot on its connection (ordered pipelining), then runs
//!    on the core that owns its key: locally, or through the engine's cross-core channel.
//!    Multi-key commands split by shard and gather.
//! 3. The owning shard copies small arguments into its own arena, refuses a write that
//!    may grow memory with Redis's OOM error once its share of `--maxmemory` is used, and
//!    runs the command against its [`db::Db`] ([`commands::execute`]). A write yields a
//!    deterministic log record, appended to the shard's write-ahead log.
//! 4. Under `--durability sync` the reply waits until the record's group commit is synced;
//!    then it goes back to the connection's core and leaves in request order.
//! 5. Each shard checkpoints its keyspace in the background (temp file, fsync, rename,
//!    directory fsync) and truncates its log; a restart loads the checkpoint and replays
//!    the log after it.
//!
//! ```sh
//! cargo run --release -p ringfort --example resp-server -- --port 6380
//! ```

mod commands;
mod db;
mod glob;
mod protocol;
mod reply;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ringfort::{Engine, EngineConfig};

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// After its write-ahead-log batch is synced to the device.
    Sync,
    /// After its batch is written to the kernel (survives a process crash, not a power cut).
    Buffered,
    /// Logged without waiting (a crash may lose the last moments).
    None,
}

/// A durable, sharded Redis-protocol server on the Ringfort io_uring engine.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// TCP port; 0 picks a free one (the "listening on" line names it).
    #[arg(long, default_value_t = 6380)]
    pub port: u16,
    /// Address to listen on (loopback by default, as Redis's protected mode intends).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Data directory: one write-ahead log and checkpoint per shard.
    #[arg(long, default_value = "./ringfort-data")]
    pub dir: PathBuf,
    /// Cores (shards) to run; the data directory remembers it and refuses another count.
    #[arg(long)]
    pub cores: Option<usize>,
    /// When writes are acknowledged.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,
    /// Require AUTH with this password.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Most clients connected at once (over all cores). Lowered at start, with a
    /// warning, when RLIMIT_NOFILE cannot hold that many besides the log's descriptors.
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,
    /// Largest bulk argument (Redis's proto-max-bulk-len).
    #[arg(long, default_value_t = 512 << 20)]
    pub proto_max_bulk_len: usize,
    /// Checkpoint a shard after this many bytes of log.
    #[arg(long, default_value_t = 64 << 20)]
    pub checkpoint_bytes: u64,
    /// And at least this often, in seconds, when anything changed.
    #[arg(long, default_value_t = 300)]
    pub checkpoint_secs: u64,
    /// Bytes per write-ahead-log segment, preallocated when the segment is created. A
    /// segment must hold the largest batch, so the least accepted is about 70 MiB.
    #[arg(long, default_value_t = 256 << 20)]
    pub wal_segment_size: u64,
    /// Memory for the data, over all cores (Redis's maxmemory, with its units: 512mb,
    /// 4gb, 100kb; k/m/g are powers of 1000). Each core gets an equal share, which caps its
    /// buffer arena (mapped a chunk at a time as it fills) and its keyspace's estimated size
    /// (keys, values and their index, as INFO's used_memory counts them). Writes that may
    /// grow memory are refused with Redis's OOM error once a core's share is nearly used
    /// (the last 1/16 of each buffer class is kept for replies, receives and the log), and
    /// a restart must fit the data into the same budget. Default: 1gb per core.
    #[arg(long, value_parser = parse_size)]
    pub maxmemory: Option<u64>,
    /// Zero-filled spare segments each shard keeps ready (0 to 4): syncs after overwriting
    /// written blocks are cheaper. The first is built at start when none is ready (about
    /// 0.6 s per 256 MiB on a disk doing 450 MB/s), the rest in the background. Each costs a
    /// segment of disk.
    #[arg(long, default_value_t = 1)]
    pub wal_spares: usize,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    let mut config = EngineConfig::default();
    // Small classes so small values are stored compactly (see `server::compact`); the
    // growth cap comes from `--maxmemory` below. Registration falls back (and says so)
    // when RLIMIT_MEMLOCK cannot cover the arena, rather than refusing to start.
    config.pool.classes = [
        (64, 131072),
        (256, 32768),
        (1 << 10, 8192),
        (4 << 10, 4096),
        (16 << 10, 512),
        (64 << 10, 256),
        (1 << 20, 16),
    ]
    .into_iter()
    .map(|(size, count)| ringfort::pool::SizeClass { size, count })
    .collect();
    config.pool.registration = ringfort::pool::Registration::AllowUnregistered;
    let cpus = match args.cores {
        Some(n) => ringfort::cpus_for_cores(n),
        None => ringfort::allowed_cpus(),
    };
    config.cpus = cpus.unwrap_or_else(|e| {
        eprintln!("ringfort resp-server: choosing CPUs: {e}");
        std::process::exit(1);
    });
    let cores = config.cpus.len();
    let maxmemory = args.maxmemory.unwrap_or(cores as u64 * (1 << 30));
    args.maxmemory = Some(maxmemory);
    config.pool.growth = match arena_chunks(&config.pool, maxmemory, cores) {
        Ok(max_chunks) => ringfort::pool::Growth::Chunks { max_chunks },
        Err(e) => {
            eprintln!("ringfort resp-server: {e}");
            std::process::exit(1);
        }
    };
    cap_maxclients(&mut args, cores);
    if let Err(e) = server::prepare_dir(&args.dir, cores) {
        eprintln!("ringfort resp-server: {e}");
        std::process::exit(1);
    }
    // The cores listen with SO_REUSEPORT, which would silently share the port with any
    // other process of this user listening there; a plain bind first refuses that. Port 0
    // is resolved by a reservation held until every core listens.
    let bind = SocketAddr::new(args.bind, args.port);
    let reserved = if args.port == 0 {
        ringfort::reserve_port(bind).map(|(fd, addr)| (Some(fd), addr))
    } else {
        // The probe closes at once: held, it would refuse the cores too.
        std::net::TcpListener::bind(bind).map(|_| (None, bind))
    };
    let (reservation, addr) = match reserved {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringfort resp-server: cannot listen on {bind}: {e}");
            std::process::exit(1);
        }
    };
    args.port = addr.port();
    let shared = Arc::new(server::Shared::new(args.clone(), cores, addr));
    let s2 = Arc::clone(&shared);
    let engine = match Engine::start(config, move |core| {
        server::Server::new(core, Arc::clone(&s2))
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ringfort resp-server: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = shared.wait_ready(Duration::from_secs(600)) {
        eprintln!("ringfort resp-server: {e}");
        engine.stop(Duration::ZERO);
        let _ = engine.wait();
        std::process::exit(1);
    }
    drop(reservation);
    println!(
        "ringfort resp-server listening on {addr}: {cores} cores, memory {} (maxmemory {} MiB), durability {:?}, data in {}",
        shared.backing(),
        maxmemory >> 20,
        args.durability,
        args.dir.display()
    );
    shared.install_signal_stop(&engine);
    match engine.wait() {
        Ok(_) => {}
        Err(e) => {
            eprintln!("ringfort resp-server: {e}");
            std::process::exit(1);
        }
    }
}

/// Parses a size as Redis's configuration does: digits, then an optional unit (`k`,
/// `m`, `g` are powers of 1000; `kb`, `mb`, `gb` powers of 1024; any case).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' (use b, k, kb, m, mb, g or gb)"
            ))
        }
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("'{s}' is not a size in bytes"))
}

/// The growth cap, in arena chunks, that gives each of `cores` cores its share of
/// `maxmemory`; an error when a share is less than one chunk.
fn arena_chunks(
    pool: &ringfort::pool::PoolConfig,
    maxmemory: u64,
    cores: usize,
) -> Result<usize, String> {
    let chunk = pool.chunk_bytes().map_err(|e| e.to_string())? as u64;
    let share = maxmemory / cores as u64;
    let chunks = share / chunk;
    if chunks == 0 {
        return Err(format!(
            "--maxmemory {maxmemory} gives each of the {cores} cores {share} B, less than \
             one {} MiB arena chunk: use at least {}mb",
            chunk >> 20,
            (chunk * cores as u64).div_ceil(1 << 20)
        ));
    }
    let max = ringfort::pool::MAX_CHUNKS as u64;
    if chunks > max {
        return Err(format!(
            "--maxmemory {maxmemory} gives each core {chunks} arena chunks of {} MiB; at \
             most {max} are supported ({}mb over {cores} cores)",
            chunk >> 20,
            (max * chunk * cores as u64) >> 20
        ));
    }
    Ok(chunks as usize)
}

/// Descriptors kept back from clients: the engine's rings and eventfds, each shard's log
/// segments, directory and checkpoint files, and slack for connections being refused.
fn reserved_fds(cores: usize) -> usize {
    32 + 16 * cores
}

/// Lowers `--maxclients` (as Redis does) when RLIMIT_NOFILE, which the engine raises to
/// its hard limit, cannot hold that many clients besides the reserved descriptors: a
/// client flood is then refused with "max number of clients reached" instead of using up
/// the descriptors the write-ahead log needs to create its next segment.
fn cap_maxclients(args: &mut Args, cores: usize) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return;
    }
    let fds = usize::try_from(r.rlim_max).unwrap_or(usize::MAX);
    let room = fds.saturating_sub(reserved_fds(cores)).max(1);
    if args.maxclients > room {
        eprintln!(
            "ringfort resp-server: RLIMIT_NOFILE is {fds}: lowering maxclients from {} to {room} \
             ({} descriptors are kept for the logs and the engine; raise the limit with \
             `ulimit -n` or LimitNOFILE=)",
            args.maxclients,
            reserved_fds(cores)
        );
        args.maxclients = room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_redis_units() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("100kb"), Ok(100 << 10));
        assert_eq!(parse_size("2k"), Ok(2000));
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_size("3g"), Ok(3_000_000_000));
        assert_eq!(parse_size("4gb"), Ok(4 << 30));
        assert!(parse_size("12tb").unwrap_err().contains("unknown unit"));
        assert!(parse_size("").is_err());
        assert!(parse_size("mb").is_err());
        assert!(parse_size("99999999999999999999gb").is_err());
    }

    #[test]
    fn maxmemory_splits_into_whole_chunks_per_core() {
        let pool = ringfort::pool::PoolConfig::default();
        let chunk = pool.chunk_bytes().unwrap() as u64;
        assert_eq!(arena_chunks(&pool, 2 * 5 * chunk + 7, 2), Ok(5));
        let e = arena_chunks(&pool, chunk, 2).unwrap_err();
        assert!(e.contains("less than one"), "{e}");
        assert!(arena_chunks(&pool, 1000 * chunk, 1)
            .unwrap_err()
            .contains("at most"));
    }
}
