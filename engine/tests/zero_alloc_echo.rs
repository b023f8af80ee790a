//! Zero heap allocations per echoed message in the steady state: a counting allocator
//! counts allocations made on the core threads once they are warm.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, Handler};

static CORE_ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    static ON_CORE: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

// SAFETY: defers to `System`; the bookkeeping touches only const-initialized
// thread-locals and atomics, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && ON_CORE.with(Cell::get) {
            CORE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && ON_CORE.with(Cell::get) {
            CORE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct MarkedEcho {
    addr: SocketAddr,
}

impl Handler for MarkedEcho {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        ON_CORE.with(|c| c.set(true));
        cx.listen(self.addr).expect("listen");
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        let all = data.split_to(data.len());
        cx.send(conn, all).expect("send");
    }
}

#[test]
fn echo_allocates_nothing_per_message_once_warm() {
    let addr = free_addr();
    let engine = Engine::start(config(2), move |_| MarkedEcho { addr }).unwrap();
    let mut conns: Vec<_> = (0..8).map(|_| connect(addr)).collect();
    let sizes = [100usize, 1000, 4096, 20_000];
    let mut run = |rounds: usize| {
        for r in 0..rounds {
            for (i, s) in conns.iter_mut().enumerate() {
                let msg = vec![(r + i) as u8; sizes[(r + i) % sizes.len()]];
                assert_eq!(round_trip(s, &msg), msg);
            }
        }
    };
    run(500);
    std::thread::sleep(Duration::from_millis(50));
    COUNTING.store(true, Ordering::SeqCst);
    run(2000);
    COUNTING.store(false, Ordering::SeqCst);
    let n = CORE_ALLOCS.load(Ordering::SeqCst);
    assert_eq!(
        n, 0,
        "{n} heap allocations on the core threads for 16,000 echoes"
    );
    engine.stop(Duration::from_secs(1));
    engine.wait().unwrap();
}
