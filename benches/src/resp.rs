//! The `resp` suite: the Ringfort RESP server (`engine/examples/resp-server`) beside
//! redis-server 7, both driven by the same redis-benchmark binary.
//!
//! - **ours**: the `resp-server` example, built by this suite with `cargo build --release
//!   -p ringfort --example resp-server` (so it is never stale), started per trial as
//!   `resp-server --port P --dir DIR/data --cores 2 --durability none` for the plain cases
//!   and `--durability sync` for the durable ones, in a fresh directory on a real disk
//!   ([`crate::sys::DataDir`]). It is ready when it prints its `listening on` line; it is
//!   stopped with SIGTERM.
//! - **redis-server** (plain cases): `redis-server --port P --bind 127.0.0.1 --save ''
//!   --appendonly no --daemonize no --dir DIR`: no persistence at all.
//! - **redis-server appendfsync always** (durable cases): `redis-server --port P --bind
//!   127.0.0.1 --save '' --appendonly yes --appendfsync always --daemonize no --dir DIR`:
//!   an fsync of the append-only file before replies leave.
//!
//! Every case runs one `redis-benchmark -h 127.0.0.1 -p P -c C -n N -P X -d D -t OP
//! --precision 3` per trial and side, the same options for both servers; C is 50, except
//! in the sweep of durable SET -P1 64 B over 1, 10, 50 and 200 clients that the report's
//! plot draws (those case names end in `-cC`). Before it, a warm-up
//! run of SETs with the same options writes the single key both tests use
//! (`key:__rand_int__`: no `-r`, so one key), and a GET checks the key holds a D-byte
//! value (so a GET case never measures a miss). The figure is redis-benchmark's own
//! requests/s, and its latency summary and percentile distribution (its own HDR
//! histogram) give p50, p99, p999 and max. Around the measured run the suite reads the server's CPU time (utime +
//! stime of every thread, `/proc/PID/stat`) and reports it per million requests, and the
//! load generator's own CPU time (`wait4`), to show when redis-benchmark, not the server,
//! is the limit. Nothing is pinned, for either server.
//!
//! Trials alternate the servers (rotating which goes first), each with a fresh server and
//! data directory, and each side's median and spread are reported. A peer that cannot run
//! (redis-server missing, or failing) is left out with the reason; ours failing drops the
//! case with a reproduction. redis-benchmark missing drops every case.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::peers;
use crate::plots;
use crate::progress::{self, Progress};
use crate::report::{Dropped, Row, SuiteReport, Sweep};
use crate::stats::{Latency, Trials};
use crate::sys::{self, DataDir};
use crate::{BoxError, RunOpts};

const SUITE: &str = "resp";
const OURS: &str = "ours";
const REDIS: &str = "redis-server";
const REDIS_ALWAYS: &str = "redis-server appendfsync always";

/// redis-benchmark's connections, for every server, except in the clients sweep.
const CLIENTS: usize = 50;
/// The clients sweep of durable SET -P1 64 B that the report's plot draws.
const SWEEP_CLIENTS: [usize; 4] = [1, 10, CLIENTS, 200];
/// The shards (cores) ours runs.
const OURS_CORES: usize = 2;
/// The one key redis-benchmark's SET and GET use without `-r`.
const KEY: &str = "key:__rand_int__";
/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The share of the machine's CPUs other processes used, just before or after a case,
/// above which a row says it was disturbed by other work.
const DISTURBED: f64 = 0.15;
/// How long other processes are watched before and after a case.
const QUIET_CHECK: Duration = Duration::from_millis(300);
/// redis-benchmark is single-threaded: from this share of one core it limits requests/s.
const LOADGEN_BOUND: f64 = 0.9;
/// Lines of a server's log quoted when it fails.
const LOG_TAIL: usize = 12;

// ---------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Get,
}

impl Op {
    /// The name in case names and redis-benchmark's CSV.
    fn upper(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Get => "GET",
        }
    }

    /// The `-t` argument.
    fn test(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    op: Op,
    pipeline: u32,
    size: usize,
    /// Ours under `--durability sync` against redis-server with `appendfsync always`.
    durable: bool,
    /// redis-benchmark's connections (`-c`).
    clients: usize,
    /// Requests per measured run, quick and full.
    n_quick: usize,
    n_full: usize,
}

impl Case {
    fn size_name(&self) -> String {
        if self.size >= 1024 && self.size % 1024 == 0 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        }
    }

    /// "durable SET -P1 64 B"; a client count other than [`CLIENTS`] adds " -cN".
    fn name(&self) -> String {
        let mut n = format!(
            "{}{} -P{} {}",
            if self.durable { "durable " } else { "" },
            self.op.upper(),
            self.pipeline,
            self.size_name()
        );
        if self.clients != CLIENTS {
            n.push_str(&format!(" -c{}", self.clients));
        }
        n
    }

    /// The row's place in the durable-SET clients sweep, when it is in it.
    fn sweep(&self) -> Option<Sweep> {
        (self.durable && self.op == Op::Set && self.pipeline == 1 && self.size == 64).then_some(
            Sweep {
                plot: plots::DURABLE_CLIENTS,
                x: self.clients as f64,
                y_scale: 1.0,
            },
        )
    }

    fn peer(&self) -> Kind {
        if self.durable {
            Kind::RedisAlways
        } else {
            Kind::Redis
        }
    }

    fn n(&self, quick: bool) -> usize {
        if quick {
            self.n_quick
        } else {
            self.n_full
        }
    }

    /// SETs of the warm-up run, which also writes the key a GET case reads.
    fn warmup_n(&self, quick: bool) -> usize {
        (self.n(quick) / 10).max(500)
    }
}

fn cases() -> Vec<Case> {
    let c = |op, pipeline, size, durable, n_quick, n_full| Case {
        op,
        pipeline,
        size,
        durable,
        clients: CLIENTS,
        n_quick,
        n_full,
    };
    let mut cases = vec![
        c(Op::Set, 1, 64, false, 40_000, 160_000),
        c(Op::Get, 1, 64, false, 40_000, 160_000),
        c(Op::Set, 16, 64, false, 400_000, 1_600_000),
        c(Op::Get, 16, 64, false, 400_000, 1_600_000),
        c(Op::Set, 1, 64 << 10, false, 15_000, 60_000),
        c(Op::Get, 1, 64 << 10, false, 15_000, 60_000),
        c(Op::Set, 16, 64 << 10, false, 15_000, 60_000),
        c(Op::Get, 16, 64 << 10, false, 15_000, 60_000),
        c(Op::Set, 1, 64, true, 10_000, 40_000),
        c(Op::Set, 16, 64, true, 200_000, 800_000),
    ];
    // The rest of the clients sweep: requests in proportion to the clients, so that each
    // run takes about as long as the -c50 one.
    for clients in SWEEP_CLIENTS.into_iter().filter(|&c| c != CLIENTS) {
        let n_quick = (clients * 200).max(3_000);
        cases.push(Case {
            clients,
            ..c(Op::Set, 1, 64, true, n_quick, 4 * n_quick)
        });
    }
    cases
}

struct Plan {
    quick: bool,
    trials: usize,
    /// The longest one redis-benchmark run may take before it is killed.
    run_timeout: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                trials: 1,
                run_timeout: Duration::from_secs(30),
            }
        } else {
            Plan {
                quick,
                trials: 5,
                run_timeout: Duration::from_secs(180),
            }
        }
    }
}

/// A target of the RESP-server issue, checked against the medians (reported, never
/// asserted).
fn targets(case: &Case) -> (Option<f64>, Option<f64>) {
    // (minimum requests/s ratio ours/peer, maximum CPU-per-request ratio ours/peer)
    if case.clients != CLIENTS {
        return (None, None);
    }
    match (case.durable, case.pipeline) {
        (true, 1) => (Some(3.0), None),
        (true, _) => (Some(2.0), None),
        (false, 1) => (Some(1.5), Some(0.5)),
        (false, _) => (Some(1.2), None),
    }
}

// ---------------------------------------------------------------------------------------
// Tools

/// The binaries the suite drives.
struct Tools {
    ours: PathBuf,
    bench_version: String,
    /// `redis-server --version`, or why it cannot run.
    redis: Result<String, String>,
}

/// Builds the resp-server example in release mode and returns the binary's path.
fn build_ours() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the benches crate has no parent directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    progress::say(
        SUITE,
        "building ours: cargo build --release -p ringfort --example resp-server",
    );
    let out = Command::new(&cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "ringfort",
            "--example",
            "resp-server",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "building the resp-server example failed ({}): {}",
            out.status,
            tail(&err, LOG_TAIL)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "resp-server")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built resp-server but named no executable".to_string())
}

// ---------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    Redis,
    RedisAlways,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => OURS,
            Kind::Redis => REDIS,
            Kind::RedisAlways => REDIS_ALWAYS,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Redis => "redis",
            Kind::RedisAlways => "redis-always",
        }
    }

    /// The server's command line (program, arguments) for `port` and directory `dir`.
    fn command(
        self,
        tools: &Tools,
        durable: bool,
        port: u16,
        dir: &Path,
    ) -> (PathBuf, Vec<String>) {
        let port = port.to_string();
        let dir = dir.display().to_string();
        match self {
            Kind::Ours => (
                tools.ours.clone(),
                vec![
                    "--port".into(),
                    port,
                    "--dir".into(),
                    format!("{dir}/data"),
                    "--cores".into(),
                    OURS_CORES.to_string(),
                    "--durability".into(),
                    if durable { "sync" } else { "none" }.into(),
                ],
            ),
            Kind::Redis | Kind::RedisAlways => {
                let mut args: Vec<String> = vec![
                    "--port".into(),
                    port,
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--save".into(),
                    String::new(),
                ];
                if self == Kind::RedisAlways {
                    args.extend(
                        ["--appendonly", "yes", "--appendfsync", "always"].map(String::from),
                    );
                } else {
                    args.extend(["--appendonly", "no"].map(String::from));
                }
                args.extend(["--daemonize".into(), "no".into(), "--dir".into(), dir]);
                (PathBuf::from("redis-server"), args)
            }
        }
    }
}

/// A command line as a shell would take it.
fn shell_line(program: &Path, args: &[String]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        if a.is_empty() {
            s.push_str(" ''");
        } else {
            s.push(' ');
            s.push_str(a);
        }
    }
    s
}

/// The last `n` lines of `text`, joined with ` | `.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A server's log file as text, without terminal colours.
fn read_log(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an ANSI escape: ESC [ ... letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            clean.push(c);
        }
    }
    clean
}

/// The last lines of a server's log file.
fn log_tail(path: &Path) -> String {
    let t = tail(&read_log(path), LOG_TAIL);
    if t.is_empty() {
        "(its log is empty)".into()
    } else {
        format!("its log ends: {t}")
    }
}

/// Ours' WARN and ERROR log lines (tracing's level column), the first few and a count.
fn log_problems(path: &Path) -> Option<String> {
    let log = read_log(path);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let first: Vec<String> = bad
        .iter()
        .take(3)
        .map(|l| l.trim().chars().take(300).collect())
        .collect();
    Some(format!(
        "{} WARN/ERROR line(s) in its log, first: {}",
        bad.len(),
        first.join(" | ")
    ))
}

/// A running server process, killed when dropped.
struct ServerProc {
    kind: Kind,
    child: Child,
    port: u16,
    log: PathBuf,
    /// Ours' `listening on` line.
    banner: Option<String>,
    stdout: Option<JoinHandle<()>>,
    /// The command line, for reproductions.
    line: String,
}

impl ServerProc {
    fn start(kind: Kind, tools: &Tools, durable: bool, dir: &Path) -> Result<ServerProc, String> {
        let port = free_port()?;
        let (program, args) = kind.command(tools, durable, port, dir);
        let line = shell_line(&program, &args);
        let log = dir.join("server.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("duplicating a log descriptor: {e}"))?;
        let mut cmd = Command::new(&program);
        cmd.args(&args).stdin(Stdio::null()).stderr(log_err);
        if kind == Kind::Ours {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log_file);
        }
        let mut child = cmd.spawn().map_err(|e| format!("starting `{line}`: {e}"))?;
        let mut banner = None;
        let mut stdout = None;
        if let Some(out) = child.stdout.take() {
            let (tx, rx) = mpsc::channel::<String>();
            let h = std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let _ = tx.send(first);
                // Keep draining, so the server never blocks on a full pipe.
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
            });
            let first = rx.recv_timeout(START_TIMEOUT);
            let failure = match &first {
                Ok(l) if l.contains("listening on") => None,
                Ok(l) => Some(format!("did not start (its stdout: {:?})", l.trim())),
                Err(_) => Some(format!("printed no line in {} s", START_TIMEOUT.as_secs())),
            };
            if let Some(what) = failure {
                let _ = child.kill();
                let status = child.wait().map_or("?".to_string(), |s| s.to_string());
                let _ = h.join();
                return Err(format!(
                    "`{line}` {what}, exit: {status}; {}",
                    log_tail(&log)
                ));
            }
            banner = first.ok().map(|l| l.trim().to_string());
            stdout = Some(h);
        }
        let mut server = ServerProc {
            kind,
            child,
            port,
            log,
            banner,
            stdout,
            line,
        };
        server.wait_ping()?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls PING until `+PONG` (redis-server has no ready line on stdout).
    fn wait_ping(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "`{}` exited with {status} before answering PING; {}",
                    self.line,
                    log_tail(&self.log)
                ));
            }
            match ping(self.port) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "`{}` did not answer PING in {} s (last: {last}); {}",
            self.line,
            START_TIMEOUT.as_secs(),
            log_tail(&self.log)
        ))
    }

    /// Fails when the server has exited.
    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}) during the run; {}",
                self.kind.name(),
                log_tail(&self.log)
            )),
            _ => Ok(()),
        }
    }

    /// Stops the server with SIGTERM; an error says how it did not stop cleanly.
    fn stop(mut self) -> Result<(), String> {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status: Result<ExitStatus, String> = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break Err(format!(
                        "did not exit within {} s of SIGTERM and was killed",
                        STOP_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => break Err(format!("waiting for it: {e}")),
            }
        };
        if let Some(h) = self.stdout.take() {
            let _ = h.join();
        }
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!(
                "{} exited with {s} after SIGTERM; {}",
                self.kind.name(),
                log_tail(&self.log)
            )),
            Err(e) => Err(format!("{} {e}; {}", self.kind.name(), log_tail(&self.log))),
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts a server, picking a new port when another process took the free one first.
fn start_with_retry(
    kind: Kind,
    tools: &Tools,
    durable: bool,
    dir: &Path,
) -> Result<ServerProc, String> {
    let mut attempt = 0;
    loop {
        match ServerProc::start(kind, tools, durable, dir) {
            Err(e) if attempt < 2 && e.contains("in use") => attempt += 1,
            other => return other,
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// A RESP command as bytes.
fn resp_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    Ok(s)
}

fn ping(port: u16) -> Result<(), String> {
    let mut s = connect(port)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    s.write_all(&resp_cmd(&[b"PING"]))
        .map_err(|e| format!("PING: {e}"))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("PING reply: {e}"))?;
    if line == "+PONG\r\n" {
        Ok(())
    } else {
        Err(format!("PING answered {line:?}"))
    }
}

/// Checks that the benchmark's key holds a `size`-byte value, as redis-benchmark's SET
/// writes it (redis-benchmark 7 fills it with its own pseudo-random bytes).
fn check_value(port: u16, size: usize) -> Result<(), String> {
    let mut s = connect(port)?;
    s.write_all(&resp_cmd(&[b"GET", KEY.as_bytes()]))
        .map_err(|e| format!("GET {KEY}: {e}"))?;
    let mut r = BufReader::new(s);
    let mut header = String::new();
    r.read_line(&mut header)
        .map_err(|e| format!("GET {KEY} reply: {e}"))?;
    let want = format!("${size}\r\n");
    if header != want {
        return Err(format!(
            "GET {KEY} after the warm-up SETs answered {:?}, not a {size} B value",
            header.chars().take(80).collect::<String>()
        ));
    }
    let mut body = vec![0u8; size + 2];
    r.read_exact(&mut body)
        .map_err(|e| format!("GET {KEY} value: {e}"))?;
    if &body[size..] != b"\r\n" {
        return Err(format!(
            "GET {KEY}: the {size} B value is not followed by CRLF"
        ));
    }
    Ok(())
}

/// A process's CPU time so far (utime + stime of all its threads), in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sectors (512 B) written so far to the block device holding `path`, from
/// `/proc/diskstats`; `None` when the device is not listed there.
fn disk_sectors_written(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[0].parse::<u32>().ok()? != major || f[1].parse::<u32>().ok()? != minor
        {
            return None;
        }
        f[9].parse().ok()
    })
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

// ---------------------------------------------------------------------------------------
// redis-benchmark

/// What one redis-benchmark run reported.
struct BenchOut {
    figures: Figures,
    wall: Duration,
    /// redis-benchmark's own CPU time (user + system), from `wait4`.
    cpu: Duration,
    /// Anything it wrote to stderr.
    stderr: String,
}

fn bench_args(port: u16, case: &Case, n: usize, test: &str) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-c".into(),
        case.clients.to_string(),
        "-n".into(),
        n.to_string(),
        "-P".into(),
        case.pipeline.to_string(),
        "-d".into(),
        case.size.to_string(),
        "-t".into(),
        test.into(),
        "--precision".into(),
        "3".into(),
    ]
}

/// Runs redis-benchmark once, killing it after `timeout`.
fn redis_benchmark(
    port: u16,
    case: &Case,
    n: usize,
    op: Op,
    timeout: Duration,
) -> Result<BenchOut, String> {
    let args = bench_args(port, case, n, op.test());
    let line = shell_line(Path::new("redis-benchmark"), &args);
    let start = Instant::now();
    let mut child = Command::new("redis-benchmark")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting `{line}`: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let reader = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let mut b = Vec::new();
                let _ = r.read_to_end(&mut b);
                s = String::from_utf8_lossy(&b).into_owned();
            }
            s
        })
    };
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
    );
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
    );
    // Reaped with wait4 (for its rusage), never through `child`.
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: `status` and `usage` are live and writable; `pid` is our unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("waiting for redis-benchmark: {e}"));
        }
        if !timed_out && start.elapsed() > timeout {
            timed_out = true;
            // SAFETY: sends a signal to our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = start.elapsed();
    drop(child);
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if timed_out {
        return Err(format!(
            "`{line}` did not finish {n} requests within {} s and was killed (stdout: {}; \
             stderr: {})",
            timeout.as_secs(),
            tail(&stdout, 3),
            tail(&stderr, 3)
        ));
    }
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !exited_ok {
        return Err(format!(
            "`{line}` failed (wait status {status:#x}): stdout: {}; stderr: {}",
            tail(&stdout, 3),
            tail(&stderr, 5)
        ));
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let figures = parse_report(&stdout, op.upper()).map_err(|e| {
        format!(
            "`{line}`: {e} (stdout: {}; stderr: {})",
            tail(&stdout, 4),
            tail(&stderr, 4)
        )
    })?;
    Ok(BenchOut {
        figures,
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        stderr,
    })
}

/// What redis-benchmark printed for one test.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Figures {
    /// Its "throughput summary", requests per second.
    rps: f64,
    /// p50, p99 and max from its "latency summary", in ms.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The first line of its "Latency by percentile distribution" at or above 99.9%, in
    /// ms: redis-benchmark prints its HDR histogram at halving steps (..., 99.805%,
    /// 99.902%, ...), so this is the 99.902nd percentile, a bound on p999 from above.
    p999_ms: f64,
}

/// The figures of `test` from redis-benchmark's full (not `--csv`, not `-q`) report:
///
/// ```text
/// ====== SET ======
/// Latency by percentile distribution:
/// 50.000% <= 0.679 milliseconds (cumulative count 10033)
/// 99.902% <= 4.271 milliseconds (cumulative count 19981)
/// Summary:
///   throughput summary: 47058.82 requests per second
///   latency summary (msec):
///           avg       min       p50       p95       p99       max
///         0.695     0.200     0.679     0.991     1.111     4.487
/// ```
fn parse_report(text: &str, test: &str) -> Result<Figures, String> {
    // Progress lines end in carriage returns; the report follows the test's banner.
    let banner = format!("====== {test} ======");
    let at = text
        .find(&banner)
        .ok_or_else(|| format!("no `{banner}` in the output"))?;
    let lines: Vec<&str> = text[at..]
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let number = |s: &str, what: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{what} is not a number: {s:?}"))
    };
    let rps = lines
        .iter()
        .find_map(|l| l.strip_prefix("throughput summary:"))
        .ok_or("no `throughput summary` line")?
        .split_whitespace()
        .next()
        .ok_or("an empty `throughput summary` line")?;
    let rps = number(rps, "the throughput")?;
    if rps <= 0.0 {
        return Err(format!("redis-benchmark reports {rps} requests/s"));
    }
    let head = lines
        .iter()
        .position(|l| l.starts_with("avg") && l.contains("p99"))
        .ok_or("no `latency summary` header")?;
    let names: Vec<&str> = lines[head].split_whitespace().collect();
    let values: Vec<&str> = lines
        .get(head + 1)
        .ok_or("no `latency summary` values")?
        .split_whitespace()
        .collect();
    let col = |name: &str| -> Result<f64, String> {
        let i = names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("no `{name}` in the latency summary"))?;
        number(
            values.get(i).ok_or("a short latency summary row")?,
            &format!("the latency summary's {name}"),
        )
    };
    let p999_ms = lines
        .iter()
        .filter_map(|l| {
            let (pct, rest) = l.split_once("% <= ")?;
            let pct: f64 = pct.parse().ok()?;
            let ms: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((pct, ms))
        })
        .find(|&(pct, _)| pct >= 99.9)
        .map(|(_, ms)| ms)
        .ok_or("no percentile line at or above 99.9% in the latency distribution")?;
    Ok(Figures {
        rps,
        p50_ms: col("p50")?,
        p99_ms: col("p99")?,
        max_ms: col("max")?,
        p999_ms,
    })
}

// ---------------------------------------------------------------------------------------
// One trial

/// What one trial of one side measured.
struct TrialOut {
    rps: f64,
    cpu_s_per_m: Option<f64>,
    server_cores: Option<f64>,
    bench_cores: f64,
    /// MB/s the data directory's disk took in writes during the run (every process's).
    disk_mb_s: Option<f64>,
    /// redis-benchmark's latency figures of the measured run.
    latency: Figures,
    requests: u64,
    banner: Option<String>,
    /// Things a reader should know that did not invalidate the figure.
    odd: Vec<String>,
}

fn one_trial(
    kind: Kind,
    tools: &Tools,
    data: &DataDir,
    plan: &Plan,
    case: &Case,
    trial: usize,
) -> Result<TrialOut, String> {
    let dir = data
        .fresh(&format!("{}-{}", kind.slug(), trial))
        .map_err(|e| format!("making a data directory: {e}"))?;
    let mut server = start_with_retry(kind, tools, case.durable, &dir)?;
    let n = case.n(plan.quick);
    let repro = |server: &ServerProc, what: String| -> String {
        format!(
            "{what} [reproduce: `{}`, wait for it to answer PING, then `{}` and `{}`]",
            server.line,
            shell_line(
                Path::new("redis-benchmark"),
                &bench_args(server.port, case, case.warmup_n(plan.quick), "set")
            ),
            shell_line(
                Path::new("redis-benchmark"),
                &bench_args(server.port, case, n, case.op.test())
            )
        )
    };
    let mut odd = Vec::new();
    // Warm-up: the same options, SETs, which also write the key GET reads.
    let warm = redis_benchmark(
        server.port,
        case,
        case.warmup_n(plan.quick),
        Op::Set,
        plan.run_timeout,
    )
    .map_err(|e| repro(&server, format!("warm-up: {e}")))?;
    if !warm.stderr.trim().is_empty() {
        odd.push(format!(
            "redis-benchmark wrote to stderr in the warm-up against {}: {}",
            kind.name(),
            tail(&warm.stderr, 3)
        ));
    }
    server.alive().map_err(|e| repro(&server, e))?;
    check_value(server.port, case.size).map_err(|e| repro(&server, e))?;

    let pid = server.pid();
    let disk0 = disk_sectors_written(&dir);
    let cpu0 = proc_cpu_ticks(pid);
    let run = redis_benchmark(server.port, case, n, case.op, plan.run_timeout);
    let cpu1 = proc_cpu_ticks(pid);
    let disk1 = disk_sectors_written(&dir);
    let run = run.map_err(|e| repro(&server, e))?;
    server.alive().map_err(|e| repro(&server, e))?;
    check_value(server.port, case.size)
        .map_err(|e| repro(&server, format!("after the run: {e}")))?;
    if !run.stderr.trim().is_empty() {
        odd.push(format!(
            "redis-benchmark wrote to stderr against {}: {}",
            kind.name(),
            tail(&run.stderr, 3)
        ));
    }
    let banner = server.banner.clone();
    let log = server.log.clone();
    if let Err(e) = server.stop() {
        odd.push(format!("stopping: {e}"));
    }
    if kind == Kind::Ours {
        odd.extend(log_problems(&log));
    }
    let cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clock_ticks_per_sec()),
        _ => None,
    };
    let wall = run.wall.as_secs_f64();
    Ok(TrialOut {
        rps: run.figures.rps,
        cpu_s_per_m: cpu_s.map(|c| c / n as f64 * 1e6),
        server_cores: cpu_s.map(|c| c / wall),
        bench_cores: run.cpu.as_secs_f64() / wall,
        disk_mb_s: match (disk0, disk1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 512.0 / 1e6 / wall),
            _ => None,
        },
        latency: run.figures,
        requests: n as u64,
        banner,
        odd,
    })
}

// ---------------------------------------------------------------------------------------
// One case

struct Side {
    kind: Kind,
    rps: Trials,
    cpu_s_per_m: Trials,
    server_cores: Trials,
    bench_cores: Trials,
    disk_mb_s: Trials,
    /// Per trial: p50, p99, p999 in ms; the largest max; requests in all.
    p50: Trials,
    p99: Trials,
    p999: Trials,
    max_ms: f64,
    requests: u64,
    failed: Option<String>,
    banner: Option<String>,
    odd: Vec<String>,
}

impl Side {
    fn new(kind: Kind) -> Side {
        Side {
            kind,
            rps: Trials::new(),
            cpu_s_per_m: Trials::new(),
            server_cores: Trials::new(),
            bench_cores: Trials::new(),
            disk_mb_s: Trials::new(),
            p50: Trials::new(),
            p99: Trials::new(),
            p999: Trials::new(),
            max_ms: 0.0,
            requests: 0,
            failed: None,
            banner: None,
            odd: Vec::new(),
        }
    }

    /// The latency percentiles of the trials so far, labelled with the side's name.
    fn latency(&self) -> Option<(String, Latency)> {
        let us = |t: &Trials| t.summary().map(|s| s.median * 1000.0);
        Some((
            self.kind.name().to_string(),
            Latency {
                p50_us: us(&self.p50)?,
                p99_us: us(&self.p99)?,
                p999_us: us(&self.p999)?,
                max_us: self.max_ms * 1000.0,
                samples: self.requests,
            },
        ))
    }

    fn push(&mut self, o: TrialOut) {
        self.rps.push(o.rps);
        if let Some(c) = o.cpu_s_per_m {
            self.cpu_s_per_m.push(c);
        }
        if let Some(c) = o.server_cores {
            self.server_cores.push(c);
        }
        self.bench_cores.push(o.bench_cores);
        if let Some(d) = o.disk_mb_s {
            self.disk_mb_s.push(d);
        }
        self.p50.push(o.latency.p50_ms);
        self.p99.push(o.latency.p99_ms);
        self.p999.push(o.latency.p999_ms);
        self.max_ms = self.max_ms.max(o.latency.max_ms);
        self.requests += o.requests;
        if self.banner.is_none() {
            self.banner = o.banner;
        }
        for x in o.odd {
            if !self.odd.contains(&x) && self.odd.len() < 5 {
                self.odd.push(x);
            }
        }
    }
}

/// A note when the machine was busy with other work just before or just after a case.
fn quiet_note(before: Option<f64>, after: Option<f64>) -> Option<String> {
    let worst = before.unwrap_or(0.0).max(after.unwrap_or(0.0));
    (worst > DISTURBED).then(|| {
        format!(
            "DISTURBED: other processes used {:.0}% of the machine's CPUs just before this \
             case and {:.0}% just after ({} ms each), so other work shared the CPUs and these \
             figures are not clean",
            before.unwrap_or(0.0) * 100.0,
            after.unwrap_or(0.0) * 100.0,
            QUIET_CHECK.as_millis()
        )
    })
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn run_case(tools: &Tools, data: &DataDir, plan: &Plan, case: &Case) -> Result<Row, String> {
    let name = case.name();
    let peer_kind = case.peer();
    let mut sides = vec![Side::new(Kind::Ours), Side::new(peer_kind)];
    if let Err(why) = &tools.redis {
        sides[1].failed = Some(why.clone());
    }
    let before = sys::others_busy(QUIET_CHECK);
    let progress = Progress::start(SUITE, &name, plan.trials);
    for trial in 0..plan.trials {
        let k = sides.len();
        for i in 0..k {
            let side = &mut sides[(i + trial) % k];
            if side.failed.is_some() {
                continue;
            }
            match one_trial(side.kind, tools, data, plan, case, trial) {
                Ok(o) => side.push(o),
                Err(e) => {
                    eprintln!();
                    progress::say(SUITE, &format!("{name}: {} failed: {e}", side.kind.name()));
                    side.failed = Some(e);
                }
            }
        }
        progress.trial();
    }
    progress.finish();
    let after = sys::others_busy(QUIET_CHECK);

    if let Some(why) = &sides[0].failed {
        return Err(format!("ours (the resp-server example) failed: {why}"));
    }
    let ours = sides[0].rps.summary().ok_or("no trial of ours ran")?;
    let peer = &sides[1];
    let mut peers = Vec::new();
    let mut peers_not_run = Vec::new();
    match (&peer.failed, peer.rps.summary()) {
        (Some(why), _) => peers_not_run.push((peer.kind.name().to_string(), why.clone())),
        (None, Some(s)) => peers.push((peer.kind.name().to_string(), s)),
        (None, None) => peers_not_run.push((peer.kind.name().to_string(), "no trial ran".into())),
    }

    let mut extra = Vec::new();
    for s in &sides {
        let label = s.kind.name();
        let mut add = |key: String, t: &Trials| {
            if let Some(sum) = t.summary() {
                extra.push((key, sum));
            }
        };
        add(format!("cpu_s_per_M {label}"), &s.cpu_s_per_m);
        add(format!("server cores busy {label}"), &s.server_cores);
        add(
            format!("redis-benchmark cores busy vs {label}"),
            &s.bench_cores,
        );
        add(format!("disk write MB/s {label}"), &s.disk_mb_s);
    }

    let n = case.n(plan.quick);
    let mut notes = vec![format!(
        "requests/s: redis-benchmark's own figure for `redis-benchmark -h 127.0.0.1 -p P -c \
         {} -n {n} -P {} -d {} -t {} --precision 3` (the same binary and options for both \
         servers; one key, {KEY}, as without -r), after a warm-up of {} SETs with the same \
         options that also writes the key, checked by a GET to hold a {} B value; a fresh \
         server and data directory per trial; servers alternate, rotating which goes \
         first; {} trial(s); nothing pinned",
        case.clients,
        case.pipeline,
        case.size,
        case.op.test(),
        case.warmup_n(plan.quick),
        case.size,
        plan.trials
    )];
    let ours_line = shell_line(
        &tools.ours,
        &Kind::Ours
            .command(tools, case.durable, 0, Path::new("DIR"))
            .1,
    )
    .replace("--port 0", "--port P");
    let peer_line = shell_line(
        Path::new("redis-server"),
        &peer_kind
            .command(tools, case.durable, 0, Path::new("DIR"))
            .1,
    )
    .replace("--port 0", "--port P");
    notes.push(format!(
        "one key: every request names {KEY}, so in ours one shard (of {OURS_CORES}) owns, \
         executes and logs every request, and requests arriving on a connection of the \
         other core go to it through the engine's cross-core channel and back; the \
         benchmark's default, kept for both servers"
    ));
    if case.durable {
        notes.push(format!(
            "ours: `{ours_line}`: a SET is acknowledged after its write-ahead-log group \
             commit is synced to the device (fdatasync); {}: `{peer_line}`: the \
             append-only file is fsynced before replies leave; both write to the same \
             disk-backed directory",
            peer_kind.name()
        ));
    } else {
        notes.push(format!(
            "ours: `{ours_line}`: every SET is still appended to the shard's write-ahead \
             log (written to the kernel without waiting, never synced, so sustained large \
             SETs meet page-cache writeback; background checkpoints), replies do not wait \
             for it; {}: `{peer_line}`: no persistence at all (no RDB, no AOF)",
            peer_kind.name()
        ));
    }
    notes.push(format!(
        "cpu_s_per_M: the server process's CPU seconds (utime + stime of all its threads, \
         /proc/PID/stat, clock ticks of 1/{} s, so +-1 tick per reading) across the \
         measured run, per million requests; server cores busy = that CPU time / the run's wall time; \
         redis-benchmark cores busy = its own CPU time (wait4) / the wall time; disk \
         write MB/s = what the data directory's block device took in writes during the \
         run (/proc/diskstats, every process's, page-cache writeback included)",
        clock_ticks_per_sec()
    ));
    let med = |t: &Trials| t.summary().map(|s| s.median);
    let ours_cpu = med(&sides[0].cpu_s_per_m);
    let peer_cpu = med(&peer.cpu_s_per_m);
    if let (Some(o), Some(p)) = (ours_cpu, peer_cpu) {
        let mut s = format!(
            "per server CPU-second (1e6 / cpu_s_per_M, medians): ours {:.0} requests, {} \
             {:.0} requests: ours uses {:.2}x the CPU per request ({:.2}x the requests per \
             core)",
            1e6 / o,
            peer.kind.name(),
            1e6 / p,
            o / p,
            p / o
        );
        if case.pipeline > 1 {
            let peer_cores = med(&peer.server_cores).unwrap_or(0.0);
            let state = if peer_cores >= LOADGEN_BOUND {
                "saturates one core"
            } else {
                "can use at most about one core"
            };
            s.push_str(&format!(
                "; at -P{} redis-server's single command thread {state} (here {peer_cores:.2} \
                 cores busy) while ours spreads over {OURS_CORES} shards, so this per-core \
                 figure is the fair comparison",
                case.pipeline
            ));
        }
        notes.push(s);
    }
    if let Some(p) = peers.first() {
        let adv = ours.median / p.1.median;
        let (rps_target, cpu_target) = targets(case);
        let mut t = String::from("targets (RESP-server issue):");
        if let Some(min) = rps_target {
            let _ = write!(
                t,
                " requests/s >= {min}x {}: measured {adv:.2}x, {};",
                p.0,
                verdict(adv >= min)
            );
        }
        if let (Some(max), Some(o), Some(pc)) = (cpu_target, ours_cpu, peer_cpu) {
            let r = o / pc;
            let _ = write!(
                t,
                " CPU per request <= {max}x {}'s: measured {r:.2}x, {};",
                p.0,
                verdict(r <= max)
            );
        }
        if !t.ends_with(':') {
            notes.push(t.trim_end_matches(';').to_string());
        }
    }
    let bound: Vec<String> = sides
        .iter()
        .filter_map(|s| {
            let c = med(&s.bench_cores)?;
            (c >= LOADGEN_BOUND)
                .then(|| format!("against {}: {:.0}% of a core", s.kind.name(), c * 100.0))
        })
        .collect();
    if !bound.is_empty() {
        notes.push(format!(
            "LOAD-GENERATOR-BOUND: redis-benchmark (one thread) was busy {}, so requests/s \
             is capped by it as much as by the server; compare by cpu_s_per_M as well",
            bound.join(", ")
        ));
    }
    notes.push(
        "latency: redis-benchmark's own HDR histogram (request sent to reply read, per \
         connection; at -P16 per pipeline of 16): p50 and p99 from its latency summary, \
         p999 as the first line of its percentile distribution at or above 99.9% (it prints \
         halving steps, so the 99.902nd percentile: a bound from above), max the largest of \
         the trials; with several trials, the median of each percentile across them"
            .to_string(),
    );
    notes.push(data.note.clone());
    if let Some(b) = &sides[0].banner {
        notes.push(format!("ours said: {b}"));
    }
    if let Ok(v) = &tools.redis {
        notes.push(format!("{v}; {}", tools.bench_version));
    }
    if let Some(n) = quiet_note(before, after) {
        progress::say(SUITE, &format!("{name}: {n}"));
        notes.push(n);
    }
    for s in &sides {
        for o in &s.odd {
            progress::say(SUITE, &format!("{name}: ODD ({}): {o}", s.kind.name()));
            notes.push(format!("ODD ({}): {o}", s.kind.name()));
        }
    }
    Ok(Row {
        suite: SUITE,
        case: name,
        metric: "requests/s",
        higher_is_better: true,
        ours,
        peers,
        peers_not_run,
        notes,
        latency: sides.iter().filter_map(Side::latency).collect(),
        extra,
        sweep: case.sweep(),
    })
}

/// Runs the suite.
pub fn run(opts: &RunOpts) -> Result<SuiteReport, BoxError> {
    let plan = Plan::new(opts.quick);
    let cases = cases();
    let bench_version = match peers::version_of(&peers::REDIS_BENCHMARK) {
        Ok(v) => v,
        Err(why) => {
            progress::say(SUITE, &format!("no case can run: {why}"));
            return Ok(SuiteReport {
                suite: SUITE,
                rows: Vec::new(),
                dropped: cases
                    .iter()
                    .map(|c| Dropped {
                        case: c.name(),
                        reason: format!("the load generator cannot run: {why}"),
                    })
                    .collect(),
            });
        }
    };
    let redis = peers::version_of(&peers::REDIS_SERVER);
    match &redis {
        Ok(v) if !v.contains("v=7.") => progress::say(
            SUITE,
            &format!("note: the contract names redis-server 7, this is: {v}"),
        ),
        Ok(_) => {}
        Err(why) => progress::say(SUITE, &format!("the redis-server peers cannot run: {why}")),
    }
    let ours = build_ours()?;
    let tools = Tools {
        ours,
        bench_version,
        redis,
    };
    let data = DataDir::new(SUITE)?;
    progress::say(SUITE, &data.note);
    let mut rows = Vec::new();
    let mut dropped = Vec::new();
    for case in &cases {
        match run_case(&tools, &data, &plan, case) {
            Ok(row) => rows.push(row),
            Err(reason) => {
                progress::say(SUITE, &format!("{}: NOT MEASURED: {reason}", case.name()));
                dropped.push(Dropped {
                    case: case.name(),
                    reason,
                });
            }
        }
    }
    Ok(SuiteReport {
        suite: SUITE,
        rows,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names() {
        let names: Vec<String> = cases().iter().map(Case::name).collect();
        assert_eq!(
            names,
            [
                "SET -P1 64 B",
                "GET -P1 64 B",
                "SET -P16 64 B",
                "GET -P16 64 B",
                "SET -P1 64 KiB",
                "GET -P1 64 KiB",
                "SET -P16 64 KiB",
                "GET -P16 64 KiB",
                "durable SET -P1 64 B",
                "durable SET -P16 64 B",
                "durable SET -P1 64 B -c1",
                "durable SET -P1 64 B -c10",
                "durable SET -P1 64 B -c200",
            ]
        );
        let sweep: Vec<f64> = cases()
            .iter()
            .filter_map(|c| c.sweep().map(|s| s.x))
            .collect();
        assert_eq!(sweep, [50.0, 1.0, 10.0, 200.0]);
        assert_eq!(targets(&cases()[10]), (None, None), "no target off -c50");
    }

    #[test]
    fn parses_redis_benchmark_reports() {
        // redis-benchmark 7.0.15's output, trimmed: progress lines end in \r.
        let text = "SET: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r\
                    SET: rps=47812.8 (overall: 47434.8) avg_msec=0.695\r\
                    ====== SET ======\n  20000 requests completed in 0.43 seconds\n\
                    \nLatency by percentile distribution:\n\
                    0.000% <= 0.207 milliseconds (cumulative count 4)\n\
                    50.000% <= 0.679 milliseconds (cumulative count 10033)\n\
                    99.805% <= 2.919 milliseconds (cumulative count 19961)\n\
                    99.902% <= 4.271 milliseconds (cumulative count 19981)\n\
                    100.000% <= 4.487 milliseconds (cumulative count 20000)\n\
                    \nCumulative distribution of latencies:\n\
                    0.000% <= 0.103 milliseconds (cumulative count 0)\n\
                    \nSummary:\n  throughput summary: 47058.82 requests per second\n\
                    \x20 latency summary (msec):\n\
                    \x20         avg       min       p50       p95       p99       max\n\
                    \x20       0.695     0.200     0.679     0.991     1.111     4.487\n";
        assert_eq!(
            parse_report(text, "SET").unwrap(),
            Figures {
                rps: 47058.82,
                p50_ms: 0.679,
                p99_ms: 1.111,
                max_ms: 4.487,
                p999_ms: 4.271,
            }
        );
        assert!(parse_report(text, "GET")
            .unwrap_err()
            .contains("====== GET"));
        assert!(parse_report("", "SET").is_err());
        let no_summary = &text[..text.find("Summary").unwrap()];
        assert!(parse_report(no_summary, "SET").is_err());
    }

    #[test]
    fn own_cpu_ticks_are_readable() {
        assert!(proc_cpu_ticks(std::process::id()).is_some());
        assert!(clock_ticks_per_sec() > 0.0);
    }

    #[test]
    fn redis_command_lines() {
        let tools = Tools {
            ours: PathBuf::from("resp-server"),
            bench_version: String::new(),
            redis: Ok(String::new()),
        };
        let (p, a) = Kind::RedisAlways.command(&tools, true, 7000, Path::new("/d"));
        assert_eq!(
            shell_line(&p, &a),
            "redis-server --port 7000 --bind 127.0.0.1 --save '' --appendonly yes \
             --appendfsync always --daemonize no --dir /d"
        );
        let (p, a) = Kind::Ours.command(&tools, false, 7000, Path::new("/d"));
        assert_eq!(
            shell_line(&p, &a),
            "resp-server --port 7000 --dir /d/data --cores 2 --durability none"
        );
    }
}
