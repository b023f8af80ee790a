//! File operations on the ring: open, fallocate, fixed-buffer write and read (O_DIRECT
//! with its alignment checked), fdatasync.

mod common;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, FileDone, Handler, OpId};

/// (step token, result, bytes of the buffer handed back).
type Step = (u64, Result<u32, String>, Option<Vec<u8>>);

/// Steps through open -> fallocate -> write -> fdatasync -> read, reporting each result.
struct FileJob {
    path: PathBuf,
    fd: i32,
    report: mpsc::Sender<Step>,
}

const OPEN: u64 = 1;
const ALLOC: u64 = 2;
const WRITE: u64 = 3;
const SYNC: u64 = 4;
const READ: u64 = 5;
const LEN: usize = 8192;

impl Handler for FileJob {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        let path = self.path.to_str().unwrap().to_string();
        cx.file_open(
            &path,
            libc::O_CREAT | libc::O_RDWR | libc::O_DIRECT,
            0o644,
            OPEN,
        )
        .unwrap();
    }

    fn on_data(&mut self, _cx: &mut Ctx<'_, ()>, _conn: ConnId, _data: &mut BufChain) {}

    fn on_file(&mut self, cx: &mut Ctx<'_, ()>, _op: OpId, done: FileDone) {
        let result = done.result.as_ref().map(|&n| n).map_err(|e| e.to_string());
        let bytes = done.buf.as_ref().map(|b| b[..LEN].to_vec());
        self.report
            .send((done.token, result.clone(), bytes))
            .unwrap();
        let Ok(n) = result else {
            return;
        };
        match done.token {
            OPEN => {
                self.fd = n as i32;
                cx.file_allocate(self.fd, 0, 0, 1 << 20, ALLOC);
            }
            ALLOC => {
                let mut buf = cx.arena().alloc(LEN).unwrap();
                for (i, b) in buf[..LEN].iter_mut().enumerate() {
                    *b = (i % 253) as u8;
                }
                Ctx::<()>::check_direct(&buf, LEN, 4096, 4096).unwrap();
                assert!(Ctx::<()>::check_direct(&buf, 100, 4096, 4096).is_err());
                cx.file_write(self.fd, buf, LEN, 4096, WRITE);
            }
            WRITE => {
                cx.file_sync(self.fd, true, SYNC);
            }
            SYNC => {
                let mut buf = cx.arena().alloc(LEN).unwrap();
                buf.fill(0);
                cx.file_read(self.fd, buf, LEN, 4096, READ);
            }
            _ => {}
        }
    }
}

#[test]
fn open_allocate_write_sync_read_on_the_ring() {
    let path = std::env::temp_dir().join(format!("ringfort-files-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    let engine = Engine::start(config(1), move |_| FileJob {
        path: p.clone(),
        fd: -1,
        report: tx.clone(),
    })
    .unwrap();
    let mut steps = Vec::new();
    while steps.len() < 5 {
        let (token, result, bytes) = rx.recv_timeout(Duration::from_secs(30)).expect("step");
        let n = result.unwrap_or_else(|e| panic!("step {token} failed: {e}"));
        steps.push(token);
        match token {
            WRITE => assert_eq!(n as usize, LEN),
            READ => {
                assert_eq!(n as usize, LEN);
                let want: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
                assert_eq!(bytes.unwrap(), want, "read back differs");
            }
            _ => {}
        }
    }
    assert_eq!(steps, [OPEN, ALLOC, WRITE, SYNC, READ]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        1 << 20,
        "fallocate sized the file"
    );
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
    let _ = std::fs::remove_file(&path);
}
