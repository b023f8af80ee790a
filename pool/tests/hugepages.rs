//! The hugetlb path. As root the test reserves the 2 MiB pages it needs itself and puts
//! `nr_hugepages` back afterwards. When it cannot (not root, or the kernel could not find
//! the memory), it says so loudly, still tests the fallback, and fails if
//! RINGFORT_REQUIRE_HUGEPAGES is set (CI sets it).

use ringfort_pool::{
    Arena, Backing, BackingPref, Growth, HugePages, NumaPolicy, PoolConfig, PoolError,
    Registration, SizeClass,
};

const NR: &str = "/proc/sys/vm/nr_hugepages";

fn config(backing: BackingPref, count: usize) -> PoolConfig {
    PoolConfig {
        classes: vec![SizeClass {
            size: 2 << 20,
            count,
        }],
        growth: Growth::Fixed,
        backing,
        registration: Registration::Off,
        numa: NumaPolicy::Local,
    }
}

/// Puts `nr_hugepages` back when dropped.
struct Restore(usize);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(NR, self.0.to_string()) {
            eprintln!("could not restore {NR} to {}: {e}", self.0);
        }
    }
}

fn reserve(pages: usize) -> Result<Option<Restore>, String> {
    let pool = HugePages::read().ok_or("the kernel has no 2 MiB hugetlb pool")?;
    if pool.available() >= pages {
        return Ok(None);
    }
    let want = pool.total + pages - pool.available();
    std::fs::write(NR, want.to_string()).map_err(|e| format!("writing {NR}: {e}"))?;
    let restore = Restore(pool.total);
    let now = HugePages::read().ok_or("hugetlb pool vanished")?;
    if now.available() < pages {
        return Err(format!(
            "asked the kernel for {want} hugepages, got {} ({} available)",
            now.total,
            now.available()
        ));
    }
    Ok(Some(restore))
}

#[test]
fn hugetlb_backing_when_reserved_and_named_fallback_when_not() {
    // Strict hugetlb with more pages than exist names the remedy.
    let avail = HugePages::read().map_or(0, |p| p.available());
    let err = Arena::new(config(BackingPref::HugeTlb, avail + 1))
        .err()
        .expect("more hugepages than available");
    assert!(matches!(err, PoolError::HugeTlbUnavailable(_)), "{err}");
    assert!(err.to_string().contains("nr_hugepages"), "{err}");

    // Auto falls back and says why.
    let arena = Arena::new(config(BackingPref::Auto, avail + 1)).unwrap();
    let report = arena.report();
    assert_ne!(report.backing(), Backing::HugeTlb);
    assert!(report.to_string().contains("hugepages needed"), "{report}");
    drop(arena);

    match reserve(2) {
        Ok(restore) => {
            let before = HugePages::read().unwrap();
            let arena = Arena::new(config(BackingPref::Auto, 2)).unwrap();
            assert_eq!(
                arena.report().backing(),
                Backing::HugeTlb,
                "{}",
                arena.report()
            );
            let during = HugePages::read().unwrap();
            assert_eq!(before.free - during.free, 2, "prefault took both pages");
            let mut b = arena.alloc(1 << 20).unwrap();
            b.fill(0xa5);
            assert!(b.iter().all(|&x| x == 0xa5));
            drop(b);
            drop(arena);
            drop(restore);
            eprintln!("hugetlb path tested: 2 MiB pages reserved, mapped and prefaulted");
        }
        Err(why) => {
            eprintln!("\n!!! HUGEPAGE PATH NOT TESTED: {why}. Run as root or reserve pages with `echo 4 > {NR}`.\n");
            assert!(
                std::env::var_os("RINGFORT_REQUIRE_HUGEPAGES").is_none(),
                "RINGFORT_REQUIRE_HUGEPAGES is set but hugepages could not be reserved: {why}"
            );
        }
    }
}
