//! # ringfort (not built yet)
//!
//! This crate will be the engine: one pinned thread per core, each with its own io_uring,
//! its own ringfort-pool arena registered as fixed buffers, and its own slab of
//! connections and operations. It will drive sockets (multishot accept and receive into
//! provided buffer rings, batched and zero-copy sends), files (O_DIRECT from registered
//! buffers), cross-core SPSC channels woken with `IORING_OP_MSG_RING`, timers, and the
//! ringfort-wal driver. Its `examples/` will hold the echo and RESP servers. Until then it
//! exports nothing.
