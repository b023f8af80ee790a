//! Ordered pipelining across cores: requests are routed to random cores with random
//! delays, so replies complete out of order; they must still leave each connection in
//! request order, with the receive path never re-armed per request.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use ringfort::pool::BufChain;
use ringfort::reorder::Seq;
use ringfort::{ConnId, CoreId, Ctx, Engine, Handler, TimerId};

enum Msg {
    /// Serve request `id` for `conn` (on core `origin`) after `delay_ms`.
    Req {
        origin: CoreId,
        conn: ConnId,
        seq: Seq,
        id: u64,
        delay_ms: u64,
    },
    /// The reply to `id`, back on the connection's core.
    Resp { conn: ConnId, seq: Seq, id: u64 },
}

struct Router {
    addr: SocketAddr,
    /// Timer token -> (origin core, conn, seq, id).
    pending: HashMap<u64, (CoreId, ConnId, Seq, u64)>,
    next_token: u64,
}

impl Router {
    fn serve(&mut self, cx: &mut Ctx<'_, Msg>, origin: CoreId, conn: ConnId, seq: Seq, id: u64) {
        if origin == cx.core() {
            let reply = chain_of(cx, format!("{id}\n").as_bytes());
            cx.reply(conn, seq, reply).expect("reply");
        } else if let Err(full) = cx.submit_to(origin, Msg::Resp { conn, seq, id }) {
            panic!("channel full: {full}");
        }
    }
}

impl Handler for Router {
    type Msg = Msg;

    fn on_start(&mut self, cx: &mut Ctx<'_, Msg>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, Msg>, conn: ConnId, data: &mut BufChain) {
        while line_end(data).is_some() {
            let Ok(seq) = cx.begin_request(conn) else {
                // Window full: the rest is delivered again once replies drain.
                return;
            };
            let line = take_line(data).unwrap();
            let mut parts = line.split(' ').map(|p| p.parse::<u64>().unwrap());
            let (id, core, delay_ms) = (
                parts.next().unwrap(),
                parts.next().unwrap() as usize % cx.cores(),
                parts.next().unwrap(),
            );
            let origin = cx.core();
            let req = Msg::Req {
                origin,
                conn,
                seq,
                id,
                delay_ms,
            };
            if core == origin {
                self.on_message(cx, Some(origin), req);
            } else if cx.submit_to(core, req).is_err() {
                panic!("channel full");
            }
        }
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, Msg>, _from: Option<CoreId>, msg: Msg) {
        match msg {
            Msg::Req {
                origin,
                conn,
                seq,
                id,
                delay_ms: 0,
            } => self.serve(cx, origin, conn, seq, id),
            Msg::Req {
                origin,
                conn,
                seq,
                id,
                delay_ms,
            } => {
                self.next_token += 1;
                self.pending
                    .insert(self.next_token, (origin, conn, seq, id));
                cx.timer(Duration::from_millis(delay_ms), self.next_token)
                    .expect("timer");
            }
            Msg::Resp { conn, seq, id } => {
                let reply = chain_of(cx, format!("{id}\n").as_bytes());
                // The connection may have gone; that is not an error here.
                let _ = cx.reply(conn, seq, reply);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_, Msg>, _timer: TimerId, token: u64) {
        let (origin, conn, seq, id) = self.pending.remove(&token).expect("pending");
        self.serve(cx, origin, conn, seq, id);
    }
}

/// A new two-core routing engine and its address.
fn start_engine() -> (Engine<Msg>, SocketAddr) {
    let addr = free_addr();
    let mut cfg = config(2);
    cfg.limits.max_in_flight = 32;
    let e = Engine::start(cfg, move |_| Router {
        addr,
        pending: HashMap::new(),
        next_token: 0,
    })
    .expect("start");
    drop(connect(addr));
    (e, addr)
}

/// The engine the tests share.
fn engine() -> (&'static Engine<Msg>, SocketAddr) {
    static E: OnceLock<(Engine<Msg>, SocketAddr)> = OnceLock::new();
    let (e, a) = E.get_or_init(start_engine);
    (e, *a)
}

fn cases() -> u32 {
    if std::env::var_os("CI").is_some() {
        12
    } else {
        48
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn replies_leave_in_request_order(
        reqs in prop::collection::vec((0usize..4, prop_oneof![3 => Just(0u64), 1 => 1u64..6]), 1..200),
        conns in 1usize..4,
    ) {
        let (_, addr) = engine();
        let mut streams: Vec<_> = (0..conns).map(|_| connect(addr)).collect();
        for s in &mut streams {
            let mut batch = String::new();
            for (id, (core, delay)) in reqs.iter().enumerate() {
                batch.push_str(&format!("{id} {core} {delay}\n"));
            }
            // All requests pipelined in one write: far more than the in-flight bound.
            s.write_all(batch.as_bytes()).unwrap();
        }
        for s in streams {
            let mut r = BufReader::new(s);
            for id in 0..reqs.len() {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                prop_assert_eq!(line.trim_end().parse::<usize>().unwrap(), id);
            }
        }
    }
}

#[test]
fn multishot_receive_is_not_rearmed_per_request() {
    // Its own engine: the shared one's re-arms from other tests' connections would count.
    let (engine, addr) = start_engine();
    let before: u64 = engine.metrics().iter().map(|m| m.recv_rearms).sum();
    let mut s = connect(addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    for round in 0..200 {
        s.write_all(format!("{round} 0 0\n{round} 1 0\n").as_bytes())
            .unwrap();
        for _ in 0..2 {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line.trim_end(), round.to_string());
        }
    }
    let after: u64 = engine.metrics().iter().map(|m| m.recv_rearms).sum();
    // A re-arm is allowed when the kernel ends a multishot receive (a full buffer ring,
    // say); never one per request.
    assert!(
        after - before < 50,
        "{} re-arms for 400 requests",
        after - before
    );
}
