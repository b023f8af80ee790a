//! Echo round trips through the engine with 1, 100 and 10,000 concurrent connections, and
//! with completion batching on.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringfort::{Engine, EngineConfig};

#[test]
fn one_connection_many_sizes() {
    let (engine, addr) = start_echo(2);
    let mut s = connect(addr);
    for size in [1usize, 100, 4096, 4097, 65536, 100_000, 1 << 20, 3 << 20] {
        let msg: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(round_trip(&mut s, &msg), msg, "size {size}");
    }
    drop(s);
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}

#[test]
fn hundred_connections() {
    hundred_connections_on(start_echo(2));
}

/// With completion batching on, a core waits for several completions at once: every echo
/// must still come back whole and in order.
#[test]
fn hundred_connections_with_completion_batching() {
    let (engine, addr) = start_echo_with(EngineConfig {
        batch_wait: Duration::from_micros(200),
        ..config(2)
    });
    assert!(
        engine.features().min_timeout,
        "this kernel lacks IORING_FEAT_MIN_TIMEOUT (6.12+): batching cannot be tested here"
    );
    hundred_connections_on((engine, addr));
}

fn hundred_connections_on((engine, addr): (Engine<()>, SocketAddr)) {
    let handles: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for round in 0..50 {
                    let msg = format!("conn {i} round {round} {}", "x".repeat(i * 7 + round));
                    assert_eq!(round_trip(&mut s, msg.as_bytes()), msg.as_bytes());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let m = engine.metrics();
    let accepts: u64 = m.iter().map(|c| c.accepts).sum();
    assert!(accepts >= 100, "{accepts} accepts");
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}

/// Env var naming the server a client child process talks to.
const CLIENT_ADDR: &str = "RINGFORT_TEST_CLIENT_ADDR";
const CLIENTS: usize = 10_000;

/// All 10,000 connections open at once. The clients live in a child process so neither
/// side needs more than the 20,000 descriptors a sandbox without CAP_SYS_RESOURCE allows.
#[test]
fn ten_thousand_connections() {
    let (engine, addr) = start_echo(2);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "client_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT_ADDR, addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert_ne!(
            out.read_line(&mut line).unwrap(),
            0,
            "client child exited early"
        );
    }
    // Every connection is open and has echoed; the engine holds them all at once.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let m = engine.metrics();
    let conns: u64 = m.iter().map(|c| c.conns).sum();
    assert!(
        conns as usize >= CLIENTS,
        "the engine holds {conns} connections: {m:#?}"
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    engine.stop(Duration::from_secs(2));
    engine.wait().unwrap();
}

#[test]
#[ignore = "the client side of ten_thousand_connections, run in a child process"]
fn client_child() {
    let addr: std::net::SocketAddr = std::env::var(CLIENT_ADDR).unwrap().parse().unwrap();
    raise_nofile(CLIENTS as u64 + 100);
    let mut conns: Vec<_> = (0..CLIENTS).map(|_| connect(addr)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(format!("{i:08}\n").as_bytes()).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let want = format!("{i:08}\n");
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
    }
    println!("READY {}", conns.len());
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}
