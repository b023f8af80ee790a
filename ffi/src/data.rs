//! Received bytes: `rf_data`, the view `on_data` gets (valid during that call), and
//! `rf_buf`, a retained buffer that lives until released.
//!
//! Both are a [`BufChain`] of pool blocks underneath: retaining shares the blocks (a
//! reference count), it never copies bytes. A view is checked the way core handles are
//! (a thread-local names the view of the `on_data` running on this thread), so a view kept
//! past its callback is refused, not dereferenced. A retained buffer is an ordinary heap
//! handle: use it from one thread at a time, and release it on any thread.

use std::cell::Cell;
use std::ffi::c_void;

use ringfort::pool::BufChain;

use crate::status::{arg, guard, guard_or, need_out, put, rf_status, Error};

/// The received, unconsumed bytes of a connection, during one `on_data` call.
pub struct rf_data {
    chain: *mut BufChain,
}

/// Retained bytes: shares the received blocks without copying them. Release with
/// `rf_buf_release`, on any thread, or hand to `rf_conn_send_buf`.
pub struct rf_buf {
    pub(crate) chain: BufChain,
}

/// One contiguous piece of a view or buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rf_slice {
    /// The first byte.
    pub ptr: *const u8,
    /// Bytes in the piece.
    pub len: usize,
}

thread_local! {
    /// The view of the `on_data` running on this thread, if any.
    static CURRENT: Cell<*mut rf_data> = const { Cell::new(std::ptr::null_mut()) };
}

/// Calls `f` with a view of `chain`, valid until `f` returns.
pub(crate) fn with_data_view<R>(chain: &mut BufChain, f: impl FnOnce(*mut rf_data) -> R) -> R {
    let mut view = rf_data { chain };
    let p: *mut rf_data = &mut view;
    let prev = CURRENT.with(|c| c.replace(p));
    let r = f(p);
    CURRENT.with(|c| c.set(prev));
    r
}

/// The chain behind `data` when it is the view of the `on_data` running on this thread.
pub(crate) fn data_chain<'a>(data: *mut rf_data) -> Result<&'a mut BufChain, Error> {
    if data.is_null() {
        return Err(Error::invalid("data is NULL"));
    }
    if CURRENT.with(|c| c.get()) != data {
        return Err(Error::new(
            rf_status::RF_ERR_WRONG_THREAD,
            "this data view is not the one of an on_data running on this thread (kept past \
             its callback, or passed to another thread); retain the bytes to keep them",
        ));
    }
    // SAFETY: `data` equals `CURRENT`, which `with_data_view` set to its live stack view
    // and resets before returning, so the view and the chain it borrows are live. The
    // engine does not touch the chain while the callback runs; the references this returns
    // end before the entry point that asked for them returns.
    Ok(unsafe { &mut *(*data).chain })
}

/// Fills up to `max` slices with the first pieces of `chain`; returns how many.
fn fill_slices(chain: &BufChain, out: *mut rf_slice, max: usize) -> Result<usize, Error> {
    if out.is_null() && max > 0 {
        return Err(Error::invalid("out is NULL with a max above 0"));
    }
    let mut n = 0;
    for piece in chain.chunks().take(max) {
        let s = rf_slice {
            ptr: piece.as_ptr(),
            len: piece.len(),
        };
        // SAFETY: `out` holds `max` slices (the caller's contract) and `n < max`.
        unsafe { out.add(n).write(s) };
        n += 1;
    }
    Ok(n)
}

fn copy_out(chain: &BufChain, offset: usize, dst: *mut c_void, len: usize) -> Result<(), Error> {
    if dst.is_null() && len > 0 {
        return Err(Error::invalid("dst is NULL"));
    }
    match offset.checked_add(len) {
        Some(end) if end <= chain.len() => {}
        _ => {
            return Err(Error::invalid(format!(
                "offset {offset} + len {len} is past the {} bytes held",
                chain.len()
            )))
        }
    }
    if len > 0 {
        // SAFETY: `dst` has room for `len` bytes (the caller's contract), and a Rust
        // buffer never overlaps it (pool blocks are only handed out as views).
        let dst = unsafe { std::slice::from_raw_parts_mut(dst.cast::<u8>(), len) };
        chain.copy_to_slice(offset, dst);
    }
    Ok(())
}

fn new_buf(chain: BufChain) -> *mut rf_buf {
    Box::into_raw(Box::new(rf_buf { chain }))
}

/// Bytes in the view; 0 for an invalid view.
///
/// Threads: the core thread, during the `on_data` that received `data`.
#[no_mangle]
pub extern "C" fn rf_data_len(data: *mut rf_data) -> usize {
    guard_or("rf_data_len", 0, || Ok(data_chain(data)?.len()))
}

/// The view's bytes as pieces: fills up to `max` slices from the front and sets `count`
/// to how many were filled (fewer than `max` means that was all). The pointers are valid
/// during the callback, until the bytes are consumed.
///
/// # Safety
/// `out` is NULL (only with `max` 0) or has room for `max` slices; `count` is NULL or
/// writable.
///
/// Threads: the core thread, during the `on_data` that received `data`.
#[no_mangle]
pub unsafe extern "C" fn rf_data_slices(
    data: *mut rf_data,
    out: *mut rf_slice,
    max: usize,
    count: *mut usize,
) -> rf_status {
    guard("rf_data_slices", || {
        need_out(count, "count")?;
        let n = fill_slices(data_chain(data)?, out, max)?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(count, "count", n) }
    })
}

/// Copies `len` bytes starting at `offset` of the view into `dst` (nothing is consumed).
/// `RF_ERR_INVALID_ARGUMENT` past the end.
///
/// # Safety
/// `dst` is NULL (only with `len` 0) or has room for `len` bytes.
///
/// Threads: the core thread, during the `on_data` that received `data`.
#[no_mangle]
pub unsafe extern "C" fn rf_data_copy(
    data: *mut rf_data,
    offset: usize,
    dst: *mut c_void,
    len: usize,
) -> rf_status {
    guard("rf_data_copy", || {
        copy_out(data_chain(data)?, offset, dst, len)
    })
}

/// Consumes (drops) the first `n` bytes of the view. `RF_ERR_INVALID_ARGUMENT` if `n`
/// exceeds `rf_data_len`.
///
/// Threads: the core thread, during the `on_data` that received `data`.
#[no_mangle]
pub extern "C" fn rf_data_consume(data: *mut rf_data, n: usize) -> rf_status {
    guard("rf_data_consume", || {
        let chain = data_chain(data)?;
        if n > chain.len() {
            return Err(Error::invalid(format!(
                "n {n} exceeds the {} bytes in data",
                chain.len()
            )));
        }
        chain.advance(n);
        Ok(())
    })
}

/// Retains the first `len` bytes of the view, without copying and without consuming
/// them, as a buffer that outlives the callback; release it with `rf_buf_release`. While
/// it lives, the pool blocks it shares stay out of the receive rings.
///
/// # Safety
/// `out` is NULL or writable.
///
/// Threads: the core thread, during the `on_data` that received `data`.
#[no_mangle]
pub unsafe extern "C" fn rf_data_retain(
    data: *mut rf_data,
    len: usize,
    out: *mut *mut rf_buf,
) -> rf_status {
    guard("rf_data_retain", || {
        need_out(out, "out")?;
        let chain = data_chain(data)?;
        if len > chain.len() {
            return Err(Error::invalid(format!(
                "len {len} exceeds the {} bytes in data",
                chain.len()
            )));
        }
        let mut copy = chain.clone();
        copy.truncate(len);
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", new_buf(copy)) }
    })
}

/// Bytes in a retained buffer; 0 for NULL.
///
/// # Safety
/// `buf` is NULL or a live buffer.
///
/// Threads: any, one at a time per buffer.
#[no_mangle]
pub unsafe extern "C" fn rf_buf_len(buf: *const rf_buf) -> usize {
    guard_or("rf_buf_len", 0, || {
        // SAFETY: NULL or live (the contract).
        Ok(unsafe { arg(buf, "buf") }?.chain.len())
    })
}

/// A retained buffer's bytes as pieces, as `rf_data_slices`. The pointers are valid until
/// the buffer is released.
///
/// # Safety
/// `buf` is NULL or a live buffer; `out` is NULL (only with `max` 0) or has room for
/// `max` slices; `count` is NULL or writable.
///
/// Threads: any, one at a time per buffer.
#[no_mangle]
pub unsafe extern "C" fn rf_buf_slices(
    buf: *const rf_buf,
    out: *mut rf_slice,
    max: usize,
    count: *mut usize,
) -> rf_status {
    guard("rf_buf_slices", || {
        need_out(count, "count")?;
        // SAFETY: NULL or live (the contract).
        let buf = unsafe { arg(buf, "buf") }?;
        let n = fill_slices(&buf.chain, out, max)?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(count, "count", n) }
    })
}

/// Copies `len` bytes starting at `offset` of a retained buffer into `dst`.
///
/// # Safety
/// `buf` is NULL or a live buffer; `dst` is NULL (only with `len` 0) or has room for `len`
/// bytes.
///
/// Threads: any, one at a time per buffer.
#[no_mangle]
pub unsafe extern "C" fn rf_buf_copy(
    buf: *const rf_buf,
    offset: usize,
    dst: *mut c_void,
    len: usize,
) -> rf_status {
    guard("rf_buf_copy", || {
        // SAFETY: NULL or live (the contract).
        let buf = unsafe { arg(buf, "buf") }?;
        copy_out(&buf.chain, offset, dst, len)
    })
}

/// Retains a retained buffer again: a second handle to the same bytes (no copy). Each
/// handle is released on its own.
///
/// # Safety
/// `buf` is NULL or a live buffer; `out` is NULL or writable.
///
/// Threads: any, one at a time per buffer.
#[no_mangle]
pub unsafe extern "C" fn rf_buf_retain(buf: *const rf_buf, out: *mut *mut rf_buf) -> rf_status {
    guard("rf_buf_retain", || {
        need_out(out, "out")?;
        // SAFETY: NULL or live (the contract).
        let buf = unsafe { arg(buf, "buf") }?;
        // SAFETY: checked non-NULL; writable (the contract).
        unsafe { put(out, "out", new_buf(buf.chain.clone())) }
    })
}

/// Releases a retained buffer. NULL is a no-op. Its blocks go back to their core's pool
/// (from any thread). Buffers still held when the engine stops stay valid: their memory is
/// kept rather than freed, so release them before the engine is freed.
///
/// # Safety
/// `buf` is NULL or a live buffer, not used after this call.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_buf_release(buf: *mut rf_buf) {
    guard_or("rf_buf_release", (), || {
        if !buf.is_null() {
            // SAFETY: a live handle from Box::into_raw, released once (the contract).
            drop(unsafe { Box::from_raw(buf) });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfort::pool::{
        Arena, BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
    };

    fn arena() -> Arena {
        Arena::new(PoolConfig {
            classes: vec![SizeClass {
                size: 64,
                count: 64,
            }],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .expect("arena")
    }

    #[test]
    fn views_slice_copy_consume_and_retain() {
        let a = arena();
        let mut chain = BufChain::new(usize::MAX);
        let msg: Vec<u8> = (0u8..160).collect();
        chain.append_slice(&a, &msg).unwrap();
        let mut kept: *mut rf_buf = std::ptr::null_mut();
        with_data_view(&mut chain, |d| {
            assert_eq!(rf_data_len(d), 160);
            let mut slices = [rf_slice {
                ptr: std::ptr::null(),
                len: 0,
            }; 8];
            let mut n = 0;
            // SAFETY: `slices` holds 8; `n` and `back` are writable.
            unsafe {
                assert_eq!(
                    rf_data_slices(d, slices.as_mut_ptr(), 8, &mut n),
                    rf_status::RF_OK
                );
                assert_eq!(n, 3, "160 B in 64 B blocks");
                assert_eq!(slices[..n].iter().map(|s| s.len).sum::<usize>(), 160);
                let mut back = [0u8; 10];
                assert_eq!(
                    rf_data_copy(d, 150, back.as_mut_ptr().cast(), 10),
                    rf_status::RF_OK
                );
                assert_eq!(&back[..], &msg[150..]);
                assert_eq!(
                    rf_data_copy(d, 151, back.as_mut_ptr().cast(), 10),
                    rf_status::RF_ERR_INVALID_ARGUMENT
                );
                assert_eq!(rf_data_retain(d, 20, &mut kept), rf_status::RF_OK);
            }
            assert_eq!(rf_data_consume(d, 161), rf_status::RF_ERR_INVALID_ARGUMENT);
            assert_eq!(rf_data_consume(d, 25), rf_status::RF_OK);
            assert_eq!(rf_data_len(d), 135);
        });
        assert_eq!(chain.len(), 135);
        assert_eq!(chain.to_vec(), &msg[25..]);
        // SAFETY: `kept` is live until released below; `out` is writable.
        unsafe {
            assert_eq!(rf_buf_len(kept), 20);
            let mut twin: *mut rf_buf = std::ptr::null_mut();
            assert_eq!(rf_buf_retain(kept, &mut twin), rf_status::RF_OK);
            rf_buf_release(kept);
            let mut back = [0u8; 20];
            assert_eq!(
                rf_buf_copy(twin, 0, back.as_mut_ptr().cast(), 20),
                rf_status::RF_OK
            );
            assert_eq!(&back[..], &msg[..20]);
            rf_buf_release(twin);
            rf_buf_release(std::ptr::null_mut());
        }
    }

    #[test]
    fn a_view_kept_past_its_callback_is_refused() {
        let a = arena();
        let mut chain = BufChain::new(usize::MAX);
        chain.append_slice(&a, b"hello").unwrap();
        let stale = with_data_view(&mut chain, |d| d);
        assert_eq!(rf_data_len(stale), 0);
        assert_eq!(rf_data_consume(stale, 1), rf_status::RF_ERR_WRONG_THREAD);
        assert_eq!(
            rf_data_consume(std::ptr::null_mut(), 1),
            rf_status::RF_ERR_INVALID_ARGUMENT
        );
        assert_eq!(chain.len(), 5);
    }
}
