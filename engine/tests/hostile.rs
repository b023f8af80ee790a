//! Hostile clients against the RESP server. Each test runs one class of abuse while a
//! well-behaved client keeps asking, and asserts that it keeps getting correct answers,
//! that the abusers get what the protocol says (an error, a close, an eviction) and that
//! the server is still there at the end.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::raise_nofile;
use common::resp::*;

/// A well-behaved client: each check writes a fresh key and reads it back.
struct Good {
    s: TcpStream,
    r: BufReader<TcpStream>,
    n: u64,
}

impl Good {
    fn new(srv: &Server) -> Good {
        let s = srv.conn();
        let r = BufReader::new(s.try_clone().unwrap());
        Good { s, r, n: 0 }
    }

    /// One field of INFO, asked on this connection (so it counts itself as a client).
    fn info(&mut self, name: &str) -> String {
        self.s.write_all(&cmd(&[b"INFO", b"everything"])).unwrap();
        let info = String::from_utf8(read_reply(&mut self.r)).unwrap();
        let prefix = format!("{name}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("INFO has no {name}: {info}"))
            .to_string()
    }

    fn check(&mut self) {
        self.n += 1;
        let k = format!("good:{}", self.n);
        let v = format!("value {} {}", self.n, "g".repeat((self.n % 200) as usize));
        self.s
            .write_all(
                &[
                    cmd(&[b"SET", k.as_bytes(), v.as_bytes()]),
                    cmd(&[b"GET", k.as_bytes()]),
                ]
                .concat(),
            )
            .unwrap();
        assert_eq!(read_reply(&mut self.r), b"+OK\r\n", "good client's SET {k}");
        assert_eq!(
            read_reply(&mut self.r),
            bulk(v.as_bytes()),
            "good client's GET {k}"
        );
    }
}

fn with_server(tag: &str, opts: &Opts<'_>) -> (Server, PathBuf) {
    let dir = temp_dir(tag);
    (Server::launch(&dir, opts), dir)
}

/// Reads until the server closes the connection (or 30 s pass, which fails).
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("the server neither answered nor closed: {e}; got {got:?}"),
    }
}

/// Sets SO_LINGER to 0, so closing sends a RST instead of a FIN.
fn linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a live linger struct of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// Waits until INFO's `name`, asked by `good`, equals `want`.
fn wait_info(good: &mut Good, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = good.info(name);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "INFO {name} stayed {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Malformed requests: the fuzz seed corpus of the RESP parser plus hand-written cases,
/// each sent on its own connection, which is then half-closed. The server answers what
/// was a whole command, says "Protocol error" for what was not, and closes; nothing
/// else is affected.
#[test]
fn malformed_requests_get_errors_and_close_only_their_connection() {
    let (mut srv, dir) = with_server("malformed", &Opts::default());
    let mut good = Good::new(&srv);
    good.check();
    let mut inputs: Vec<Vec<u8>> = vec![
        b"*1\r\n$abc\r\n".to_vec(),
        b"*-\r\n".to_vec(),
        b"*1\r\n*1\r\n".to_vec(),
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY\r\n".to_vec(),
        b"*1\r\n$4\r\nPING".to_vec(),
        b"$5\r\nhello\r\n".to_vec(),
        b"PING \"unbalanced\r\n".to_vec(),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-1\r\n".to_vec(),
        b"\r\n\r\n\r\n*0\r\n*-1\r\n".to_vec(),
        vec![0u8; 300],
        (0..=255u8).cycle().take(5000).collect(),
        b"*2\r\n$4\r\nECHO\r\n$3\r\nab\x00\r\n".to_vec(),
    ];
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/resp_parser");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", corpus.display());
    for p in seeds {
        // The fuzz target's first two bytes configure it; the rest is the stream.
        let bytes = std::fs::read(&p).unwrap();
        inputs.push(bytes.get(2..).unwrap_or_default().to_vec());
    }
    let mut protocol_errors = 0;
    for input in &inputs {
        let mut s = srv.conn();
        // A refused write means the server already closed on an early error.
        let _ = s.write_all(input);
        let _ = s.shutdown(Shutdown::Write);
        let got = read_until_closed(&mut s);
        let text = String::from_utf8_lossy(&got);
        if let Some(at) = text.find("-ERR Protocol error") {
            protocol_errors += 1;
            assert_eq!(
                text[at..].matches("\r\n").count(),
                1,
                "the protocol error is the last thing sent: {text:?}"
            );
        }
        good.check();
    }
    assert!(
        protocol_errors >= 4,
        "only {protocol_errors} protocol errors"
    );
    assert!(srv.alive());
    wait_info(&mut good, "connected_clients", "1");
    good.check();
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Lengths past the limits are refused at once with Redis's errors; lengths within them
/// that are never followed by data reserve no memory.
#[test]
fn oversized_lengths_are_refused_and_reserve_nothing() {
    let (mut srv, dir) = with_server("oversized", &Opts::default());
    let mut good = Good::new(&srv);
    let cases: [(&[u8], &str); 6] = [
        (
            b"*1048577\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*99999999999999999999\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$536870913\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$-2\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$99999999999999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            &[b'x'; 70_000],
            "-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (input, want) in cases {
        let mut s = srv.conn();
        let _ = s.write_all(input);
        let got = read_until_closed(&mut s);
        assert_eq!(
            String::from_utf8_lossy(&got),
            want,
            "{:?}",
            &input[..input.len().min(40)]
        );
        good.check();
    }
    // Fifty clients announce the largest bulk allowed (512 MiB) and send nothing more.
    let rss_before = rss_kib(&mut srv);
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = srv.conn();
            s.write_all(b"*2\r\n$3\r\nSET\r\n$536870912\r\n").unwrap();
            s
        })
        .collect();
    good.check();
    wait_info(&mut good, "connected_clients", "51");
    let grown = rss_kib(&mut srv).saturating_sub(rss_before);
    assert!(
        grown < 256 << 10,
        "50 announced 512 MiB bulks grew the server by {grown} KiB"
    );
    drop(idle);
    wait_info(&mut good, "connected_clients", "1");
    good.check();
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

fn rss_kib(srv: &mut Server) -> u64 {
    assert!(srv.alive());
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Thousands of connections each sending one byte every 100 ms: each eventually gets its
/// answer, and the well-behaved client is answered every round meanwhile.
#[test]
fn slowloris_connections_do_not_stall_others() {
    let conns: usize = std::env::var("RINGFORT_SLOWLORIS_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    raise_nofile(conns as u64 + 1000);
    let (mut srv, dir) = with_server("slowloris", &Opts::default());
    let mut good = Good::new(&srv);
    let mut slow: Vec<TcpStream> = (0..conns).map(|_| srv.conn()).collect();
    let request = cmd(&[b"PING"]);
    for byte in &request {
        for s in &mut slow {
            s.write_all(std::slice::from_ref(byte)).unwrap();
        }
        good.check();
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in &mut slow {
        let mut r = BufReader::new(s);
        assert_eq!(read_reply(&mut r), b"+PONG\r\n");
    }
    wait_info(&mut good, "connected_clients", &(conns + 1).to_string());
    drop(slow);
    wait_info(&mut good, "connected_clients", "1");
    good.check();
    assert!(srv.alive());
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Past `--maxclients`, clients are told so and closed; the clients already in are served.
#[test]
fn a_flood_past_maxclients_is_refused_while_admitted_clients_are_served() {
    let (mut srv, dir) = with_server(
        "maxclients",
        &Opts {
            args: &["--maxclients", "64"],
            ..Opts::default()
        },
    );
    let mut good = Good::new(&srv);
    let mut flood = Vec::new();
    let mut refused = 0;
    for i in 0..300 {
        let mut s = srv.conn();
        s.write_all(&cmd(&[b"PING"])).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        match line.as_str() {
            "+PONG\r\n" => flood.push(s),
            "-ERR max number of clients reached\r\n" | "" => refused += 1,
            other => panic!("flood client {i} got {other:?}"),
        }
        if i % 25 == 0 {
            good.check();
        }
    }
    assert_eq!(flood.len(), 63, "admitted besides the good client");
    assert_eq!(refused, 237);
    good.check();
    let rejected: u64 = good.info("rejected_connections").parse().unwrap();
    assert!(rejected >= 237, "{rejected}");
    drop(flood);
    wait_info(&mut good, "connected_clients", "1");
    let mut again = Good::new(&srv);
    again.check();
    good.check();
    assert!(srv.alive());
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A server started under RLIMIT_NOFILE 128 lowers maxclients to what the limit can hold
/// besides the descriptors its logs and engine need (as Redis does), so a flood of 400
/// clients is refused with an error rather than starving the write-ahead log of the
/// descriptor it needs for its next segment: the well-behaved client's writes keep
/// succeeding throughout, and new clients are admitted once the flood is gone.
#[test]
fn a_flood_past_rlimit_nofile_is_refused_and_writes_keep_working() {
    let (mut srv, dir) = with_server(
        "nofile",
        &Opts {
            nofile: Some(128),
            ..Opts::default()
        },
    );
    let mut good = Good::new(&srv);
    let maxclients: usize = good.info("maxclients").parse().unwrap();
    assert!(
        maxclients < 128 && maxclients > 16,
        "maxclients {maxclients} under a 128-descriptor limit"
    );
    let mut flood: Vec<TcpStream> = Vec::new();
    let mut refused = 0;
    for i in 0..400 {
        let mut s = srv.conn();
        s.write_all(&cmd(&[b"PING"])).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
        match line.as_str() {
            "+PONG\r\n" => flood.push(s),
            "-ERR max number of clients reached\r\n" | "" => refused += 1,
            other => panic!("flood client {i} got {other:?}"),
        }
        if i % 20 == 0 {
            good.check();
        }
    }
    assert_eq!(
        flood.len(),
        maxclients - 1,
        "admitted besides the good client"
    );
    assert_eq!(refused, 400 - flood.len());
    good.check();
    assert!(srv.alive());
    drop(flood);
    wait_info(&mut good, "connected_clients", "1");
    let mut again = Good::new(&srv);
    again.check();
    good.check();
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Clients that reset the connection (SO_LINGER 0) in the middle of a request, or with a
/// pipeline of writes still being answered.
#[test]
fn resets_mid_request_and_mid_reply_affect_no_one_else() {
    let (mut srv, dir) = with_server("rst", &Opts::default());
    let mut good = Good::new(&srv);
    let value = vec![b'r'; 4096];
    for i in 0..200 {
        let mut s = srv.conn();
        match i % 4 {
            0 => s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk").unwrap(),
            1 => s.write_all(b"*2\r\n$3\r\nGET\r\n$100000\r\nabc").unwrap(),
            2 => {
                let mut pipeline = Vec::new();
                for j in 0..100 {
                    let k = format!("rst:{i}:{j}");
                    pipeline.extend(cmd(&[b"SET", k.as_bytes(), &value]));
                    pipeline.extend(cmd(&[b"GET", k.as_bytes()]));
                }
                s.write_all(&pipeline).unwrap();
            }
            _ => s.write_all(&cmd(&[b"PING"])).unwrap(),
        }
        linger_zero(&s);
        drop(s);
        if i % 20 == 0 {
            good.check();
        }
    }
    good.check();
    wait_info(&mut good, "connected_clients", "1");
    assert!(srv.alive());
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A client that sends its requests and shuts down its sending side still gets every
/// reply, then the server closes: reads, durable writes (answered after their sync), keys
/// on either core, inline commands.
#[test]
fn half_closed_clients_get_every_reply() {
    let (mut srv, dir) = with_server("halfclose", &Opts::default());
    let mut good = Good::new(&srv);
    for i in 0..50 {
        let mut s = srv.conn();
        let k = format!("half:{i}");
        let v = vec![b'h'; 1 + i * 997];
        let mut req = cmd(&[b"SET", k.as_bytes(), &v]);
        req.extend(cmd(&[b"GET", k.as_bytes()]));
        req.extend(cmd(&[b"INCR", format!("halfctr:{}", i % 3).as_bytes()]));
        req.extend_from_slice(b"PING\r\n");
        s.write_all(&req).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let got = read_until_closed(&mut s);
        let mut r = BufReader::new(&got[..]);
        assert_eq!(read_reply(&mut r), b"+OK\r\n", "request {i}");
        assert_eq!(read_reply(&mut r), bulk(&v), "request {i}");
        assert!(read_reply(&mut r).starts_with(b":"), "request {i}");
        assert_eq!(read_reply(&mut r), b"+PONG\r\n", "request {i}");
        assert!(r.fill_buf().unwrap().is_empty(), "request {i}: extra bytes");
        if i % 10 == 0 {
            good.check();
        }
    }
    wait_info(&mut good, "connected_clients", "1");
    good.check();
    assert!(srv.alive());
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A subscriber that never reads is evicted at the pub/sub output buffer limit (32 MiB);
/// a subscriber that reads gets every message, in order; other clients are unaffected.
#[test]
fn subscribers_that_never_read_are_evicted_alone() {
    const MESSAGES: usize = 800;
    const SIZE: usize = 64 << 10;
    let (mut srv, dir) = with_server("lazysub", &Opts::default());
    let mut good = Good::new(&srv);
    let mut lazy = srv.conn();
    let rcvbuf: libc::c_int = 64 << 10;
    // SAFETY: a valid socket and a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            lazy.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let confirm = call(&mut lazy, &[b"SUBSCRIBE", b"feed"]);
    assert!(confirm.windows(9).any(|w| w == b"subscribe"));
    let mut busy = srv.conn();
    let confirm = call(&mut busy, &[b"SUBSCRIBE", b"feed"]);
    assert!(confirm.windows(9).any(|w| w == b"subscribe"));
    let reader = {
        let busy = busy.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, busy);
            for i in 0..MESSAGES {
                let msg = read_reply(&mut r);
                let head = format!("{i:08}");
                let at = msg.len() - SIZE - 2;
                assert_eq!(&msg[at..at + 8], head.as_bytes(), "gap or reorder at {i}");
            }
        })
    };
    let mut p = srv.conn();
    let mut receivers = Vec::new();
    for i in 0..MESSAGES {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(SIZE, b'm');
        let got = call(&mut p, &[b"PUBLISH", b"feed", &payload]);
        receivers.push(String::from_utf8(got).unwrap());
        if i % 100 == 0 {
            good.check();
        }
    }
    reader
        .join()
        .expect("the reading subscriber got every message in order");
    assert_eq!(
        receivers[0], ":2\r\n",
        "both subscribers were there at first"
    );
    assert_eq!(
        receivers[MESSAGES - 1],
        ":1\r\n",
        "the lazy subscriber was still subscribed"
    );
    let evicted: u64 = srv
        .info_field("client_output_buffer_limit_disconnections")
        .parse()
        .unwrap();
    assert_eq!(evicted, 1);
    // The lazy subscriber finds its connection closed once it drains what the kernel
    // holds.
    let got = read_until_closed(&mut lazy);
    assert!(
        got.len() < MESSAGES * SIZE,
        "the lazy subscriber got everything"
    );
    good.check();
    drop(busy);
    wait_info(&mut good, "connected_clients", "2");
    assert!(srv.alive());
    srv.stop();
    let _ = std::fs::remove_dir_all(dir);
}
