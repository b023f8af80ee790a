//! The start-up probe: what this kernel's io_uring can do, and why the engine refuses to start
//! when it cannot do enough.
//!
//! [`probe`] runs once, before any core starts. It builds a throwaway ring and checks, in
//! this order:
//!
//! 1. **That io_uring may be used at all.** When `io_uring_setup` fails, the error names the
//!    cause: `kernel.io_uring_disabled=2` (or `=1` without group membership), a seccomp filter
//!    (Docker's and containerd's default profiles block io_uring), or a kernel built without
//!    `CONFIG_IO_URING`; and it names the remedy. See [`classify_setup_error`].
//! 2. **The setup flags.** It asks for `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN |
//!    SUBMIT_ALL` first. If the kernel refuses that (EINVAL), it starts from no flags and adds
//!    them one at a time, keeping each one the kernel accepts (`DEFER_TASKRUN` only on top of
//!    `SINGLE_ISSUER`, which it requires). See [`choose_setup_flags`]. All four are optional:
//!    a missing one costs speed, not correctness, and is listed in [`Features::degraded`].
//! 3. **The kernel release** (`uname`), against [`MIN_KERNEL`]. See [`check_kernel`].
//! 4. **Opcodes**, with `IORING_REGISTER_PROBE`. A missing [`REQUIRED_OPCODES`] entry stops
//!    the engine; a missing [`OPTIONAL_OPCODES`] entry degrades it with a logged reason (no
//!    `SEND_ZC` means large replies are copied). See [`check_opcodes`].
//! 5. **Ring features** `IORING_FEAT_NODROP` and `IORING_FEAT_EXT_ARG`, both required, and
//!    `IORING_FEAT_MIN_TIMEOUT`, optional (completion batching).
//! 6. **Provided buffer rings**, for real: it registers a one-entry buffer ring, and
//!    unregisters it. Required: multishot receive takes its buffers from them.
//! 7. **Multishot receive**, for real: over a Unix socket pair that already holds one byte, it
//!    submits a multishot `RECV` that selects from that buffer ring, and looks for a completion
//!    flagged `IORING_CQE_F_MORE`. `IORING_REGISTER_PROBE` cannot tell this apart, because
//!    multishot recv is the `RECV` opcode with a flag. If the test is inconclusive (no
//!    completion within its bounded wait) the kernel release stands in for it (Linux 6.0+),
//!    or, when the release cannot be parsed, the accepted `DEFER_TASKRUN` flag does (Linux
//!    6.1+). Multishot **accept** (the `ACCEPT` opcode with a flag, Linux 5.19) is inferred the
//!    same way: a working multishot recv (6.0) implies it, as do release >= 5.19 and
//!    `DEFER_TASKRUN`.
//!
//! [`assess`] holds the decisions of steps 3 to 7 as a pure function of the evidence, so tests
//! can feed it kernels this machine is not.
//!
//! [`check_memlock`] is separate: the engine calls it with the memory all cores will pin
//! (arenas registered as fixed buffers, plus ring memory), because only the engine knows that
//! sum.
//!
//! # Minimum kernel: Linux 6.1
//!
//! | feature                              | since | used for                                   |
//! |--------------------------------------|-------|--------------------------------------------|
//! | `MSG_RING`                           | 5.18  | cores waking each other (required)         |
//! | provided buffer rings                | 5.19  | receive buffers from registered pool memory|
//! | multishot `ACCEPT`                   | 5.19  | one armed accept per listener              |
//! | multishot `RECV`, `SEND_ZC`          | 6.0   | one armed receive per connection; zero-copy replies |
//! | `SINGLE_ISSUER`                      | 6.0   | no submitter locking                       |
//! | `DEFER_TASKRUN`                      | 6.1   | completion work batched at the core's wait |
//!
//! A release older than 6.1 is refused ([`ProbeError::KernelTooOld`]) unless the ring accepted
//! `DEFER_TASKRUN`, which no mainline kernel before 6.1 does: that is how a distribution
//! kernel with a newer io_uring backported (an older `uname` release) is let through, since
//! every other feature is then checked by itself anyway.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// The oldest kernel release the engine runs on. See the module docs for why.
pub const MIN_KERNEL: (u32, u32, u32) = (6, 1, 0);

const MIN_KERNEL_TEXT: &str = "Linux 6.1";

/// One io_uring opcode the engine knows about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpcodeInfo {
    /// The opcode number (`io_uring::opcode::*::CODE`).
    pub code: u8,
    /// Its name without the `IORING_OP_` prefix.
    pub name: &'static str,
    /// The Linux release that added it.
    pub since: &'static str,
    /// What the engine uses it for (when required) or what happens without it (when optional).
    pub note: &'static str,
}

/// Opcodes without which the engine does not start. Each is in every kernel since 5.18, so on
/// the minimum kernel all are present; the check catches kernels whose release looks new
/// enough but whose io_uring is not.
pub const REQUIRED_OPCODES: &[OpcodeInfo] = &[
    OpcodeInfo {
        code: opcode::ReadFixed::CODE,
        name: "READ_FIXED",
        since: "5.1",
        note: "to read files into registered pool buffers",
    },
    OpcodeInfo {
        code: opcode::WriteFixed::CODE,
        name: "WRITE_FIXED",
        since: "5.1",
        note: "to write the WAL and files from registered pool buffers",
    },
    OpcodeInfo {
        code: opcode::Fsync::CODE,
        name: "FSYNC",
        since: "5.1",
        note: "to fdatasync each WAL group commit",
    },
    OpcodeInfo {
        code: opcode::Timeout::CODE,
        name: "TIMEOUT",
        since: "5.4",
        note: "for timers",
    },
    OpcodeInfo {
        code: opcode::Accept::CODE,
        name: "ACCEPT",
        since: "5.5",
        note: "to accept connections",
    },
    OpcodeInfo {
        code: opcode::AsyncCancel::CODE,
        name: "ASYNC_CANCEL",
        since: "5.5",
        note: "to cancel operations when a connection closes or the engine stops",
    },
    OpcodeInfo {
        code: opcode::LinkTimeout::CODE,
        name: "LINK_TIMEOUT",
        since: "5.5",
        note: "to bound connects and linked operations",
    },
    OpcodeInfo {
        code: opcode::Connect::CODE,
        name: "CONNECT",
        since: "5.5",
        note: "for outbound connections",
    },
    OpcodeInfo {
        code: opcode::Fallocate::CODE,
        name: "FALLOCATE",
        since: "5.6",
        note: "to preallocate WAL segments",
    },
    OpcodeInfo {
        code: opcode::OpenAt::CODE,
        name: "OPENAT",
        since: "5.6",
        note: "to open files",
    },
    OpcodeInfo {
        code: opcode::Close::CODE,
        name: "CLOSE",
        since: "5.6",
        note: "to close files and sockets",
    },
    OpcodeInfo {
        code: opcode::Send::CODE,
        name: "SEND",
        since: "5.6",
        note: "to send replies",
    },
    OpcodeInfo {
        code: opcode::Recv::CODE,
        name: "RECV",
        since: "5.6",
        note: "to receive requests",
    },
    OpcodeInfo {
        code: opcode::MsgRingData::CODE,
        name: "MSG_RING",
        since: "5.18",
        note: "for cores to wake each other (cross-core channels)",
    },
];

/// Opcodes the engine can do without; the note is the consequence, logged and listed in
/// [`Features::degraded`].
pub const OPTIONAL_OPCODES: &[OpcodeInfo] = &[
    OpcodeInfo {
        code: opcode::SendZc::CODE,
        name: "SEND_ZC",
        since: "6.0",
        note: "large replies are copied into the socket instead of sent zero-copy",
    },
    OpcodeInfo {
        code: opcode::SendMsg::CODE,
        name: "SENDMSG",
        since: "5.3",
        note: "a reply spanning several pool blocks goes out as one SEND per block instead of \
               one vectored send",
    },
];

/// The ring setup flags, each set when the kernel accepted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupFlags {
    /// `IORING_SETUP_SINGLE_ISSUER` (6.0): only the core's own thread submits.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (6.1, needs `SINGLE_ISSUER`): completion work runs when
    /// the core waits, in one batch.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` (5.19): no inter-processor interrupt per completion.
    pub coop_taskrun: bool,
    /// `IORING_SETUP_SUBMIT_ALL` (5.18): a failing SQE does not stop the rest of the batch.
    pub submit_all: bool,
}

impl SetupFlags {
    /// Every flag the engine asks for.
    pub const ALL: SetupFlags = SetupFlags {
        single_issuer: true,
        defer_taskrun: true,
        coop_taskrun: true,
        submit_all: true,
    };

    /// No flags: what any io_uring kernel accepts.
    pub const NONE: SetupFlags = SetupFlags {
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: false,
        submit_all: false,
    };

    /// Sets these flags on a ring builder.
    pub fn apply<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        &self,
        builder: &mut io_uring::Builder<S, C>,
    ) {
        if self.single_issuer {
            builder.setup_single_issuer();
        }
        if self.defer_taskrun {
            builder.setup_defer_taskrun();
        }
        if self.coop_taskrun {
            builder.setup_coop_taskrun();
        }
        if self.submit_all {
            builder.setup_submit_all();
        }
    }

    /// One line per flag that is missing, with what it costs.
    pub fn degraded(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.single_issuer {
            out.push(
                "SINGLE_ISSUER rejected: the kernel keeps its locking for several submitters \
                 (Linux 6.0+ has it)"
                    .to_string(),
            );
        }
        if !self.defer_taskrun {
            out.push(
                "DEFER_TASKRUN rejected: completion work runs whenever the core enters the \
                 kernel instead of in one batch at its wait (Linux 6.1+ has it)"
                    .to_string(),
            );
        }
        if !self.coop_taskrun {
            out.push(
                "COOP_TASKRUN rejected: completions interrupt the core with inter-processor \
                 interrupts (Linux 5.19+ has it)"
                    .to_string(),
            );
        }
        if !self.submit_all {
            out.push(
                "SUBMIT_ALL rejected: an SQE that fails at submission stops the rest of its \
                 batch, which the core must submit again (Linux 5.18+ has it)"
                    .to_string(),
            );
        }
        out
    }
}

impl fmt::Display for SetupFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.single_issuer, "SINGLE_ISSUER"),
            (self.defer_taskrun, "DEFER_TASKRUN"),
            (self.coop_taskrun, "COOP_TASKRUN"),
            (self.submit_all, "SUBMIT_ALL"),
        ];
        let on: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        if on.is_empty() {
            f.write_str("no setup flags")
        } else {
            f.write_str(&on.join("+"))
        }
    }
}

/// What the engine may use on this kernel. A `Features` value exists only when the probe
/// passed, so every required feature in it is `true`; they are kept so that logs and
/// reports show the whole picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    /// The kernel release from `uname`, parsed; `(0, 0, 0)` when it could not be parsed.
    pub kernel: (u32, u32, u32),
    /// The kernel release string as `uname` gave it.
    pub kernel_release: String,
    /// `IORING_SETUP_SINGLE_ISSUER` accepted (optional).
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` accepted (optional; only with `single_issuer`).
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` accepted (optional).
    pub coop_taskrun: bool,
    /// `IORING_SETUP_SUBMIT_ALL` accepted (optional).
    pub submit_all: bool,
    /// `IORING_OP_SEND_ZC` (optional: without it large replies are copied).
    pub send_zc: bool,
    /// `IORING_SEND_ZC_REPORT_USAGE` (optional, Linux 6.2, inferred from the release): a
    /// zero-copy send's notification says when the kernel copied the data after all, as
    /// it does for every local destination (loopback, veth into a local socket), and the
    /// connection then sends by copy. Without it zero copy stays on for such connections.
    pub zc_report_usage: bool,
    /// `IORING_OP_SENDMSG` (optional: without it multi-block replies are sent block by block).
    pub sendmsg: bool,
    /// `IORING_FEAT_MIN_TIMEOUT` (optional: without it [`crate::EngineConfig::batch_wait`]
    /// is ignored).
    pub min_timeout: bool,
    /// `IORING_OP_MSG_RING` (required: cross-core wake-ups).
    pub msg_ring: bool,
    /// Multishot accept (optional: without it accept is re-armed per connection). Inferred,
    /// see the module docs.
    pub multishot_accept: bool,
    /// Multishot recv (optional: without it each receive is re-armed per completion).
    pub multishot_recv: bool,
    /// Whether `multishot_recv` was established by a real multishot receive (`true`) or
    /// inferred from the kernel release (`false`).
    pub multishot_recv_tested: bool,
    /// Provided buffer rings, `IORING_REGISTER_PBUF_RING` (required), tested by registering
    /// one.
    pub buf_ring: bool,
    /// `IORING_OP_READ_FIXED` (required).
    pub read_fixed: bool,
    /// `IORING_OP_WRITE_FIXED` (required).
    pub write_fixed: bool,
    /// `IORING_OP_FSYNC` (required; also fdatasync).
    pub fsync: bool,
    /// `IORING_OP_FALLOCATE` (required).
    pub fallocate: bool,
    /// `IORING_OP_OPENAT` (required).
    pub openat: bool,
    /// `IORING_OP_TIMEOUT` (required).
    pub timeout: bool,
    /// `IORING_OP_LINK_TIMEOUT` (required).
    pub link_timeout: bool,
    /// `IORING_OP_ASYNC_CANCEL` (required).
    pub async_cancel: bool,
    /// `IORING_OP_ACCEPT` (required).
    pub accept: bool,
    /// `IORING_OP_SEND` (required).
    pub send: bool,
    /// `IORING_OP_RECV` (required).
    pub recv: bool,
    /// `IORING_OP_CONNECT` (required).
    pub connect: bool,
    /// `IORING_OP_CLOSE` (required).
    pub close: bool,
    /// Optional features that are missing, each with its consequence, e.g. `"SEND_ZC
    /// unsupported: large replies are copied ... (Linux 6.0+ has it)"`. Empty when nothing
    /// is degraded.
    pub degraded: Vec<String>,
}

impl Features {
    /// The setup flags the kernel accepted.
    pub fn setup_flags(&self) -> SetupFlags {
        SetupFlags {
            single_issuer: self.single_issuer,
            defer_taskrun: self.defer_taskrun,
            coop_taskrun: self.coop_taskrun,
            submit_all: self.submit_all,
        }
    }

    /// Sets the accepted setup flags on a core's ring builder.
    pub fn apply_setup<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        &self,
        builder: &mut io_uring::Builder<S, C>,
    ) {
        self.setup_flags().apply(builder);
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for Features {
    /// One log line, e.g. `io_uring: kernel 6.18.44, SINGLE_ISSUER+DEFER_TASKRUN+COOP_TASKRUN+
    /// SUBMIT_ALL, SEND_ZC yes, MSG_RING yes, ..., degraded: none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = self.kernel;
        if self.kernel == (0, 0, 0) {
            write!(f, "io_uring: kernel {:?}", self.kernel_release)?;
        } else {
            write!(f, "io_uring: kernel {a}.{b}.{c}")?;
        }
        write!(
            f,
            ", {}, SEND_ZC {}, MSG_RING {}, SENDMSG {}, multishot accept {}, multishot recv {} \
             ({}), provided buffer rings {}, degraded: ",
            self.setup_flags(),
            yes(self.send_zc),
            yes(self.msg_ring),
            yes(self.sendmsg),
            yes(self.multishot_accept),
            yes(self.multishot_recv),
            if self.multishot_recv_tested {
                "tested"
            } else {
                "inferred"
            },
            yes(self.buf_ring),
        )?;
        if self.degraded.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.degraded.join("; "))
        }
    }
}

/// Why the engine cannot start on this machine. Every message names the cause and the remedy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// `kernel.io_uring_disabled=2`.
    #[error(
        "io_uring is disabled: sysctl kernel.io_uring_disabled=2 disables io_uring: set it to 0 \
         (`sysctl -w kernel.io_uring_disabled=0`, and put kernel.io_uring_disabled = 0 in \
         /etc/sysctl.d/ to keep it across reboots)"
    )]
    DisabledBySysctl,

    /// `kernel.io_uring_disabled=1` and this process is not allowed.
    #[error(
        "io_uring is restricted: sysctl kernel.io_uring_disabled=1 allows io_uring only to \
         members of the group whose id is in /proc/sys/kernel/io_uring_group and to processes \
         with CAP_SYS_ADMIN, and io_uring_setup refused this process ({errno}). Remedy: run as \
         a member of that group, or set it to 0 (`sysctl -w kernel.io_uring_disabled=0`). If \
         the process is in the group, a seccomp filter is blocking io_uring instead: run with \
         a seccomp profile that allows io_uring_setup/io_uring_enter/io_uring_register",
        errno = errno_name(*.errno)
    )]
    RestrictedToGroup {
        /// The errno `io_uring_setup` returned.
        errno: i32,
    },

    /// io_uring is enabled by sysctl (or the kernel has no such sysctl) but a syscall was
    /// refused: a seccomp filter, usually a container runtime's default profile.
    #[error("{}", seccomp_message(.syscall, *.errno, *.io_uring_disabled, *.filtered))]
    Seccomp {
        /// The refused syscall.
        syscall: &'static str,
        /// The errno it returned.
        errno: i32,
        /// `kernel.io_uring_disabled`, `None` when the kernel has no such sysctl.
        io_uring_disabled: Option<u8>,
        /// Whether this thread runs under a seccomp filter (`Seccomp: 2` in
        /// `/proc/thread-self/status`), `None` when unknown.
        filtered: Option<bool>,
    },

    /// `io_uring_setup` returned ENOSYS.
    #[error(
        "io_uring_setup returned ENOSYS: this kernel was built without io_uring \
         (CONFIG_IO_URING is not set), or a sandbox hides it (gVisor, or a seccomp profile \
         whose default action is ENOSYS, as podman's is). Remedy: run on a kernel built with \
         CONFIG_IO_URING=y, {MIN_KERNEL_TEXT} or later; in a sandbox, use a profile that \
         allows io_uring_setup/io_uring_enter/io_uring_register"
    )]
    NotInKernel,

    /// The kernel release is older than [`MIN_KERNEL`] and shows no backport.
    #[error(
        "kernel {}.{}.{} is too old: the engine needs {MIN_KERNEL_TEXT} or later (provided \
         buffer rings 5.19, multishot recv and SEND_ZC 6.0, DEFER_TASKRUN 6.1). Remedy: \
         upgrade to {MIN_KERNEL_TEXT} or later",
        .found.0, .found.1, .found.2
    )]
    KernelTooOld {
        /// The release found.
        found: (u32, u32, u32),
    },

    /// A required opcode is missing.
    #[error(
        "io_uring opcode {name} is not supported by this kernel ({kernel}); the engine needs it \
         {note}. It was added in Linux {since}. Remedy: upgrade to {MIN_KERNEL_TEXT} or later"
    )]
    MissingOpcode {
        /// The opcode's name without `IORING_OP_`.
        name: &'static str,
        /// The release that added it.
        since: &'static str,
        /// What the engine needs it for.
        note: &'static str,
        /// The running kernel's release.
        kernel: String,
    },

    /// A required ring feature (not an opcode) is missing.
    #[error(
        "{name} is not available ({detail}); the engine needs it because {why}. It was added in \
         Linux {since}. Remedy: upgrade to {MIN_KERNEL_TEXT} or later"
    )]
    MissingFeature {
        /// The feature.
        name: &'static str,
        /// The release that added it.
        since: &'static str,
        /// Why the engine needs it.
        why: &'static str,
        /// What the probe saw.
        detail: String,
    },

    /// `RLIMIT_MEMLOCK` cannot cover the memory the engine pins.
    #[error(
        "RLIMIT_MEMLOCK is {limit_kib} KiB but the engine pins {needed_kib} KiB (every core's \
         arena registered as fixed buffers, plus ring memory), and the process lacks \
         CAP_IPC_LOCK. Remedy: raise the limit to at least {needed_kib} KiB: `ulimit -l \
         {needed_kib}` (or `ulimit -l unlimited`) in the shell that starts it, LimitMEMLOCK= in \
         its systemd unit (e.g. LimitMEMLOCK=infinity), `--ulimit memlock=-1` for docker, or \
         memlock in /etc/security/limits.conf; or grant CAP_IPC_LOCK, which lifts the limit",
        limit_kib = .limit / 1024,
        needed_kib = .needed.div_ceil(1024)
    )]
    Memlock {
        /// Bytes the engine pins.
        needed: usize,
        /// The soft `RLIMIT_MEMLOCK`, in bytes.
        limit: u64,
    },

    /// `io_uring_setup` failed for another reason.
    #[error(
        "io_uring_setup failed: {source}. Remedy: this is not a known configuration problem; \
         check free memory and the memory cgroup limit (ring memory is charged there)"
    )]
    Setup {
        /// The error.
        source: io::Error,
    },

    /// Another syscall the probe makes failed unexpectedly.
    #[error("{call} failed during the io_uring probe: {source}. Remedy: {remedy}")]
    Syscall {
        /// The call that failed.
        call: &'static str,
        /// The error.
        source: io::Error,
        /// What to try.
        remedy: &'static str,
    },
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::EFAULT => "EFAULT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

fn seccomp_message(
    syscall: &str,
    errno: i32,
    io_uring_disabled: Option<u8>,
    filtered: Option<bool>,
) -> String {
    let sysctl = match io_uring_disabled {
        Some(v) => format!("sysctl kernel.io_uring_disabled is {v}"),
        None => "this kernel has no kernel.io_uring_disabled sysctl".to_string(),
    };
    let evidence = match filtered {
        Some(true) => {
            " (this thread does run under a seccomp filter: Seccomp: 2 in /proc/thread-self/status)"
        }
        Some(false) => {
            " (though /proc/thread-self/status shows no seccomp filter, so check LSM policy \
             such as SELinux or AppArmor too)"
        }
        None => "",
    };
    format!(
        "{syscall} returned {} although {sysctl}: a seccomp filter is most likely blocking \
         io_uring{evidence}; Docker's and containerd's default seccomp profiles block it. \
         Remedy: run with a seccomp profile that allows io_uring_setup/io_uring_enter/\
         io_uring_register (docker run --security-opt seccomp=<profile.json>, Kubernetes \
         securityContext.seccompProfile, systemd SystemCallFilter=)",
        errno_name(errno)
    )
}

/// Turns an `io_uring_setup` errno into the error that names its cause and remedy.
///
/// `io_uring_disabled` is `/proc/sys/kernel/io_uring_disabled` (`None` when the kernel has no
/// such sysctl, before 6.6); `seccomp_filtered` whether this thread runs under a seccomp
/// filter (`None` when unknown). EPERM and EACCES mean the sysctl when it is 1 or 2, and a
/// seccomp filter otherwise; ENOSYS means no io_uring in the kernel (or a sandbox hiding it).
pub fn classify_setup_error(
    errno: i32,
    io_uring_disabled: Option<u8>,
    seccomp_filtered: Option<bool>,
) -> ProbeError {
    match errno {
        libc::EPERM | libc::EACCES => match io_uring_disabled {
            Some(2) => ProbeError::DisabledBySysctl,
            Some(1) => ProbeError::RestrictedToGroup { errno },
            _ => ProbeError::Seccomp {
                syscall: "io_uring_setup",
                errno,
                io_uring_disabled,
                filtered: seccomp_filtered,
            },
        },
        libc::ENOSYS => ProbeError::NotInKernel,
        _ => ProbeError::Setup {
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

/// Turns an `io_uring_register` or `io_uring_enter` failure after a successful setup into
/// an error: EPERM, EACCES and ENOSYS mean a seccomp filter that allows `io_uring_setup` but
/// not the call.
fn classify_later_error(call: &'static str, err: io::Error) -> ProbeError {
    match err.raw_os_error() {
        Some(errno @ (libc::EPERM | libc::EACCES | libc::ENOSYS)) => ProbeError::Seccomp {
            syscall: call,
            errno,
            io_uring_disabled: read_io_uring_disabled(),
            filtered: seccomp_filtered(),
        },
        _ => ProbeError::Syscall {
            call,
            source: err,
            remedy: "this is unexpected on Linux 6.1 or later; report it with this message",
        },
    }
}

/// Parses a `uname -r` release such as `6.18.44-fc-v769`, `5.15.0-91-generic` or `6.1` into
/// `(major, minor, patch)`; a missing patch level is 0. `None` when it does not start with
/// `major.minor`.
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut parts = release.trim().splitn(3, '.');
    let number = |s: &str| -> Option<u32> {
        let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
        digits.parse().ok()
    };
    let major = parts.next().and_then(number)?;
    let minor_part = parts.next()?;
    let minor = number(minor_part)?;
    // "6.1-rc3" has no patch level; only continue when the minor was all digits.
    let patch = if minor_part.bytes().all(|b| b.is_ascii_digit()) {
        parts.next().and_then(number).unwrap_or(0)
    } else {
        0
    };
    Some((major, minor, patch))
}

/// Checks the kernel release against [`MIN_KERNEL`]. An older release passes only when the
/// ring accepted `DEFER_TASKRUN` (`defer_taskrun_accepted`), which shows a 6.1-level io_uring
/// backported into it.
pub fn check_kernel(
    release: (u32, u32, u32),
    defer_taskrun_accepted: bool,
) -> Result<(), ProbeError> {
    if release >= MIN_KERNEL || defer_taskrun_accepted {
        Ok(())
    } else {
        Err(ProbeError::KernelTooOld { found: release })
    }
}

fn kernel_text(kernel: Option<(u32, u32, u32)>) -> String {
    match kernel {
        Some((a, b, c)) => format!("Linux {a}.{b}.{c}"),
        None => "release unknown".to_string(),
    }
}

/// Checks opcode support: the first missing [`REQUIRED_OPCODES`] entry is an error naming it,
/// the release that added it and the minimum kernel; each missing [`OPTIONAL_OPCODES`] entry
/// becomes a degrade reason in the returned list. `kernel` only goes into the message.
pub fn check_opcodes(
    supported: impl Fn(u8) -> bool,
    kernel: Option<(u32, u32, u32)>,
) -> Result<Vec<String>, ProbeError> {
    if let Some(op) = REQUIRED_OPCODES.iter().find(|op| !supported(op.code)) {
        return Err(ProbeError::MissingOpcode {
            name: op.name,
            since: op.since,
            note: op.note,
            kernel: kernel_text(kernel),
        });
    }
    Ok(OPTIONAL_OPCODES
        .iter()
        .filter(|op| !supported(op.code))
        .map(|op| {
            format!(
                "{} unsupported: {} (Linux {}+ has it)",
                op.name, op.note, op.since
            )
        })
        .collect())
}

/// Finds the setup flags the kernel accepts. `try_setup` builds a ring with the given flags
/// (the real probe) or fakes a kernel (tests).
///
/// It tries [`SetupFlags::ALL`] first. On EINVAL (an unknown flag) it starts from
/// [`SetupFlags::NONE`] and adds `SUBMIT_ALL`, `COOP_TASKRUN`, `SINGLE_ISSUER` and then
/// `DEFER_TASKRUN` (only when `SINGLE_ISSUER` was kept, as the kernel requires), keeping each
/// that the kernel accepts. Any error other than EINVAL, or EINVAL with no flags at all, is
/// returned as is. Returns the flags and what the last accepted attempt produced.
pub fn choose_setup_flags<T>(
    mut try_setup: impl FnMut(SetupFlags) -> io::Result<T>,
) -> io::Result<(SetupFlags, T)> {
    let rejected = |e: &io::Error| e.raw_os_error() == Some(libc::EINVAL);
    match try_setup(SetupFlags::ALL) {
        Ok(t) => return Ok((SetupFlags::ALL, t)),
        Err(e) if !rejected(&e) => return Err(e),
        Err(e) => {
            tracing::debug!("io_uring probe: all setup flags rejected ({e}); adding one by one")
        }
    }
    let mut flags = SetupFlags::NONE;
    let mut last = try_setup(flags)?;
    let steps: [fn(&mut SetupFlags); 4] = [
        |f| f.submit_all = true,
        |f| f.coop_taskrun = true,
        |f| f.single_issuer = true,
        |f| f.defer_taskrun = true,
    ];
    for add in steps {
        let mut candidate = flags;
        add(&mut candidate);
        if candidate == flags || (candidate.defer_taskrun && !candidate.single_issuer) {
            continue;
        }
        match try_setup(candidate) {
            Ok(t) => {
                flags = candidate;
                last = t;
            }
            Err(e) if rejected(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((flags, last))
}

/// What the real probe observed, as plain data, for [`assess`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The kernel release string (`uname -r`).
    pub release: String,
    /// The setup flags the kernel accepted.
    pub setup: SetupFlags,
    /// `IORING_FEAT_NODROP` in the ring parameters.
    pub nodrop: bool,
    /// `IORING_FEAT_EXT_ARG` in the ring parameters.
    pub ext_arg: bool,
    /// `IORING_FEAT_MIN_TIMEOUT` in the ring parameters.
    pub min_timeout: bool,
    /// Registering a provided buffer ring: `Ok`, or the errno it failed with.
    pub buf_ring: Result<(), i32>,
    /// The real multishot receive: `Some(true)` worked, `Some(false)` refused by the kernel,
    /// `None` not run or inconclusive.
    pub multishot_recv: Option<bool>,
}

/// Decides, from the evidence and the opcode probe, whether the engine may start and with
/// what. This is all of the probe's judgement, with no syscalls, so that tests can feed it
/// any kernel.
pub fn assess(ev: &Evidence, supported: impl Fn(u8) -> bool) -> Result<Features, ProbeError> {
    let kernel = parse_kernel_release(&ev.release);
    if let Some(k) = kernel {
        check_kernel(k, ev.setup.defer_taskrun)?;
    }
    if !ev.nodrop {
        return Err(ProbeError::MissingFeature {
            name: "IORING_FEAT_NODROP",
            since: "5.5",
            why: "no completion may be lost when the completion queue is full",
            detail: format!("the ring parameters on {} lack it", kernel_text(kernel)),
        });
    }
    if !ev.ext_arg {
        return Err(ProbeError::MissingFeature {
            name: "IORING_FEAT_EXT_ARG",
            since: "5.11",
            why: "a core waits for completions with a timeout",
            detail: format!("the ring parameters on {} lack it", kernel_text(kernel)),
        });
    }
    let mut degraded = ev.setup.degraded();
    degraded.extend(check_opcodes(&supported, kernel)?);
    match ev.buf_ring {
        Ok(()) => {}
        Err(errno @ (libc::EINVAL | libc::EOPNOTSUPP)) => {
            return Err(ProbeError::MissingFeature {
                name: "provided buffer rings (IORING_REGISTER_PBUF_RING)",
                since: "5.19",
                why: "multishot receive takes its buffers from them",
                detail: format!(
                    "registering one returned {} on {}",
                    errno_name(errno),
                    kernel_text(kernel)
                ),
            });
        }
        Err(errno) => {
            return Err(classify_later_error(
                "io_uring_register(IORING_REGISTER_PBUF_RING)",
                io::Error::from_raw_os_error(errno),
            ));
        }
    }
    // A DEFER_TASKRUN ring is a 6.1-level io_uring: it has everything up to 6.1.
    let at_least = |v: (u32, u32, u32)| kernel.is_some_and(|k| k >= v) || ev.setup.defer_taskrun;
    let (multishot_recv, multishot_recv_tested) = match ev.multishot_recv {
        Some(b) => (b, true),
        None => (at_least((6, 0, 0)), false),
    };
    let multishot_accept = multishot_recv || at_least((5, 19, 0));
    if !multishot_accept {
        degraded.push(
            "multishot ACCEPT unavailable: accept is re-armed after every connection (Linux \
             5.19+ has it)"
                .to_string(),
        );
    }
    if !multishot_recv {
        degraded.push(
            "multishot RECV unavailable: each receive is re-armed after every completion \
             (Linux 6.0+ has it)"
                .to_string(),
        );
    }
    let zc_report_usage = kernel.is_some_and(|k| k >= (6, 2, 0));
    if supported(opcode::SendZc::CODE) && !zc_report_usage {
        degraded.push(
            "IORING_SEND_ZC_REPORT_USAGE not known to be supported: zero-copy sends to local \
             peers, which the kernel copies anyway, are not detected and stay zero-copy \
             (Linux 6.2+ has it)"
                .to_string(),
        );
    }
    if !ev.min_timeout {
        degraded.push(
            "IORING_FEAT_MIN_TIMEOUT missing: EngineConfig::batch_wait is ignored, a core \
             waits for one completion at a time (Linux 6.12+ has it)"
                .to_string(),
        );
    }
    let has = |code: u8| supported(code);
    Ok(Features {
        kernel: kernel.unwrap_or((0, 0, 0)),
        kernel_release: ev.release.clone(),
        single_issuer: ev.setup.single_issuer,
        defer_taskrun: ev.setup.defer_taskrun,
        coop_taskrun: ev.setup.coop_taskrun,
        submit_all: ev.setup.submit_all,
        send_zc: has(opcode::SendZc::CODE),
        zc_report_usage,
        sendmsg: has(opcode::SendMsg::CODE),
        min_timeout: ev.min_timeout,
        msg_ring: has(opcode::MsgRingData::CODE),
        multishot_accept,
        multishot_recv,
        multishot_recv_tested,
        buf_ring: true,
        read_fixed: has(opcode::ReadFixed::CODE),
        write_fixed: has(opcode::WriteFixed::CODE),
        fsync: has(opcode::Fsync::CODE),
        fallocate: has(opcode::Fallocate::CODE),
        openat: has(opcode::OpenAt::CODE),
        timeout: has(opcode::Timeout::CODE),
        link_timeout: has(opcode::LinkTimeout::CODE),
        async_cancel: has(opcode::AsyncCancel::CODE),
        accept: has(opcode::Accept::CODE),
        send: has(opcode::Send::CODE),
        recv: has(opcode::Recv::CODE),
        connect: has(opcode::Connect::CODE),
        close: has(opcode::Close::CODE),
        degraded,
    })
}

/// The memlock decision with its inputs given: `needed` bytes fit when the process has
/// `CAP_IPC_LOCK`, the limit is unlimited (`None`), or the limit covers them.
pub fn memlock_verdict(
    needed: usize,
    limit: Option<u64>,
    cap_ipc_lock: bool,
) -> Result<(), ProbeError> {
    match limit {
        Some(limit) if !cap_ipc_lock && limit < needed as u64 => {
            Err(ProbeError::Memlock { needed, limit })
        }
        _ => Ok(()),
    }
}

/// Checks that `needed_bytes` may be pinned: the sum of every core's arena (registered as
/// fixed buffers) and ring memory. Uses the soft `RLIMIT_MEMLOCK` and `CAP_IPC_LOCK` of the
/// calling thread; the error says how much is needed, the limit, and how to raise it.
pub fn check_memlock(needed_bytes: usize) -> Result<(), ProbeError> {
    memlock_verdict(
        needed_bytes,
        ringfort_pool::memlock_limit(),
        ringfort_pool::has_cap_ipc_lock(),
    )
}

/// `/proc/sys/kernel/io_uring_disabled`, `None` when absent (kernels before 6.6).
fn read_io_uring_disabled() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this thread runs under a seccomp filter, `None` when unknown.
fn seccomp_filtered() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:"))?;
    Some(mode.trim() == "2")
}

/// The running kernel's release string, from `uname`.
fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; all-zero bytes are a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the duration of the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One anonymous page for the probe's buffer ring and its single buffer.
struct Page {
    ptr: *mut u8,
    len: usize,
}

impl Page {
    fn new() -> io::Result<Page> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let len = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Page {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Leaves the page mapped for good: used when the kernel might still write into it.
    fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, unmapped only here.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

const PROBE_BGID: u16 = 0x7262; // "rb"
const RECV_TOKEN: u64 = 1;
/// Offset of the one provided buffer inside the page (the ring entry sits at offset 0).
const BUF_OFFSET: usize = 256;
const BUF_LEN: u32 = 64;

/// Registers a one-entry provided buffer ring in `page`, holding one buffer from the same
/// page.
fn register_buf_ring(ring: &IoUring, page: &Page) -> Result<(), i32> {
    let base = page.ptr.cast::<types::BufRingEntry>();
    // SAFETY: the page is mapped, writable, page-aligned and far larger than one 16-byte
    // entry plus the buffer at BUF_OFFSET; nothing else refers to it yet. The tail is the
    // `resv` field of entry 0, 2-byte aligned, written through an atomic as the kernel reads
    // it concurrently once registered.
    unsafe {
        let entry = &mut *base;
        entry.set_addr(page.ptr.add(BUF_OFFSET) as u64);
        entry.set_len(BUF_LEN);
        entry.set_bid(0);
        let tail = types::BufRingEntry::tail(base)
            .cast_mut()
            .cast::<AtomicU16>();
        (*tail).store(1, Ordering::Release);
    }
    // SAFETY: the ring memory (the page) outlives the registration: `probe` creates the page
    // before the ring, so the ring (and the registration) is dropped first, and the page is
    // leaked rather than unmapped if the kernel might still write into the buffer.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(page.ptr as u64, 1, PROBE_BGID, 0)
    }
    .map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
}

/// The real multishot receive. Returns the verdict (`None` when inconclusive) and whether the
/// page's buffer is certainly no longer writable by the kernel.
fn test_multishot_recv(ring: &mut IoUring) -> Result<(Option<bool>, bool), ProbeError> {
    use std::io::Write;
    let (rx, mut tx) =
        std::os::unix::net::UnixStream::pair().map_err(|source| ProbeError::Syscall {
            call: "socketpair",
            source,
            remedy: "check the open-file limit (`ulimit -n`)",
        })?;
    tx.write_all(b"r").map_err(|source| ProbeError::Syscall {
        call: "write to a Unix socket pair",
        source,
        remedy: "report it with this message",
    })?;
    let sqe = opcode::RecvMulti::new(types::Fd(rx.as_raw_fd()), PROBE_BGID)
        .build()
        .user_data(RECV_TOKEN);
    // SAFETY: the SQE refers to the socket (kept open by the request itself) and to the
    // buffer group registered above; no user pointers.
    if unsafe { ring.submission().push(&sqe) }.is_err() {
        return Ok((None, true));
    }
    let ts = types::Timespec::new().sec(1);
    let args = types::SubmitArgs::new().timespec(&ts);
    let mut first: Option<(i32, u32)> = None;
    let mut settled = false;
    // Bounded: a handful of one-second waits; the byte is already there, so the first one
    // normally returns at once.
    for _ in 0..3 {
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(classify_later_error("io_uring_enter", e)),
        }
        for cqe in ring.completion() {
            if cqe.user_data() != RECV_TOKEN {
                continue;
            }
            let flags = cqe.flags();
            // Once the one buffer is used, or the request is over, the kernel has nothing
            // left to write into the page.
            if cqueue::buffer_select(flags).is_some() || !cqueue::more(flags) {
                settled = true;
            }
            first.get_or_insert((cqe.result(), flags));
        }
        if first.is_some() {
            break;
        }
    }
    let verdict = match first {
        Some((res, flags)) if res > 0 => Some(cqueue::more(flags)),
        Some((res, _)) if res == -libc::EINVAL => Some(false),
        Some((res, _)) => {
            tracing::debug!("io_uring probe: multishot recv test inconclusive (result {res})");
            None
        }
        None => {
            tracing::debug!("io_uring probe: multishot recv test got no completion");
            None
        }
    };
    drop(tx);
    Ok((verdict, settled))
}

/// Probes this kernel's io_uring with a throwaway ring (see the module docs for the steps).
///
/// On success it logs the [`Features`] line at info level and each degrade reason as a
/// warning, and returns them for the cores to build their rings with
/// ([`Features::apply_setup`]). Errors name the cause and the remedy.
pub fn probe() -> Result<Features, ProbeError> {
    let release = kernel_release();
    // Created before the ring so that it is dropped after it (locals drop in reverse order).
    let page = Page::new().map_err(|source| ProbeError::Syscall {
        call: "mmap of one page",
        source,
        remedy: "check free memory",
    })?;
    let (setup, mut ring) = choose_setup_flags(|flags| {
        let mut builder = IoUring::builder();
        flags.apply(&mut builder);
        builder.build(8)
    })
    .map_err(|e| match e.raw_os_error() {
        Some(errno) => classify_setup_error(errno, read_io_uring_disabled(), seccomp_filtered()),
        None => ProbeError::Setup { source: e },
    })?;
    // The release is checked before the opcodes: on an old kernel, "too old" is the one
    // remedy that fixes everything else.
    if let Some(k) = parse_kernel_release(&release) {
        check_kernel(k, setup.defer_taskrun)?;
    } else {
        tracing::warn!(
            "io_uring probe: cannot parse kernel release {release:?}; relying on probes"
        );
    }

    let mut opcodes = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut opcodes)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => ProbeError::MissingFeature {
                name: "IORING_REGISTER_PROBE",
                since: "5.6",
                why: "it is how the engine learns what the kernel supports",
                detail: "io_uring_register returned EINVAL".to_string(),
            },
            _ => classify_later_error("io_uring_register(IORING_REGISTER_PROBE)", e),
        })?;

    let buf_ring = register_buf_ring(&ring, &page);
    let mut page_safe = true;
    let multishot_recv = if buf_ring.is_ok() {
        let (verdict, settled) = test_multishot_recv(&mut ring)?;
        page_safe = settled;
        if let Err(e) = ring.submitter().unregister_buf_ring(PROBE_BGID) {
            tracing::debug!("io_uring probe: unregistering the buffer ring failed: {e}");
        }
        verdict
    } else {
        None
    };

    let params = ring.params();
    let evidence = Evidence {
        release,
        setup,
        nodrop: params.is_feature_nodrop(),
        ext_arg: params.is_feature_ext_arg(),
        min_timeout: params.is_feature_min_timeout(),
        buf_ring,
        multishot_recv,
    };
    let result = assess(&evidence, |code| opcodes.is_supported(code));
    drop(ring);
    if !page_safe {
        page.leak();
    }
    let features = result?;
    tracing::info!("{features}");
    for reason in &features.degraded {
        tracing::warn!("io_uring degraded: {reason}");
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_parsing() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v769"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_release("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_kernel_release("6.1"), Some((6, 1, 0)));
        assert_eq!(parse_kernel_release("6.8.0-rc3+"), Some((6, 8, 0)));
        assert_eq!(parse_kernel_release("6.9-rc1"), Some((6, 9, 0)));
        assert_eq!(
            parse_kernel_release("5.14.0-362.el9.x86_64"),
            Some((5, 14, 0))
        );
        assert_eq!(parse_kernel_release(""), None);
        assert_eq!(parse_kernel_release("linux"), None);
        assert_eq!(parse_kernel_release("6"), None);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(12345), "errno 12345");
    }
}
