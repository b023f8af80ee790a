//! The WAL driver through the engine: records appended from a handler are acknowledged
//! only once durable, and a restart replays every acknowledged record, byte for byte.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::wal::{Lsn, WalConfig};
use ringfort::{ConnId, Ctx, Engine, Handler, WalId};

/// "payload\n" -> append; reply "OK <lsn>\n" once durable.
struct Logger {
    addr: SocketAddr,
    dir: PathBuf,
    wal: Option<WalId>,
    waiting: VecDeque<(Lsn, ConnId)>,
    replayed: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Handler for Logger {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        let dir = self.dir.join(format!("core-{}", cx.core()));
        std::fs::create_dir_all(&dir).unwrap();
        let replayed = self.replayed.clone();
        let (wal, _) = cx
            .wal_open(&dir, WalConfig::default(), 0, |r, _arena| {
                replayed.lock().unwrap().push(r.payload.to_vec());
                Ok(())
            })
            .expect("wal open");
        self.wal = Some(wal);
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        while let Some(line) = take_line(data) {
            let lsn = cx
                .wal_append(self.wal.unwrap(), line.as_bytes())
                .expect("append");
            self.waiting.push_back((lsn, conn));
        }
    }

    fn on_wal_durable(&mut self, cx: &mut Ctx<'_, ()>, _wal: WalId, durable: Lsn) {
        while let Some(&(lsn, conn)) = self.waiting.front() {
            if lsn >= durable {
                break;
            }
            self.waiting.pop_front();
            let _ = cx.send_bytes(conn, format!("OK {lsn}\n").as_bytes());
        }
    }
}

/// Payloads seen by replay at start-up.
type Replayed = Arc<Mutex<Vec<Vec<u8>>>>;

fn start(dir: &std::path::Path) -> (Engine<()>, SocketAddr, Replayed) {
    let addr = free_addr();
    let replayed = Arc::new(Mutex::new(Vec::new()));
    let (d, r) = (dir.to_path_buf(), replayed.clone());
    let engine = Engine::start(config(1), move |_| Logger {
        addr,
        dir: d.clone(),
        wal: None,
        waiting: VecDeque::new(),
        replayed: r.clone(),
    })
    .unwrap();
    drop(connect(addr));
    (engine, addr, replayed)
}

#[test]
fn appends_are_acknowledged_once_durable_and_replayed_after_restart() {
    let dir = std::env::temp_dir().join(format!("ringfort-engine-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (engine, addr, replayed) = start(&dir);
    assert!(replayed.lock().unwrap().is_empty());
    let mut sent = Vec::new();
    let mut clients: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    for round in 0..200 {
        for (i, s) in clients.iter_mut().enumerate() {
            let rec = format!("record {round} from {i} {}", "p".repeat(round % 300));
            s.write_all(format!("{rec}\n").as_bytes()).unwrap();
            sent.push(rec);
        }
        for s in clients.iter_mut() {
            assert!(read_line(s).starts_with("OK "));
        }
    }
    drop(clients);
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();

    let (engine, _, replayed) = start(&dir);
    let got: Vec<String> = replayed
        .lock()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8(b.clone()).unwrap())
        .collect();
    assert_eq!(got.len(), sent.len());
    let (mut a, mut b) = (got.clone(), sent.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "every acknowledged record came back, byte for byte");
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
