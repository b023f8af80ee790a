//! The io_uring start-up probe: the real probe on this machine, every error message through
//! the pure decision functions, and two real failures in child processes (a seccomp filter
//! that refuses `io_uring_setup`, and a lowered `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`).

use std::io;
use std::process::Command;

use io_uring::opcode;
use ringfort::probe::{
    assess, check_kernel, check_memlock, check_opcodes, choose_setup_flags, classify_setup_error,
    memlock_verdict, parse_kernel_release, probe, Evidence, ProbeError, SetupFlags,
    OPTIONAL_OPCODES, REQUIRED_OPCODES,
};

const CHILD: &str = "RINGFORT_PROBE_CHILD";

fn assert_mentions(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "message lacks {n:?}:\n{msg}");
    }
}

fn running_kernel() -> Option<(u32, u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_release(&release)
}

// ---------------------------------------------------------------------------------------
// The real probe.

#[test]
fn real_probe_reports_this_kernels_features() {
    let kernel = running_kernel().expect("kernel release");
    let result = probe();
    if kernel < (6, 1, 0) {
        let err = result.expect_err("an old kernel is refused");
        assert_mentions(&err.to_string(), &["6.1"]);
        return;
    }
    let f = result.unwrap_or_else(|e| panic!("probe failed on this machine: {e}"));
    let line = f.to_string();
    println!("{line}");
    assert_eq!(f.kernel, kernel);
    assert!(
        f.single_issuer && f.defer_taskrun && f.coop_taskrun && f.submit_all,
        "{line}"
    );
    assert!(f.send_zc && f.msg_ring && f.sendmsg, "{line}");
    assert_eq!(f.min_timeout, kernel >= (6, 12, 0), "{line}");
    assert!(
        f.buf_ring && f.multishot_recv && f.multishot_accept,
        "{line}"
    );
    assert!(
        f.multishot_recv_tested,
        "the real multishot recv was inconclusive: {line}"
    );
    for required in [
        f.read_fixed,
        f.write_fixed,
        f.fsync,
        f.fallocate,
        f.openat,
        f.timeout,
        f.link_timeout,
        f.async_cancel,
        f.accept,
        f.send,
        f.recv,
        f.connect,
        f.close,
    ] {
        assert!(required, "{line}");
    }
    assert!(f.degraded.is_empty(), "{:?}", f.degraded);
    let (a, b, c) = kernel;
    assert_mentions(
        &line,
        &[
            &format!("io_uring: kernel {a}.{b}.{c}"),
            "SINGLE_ISSUER+DEFER_TASKRUN+COOP_TASKRUN+SUBMIT_ALL",
            "SEND_ZC yes",
            "MSG_RING yes",
            "multishot recv yes (tested)",
            "provided buffer rings yes",
            "degraded: none",
        ],
    );
}

#[test]
fn probed_setup_flags_build_a_working_ring() {
    let Ok(f) = probe() else {
        return; // covered by real_probe_reports_this_kernels_features
    };
    let mut builder: io_uring::Builder = io_uring::IoUring::builder();
    f.apply_setup(&mut builder);
    let ring = builder.build(64).expect("a ring with the probed flags");
    assert_eq!(ring.params().is_setup_single_issuer(), f.single_issuer);
}

#[test]
fn probe_runs_again_and_agrees() {
    let (Ok(a), Ok(b)) = (probe(), probe()) else {
        return;
    };
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------
// Setup errors, through the pure classifier.

#[test]
fn eperm_with_sysctl_2_names_the_sysctl_and_remedy() {
    for errno in [libc::EPERM, libc::EACCES] {
        let err = classify_setup_error(errno, Some(2), Some(false));
        assert!(matches!(err, ProbeError::DisabledBySysctl), "{err:?}");
        assert_mentions(
            &err.to_string(),
            &[
                "kernel.io_uring_disabled=2",
                "sysctl -w kernel.io_uring_disabled=0",
            ],
        );
    }
}

#[test]
fn eperm_with_sysctl_1_names_the_group_and_remedy() {
    let err = classify_setup_error(libc::EPERM, Some(1), None);
    assert!(
        matches!(err, ProbeError::RestrictedToGroup { .. }),
        "{err:?}"
    );
    assert_mentions(
        &err.to_string(),
        &[
            "kernel.io_uring_disabled=1",
            "io_uring_group",
            "CAP_SYS_ADMIN",
            "sysctl -w kernel.io_uring_disabled=0",
            "EPERM",
        ],
    );
}

#[test]
fn eperm_with_sysctl_0_or_absent_names_seccomp_and_remedy() {
    for (sysctl, filtered, said) in [
        (Some(0), Some(true), "kernel.io_uring_disabled is 0"),
        (None, None, "no kernel.io_uring_disabled sysctl"),
        (Some(0), Some(false), "AppArmor"),
    ] {
        let err = classify_setup_error(libc::EPERM, sysctl, filtered);
        assert!(matches!(err, ProbeError::Seccomp { .. }), "{err:?}");
        assert_mentions(
            &err.to_string(),
            &[
                "io_uring_setup returned EPERM",
                said,
                "seccomp",
                "Docker",
                "io_uring_setup/io_uring_enter/io_uring_register",
                "--security-opt seccomp=",
            ],
        );
    }
    let err = classify_setup_error(libc::EPERM, Some(0), Some(true));
    assert_mentions(&err.to_string(), &["Seccomp: 2"]);
}

#[test]
fn enosys_names_config_io_uring() {
    let err = classify_setup_error(libc::ENOSYS, None, None);
    assert!(matches!(err, ProbeError::NotInKernel), "{err:?}");
    assert_mentions(&err.to_string(), &["ENOSYS", "CONFIG_IO_URING", "6.1"]);
}

#[test]
fn other_setup_errors_keep_the_os_error() {
    let err = classify_setup_error(libc::ENOMEM, Some(0), None);
    assert!(matches!(err, ProbeError::Setup { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["io_uring_setup failed", "memory"]);
}

// ---------------------------------------------------------------------------------------
// Setup flags against fake kernels.

/// A fake kernel that rejects (EINVAL) any flag set containing a flag it does not know.
fn fake_kernel(known: SetupFlags) -> impl FnMut(SetupFlags) -> io::Result<SetupFlags> {
    move |asked: SetupFlags| {
        let unknown = (asked.single_issuer && !known.single_issuer)
            || (asked.defer_taskrun && !known.defer_taskrun)
            || (asked.coop_taskrun && !known.coop_taskrun)
            || (asked.submit_all && !known.submit_all);
        if asked.defer_taskrun && !asked.single_issuer {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if unknown {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            Ok(asked)
        }
    }
}

#[test]
fn all_setup_flags_taken_at_once_when_accepted() {
    let mut attempts = 0;
    let (flags, built) = choose_setup_flags(|f| {
        attempts += 1;
        fake_kernel(SetupFlags::ALL)(f)
    })
    .unwrap();
    assert_eq!(flags, SetupFlags::ALL);
    assert_eq!(built, SetupFlags::ALL);
    assert_eq!(attempts, 1);
    assert!(flags.degraded().is_empty());
}

#[test]
fn a_6_0_kernel_loses_only_defer_taskrun() {
    let six_oh = SetupFlags {
        defer_taskrun: false,
        ..SetupFlags::ALL
    };
    let (flags, built) = choose_setup_flags(fake_kernel(six_oh)).unwrap();
    assert_eq!(flags, six_oh);
    assert_eq!(
        built, six_oh,
        "the ring returned is the one built with the chosen flags"
    );
    let degraded = flags.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert_mentions(&degraded[0], &["DEFER_TASKRUN", "6.1"]);
}

#[test]
fn flags_are_kept_one_by_one_and_defer_needs_single_issuer() {
    // A kernel that knows DEFER_TASKRUN and COOP_TASKRUN but not SINGLE_ISSUER: DEFER_TASKRUN
    // must not be kept (the real kernel would refuse it without SINGLE_ISSUER).
    let odd = SetupFlags {
        single_issuer: false,
        defer_taskrun: true,
        coop_taskrun: true,
        submit_all: false,
    };
    let (flags, _) = choose_setup_flags(fake_kernel(odd)).unwrap();
    assert_eq!(
        flags,
        SetupFlags {
            coop_taskrun: true,
            ..SetupFlags::NONE
        }
    );
    let text = flags.degraded().join("\n");
    assert_mentions(&text, &["SINGLE_ISSUER", "DEFER_TASKRUN", "SUBMIT_ALL"]);
    assert!(!text.contains("COOP_TASKRUN"), "{text}");
    assert_eq!(flags.to_string(), "COOP_TASKRUN");
}

#[test]
fn setup_errors_other_than_einval_stop_the_search() {
    let err = choose_setup_flags(|_| -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    })
    .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    // EINVAL even without flags is not a flag problem: it is returned.
    let err = choose_setup_flags(|_| -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    })
    .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
}

// ---------------------------------------------------------------------------------------
// Kernel release and opcodes.

#[test]
fn old_kernel_is_refused_naming_both_versions() {
    let err = check_kernel((5, 15, 0), false).unwrap_err();
    assert!(matches!(err, ProbeError::KernelTooOld { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["5.15.0", "Linux 6.1", "upgrade"]);
    assert!(check_kernel((6, 0, 19), false).is_err());
    assert!(check_kernel((6, 1, 0), false).is_ok());
    assert!(check_kernel((6, 18, 44), false).is_ok());
    // A distribution kernel with a 6.1-level io_uring backported shows it by accepting
    // DEFER_TASKRUN.
    assert!(check_kernel((5, 14, 0), true).is_ok());
}

#[test]
fn missing_msg_ring_names_it_its_version_and_the_minimum() {
    let err = check_opcodes(|c| c != opcode::MsgRingData::CODE, Some((6, 1, 2))).unwrap_err();
    assert!(
        matches!(
            err,
            ProbeError::MissingOpcode {
                name: "MSG_RING",
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(
        &err.to_string(),
        &[
            "MSG_RING",
            "5.18",
            "Linux 6.1.2",
            "upgrade to Linux 6.1 or later",
            "wake",
        ],
    );
}

#[test]
fn every_required_opcode_is_an_error_when_missing() {
    for op in REQUIRED_OPCODES {
        let err = check_opcodes(|c| c != op.code, Some((6, 1, 0))).unwrap_err();
        let msg = err.to_string();
        assert_mentions(&msg, &[op.name, op.since, "6.1 or later"]);
    }
}

#[test]
fn missing_send_zc_degrades_with_its_consequence() {
    let degraded = check_opcodes(|c| c != opcode::SendZc::CODE, Some((6, 1, 0))).unwrap();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert_mentions(&degraded[0], &["SEND_ZC unsupported", "copied", "6.0"]);
    let none = check_opcodes(|_| true, None).unwrap();
    assert!(none.is_empty(), "{none:?}");
    let all_optional_missing =
        check_opcodes(|c| OPTIONAL_OPCODES.iter().all(|o| o.code != c), None).unwrap();
    assert_eq!(all_optional_missing.len(), OPTIONAL_OPCODES.len());
}

// ---------------------------------------------------------------------------------------
// The whole decision, from fake evidence.

fn good_evidence(release: &str) -> Evidence {
    Evidence {
        release: release.to_string(),
        setup: SetupFlags::ALL,
        nodrop: true,
        ext_arg: true,
        min_timeout: true,
        buf_ring: Ok(()),
        multishot_recv: Some(true),
    }
}

#[test]
fn assess_a_modern_kernel() {
    let f = assess(&good_evidence("6.18.44-fc-v769"), |_| true).unwrap();
    assert_eq!(f.kernel, (6, 18, 44));
    assert!(f.degraded.is_empty());
    assert!(f.multishot_recv_tested && f.multishot_accept);
    assert_eq!(f.setup_flags(), SetupFlags::ALL);
}

#[test]
fn assess_without_min_timeout_ignores_batch_wait_and_says_so() {
    let mut ev = good_evidence("6.6.30");
    ev.min_timeout = false;
    let f = assess(&ev, |_| true).unwrap();
    assert!(!f.min_timeout);
    assert_eq!(f.degraded.len(), 1, "{:?}", f.degraded);
    assert_mentions(&f.degraded[0], &["MIN_TIMEOUT", "batch_wait", "6.12"]);
}

#[test]
fn zero_copy_usage_reports_need_6_2_and_their_absence_is_a_degradation() {
    let f = assess(&good_evidence("6.1.80"), |_| true).unwrap();
    assert!(f.send_zc && !f.zc_report_usage);
    assert_eq!(f.degraded.len(), 1, "{:?}", f.degraded);
    assert_mentions(
        &f.degraded[0],
        &["IORING_SEND_ZC_REPORT_USAGE", "local peers", "6.2"],
    );
    let f = assess(&good_evidence("6.2.0"), |_| true).unwrap();
    assert!(
        f.zc_report_usage && f.degraded.is_empty(),
        "{:?}",
        f.degraded
    );
    // Without SEND_ZC there is nothing to report on, and only that is listed.
    let f = assess(&good_evidence("6.1.80"), |c| c != opcode::SendZc::CODE).unwrap();
    assert_eq!(f.degraded.len(), 1, "{:?}", f.degraded);
    assert_mentions(&f.degraded[0], &["SEND_ZC unsupported"]);
}

#[test]
fn assess_without_send_zc_lists_it_in_the_line() {
    let f = assess(&good_evidence("6.1.0"), |c| c != opcode::SendZc::CODE).unwrap();
    assert!(!f.send_zc);
    let line = f.to_string();
    assert_mentions(
        &line,
        &["SEND_ZC no", "degraded: SEND_ZC unsupported", "copied"],
    );
}

#[test]
fn assess_refuses_old_kernels_and_missing_features() {
    let mut ev = good_evidence("5.15.0-91-generic");
    ev.setup.defer_taskrun = false;
    let err = assess(&ev, |_| true).unwrap_err();
    assert_mentions(&err.to_string(), &["5.15.0", "6.1"]);

    let mut ev = good_evidence("6.1.0");
    ev.buf_ring = Err(libc::EINVAL);
    let err = assess(&ev, |_| true).unwrap_err();
    assert_mentions(
        &err.to_string(),
        &["provided buffer rings", "EINVAL", "5.19", "6.1 or later"],
    );

    let mut ev = good_evidence("6.1.0");
    ev.buf_ring = Err(libc::EPERM);
    let err = assess(&ev, |_| true).unwrap_err();
    assert!(matches!(err, ProbeError::Seccomp { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["IORING_REGISTER_PBUF_RING", "seccomp"]);

    let mut ev = good_evidence("6.1.0");
    ev.ext_arg = false;
    let err = assess(&ev, |_| true).unwrap_err();
    assert_mentions(&err.to_string(), &["IORING_FEAT_EXT_ARG", "5.11"]);

    let mut ev = good_evidence("6.1.0");
    ev.nodrop = false;
    let err = assess(&ev, |_| true).unwrap_err();
    assert_mentions(&err.to_string(), &["IORING_FEAT_NODROP", "5.5"]);
}

#[test]
fn assess_multishot_from_the_test_or_the_release() {
    let mut ev = good_evidence("6.2.0");
    ev.multishot_recv = None;
    let f = assess(&ev, |_| true).unwrap();
    assert!(f.multishot_recv && !f.multishot_recv_tested);
    assert!(f.to_string().contains("multishot recv yes (inferred)"));

    let mut ev = good_evidence("6.2.0");
    ev.multishot_recv = Some(false);
    let f = assess(&ev, |_| true).unwrap();
    assert!(!f.multishot_recv);
    assert!(f.multishot_accept, "a 6.2 release has multishot accept");
    assert_mentions(
        &f.degraded.join("\n"),
        &["multishot RECV unavailable", "re-armed"],
    );

    // Unparseable release: the accepted DEFER_TASKRUN flag stands in for 6.1.
    let mut ev = good_evidence("custom-kernel");
    ev.multishot_recv = None;
    let f = assess(&ev, |_| true).unwrap();
    assert!(f.multishot_recv && f.multishot_accept);
    assert_eq!(f.kernel, (0, 0, 0));
    assert!(f.to_string().contains("kernel \"custom-kernel\""));

    let mut ev = good_evidence("custom-kernel");
    ev.multishot_recv = None;
    ev.setup = SetupFlags::NONE;
    let f = assess(&ev, |_| true).unwrap();
    assert!(!f.multishot_recv && !f.multishot_accept);
    let text = f.degraded.join("\n");
    assert_mentions(
        &text,
        &[
            "multishot ACCEPT unavailable",
            "multishot RECV unavailable",
            "DEFER_TASKRUN rejected",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Memlock, pure.

#[test]
fn memlock_verdicts() {
    let err = memlock_verdict(1 << 20, Some(64 << 10), false).unwrap_err();
    assert!(matches!(err, ProbeError::Memlock { .. }), "{err:?}");
    assert_mentions(
        &err.to_string(),
        &[
            "RLIMIT_MEMLOCK is 64 KiB",
            "pins 1024 KiB",
            "ulimit -l 1024",
            "LimitMEMLOCK=",
            "CAP_IPC_LOCK",
        ],
    );
    assert!(memlock_verdict(1 << 20, Some(64 << 10), true).is_ok());
    assert!(memlock_verdict(1 << 20, None, false).is_ok());
    assert!(memlock_verdict(1 << 20, Some(1 << 20), false).is_ok());
}

// ---------------------------------------------------------------------------------------
// Real failures, in child processes (the test binary runs itself with CHILD set).

fn run_child(test: &str, mode: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    text
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn seccomp_filter_blocking_io_uring_setup_is_named_with_the_remedy() {
    if std::env::var(CHILD).as_deref() == Ok("seccomp") {
        return seccomp_child();
    }
    let text = run_child(
        "seccomp_filter_blocking_io_uring_setup_is_named_with_the_remedy",
        "seccomp",
    );
    assert!(text.contains("probe error: "), "{text}");
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn seccomp_child() {
    install_filter_refusing_io_uring_setup();
    // The filter really is in force: the raw syscall is refused with EPERM.
    // SAFETY: io_uring_setup with a null params pointer; the filter answers before the kernel
    // would read it (and without the filter it would fail with EFAULT).
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>()) };
    assert_eq!(rc, -1);
    assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));

    let err = probe().expect_err("probe must fail under the filter");
    let msg = err.to_string();
    println!("probe error: {msg}");
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    match disabled {
        Some(2) => assert!(matches!(err, ProbeError::DisabledBySysctl)),
        Some(1) => assert!(matches!(err, ProbeError::RestrictedToGroup { .. })),
        _ => {
            assert!(
                matches!(
                    err,
                    ProbeError::Seccomp {
                        syscall: "io_uring_setup",
                        errno: libc::EPERM,
                        filtered: Some(true),
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_mentions(
                &msg,
                &[
                    "seccomp",
                    "Seccomp: 2",
                    "io_uring_setup/io_uring_enter/io_uring_register",
                    "--security-opt seccomp=",
                ],
            );
        }
    }
}

/// Installs, on this thread, a seccomp filter that makes `io_uring_setup` fail with EPERM
/// and allows everything else.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn install_filter_refusing_io_uring_setup() {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
                                         // struct seccomp_data: int nr; __u32 arch; ...
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    let mut program = [
        /* 0 */ stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARCH_OFFSET),
        /* 1 */
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            0,
            3,
        ), // else 5
        /* 2 */ stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, NR_OFFSET),
        /* 3 */
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_io_uring_setup as u32,
            0,
            1,
        ),
        /* 4 */
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        /* 5 */ stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_NO_NEW_PRIVS: {}", io::Error::last_os_error());
    // SAFETY: `prog` points at `program`, a valid classic-BPF program of `len` instructions,
    // both alive for the call (the kernel copies the program).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "seccomp: {}", io::Error::last_os_error());
}

#[test]
fn lowered_memlock_without_cap_ipc_lock_is_refused_with_the_remedy() {
    if std::env::var(CHILD).as_deref() == Ok("memlock") {
        return memlock_child();
    }
    let text = run_child(
        "lowered_memlock_without_cap_ipc_lock_is_refused_with_the_remedy",
        "memlock",
    );
    assert!(text.contains("memlock error: "), "{text}");
}

const LOW_LIMIT: u64 = 64 << 10;

fn memlock_child() {
    become_unprivileged();
    assert!(
        !ringfort::pool::has_cap_ipc_lock(),
        "CAP_IPC_LOCK still effective"
    );
    assert_eq!(ringfort::pool::memlock_limit(), Some(LOW_LIMIT));

    let err = check_memlock(1 << 20).expect_err("1 MiB over a 64 KiB limit");
    let msg = err.to_string();
    println!("memlock error: {msg}");
    assert!(
        matches!(
            err,
            ProbeError::Memlock {
                needed: 1_048_576,
                limit: LOW_LIMIT
            }
        ),
        "{err:?}"
    );
    assert_mentions(
        &msg,
        &[
            "RLIMIT_MEMLOCK is 64 KiB",
            "1024 KiB",
            "ulimit -l",
            "LimitMEMLOCK=",
            "CAP_IPC_LOCK",
        ],
    );
    assert!(check_memlock(32 << 10).is_ok());

    // The probe itself pins next to nothing: it still works under the low limit.
    if running_kernel().is_some_and(|k| k >= (6, 1, 0)) {
        let f = probe().unwrap_or_else(|e| panic!("probe under a 64 KiB limit: {e}"));
        println!("{f}");
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
    const CAP_IPC_LOCK: u32 = 14;
    let lim = libc::rlimit {
        rlim_cur: LOW_LIMIT,
        rlim_max: LOW_LIMIT,
    };
    // SAFETY: `lim` is a valid rlimit for the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) }, 0);
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
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
        data[0].effective &= !(1 << CAP_IPC_LOCK);
        data[0].permitted &= !(1 << CAP_IPC_LOCK);
        assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
    }
}

#[test]
fn inconsistent_outbox_limits_are_refused_at_start() {
    let mut cfg = ringfort::EngineConfig::default();
    cfg.limits.outbox.soft_bytes = cfg.limits.outbox.hard_bytes + 1;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("limits.outbox"), "{err}");
}
