//! The echo load generator: one program that drives every echo server the same way.
//!
//! It runs as a child process of the harness (the same binary, started as
//! `ringfort-benches __loadgen ARGS`), pinned to its own CPUs, so it shares neither a
//! process nor a core with the server it drives. Each of its threads owns a share of the
//! connections and one epoll instance (level-triggered, non-blocking sockets,
//! `TCP_NODELAY`).
//!
//! Every connection keeps `window` messages of `size` bytes in flight: it starts by
//! sending `window` messages, and each time a whole message has come back it sends the
//! next. The bytes of message k on connection c are a slice of a fixed pattern chosen by
//! (k, c), so every echoed byte is checked against what was sent; a wrong byte, an early
//! close or a reset is an error. A message's latency runs from the `writev` that starts it
//! to the `read` that completes its echo, recorded in an HDR histogram.
//!
//! Phases: connect every connection (blocking connects, then non-blocking), warm up,
//! measure (the child prints `MEASURE` on stdout when the window opens and `END` when it
//! closes, so the parent can read server counters at the same moments), then stop sending and drain: every message
//! sent must come back within the drain time, or the run reports the connections that
//! are still missing bytes. The child ends by printing one `RESULT {json}` line.

use std::io::{self, BufRead as _, BufReader, IoSlice, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::latency_histogram;
use crate::sys;

/// The first argument that makes the binary a load generator.
pub const ROLE_ARG: &str = "__loadgen";

/// What to run: the same for every server of a case.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The server.
    pub addr: SocketAddr,
    /// Connections in all.
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages each connection keeps in flight.
    pub window: usize,
    /// Load before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
    /// Time allowed after the window for every sent message to come back.
    pub drain: Duration,
    /// CPUs to run on, one thread each (connections are split evenly).
    pub cpus: Vec<usize>,
}

impl Spec {
    fn to_args(&self) -> Vec<String> {
        vec![
            ROLE_ARG.to_string(),
            format!("addr={}", self.addr),
            format!("conns={}", self.conns),
            format!("size={}", self.size),
            format!("window={}", self.window),
            format!("warmup_us={}", self.warmup.as_micros()),
            format!("measure_us={}", self.measure.as_micros()),
            format!("drain_us={}", self.drain.as_micros()),
            format!(
                "cpus={}",
                self.cpus
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ]
    }

    fn from_args(args: &[String]) -> Result<Spec, String> {
        let get = |key: &str| -> Result<&str, String> {
            args.iter()
                .find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| format!("missing {key}="))
        };
        let num = |key: &str| -> Result<u64, String> {
            get(key)?.parse::<u64>().map_err(|e| format!("{key}: {e}"))
        };
        let spec = Spec {
            addr: get("addr")?.parse().map_err(|e| format!("addr: {e}"))?,
            conns: num("conns")? as usize,
            size: num("size")? as usize,
            window: num("window")? as usize,
            warmup: Duration::from_micros(num("warmup_us")?),
            measure: Duration::from_micros(num("measure_us")?),
            drain: Duration::from_micros(num("drain_us")?),
            cpus: get("cpus")?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<usize>().map_err(|e| format!("cpus: {e}")))
                .collect::<Result<_, _>>()?,
        };
        if spec.conns == 0 || spec.size == 0 || spec.window == 0 || spec.cpus.is_empty() {
            return Err("conns, size, window and cpus must be non-zero".into());
        }
        Ok(spec)
    }
}

/// What one run measured, as the child reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Messages whose echo completed inside the measured window.
    pub msgs: u64,
    /// The window's length in seconds.
    pub window_secs: f64,
    /// Latency histogram of those messages: (nanoseconds, count) per recorded bucket.
    pub latency: Vec<(u64, u64)>,
    /// Errors (wrong bytes, early closes, resets, failed connects); empty on a clean run.
    pub errors: Vec<String>,
    /// Connections that completed no message inside the window.
    pub idle_conns: usize,
    /// Connections still missing echoed bytes when the drain time ran out.
    pub undrained_conns: usize,
    /// Threads (one per CPU) it ran.
    pub threads: usize,
}

impl Report {
    /// Messages per second inside the window.
    pub fn msgs_per_sec(&self) -> f64 {
        self.msgs as f64 / self.window_secs
    }

    /// The latency histogram, rebuilt.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = latency_histogram();
        for &(v, c) in &self.latency {
            h.saturating_record_n(v, c);
        }
        h
    }
}

/// Called when the child's measured window opens (for reading server counters).
pub trait Hooks {
    /// The window opened.
    fn window_opened(&mut self);
    /// The window closed.
    fn window_closed(&mut self);
}

/// Runs the load generator as a child process and waits for its report. The child is
/// killed when it has not reported within the phases' time plus `grace`.
pub fn run_child(spec: &Spec, grace: Duration, hooks: &mut dyn Hooks) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the bench binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(spec.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the load generator: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).take(16 << 10).read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + spec.warmup + spec.measure + spec.drain + grace;
    let mut result = Err("the load generator ended without a result".to_string());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "MEASURE" => hooks.window_opened(),
            Ok(line) if line == "END" => hooks.window_closed(),
            Ok(line) => {
                if let Some(json) = line.strip_prefix("RESULT ") {
                    result = serde_json::from_str::<Report>(json)
                        .map_err(|e| format!("the load generator's report: {e}"));
                    break;
                } else if let Some(e) = line.strip_prefix("ERROR ") {
                    result = Err(format!("load generator: {e}"));
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                result = Err(format!(
                    "the load generator did not finish within {:.1} s and was killed (the \
                     server stopped answering?)",
                    (spec.warmup + spec.measure + spec.drain + grace).as_secs_f64()
                ));
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // A child that reported is ending by itself; one that did not is killed above or has
    // exited already.
    let status = child.wait();
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    match (&result, status) {
        (Err(e), Ok(st)) if !st.success() && !stderr.trim().is_empty() => Err(format!(
            "{e}; exit {st}; stderr: {}",
            stderr.trim().lines().last().unwrap_or("")
        )),
        _ => result,
    }
}

// ---------------------------------------------------------------------------------------
// The child

/// The child's entry point: `args` follow [`ROLE_ARG`]. Returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let spec = match Spec::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            println!("ERROR bad arguments: {e}");
            return 2;
        }
    };
    let _ = sys::raise_nofile();
    match run(&spec) {
        Ok(report) => {
            let json = serde_json::to_string(&report).expect("plain data");
            println!("RESULT {json}");
            let _ = io::stdout().flush();
            0
        }
        Err(e) => {
            println!("ERROR {e}");
            let _ = io::stdout().flush();
            1
        }
    }
}

/// The pattern messages are cut from: `size + 256` bytes.
fn pattern(size: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..size + 256)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Where message `k` of connection `conn` starts in the pattern.
fn msg_offset(k: u64, conn: usize) -> usize {
    ((k.wrapping_mul(7)).wrapping_add(conn as u64) % 256) as usize
}

struct Conn {
    id: usize,
    stream: TcpStream,
    /// Bytes written so far.
    tx: u64,
    /// Bytes echoed back so far.
    rx: u64,
    /// Bytes it may have written: (messages completed + window) x size, or `tx` once
    /// sending has stopped.
    allowed: u64,
    /// When message k started, at `k % window`.
    started: Vec<Instant>,
    /// Messages completed inside the window.
    in_window: u64,
    /// Whether EPOLLOUT is armed.
    want_out: bool,
    /// An error ended this connection.
    dead: bool,
}

struct Epoll(i32);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event; both fds are open.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: `events` is a live, writable buffer of `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The window as instants.
#[derive(Clone, Copy)]
struct Phases {
    from: Instant,
    to: Instant,
    drain_until: Instant,
}

struct ThreadResult {
    msgs: u64,
    hist: Histogram<u64>,
    errors: Vec<String>,
    idle: usize,
    undrained: usize,
}

fn run(spec: &Spec) -> Result<Report, String> {
    let _ = sys::pin_current_thread(&spec.cpus);
    let threads = spec.cpus.len().min(spec.conns);
    let pat = pattern(spec.size);
    // Connect every connection first, from its own thread, then start together.
    let barrier = std::sync::Barrier::new(threads + 1);
    let (phases_cell, connect_failed) = (
        std::sync::OnceLock::<Phases>::new(),
        std::sync::atomic::AtomicBool::new(false),
    );
    let results = std::thread::scope(|s| -> Result<Vec<ThreadResult>, String> {
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let ids: Vec<usize> = (0..spec.conns).filter(|c| c % threads == t).collect();
            let cpu = spec.cpus[t];
            let (barrier, phases, failed, pat) = (&barrier, &phases_cell, &connect_failed, &pat);
            handles.push(s.spawn(move || -> Result<ThreadResult, String> {
                let _ = sys::pin_current_thread(&[cpu]);
                let conns = connect_all(spec, &ids);
                if conns.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                barrier.wait();
                let conns = conns?;
                let phases = *phases.get().ok_or("no start time")?;
                if failed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err("another thread could not connect".into());
                }
                drive(spec, pat, conns, phases)
            }));
        }
        // Every thread has connected (or failed) at the barrier.
        let now = Instant::now();
        let from = now + spec.warmup;
        let to = from + spec.measure;
        let _ = phases_cell.set(Phases {
            from,
            to,
            drain_until: to + spec.drain,
        });
        barrier.wait();
        if !connect_failed.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(from.saturating_duration_since(Instant::now()));
            println!("MEASURE");
            let _ = io::stdout().flush();
        }
        if !connect_failed.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(to.saturating_duration_since(Instant::now()));
            println!("END");
            let _ = io::stdout().flush();
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(
                h.join()
                    .unwrap_or_else(|_| Err("a load generator thread panicked".into()))?,
            );
        }
        Ok(out)
    })?;
    let mut report = Report {
        window_secs: spec.measure.as_secs_f64(),
        threads,
        ..Report::default()
    };
    let mut hist = latency_histogram();
    for r in results {
        report.msgs += r.msgs;
        report.idle_conns += r.idle;
        report.undrained_conns += r.undrained;
        report.errors.extend(r.errors);
        hist.add(&r.hist)
            .map_err(|e| format!("merging histograms: {e}"))?;
    }
    report.errors.truncate(20);
    report.latency = hist
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    Ok(report)
}

fn connect_all(spec: &Spec, ids: &[usize]) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(ids.len());
    for &id in ids {
        let stream = TcpStream::connect_timeout(&spec.addr, Duration::from_secs(5))
            .map_err(|e| format!("connection {id} of {}: connect: {e}", spec.conns))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_nonblocking(true))
            .map_err(|e| format!("connection {id}: socket options: {e}"))?;
        conns.push(Conn {
            id,
            stream,
            tx: 0,
            rx: 0,
            allowed: 0,
            started: vec![Instant::now(); spec.window],
            in_window: 0,
            want_out: false,
            dead: false,
        });
    }
    Ok(conns)
}

/// Writes what `c` may write; arms or disarms EPOLLOUT as needed.
fn pump(spec: &Spec, pat: &[u8], ep: &Epoll, idx: usize, c: &mut Conn, errors: &mut Vec<String>) {
    let size = spec.size as u64;
    while c.tx < c.allowed && !c.dead {
        let mut slices: [IoSlice<'_>; 16] = [IoSlice::new(&[]); 16];
        let mut n = 0;
        let mut pos = c.tx;
        let now = Instant::now();
        while pos < c.allowed && n < slices.len() {
            let k = pos / size;
            let off = (pos % size) as usize;
            if off == 0 {
                c.started[(k % spec.window as u64) as usize] = now;
            }
            let base = msg_offset(k, c.id);
            slices[n] = IoSlice::new(&pat[base + off..base + spec.size]);
            n += 1;
            pos += size - off as u64;
        }
        match (&c.stream).write_vectored(&slices[..n]) {
            Ok(0) => {
                c.dead = true;
                errors.push(format!("connection {}: write returned 0", c.id));
            }
            Ok(w) => c.tx += w as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                c.dead = true;
                errors.push(format!("connection {}: write: {e}", c.id));
            }
        }
    }
    let want_out = c.tx < c.allowed && !c.dead;
    if want_out != c.want_out {
        let ev = libc::EPOLLIN as u32 | if want_out { libc::EPOLLOUT as u32 } else { 0 };
        if let Err(e) = ep.ctl(libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), ev, idx as u64) {
            errors.push(format!("connection {}: epoll_ctl: {e}", c.id));
            c.dead = true;
        }
        c.want_out = want_out;
    }
}

/// Reads what arrived on `c`, checks it, and completes messages.
#[allow(clippy::too_many_arguments)]
fn receive(
    spec: &Spec,
    pat: &[u8],
    buf: &mut [u8],
    c: &mut Conn,
    phases: &Phases,
    sending: bool,
    hist: &mut Histogram<u64>,
    msgs: &mut u64,
    errors: &mut Vec<String>,
) {
    let size = spec.size as u64;
    loop {
        let n = match (&c.stream).read(buf) {
            Ok(0) => {
                c.dead = true;
                errors.push(format!(
                    "connection {}: the server closed it after {} of {} bytes echoed",
                    c.id, c.rx, c.tx
                ));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                c.dead = true;
                errors.push(format!("connection {}: read: {e}", c.id));
                return;
            }
        };
        if c.rx + n as u64 > c.tx {
            c.dead = true;
            errors.push(format!(
                "connection {}: {} bytes echoed but only {} sent",
                c.id,
                c.rx + n as u64,
                c.tx
            ));
            return;
        }
        let now = Instant::now();
        let mut got = &buf[..n];
        while !got.is_empty() {
            let k = c.rx / size;
            let off = (c.rx % size) as usize;
            let take = got.len().min(spec.size - off);
            let base = msg_offset(k, c.id) + off;
            if got[..take] != pat[base..base + take] {
                c.dead = true;
                errors.push(format!(
                    "connection {}: wrong echo in message {k} at byte {off} (stream offset {})",
                    c.id, c.rx
                ));
                return;
            }
            c.rx += take as u64;
            got = &got[take..];
            if c.rx % size == 0 {
                // Message k is complete.
                if now >= phases.from && now <= phases.to {
                    let started = c.started[(k % spec.window as u64) as usize];
                    hist.saturating_record(now.duration_since(started).as_nanos() as u64);
                    *msgs += 1;
                    c.in_window += 1;
                }
                if sending {
                    c.allowed = (k + 1 + spec.window as u64) * size;
                }
            }
        }
        if n < buf.len() {
            return;
        }
    }
}

fn drive(
    spec: &Spec,
    pat: &[u8],
    mut conns: Vec<Conn>,
    phases: Phases,
) -> Result<ThreadResult, String> {
    let ep = Epoll::new().map_err(|e| format!("epoll_create1: {e}"))?;
    for (i, c) in conns.iter().enumerate() {
        ep.ctl(
            libc::EPOLL_CTL_ADD,
            c.stream.as_raw_fd(),
            libc::EPOLLIN as u32,
            i as u64,
        )
        .map_err(|e| format!("epoll_ctl: {e}"))?;
    }
    let mut hist = latency_histogram();
    let mut msgs = 0u64;
    let mut errors = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let window_bytes = (spec.window * spec.size) as u64;
    for (i, c) in conns.iter_mut().enumerate() {
        c.allowed = window_bytes;
        pump(spec, pat, &ep, i, c, &mut errors);
    }
    let mut sending = true;
    loop {
        let now = Instant::now();
        if sending && now >= phases.to {
            // Stop sending; wait for what is in flight.
            sending = false;
            for c in conns.iter_mut() {
                c.allowed = c.tx;
            }
        }
        if !sending && (now >= phases.drain_until || conns.iter().all(|c| c.dead || c.rx == c.tx)) {
            break;
        }
        let n = ep
            .wait(&mut events, 5)
            .map_err(|e| format!("epoll_wait: {e}"))?;
        for ev in &events[..n] {
            let i = ev.u64 as usize;
            let flags = ev.events;
            let c = &mut conns[i];
            if c.dead {
                continue;
            }
            if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                receive(
                    spec,
                    pat,
                    &mut buf,
                    c,
                    &phases,
                    sending,
                    &mut hist,
                    &mut msgs,
                    &mut errors,
                );
            }
            if !c.dead {
                pump(spec, pat, &ep, i, c, &mut errors);
            }
            if c.dead {
                let _ = ep.ctl(libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), 0, 0);
            }
        }
    }
    let idle = conns.iter().filter(|c| c.in_window == 0).count();
    let undrained = conns.iter().filter(|c| !c.dead && c.rx != c.tx).count();
    Ok(ThreadResult {
        msgs,
        hist,
        errors,
        idle,
        undrained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn spec(addr: SocketAddr) -> Spec {
        Spec {
            addr,
            conns: 4,
            size: 100,
            window: 2,
            warmup: Duration::from_millis(20),
            measure: Duration::from_millis(100),
            drain: Duration::from_millis(500),
            cpus: sys::allowed_cpus().unwrap()[..1].to_vec(),
        }
    }

    #[test]
    fn args_round_trip() {
        let s = spec("127.0.0.1:7000".parse().unwrap());
        let args = s.to_args();
        assert_eq!(args[0], ROLE_ARG);
        assert_eq!(Spec::from_args(&args[1..]).unwrap(), s);
        assert!(Spec::from_args(&[]).is_err());
    }

    /// A blocking echo server on std threads, for the generator's own test.
    fn std_echo(corrupt: bool) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    loop {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if corrupt {
                                    b[0] ^= 1;
                                }
                                if s.write_all(&b[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn drives_an_echo_server() {
        let r = run(&spec(std_echo(false))).unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.msgs > 0);
        assert_eq!(r.undrained_conns, 0);
        assert!(!r.histogram().is_empty());
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.msgs, r.msgs);
    }

    #[test]
    fn catches_wrong_echoes() {
        let r = run(&spec(std_echo(true))).unwrap();
        assert!(
            r.errors.iter().any(|e| e.contains("wrong echo")),
            "{:?}",
            r.errors
        );
    }
}
