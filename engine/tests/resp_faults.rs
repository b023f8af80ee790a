//! The RESP server under write-ahead-log faults: injected into its process through
//! `RINGFORT_FAULTS` (the server is built with the engine's `fault-injection` feature),
//! and real ones from a small tmpfs that fills up.
//!
//! In each case: the write whose record failed gets an error naming the cause, and it is
//! taken back (memory matches the log again, so later writes never build on it); reads
//! keep working; INFO counts the failure; writes work again once the fault is gone; and a
//! restart finds every acknowledged write.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::resp::*;

fn one_core<'a>(args: &'a [&'a str], env: &'a [(&'a str, &'a str)]) -> Opts<'a> {
    Opts {
        cores: 1,
        args,
        env,
        nofile: None,
    }
}

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

/// The third group commit's `fdatasync` fails with EIO: that write is refused and taken
/// back, its segment is abandoned, and the log carries on in a new one.
#[test]
fn a_failed_fsync_fails_its_write_takes_it_back_and_the_log_carries_on() {
    let dir = temp_dir("fault-fsync");
    let srv = Server::launch(&dir, &one_core(&[], &[("RINGFORT_FAULTS", "fsync@3=EIO")]));
    let mut s = srv.conn();
    assert_eq!(call(&mut s, &[b"SET", b"a", b"1"]), b"+OK\r\n");
    assert_eq!(call(&mut s, &[b"SET", b"k", b"v1"]), b"+OK\r\n");
    let failed = text(call(&mut s, &[b"APPEND", b"k", b"-lost"]));
    assert!(
        failed.starts_with("-ERR write-ahead log failed, the write is not durable:")
            && failed.contains("Input/output error"),
        "{failed:?}"
    );
    // Taken back: the value is as the log has it, and the next APPEND builds on that.
    assert_eq!(call(&mut s, &[b"GET", b"k"]), bulk(b"v1"));
    assert_eq!(call(&mut s, &[b"APPEND", b"k", b"+kept"]), b":7\r\n");
    assert_eq!(call(&mut s, &[b"GET", b"a"]), bulk(b"1"));
    assert_eq!(srv.info_field("ringfort_wal_failures"), "1");
    let last = srv.info_field("ringfort_wal_last_error");
    assert!(
        last.contains("sync") && last.contains("Input/output error"),
        "{last}"
    );
    let segments = std::fs::read_dir(dir.join("shard-0").join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count();
    assert!(segments >= 2, "the log did not move to a new segment");
    drop(s);
    srv.stop();
    let srv = Server::launch(&dir, &one_core(&[], &[]));
    let mut s = srv.conn();
    assert_eq!(call(&mut s, &[b"GET", b"k"]), bulk(b"v1+kept"));
    assert_eq!(call(&mut s, &[b"GET", b"a"]), bulk(b"1"));
    drop(s);
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Asserts that `times` SETs in a row are refused with the log's ENOSPC error and taken
/// back, while reads (`key` holds `value`) and PING keep working.
fn refused_for_space(s: &mut std::net::TcpStream, times: usize, key: &[u8], value: &[u8]) {
    for attempt in 0..times {
        let reply = text(call(s, &[b"SET", b"new", b"value"]));
        assert!(
            reply.starts_with("-ERR write-ahead log failed") && reply.contains("No space left"),
            "attempt {attempt}: {reply:?}"
        );
        assert_eq!(call(s, &[b"GET", b"new"]), b"$-1\r\n", "taken back");
        assert_eq!(call(s, &[b"GET", key]), bulk(value), "reads keep working");
        assert_eq!(call(s, &[b"PING"]), b"+PONG\r\n");
    }
}

/// Three segment preallocations in a row find the disk full (injected ENOSPC): each write
/// meanwhile gets the error, reads keep working, and the fourth attempt succeeds.
#[test]
fn injected_enospc_fails_writers_until_space_returns() {
    let dir = temp_dir("fault-enospc");
    let srv = Server::launch(&dir, &one_core(&[], &[]));
    let mut s = srv.conn();
    for i in 0..20 {
        let k = format!("old:{i}");
        assert_eq!(call(&mut s, &[b"SET", k.as_bytes(), b"x"]), b"+OK\r\n");
    }
    drop(s);
    srv.stop();
    // A restarted log continues in a new segment, created at the first write.
    let env = [("RINGFORT_FAULTS", "fallocate@1+3=ENOSPC")];
    let srv = Server::launch(&dir, &one_core(&[], &env));
    let mut s = srv.conn();
    refused_for_space(&mut s, 3, b"old:7", b"x");
    assert_eq!(call(&mut s, &[b"SET", b"new", b"value"]), b"+OK\r\n");
    assert_eq!(srv.info_field("ringfort_wal_failures"), "3");
    drop(s);
    srv.stop();
    let srv = Server::launch(&dir, &one_core(&[], &[]));
    let mut s = srv.conn();
    assert_eq!(call(&mut s, &[b"GET", b"new"]), bulk(b"value"));
    assert_eq!(call(&mut s, &[b"DBSIZE"]), b":21\r\n");
    drop(s);
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A tmpfs mounted for the test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Panics, saying why, where mounting is not allowed: this test needs a real file
    /// system that fills up, and must not pass without one.
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "cannot mount a {size} tmpfs on {} ({status:?}): this test needs root \
             (CAP_SYS_ADMIN) to fill a real file system",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a file of zeros until the file system says ENOSPC.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 1 << 20];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// A real full disk: a 200 MiB tmpfs holds one 72 MiB log segment and a file that takes
/// the rest. The next segment cannot be preallocated, so writes fail with ENOSPC while
/// reads go on; once the file is removed, writes succeed again. (No spare segments: a
/// ready spare is space set aside, and would let the next segment start on a full disk.)
#[test]
fn a_full_tmpfs_fails_writers_until_space_returns() {
    let fs = Tmpfs::mount("200m");
    let dir = fs.0.join("data");
    let args = ["--wal-segment-size", "75497472", "--wal-spares", "0"];
    let srv = Server::launch(&dir, &one_core(&args, &[]));
    let mut s = srv.conn();
    for i in 0..50 {
        let k = format!("old:{i}");
        assert_eq!(call(&mut s, &[b"SET", k.as_bytes(), b"before"]), b"+OK\r\n");
    }
    drop(s);
    srv.stop();
    let filler = fs.0.join("filler");
    fill(&filler);
    let srv = Server::launch(&dir, &one_core(&args, &[]));
    let mut s = srv.conn();
    refused_for_space(&mut s, 3, b"old:42", b"before");
    let failures: u64 = srv.info_field("ringfort_wal_failures").parse().unwrap();
    assert!(failures >= 3, "{failures}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(call(&mut s, &[b"SET", b"new", b"value"]), b"+OK\r\n");
    assert_eq!(call(&mut s, &[b"APPEND", b"new", b"+more"]), b":10\r\n");
    drop(s);
    srv.stop();
    let srv = Server::launch(&dir, &one_core(&args, &[]));
    let mut s = srv.conn();
    assert_eq!(call(&mut s, &[b"GET", b"new"]), bulk(b"value+more"));
    assert_eq!(call(&mut s, &[b"GET", b"old:0"]), bulk(b"before"));
    drop(s);
    srv.stop();
    drop(fs);
}
