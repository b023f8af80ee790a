//! The C echo server of the `echo` suite: `ffi/examples/echo_server.c`, built the way a C
//! program uses Ringfort, and run as a child process.
//!
//! The first use builds it: `cargo build --release -p ringfort-ffi --lib` (nothing to do
//! when it is up to date), then `cc -O2` of the example against the static library
//! `libringfort_ffi.a` with the libraries `ffi/ringfort.pc.in` lists. Any failure there is
//! the reason the C row is not measured; no number is substituted.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// How long the C server may take to start listening or to stop.
const START_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The built C echo server, or why it could not be built (once per run).
pub fn binary() -> Result<&'static Path, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

fn build() -> Result<PathBuf, String> {
    let root = root();
    // This binary runs from TARGET/release; the library is built into the same place.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe.parent().ok_or("no directory above the bench binary")?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "ringfort-ffi",
            "--lib",
            "--target-dir",
        ])
        .arg(target_dir)
        .output()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --release -p ringfort-ffi failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let staticlib = target_dir.join("release/libringfort_ffi.a");
    let pc = std::fs::read_to_string(root.join("ffi/ringfort.pc.in"))
        .map_err(|e| format!("reading ffi/ringfort.pc.in: {e}"))?;
    let libs: Vec<&str> = pc
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private:"))
        .ok_or("ffi/ringfort.pc.in has no Libs.private")?
        .split_whitespace()
        .collect();
    let bin = target_dir.join("release/ringfort-c-echo-server");
    let out = Command::new("cc")
        .args(["-O2", "-pthread", "-I"])
        .arg(root.join("ffi/include"))
        .arg(root.join("ffi/examples/echo_server.c"))
        .arg(&staticlib)
        .args(&libs)
        .arg("-o")
        .arg(&bin)
        .output()
        .map_err(|e| format!("running cc (apt-get install gcc): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc ffi/examples/echo_server.c failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bin)
}

/// A running C echo server.
pub struct CEcho {
    child: Child,
}

impl CEcho {
    /// Starts it on `addr` with one core per CPU of `cpus`, and waits until it listens.
    pub fn start(addr: SocketAddr, cpus: &[usize]) -> Result<CEcho, String> {
        let bin = binary()?;
        let cpus = cpus
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut child = Command::new(bin)
            .args([
                "--bind",
                &addr.ip().to_string(),
                "--port",
                &addr.port().to_string(),
            ])
            .args(["--cpus", &cpus])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = CEcho { child };
        match rx.recv_timeout(START_STOP_TIMEOUT) {
            Ok(line) if line.starts_with("echo server on") => Ok(server),
            Ok(line) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                Err(format!(
                    "the C echo server did not start: {:?}",
                    line.trim()
                ))
            }
            Err(_) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                Err(format!(
                    "the C echo server did not listen within {} s",
                    START_STOP_TIMEOUT.as_secs()
                ))
            }
        }
    }

    /// Stops it with SIGTERM (a clean stop), bounded in time.
    pub fn stop(mut self) -> Result<(), String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + START_STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(format!("the C echo server exited {s}")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("the C echo server did not stop on SIGTERM".into());
                }
            }
        }
    }
}
