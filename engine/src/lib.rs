//! # ringfort
//!
//! A thread-per-core io_uring engine for storage and messaging servers. Each core is a
//! pinned thread with its own io_uring (SINGLE_ISSUER, DEFER_TASKRUN and COOP_TASKRUN
//! where the kernel has them), its own NUMA-local [`pool::Arena`] registered as fixed
//! buffers, and its own slab of connections and operations. Nothing is shared between
//! cores but bounded channels.
//!
//! ## How data flows
//!
//! 1. **Start.** [`Engine::start`] probes the kernel ([`probe`]), checks RLIMIT_MEMLOCK for
//!    every core's arena, raises RLIMIT_NOFILE, and starts the cores. Each builds its ring,
//!    registers its arena and two provided buffer rings (small and large blocks), and calls
//!    the application's [`Handler::on_start`].
//! 2. **Receive.** Listeners use `SO_REUSEPORT` and a multishot accept; each connection has
//!    one multishot receive that stays armed. The kernel fills a ring buffer; small
//!    receives are copied into the connection's [`pool::BufChain`] and the buffer goes
//!    straight back, large ones move the block into the chain without a copy. A connection
//!    moves between the small and large groups by its recent receive sizes.
//! 3. **Handle.** [`Handler::on_data`] gets the chain and consumes whole requests. Work for
//!    another core goes through [`Ctx::submit_to`] (a bounded SPSC [`channel`], woken with
//!    `IORING_OP_MSG_RING`); ordered pipelining ([`Ctx::begin_request`], [`Ctx::reply`])
//!    keeps each connection's replies in request order through a bounded [`reorder`]
//!    window.
//! 4. **Send.** Replies queue in the connection's bounded [`outbox`]; once per tick each
//!    connection gets one gathered `SENDMSG`, or a `SEND_ZC` from registered memory for a
//!    large block, held until the kernel's notification. A notification that says the
//!    kernel copied the data after all (a local peer) turns zero copy off for that
//!    connection.
//! 5. **Log.** A handler opens per-core write-ahead logs with [`Ctx::wal_open`] and
//!    appends records that return their LSN at once; once per tick the WAL driver seals
//!    what was appended and submits linked writes from registered blocks plus one
//!    `fdatasync` (a group commit). [`Handler::on_wal_durable`] reports the durable LSN.
//! 6. **Stop.** [`Engine::stop`] closes listeners, drains queued replies up to a deadline,
//!    cancels what is left, and waits for the kernel to return every buffer.
//!
//! Every queue is bounded; [`Limits`] says what happens at each bound.
//!
//! Tests can make the engine's own I/O fail (WAL writes, fsyncs and preallocations,
//! accepts, receives) and simulate a crash that loses unsynced pages with the test-only
//! `fault-injection` feature: see `fault` (built only with that feature).

mod bufring;
pub mod channel;
mod config;
mod core;
mod ctx;
mod engine;
mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod handler;
mod metrics;
mod net;
pub mod outbox;
pub mod probe;
pub mod reorder;
mod timers;
mod wal_driver;

pub use config::{EngineConfig, Limits, NetConfig, RecvBuffers};
pub use ctx::Ctx;
pub use engine::{allowed_cpus, cpus_for_cores, Engine};
pub use error::EngineError;
pub use handler::{
    CloseReason, ConnId, CoreId, FileDone, Handler, ListenerId, OpId, TimerId, WalId,
};
pub use metrics::CoreMetrics;
pub use net::reserve_port;
pub use ringfort_pool as pool;
pub use ringfort_wal as wal;
