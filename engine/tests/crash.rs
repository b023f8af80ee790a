//! The RESP server's crash loop: SIGKILL at a random moment under a pipelined write load,
//! tear the tail of each shard's newest log segment, restart, and check that no
//! acknowledged write was lost. `RINGFORT_CRASH_CYCLES` sets the cycles (20 by default,
//! which is what CI runs; run 200 or more by hand).
//!
//! # The model and the oracle
//!
//! The load mixes three kinds of write, each pipelined 16 deep:
//! - `SET c<cycle>:<n>:<j> v<random>` on fresh keys;
//! - `APPEND log:<k> <unique chunk>` (not idempotent: replaying one twice or out of order
//!   shows);
//! - `INCR ctr:<k>` (logged as an absolute `SET`).
//!
//! A write is *acknowledged* when its reply was read before the kill. Between the kill and
//! the restart the test tears each shard's newest segment, as a power cut does to the
//! part of a log that was not yet synced: it finds the end `E` of the last record that
//! holds an acknowledged write (the start of the record after it, or the end of the
//! written data), never earlier than the end of the segment header, picks an offset in
//! `[E, end of the written data]`, and either truncates the file there or overwrites from
//! there to past the written data with random bytes. Everything before `E` is left alone:
//! tearing a record that was acknowledged would simulate losing synced data (a media
//! failure), which no log survives. Because the tear always runs to the end of the log,
//! no valid frame survives after it, so recovery sees a torn tail, never damage in the
//! middle.
//!
//! After each restart:
//! - every acknowledged `SET` of the last cycle, and a random sample of older ones,
//!   reads back with its value (all of them at the end);
//! - each `APPEND` key holds what it held at the previous check, followed by a prefix of
//!   the chunks sent to it since, at least as long as the acknowledged ones;
//! - each counter is at least its last acknowledged value and at most its previous value
//!   plus the increments sent since.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use common::resp::*;
use ringfort::wal::{LogReader, MemSegments, ReadOptions};

const APPEND_KEYS: usize = 3;
const COUNTERS: usize = 2;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What was sent and acknowledged to one `APPEND` key.
#[derive(Default)]
struct AppendKey {
    /// The value read back at the last check.
    base: Vec<u8>,
    /// Chunks sent since, in order, and how many of them were acknowledged.
    sent: Vec<String>,
    acked: usize,
}

/// What was sent and acknowledged to one counter.
#[derive(Default)]
struct Counter {
    base: i64,
    sent: i64,
    acked_max: i64,
}

/// Everything acknowledged so far.
#[derive(Default)]
struct Oracle {
    sets: Vec<(String, String)>,
    appends: Vec<AppendKey>,
    counters: Vec<Counter>,
    /// Payload markers of acknowledged log records: `key value` for SETs (counters
    /// included) and the chunk for APPENDs.
    acked_records: HashSet<Vec<u8>>,
}

/// What the tearing did over the run.
#[derive(Default, Debug)]
struct Tears {
    truncated: u64,
    garbled: u64,
    /// Segments with nothing after their last acknowledged record.
    untouched: u64,
    /// Written bytes truncated away or overwritten (garbage past the data included).
    bytes: u64,
    /// Unacknowledged records at or after the tear.
    records_cut: u64,
}

/// A log record's marker (see [`Oracle::acked_records`]), from its RESP payload
/// (`*N\r\n` then `$len\r\narg\r\n` per argument).
fn marker(payload: &[u8]) -> Option<Vec<u8>> {
    let mut args = Vec::new();
    let mut rest = &payload[payload.iter().position(|&b| b == b'\n')? + 1..];
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let len: usize = std::str::from_utf8(&rest[1..nl - 1]).ok()?.parse().ok()?;
        args.push(&rest[nl + 1..nl + 1 + len]);
        rest = &rest[nl + 1 + len + 2..];
    }
    match args.as_slice() {
        [name, key, value, ..] if name.eq_ignore_ascii_case(b"SET") => {
            Some([*key, b" ", *value].concat())
        }
        [name, _, chunk] if name.eq_ignore_ascii_case(b"APPEND") => Some(chunk.to_vec()),
        _ => None,
    }
}

/// The end of the written data: past it the segment holds only zeros (preallocated).
fn data_end(bytes: &[u8]) -> usize {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    end.div_ceil(4096) * 4096
}

/// The front of a segment file up to the first all-zero 1 MiB piece (the written data is
/// at the front of a preallocated file), and the file's length.
fn read_prefix(path: &Path) -> (Vec<u8>, u64) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut piece = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut piece).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&piece[..n]);
        if piece[..n].iter().all(|&b| b == 0) {
            break;
        }
    }
    (out, len)
}

/// Tears the newest segment of `wal_dir` after its last acknowledged record.
fn tear(wal_dir: &Path, oracle: &Oracle, rng: &mut Rng, tears: &mut Tears) {
    let newest = std::fs::read_dir(wal_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some((ringfort::wal::format::parse_segment_file_name(&n)?, n)))
        .max();
    let Some((id, name)) = newest else {
        tears.untouched += 1;
        return;
    };
    let path = wal_dir.join(&name);
    let (bytes, file_len) = read_prefix(&path);
    let written = data_end(&bytes);
    let mut records: Vec<(u64, bool)> = Vec::new();
    {
        let mut reader =
            LogReader::new(MemSegments::new([(id, &bytes[..])]), ReadOptions::default());
        while let Ok(Some(rec)) = reader.next_record() {
            let acked = marker(rec.payload).is_some_and(|m| oracle.acked_records.contains(&m));
            records.push((rec.offset, acked));
        }
    }
    let header = ringfort::wal::format::SEGMENT_HEADER_LEN;
    let mut keep = header;
    for (i, &(_, acked)) in records.iter().enumerate() {
        if acked {
            keep = keep.max(records.get(i + 1).map_or(written, |r| r.0 as usize));
        }
    }
    if keep as u64 >= file_len {
        tears.untouched += 1;
        return;
    }
    let end = written.max(keep).min(file_len as usize);
    // Half the time right at the end of the last acknowledged record, so that whatever
    // follows it (synced or not, but unacknowledged) is lost.
    let at = match rng.next() % 2 {
        0 => keep,
        _ => keep + (rng.next() as usize) % (end - keep + 1),
    };
    tears.records_cut += records.iter().filter(|r| r.0 as usize >= at).count() as u64;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    if rng.next() % 2 == 0 {
        f.set_len(at as u64).unwrap();
        tears.truncated += 1;
        tears.bytes += written.saturating_sub(at) as u64;
    } else {
        use std::os::unix::fs::FileExt;
        let to = (end + (rng.next() as usize) % (64 << 10)).min(file_len as usize);
        let junk: Vec<u8> = (at..to).map(|_| rng.next() as u8).collect();
        f.write_all_at(&junk, at as u64).unwrap();
        tears.garbled += 1;
        tears.bytes += junk.len() as u64;
    }
    f.sync_all().unwrap();
}

/// Checks `kvs` with pipelined GETs.
fn verify_sets(srv: &Server, kvs: &[&(String, String)], what: &str) {
    let mut s = srv.conn();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for chunk in kvs.chunks(64) {
        let mut buf = Vec::new();
        for (k, _) in chunk {
            buf.extend(cmd(&[b"GET", k.as_bytes()]));
        }
        s.write_all(&buf).unwrap();
        for (k, v) in chunk {
            let got = read_reply(&mut r);
            assert_eq!(
                String::from_utf8_lossy(&got),
                format!("${}\r\n{v}\r\n", v.len()),
                "{what}: acknowledged write of {k} lost"
            );
        }
    }
}

/// Checks the APPEND keys and counters against the oracle, then makes what was read the
/// base for the next cycle.
fn verify_and_rebase(srv: &Server, oracle: &mut Oracle, what: &str) {
    let mut s = srv.conn();
    for (k, a) in oracle.appends.iter_mut().enumerate() {
        let key = format!("log:{k}");
        let got = call(&mut s, &[b"GET", key.as_bytes()]);
        let value = if got == b"$-1\r\n" {
            Vec::new()
        } else {
            let start = got.iter().position(|&b| b == b'\n').unwrap() + 1;
            got[start..got.len() - 2].to_vec()
        };
        assert!(
            value.starts_with(&a.base),
            "{what}: {key} lost acknowledged appends: had {} B, now {} B",
            a.base.len(),
            value.len()
        );
        let mut rest = &value[a.base.len()..];
        let mut n = 0;
        while n < a.sent.len() && rest.starts_with(a.sent[n].as_bytes()) {
            rest = &rest[a.sent[n].len()..];
            n += 1;
        }
        assert!(
            rest.is_empty(),
            "{what}: {key} holds bytes that were never appended in order: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(80)])
        );
        assert!(
            n >= a.acked,
            "{what}: {key} lost acknowledged appends ({n} of {} acknowledged came back)",
            a.acked
        );
        a.base = value;
        a.sent.clear();
        a.acked = 0;
    }
    for (k, c) in oracle.counters.iter_mut().enumerate() {
        let key = format!("ctr:{k}");
        let got = call(&mut s, &[b"GET", key.as_bytes()]);
        let value: i64 = if got == b"$-1\r\n" {
            0
        } else {
            let text = String::from_utf8(got).unwrap();
            text.lines().nth(1).unwrap().parse().unwrap()
        };
        assert!(
            value >= c.acked_max && value <= c.base + c.sent,
            "{what}: {key} is {value}, acknowledged up to {}, at most {} sent",
            c.acked_max,
            c.base + c.sent
        );
        c.base = value;
        c.sent = 0;
        c.acked_max = value;
    }
}

#[test]
fn crash_loop_with_torn_tails_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("RINGFORT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = temp_dir("crash");
    // Small checkpoints, so checkpoints and log truncation race with the kills too; and
    // room for the keyspace of a long release-mode run (arenas grow only as they fill).
    let args = [
        "--checkpoint-bytes",
        "262144",
        "--wal-segment-size",
        "75497472",
        "--maxmemory",
        "4gb",
    ];
    let mut oracle = Oracle {
        appends: (0..APPEND_KEYS).map(|_| AppendKey::default()).collect(),
        counters: (0..COUNTERS).map(|_| Counter::default()).collect(),
        ..Oracle::default()
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut tears = Tears::default();
    let mut acked_writes = 0u64;
    let mut first_of_cycle = 0;
    for cycle in 0..cycles {
        let srv = Server::start(&dir, &args);
        let what = format!("cycle {cycle}");
        let mut sample: Vec<&(String, String)> = oracle.sets[first_of_cycle..].iter().collect();
        for _ in 0..256.min(first_of_cycle) {
            sample.push(&oracle.sets[(rng.next() as usize) % first_of_cycle]);
        }
        verify_sets(&srv, &sample, &what);
        verify_and_rebase(&srv, &mut oracle, &what);
        first_of_cycle = oracle.sets.len();
        // Write, pipelined, until killed: the kill comes from another thread, so it
        // lands at any point of a batch (requests in flight, records being written or
        // synced, replies on their way).
        let kill_after = Duration::from_millis(50 + rng.next() % 400);
        let pid = srv.child.id() as libc::pid_t;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            // SAFETY: sends SIGKILL to our own child, which has not been reaped yet (the
            // test waits for it only after joining this thread), so the pid is still its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        let mut s = srv.conn();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut n = 0usize;
        'write: loop {
            enum Op {
                Set(String, String),
                Append(usize, String),
                Incr(usize),
            }
            let batch: Vec<Op> = (0..16)
                .map(|j| match j % 8 {
                    3 => Op::Append(
                        (rng.next() as usize) % APPEND_KEYS,
                        format!("<{cycle}.{n}.{j}>"),
                    ),
                    6 => Op::Incr((rng.next() as usize) % COUNTERS),
                    _ => Op::Set(
                        format!("c{cycle}:{n}:{j}"),
                        format!("v{}", rng.next() % 1_000_000),
                    ),
                })
                .collect();
            let mut buf = Vec::new();
            for op in &batch {
                buf.extend(match op {
                    Op::Set(k, v) => cmd(&[b"SET", k.as_bytes(), v.as_bytes()]),
                    Op::Append(k, c) => {
                        cmd(&[b"APPEND", format!("log:{k}").as_bytes(), c.as_bytes()])
                    }
                    Op::Incr(k) => cmd(&[b"INCR", format!("ctr:{k}").as_bytes()]),
                });
                match op {
                    Op::Append(k, c) => oracle.appends[*k].sent.push(c.clone()),
                    Op::Incr(k) => oracle.counters[*k].sent += 1,
                    Op::Set(..) => {}
                }
            }
            if s.write_all(&buf).is_err() {
                break;
            }
            for op in batch {
                let mut line = Vec::new();
                // The kill may cut a reply short: only a whole one acknowledges.
                let whole = matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0)
                    && line.ends_with(b"\r\n");
                if !whole {
                    break 'write;
                }
                match op {
                    Op::Set(k, v) if line == b"+OK\r\n" => {
                        oracle.acked_records.insert(format!("{k} {v}").into_bytes());
                        oracle.sets.push((k, v));
                    }
                    Op::Append(k, c) if line.starts_with(b":") => {
                        let a = &mut oracle.appends[k];
                        a.acked += 1;
                        assert_eq!(a.sent[a.acked - 1], c, "appends acknowledged out of order");
                        // The first append to a missing key is logged as a SET.
                        oracle
                            .acked_records
                            .insert(format!("log:{k} {c}").into_bytes());
                        oracle.acked_records.insert(c.into_bytes());
                    }
                    Op::Incr(k) if line.starts_with(b":") => {
                        let v: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                            .unwrap()
                            .parse()
                            .unwrap();
                        let c = &mut oracle.counters[k];
                        c.acked_max = c.acked_max.max(v);
                        oracle
                            .acked_records
                            .insert(format!("ctr:{k} {v}").into_bytes());
                    }
                    _ => panic!(
                        "{what}: unexpected reply {:?}",
                        String::from_utf8_lossy(&line)
                    ),
                }
                acked_writes += 1;
            }
            n += 1;
        }
        killer.join().unwrap();
        srv.kill();
        for shard in 0..2 {
            let wal = dir.join(format!("shard-{shard}")).join("wal");
            tear(&wal, &oracle, &mut rng, &mut tears);
        }
    }
    let srv = Server::start(&dir, &args);
    verify_sets(&srv, &oracle.sets.iter().collect::<Vec<_>>(), "final check");
    verify_and_rebase(&srv, &mut oracle, "final check");
    eprintln!(
        "crash loop: {cycles} SIGKILL cycles, {acked_writes} acknowledged writes \
         ({} SETs, {} APPEND bytes, counters at {:?}), 0 lost; tails torn: {} truncated, \
         {} overwritten with garbage, {} left whole; {} bytes and {} unacknowledged records \
         torn off",
        oracle.sets.len(),
        oracle.appends.iter().map(|a| a.base.len()).sum::<usize>(),
        oracle.counters.iter().map(|c| c.base).collect::<Vec<_>>(),
        tears.truncated,
        tears.garbled,
        tears.untouched,
        tears.bytes,
        tears.records_cut
    );
    assert!(
        tears.truncated + tears.garbled > 0,
        "no tail was ever torn: {tears:?}"
    );
    assert!(
        tears.records_cut > 0 || cycles < 10,
        "no kill ever left an unacknowledged record in the log to tear: {tears:?}"
    );
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}
