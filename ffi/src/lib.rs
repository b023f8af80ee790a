//! # ringfort-ffi (not built yet)
//!
//! This crate will be Ringfort's C ABI: a cdylib and a staticlib with a cbindgen-generated
//! `include/ringfort.h`, opaque handles with `_new`/`_free` pairs, `rf_status` results with
//! per-thread error text, and a panic boundary on every entry point. The engine's
//! completion-driven handler maps onto a C struct of function pointers plus `void
//! *user_data`. Until then it exports nothing.
