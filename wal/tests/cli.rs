//! Runs the `ringfort-wal` CLI on a real log directory, healthy and with injected damage.

mod common;

use std::process::Command;

use common::TempDir;
use ringfort_wal::format::segment_file_name;
use ringfort_wal::Wal;

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringfort-wal"))
        .args(args)
        .output()
        .expect("run ringfort-wal");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Writes 40 records, one batch each, and returns the directory and the offsets of the
/// batches in the first segment.
fn make_log() -> (TempDir, Vec<u64>) {
    let tmp = TempDir::new("cli");
    let (wal, _) = Wal::open(tmp.path(), common::small_config()).unwrap();
    for i in 0..40u64 {
        assert_eq!(wal.append(&common::payload(i, 500)).unwrap(), i + 1);
    }
    wal.close().unwrap();
    let (_, out) = cli(&["dump", tmp.path().to_str().unwrap()]);
    let offsets = out
        .lines()
        .filter(|l| l.contains("segment 00000000000000000001"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    (tmp, offsets)
}

#[test]
fn healthy_log() {
    let (tmp, _) = make_log();
    let dir = tmp.path().to_str().unwrap();
    let (code, out) = cli(&["stat", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records 40 first_lsn 1 next_lsn 41"), "{out}");
    assert!(out.contains("tail clean"), "{out}");
    let (code, out) = cli(&["dump", dir, "--from", "39", "--payload"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lsn 39 len 500 crc 0x"), "{out}");
    assert!(out.contains("lsn 40 len 500"), "{out}");
    assert!(!out.contains("lsn 38 "), "{out}");
    let hex: String = common::payload(39, 500)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(out.contains(&hex), "payload hex printed");
    let (code, out) = cli(&["verify", dir, "--strict"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verify: ok"), "{out}");
}

#[test]
fn verify_names_injected_corruption_and_fails() {
    let (tmp, offsets) = make_log();
    let dir = tmp.path().to_str().unwrap();
    let victim = offsets[10];
    let path = tmp.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[victim as usize + 40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (code, out) = cli(&["verify", dir]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("segment 00000000000000000001 offset {victim}")),
        "the damaged offset is named: {out}"
    );
    assert!(out.contains("corruption in the middle of the log"), "{out}");
    assert!(out.contains("verify: FAILED"), "{out}");
    // Opening in the default mode refuses the log; the CLI's dump stops at the damage.
    assert!(Wal::open(tmp.path(), common::small_config()).is_err());
    let (code, out) = cli(&["dump", dir]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("lsn 10 "), "{out}");
    assert!(!out.contains("lsn 11 "), "{out}");
}

#[test]
fn truncate_cuts_a_torn_tail_and_prefix() {
    let (tmp, offsets) = make_log();
    let dir = tmp.path().to_str().unwrap();
    let path = tmp.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = *offsets.last().unwrap() as usize;
    bytes[last + 100..].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (code, out) = cli(&["verify", dir]);
    assert_eq!(code, 0, "a torn tail is not corruption: {out}");
    assert!(out.contains("tail torn"), "{out}");
    let (code, _) = cli(&["verify", dir, "--strict"]);
    assert_eq!(code, 1);
    let (code, out) = cli(&["truncate", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("cut segment 00000000000000000001 to {last} B")),
        "{out}"
    );
    let (code, out) = cli(&["verify", dir, "--strict"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&["stat", dir]);
    assert_eq!(code, 0);
    let segments = out.lines().filter(|l| l.starts_with("segment ")).count();
    assert!(segments >= 1, "{out}");
    let (code, out) = cli(&["truncate", dir, "--prefix", "1000"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("removed {} segment(s)", segments - 1)),
        "{out}"
    );
    let (code, out) = cli(&["truncate", dir, "--mode", "bogus"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = cli(&["stat", "/nonexistent/ringfort-wal"]);
    assert_eq!(code, 2, "{out}");
}
