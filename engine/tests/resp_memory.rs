//! The RESP server at its memory budget (`--maxmemory`): writes are refused with Redis's
//! OOM error before any buffer class runs dry, every request still gets its reply, reads
//! and deletes keep working, deleting makes room again, and a restart loads everything
//! that was acknowledged into the same budget.

mod common;

use std::io::{BufReader, Write};
use std::process::Command;

use common::resp::{bulk, call, cmd, read_reply, server_bin, temp_dir, Opts, Server};

const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";
/// Requests in flight per batch: deep pipelining, as redis-benchmark -P does.
const PIPELINE: usize = 64;
/// 200 B values are compacted into 256 B blocks, the class that fills first.
const VALUE_LEN: usize = 200;

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{i}:").into_bytes();
    v.resize(VALUE_LEN, b'a' + (i % 26) as u8);
    v
}

fn opts(args: &[&'static str]) -> Opts<'static> {
    Opts {
        cores: 2,
        args: Vec::leak(args.to_vec()),
        ..Opts::default()
    }
}

/// One arena chunk per core (80 MiB each).
const BUDGET: [&str; 4] = ["--maxmemory", "160mb", "--durability", "buffered"];

#[test]
fn a_full_budget_refuses_writes_with_oom_and_keeps_serving() {
    let dir = temp_dir("maxmemory");
    let srv = Server::launch(&dir, &opts(&BUDGET));
    let mut s = srv.conn();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let (mut stored, mut refused) = (Vec::new(), 0usize);
    let mut next = 0usize;
    // Until a whole batch is refused: both shards are then at their reserve.
    loop {
        assert!(next < 400_000, "no write was refused after {next} keys");
        let mut batch = Vec::new();
        for i in next..next + PIPELINE {
            batch.extend(cmd(&[b"SET", format!("k:{i}").as_bytes(), &value(i)]));
        }
        s.write_all(&batch).unwrap();
        let mut refused_here = 0;
        for i in next..next + PIPELINE {
            // A lost reply would block here until the read timeout fails the test.
            let reply = read_reply(&mut r);
            if reply == b"+OK\r\n" {
                stored.push(i);
            } else {
                assert_eq!(
                    reply,
                    OOM,
                    "SET k:{i}: {:?}",
                    String::from_utf8_lossy(&reply)
                );
                refused_here += 1;
            }
        }
        next += PIPELINE;
        refused += refused_here;
        if refused_here == PIPELINE {
            break;
        }
    }
    assert!(
        stored.len() > 40_000,
        "only {} keys stored in 160 MiB",
        stored.len()
    );
    let count = |s: &mut std::net::TcpStream| call(s, &[b"DBSIZE"]);
    assert_eq!(count(&mut s), format!(":{}\r\n", stored.len()).into_bytes());
    assert_eq!(srv.info_field("ringfort_oom_refused"), refused.to_string());
    assert_eq!(srv.info_field("maxmemory"), (160u64 << 20).to_string());
    assert_eq!(srv.info_field("maxmemory_policy"), "noeviction");
    // INFO names the class that ran short: "256B AVAILABLE/AT_CAP core N".
    let tight = srv.info_field("ringfort_arena_tightest");
    let (size, rest) = tight.split_once("B ").unwrap_or_else(|| panic!("{tight}"));
    let (available, at_cap) = rest
        .split_once(" core ")
        .and_then(|(counts, _)| counts.split_once('/'))
        .unwrap_or_else(|| panic!("{tight}"));
    let (available, at_cap): (u64, u64) = (available.parse().unwrap(), at_cap.parse().unwrap());
    assert_eq!(size, "256", "{tight}");
    assert!(available < at_cap / 16 + PIPELINE as u64, "{tight}");
    assert!(srv.info_field("used_memory_rss").parse::<u64>().unwrap() > 80 << 20);

    // Reads and deletes are not refused; other writes are.
    for &i in stored.iter().step_by(997) {
        let k = format!("k:{i}");
        assert_eq!(
            call(&mut s, &[b"GET", k.as_bytes()]),
            bulk(&value(i)),
            "{k}"
        );
    }
    assert_eq!(call(&mut s, &[b"APPEND", b"k:0", b"more"]), OOM);
    assert_eq!(call(&mut s, &[b"PING"]), b"+PONG\r\n");
    let (gone, kept) = stored.split_at(2000);
    for i in gone {
        let k = format!("k:{i}");
        assert_eq!(call(&mut s, &[b"DEL", k.as_bytes()]), b":1\r\n", "{k}");
    }
    // Deleting made room on both shards.
    let mut added = Vec::new();
    for i in next..next + 100 {
        let k = format!("k:{i}");
        assert_eq!(
            call(&mut s, &[b"SET", k.as_bytes(), &value(i)]),
            b"+OK\r\n",
            "{k} after deletes"
        );
        added.push(i);
    }
    drop((s, r));

    // A crash at the budget: the restart replays every acknowledged write into it.
    srv.kill();
    let srv = Server::launch(&dir, &opts(&BUDGET));
    let mut s = srv.conn();
    let expect = kept.len() + added.len();
    assert_eq!(count(&mut s), format!(":{expect}\r\n").into_bytes());
    for &i in kept.iter().step_by(499).chain(&added) {
        let k = format!("k:{i}");
        assert_eq!(
            call(&mut s, &[b"GET", k.as_bytes()]),
            bulk(&value(i)),
            "{k}"
        );
    }
    for &i in gone.iter().step_by(101) {
        let k = format!("k:{i}");
        assert_eq!(call(&mut s, &[b"GET", k.as_bytes()]), b"$-1\r\n", "{k}");
    }
    drop(s);
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_budget_below_one_chunk_per_core_is_refused_at_start() {
    let dir = temp_dir("maxmemory-small");
    let out = Command::new(server_bin())
        .args([
            "--port",
            "0",
            "--cores",
            "2",
            "--maxmemory",
            "100mb",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with 50 MiB per core: {err}");
    assert!(
        err.contains("--maxmemory 104857600 gives each of the 2 cores 52428800 B")
            && err.contains("use at least 160mb"),
        "{err}"
    );
    for bad in ["12tb", "lots"] {
        let out = Command::new(server_bin())
            .args(["--port", "0", "--maxmemory", bad, "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--maxmemory"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
