//! Zero-copy sends to a local peer. The kernel copies `SEND_ZC` data bound for a local
//! socket anyway (it cannot let a peer that never reads pin the sender's memory), and says
//! so in the notification. A connection that learns this sends by copy from then on:
//! zero copy there is a copy plus a notification and a pinned block.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, EngineConfig, Handler};

/// Above the lowered threshold, so every reply qualifies for zero copy.
const REPLY: usize = 64 << 10;
const ROUND_TRIPS: usize = 20;

fn pattern(i: usize) -> u8 {
    (i * 13 + i / 509) as u8
}

struct Big {
    addr: std::net::SocketAddr,
}

impl Handler for Big {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        while let Some(line) = take_line(data) {
            assert_eq!(line, "big", "unknown request");
            let bytes: Vec<u8> = (0..REPLY).map(pattern).collect();
            let reply = chain_of(cx, &bytes);
            cx.send(conn, reply).expect("send");
        }
    }
}

#[test]
fn a_loopback_connection_stops_zero_copy_once_the_kernel_reports_a_copy() {
    let addr = free_addr();
    let cfg = EngineConfig {
        send_zc_threshold: 16 << 10,
        ..config(1)
    };
    let engine = ringfort::Engine::start(cfg, move |_| Big { addr }).expect("engine start");
    let features = engine.features().clone();
    assert!(
        features.send_zc && features.zc_report_usage,
        "this kernel lacks SEND_ZC or its usage report (Linux 6.2+), so this cannot be \
         tested here: {features}"
    );
    let want: Vec<u8> = (0..REPLY).map(pattern).collect();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for n in 0..ROUND_TRIPS {
        s.write_all(b"big\n").unwrap();
        let mut got = vec![0; REPLY];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("reply {n}: {e}"));
        assert!(got == want, "reply {n} differs from what was sent");
    }
    drop(s);
    engine.stop(Duration::from_secs(5));
    let m = engine.wait().expect("clean stop").remove(0);
    assert!(m.sends_zc >= 1, "no reply went out zero-copy: {m:?}");
    assert!(
        m.zc_copied >= 1,
        "no notification reported the loopback copy: {m:?}"
    );
    assert!(
        m.sends_zc < ROUND_TRIPS as u64 && m.sends_copy >= 1,
        "zero copy stayed on after the kernel reported copying: {m:?}"
    );
}
