//! `rf_status`, the per-thread error text, and the panic boundary every entry point runs
//! inside.
//!
//! An entry point's body is one call to `guard` (or `guard_or` for the few that
//! return a value rather than a status). The closure returns `Result<_, Error>`; an
//! error sets this thread's last-error text and becomes its status, and a panic is caught
//! here, before it can unwind into C, and becomes `RF_ERR_PANIC`.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ringfort::wal::WalError;
use ringfort::EngineError;

/// The result of every fallible call. `RF_OK` is 0; `RF_DONE` is not an error (an
/// iterator's end); everything else is, and `rf_last_error_message()` says why.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_status {
    /// Success.
    RF_OK = 0,
    /// Not an error: an iterator has no more items.
    RF_DONE = 1,
    /// A NULL pointer, a value out of range, a malformed address or path, or a handle
    /// used where it does not belong.
    RF_ERR_INVALID_ARGUMENT = 2,
    /// A Rust panic was caught at the boundary; the text holds its message. The library
    /// stays usable, but the operation did not complete.
    RF_ERR_PANIC = 3,
    /// The engine or WAL configuration is inconsistent; the text names the field.
    RF_ERR_CONFIG = 4,
    /// The kernel lacks a feature the engine needs, or forbids io_uring; the text names
    /// the cause and the remedy.
    RF_ERR_UNSUPPORTED = 5,
    /// A system call failed; the text says which step and why.
    RF_ERR_IO = 6,
    /// The connection is gone (closed, or its id is stale).
    RF_ERR_NO_CONN = 7,
    /// A bound was reached (a queue, a channel, a limit); retry later. The text names it.
    RF_ERR_FULL = 8,
    /// The handle was closed, or the engine is stopping or already waited for.
    RF_ERR_CLOSED = 9,
    /// A call that needs a callback's core handle came from another thread, outside the
    /// callback, or with a stale handle; or a blocking call came from a core thread.
    RF_ERR_WRONG_THREAD = 10,
    /// A write-ahead-log write or sync failed; the records were not made durable.
    RF_ERR_WAL = 11,
    /// Recovery found damage its mode does not tolerate; the text names segment and offset.
    RF_ERR_CORRUPT = 12,
    /// No such timer, listener or log.
    RF_ERR_NOT_FOUND = 13,
    /// A callback asked to stop (a replay callback returned non-zero).
    RF_ERR_ABORTED = 14,
    /// A core thread failed or panicked; the text says which and why.
    RF_ERR_CORE_FAILED = 15,
}

/// An error on its way to C: the status and the text for `rf_last_error_message()`.
#[derive(Debug)]
pub(crate) struct Error {
    pub status: rf_status,
    pub text: String,
}

impl Error {
    pub fn new(status: rf_status, text: impl Into<String>) -> Error {
        Error {
            status,
            text: text.into(),
        }
    }

    pub fn invalid(text: impl Into<String>) -> Error {
        Error::new(rf_status::RF_ERR_INVALID_ARGUMENT, text)
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        let status = match &e {
            EngineError::Config(_) | EngineError::Pool(ringfort::pool::PoolError::Config(_)) => {
                rf_status::RF_ERR_CONFIG
            }
            EngineError::Probe(_) => rf_status::RF_ERR_UNSUPPORTED,
            EngineError::Pool(_) | EngineError::Io { .. } => rf_status::RF_ERR_IO,
            EngineError::NoConn => rf_status::RF_ERR_NO_CONN,
            // The engine names a missing log with a Limit; it is not a bound.
            EngineError::Limit(what) if what.starts_with("no such") => rf_status::RF_ERR_NOT_FOUND,
            EngineError::Limit(_) => rf_status::RF_ERR_FULL,
            EngineError::Wal(w) => return Error::from_wal(w),
            EngineError::Stopping => rf_status::RF_ERR_CLOSED,
            EngineError::Core { .. } => rf_status::RF_ERR_CORE_FAILED,
        };
        Error::new(status, e.to_string())
    }
}

impl Error {
    fn from_wal(e: &WalError) -> Error {
        let status = match e {
            WalError::Config(_) => rf_status::RF_ERR_CONFIG,
            WalError::RecordTooLarge { .. } => rf_status::RF_ERR_INVALID_ARGUMENT,
            WalError::Full(_) => rf_status::RF_ERR_FULL,
            WalError::Pool(_) | WalError::Io { .. } => rf_status::RF_ERR_IO,
            WalError::Failed(_) => rf_status::RF_ERR_WAL,
            WalError::Corrupt(_) => rf_status::RF_ERR_CORRUPT,
            WalError::Closed => rf_status::RF_ERR_CLOSED,
        };
        Error::new(status, e.to_string())
    }
}

impl From<WalError> for Error {
    fn from(e: WalError) -> Error {
        Error::from_wal(&e)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(text: &str) {
    let c = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

fn panic_text(name: &str, payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("{name}: panicked: {msg}")
}

/// Runs an entry point's body: an error sets the last-error text and becomes the status;
/// a panic is caught and becomes `RF_ERR_PANIC`.
pub(crate) fn guard(name: &'static str, f: impl FnOnce() -> Result<(), Error>) -> rf_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => rf_status::RF_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{name}: {}", e.text));
            e.status
        }
        Err(payload) => {
            set_last_error(&panic_text(name, &*payload));
            rf_status::RF_ERR_PANIC
        }
    }
}

/// Like [`guard`], for an entry point that returns a value: `fallback` on an error or a
/// panic (with the last-error text set).
pub(crate) fn guard_or<T>(
    name: &'static str,
    fallback: T,
    f: impl FnOnce() -> Result<T, Error>,
) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(&format!("{name}: {}", e.text));
            fallback
        }
        Err(payload) => {
            set_last_error(&panic_text(name, &*payload));
            fallback
        }
    }
}

/// A shared reference from a pointer C passed; NULL is an invalid argument.
///
/// # Safety
/// A non-NULL `p` must point to a live `T` for `'a`.
pub(crate) unsafe fn arg<'a, T>(p: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller guarantees a non-NULL `p` is live.
    unsafe { p.as_ref() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// A mutable reference from a pointer C passed; NULL is an invalid argument.
///
/// # Safety
/// A non-NULL `p` must point to a live `T` that nothing else uses for `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees a non-NULL `p` is live and unaliased.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// A UTF-8 string from a NUL-terminated C string.
///
/// # Safety
/// A non-NULL `p` must point to a NUL-terminated string live for `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// `len` bytes at `p`; NULL is allowed only for an empty range.
///
/// # Safety
/// A non-NULL `p` must point to `len` readable bytes live for `'a`.
pub(crate) unsafe fn arg_bytes<'a>(
    p: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Error> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Error::invalid(format!(
                "{what} is NULL with a length of {len}"
            )))
        };
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("{what}: length {len} is too large")));
    }
    // SAFETY: non-NULL, `len` readable bytes, as the caller guarantees; `len` fits isize.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes `v` through an out-pointer; NULL is an invalid argument.
///
/// # Safety
/// A non-NULL `p` must be valid for a write of `T`.
pub(crate) unsafe fn put<T>(p: *mut T, what: &str, v: T) -> Result<(), Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and writable, as the caller guarantees; `write` drops nothing old.
    unsafe { p.write(v) };
    Ok(())
}

/// Checks an out-pointer before any work is done, so a call with a NULL out-pointer
/// changes nothing.
pub(crate) fn need_out<T>(p: *mut T, what: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// The text of the last failed call on this thread ("" when none failed). The pointer
/// stays valid until the next failing call on this thread; copy it to keep it.
///
/// Threads: any; the text is kept per thread.
#[no_mangle]
pub extern "C" fn rf_last_error_message() -> *const c_char {
    guard_or("rf_last_error_message", c"".as_ptr(), || {
        Ok(LAST_ERROR.with(|l| l.borrow().as_ptr()))
    })
}

/// A static name for a status value, such as "RF_ERR_INVALID_ARGUMENT"; "RF_UNKNOWN" for
/// a value that is no status. `status` is taken as an int so that any value is safe.
///
/// Threads: any.
#[no_mangle]
pub extern "C" fn rf_status_name(status: i32) -> *const c_char {
    guard_or("rf_status_name", c"RF_UNKNOWN".as_ptr(), || {
        Ok(match status_from_i32(status) {
            Some(s) => status_cname(s).as_ptr(),
            None => c"RF_UNKNOWN".as_ptr(),
        })
    })
}

/// Every status, in value order (for `rf_status_name` and the tests).
pub(crate) const ALL_STATUSES: [rf_status; 16] = [
    rf_status::RF_OK,
    rf_status::RF_DONE,
    rf_status::RF_ERR_INVALID_ARGUMENT,
    rf_status::RF_ERR_PANIC,
    rf_status::RF_ERR_CONFIG,
    rf_status::RF_ERR_UNSUPPORTED,
    rf_status::RF_ERR_IO,
    rf_status::RF_ERR_NO_CONN,
    rf_status::RF_ERR_FULL,
    rf_status::RF_ERR_CLOSED,
    rf_status::RF_ERR_WRONG_THREAD,
    rf_status::RF_ERR_WAL,
    rf_status::RF_ERR_CORRUPT,
    rf_status::RF_ERR_NOT_FOUND,
    rf_status::RF_ERR_ABORTED,
    rf_status::RF_ERR_CORE_FAILED,
];

fn status_from_i32(v: i32) -> Option<rf_status> {
    ALL_STATUSES.iter().copied().find(|&s| s as i32 == v)
}

fn status_cname(s: rf_status) -> &'static CStr {
    match s {
        rf_status::RF_OK => c"RF_OK",
        rf_status::RF_DONE => c"RF_DONE",
        rf_status::RF_ERR_INVALID_ARGUMENT => c"RF_ERR_INVALID_ARGUMENT",
        rf_status::RF_ERR_PANIC => c"RF_ERR_PANIC",
        rf_status::RF_ERR_CONFIG => c"RF_ERR_CONFIG",
        rf_status::RF_ERR_UNSUPPORTED => c"RF_ERR_UNSUPPORTED",
        rf_status::RF_ERR_IO => c"RF_ERR_IO",
        rf_status::RF_ERR_NO_CONN => c"RF_ERR_NO_CONN",
        rf_status::RF_ERR_FULL => c"RF_ERR_FULL",
        rf_status::RF_ERR_CLOSED => c"RF_ERR_CLOSED",
        rf_status::RF_ERR_WRONG_THREAD => c"RF_ERR_WRONG_THREAD",
        rf_status::RF_ERR_WAL => c"RF_ERR_WAL",
        rf_status::RF_ERR_CORRUPT => c"RF_ERR_CORRUPT",
        rf_status::RF_ERR_NOT_FOUND => c"RF_ERR_NOT_FOUND",
        rf_status::RF_ERR_ABORTED => c"RF_ERR_ABORTED",
        rf_status::RF_ERR_CORE_FAILED => c"RF_ERR_CORE_FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_numbered_in_order_and_named() {
        for (i, s) in ALL_STATUSES.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            // SAFETY: rf_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(rf_status_name(i as i32)) };
            assert_eq!(name.to_str().unwrap(), format!("{s:?}"));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(rf_status_name(-1)) };
        assert_eq!(unknown.to_bytes(), b"RF_UNKNOWN");
    }

    #[test]
    fn panics_become_a_status_and_text() {
        let s = guard("rf_x", || panic!("boom"));
        assert_eq!(s, rf_status::RF_ERR_PANIC);
        // SAFETY: the last-error pointer is valid until the next failing call here.
        let text = unsafe { CStr::from_ptr(rf_last_error_message()) };
        assert_eq!(text.to_str().unwrap(), "rf_x: panicked: boom");
        assert_eq!(guard_or("rf_y", 7, || panic!("{}", 1)), 7);
    }

    #[test]
    fn nul_bytes_in_text_are_escaped() {
        let s = guard("rf_x", || Err(Error::invalid("a\0b")));
        assert_eq!(s, rf_status::RF_ERR_INVALID_ARGUMENT);
        // SAFETY: as above.
        let text = unsafe { CStr::from_ptr(rf_last_error_message()) };
        assert_eq!(text.to_str().unwrap(), "rf_x: a\\0b");
    }
}
