//! The RESP server (engine/examples/resp-server) driven by real clients: raw RESP for
//! byte-exact replies, redis-cli and redis-benchmark from Debian's redis-tools, large
//! values, pub/sub across cores, restarts, and a SIGKILL crash loop that checks every
//! acknowledged write survives.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary, built once per test run so it is never stale (`cargo test --test
/// resp` alone does not build examples).
fn server_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "ringfort", "--example", "resp-server"])
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the resp-server example failed");
            let exe = std::env::current_exe().unwrap();
            let target = exe.parent().unwrap().parent().unwrap();
            let bin = target.join("examples").join("resp-server");
            assert!(bin.exists(), "{} is missing after the build", bin.display());
            bin
        })
        .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringfort-resp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A running server process; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, port: u16, extra: &[&str]) -> Server {
        let mut child = Command::new(server_bin())
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(["--cores", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(
            line.contains("listening on"),
            "server did not start: {line:?}"
        );
        assert!(
            line.contains("2 cores") && line.contains("memory") && line.contains("durability"),
            "{line}"
        );
        Server { child, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn conn(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        // SAFETY: sends SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Reads exactly one RESP reply (any type) and returns its raw bytes.
fn read_reply(r: &mut impl BufRead) -> Vec<u8> {
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

fn call(s: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    s.write_all(&cmd(args)).unwrap();
    read_reply(&mut BufReader::new(s))
}

#[test]
fn commands_reply_like_redis() {
    let dir = temp_dir("commands");
    let srv = Server::start(&dir, free_port(), &[]);
    let mut s = srv.conn();
    let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
        (vec![b"PING"], b"+PONG\r\n"),
        (vec![b"PING", b"hi"], b"$2\r\nhi\r\n"),
        (vec![b"ECHO", b"x y"], b"$3\r\nx y\r\n"),
        (vec![b"SET", b"k", b"v"], b"+OK\r\n"),
        (vec![b"GET", b"k"], b"$1\r\nv\r\n"),
        (vec![b"GET", b"missing"], b"$-1\r\n"),
        (vec![b"SET", b"k", b"w", b"NX"], b"$-1\r\n"),
        (vec![b"SET", b"k", b"w", b"XX", b"GET"], b"$1\r\nv\r\n"),
        (vec![b"APPEND", b"k", b"xyz"], b":4\r\n"),
        (vec![b"STRLEN", b"k"], b":4\r\n"),
        (vec![b"INCR", b"n"], b":1\r\n"),
        (vec![b"INCRBY", b"n", b"41"], b":42\r\n"),
        (vec![b"DECR", b"n"], b":41\r\n"),
        (vec![b"DECRBY", b"n", b"40"], b":1\r\n"),
        (
            vec![b"INCR", b"k"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            vec![b"MSET", b"a", b"1", b"b", b"2", b"c", b"3"],
            b"+OK\r\n",
        ),
        (
            vec![b"MGET", b"a", b"b", b"nope", b"c"],
            b"*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n",
        ),
        (vec![b"EXISTS", b"a", b"b", b"nope"], b":2\r\n"),
        (vec![b"DEL", b"a", b"b", b"nope"], b":2\r\n"),
        (vec![b"GETDEL", b"c"], b"$1\r\n3\r\n"),
        (vec![b"EXPIRE", b"k", b"100"], b":1\r\n"),
        (vec![b"TTL", b"k"], b":100\r\n"),
        (vec![b"PERSIST", b"k"], b":1\r\n"),
        (vec![b"TTL", b"k"], b":-1\r\n"),
        (vec![b"PTTL", b"nope"], b":-2\r\n"),
        (vec![b"SELECT", b"0"], b"+OK\r\n"),
        (vec![b"SELECT", b"1"], b"-ERR DB index is out of range\r\n"),
        (
            vec![b"HELLO", b"3"],
            b"-NOPROTO unsupported protocol version\r\n",
        ),
        (vec![b"CLIENT", b"SETNAME", b"me"], b"+OK\r\n"),
        (vec![b"CLIENT", b"GETNAME"], b"$2\r\nme\r\n"),
        (
            vec![b"GET"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (vec![b"DBSIZE"], b":2\r\n"),
        (vec![b"FLUSHALL"], b"+OK\r\n"),
        (vec![b"DBSIZE"], b":0\r\n"),
    ];
    for (args, want) in cases {
        let got = call(&mut s, &args);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{:?}",
            args.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
    }
    let unknown = call(&mut s, &[b"NOPE", b"a"]);
    assert!(
        unknown.starts_with(b"-ERR unknown command 'NOPE'"),
        "{}",
        String::from_utf8_lossy(&unknown)
    );
    // Inline commands work too.
    s.write_all(b"PING\r\nSET inline \"a b\"\r\nGET inline\r\n")
        .unwrap();
    let mut r = BufReader::new(&mut s);
    assert_eq!(read_reply(&mut r), b"+PONG\r\n");
    assert_eq!(read_reply(&mut r), b"+OK\r\n");
    assert_eq!(read_reply(&mut r), b"$3\r\na b\r\n");
    let info = String::from_utf8(call(&mut s, &[b"INFO"])).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "INFO lacks {section}");
    }
    assert!(info.contains("connected_clients:1"), "{info}");
    assert!(info.contains("db0:keys=1"), "{info}");
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn protocol_errors_close_only_that_connection() {
    let dir = temp_dir("proto");
    let srv = Server::start(&dir, free_port(), &[]);
    let mut good = srv.conn();
    let mut bad = srv.conn();
    bad.write_all(b"*1\r\n$abc\r\n").unwrap();
    let mut got = Vec::new();
    bad.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(call(&mut good, &[b"PING"]), b"+PONG\r\n");
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A connection the server admitted (AUTH answered `+OK`), retrying while earlier
/// clients' closes are still in flight and the server refuses for `maxclients`.
fn admitted(srv: &Server) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = srv.conn();
        // A refused client may see the reset before the refusal; both mean "retry".
        let _ = s.write_all(&cmd(&[b"AUTH", b"s3cret"]));
        let mut line = String::new();
        if BufReader::new(&s).read_line(&mut line).is_ok() {
            if line == "+OK\r\n" {
                return s;
            }
            assert!(
                line.is_empty() || line == "-ERR max number of clients reached\r\n",
                "{line:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "earlier clients never counted out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn redis_cli_and_auth_and_maxclients() {
    let dir = temp_dir("auth");
    let srv = Server::start(
        &dir,
        free_port(),
        &["--requirepass", "s3cret", "--maxclients", "3"],
    );
    let mut s = srv.conn();
    assert_eq!(
        call(&mut s, &[b"GET", b"x"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        call(&mut s, &[b"AUTH", b"wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(call(&mut s, &[b"AUTH", b"s3cret"]), b"+OK\r\n");
    assert_eq!(
        srv.cli(&["-a", "s3cret", "--no-auth-warning", "SET", "cli", "works"]),
        "OK"
    );
    assert_eq!(
        srv.cli(&["-a", "s3cret", "--no-auth-warning", "GET", "cli"]),
        "works"
    );
    // redis-cli's connections close asynchronously: wait until the server has counted
    // them out and admits two more, then the fourth client over the limit is refused.
    let _two = admitted(&srv);
    let _three = admitted(&srv);
    let mut four = srv.conn();
    let mut got = Vec::new();
    four.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"-ERR max number of clients reached\r\n");
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn large_values_and_pipelining() {
    let dir = temp_dir("large");
    let srv = Server::start(&dir, free_port(), &[]);
    let mut s = srv.conn();
    for size in [64 << 10, 16 << 20] {
        let value: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let key = format!("big{size}");
        assert_eq!(call(&mut s, &[b"SET", key.as_bytes(), &value]), b"+OK\r\n");
        let got = call(&mut s, &[b"GET", key.as_bytes()]);
        let header = format!("${size}\r\n");
        assert!(got.starts_with(header.as_bytes()));
        assert_eq!(
            &got[header.len()..got.len() - 2],
            value.as_slice(),
            "{size} B value corrupted"
        );
    }
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &srv.port.to_string(),
            "-n",
            "20000",
            "-c",
            "20",
            "-P",
            "16",
            "-t",
            "set,get",
            "-q",
        ])
        .output()
        .expect("redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pubsub_across_cores() {
    let dir = temp_dir("pubsub");
    let srv = Server::start(&dir, free_port(), &[]);
    let mut subs: Vec<BufReader<TcpStream>> = Vec::new();
    for i in 0..12 {
        let mut s = srv.conn();
        if i % 2 == 0 {
            s.write_all(&cmd(&[b"SUBSCRIBE", b"news"])).unwrap();
        } else {
            s.write_all(&cmd(&[b"PSUBSCRIBE", b"ne*"])).unwrap();
        }
        let mut r = BufReader::new(s);
        let confirm = read_reply(&mut r);
        assert!(
            confirm.windows(9).any(|w| w == b"subscribe"),
            "{}",
            String::from_utf8_lossy(&confirm)
        );
        subs.push(r);
    }
    let mut p = srv.conn();
    assert_eq!(call(&mut p, &[b"PUBLISH", b"news", b"hello"]), b":12\r\n");
    for (i, r) in subs.iter_mut().enumerate() {
        let msg = read_reply(r);
        let want: &[u8] = if i % 2 == 0 {
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        } else {
            b"*4\r\n$8\r\npmessage\r\n$3\r\nne*\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        };
        assert_eq!(String::from_utf8_lossy(&msg), String::from_utf8_lossy(want));
    }
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn restart_keeps_the_data() {
    let dir = temp_dir("restart");
    let port = free_port();
    let srv = Server::start(&dir, port, &[]);
    let mut s = srv.conn();
    for i in 0..500 {
        let k = format!("key:{i}");
        let v = format!("value:{i}:{}", "x".repeat(i));
        assert_eq!(
            call(&mut s, &[b"SET", k.as_bytes(), v.as_bytes()]),
            b"+OK\r\n"
        );
    }
    assert_eq!(call(&mut s, &[b"DEL", b"key:7"]), b":1\r\n");
    drop(s);
    srv.stop();
    let srv = Server::start(&dir, port, &[]);
    let mut s = srv.conn();
    for i in 0..500 {
        let k = format!("key:{i}");
        let got = call(&mut s, &[b"GET", k.as_bytes()]);
        if i == 7 {
            assert_eq!(got, b"$-1\r\n");
        } else {
            let v = format!("value:{i}:{}", "x".repeat(i));
            assert_eq!(got, format!("${}\r\n{v}\r\n", v.len()).into_bytes(), "{k}");
        }
    }
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Checks `kvs` with pipelined GETs.
fn verify(srv: &Server, kvs: &[&(String, String)], what: &str) {
    let mut s = srv.conn();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for chunk in kvs.chunks(64) {
        let mut buf = Vec::new();
        for (k, _) in chunk {
            buf.extend(cmd(&[b"GET", k.as_bytes()]));
        }
        s.write_all(&buf).unwrap();
        for (k, v) in chunk {
            let got = read_reply(&mut r);
            assert_eq!(
                String::from_utf8_lossy(&got),
                format!("${}\r\n{v}\r\n", v.len()),
                "{what}: acknowledged write of {k} lost"
            );
        }
    }
}

/// SIGKILL at random moments under a write load; every acknowledged SET must survive.
#[test]
fn crash_loop_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("RINGFORT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = temp_dir("crash");
    let port = free_port();
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for cycle in 0..cycles {
        let srv = Server::start(&dir, port, &[]);
        // The last cycle's writes (the ones a crash endangers) and a sample of older ones.
        let last = acked
            .iter()
            .rposition(|(k, _)| !k.starts_with(&format!("c{}:", cycle.saturating_sub(1))));
        let recent = last.map_or(0, |i| i + 1);
        let mut sample: Vec<&(String, String)> = acked[recent..].iter().collect();
        for _ in 0..256.min(recent) {
            sample.push(&acked[(rand() as usize) % recent]);
        }
        verify(&srv, &sample, &format!("cycle {cycle}"));
        // Write with pipelining until killed.
        let kill_after = Duration::from_millis(50 + rand() % 400);
        let mut s = srv.conn();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let started = Instant::now();
        let mut n = 0usize;
        'write: while started.elapsed() < kill_after {
            let batch: Vec<(String, String)> = (0..16)
                .map(|j| {
                    let k = format!("c{cycle}:{n}:{j}");
                    let v = format!("v{}", rand() % 1_000_000);
                    (k, v)
                })
                .collect();
            let mut buf = Vec::new();
            for (k, v) in &batch {
                buf.extend(cmd(&[b"SET", k.as_bytes(), v.as_bytes()]));
            }
            if s.write_all(&buf).is_err() {
                break;
            }
            for kv in batch {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(_) if line == b"+OK\r\n" => acked.push(kv),
                    _ => break 'write,
                }
            }
            n += 1;
        }
        srv.kill();
    }
    let srv = Server::start(&dir, port, &[]);
    verify(&srv, &acked.iter().collect::<Vec<_>>(), "final check");
    eprintln!(
        "crash loop: {cycles} SIGKILL cycles, {} acknowledged writes, 0 lost",
        acked.len()
    );
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}
