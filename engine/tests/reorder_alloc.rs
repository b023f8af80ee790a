//! A counting global allocator proves a [`ReorderWindow`] in its steady state allocates
//! nothing on the heap: not per reserve, not per complete, not per release, not per close.

use ringfort::reorder::ReorderWindow;

mod counting;

use counting::allocs_during;

/// A reply the size of a small inline value.
type Reply = [u64; 8];

#[test]
fn reserve_complete_pop_allocate_nothing() {
    const CAP: usize = 64;
    let mut w = ReorderWindow::<Reply>::new(CAP);
    let mut seqs = [0u64; CAP];
    let mut sum = 0u64;
    let n = allocs_during(|| {
        for round in 0..2_000u64 {
            // Fill the window, refuse one more, complete in a scrambled order with releases
            // in between, then drain.
            for s in seqs.iter_mut() {
                *s = w.reserve().unwrap();
            }
            assert!(w.reserve().is_err());
            for i in 0..CAP {
                let j = (i * 37 + round as usize) % CAP;
                let seq = seqs[j];
                w.complete(seq, [seq; 8]).unwrap();
                assert!(w.complete(seq, [0; 8]).is_err());
                if i % 5 == 0 {
                    w.drain_ready(|r| sum = sum.wrapping_add(r[0]));
                }
            }
            w.drain_ready(|r| sum = sum.wrapping_add(r[0]));
            assert_eq!(w.in_flight(), 0);
            // A close with replies stored, and a late reply after it.
            let a = w.reserve().unwrap();
            let b = w.reserve().unwrap();
            w.complete(b, [b; 8]).unwrap();
            w.cancel_all();
            assert!(w.complete(a, [a; 8]).is_err());
        }
    });
    std::hint::black_box(sum);
    assert_eq!(n, 0, "{n} heap allocations in steady-state reorder traffic");
}

#[test]
fn only_new_allocates_and_only_once() {
    let n = allocs_during(|| {
        let w = ReorderWindow::<Reply>::new(1024);
        std::hint::black_box(&w);
    });
    assert_eq!(n, 1, "the slot ring is one allocation");
}
