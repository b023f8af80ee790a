//! `rf_test_panic`: an entry point that panics on purpose, built only with the
//! `test-panic` feature, which only the C tests enable. It proves the boundary the real
//! entry points share: the same `guard`, a caught panic, `RF_ERR_PANIC`, the text, and a
//! library that goes on working. No input makes a shipped entry point panic (that would be
//! a bug to fix, not a test hook), so a deliberate one is the honest way to test it.

use std::ffi::c_char;

use crate::status::{arg_str, guard, rf_status};

/// Panics with `message` inside the panic boundary; returns `RF_ERR_PANIC`.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_test_panic(message: *const c_char) -> rf_status {
    guard("rf_test_panic", || {
        // SAFETY: NULL or NUL-terminated (the contract).
        let text = unsafe { arg_str(message, "message") }?;
        panic!("{text}");
    })
}
