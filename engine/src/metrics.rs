//! Per-core counters. The core publishes a snapshot every tick; [`crate::Engine::metrics`]
//! reads them from any thread.

/// One core's counters since start (gauges say "now").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreMetrics {
    /// Loop iterations.
    pub ticks: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// SQEs submitted.
    pub sqes: u64,
    /// CQEs handled.
    pub completions: u64,
    /// The most CQEs handled in one tick.
    pub max_completions_per_tick: u64,
    /// Bytes received from sockets.
    pub bytes_in: u64,
    /// Bytes sent to sockets.
    pub bytes_out: u64,
    /// Connections accepted.
    pub accepts: u64,
    /// Connections closed at once because `limits.max_conns` was reached.
    pub accept_refused: u64,
    /// Times accept failed for lack of file descriptors (EMFILE/ENFILE) and backed off.
    pub accept_backoffs: u64,
    /// Connections closed, for any reason.
    pub closes: u64,
    /// Connections closed because their outbound queue crossed a limit.
    pub evictions: u64,
    /// Connections closed for idleness.
    pub idle_closes: u64,
    /// Send operations with `SEND_ZC`.
    pub sends_zc: u64,
    /// Send operations that copy.
    pub sends_copy: u64,
    /// Zero-copy sends whose notification said the kernel copied the data after all (a
    /// local peer); each turns zero copy off for its connection.
    pub zc_copied: u64,
    /// Multishot receives re-armed (after ENOBUFS, termination, or a pause).
    pub recv_rearms: u64,
    /// Receives that found the buffer ring empty.
    pub recv_enobufs: u64,
    /// Times reading a connection was paused (in-flight or outbound bound reached).
    pub read_pauses: u64,
    /// Cross-core messages received.
    pub messages_in: u64,
    /// Cross-core messages sent.
    pub messages_out: u64,
    /// Cross-core sends refused because the channel was full.
    pub channel_full: u64,
    /// Cross-core wake-ups sent with `IORING_OP_MSG_RING`.
    pub wakes_sent: u64,
    /// Open connections (gauge).
    pub conns: u64,
    /// Armed timers (gauge).
    pub timers: u64,
    /// Operations in flight in the kernel (gauge).
    pub ops_in_flight: u64,
    /// Arena buffers still handed out when the core exited, after every core released
    /// its blocks (0 on a clean stop; a non-zero count was leaked, not freed, on purpose).
    pub live_buffers_at_exit: u64,
}
