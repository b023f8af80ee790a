//! Drivers turn the core's plans into system calls. This crate ships the blocking
//! `std::fs` one; the engine's io_uring driver runs the same [`crate::LogCore`] and the
//! same plans through fixed-buffer SQEs.

mod std_fs;

pub use std_fs::Wal;
