//! A client that sends requests but stops reading replies: the server stops reading it
//! once its outbound queue passes `limits.pause_outbox_bytes`, so server memory stays
//! bounded, and serves the rest once the client reads again.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, Handler};

const REPLY: usize = 256 << 10;
const REQUESTS: usize = 400;
const PAUSE_AT: usize = 4 << 20;

struct Big {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    /// Arena bytes in use when the core started (buffer rings).
    base: Arc<AtomicUsize>,
    /// Most arena bytes in use seen at the end of a tick.
    peak: Arc<AtomicUsize>,
}

fn arena_bytes(cx: &Ctx<'_, ()>) -> usize {
    cx.arena()
        .stats()
        .classes
        .iter()
        .map(|c| c.in_use * c.size)
        .sum()
}

impl Handler for Big {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        self.base.store(arena_bytes(cx), Ordering::Relaxed);
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        let reply = vec![b'x'; REPLY];
        while line_end(data).is_some() {
            if cx.backpressured(conn) {
                return;
            }
            take_line(data);
            let mut chain = BufChain::new(REPLY);
            chain.append_slice(cx.arena(), &reply).expect("arena");
            cx.send(conn, chain).expect("send");
            self.served.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_tick(&mut self, cx: &mut Ctx<'_, ()>) {
        self.peak.fetch_max(arena_bytes(cx), Ordering::Relaxed);
    }
}

#[test]
fn a_client_that_stops_reading_does_not_grow_server_memory() {
    let addr = free_addr();
    let served = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let base = Arc::new(AtomicUsize::new(0));
    let mut cfg = config(1);
    cfg.limits.pause_outbox_bytes = PAUSE_AT;
    let (s2, p2, b2) = (served.clone(), peak.clone(), base.clone());
    let engine = Engine::start(cfg, move |_| Big {
        addr,
        served: s2.clone(),
        base: b2.clone(),
        peak: p2.clone(),
    })
    .unwrap();

    let mut s = connect(addr);
    s.write_all("GET\n".repeat(REQUESTS).as_bytes()).unwrap();
    // Wait until the server has stopped making progress.
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = served.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let m = &engine.metrics()[0];
    assert!(m.read_pauses >= 1, "reading was never paused: {m:#?}");
    assert!(
        last < REQUESTS,
        "served all {last} requests without the client reading"
    );
    assert_eq!(m.evictions, 0, "paused, not evicted");
    let grown = peak.load(Ordering::Relaxed) - base.load(Ordering::Relaxed);
    // The queue stops at the pause threshold plus the reply that crossed it (and a ring
    // buffer block or two for the request bytes).
    let bound = PAUSE_AT + REPLY + (128 << 10);
    assert!(
        grown <= bound,
        "server arena grew by {grown} B, bound {bound} B"
    );

    // Now read: every reply arrives, so the paused requests were served after all.
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    while total < REQUESTS * REPLY {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed after {total} B");
        total += n;
    }
    assert_eq!(served.load(Ordering::Relaxed), REQUESTS);
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}
