//! # ringfort-wal (not built yet)
//!
//! This crate will hold Ringfort's write-ahead log as a sans-IO core: the record codec
//! (CRC32 over header and payload, bound to a per-segment signature), batch sealing into
//! ringfort-pool buffers, segment naming and rotation, and recovery with RocksDB-style
//! modes. It will also ship a blocking `std::fs` driver and the `ringfort-wal` operator CLI.
//! It will never know that io_uring exists; the engine drives it. Until then it exports
//! nothing.
