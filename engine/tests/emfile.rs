//! Running out of file descriptors: accept fails with EMFILE, the engine backs off and
//! keeps serving the connections it has, and accepts again once descriptors are back.
//! (Alone in its own test binary: it lowers this process's RLIMIT_NOFILE.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const CHILD_ADDR: &str = "RINGFORT_TEST_EMFILE_ADDR";
const CHILD_CONNS: usize = 20;

#[test]
fn accept_backs_off_on_emfile_and_keeps_serving() {
    let (engine, addr) = start_echo(1);
    let mut existing = connect(addr);
    assert_eq!(round_trip(&mut existing, b"before"), b"before");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "emfile_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ADDR, addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());

    // Exhaust the descriptor table for real (an armed multishot accept keeps the
    // RLIMIT_NOFILE it was submitted with, so lowering the limit would not be seen).
    let mut filler = Vec::new();
    loop {
        // SAFETY: dup of stderr; each result is closed below.
        let fd = unsafe { libc::dup(2) };
        if fd < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EMFILE)
            );
            break;
        }
        filler.push(fd);
    }
    to_child.write_all(b"GO\n").unwrap();
    to_child.flush().unwrap();

    // The child's connections queue in the kernel; accept hits EMFILE and backs off.
    let mut backoffs = 0;
    for _ in 0..250 {
        backoffs = engine.metrics()[0].accept_backoffs;
        if backoffs > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Existing connections are served all along.
    for i in 0..10 {
        let msg = format!("during {i}");
        assert_eq!(round_trip(&mut existing, msg.as_bytes()), msg.as_bytes());
    }
    for fd in filler {
        // SAFETY: each was returned by dup above and is closed once.
        unsafe { libc::close(fd) };
    }
    assert!(
        backoffs > 0,
        "accept never hit EMFILE: {:#?}",
        engine.metrics()
    );

    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert_ne!(
            from_child.read_line(&mut line).unwrap(),
            0,
            "client child died"
        );
    }
    drop(to_child);
    assert!(child.wait().unwrap().success());
    assert_eq!(round_trip(&mut existing, b"after"), b"after");
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}

#[test]
#[ignore = "the client side of accept_backs_off_on_emfile_and_keeps_serving"]
fn emfile_client() {
    let addr: std::net::SocketAddr = std::env::var(CHILD_ADDR).unwrap().parse().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let mut conns: Vec<_> = (0..CHILD_CONNS).map(|_| connect(addr)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(format!("{i:04}").as_bytes()).unwrap();
    }
    // These echoes arrive only once the server accepts again.
    for (i, s) in conns.iter_mut().enumerate() {
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, format!("{i:04}").as_bytes());
    }
    println!("READY");
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}
