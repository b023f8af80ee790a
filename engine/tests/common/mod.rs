//! Shared test scaffolding: an echo handler, engine start-up on a loopback port no other
//! test of the process uses, and file-descriptor limits; [`resp`] drives the RESP server
//! as a child process.
#![allow(dead_code)]

pub mod resp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, EngineConfig, Handler};

/// Echoes everything back without copying.
pub struct Echo {
    pub addr: SocketAddr,
}

impl Handler for Echo {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        let all = data.split_to(data.len());
        cx.send(conn, all).expect("send");
    }
}

/// A loopback port no other test of this process is given, and free now.
///
/// The engine listens with SO_REUSEPORT, so two engines given the same port would share
/// its connections. `bind(0)` could hand two concurrent tests the same port (the first
/// probe is closed before the second asks), so ports come from a per-process counter
/// instead, below the ephemeral range the kernel gives clients and `bind(0)`.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (base + n) % SPAN) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

/// A config for tests: `cores` cores and a small pool.
pub fn config(cores: usize) -> EngineConfig {
    EngineConfig {
        cpus: ringfort::cpus_for_cores(cores).expect("CPUs"),
        ..EngineConfig::default()
    }
}

/// Connects, retrying while the listener comes up.
pub fn connect(addr: SocketAddr) -> TcpStream {
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("could not connect to {addr}");
}

pub fn start_echo(cores: usize) -> (Engine<()>, SocketAddr) {
    start_echo_with(config(cores))
}

/// An echo engine with the given config.
pub fn start_echo_with(config: EngineConfig) -> (Engine<()>, SocketAddr) {
    let addr = free_addr();
    let engine = Engine::start(config, move |_| Echo { addr }).expect("engine start");
    drop(connect(addr));
    (engine, addr)
}

/// Writes `msg` and reads the same number of bytes back.
pub fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// Raises RLIMIT_NOFILE (soft and, as root, hard) to at least `want`; returns the soft
/// limit in force. Says so loudly when it cannot.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is live and writable.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if r.rlim_cur >= want {
        return r.rlim_cur;
    }
    let hard = r.rlim_max.max(want);
    let new = libc::rlimit {
        rlim_cur: want,
        rlim_max: hard,
    };
    // SAFETY: `new` is a valid rlimit; raising the hard limit needs CAP_SYS_RESOURCE.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        let soft = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: as above; the soft limit may always rise to the hard limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) };
        eprintln!(
            "!!! could not raise RLIMIT_NOFILE to {want} (hard limit {}): {}",
            r.rlim_max,
            std::io::Error::last_os_error()
        );
        return r.rlim_max;
    }
    want
}

/// The offset just past the first `\n` in `chain`, if it holds a whole line.
pub fn line_end(chain: &BufChain) -> Option<usize> {
    let mut off = 0;
    for chunk in chain.chunks() {
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            return Some(off + i + 1);
        }
        off += chunk.len();
    }
    None
}

/// Takes the first line (without its `\n`) out of `chain`.
pub fn take_line(chain: &mut BufChain) -> Option<String> {
    let end = line_end(chain)?;
    let line = chain.split_to(end).to_vec();
    Some(String::from_utf8_lossy(&line[..end - 1]).into_owned())
}

/// A chain holding `bytes`, from the core's arena.
pub fn chain_of(cx: &Ctx<'_, impl Send + 'static>, bytes: &[u8]) -> BufChain {
    let mut c = BufChain::new(usize::MAX);
    c.append_slice(cx.arena(), bytes).expect("arena");
    c
}

/// Reads one `\n`-terminated line.
pub fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        s.read_exact(&mut b).expect("read line");
        if b[0] == b'\n' {
            return String::from_utf8(out).unwrap();
        }
        out.push(b[0]);
    }
}
