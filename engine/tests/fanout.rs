//! Bounded fan-out: one publisher, subscribers on every core, one of which never reads.
//! The slow one is evicted with a reason; the others get every message, in order, and
//! nothing waits on the slow one.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringfort::outbox::OutboxLimits;
use ringfort::pool::BufChain;
use ringfort::{CloseReason, ConnId, CoreId, Ctx, Engine, Handler};

const MESSAGES: usize = 5000;
const SIZE: usize = 4096;
const BATCH: usize = 50;

enum Msg {
    Publish(BufChain),
}

struct Hub {
    addr: SocketAddr,
    subs: Vec<ConnId>,
    closes: Arc<Mutex<Vec<(ConnId, CloseReason)>>>,
}

impl Hub {
    fn publish(&mut self, cx: &mut Ctx<'_, Msg>, payload: &BufChain) {
        cx.publish(&self.subs, payload);
    }
}

impl Handler for Hub {
    type Msg = Msg;

    fn on_start(&mut self, cx: &mut Ctx<'_, Msg>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, data: &mut BufChain) {
        while let Some(line) = take_line(data) {
            if line == "SUB" {
                self.subs.push(conn);
                let ok = chain_of(cx, format!("OK {}\n", cx.core()).as_bytes());
                cx.send(conn, ok).unwrap();
            } else if let Some(args) = line.strip_prefix("PUB ") {
                let mut it = args.split(' ').map(|n| n.parse::<usize>().unwrap());
                let (first, count) = (it.next().unwrap(), it.next().unwrap());
                for i in first..first + count {
                    let mut body = format!("{i:08} ").into_bytes();
                    body.resize(SIZE - 1, b'.');
                    body.push(b'\n');
                    let payload = chain_of(cx, &body);
                    for core in 0..cx.cores() {
                        if core != cx.core() {
                            assert!(cx.submit_to(core, Msg::Publish(payload.clone())).is_ok());
                        }
                    }
                    self.publish(cx, &payload);
                }
                let done = chain_of(cx, b"DONE\n");
                cx.send(conn, done).unwrap();
            }
        }
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, Msg>, _from: Option<CoreId>, msg: Msg) {
        let Msg::Publish(payload) = msg;
        self.publish(cx, &payload);
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_, Msg>, conn: ConnId, reason: CloseReason) {
        self.subs.retain(|&c| c != conn);
        self.closes.lock().unwrap().push((conn, reason));
    }
}

#[test]
fn slow_subscriber_is_evicted_and_the_others_get_everything() {
    let addr = free_addr();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = config(2);
    cfg.limits.outbox = OutboxLimits {
        hard_bytes: 1 << 20,
        soft_bytes: 256 << 10,
        ..OutboxLimits::redis_pubsub_default()
    };
    cfg.limits.channel_capacity = 8192;
    // Small kernel buffers, so the backlog shows up in the outbound queue rather than in
    // tens of MiB of autotuned socket memory.
    cfg.net.send_buffer = Some(128 << 10);
    let c2 = closes.clone();
    let engine = Engine::start(cfg, move |_| Hub {
        addr,
        subs: Vec::new(),
        closes: c2.clone(),
    })
    .unwrap();

    // Subscribe until both cores have fast subscribers.
    let mut fast = Vec::new();
    let mut cores_seen = [0usize; 2];
    while fast.len() < 8 && (cores_seen[0] == 0 || cores_seen[1] == 0 || fast.len() < 4) {
        let mut s = connect(addr);
        s.write_all(b"SUB\n").unwrap();
        let line = read_line(&mut s);
        let core: usize = line.strip_prefix("OK ").unwrap().parse().unwrap();
        cores_seen[core] += 1;
        fast.push(s);
    }
    let mut slow = connect(addr);
    slow.set_read_timeout(None).unwrap();
    let rcvbuf: libc::c_int = 64 << 10;
    // SAFETY: a valid socket and a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&slow),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    slow.write_all(b"SUB\n").unwrap();

    let readers: Vec<_> = fast
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 16, s);
                let mut line = String::new();
                for i in 0..MESSAGES {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    assert_eq!(line.len(), SIZE, "message {i} truncated");
                    assert_eq!(&line[..8], format!("{i:08}"), "gap or reorder at {i}");
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // The publisher sends in acknowledged batches, as a client issuing PUBLISH commands
    // does; the slow subscriber's queue grows past its limit while the others keep up.
    let mut publisher = connect(addr);
    for first in (0..MESSAGES).step_by(BATCH) {
        publisher
            .write_all(format!("PUB {first} {BATCH}\n").as_bytes())
            .unwrap();
        assert_eq!(read_line(&mut publisher), "DONE");
    }
    for r in readers {
        r.join().unwrap();
    }
    // The slow subscriber was closed with a reason naming the limit.
    let mut evicted = None;
    for _ in 0..100 {
        evicted = closes.lock().unwrap().iter().find_map(|(_, r)| match r {
            CloseReason::Evicted(why) => Some(why.clone()),
            _ => None,
        });
        if evicted.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let why = evicted.unwrap_or_else(|| {
        let out = std::process::Command::new("ss")
            .args(["-tnmi", "state", "established"])
            .output()
            .unwrap();
        panic!(
            "the slow subscriber was not evicted; closes {:?}; metrics {:#?}\n{}",
            closes.lock().unwrap(),
            engine.metrics(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&addr.port().to_string()) || l.contains("skmem"))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(why.contains("hard limit"), "{why}");
    let evictions: u64 = engine.metrics().iter().map(|m| m.evictions).sum();
    assert_eq!(evictions, 1);
    drop(slow);
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}
