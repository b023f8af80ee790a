//! [`Engine`]: starting the cores, talking to them from outside, and stopping them.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::channel::{channel, Receiver, Sender};
use crate::config::EngineConfig;
use crate::core::{Core, Io};
use crate::error::EngineError;
use crate::handler::{CoreId, Handler};
use crate::metrics::CoreMetrics;
use crate::probe::{self, Features};

/// State the cores and the [`Engine`] handle share.
pub(crate) struct Shared<M> {
    /// Each core's ring fd, the target of `IORING_OP_MSG_RING` wake-ups.
    pub ring_fds: Vec<AtomicI32>,
    /// Each core's eventfd, written to wake it from outside the engine. Owned here, not by
    /// the core, so it stays open as long as anyone can write to it: a core that closed
    /// its own could have the number reused (by a socket accepted anywhere in the
    /// process) before a late `wake` wrote 8 bytes into it.
    eventfds: Vec<OwnedFd>,
    /// Messages from threads outside the engine, bounded per core.
    external: Vec<Mutex<VecDeque<M>>>,
    external_cap: usize,
    external_len: Vec<AtomicUsize>,
    stop: Mutex<Option<Instant>>,
    stop_flag: AtomicBool,
    metrics: Vec<Mutex<CoreMetrics>>,
    /// Cores that finished their loop and dropped everything but their arena.
    pub quiesced: AtomicUsize,
}

impl<M> Shared<M> {
    fn new(n: usize, external_cap: usize) -> Result<Shared<M>, EngineError> {
        let eventfds = (0..n)
            .map(|_| {
                // SAFETY: plain eventfd(2); the result is checked before it is owned.
                let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
                if efd < 0 {
                    return Err(EngineError::io("eventfd", std::io::Error::last_os_error()));
                }
                // SAFETY: `efd` is a fresh descriptor nothing else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(efd) })
            })
            .collect::<Result<_, _>>()?;
        Ok(Shared {
            ring_fds: (0..n).map(|_| AtomicI32::new(-1)).collect(),
            eventfds,
            external: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
            external_cap,
            external_len: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            stop: Mutex::new(None),
            stop_flag: AtomicBool::new(false),
            metrics: (0..n).map(|_| Mutex::new(CoreMetrics::default())).collect(),
            quiesced: AtomicUsize::new(0),
        })
    }

    /// Core `core`'s eventfd, open as long as this `Shared` lives.
    pub fn eventfd(&self, core: usize) -> RawFd {
        self.eventfds[core].as_raw_fd()
    }

    fn wake(&self, core: usize) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd `self` owns.
        unsafe { libc::write(self.eventfd(core), (&one as *const u64).cast(), 8) };
    }

    /// Asks every core to stop, draining for at most `drain`.
    pub fn request_stop(&self, drain: Duration) {
        let deadline = Instant::now() + drain;
        {
            let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            *stop = Some(stop.map_or(deadline, |d| d.min(deadline)));
        }
        self.stop_flag.store(true, Ordering::Release);
        for core in 0..self.eventfds.len() {
            self.wake(core);
        }
    }

    pub fn stop_deadline(&self) -> Option<Instant> {
        if !self.stop_flag.load(Ordering::Acquire) {
            return None;
        }
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn external_is_empty(&self, core: usize) -> bool {
        self.external_len[core].load(Ordering::Acquire) == 0
    }

    pub fn pop_external(&self, core: usize) -> Option<M> {
        if self.external_is_empty(core) {
            return None;
        }
        let mut q = self.external[core]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let m = q.pop_front();
        self.external_len[core].store(q.len(), Ordering::Release);
        m
    }

    pub fn publish_metrics(&self, core: usize, m: &CoreMetrics) {
        *self.metrics[core].lock().unwrap_or_else(|e| e.into_inner()) = *m;
    }
}

/// A running engine: one pinned thread per core. Dropping it stops the cores (with no
/// drain time) and waits for them.
pub struct Engine<M: Send + 'static> {
    shared: Arc<Shared<M>>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    features: Features,
}

impl<M: Send + 'static> Engine<M> {
    /// Probes the kernel, checks limits, and starts one core per configured CPU, each
    /// with a handler from `factory` built on its own thread. Returns once every core has
    /// its ring, arena and buffer rings, or the first error (naming cause and remedy).
    pub fn start<H, F>(config: EngineConfig, factory: F) -> Result<Engine<M>, EngineError>
    where
        H: Handler<Msg = M>,
        F: Fn(CoreId) -> H + Send + Sync + 'static,
    {
        let mut config = config;
        if config.cpus.is_empty() {
            config.cpus = allowed_cpus()?;
        }
        config.validate()?;
        #[cfg(feature = "fault-injection")]
        crate::fault::arm_from_env().map_err(EngineError::Config)?;
        let features = probe::probe()?;
        tracing::info!("{features}");
        for why in &features.degraded {
            tracing::warn!("{why}");
        }
        let n = config.cpus.len();
        // io_uring charges registered buffers per user, across every core's arena.
        if config.pool.registration == ringfort_pool::Registration::Required {
            let per_core = config.pool.clone().validate().map(|_| ()).and(Ok(()));
            per_core?;
            probe::check_memlock(memlock_per_core(&config) * n)?;
        }
        match crate::net::raise_nofile() {
            Ok((soft, hard)) => tracing::info!("RLIMIT_NOFILE raised to {soft} (hard {hard})"),
            Err(e) => tracing::warn!("could not raise RLIMIT_NOFILE: {e}"),
        }
        if let Some(max) = crate::net::somaxconn() {
            if config.net.backlog > max {
                tracing::warn!(
                    "listen backlog {} exceeds net.core.somaxconn {max}; the kernel caps it \
                     (raise it with `sysctl -w net.core.somaxconn={}`)",
                    config.net.backlog,
                    config.net.backlog
                );
            }
        }
        let shared = Arc::new(Shared::<M>::new(n, config.limits.external_queue)?);
        let config = Arc::new(config);
        let factory = Arc::new(factory);

        // Channel (i -> j) for every ordered pair: senders go to core i, receivers to j.
        let mut senders: Vec<Vec<Option<Sender<M>>>> = (0..n).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<(usize, Receiver<M>)>> = (0..n).map(|_| Vec::new()).collect();
        for (i, out) in senders.iter_mut().enumerate() {
            for inbox in receivers.iter_mut() {
                let (tx, rx) = channel(config.limits.channel_capacity)
                    .map_err(|e| EngineError::Config(e.to_string()))?;
                out.push(Some(tx));
                inbox.push((i, rx));
            }
        }

        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), EngineError>)>();
        let mut go = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (core, (tx_row, rx_row)) in senders.into_iter().zip(receivers).enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<bool>();
            go.push(go_tx);
            let cpu = config.cpus[core];
            let config = Arc::clone(&config);
            let shared = Arc::clone(&shared);
            let factory = Arc::clone(&factory);
            let features = features.clone();
            let ready = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("ringfort-core-{core}"))
                .spawn(move || -> Result<(), String> {
                    let setup = pin_to_cpu(cpu).and_then(|()| {
                        Io::new(core, config, features, Arc::clone(&shared), tx_row)
                    });
                    let io = match setup {
                        Ok(io) => {
                            shared.ring_fds[core].store(io.ring_fd(), Ordering::Release);
                            let _ = ready.send((core, Ok(())));
                            io
                        }
                        Err(e) => {
                            let _ = ready.send((core, Err(e)));
                            return Ok(());
                        }
                    };
                    if !go_rx.recv().unwrap_or(false) {
                        return Ok(());
                    }
                    let handler = factory(core);
                    let core_loop = Core {
                        io,
                        handler,
                        inbound: rx_row,
                    };
                    core_loop.run();
                    Ok(())
                })
                .map_err(|e| EngineError::io("spawning a core thread", e))?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut first_err = None;
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((core, Err(e))) => {
                    first_err.get_or_insert(match e {
                        EngineError::Io { what, source } => EngineError::Io {
                            what: format!("core {core}: {what}"),
                            source,
                        },
                        other => other,
                    });
                }
                Err(_) => {
                    first_err.get_or_insert(EngineError::Core {
                        core: 0,
                        why: "a core thread died during setup".into(),
                    });
                    break;
                }
            }
        }
        let ok = first_err.is_none();
        for g in &go {
            let _ = g.send(ok);
        }
        if let Some(e) = first_err {
            for t in threads {
                let _ = t.join();
            }
            return Err(e);
        }
        Ok(Engine {
            shared,
            threads,
            features,
        })
    }

    /// What the kernel probe found.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.shared.ring_fds.len()
    }

    /// Sends `msg` to core `core` from a thread outside the engine (the handler sees
    /// `from == None`). Refused, with the message handed back, when that core's external
    /// queue holds `limits.external_queue` messages, the core does not exist, or the engine
    /// is stopping.
    pub fn post(&self, core: CoreId, msg: M) -> Result<(), M> {
        if core >= self.cores() || self.shared.stop_flag.load(Ordering::Acquire) {
            return Err(msg);
        }
        {
            let mut q = self.shared.external[core]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.shared.external_cap {
                return Err(msg);
            }
            q.push_back(msg);
            self.shared.external_len[core].store(q.len(), Ordering::Release);
        }
        self.shared.wake(core);
        Ok(())
    }

    /// Whether a stop was requested ([`Engine::stop`], or a core's
    /// [`crate::Ctx::stop_engine`]); [`Engine::post`] refuses messages from then on.
    pub fn stopping(&self) -> bool {
        self.shared.stop_flag.load(Ordering::Acquire)
    }

    /// Whether every core thread has exited (after a stop, or a core's own
    /// [`crate::Ctx::stop_engine`]).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Each core's latest counters.
    pub fn metrics(&self) -> Vec<CoreMetrics> {
        self.shared
            .metrics
            .iter()
            .map(|m| *m.lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }

    /// Asks the cores to stop. Listeners close at once; connections get up to `drain` to
    /// flush queued replies, then everything in flight is cancelled. Buffers the kernel
    /// may still write are never freed before it returns them.
    pub fn stop(&self, drain: Duration) {
        self.shared.request_stop(drain);
    }

    /// Waits for every core to finish and returns their final counters (including
    /// `live_buffers_at_exit` and `ops_in_flight` at exit, both 0 after a clean stop). An
    /// error names a core that panicked.
    pub fn wait(mut self) -> Result<Vec<CoreMetrics>, EngineError> {
        self.join()?;
        Ok(self.metrics())
    }

    fn join(&mut self) -> Result<(), EngineError> {
        let mut result = Ok(());
        for (core, t) in self.threads.drain(..).enumerate() {
            let outcome = match t.join() {
                Ok(Ok(())) => continue,
                Ok(Err(why)) => why,
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".into()),
            };
            if result.is_ok() {
                result = Err(EngineError::Core { core, why: outcome });
            }
        }
        result
    }

    /// The raw eventfd of a core (for tests that wake it).
    #[doc(hidden)]
    pub fn eventfd(&self, core: CoreId) -> RawFd {
        self.shared.eventfd(core)
    }
}

impl<M: Send + 'static> Drop for Engine<M> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.request_stop(Duration::ZERO);
            let _ = self.join();
        }
    }
}

fn memlock_per_core(config: &EngineConfig) -> usize {
    // One chunk's bytes times the growth cap, as the arena computes it.
    let chunk: usize = config
        .pool
        .classes
        .iter()
        .map(|c| (c.size * c.count).next_multiple_of(4096))
        .sum::<usize>()
        .next_multiple_of(ringfort_pool::HUGE_PAGE);
    let cap = match config.pool.growth {
        ringfort_pool::Growth::Fixed => 1,
        ringfort_pool::Growth::Chunks { max_chunks } => max_chunks,
    };
    chunk * cap
}

/// The CPUs this process may run on, ascending: its affinity mask, as `taskset` or a
/// cgroup cpuset left it. [`EngineConfig::cpus`] left empty means all of them.
pub fn allowed_cpus() -> Result<Vec<usize>, EngineError> {
    // SAFETY: cpu_set_t is plain old data; zeroes are the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live and its size is passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(EngineError::io(
            "sched_getaffinity",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: CPU_ISSET reads the set in bounds for every index below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// CPUs for `cores` core threads: the first `cores` CPUs this process may run on
/// ([`allowed_cpus`]), taken round-robin when there are more cores than CPUs (cores then
/// share CPUs). What a "run N cores" setting should put in [`EngineConfig::cpus`], so that
/// it stays inside the mask a user gave with `taskset` or a cpuset.
pub fn cpus_for_cores(cores: usize) -> Result<Vec<usize>, EngineError> {
    let allowed = allowed_cpus()?;
    if allowed.is_empty() {
        return Err(EngineError::Config(
            "sched_getaffinity reported no CPU this process may run on".into(),
        ));
    }
    Ok(allowed.iter().copied().cycle().take(cores).collect())
}

/// Pins the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) -> Result<(), EngineError> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(EngineError::Config(format!("CPU {cpu} is out of range")));
    }
    // SAFETY: cpu_set_t is plain old data; zeroes are the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is live and its size is passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(EngineError::io(
            format!("pinning a core thread to CPU {cpu} (is it online and allowed?)"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_stay_inside_the_affinity_mask() {
        let all = allowed_cpus().unwrap();
        let last = *all.last().expect("at least one CPU");
        // A thread of its own, so narrowing its mask leaves the test harness alone.
        std::thread::spawn(move || {
            pin_to_cpu(last).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![last]);
            assert_eq!(cpus_for_cores(3).unwrap(), vec![last; 3]);
        })
        .join()
        .unwrap();
        let two = cpus_for_cores(2).unwrap();
        assert_eq!(two.len(), 2);
        assert!(
            two.iter().all(|c| all.contains(c)),
            "{two:?} not in {all:?}"
        );
        assert_eq!(two[0], all[0]);
    }
}
