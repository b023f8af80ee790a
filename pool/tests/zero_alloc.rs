//! A counting global allocator proves the steady state allocates nothing on the heap:
//! not per alloc/free pair, not per remote free, and not per BufChain append.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every call to `System`; the thread-local counter is const-initialized,
// so touching it never allocates (no recursion into the allocator).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Loop counts; Miri interprets every instruction, so it runs a hundredth.
const SCALE: usize = if cfg!(miri) { 1 } else { 100 };

fn allocs_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

fn arena() -> Arena {
    Arena::new(PoolConfig {
        classes: vec![
            SizeClass {
                size: 4096,
                count: 256,
            },
            SizeClass {
                size: 65536,
                count: 64,
            },
        ],
        growth: Growth::Chunks { max_chunks: 2 },
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    })
    .unwrap()
}

#[test]
fn alloc_free_pairs_allocate_nothing() {
    let arena = arena();
    let n = allocs_during(|| {
        for i in 0..1000 * SCALE {
            let mut b = arena.alloc(1 + i % 60_000).unwrap();
            b[0] = i as u8;
            std::hint::black_box(&b);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in alloc/free pairs");
}

#[test]
fn exhaustion_allocates_nothing() {
    let arena = arena();
    let held: Vec<_> = (0..512).map(|_| arena.alloc_class(0).unwrap()).collect();
    let n = allocs_during(|| {
        for _ in 0..10 * SCALE {
            assert!(arena.alloc_class(0).is_err());
        }
    });
    assert_eq!(n, 0, "{n} heap allocations while refusing");
    drop(held);
}

#[test]
fn remote_free_and_reclaim_allocate_nothing() {
    let arena = arena();
    let mut bufs: Vec<_> = (0..200).map(|_| arena.alloc_class(0).unwrap()).collect();
    let remote = std::thread::spawn(move || {
        // Warm this thread's token before counting.
        drop(bufs.pop());
        let before = ALLOCS.with(Cell::get);
        drop(bufs);
        ALLOCS.with(Cell::get) - before
    })
    .join()
    .unwrap();
    assert_eq!(remote, 0, "{remote} heap allocations in 199 remote frees");
    let n = allocs_during(|| {
        assert_eq!(arena.reclaim(), 200);
    });
    assert_eq!(n, 0);
}

#[test]
fn bufchain_appends_allocate_nothing_in_steady_state() {
    let arena = arena();
    // A chain reused per message, as a connection's receive chain is: its segment list
    // spills to the heap once and then keeps that room.
    let mut chain = BufChain::new(1 << 20);
    let payload = [7u8; 300];
    let one_round = |chain: &mut BufChain| {
        for _ in 0..100 {
            chain.append_slice(&arena, &payload).unwrap();
        }
        let head = chain.split_to(1000);
        std::hint::black_box(&head);
        chain.advance(chain.len() / 2);
        chain.clear();
    };
    one_round(&mut chain);
    let n = allocs_during(|| {
        for _ in 0..10 * SCALE {
            one_round(&mut chain);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in steady-state chain appends");

    // A fresh small chain (up to four segments) never touches the heap at all.
    let n = allocs_during(|| {
        for _ in 0..10 * SCALE {
            let mut c = BufChain::new(1 << 20);
            c.append_slice(&arena, &[1u8; 10_000]).unwrap();
            let shared = c.clone();
            std::hint::black_box((&c, &shared));
        }
    });
    assert_eq!(n, 0, "{n} heap allocations for fresh small chains");
}
