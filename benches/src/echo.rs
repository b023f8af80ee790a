//! The `echo` suite: the ringfort engine's echo server beside two tokio echo servers, all
//! driven by the same load generator ([`crate::loadgen`]) over loopback.
//!
//! - **ours**: [`ringfort::Engine`] with the echo handler of `engine/examples/echo.rs`
//!   (`on_data` splits off the whole chain and `cx.send`s it back, no copy), started in
//!   this process with `EngineConfig::default()` on the server CPUs.
//! - **tokio multi-thread**: one multi-thread runtime with one worker per server CPU (its
//!   threads restricted to the server CPUs), one listener, one task per connection that
//!   reads into a 64 KiB buffer and `write_all`s it back.
//! - **tokio current-thread per core**: one current-thread runtime per server CPU, each on
//!   a thread pinned to its CPU with its own `SO_REUSEPORT` listener, the same task.
//! - **C echo server** (the cases with 1,000 connections): `ffi/examples/echo_server.c`
//!   on the C ABI ([`crate::c_echo`]), a child process with one core per server CPU and
//!   the library's default configuration, echoing without a copy
//!   (`rf_conn_send_data`). Its trials interleave with the others, and it gets a row of
//!   its own, "..., C ABI", with the C server as ours and the Rust echo handler as the
//!   peer: the ratio is the C ABI's overhead (target >= 0.9).
//!
//! Cases: 100 B messages at 1, 10, 50, 200 and 1,000 connections (the sweep the report's
//! throughput-against-connections plot draws), and 4 KiB messages at 50 and 1,000.
//!
//! Every server has `TCP_NODELAY` on its connections and a listen backlog of 4096. The
//! CPUs are split once, the same way for every server: the load generator (a child
//! process) gets the first half of the CPUs this process may use and the servers the
//! rest; on this project's 2-CPU machines, CPU 0 drives and CPU 1 serves. Each trial
//! starts a fresh server, runs one load-generator child against it, and stops the
//! server; trials interleave the servers, rotating which goes first.
//!
//! Reported per case: messages per second echoed inside the window (median and spread),
//! latency p50/p99/p999 from an HDR histogram of every trial, ours' `io_uring_enter`
//! calls per 1,000 messages (from [`ringfort::Engine::metrics`] read when the window opens
//! and closes, with its loop iterations, SQEs and CQEs in a note), the busy time of the
//! server CPUs per message ("server CPU us per msg", from `/proc/stat`, interrupts and
//! softirqs included, since loopback TCP does much of its work there), and how busy the
//! server and load-generator CPUs were. When the load generator's CPUs are saturated the
//! row says so (msgs/s is then capped by it), and when the machine was busy with other
//! work just before or after a case the row says it was disturbed. A server whose run
//! fails (a wrong echo, an early close, a stall) is left out with the reason; when ours
//! fails, the case is dropped with a reproduction: the configuration, the load, what the
//! load generator saw, and the engine's counters.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringfort::pool::BufChain;
use ringfort::{ConnId, CoreMetrics, Ctx, Engine, EngineConfig, Handler};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::loadgen::{self, Hooks, Spec};
use crate::plots;
use crate::progress::{self, Progress};
use crate::report::{Dropped, Row, SuiteReport, Sweep};
use crate::stats::{latency_histogram, Latency, Trials};
use crate::sys;
use crate::{BoxError, RunOpts};

const SUITE: &str = "echo";
const OURS: &str = "ours";
const TOKIO_MT: &str = "tokio multi-thread";
const TOKIO_CT: &str = "tokio current-thread per core";
const C_ECHO: &str = "C echo server (ringfort.h)";
const RUST_ECHO: &str = "Rust echo handler (engine/examples/echo.rs)";
const ENTERS: &str = "ours io_uring_enter calls per 1,000 msgs";

/// Messages each connection keeps in flight, for every server.
const WINDOW: usize = 1;
/// Bytes the tokio servers read at once.
const TOKIO_BUF: usize = 64 << 10;
/// The listen backlog of the tokio servers (ours: `NetConfig::default().backlog`).
const BACKLOG: u32 = 4096;
/// Time after the window for every message in flight to come back.
const DRAIN: Duration = Duration::from_secs(3);
/// The share of the machine's CPUs other processes used, measured just before and after a
/// case, above which a row says it was disturbed by other work.
const DISTURBED: f64 = 0.15;
/// The load generator's CPU busy share from which a row says the load generator, not
/// only the server, limits msgs/s.
const LOADGEN_BOUND: f64 = 0.9;
/// How long the machine is watched, with nothing of ours running, before and after a case.
const QUIET_CHECK: Duration = Duration::from_millis(300);
/// How long a server may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time the load generator gets (connecting, starting) before it is killed.
const GRACE: Duration = Duration::from_secs(20);

/// The message size of the connections sweep the echo plot draws, and its points (the
/// issue's cases, 50 and 1,000 connections, among them).
const SWEEP_SIZE: usize = 100;
const SWEEP_CONNS: [usize; 5] = [1, 10, 50, 200, 1000];

#[derive(Clone, Copy, Debug)]
struct Case {
    size: usize,
    size_name: &'static str,
    conns: usize,
}

/// The cases that also measure the C echo server (the C ABI's overhead).
fn with_c_row(case: &Case) -> bool {
    case.conns >= 1000
}

impl Case {
    fn name(&self) -> String {
        format!("echo {} x{} conns", self.size_name, thousands(self.conns))
    }
}

/// `1000` as `1,000`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

struct Plan {
    trials: usize,
    warmup: Duration,
    measure: Duration,
    cases: Vec<Case>,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let cases = [(100, "100 B"), (4 << 10, "4 KiB")]
            .iter()
            .flat_map(|&(size, size_name)| {
                let conns: &[usize] = if size == SWEEP_SIZE {
                    &SWEEP_CONNS
                } else {
                    &[50, 1000]
                };
                conns.iter().map(move |&conns| Case {
                    size,
                    size_name,
                    conns,
                })
            })
            .collect();
        if quick {
            Plan {
                trials: 3,
                warmup: Duration::from_millis(250),
                measure: Duration::from_millis(800),
                cases,
            }
        } else {
            Plan {
                trials: 7,
                warmup: Duration::from_millis(500),
                measure: Duration::from_secs(3),
                cases,
            }
        }
    }
}

/// Which CPUs serve and which drive, the same for every server.
struct Layout {
    server: Vec<usize>,
    loadgen: Vec<usize>,
    note: String,
}

fn layout() -> Result<Layout, String> {
    let cpus = sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?;
    if cpus.len() < 2 {
        return Ok(Layout {
            server: cpus.clone(),
            loadgen: cpus.clone(),
            note: format!(
                "only CPU {:?} is usable, so the server and the load generator share it (for \
                 every server alike)",
                cpus
            ),
        });
    }
    let half = cpus.len() / 2;
    let (loadgen, server) = (cpus[..half].to_vec(), cpus[half..].to_vec());
    let note = format!(
        "CPUs: the load generator (a child process, {} thread(s), one per CPU, epoll) runs \
         on {loadgen:?}, every server on {server:?} ({} core(s)); the same split for every \
         server; {WINDOW} message(s) in flight per connection",
        loadgen.len(),
        server.len()
    );
    Ok(Layout {
        server,
        loadgen,
        note,
    })
}

/// Runs the suite.
pub fn run(opts: &RunOpts) -> Result<SuiteReport, BoxError> {
    let plan = Plan::new(opts.quick);
    let layout = layout()?;
    progress::say(SUITE, &layout.note);
    let (soft, hard) = sys::raise_nofile()?;
    if plan.cases.iter().any(with_c_row) {
        progress::say(
            SUITE,
            "building the C echo server (ffi/examples/echo_server.c)",
        );
        if let Err(why) = crate::c_echo::binary() {
            progress::say(SUITE, &format!("the C echo server cannot run: {why}"));
        }
    }
    let mut rows = Vec::new();
    let mut dropped = Vec::new();
    for case in &plan.cases {
        // This process holds the server side, the child the client side, plus slack.
        let need = case.conns as u64 + 256;
        if soft < need {
            dropped.push(Dropped {
                case: case.name(),
                reason: format!(
                    "RLIMIT_NOFILE is {soft} (hard {hard}), {need} descriptors are needed"
                ),
            });
            continue;
        }
        match run_case(&plan, &layout, case) {
            Ok((row, c_row)) => {
                rows.push(row);
                match c_row {
                    Some(Ok(row)) => rows.push(row),
                    Some(Err(reason)) => {
                        progress::say(
                            SUITE,
                            &format!("{}, C ABI: NOT MEASURED: {reason}", case.name()),
                        );
                        dropped.push(Dropped {
                            case: format!("{}, C ABI", case.name()),
                            reason,
                        });
                    }
                    None => {}
                }
            }
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

// ---------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    TokioMt,
    TokioCt,
    CEcho,
}

/// Every server under test, ours first; each case runs them all, interleaved, and each
/// peer becomes one side of the row (a new peer is a new [`Kind`] listed here).
const SERVERS: [Kind; 3] = [Kind::Ours, Kind::TokioMt, Kind::TokioCt];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => OURS,
            Kind::TokioMt => TOKIO_MT,
            Kind::TokioCt => TOKIO_CT,
            Kind::CEcho => C_ECHO,
        }
    }
}

/// The ringfort echo handler of `engine/examples/echo.rs`, plus a start-up report.
struct Echo {
    addr: SocketAddr,
    ready: mpsc::Sender<Result<(), String>>,
}

impl Handler for Echo {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        match cx.listen(self.addr) {
            Ok(_) => {
                let _ = self.ready.send(Ok(()));
            }
            Err(e) => {
                let _ = self.ready.send(Err(format!(
                    "core {}: cannot listen on {}: {e}",
                    cx.core(),
                    self.addr
                )));
                cx.stop_engine(Duration::ZERO);
            }
        }
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        let all = data.split_to(data.len());
        let _ = cx.send(conn, all);
    }
}

enum Server {
    Ours(Engine<()>),
    TokioMt(tokio::runtime::Runtime),
    TokioCt(Vec<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>),
    C(crate::c_echo::CEcho),
}

async fn echo_conn(mut s: tokio::net::TcpStream) {
    let mut buf = vec![0u8; TOKIO_BUF];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn accept_loop(l: tokio::net::TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(echo_conn(s));
            }
            // Out of descriptors or a connection reset before accept: go on.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

fn tokio_listener(addr: SocketAddr, reuseport: bool) -> std::io::Result<tokio::net::TcpListener> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    if reuseport {
        s.set_reuseport(true)?;
    }
    s.set_nodelay(true)?;
    s.bind(addr)?;
    s.listen(BACKLOG)
}

impl Server {
    fn start(kind: Kind, addr: SocketAddr, cpus: &[usize]) -> Result<Server, String> {
        match kind {
            Kind::Ours => {
                let (tx, rx) = mpsc::channel();
                let config = EngineConfig {
                    cpus: cpus.to_vec(),
                    ..EngineConfig::default()
                };
                let engine = Engine::start(config, move |_| Echo {
                    addr,
                    ready: tx.clone(),
                })
                .map_err(|e| format!("Engine::start: {e}"))?;
                for _ in cpus {
                    match rx.recv_timeout(Duration::from_secs(10)) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err("a core did not start listening in 10 s".into()),
                    }
                }
                Ok(Server::Ours(engine))
            }
            Kind::CEcho => crate::c_echo::CEcho::start(addr, cpus).map(Server::C),
            Kind::TokioMt => {
                let pin = cpus.to_vec();
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(cpus.len())
                    .thread_name("tokio-echo-mt")
                    .enable_io()
                    .on_thread_start(move || {
                        let _ = sys::pin_current_thread(&pin);
                    })
                    .build()
                    .map_err(|e| format!("building the tokio runtime: {e}"))?;
                let l = rt
                    .block_on(async { tokio_listener(addr, false) })
                    .map_err(|e| format!("tokio listener on {addr}: {e}"))?;
                rt.spawn(accept_loop(l));
                Ok(Server::TokioMt(rt))
            }
            Kind::TokioCt => {
                let mut threads = Vec::new();
                for &cpu in cpus {
                    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                    let t = std::thread::Builder::new()
                        .name(format!("tokio-echo-ct-{cpu}"))
                        .spawn(move || {
                            let _ = sys::pin_current_thread(&[cpu]);
                            let rt = match tokio::runtime::Builder::new_current_thread()
                                .enable_io()
                                .build()
                            {
                                Ok(rt) => rt,
                                Err(e) => {
                                    let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                                    return;
                                }
                            };
                            rt.block_on(async move {
                                match tokio_listener(addr, true) {
                                    Ok(l) => {
                                        let _ = ready_tx.send(Ok(()));
                                        tokio::spawn(accept_loop(l));
                                        let _ = stop_rx.await;
                                    }
                                    Err(e) => {
                                        let _ = ready_tx
                                            .send(Err(format!("tokio listener on {addr}: {e}")));
                                    }
                                }
                            });
                            // Dropping the runtime drops every connection task.
                            drop(rt);
                        })
                        .map_err(|e| format!("spawning a tokio thread: {e}"))?;
                    threads.push((stop_tx, t));
                    let ok = ready_rx
                        .recv_timeout(Duration::from_secs(10))
                        .unwrap_or_else(|_| Err("the tokio thread did not start".into()));
                    if let Err(e) = ok {
                        let _ = Server::TokioCt(threads).stop();
                        return Err(e);
                    }
                }
                Ok(Server::TokioCt(threads))
            }
        }
    }

    fn metrics(&self) -> Option<Vec<CoreMetrics>> {
        match self {
            Server::Ours(e) => Some(e.metrics()),
            _ => None,
        }
    }

    /// Stops the server; an error names a core that failed.
    fn stop(self) -> Result<(), String> {
        match self {
            Server::Ours(e) => {
                e.stop(Duration::ZERO);
                // Bounded: an engine that does not stop is reported, not waited for forever
                // (its threads are left behind).
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(e.wait().map(drop).map_err(|e| format!("engine: {e}")));
                });
                rx.recv_timeout(STOP_TIMEOUT).unwrap_or_else(|_| {
                    Err(format!(
                        "the engine did not stop within {} s of Engine::stop(0)",
                        STOP_TIMEOUT.as_secs()
                    ))
                })
            }
            Server::TokioMt(rt) => {
                rt.shutdown_timeout(Duration::from_secs(2));
                Ok(())
            }
            Server::TokioCt(threads) => {
                for (stop, t) in threads {
                    let _ = stop.send(());
                    let _ = t.join();
                }
                Ok(())
            }
            Server::C(c) => c.stop(),
        }
    }
}

/// What is read when the window opens and when it closes.
struct Snap {
    /// Ours' per-core counters.
    metrics: Option<Vec<CoreMetrics>>,
    /// Machine-wide ticks of the server CPUs and of the load generator's CPUs.
    server_ticks: Option<sys::CpuTicks>,
    loadgen_ticks: Option<sys::CpuTicks>,
}

/// Server-side counters read when the window opens and closes.
struct Snapshots<'a> {
    server: &'a Server,
    layout: &'a Layout,
    open: Option<Snap>,
    close: Option<Snap>,
}

impl Snapshots<'_> {
    fn take(&self) -> Snap {
        Snap {
            metrics: self.server.metrics(),
            server_ticks: sys::cpu_ticks(&self.layout.server),
            loadgen_ticks: sys::cpu_ticks(&self.layout.loadgen),
        }
    }

    /// How the time of the server's and the load generator's CPUs went in the window,
    /// counting every process on the machine.
    fn cpus_busy(&self) -> (Option<sys::CpuShares>, Option<sys::CpuShares>) {
        let (Some(a), Some(b)) = (self.open.as_ref(), self.close.as_ref()) else {
            return (None, None);
        };
        let busy = |x: &Option<sys::CpuTicks>, y: &Option<sys::CpuTicks>| {
            sys::shares_between(x.as_ref()?, y.as_ref()?)
        };
        (
            busy(&a.server_ticks, &b.server_ticks),
            busy(&a.loadgen_ticks, &b.loadgen_ticks),
        )
    }

    /// Ours' loop iterations, `io_uring_enter` calls, SQEs and CQEs in the window, summed
    /// over the cores.
    fn engine_counts(&self) -> Option<[u64; 4]> {
        let sum = |m: &Vec<CoreMetrics>| {
            m.iter().fold([0u64; 4], |a, c| {
                [
                    a[0] + c.ticks,
                    a[1] + c.enters,
                    a[2] + c.sqes,
                    a[3] + c.completions,
                ]
            })
        };
        let a = sum(self.open.as_ref()?.metrics.as_ref()?);
        let b = sum(self.close.as_ref()?.metrics.as_ref()?);
        Some(std::array::from_fn(|i| b[i].saturating_sub(a[i])))
    }
}

impl Hooks for Snapshots<'_> {
    fn window_opened(&mut self) {
        self.open = Some(self.take());
    }

    fn window_closed(&mut self) {
        self.close = Some(self.take());
    }
}

/// What one run of one server measured.
struct RunOutcome {
    msgs_per_sec: f64,
    hist: Histogram<u64>,
    /// Ours' ticks, enters, SQEs and CQEs per 1,000 messages.
    engine_per_1000: Option<[f64; 4]>,
    /// Machine-wide shares of the server's and the load generator's CPUs.
    server_cpus_busy: Option<sys::CpuShares>,
    loadgen_cpus_busy: Option<sys::CpuShares>,
    /// Busy time of the server CPUs (tasks, interrupts and softirqs, machine-wide) per
    /// message echoed, in microseconds.
    server_us_per_msg: Option<f64>,
    idle_conns: usize,
}

/// The engine's counters summed over cores, for reproductions.
fn metrics_text(m: &[CoreMetrics]) -> String {
    let mut t = CoreMetrics::default();
    for c in m {
        t.ticks += c.ticks;
        t.enters += c.enters;
        t.sqes += c.sqes;
        t.completions += c.completions;
        t.bytes_in += c.bytes_in;
        t.bytes_out += c.bytes_out;
        t.accepts += c.accepts;
        t.accept_refused += c.accept_refused;
        t.accept_backoffs += c.accept_backoffs;
        t.closes += c.closes;
        t.evictions += c.evictions;
        t.sends_zc += c.sends_zc;
        t.sends_copy += c.sends_copy;
        t.zc_copied += c.zc_copied;
        t.recv_rearms += c.recv_rearms;
        t.recv_enobufs += c.recv_enobufs;
        t.read_pauses += c.read_pauses;
        t.conns += c.conns;
        t.ops_in_flight += c.ops_in_flight;
    }
    format!("{t:?}")
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

fn free_port() -> Result<u16, String> {
    let l = StdListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn one_run(kind: Kind, plan: &Plan, layout: &Layout, case: &Case) -> Result<RunOutcome, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let server = Server::start(kind, addr, &layout.server)?;
    let spec = Spec {
        addr,
        conns: case.conns,
        size: case.size,
        window: WINDOW,
        warmup: plan.warmup,
        measure: plan.measure,
        drain: DRAIN,
        cpus: layout.loadgen.clone(),
    };
    let mut snaps = Snapshots {
        server: &server,
        layout,
        open: None,
        close: None,
    };
    let report = loadgen::run_child(&spec, GRACE, &mut snaps);
    let (server_cpus_busy, loadgen_cpus_busy) = snaps.cpus_busy();
    let counts = snaps.engine_counts();
    let end_metrics = server.metrics();
    let stopped = server.stop();
    let repro = |what: String| -> String {
        let mut s = format!(
            "{what} [load: {} conns to {addr}, {} B messages, {WINDOW} in flight each, \
             {:.2} s warm-up + {:.2} s window; server CPUs {:?}, load generator CPUs {:?}",
            case.conns,
            case.size,
            plan.warmup.as_secs_f64(),
            plan.measure.as_secs_f64(),
            layout.server,
            layout.loadgen
        );
        if kind == Kind::Ours {
            s.push_str("; EngineConfig::default() with those cpus, the echo handler");
            if let Some(m) = &end_metrics {
                s.push_str(&format!(
                    "; engine counters at the end: {}",
                    metrics_text(m)
                ));
            }
        }
        s.push(']');
        s
    };
    let report = report.map_err(&repro)?;
    if !report.errors.is_empty() {
        return Err(repro(format!(
            "the load generator saw {} error(s), first: {}",
            report.errors.len(),
            report.errors.join("; ")
        )));
    }
    if report.undrained_conns > 0 {
        return Err(repro(format!(
            "{} connection(s) still missed echoed bytes {:.1} s after the window closed",
            report.undrained_conns,
            DRAIN.as_secs_f64()
        )));
    }
    if report.msgs == 0 {
        return Err(repro("no message was echoed inside the window".into()));
    }
    stopped.map_err(&repro)?;
    let engine_per_1000 = counts.map(|c| c.map(|x| x as f64 / report.msgs as f64 * 1000.0));
    let server_us_per_msg = server_cpus_busy.map(|c| {
        (c.tasks + c.irq) * layout.server.len() as f64 * plan.measure.as_secs_f64() * 1e6
            / report.msgs as f64
    });
    Ok(RunOutcome {
        msgs_per_sec: report.msgs_per_sec(),
        hist: report.histogram(),
        engine_per_1000,
        server_cpus_busy,
        loadgen_cpus_busy,
        server_us_per_msg,
        idle_conns: report.idle_conns,
    })
}

// ---------------------------------------------------------------------------------------
// One case

struct Side {
    kind: Kind,
    trials: Trials,
    hist: Histogram<u64>,
    /// Busy shares (tasks, interrupts and softirqs, machine-wide) of the server CPUs and
    /// the load generator CPUs.
    server_cpus: Trials,
    loadgen_cpus: Trials,
    server_us_per_msg: Trials,
    /// Ours' ticks, enters, SQEs and CQEs per 1,000 messages.
    engine: [Trials; 4],
    idle_conns: usize,
    failed: Option<String>,
}

/// Measures one case: its row (ours against tokio) and, for the cases [`with_c_row`]
/// picks, the C ABI's row (the C echo server against ours) or why it was not measured.
#[allow(clippy::type_complexity)]
fn run_case(
    plan: &Plan,
    layout: &Layout,
    case: &Case,
) -> Result<(Row, Option<Result<Row, String>>), String> {
    let name = case.name();
    let mut kinds = SERVERS.to_vec();
    if with_c_row(case) {
        kinds.push(Kind::CEcho);
    }
    let mut sides: Vec<Side> = kinds
        .into_iter()
        .map(|kind| Side {
            kind,
            trials: Trials::new(),
            hist: latency_histogram(),
            server_cpus: Trials::new(),
            loadgen_cpus: Trials::new(),
            server_us_per_msg: Trials::new(),
            engine: Default::default(),
            idle_conns: 0,
            failed: None,
        })
        .collect();
    let before = sys::others_busy(QUIET_CHECK);
    let progress = Progress::start(SUITE, &name, plan.trials);
    for trial in 0..plan.trials {
        let n = sides.len();
        for i in 0..n {
            let side = &mut sides[(i + trial) % n];
            if side.failed.is_some() {
                continue;
            }
            match one_run(side.kind, plan, layout, case) {
                Ok(o) => {
                    side.trials.push(o.msgs_per_sec);
                    let _ = side.hist.add(&o.hist);
                    if let Some(c) = o.server_cpus_busy {
                        side.server_cpus.push(c.tasks + c.irq);
                    }
                    if let Some(c) = o.loadgen_cpus_busy {
                        side.loadgen_cpus.push(c.tasks + c.irq);
                    }
                    if let Some(us) = o.server_us_per_msg {
                        side.server_us_per_msg.push(us);
                    }
                    if let Some(e) = o.engine_per_1000 {
                        for (t, x) in side.engine.iter_mut().zip(e) {
                            t.push(x);
                        }
                    }
                    side.idle_conns = side.idle_conns.max(o.idle_conns);
                }
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
        return Err(format!("the ringfort engine failed: {why}"));
    }
    let ours = sides[0].trials.summary().ok_or("no trial of ours ran")?;
    let mut peers = Vec::new();
    let mut peers_not_run = Vec::new();
    let mut latency = Vec::new();
    let mut busy = Vec::new();
    let mut idle = Vec::new();
    for s in &sides {
        let label = s.kind.name();
        if s.kind == Kind::CEcho {
            continue;
        }
        if let Some(l) = Latency::from_histogram(&s.hist) {
            latency.push((label.to_string(), l));
        }
        if let (Some(sc), Some(lc)) = (s.server_cpus.summary(), s.loadgen_cpus.summary()) {
            busy.push(format!(
                "{label}: server CPUs {:.0}%, load generator CPUs {:.0}%",
                sc.median * 100.0,
                lc.median * 100.0,
            ));
        }
        if s.idle_conns > 0 {
            idle.push(format!(
                "{label}: up to {} of {} connections completed no message in a window",
                s.idle_conns, case.conns
            ));
        }
        if s.kind == Kind::Ours {
            continue;
        }
        match (&s.failed, s.trials.summary()) {
            (Some(why), _) => peers_not_run.push((label.to_string(), why.clone())),
            (None, Some(sum)) => peers.push((label.to_string(), sum)),
            (None, None) => peers_not_run.push((label.to_string(), "no trial ran".into())),
        }
    }
    let mut extra = Vec::new();
    let mut notes = vec![
        format!(
            "msgs/s: messages of {} B whose echo came back inside a {:.2} s window after a \
             {:.2} s warm-up, {} connections each keeping {WINDOW} message(s) in flight; \
             every echoed byte checked; a fresh server per trial, servers interleaved, {} \
             trials",
            case.size,
            plan.measure.as_secs_f64(),
            plan.warmup.as_secs_f64(),
            case.conns,
            plan.trials
        ),
        layout.note.clone(),
        format!(
            "latency: from the write that starts a message to the read that completes its \
             echo, HDR histogram of every trial; servers: ours = ringfort Engine, \
             EngineConfig::default(), the echo handler of engine/examples/echo.rs; tokio \
             1.x tasks read into a {} KiB buffer and write_all it back",
            TOKIO_BUF >> 10
        ),
    ];
    if let Some(e) = sides[0].engine[1].summary() {
        let med = |i: usize| sides[0].engine[i].summary().map_or(0.0, |s| s.median);
        notes.push(format!(
            "ours made {:.1} io_uring_enter calls per 1,000 messages (median; goal <= 50 at \
             1,000 connections), in {:.1} loop iterations, with {:.1} SQEs and {:.1} CQEs per \
             1,000 messages (Engine::metrics() read when the window opened and closed)",
            e.median,
            med(0),
            med(2),
            med(3)
        ));
        extra.push((ENTERS.to_string(), e));
    }
    for s in sides.iter().filter(|s| s.kind != Kind::CEcho) {
        if let Some(us) = s.server_us_per_msg.summary() {
            extra.push((format!("{} server CPU us per msg", s.kind.name()), us));
        }
    }
    if !extra.is_empty() {
        notes.push(
            "server CPU us per msg: the busy time of the server CPUs in the window (tasks, \
             interrupts and softirqs from /proc/stat, where loopback TCP does much of its \
             work), per message echoed; lower is leaner, and the load generator is the same \
             for all"
                .to_string(),
        );
    }
    if !busy.is_empty() {
        notes.push(format!(
            "CPU busy in the window (median; 100% = all CPUs of that side, machine-wide from \
             /proc/stat, interrupts and softirqs included): {}",
            busy.join("; ")
        ));
    }
    let saturated = sides
        .iter()
        .filter_map(|s| s.loadgen_cpus.summary())
        .any(|l| l.median >= LOADGEN_BOUND);
    if saturated {
        notes.push(format!(
            "LOAD-GENERATOR-BOUND: the load generator's CPUs were at least {:.0}% busy, so \
             msgs/s is capped by the load generator as much as by the server; compare the \
             servers by \"server CPU us per msg\" and latency as well",
            LOADGEN_BOUND * 100.0
        ));
    }
    if let Some(n) = quiet_note(before, after) {
        progress::say(SUITE, &format!("{name}: {n}"));
        notes.push(n);
    }
    notes.extend(idle);
    let c_row = sides
        .iter()
        .find(|s| s.kind == Kind::CEcho)
        .map(|c| c_abi_row(plan, layout, case, c, &sides[0]));
    let row = Row {
        suite: SUITE,
        case: name,
        metric: "msgs/s",
        higher_is_better: true,
        ours,
        peers,
        peers_not_run,
        notes,
        latency,
        extra,
        sweep: (case.size == SWEEP_SIZE).then_some(Sweep {
            plot: plots::ECHO_CONNS,
            x: case.conns as f64,
            y_scale: 1.0,
        }),
    };
    Ok((row, c_row))
}

/// The C ABI's row: the C echo server as ours, the Rust echo handler (measured in the same
/// trials) as the peer.
fn c_abi_row(
    plan: &Plan,
    layout: &Layout,
    case: &Case,
    c: &Side,
    rust: &Side,
) -> Result<Row, String> {
    if let Some(why) = &c.failed {
        return Err(why.clone());
    }
    let ours = c
        .trials
        .summary()
        .ok_or("no trial of the C echo server ran")?;
    let rust_sum = rust
        .trials
        .summary()
        .ok_or("no trial of the Rust echo handler ran")?;
    let mut latency = Vec::new();
    let mut extra = Vec::new();
    for (label, s) in [(C_ECHO, c), (RUST_ECHO, rust)] {
        if let Some(l) = Latency::from_histogram(&s.hist) {
            latency.push((label.to_string(), l));
        }
        if let Some(us) = s.server_us_per_msg.summary() {
            extra.push((format!("{label} server CPU us per msg"), us));
        }
    }
    let mut notes = vec![
        format!(
            "the C ABI's overhead: ffi/examples/echo_server.c (cc -O2, linked with the release \
             libringfort_ffi.a, rf_config defaults, one core per server CPU, zero-copy \
             rf_conn_send_data) against the Rust echo handler of engine/examples/echo.rs \
             (EngineConfig::default()), both on CPUs {:?}, driven by the same load generator \
             in the same {} interleaved trials as the row \"{}\"; target: C >= 0.9x Rust",
            layout.server,
            plan.trials,
            case.name()
        ),
        "the C server is a child process; the Rust one runs in the harness process (each \
         on its own pinned core threads)"
            .to_string(),
    ];
    if let Some(n) = c.server_cpus.summary().zip(c.loadgen_cpus.summary()) {
        notes.push(format!(
            "CPU busy in the window (median): C echo server: server CPUs {:.0}%, load \
             generator CPUs {:.0}%",
            n.0.median * 100.0,
            n.1.median * 100.0
        ));
    }
    Ok(Row {
        suite: SUITE,
        case: format!("{}, C ABI", case.name()),
        metric: "msgs/s",
        higher_is_better: true,
        ours,
        peers: vec![(RUST_ECHO.to_string(), rust_sum)],
        peers_not_run: Vec::new(),
        notes,
        latency,
        extra,
        sweep: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names() {
        let c = Case {
            size: 100,
            size_name: "100 B",
            conns: 1000,
        };
        assert_eq!(c.name(), "echo 100 B x1,000 conns");
        assert_eq!(thousands(50), "50");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(Plan::new(true).cases.len(), 7);
    }

    #[test]
    fn tokio_servers_echo() {
        let cpus = sys::allowed_cpus().unwrap();
        for kind in [Kind::TokioMt, Kind::TokioCt] {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let server = Server::start(kind, addr, &cpus[..1]).unwrap();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            use std::io::{Read as _, Write as _};
            s.write_all(b"hello").unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"hello");
            drop(s);
            server.stop().unwrap();
        }
    }
}
