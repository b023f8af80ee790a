//! `rf_config`: the engine configuration builder. It starts from the engine's defaults;
//! setters check what they can alone, and `rf_config_validate` (or `rf_engine_start`)
//! checks the whole.

use std::ffi::c_char;
use std::net::SocketAddr;
use std::time::Duration;

use ringfort::EngineConfig;

use crate::status::{arg, arg_mut, arg_str, guard, guard_or, rf_status, Error};

/// The most listener addresses one configuration holds.
pub const RF_MAX_LISTENERS: usize = 64;

/// An engine configuration under construction. Create with `rf_config_new`, free with
/// `rf_config_free`. Not thread-safe: use one from one thread at a time.
pub struct rf_config {
    pub(crate) engine: EngineConfig,
    pub(crate) listeners: Vec<SocketAddr>,
}

/// A new configuration with the engine's defaults: every CPU this process may use, a
/// 4096-entry ring per core, no listeners. NULL only on an internal error (the last-error
/// text says which).
///
/// Threads: any.
#[no_mangle]
pub extern "C" fn rf_config_new() -> *mut rf_config {
    guard_or("rf_config_new", std::ptr::null_mut(), || {
        Ok(Box::into_raw(Box::new(rf_config {
            engine: EngineConfig::default(),
            listeners: Vec::new(),
        })))
    })
}

/// Frees a configuration. NULL is a no-op. The engine keeps its own copy, so a
/// configuration may be freed as soon as `rf_engine_start` returns.
///
/// # Safety
/// `cfg` is NULL or a pointer from `rf_config_new` not yet freed.
///
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn rf_config_free(cfg: *mut rf_config) {
    guard_or("rf_config_free", (), || {
        if !cfg.is_null() {
            // SAFETY: a non-NULL `cfg` came from `Box::into_raw` in rf_config_new and is
            // freed only once, as the caller guarantees.
            drop(unsafe { Box::from_raw(cfg) });
        }
        Ok(())
    })
}

/// Runs `cores` cores (from 1 to 256) on the first `cores` CPUs this process may run on
/// (its affinity mask, as `taskset` or a cpuset left it), round-robin when there are more
/// cores than CPUs. The default runs one core on every CPU this process may use.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_cores(cfg: *mut rf_config, cores: usize) -> rf_status {
    guard("rf_config_set_cores", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        if !(1..=256).contains(&cores) {
            return Err(Error::invalid(format!(
                "cores {cores} must be from 1 to 256"
            )));
        }
        c.engine.cpus = ringfort::cpus_for_cores(cores).map_err(Error::from)?;
        Ok(())
    })
}

/// Runs one core on each CPU listed (`count` from 1 to 256; CPU numbers as the OS counts
/// them). The list is copied.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `cpus` is NULL or points to `count` values.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_cpus(
    cfg: *mut rf_config,
    cpus: *const usize,
    count: usize,
) -> rf_status {
    guard("rf_config_set_cpus", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        if cpus.is_null() || !(1..=256).contains(&count) {
            return Err(Error::invalid(format!(
                "cpus must be a non-NULL list of 1 to 256 CPUs (count {count})"
            )));
        }
        // SAFETY: non-NULL and `count` values long, as the caller guarantees.
        let list = unsafe { std::slice::from_raw_parts(cpus, count) };
        if let Some(&bad) = list.iter().find(|&&cpu| cpu >= libc::CPU_SETSIZE as usize) {
            return Err(Error::invalid(format!(
                "CPU {bad} is out of range (at most {})",
                libc::CPU_SETSIZE - 1
            )));
        }
        c.engine.cpus = list.to_vec();
        Ok(())
    })
}

/// Adds a listener that every core opens at start, with `SO_REUSEPORT` so the kernel
/// spreads connections over the cores. `addr` is "IP:PORT" (`127.0.0.1:7000`,
/// `[::1]:7000`). Port 0 picks a free port at `rf_engine_start`, the same on every core;
/// `rf_engine_listener_port` tells which. At most `RF_MAX_LISTENERS`.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `addr` is NULL or a NUL-terminated string.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_add_listener(
    cfg: *mut rf_config,
    addr: *const c_char,
) -> rf_status {
    guard("rf_config_add_listener", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        // SAFETY: `addr` is NULL or NUL-terminated (the contract).
        let text = unsafe { arg_str(addr, "addr") }?;
        let addr = parse_addr(text)?;
        if c.listeners.len() >= RF_MAX_LISTENERS {
            return Err(Error::new(
                rf_status::RF_ERR_FULL,
                format!("at most {RF_MAX_LISTENERS} listeners"),
            ));
        }
        c.listeners.push(addr);
        Ok(())
    })
}

/// Parses "IP:PORT".
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, Error> {
    text.parse().map_err(|_| {
        Error::invalid(format!(
            "address {text:?} is not IP:PORT (such as 127.0.0.1:7000 or [::1]:7000)"
        ))
    })
}

/// Submission queue entries per core's ring: a power of two of at least 8 (checked at
/// start). Default 4096.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_ring_entries(
    cfg: *mut rf_config,
    entries: u32,
) -> rf_status {
    guard("rf_config_set_ring_entries", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.ring_entries = entries;
        Ok(())
    })
}

/// Connections per core; at the bound new connections are closed at once and counted in
/// `rf_stats.accept_refused`. At least 1 (checked at start). Default 65536.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_max_conns(cfg: *mut rf_config, max: usize) -> rf_status {
    guard("rf_config_set_max_conns", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.limits.max_conns = max;
        Ok(())
    })
}

/// Received bytes a connection may hold unconsumed by `on_data`; past it the connection
/// is closed with `RF_CLOSE_RECV_LIMIT`. At least 1 (checked at start). Default 64 MiB.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_max_recv_bytes(
    cfg: *mut rf_config,
    max: usize,
) -> rf_status {
    guard("rf_config_set_max_recv_bytes", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.limits.max_recv_bytes = max;
        Ok(())
    })
}

/// Timers per core; at the bound `rf_core_timer` returns `RF_ERR_FULL`. At least 1
/// (checked at start). Default 65536.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_max_timers(cfg: *mut rf_config, max: usize) -> rf_status {
    guard("rf_config_set_max_timers", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.limits.max_timers = max;
        Ok(())
    })
}

/// Messages per core-to-core channel; at the bound `rf_core_post` returns `RF_ERR_FULL`
/// (the caller keeps the message). At least 1 (checked at start). Default 4096.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_channel_capacity(
    cfg: *mut rf_config,
    capacity: usize,
) -> rf_status {
    guard("rf_config_set_channel_capacity", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.limits.channel_capacity = capacity;
        Ok(())
    })
}

/// Messages per core queued by `rf_engine_post` from outside the engine; at the bound
/// `rf_engine_post` returns `RF_ERR_FULL`. At least 1 (checked at start). Default 1024.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_external_queue(
    cfg: *mut rf_config,
    capacity: usize,
) -> rf_status {
    guard("rf_config_set_external_queue", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.limits.external_queue = capacity;
        Ok(())
    })
}

/// Closes connections that receive nothing for `ms` milliseconds (`RF_CLOSE_IDLE`); 0
/// turns the timeout off (the default).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_idle_timeout_ms(cfg: *mut rf_config, ms: u64) -> rf_status {
    guard("rf_config_set_idle_timeout_ms", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.idle_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        Ok(())
    })
}

/// Replies at least this large, from registered memory, go out with zero-copy `SEND_ZC`;
/// `SIZE_MAX` turns zero copy off. Default 64 KiB.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_send_zc_threshold(
    cfg: *mut rf_config,
    bytes: usize,
) -> rf_status {
    guard("rf_config_set_send_zc_threshold", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.send_zc_threshold = bytes;
        Ok(())
    })
}

/// The `listen(2)` backlog (the kernel caps it at `net.core.somaxconn`, and the engine
/// warns when it asks for more). Default 4096.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_backlog(cfg: *mut rf_config, backlog: u32) -> rf_status {
    guard("rf_config_set_backlog", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.net.backlog = backlog;
        Ok(())
    })
}

/// `TCP_NODELAY` on accepted connections. Default on.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_set_nodelay(cfg: *mut rf_config, on: bool) -> rf_status {
    guard("rf_config_set_nodelay", || {
        // SAFETY: `cfg` is NULL or a live configuration this thread owns (the contract).
        let c = unsafe { arg_mut(cfg, "cfg") }?;
        c.engine.net.nodelay = on;
        Ok(())
    })
}

/// Checks the whole configuration as `rf_engine_start` would, without starting anything:
/// `RF_ERR_CONFIG` names the first bad field.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
///
/// Threads: the thread that owns `cfg`.
#[no_mangle]
pub unsafe extern "C" fn rf_config_validate(cfg: *const rf_config) -> rf_status {
    guard("rf_config_validate", || {
        // SAFETY: as the contract says.
        let cfg = unsafe { arg(cfg, "cfg") }?;
        cfg.engine.validate()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_check_and_validate_names_the_field() {
        let c = rf_config_new();
        // SAFETY: `c` is live until freed at the end; the strings are NUL-terminated.
        unsafe {
            assert_eq!(
                rf_config_set_cores(c, 0),
                rf_status::RF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(rf_config_set_cores(c, 2), rf_status::RF_OK);
            assert_eq!(
                rf_config_add_listener(c, c"nonsense".as_ptr()),
                rf_status::RF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                rf_config_add_listener(c, c"127.0.0.1:0".as_ptr()),
                rf_status::RF_OK
            );
            assert_eq!(rf_config_validate(c), rf_status::RF_OK);
            assert_eq!(rf_config_set_ring_entries(c, 3), rf_status::RF_OK);
            assert_eq!(rf_config_validate(c), rf_status::RF_ERR_CONFIG);
            let text = std::ffi::CStr::from_ptr(crate::status::rf_last_error_message());
            assert!(text.to_str().unwrap().contains("ring_entries"), "{text:?}");
            rf_config_free(c);
            rf_config_free(std::ptr::null_mut());
            assert_eq!(
                rf_config_set_cores(std::ptr::null_mut(), 1),
                rf_status::RF_ERR_INVALID_ARGUMENT
            );
        }
    }

    #[test]
    fn listeners_are_bounded() {
        let c = rf_config_new();
        // SAFETY: `c` is live until freed; the string is NUL-terminated.
        unsafe {
            for _ in 0..RF_MAX_LISTENERS {
                assert_eq!(
                    rf_config_add_listener(c, c"127.0.0.1:0".as_ptr()),
                    rf_status::RF_OK
                );
            }
            assert_eq!(
                rf_config_add_listener(c, c"127.0.0.1:0".as_ptr()),
                rf_status::RF_ERR_FULL
            );
            rf_config_free(c);
        }
    }
}
