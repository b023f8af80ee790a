//! Steady-state appends allocate nothing on the heap: a global allocator counts
//! allocations per thread, and the appending thread's count must not move.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};
use ringfort_wal::{Durability, Io, LogCore, Wal, WalConfig};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches only a
// const-initialised thread-local cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert!(allocs() > before);
    drop(v);
}

/// The sans-IO path on one thread: append (slices and chains), seal, "write", complete.
#[test]
fn core_append_seal_complete_allocates_nothing() {
    let cfg = common::small_config();
    let arena = Arena::new(PoolConfig {
        classes: vec![
            SizeClass {
                size: 4096,
                count: 64,
            },
            SizeClass {
                size: cfg.block_size,
                count: 128,
            },
        ],
        growth: Growth::Fixed,
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    })
    .unwrap();
    let mut core = LogCore::new(&cfg, 1).unwrap();
    let payload = vec![7u8; 300];
    let big = vec![9u8; 20_000];
    let round = |core: &mut LogCore| {
        for i in 0..10 {
            let p: &[u8] = if i == 8 { &big } else { &payload };
            if core.append(p).is_err() {
                core.refill(&arena).unwrap();
                core.append(p).unwrap();
            }
        }
        let mut chain = BufChain::new(1 << 20);
        chain.append_slice(&arena, &payload).unwrap();
        if let Err((chain, _)) = core.append_chain(chain) {
            core.refill(&arena).unwrap();
            core.append_chain(chain).map_err(|(_, e)| e).unwrap();
        }
        core.flush();
        while let Some(io) = core.next_io() {
            match io {
                Io::Create(plan) => {
                    core.complete_create(plan, Ok(()));
                }
                Io::Write(job) => {
                    let plan = job.seal();
                    assert!(!plan.is_empty());
                    core.complete_write(plan, Ok(()));
                }
            }
        }
    };
    for _ in 0..50 {
        round(&mut core);
    }
    let before = allocs();
    for _ in 0..500 {
        round(&mut core);
    }
    assert_eq!(allocs() - before, 0, "steady-state appends allocated");
    assert!(core.acked_lsn() > 5000);
    assert_eq!(core.in_flight(), 0);
}

/// The blocking driver: the appending thread allocates nothing per durable append.
#[test]
fn durable_appends_allocate_nothing_on_the_appender_thread() {
    let tmp = common::TempDir::new("zero-alloc");
    let cfg = WalConfig {
        durability: Durability::Sync,
        ..common::small_config()
    };
    let (wal, _) = Wal::open(tmp.path(), cfg).unwrap();
    let payload = vec![3u8; 256];
    for _ in 0..50 {
        wal.append(&payload).unwrap();
    }
    let before = allocs();
    for _ in 0..200 {
        wal.append(&payload).unwrap();
    }
    assert_eq!(allocs() - before, 0, "steady-state appends allocated");
    wal.close().unwrap();
}
