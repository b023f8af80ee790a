//! # ringfort-ffi
//!
//! Ringfort's C ABI: a thin skin over the engine (`ringfort`) and the write-ahead log
//! (`ringfort-wal`), built as a cdylib and a staticlib. The header `include/ringfort.h`
//! is generated from this crate by cbindgen (`cbindgen.toml`) and committed; a test fails
//! when it drifts. `include/ringfort.hpp` is a small C++17 RAII wrapper over it.
//!
//! ## How data flows through it
//!
//! 1. **Configure and start.** C builds an `rf_config` and calls `rf_engine_start` with
//!    an `rf_handler` (a struct of function pointers) and a `void *user_data`. Each core
//!    thread gets an `FfiHandler` (in `handler`), the engine handler that opens the configured
//!    listeners and calls the C functions.
//! 2. **Callbacks.** Every engine callback becomes a C call with an `rf_core` handle that
//!    is valid only during that call, on that thread; received bytes arrive as an
//!    `rf_data` view with the same lifetime. Both are checked against a thread-local
//!    before use, so a kept or misrouted handle gets `RF_ERR_WRONG_THREAD`, not a crash.
//! 3. **Work.** Inside a callback, C queues sends (copied, or zero copy from the received
//!    blocks), closes, timers, cross-core messages and core-local WAL appends through the
//!    engine's `Ctx`. Retained buffers (`rf_buf`) share pool blocks past the callback.
//! 4. **Outside the engine.** `rf_engine_post`, `rf_engine_stats`, `rf_engine_stop` and
//!    `rf_engine_wait` work from other threads; the standalone `rf_wal` (ringfort-wal's
//!    thread-safe driver) and `rf_wal_reader` need no engine at all.
//!
//! ## Rules every entry point keeps
//!
//! Handles are opaque, created by `_new`/`_open`/`_start` and freed by `_free` (NULL is a
//! no-op). Fallible calls return [`status::rf_status`]; `rf_last_error_message()` holds
//! the text, per thread. NULL or invalid arguments give `RF_ERR_INVALID_ARGUMENT`.
//! Enumerations C passes in are taken as integers and checked, so no value is undefined
//! behaviour. Each body runs inside `status::guard`, which turns a panic into
//! `RF_ERR_PANIC` before it can unwind into C (a test checks every `extern "C"` function
//! is written that way).

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod core;
pub mod core_wal;
pub mod data;
pub mod engine;
pub mod handler;
pub mod status;
#[cfg(feature = "test-panic")]
mod test_panic;
pub mod wal;

use std::ffi::c_char;

/// The library's major version.
pub const RF_VERSION_MAJOR: u32 = 0;
/// The library's minor version.
pub const RF_VERSION_MINOR: u32 = 1;
/// The library's patch version.
pub const RF_VERSION_PATCH: u32 = 0;

/// The version of the library linked at run time, "MAJOR.MINOR.PATCH" (compare with the
/// `RF_VERSION_*` macros the program was compiled with). A static string.
///
/// Threads: any.
#[no_mangle]
pub extern "C" fn rf_version() -> *const c_char {
    status::guard_or("rf_version", c"".as_ptr(), || {
        Ok(concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_the_crate() {
        let want = format!("{RF_VERSION_MAJOR}.{RF_VERSION_MINOR}.{RF_VERSION_PATCH}");
        assert_eq!(want, env!("CARGO_PKG_VERSION"));
        // SAFETY: rf_version returns a static NUL-terminated string.
        let got = unsafe { std::ffi::CStr::from_ptr(rf_version()) };
        assert_eq!(got.to_str().unwrap(), want);
    }

    /// Every `extern "C"` function's body is one `guard`/`guard_or` call, so no panic can
    /// unwind into C (rf_wal_reader_next keeps its guard call in a `let`).
    #[test]
    fn every_entry_point_is_guarded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if !line.starts_with("pub extern \"C\" fn")
                    && !line.starts_with("pub unsafe extern \"C\" fn")
                {
                    continue;
                }
                let open = (i..lines.len()).find(|&j| lines[j].ends_with('{')).unwrap();
                let first = lines[open + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty() && !l.starts_with("//"))
                    .unwrap();
                assert!(
                    first.starts_with("guard(")
                        || first.starts_with("guard_or(")
                        || first.starts_with("status::guard_or(")
                        || first.starts_with("let s = guard(")
                        || (first.starts_with("let mut done = false;")),
                    "{}:{}: {line} does not start with a guard: {first}",
                    path.display(),
                    i + 1
                );
                checked += 1;
            }
        }
        assert!(checked > 60, "only {checked} entry points found");
    }
}
