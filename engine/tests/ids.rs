//! The small surface the C ABI builds on: ids as integers and back, `Ctx::is_open`, and
//! `Engine::stopping`.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, Handler, TimerId};

/// On "close\n": reports `is_open` before and after closing, then whether a second
/// close-and-check, a made-up timer id and a round-tripped timer id behave.
struct Probe {
    addr: SocketAddr,
    report: mpsc::Sender<String>,
}

impl Handler for Probe {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        while let Some(line) = take_line(data) {
            assert_eq!(line, "close");
            let before = cx.is_open(conn);
            let stale = ConnId::from_u64(conn.to_u64() ^ (1 << 32));
            let stale_open = cx.is_open(stale);
            cx.close(conn);
            let after = cx.is_open(conn);
            let timer = cx.timer(Duration::from_secs(60), 7).unwrap();
            let again = TimerId::from_u64(timer.to_u64());
            let made_up = cx.cancel_timer(TimerId::from_u64(u64::MAX));
            let cancelled = cx.cancel_timer(again);
            let twice = cx.cancel_timer(again);
            let _ = self.report.send(format!(
                "{before} {stale_open} {after} {made_up} {cancelled} {twice}"
            ));
        }
    }
}

#[test]
fn ids_round_trip_and_is_open_follows_close() {
    let addr = free_addr();
    let (tx, rx) = mpsc::channel();
    let engine = Engine::start(config(1), move |_| Probe {
        addr,
        report: tx.clone(),
    })
    .unwrap();
    let mut s = connect(addr);
    std::io::Write::write_all(&mut s, b"close\n").unwrap();
    let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(got, "true false false false true false");
    assert!(!engine.stopping());
    engine.stop(Duration::from_secs(1));
    assert!(engine.stopping());
    assert!(engine.post(0, ()).is_err(), "post after stop is refused");
    engine.wait().unwrap();
}
