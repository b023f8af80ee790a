//! The C ABI's argument validation (ringfort-ffi), called as C would call it: with NULL
//! pointers, made-up core and data handles, arbitrary integers for enumerations and
//! sizes, and arbitrary bytes for addresses and paths.
//!
//! Checks:
//! - no panic reaches the boundary: no call returns `RF_ERR_PANIC`;
//! - every failed call leaves a readable, non-empty last-error text naming the function;
//! - NULL where a handle or out-pointer is required is `RF_ERR_INVALID_ARGUMENT`;
//! - a made-up core or data handle is refused (`RF_ERR_WRONG_THREAD`), never used;
//! - configuration setters never crash on any value, and validation afterwards either
//!   accepts or names the field (`RF_ERR_CONFIG`);
//! - enumerations passed as integers are accepted only in range.
#![no_main]

use std::ffi::{c_char, CStr, CString};
use std::ptr::null_mut;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringfort_ffi::config::*;
use ringfort_ffi::core::*;
use ringfort_ffi::data::*;
use ringfort_ffi::status::{rf_last_error_message, rf_status, rf_status_name};
use ringfort_ffi::wal::*;

#[derive(Arbitrary, Debug)]
enum Op {
    Cores(usize),
    Cpus(Vec<usize>, bool),
    Listener(Vec<u8>),
    EngineNumber(u8, u64),
    Validate,
    WalNumber(u8, u64),
    WalEnum(bool, u32),
    WalValidate,
    StatusName(i32),
    /// A core call with a made-up handle (the address is only compared).
    Core(u8, usize, u64, Vec<u8>),
    /// A data-view call with a made-up handle.
    Data(u8, usize, usize),
    /// Calls with NULL for the handle.
    Null(u8),
    Reader(Vec<u8>, u64, u32),
}

/// A C string from arbitrary bytes (cut at the first NUL).
fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL inside")
}

/// The shared checks on one call's status.
fn seen(s: rf_status, name: &str) {
    assert_ne!(s, rf_status::RF_ERR_PANIC, "{name} panicked");
    if s != rf_status::RF_OK && s != rf_status::RF_DONE {
        // SAFETY: the last-error text is a valid C string until the next failing call.
        let text = unsafe { CStr::from_ptr(rf_last_error_message()) }.to_str().unwrap();
        assert!(text.starts_with(name), "{name}: error text {text:?}");
        // SAFETY: status names are static C strings.
        let sname = unsafe { CStr::from_ptr(rf_status_name(s as i32)) };
        assert!(sname.to_bytes().starts_with(b"RF_"));
    }
}

fn invalid(s: rf_status, name: &str) {
    seen(s, name);
    assert_eq!(s, rf_status::RF_ERR_INVALID_ARGUMENT, "{name}");
}

fn refused(s: rf_status, name: &str) {
    seen(s, name);
    assert!(
        matches!(s, rf_status::RF_ERR_WRONG_THREAD | rf_status::RF_ERR_INVALID_ARGUMENT),
        "{name}: {s:?}"
    );
}

fuzz_target!(|ops: Vec<Op>| {
    let cfg = rf_config_new();
    let wcfg = rf_wal_config_new();
    assert!(!cfg.is_null() && !wcfg.is_null());
    for op in ops.into_iter().take(64) {
        // SAFETY: `cfg` and `wcfg` are live until freed below; every other pointer is NULL,
        // points to a live local, or is a made-up core/data handle, which those functions
        // only compare.
        unsafe {
            match op {
                Op::Cores(n) => {
                    let s = rf_config_set_cores(cfg, n);
                    seen(s, "rf_config_set_cores");
                    assert_eq!(s == rf_status::RF_OK, (1..=256).contains(&n));
                }
                Op::Cpus(list, null) => {
                    let p = if null { std::ptr::null() } else { list.as_ptr() };
                    seen(rf_config_set_cpus(cfg, p, list.len()), "rf_config_set_cpus");
                }
                Op::Listener(bytes) => {
                    let c = c_string(&bytes);
                    let s = rf_config_add_listener(cfg, c.as_ptr());
                    seen(s, "rf_config_add_listener");
                    if let Ok(text) = c.to_str() {
                        if s != rf_status::RF_ERR_FULL {
                            let parses = text.parse::<std::net::SocketAddr>().is_ok();
                            assert_eq!(s == rf_status::RF_OK, parses, "{text:?}");
                        }
                    }
                }
                Op::EngineNumber(which, v) => {
                    let s = match which % 10 {
                        0 => rf_config_set_ring_entries(cfg, v as u32),
                        1 => rf_config_set_max_conns(cfg, v as usize),
                        2 => rf_config_set_max_recv_bytes(cfg, v as usize),
                        3 => rf_config_set_max_timers(cfg, v as usize),
                        4 => rf_config_set_channel_capacity(cfg, v as usize),
                        5 => rf_config_set_external_queue(cfg, v as usize),
                        6 => rf_config_set_idle_timeout_ms(cfg, v),
                        7 => rf_config_set_send_zc_threshold(cfg, v as usize),
                        8 => rf_config_set_backlog(cfg, v as u32),
                        _ => rf_config_set_nodelay(cfg, v & 1 == 1),
                    };
                    seen(s, "rf_config_set_");
                    assert_eq!(s, rf_status::RF_OK);
                }
                Op::Validate => {
                    let s = rf_config_validate(cfg);
                    seen(s, "rf_config_validate");
                    assert!(matches!(s, rf_status::RF_OK | rf_status::RF_ERR_CONFIG));
                }
                Op::WalNumber(which, v) => {
                    let s = match which % 6 {
                        0 => rf_wal_config_set_segment_size(wcfg, v),
                        1 => rf_wal_config_set_block_size(wcfg, v as usize),
                        2 => rf_wal_config_set_batch_bytes(wcfg, v as usize),
                        3 => rf_wal_config_set_max_record(wcfg, v as usize),
                        4 => rf_wal_config_set_dsync(wcfg, v & 1 == 1),
                        _ => rf_wal_config_set_direct_io(wcfg, v & 1 == 1),
                    };
                    seen(s, "rf_wal_config_set_");
                    assert_eq!(s, rf_status::RF_OK);
                }
                Op::WalEnum(durability, v) => {
                    let (s, max) = if durability {
                        (rf_wal_config_set_durability(wcfg, v), 2)
                    } else {
                        (rf_wal_config_set_recovery(wcfg, v), 3)
                    };
                    seen(s, "rf_wal_config_set_");
                    assert_eq!(s == rf_status::RF_OK, v <= max);
                }
                Op::WalValidate => {
                    let s = rf_wal_config_validate(wcfg);
                    seen(s, "rf_wal_config_validate");
                    assert!(matches!(s, rf_status::RF_OK | rf_status::RF_ERR_CONFIG));
                }
                Op::StatusName(v) => {
                    let name = CStr::from_ptr(rf_status_name(v));
                    assert!(name.to_bytes().starts_with(b"RF_"));
                }
                Op::Core(which, addr, conn, bytes) => {
                    let core = (addr | 1) as *mut rf_core;
                    let mut out64 = 0u64;
                    let mut out32 = 0u32;
                    let mut flag = false;
                    let c = c_string(&bytes);
                    let s = match which % 10 {
                        0 => rf_conn_send(core, conn, bytes.as_ptr().cast(), bytes.len()),
                        1 => rf_conn_close(core, conn),
                        2 => rf_conn_backpressured(core, conn, &mut flag),
                        3 => rf_conn_pause_reading(core, conn, flag),
                        4 => rf_core_timer(core, conn, conn, &mut out64),
                        5 => rf_core_timer_cancel(core, conn),
                        6 => rf_core_post(core, conn as usize, conn, null_mut()),
                        7 => rf_core_stop_engine(core, conn),
                        8 => rf_core_listen(core, c.as_ptr(), &mut out32),
                        _ => {
                            assert_eq!(rf_core_index(core), usize::MAX);
                            assert_eq!(rf_core_count(core), 0);
                            rf_core_stop_engine(core, 0)
                        }
                    };
                    refused(s, "rf_");
                }
                Op::Data(which, addr, n) => {
                    let data = (addr | 1) as *mut rf_data;
                    let mut buf = [0u8; 16];
                    let mut slices = [rf_slice {
                        ptr: std::ptr::null(),
                        len: 0,
                    }; 4];
                    let mut count = 0usize;
                    let mut kept: *mut rf_buf = null_mut();
                    let s = match which % 5 {
                        0 => rf_data_consume(data, n),
                        1 => rf_data_copy(data, n, buf.as_mut_ptr().cast(), n.min(16)),
                        2 => rf_data_slices(data, slices.as_mut_ptr(), n.min(4), &mut count),
                        3 => rf_data_retain(data, n, &mut kept),
                        _ => {
                            assert_eq!(rf_data_len(data), 0);
                            rf_conn_send_data(null_mut(), 0, data, n)
                        }
                    };
                    refused(s, "rf_");
                    assert!(kept.is_null());
                }
                Op::Null(which) => {
                    let mut out = 0u64;
                    let mut count = 0usize;
                    let s = match which % 12 {
                        0 => rf_config_set_cores(null_mut(), 1),
                        1 => rf_config_add_listener(cfg, std::ptr::null::<c_char>()),
                        2 => rf_config_validate(std::ptr::null()),
                        3 => rf_wal_config_validate(std::ptr::null()),
                        4 => rf_wal_append(std::ptr::null(), b"x".as_ptr().cast(), 1, &mut out),
                        5 => rf_wal_close(std::ptr::null()),
                        6 => rf_buf_slices(std::ptr::null(), null_mut(), 0, &mut count),
                        7 => rf_buf_retain(std::ptr::null(), null_mut()),
                        8 => rf_wal_reader_next(null_mut(), null_mut()),
                        9 => rf_conn_send(null_mut(), 0, std::ptr::null(), 0),
                        10 => rf_wal_open(std::ptr::null(), wcfg, null_mut(), null_mut()),
                        _ => rf_wal_reader_open(c"/".as_ptr(), 0, 0, null_mut()),
                    };
                    invalid(s, "rf_");
                }
                Op::Reader(path, from, mode) => {
                    // Read-only: opening a reader lists and reads segment files, nothing else.
                    let c = c_string(&path);
                    let mut rd: *mut rf_wal_reader = null_mut();
                    let s = rf_wal_reader_open(c.as_ptr(), from, mode, &mut rd);
                    seen(s, "rf_wal_reader_open");
                    if mode > 3 {
                        assert_eq!(s, rf_status::RF_ERR_INVALID_ARGUMENT);
                    }
                    assert_eq!(s == rf_status::RF_OK, !rd.is_null());
                    rf_wal_reader_free(rd);
                }
            }
        }
    }
    // SAFETY: both came from their _new functions above and are freed once.
    unsafe {
        rf_config_free(cfg);
        rf_wal_config_free(wcfg);
    }
});
