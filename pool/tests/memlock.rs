//! The memlock error path, tested against a really lowered `RLIMIT_MEMLOCK` in a child
//! process that has also dropped `CAP_IPC_LOCK` (so the test means the same as root as it
//! does for the unprivileged users who will hit this).

use std::process::Command;

use ringfort_pool::{
    has_cap_ipc_lock, memlock_limit, Arena, BackingPref, Growth, NumaPolicy, PoolConfig, PoolError,
    Registration, SizeClass,
};

const CHILD: &str = "RINGFORT_MEMLOCK_CHILD";
const LIMIT: u64 = 64 << 10;

fn config(registration: Registration) -> PoolConfig {
    PoolConfig {
        classes: vec![SizeClass {
            size: 4096,
            count: 256,
        }],
        growth: Growth::Chunks { max_chunks: 2 },
        backing: BackingPref::SmallPages,
        registration,
        numa: NumaPolicy::FirstTouch,
    }
}

/// Lowers RLIMIT_MEMLOCK and drops CAP_IPC_LOCK from this thread's capability sets.
fn become_unprivileged() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let lim = libc::rlimit {
        rlim_cur: LIMIT,
        rlim_max: LIMIT,
    };
    // SAFETY: `lim` is a valid rlimit for the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) }, 0);
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: version 3 capget/capset take one header and two data structs, as given.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << 14);
        data[0].permitted &= !(1 << 14);
        assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
    }
}

#[test]
fn lowered_memlock_limit_is_refused_with_the_remedy() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "lowered_memlock_limit_is_refused_with_the_remedy",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
}

fn child() {
    become_unprivileged();
    assert!(!has_cap_ipc_lock(), "CAP_IPC_LOCK still effective");
    assert_eq!(memlock_limit(), Some(LIMIT));
    // The kernel agrees the limit is in force: pinning 1 MiB fails.
    let mut probe = vec![0u8; 1 << 20];
    // SAFETY: mlock on memory we own; unlocked again below if it unexpectedly succeeds.
    let rc = unsafe { libc::mlock(probe.as_mut_ptr().cast(), probe.len()) };
    assert_ne!(rc, 0, "mlock of 1 MiB succeeded under a 64 KiB limit");

    let err = Arena::new(config(Registration::Required))
        .err()
        .expect("must refuse");
    let PoolError::Memlock { needed, limit, .. } = err else {
        panic!("wrong error: {err}");
    };
    assert_eq!(limit, LIMIT);
    assert_eq!(needed, 2 * (2 << 20), "the whole cap is checked up front");
    let msg = err.to_string();
    for must in [
        "RLIMIT_MEMLOCK",
        "ulimit -l",
        "LimitMEMLOCK=",
        "CAP_IPC_LOCK",
    ] {
        assert!(msg.contains(must), "message lacks {must}: {msg}");
    }

    let arena = Arena::new(config(Registration::AllowUnregistered)).unwrap();
    let report = arena.report();
    assert!(!report.registration.registrable);
    assert!(report.to_string().contains("UNAVAILABLE"), "{report}");
    drop(arena.alloc(10).unwrap());

    let arena = Arena::new(config(Registration::Off)).unwrap();
    assert!(arena.report().to_string().contains("registration: off"));
}

#[test]
fn enough_memlock_or_cap_ipc_lock_allows_registration() {
    let arena = Arena::new(config(Registration::Required));
    match (memlock_limit(), has_cap_ipc_lock()) {
        (_, true) | (None, _) => {
            let r = arena.unwrap().report();
            assert!(r.registration.registrable, "{r}");
        }
        (Some(l), false) if l >= 4 << 20 => assert!(arena.is_ok()),
        (Some(_), false) => assert!(matches!(arena, Err(PoolError::Memlock { .. }))),
    }
}
