//! Driving the RESP server (engine/examples/resp-server) as a child process: building it,
//! starting it on a port it picks itself (`--port 0`, so concurrent tests never race for
//! one), raw RESP requests and replies, redis-cli.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server binary, built once per test binary so it is never stale (`cargo test
/// --test resp` alone does not build examples). It is built with the engine's
/// `fault-injection` feature, which does nothing unless `RINGFORT_FAULTS` names faults,
/// so that every test drives the same binary.
pub fn server_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "-q", "-p", "ringfort", "--example", "resp-server"])
                .args(["--features", "fault-injection"]);
            // The binary is looked up in this test binary's profile directory, so build
            // that profile (`cargo test --release` must not run a stale release build).
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.status().expect("running cargo build");
            assert!(status.success(), "building the resp-server example failed");
            let exe = std::env::current_exe().unwrap();
            let target = exe.parent().unwrap().parent().unwrap();
            let bin = target.join("examples").join("resp-server");
            assert!(bin.exists(), "{} is missing after the build", bin.display());
            bin
        })
        .clone()
}

/// A fresh (removed) directory path under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringfort-resp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// How to start a server beyond its data directory and port.
pub struct Opts<'a> {
    pub cores: usize,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// RLIMIT_NOFILE (soft and hard) for the server process.
    pub nofile: Option<u64>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            cores: 2,
            args: &[],
            env: &[],
            nofile: None,
        }
    }
}

/// A running server process; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The server's stderr, quoted when it fails to start.
    log: PathBuf,
}

impl Server {
    /// Two cores and the given extra arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::launch(
            dir,
            &Opts {
                args: extra,
                ..Opts::default()
            },
        )
    }

    /// Starts the server on a port of its choosing and waits for its "listening" line.
    pub fn launch(dir: &Path, opts: &Opts<'_>) -> Server {
        static LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "ringfort-resp-server-{}-{n}.log",
            std::process::id()
        ));
        let mut cmd = Command::new(server_bin());
        cmd.args(["--port", "0", "--dir"])
            .arg(dir)
            .args(["--cores", &opts.cores.to_string()])
            .args(opts.args)
            .envs(opts.env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(n) = opts.nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: between fork and exec the closure only calls setrlimit, which is
            // async-signal-safe, on a value it owns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "ringfort resp-server listening on 127.0.0.1:PORT: N cores, ..."
        let port = line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_once(": "))
            .and_then(|(addr, _)| addr.parse::<SocketAddr>().ok())
            .map(|a| a.port());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            panic!("server did not start: {line:?}; its stderr:\n{stderr}");
        };
        assert!(
            line.contains(&format!("{} cores", opts.cores))
                && line.contains("memory")
                && line.contains("durability"),
            "{line}"
        );
        Server { child, port, log }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn conn(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// One field of `INFO` (`name:value`), as text.
    pub fn info_field(&self, name: &str) -> String {
        let mut s = self.conn();
        let info = String::from_utf8(call(&mut s, &[b"INFO", b"everything"])).unwrap();
        let prefix = format!("{name}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("INFO has no {name}: {info}"))
            .to_string()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(mut self) {
        // SAFETY: sends SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "server exited with {status}; its stderr:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A command as a RESP multibulk.
pub fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Reads exactly one RESP reply (any type) and returns its raw bytes.
pub fn read_reply(r: &mut impl BufRead) -> Vec<u8> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    assert!(line.ends_with(b"\r\n"), "truncated reply {line:?}");
    let body = std::str::from_utf8(&line[1..line.len() - 2])
        .unwrap()
        .to_string();
    match line[0] {
        b'+' | b'-' | b':' => line,
        b'$' => {
            let n: i64 = body.parse().unwrap();
            if n >= 0 {
                let mut payload = vec![0; n as usize + 2];
                r.read_exact(&mut payload).unwrap();
                line.extend_from_slice(&payload);
            }
            line
        }
        b'*' => {
            let n: i64 = body.parse().unwrap();
            for _ in 0..n.max(0) {
                line.extend(read_reply(r));
            }
            line
        }
        other => panic!("bad reply type {other}"),
    }
}

/// Sends one command and reads its reply.
pub fn call(s: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    s.write_all(&cmd(args)).unwrap();
    read_reply(&mut BufReader::new(s))
}

/// A bulk-string reply holding `v`.
pub fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}
