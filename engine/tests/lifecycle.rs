//! Connection and engine lifecycle: idle timeouts, a graceful stop that drains queued
//! replies, and a stop with transfers in flight that returns every buffer.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, Handler};

#[test]
fn idle_connections_are_closed_and_active_ones_kept() {
    let addr = free_addr();
    let mut cfg = config(1);
    cfg.idle_timeout = Some(Duration::from_millis(400));
    let engine = Engine::start(cfg, move |_| Echo { addr }).unwrap();
    let mut idle = connect(addr);
    let mut active = connect(addr);
    // The active one talks every 100 ms for well past the timeout.
    for i in 0..15 {
        let msg = format!("ping {i}");
        assert_eq!(round_trip(&mut active, msg.as_bytes()), msg.as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = [0u8; 1];
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "the idle connection stayed open"
    );
    assert_eq!(round_trip(&mut active, b"still here"), b"still here");
    let m = &engine.metrics()[0];
    assert!(m.idle_closes >= 1, "{m:#?}");
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}

/// Replies to "N\n" with N bytes.
struct Source {
    addr: SocketAddr,
}

impl Handler for Source {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        while let Some(line) = take_line(data) {
            let n: usize = line.parse().unwrap();
            let block = vec![b'z'; 1 << 20];
            let mut left = n;
            while left > 0 {
                let part = left.min(block.len());
                let mut chain = BufChain::new(part);
                chain.append_slice(cx.arena(), &block[..part]).unwrap();
                cx.send(conn, chain).unwrap();
                left -= part;
            }
        }
    }
}

#[test]
fn graceful_stop_drains_queued_replies() {
    let addr = free_addr();
    let mut cfg = config(1);
    cfg.limits.pause_outbox_bytes = 64 << 20;
    let engine = Engine::start(cfg, move |_| Source { addr }).unwrap();
    let mut s = connect(addr);
    let want = 24 << 20;
    s.write_all(format!("{want}\n").as_bytes()).unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    // Most of the reply is still queued: stop with time to drain it.
    engine.stop(Duration::from_secs(10));
    let mut got = 1usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, want, "the stop cut the queued reply short");
    engine.wait().unwrap();
}

#[test]
fn stop_with_transfers_in_flight_returns_every_buffer() {
    let (engine, addr) = start_echo(2);
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let msg = vec![i as u8; 8 << 20];
                // Write and read until the server goes away; errors are expected.
                let mut r = s.try_clone().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
                });
                for _ in 0..8 {
                    if s.write_all(&msg).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(std::net::Shutdown::Both);
                reader.join().unwrap();
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let metrics_before = engine.metrics();
    let in_flight: u64 = metrics_before.iter().map(|m| m.ops_in_flight).sum();
    assert!(
        in_flight > 16,
        "transfers were not in flight: {in_flight} ops"
    );
    engine.stop(Duration::from_millis(50));
    let at_exit = engine.wait().unwrap();
    for c in clients {
        c.join().unwrap();
    }
    for (core, m) in at_exit.iter().enumerate() {
        assert_eq!(
            m.live_buffers_at_exit, 0,
            "core {core} exited with buffers out: {m:#?}"
        );
        assert_eq!(m.ops_in_flight, 0, "core {core} exited with ops in flight");
    }
}
