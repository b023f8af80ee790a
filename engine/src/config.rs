//! Engine configuration, with the defaults a server wants and the bounds it enforces.

use std::time::Duration;

use ringfort_pool::{PoolConfig, SizeClass};

use crate::error::EngineError;
use crate::outbox::OutboxLimits;

/// Socket options for listeners and outbound connections. Accepted sockets inherit the
/// listener's options (Linux copies them at accept), so no option costs a syscall per
/// connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// `listen(2)` backlog. The kernel caps it at `net.core.somaxconn`; the engine warns
    /// when it asks for more.
    pub backlog: u32,
    /// `TCP_NODELAY`: send small replies at once instead of waiting to coalesce them.
    pub nodelay: bool,
    /// TCP keepalive `(idle, interval, count)`; `None` leaves keepalive off.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// `SO_RCVBUF` in bytes; `None` keeps the kernel's autotuning. Size it from the
    /// bandwidth-delay product: bandwidth (B/s) x round-trip time (s).
    pub recv_buffer: Option<u32>,
    /// `SO_SNDBUF` in bytes; `None` keeps the kernel's autotuning.
    pub send_buffer: Option<u32>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            backlog: 4096,
            nodelay: true,
            keepalive: Some((Duration::from_secs(300), Duration::from_secs(30), 4)),
            recv_buffer: None,
            send_buffer: None,
        }
    }
}

/// The provided buffer rings each core's receives draw from: a small group and a large
/// group. A connection starts on the small group and moves to the large one when its
/// receives keep filling small buffers (and back when they stop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvBuffers {
    /// Bytes per small buffer; must be a size class of the pool.
    pub small_size: usize,
    /// Small buffers in the ring (a power of two, at most 32768).
    pub small_count: u16,
    /// Bytes per large buffer; must be a size class of the pool.
    pub large_size: usize,
    /// Large buffers in the ring (a power of two, at most 32768).
    pub large_count: u16,
}

impl Default for RecvBuffers {
    fn default() -> Self {
        RecvBuffers {
            small_size: 4 << 10,
            small_count: 1024,
            large_size: 64 << 10,
            large_count: 64,
        }
    }
}

/// Bounds. Each says what happens when it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections per core. At the bound a new connection is closed at once and counted
    /// in [`crate::CoreMetrics::accept_refused`].
    pub max_conns: usize,
    /// Received bytes a connection may hold unconsumed by its handler. At the bound the
    /// connection is closed with [`crate::CloseReason::RecvLimit`].
    pub max_recv_bytes: usize,
    /// Requests a connection may have in flight (ordered replies not yet sent). At the
    /// bound the engine stops reading that connection until replies drain.
    pub max_in_flight: usize,
    /// Queued outbound bytes above which the engine stops reading a connection (its
    /// client is not reading replies), resuming when the queue drains below half.
    pub pause_outbox_bytes: usize,
    /// Outbound queue limits; crossing them closes the connection with
    /// [`crate::CloseReason::Evicted`].
    pub outbox: OutboxLimits,
    /// Send operations in flight per core. At the bound further sends wait a tick.
    pub max_sends_in_flight: usize,
    /// Timers per core. At the bound [`crate::Ctx::timer`] returns an error.
    pub max_timers: usize,
    /// Messages per cross-core channel. At the bound [`crate::Ctx::submit_to`] hands the
    /// message back ([`crate::channel::Full`]).
    pub channel_capacity: usize,
    /// Messages per core queued from threads outside the engine ([`crate::Engine::post`]).
    pub external_queue: usize,
    /// Messages each inbound channel delivers per tick, so one busy peer cannot starve
    /// the others or the sockets.
    pub drain_per_tick: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 65536,
            max_recv_bytes: 64 << 20,
            max_in_flight: 128,
            pause_outbox_bytes: 4 << 20,
            outbox: OutboxLimits::normal_default(),
            max_sends_in_flight: 4096,
            max_timers: 65536,
            channel_capacity: 4096,
            external_queue: 1024,
            drain_per_tick: 1024,
        }
    }
}

/// Everything the engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// OS CPU indices, one core thread each. Empty means every CPU this process may run on.
    pub cpus: Vec<usize>,
    /// Submission queue entries per ring (the completion queue gets twice as many).
    pub ring_entries: u32,
    /// Each core's arena. [`EngineConfig::default`] sizes it for the receive rings.
    pub pool: PoolConfig,
    /// Receive buffer rings.
    pub recv: RecvBuffers,
    /// Socket options.
    pub net: NetConfig,
    /// Bounds.
    pub limits: Limits,
    /// Replies at least this large whose first block is registered go out with
    /// `SEND_ZC`; smaller ones are copied by the kernel. `usize::MAX` disables zero copy.
    /// A connection whose zero-copy send the kernel reports as copied (every local peer:
    /// loopback, or a veth into a local socket) sends by copy from then on
    /// ([`Features::zc_report_usage`](crate::probe::Features::zc_report_usage),
    /// [`CoreMetrics::zc_copied`](crate::CoreMetrics::zc_copied)).
    pub send_zc_threshold: usize,
    /// Close connections that receive nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Completion batching: a core that reaped two or more completions last tick asks the
    /// kernel for as many again (at most 64) and waits up to this long for them before it
    /// takes fewer, so a busy core makes fewer `io_uring_enter` calls. Zero (the default)
    /// turns it off. It trades latency for CPU: in one quiet echo run (1 server CPU,
    /// loopback) 50 us cut the enters per 1,000 messages from 470-1,270 to 40-340 at 50 to
    /// 1,000 connections and the server CPU per message by 6-23%, but cost 18% of the
    /// throughput at 10 connections, where waiting delays replies the clients are waiting
    /// for. At most 1 s. Needs `IORING_FEAT_MIN_TIMEOUT` (Linux 6.12); without it the
    /// setting is ignored and the probe lists it as degraded.
    pub batch_wait: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cpus: Vec::new(),
            ring_entries: 4096,
            pool: PoolConfig {
                classes: vec![
                    SizeClass {
                        size: 4 << 10,
                        count: 4096,
                    },
                    SizeClass {
                        size: 16 << 10,
                        count: 512,
                    },
                    SizeClass {
                        size: 64 << 10,
                        count: 256,
                    },
                    SizeClass {
                        size: 1 << 20,
                        count: 8,
                    },
                ],
                ..PoolConfig::default()
            },
            recv: RecvBuffers::default(),
            net: NetConfig::default(),
            limits: Limits::default(),
            send_zc_threshold: 64 << 10,
            idle_timeout: None,
            batch_wait: Duration::ZERO,
        }
    }
}

impl EngineConfig {
    /// Checks the bounds against each other; the error names the field.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Config(m));
        if self.batch_wait > Duration::from_secs(1) {
            return bad(format!(
                "batch_wait {:?} is above the 1 s bound",
                self.batch_wait
            ));
        }
        let r = &self.recv;
        for (name, size, count) in [
            ("small", r.small_size, r.small_count),
            ("large", r.large_size, r.large_count),
        ] {
            if !self.pool.classes.iter().any(|c| c.size == size) {
                return bad(format!(
                    "recv.{name}_size {size} B is not a size class of the pool"
                ));
            }
            if count == 0 || !count.is_power_of_two() || count > 32768 {
                return bad(format!(
                    "recv.{name}_count {count} must be a power of two in 1..=32768"
                ));
            }
            let class_count = self
                .pool
                .classes
                .iter()
                .find(|c| c.size == size)
                .map_or(0, |c| c.count);
            if (count as usize) > class_count {
                return bad(format!(
                    "recv.{name}_count {count} exceeds the pool's {class_count} buffers of {size} B"
                ));
            }
        }
        if r.small_size >= r.large_size {
            return bad("recv.small_size must be smaller than recv.large_size".into());
        }
        let l = &self.limits;
        for (name, v) in [
            ("max_conns", l.max_conns),
            ("max_in_flight", l.max_in_flight),
            ("max_sends_in_flight", l.max_sends_in_flight),
            ("max_timers", l.max_timers),
            ("channel_capacity", l.channel_capacity),
            ("external_queue", l.external_queue),
            ("drain_per_tick", l.drain_per_tick),
            ("max_recv_bytes", l.max_recv_bytes),
        ] {
            if v == 0 {
                return bad(format!("limits.{name} must be at least 1"));
            }
        }
        if l.max_conns > u32::MAX as usize / 2 {
            return bad("limits.max_conns is too large".into());
        }
        if self.ring_entries < 8 || !self.ring_entries.is_power_of_two() {
            return bad(format!(
                "ring_entries {} must be a power of two of at least 8",
                self.ring_entries
            ));
        }
        self.limits
            .outbox
            .validate()
            .map_err(|e| EngineError::Config(format!("limits.outbox: {e}")))?;
        if self.cpus.len() > 256 {
            return bad("at most 256 cores are supported".into());
        }
        self.pool.clone().validate().map_err(EngineError::Pool)
    }
}
