//! Arena behaviour at its bounds: exhaustion as a value, growth by whole chunks up to the
//! cap, counters, registration data, which arena a block belongs to, and the report of what
//! backing it got.

use ringfort_pool::{
    Arena, Backing, BackingPref, Growth, NumaPolicy, PoolConfig, PoolError, Registration,
    SizeClass, MAX_IOVEC_LEN,
};

fn config(growth: Growth) -> PoolConfig {
    PoolConfig {
        classes: vec![
            SizeClass {
                size: 4096,
                count: 8,
            },
            SizeClass {
                size: 1 << 20,
                count: 2,
            },
        ],
        growth,
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    }
}

#[test]
fn fixed_arena_fails_with_a_value_and_counts_it() {
    let arena = Arena::new(config(Growth::Fixed)).unwrap();
    let held: Vec<_> = (0..8).map(|_| arena.alloc(100).unwrap()).collect();
    let err = arena.alloc(100).unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Exhausted {
                class: 0,
                size: 4096,
                in_use: 8,
                chunks: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("exhausted"));
    // Other classes still serve.
    assert!(arena.alloc(5000).is_ok());
    let s = arena.stats();
    assert_eq!(s.classes[0].failures, 1);
    assert_eq!(s.classes[0].in_use, 8);
    assert_eq!(s.classes[0].high_water, 8);
    assert_eq!(s.classes[0].capacity, 8);
    drop(held);
    assert_eq!(arena.stats().classes[0].in_use, 0);
    assert_eq!(arena.stats().classes[0].high_water, 8);
}

#[test]
fn growth_maps_whole_chunks_up_to_the_cap() {
    let arena = Arena::new(config(Growth::Chunks { max_chunks: 3 })).unwrap();
    assert_eq!(arena.stats().chunks.len(), 1);
    let mut held = Vec::new();
    for _ in 0..24 {
        held.push(arena.alloc_class(0).unwrap());
    }
    let s = arena.stats();
    assert_eq!(s.chunks.len(), 3);
    assert_eq!(s.classes[0].capacity, 24);
    assert_eq!(s.classes[1].capacity, 6, "growth maps every class's share");
    assert!(matches!(
        arena.alloc_class(0),
        Err(PoolError::Exhausted { chunks: 3, .. })
    ));
    assert_eq!(arena.iovecs().len(), arena.max_iovecs());
}

#[test]
fn headroom_counts_chunks_not_yet_mapped_and_returns_only_once_reclaimed() {
    let arena = Arena::new(config(Growth::Chunks { max_chunks: 3 })).unwrap();
    assert_eq!(arena.headroom(0), Some((24, 24)));
    assert_eq!(arena.headroom(1), Some((6, 6)));
    assert_eq!(arena.headroom(2), None);
    let mut held: Vec<_> = (0..10).map(|_| arena.alloc_class(0).unwrap()).collect();
    assert_eq!(arena.stats().chunks.len(), 2);
    assert_eq!(arena.headroom(0), Some((14, 24)));
    assert_eq!(
        arena.headroom(1),
        Some((6, 6)),
        "growth took nothing of class 1"
    );
    let away = held.pop().unwrap();
    std::thread::spawn(move || drop(away)).join().unwrap();
    assert_eq!(
        arena.headroom(0),
        Some((14, 24)),
        "a remote free waits for reclaim"
    );
    arena.reclaim();
    assert_eq!(arena.headroom(0), Some((15, 24)));
    held.extend((0..15).map(|_| arena.alloc_class(0).unwrap()));
    assert_eq!(arena.headroom(0), Some((0, 24)));
    assert!(arena.alloc_class(0).is_err());
}

#[test]
fn oversized_and_unknown_requests_are_errors() {
    let arena = Arena::new(config(Growth::Fixed)).unwrap();
    let e = arena.alloc((1 << 20) + 1).unwrap_err();
    assert!(
        matches!(
            e,
            PoolError::TooLarge {
                largest: 1048576,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("BufChain"));
    assert!(matches!(
        arena.alloc_class(9),
        Err(PoolError::NoSuchClass {
            class: 9,
            classes: 2
        })
    ));
}

#[test]
fn registration_data_covers_every_buffer_once() {
    let arena = Arena::new(config(Growth::Chunks { max_chunks: 2 })).unwrap();
    let held: Vec<_> = (0..16).map(|_| arena.alloc_class(0).unwrap()).collect();
    let big: Vec<_> = (0..4).map(|_| arena.alloc_class(1).unwrap()).collect();
    let iovecs = arena.iovecs();
    assert!(iovecs.len() <= arena.max_iovecs());
    assert!(iovecs.iter().all(|v| v.iov_len <= MAX_IOVEC_LEN));
    let mut seen = std::collections::HashSet::new();
    for (ptr, cap, slot) in held
        .iter()
        .map(|b| (b.as_ptr(), b.capacity(), b.reg_slot()))
        .chain(big.iter().map(|b| (b.as_ptr(), b.capacity(), b.reg_slot())))
    {
        let iov = iovecs[slot.index as usize];
        let base = iov.iov_base as usize;
        assert_eq!(
            base + slot.offset,
            ptr as usize,
            "reg slot points elsewhere"
        );
        assert!(
            slot.offset + cap <= iov.iov_len,
            "buffer straddles its iovec"
        );
        assert!(seen.insert(ptr as usize));
    }
    assert_eq!(arena.memlock_bytes(), 2 * arena.stats().chunks[0].bytes);
}

#[test]
fn blocks_know_which_arena_they_belong_to() {
    let a = Arena::new(config(Growth::Fixed)).unwrap();
    let b = Arena::new(config(Growth::Fixed)).unwrap();
    let from_a = a.alloc(100).unwrap();
    let from_b = b.alloc(100).unwrap();
    // Same class and slot in both arenas: only ownership tells them apart.
    assert_eq!(from_a.reg_slot(), from_b.reg_slot());
    assert!(from_a.is_from(&a) && !from_a.is_from(&b));
    assert!(from_b.is_from(&b) && !from_b.is_from(&a));
    let shared = from_a.into_shared();
    assert!(shared.is_from(&a) && !shared.is_from(&b));
}

#[test]
fn report_names_backing_and_placement() {
    let arena = Arena::new(config(Growth::Fixed)).unwrap();
    let report = arena.report();
    assert_eq!(report.backing(), Backing::SmallPages);
    let line = report.to_string();
    assert!(line.contains("4 KiB pages"), "{line}");
    assert!(line.contains("numa: first touch"), "{line}");
    assert!(line.contains("registration: off"), "{line}");
    assert_eq!(arena.stats().classes[0].backing, Backing::SmallPages);
}

#[test]
fn thp_backing_reports_what_the_kernel_gave() {
    let mut c = config(Growth::Fixed);
    c.backing = BackingPref::TransparentHuge;
    let arena = Arena::new(c).unwrap();
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap();
    match arena.report().backing() {
        Backing::TransparentHuge { huge_bytes } => {
            assert!(!mode.contains("[never]"));
            assert!(huge_bytes <= arena.report().chunk_bytes);
            eprintln!(
                "THP arena: {huge_bytes} B on huge pages (mode: {})",
                mode.trim()
            );
        }
        other => {
            assert!(
                mode.contains("[never]"),
                "THP is on ({mode}) but got {other}"
            );
        }
    }
}

#[test]
fn arena_dropped_with_buffers_out_keeps_them_valid() {
    let arena = Arena::new(config(Growth::Fixed)).unwrap();
    let mut b = arena.alloc(10).unwrap();
    drop(arena);
    // The mapping was leaked on purpose, so the buffer is still usable and droppable.
    b[..5].copy_from_slice(b"alive");
    assert_eq!(&b[..5], b"alive");
    std::thread::spawn(move || drop(b)).join().unwrap();
}

#[test]
fn creation_logs_one_line_with_backing_and_numa() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A global default, not a thread-local one: registering it rebuilds every callsite's
    // interest, which another test thread may have cached as "off" before.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let arena = Arena::new(config(Growth::Fixed)).unwrap();
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("ringfort-pool arena"))
        .unwrap_or_else(|| panic!("no arena log line in: {log}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains(&format!("backing: {}", arena.report().backing())),
        "{line}"
    );
    assert!(line.contains("numa: "), "{line}");
}

#[test]
fn fill_class_keeps_blocks_mostly_full() {
    let arena = Arena::new(PoolConfig {
        classes: vec![
            SizeClass {
                size: 4096,
                count: 4,
            },
            SizeClass {
                size: 16384,
                count: 4,
            },
            SizeClass {
                size: 65536,
                count: 4,
            },
            SizeClass {
                size: 1 << 20,
                count: 1,
            },
        ],
        ..config(Growth::Fixed)
    })
    .unwrap();
    assert_eq!(arena.fill_class(100), 0);
    assert_eq!(arena.fill_class(4096), 0);
    assert_eq!(arena.fill_class(5000), 0, "16 KiB would be 70% empty");
    assert_eq!(arena.fill_class(13000), 1, "16 KiB is 79% full");
    assert_eq!(
        arena.fill_class(256 << 10),
        2,
        "four 64 KiB blocks, not one 1 MiB"
    );
    assert_eq!(arena.fill_class(900 << 10), 3);
    assert_eq!(arena.fill_class(5 << 20), 3);
}
