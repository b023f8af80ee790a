//! The pool's one error type. Running out of buffers is a value, never a panic, and the
//! exhaustion variants carry no heap data so returning them allocates nothing.

/// Everything that can go wrong in ringfort-pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The configuration is inconsistent; the text names the field.
    #[error("invalid pool config: {0}")]
    Config(String),

    /// A size class has no free buffer and the arena may not grow further.
    #[error(
        "size class {class} ({size} B) is exhausted: {in_use} buffers in use and the arena \
         is at its cap of {chunks} chunk(s); raise the class count or the growth cap"
    )]
    Exhausted {
        /// Index of the class.
        class: usize,
        /// Bytes per buffer of the class.
        size: usize,
        /// Buffers of the class currently handed out.
        in_use: usize,
        /// Chunks mapped (the cap).
        chunks: usize,
    },

    /// A single buffer larger than the largest class was asked for.
    #[error(
        "{requested} B is larger than the largest size class ({largest} B); \
         carry large messages in a BufChain"
    )]
    TooLarge {
        /// Bytes asked for.
        requested: usize,
        /// Bytes of the largest class.
        largest: usize,
    },

    /// A class index outside the configured classes.
    #[error("size class {class} does not exist (the arena has {classes})")]
    NoSuchClass {
        /// Index asked for.
        class: usize,
        /// Number of classes configured.
        classes: usize,
    },

    /// Appending would take a chain past its configured maximum length.
    #[error("a BufChain of {len} B cannot take {add} B more: its maximum is {max} B")]
    ChainFull {
        /// Current chain length.
        len: usize,
        /// Bytes that were to be added.
        add: usize,
        /// The chain's maximum.
        max: usize,
    },

    /// RLIMIT_MEMLOCK cannot cover the memory the arena would pin once registered.
    #[error(
        "RLIMIT_MEMLOCK is {limit} B but registering this arena pins up to {needed} B: raise it \
         (`ulimit -l {needed_kib}` in the shell, `LimitMEMLOCK={needed}` in a systemd unit, \
         or `memlock` in /etc/security/limits.conf), run with CAP_IPC_LOCK, or opt into \
         unregistered buffers with Registration::AllowUnregistered"
    )]
    Memlock {
        /// Bytes the arena pins at its cap.
        needed: usize,
        /// The same in KiB, for `ulimit -l`.
        needed_kib: usize,
        /// The current soft limit in bytes.
        limit: u64,
    },

    /// The kernel refused a mapping or a prefault.
    #[error("mapping {len} B with {what} failed: {source}")]
    Map {
        /// Bytes asked for.
        len: usize,
        /// The backing or step that failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },

    /// Hugetlb backing was required but is not available.
    #[error("hugetlb backing required but unavailable: {0}")]
    HugeTlbUnavailable(String),

    /// Binding the arena to its NUMA node failed.
    #[error("NUMA binding failed: {0}")]
    Numa(String),
}
