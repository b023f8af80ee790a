//! The RESP server (engine/examples/resp-server) driven by real clients: raw RESP for
//! byte-exact replies, redis-cli and redis-benchmark from Debian's redis-tools, large
//! values, pub/sub across cores, restarts and half-closed clients. The crash loop is in
//! `crash.rs`, hostile clients in `hostile.rs`, injected faults in `resp_faults.rs`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::resp::*;

#[test]
fn commands_reply_like_redis() {
    let dir = temp_dir("commands");
    let srv = Server::start(&dir, &[]);
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
    let srv = Server::start(&dir, &[]);
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
    let srv = Server::start(&dir, &["--requirepass", "s3cret", "--maxclients", "3"]);
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
    let srv = Server::start(&dir, &[]);
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
    let srv = Server::start(&dir, &[]);
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
    let srv = Server::start(&dir, &[]);
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
    let srv = Server::start(&dir, &[]);
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
