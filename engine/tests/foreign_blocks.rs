//! Blocks from another core's arena: a reply built on one core and sent on another, and a
//! file write from a block another core allocated. A registered index belongs to one
//! ring's registration, so these must go out without one (a foreign index would make the
//! kernel reject the operation with EFAULT, or worse, read the wrong memory).

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ringfort::pool::{BufChain, PoolBuf};
use ringfort::reorder::Seq;
use ringfort::{ConnId, CoreId, Ctx, Engine, EngineConfig, FileDone, Handler, OpId};

/// Large enough for several zero-copy sends at the lowered threshold.
const REPLY: usize = 256 << 10;
const BLOCK: usize = 64 << 10;

enum Msg {
    /// Build the reply on this core, for `conn` on `origin`.
    Build {
        origin: CoreId,
        conn: ConnId,
        seq: Seq,
    },
    /// The reply, built in the other core's arena.
    Reply {
        conn: ConnId,
        seq: Seq,
        data: BufChain,
    },
    /// Write this block (from the other core's arena) to the file.
    Write(PoolBuf),
}

fn pattern(i: usize) -> u8 {
    (i * 7 + i / 251) as u8
}

struct Relay {
    addr: std::net::SocketAddr,
    path: PathBuf,
    written: mpsc::Sender<Result<u32, String>>,
}

impl Handler for Relay {
    type Msg = Msg;

    fn on_start(&mut self, cx: &mut Ctx<'_, Msg>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, data: &mut BufChain) {
        while line_end(data).is_some() {
            let line = take_line(data).unwrap();
            let other = (cx.core() + 1) % cx.cores();
            let msg = match line.as_str() {
                "reply" => Msg::Build {
                    origin: cx.core(),
                    conn,
                    seq: cx.begin_request(conn).expect("window"),
                },
                "write" => {
                    let mut buf = cx.arena().alloc(BLOCK).expect("arena");
                    for (i, b) in buf[..BLOCK].iter_mut().enumerate() {
                        *b = pattern(i);
                    }
                    Msg::Write(buf)
                }
                other => panic!("unknown request {other:?}"),
            };
            assert!(cx.submit_to(other, msg).is_ok(), "channel full");
        }
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, Msg>, _from: Option<CoreId>, msg: Msg) {
        match msg {
            Msg::Build { origin, conn, seq } => {
                let bytes: Vec<u8> = (0..REPLY).map(pattern).collect();
                let data = chain_of(cx, &bytes);
                assert!(cx.submit_to(origin, Msg::Reply { conn, seq, data }).is_ok());
            }
            Msg::Reply { conn, seq, data } => cx.reply(conn, seq, data).expect("reply"),
            Msg::Write(buf) => {
                let path = self.path.to_str().unwrap().to_string();
                let fd = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(path)
                    .unwrap();
                // The op holds its own descriptor number; keep the file open until done.
                let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
                cx.file_write(raw, buf, BLOCK, 0, raw as u64);
            }
        }
    }

    fn on_file(&mut self, _cx: &mut Ctx<'_, Msg>, _op: OpId, done: FileDone) {
        // SAFETY: the token is the descriptor `into_raw_fd` gave up; nothing else owns it.
        drop(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(done.token as i32) });
        let _ = self.written.send(done.result.map_err(|e| e.to_string()));
    }
}

fn start(
    path: PathBuf,
) -> (
    Engine<Msg>,
    std::net::SocketAddr,
    mpsc::Receiver<Result<u32, String>>,
) {
    let addr = free_addr();
    let (tx, rx) = mpsc::channel();
    let cfg = EngineConfig {
        send_zc_threshold: 16 << 10,
        ..config(2)
    };
    let engine = Engine::start(cfg, move |_| Relay {
        addr,
        path: path.clone(),
        written: tx.clone(),
    })
    .expect("engine start");
    (engine, addr, rx)
}

#[test]
fn replies_built_on_another_core_go_out_zero_copy_and_intact() {
    let path = std::env::temp_dir().join(format!("ringfort-foreign-{}", std::process::id()));
    let (engine, addr, _rx) = start(path);
    assert!(
        engine.features().send_zc,
        "this kernel has no SEND_ZC: the zero-copy path cannot be tested here"
    );
    let want: Vec<u8> = (0..REPLY).map(pattern).collect();
    // Several connections, so both cores receive requests and build for each other.
    for _ in 0..8 {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"reply\nreply\n").unwrap();
        for n in 0..2 {
            let mut got = vec![0; REPLY];
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("reply {n}: {e}"));
            assert!(got == want, "reply {n} differs from what was built");
        }
    }
    engine.stop(Duration::from_secs(5));
    let metrics = engine.wait().expect("clean stop");
    let zc: u64 = metrics.iter().map(|m| m.sends_zc).sum();
    assert!(zc > 0, "no reply went out zero-copy: {metrics:?}");
}

#[test]
fn a_block_from_another_core_is_written_to_a_file() {
    let path = std::env::temp_dir().join(format!("ringfort-foreign-write-{}", std::process::id()));
    let (engine, addr, rx) = start(path.clone());
    let mut s = connect(addr);
    s.write_all(b"write\n").unwrap();
    let n = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no write completion")
        .expect("the write failed");
    assert_eq!(n as usize, BLOCK);
    let got = std::fs::read(&path).unwrap();
    assert!(
        got.len() == BLOCK && got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "the file does not hold the block"
    );
    drop(s);
    engine.stop(Duration::from_secs(5));
    engine.wait().expect("clean stop");
    let _ = std::fs::remove_file(path);
}
