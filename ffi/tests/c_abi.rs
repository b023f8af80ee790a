//! The C ABI as C and C++ programs use it. This test builds the library with cargo (with
//! the `test-panic` feature, which adds only `rf_test_panic`), compiles the C and C++
//! tests, examples and header checks with gcc and clang (`-Wall -Wextra -Werror`), links
//! them against the static library with the libraries `ringfort.pc.in` lists, and runs
//! them; the C tests also run under valgrind. A missing compiler or valgrind fails the
//! test and says how to install it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str =
    "README's test command installs it: apt-get install -y gcc g++ clang valgrind";
/// A guard against a hung child, far above any honest run; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(900);

fn ffi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The library, built once for every test in this file, copied where nothing rebuilds it.
struct Lib {
    work: PathBuf,
}

impl Lib {
    fn static_lib(&self) -> PathBuf {
        self.work.join("libringfort_ffi.a")
    }
}

fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| {
        // The test binary lives in TARGET/PROFILE/deps.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/profile");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(ffi_dir().parent().unwrap())
            .args([
                "build",
                "-p",
                "ringfort-ffi",
                "--lib",
                "--features",
                "test-panic",
            ])
            .arg("--target-dir")
            .arg(target_dir);
        if profile == "release" {
            cmd.arg("--release");
        }
        let out = run(&mut cmd, "cargo build of ringfort-ffi");
        assert!(
            out.status.success(),
            "cargo build failed:\n{}",
            text(&out.stderr)
        );
        let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ffi-c-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        for f in ["libringfort_ffi.a", "libringfort_ffi.so"] {
            std::fs::copy(profile_dir.join(f), work.join(f))
                .unwrap_or_else(|e| panic!("copying {f}: {e}"));
        }
        Lib { work }
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` to completion (killing it past the hang guard).
fn run(cmd: &mut Command, what: &str) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{what}: cannot run {:?}: {e}. {INSTALL_HINT}",
                cmd.get_program()
            )
        });
    wait_guarded(child, what)
}

fn wait_guarded(mut child: Child, what: &str) -> Output {
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + HANG_GUARD;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} hung; killed after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// The libraries the static library needs, from `ringfort.pc.in`'s Libs.private, so a
/// wrong list there fails this test at link time.
fn private_libs() -> Vec<String> {
    let pc = std::fs::read_to_string(ffi_dir().join("ringfort.pc.in")).unwrap();
    let line = pc
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private:"))
        .expect("ringfort.pc.in has Libs.private");
    line.split_whitespace().map(String::from).collect()
}

#[derive(Clone, Copy)]
enum Lang {
    C,
    Cxx,
}

/// Compiles and links `source` (relative to ffi/) with `compiler` into `name`, once per
/// name and compiler for the whole file (tests running side by side share the result).
fn build(compiler: &str, lang: Lang, source: &str, name: &str, extra: &[&str]) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = format!("{name}-{compiler}");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(k, _)| *k == key) {
        return p.clone();
    }
    let out = compile(compiler, lang, source, &key, extra, true);
    built.push((key, out.clone()));
    out
}

/// Compiles `source` with `compiler` into `out_name` in the work directory: linked against
/// the static library when `link`, an object file otherwise.
fn compile(
    compiler: &str,
    lang: Lang,
    source: &str,
    out_name: &str,
    extra: &[&str],
    link: bool,
) -> PathBuf {
    let lib = lib();
    let out = lib.work.join(out_name);
    let dir = ffi_dir();
    let mut cmd = Command::new(compiler);
    cmd.arg(match lang {
        Lang::C => "-std=c11",
        Lang::Cxx => "-std=c++17",
    })
    .args(["-Wall", "-Wextra", "-Werror", "-g", "-O1"])
    .args(extra)
    .arg("-I")
    .arg(dir.join("include"))
    .arg("-I")
    .arg(dir.join("tests/c"))
    .arg(dir.join(source));
    if link {
        cmd.arg(lib.static_lib()).args(private_libs());
    } else {
        cmd.arg("-c");
    }
    cmd.arg("-o").arg(&out);
    let o = run(&mut cmd, &format!("{compiler} {source}"));
    assert!(
        o.status.success(),
        "{compiler} {source} failed:\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    out
}

/// Runs a self-checking test program; it prints one line starting with its name.
fn run_test_program(path: &Path, name: &str, valgrind: bool) {
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--leak-check=full",
            "--error-exitcode=1",
            // Fair scheduling: a core thread waking every millisecond must not starve the
            // others of valgrind's lock (see HEARTBEAT_TOKEN in tests/c/check.h).
            "--fair-sched=yes",
        ])
        .arg(format!(
            "--suppressions={}",
            ffi_dir().join("tests/valgrind.supp").display()
        ))
        .arg(path)
        .env("RF_TEST_LIGHT", "1");
        c
    } else {
        Command::new(path)
    };
    let what = format!(
        "{}{}",
        if valgrind { "valgrind " } else { "" },
        path.display()
    );
    let o = run(&mut cmd, &what);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success() && out.contains(&format!("{name}:")),
        "{what} failed ({}):\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    if valgrind {
        assert!(
            err.contains("ERROR SUMMARY: 0 errors from 0 contexts"),
            "{what}: valgrind did not report a clean run:\n{err}"
        );
    }
}

const C_TESTS: [&str; 4] = ["test_echo", "test_wal", "test_errors", "test_panic"];

#[test]
fn c_and_cpp_tests_pass_with_gcc_and_clang() {
    for (cc, cxx) in [("gcc", "g++"), ("clang", "clang++")] {
        for name in C_TESTS {
            let bin = build(
                cc,
                Lang::C,
                &format!("tests/c/{name}.c"),
                name,
                &["-pthread"],
            );
            run_test_program(&bin, name, false);
        }
        let bin = build(
            cxx,
            Lang::Cxx,
            "tests/c/test_cpp.cpp",
            "test_cpp",
            &["-pthread"],
        );
        run_test_program(&bin, "test_cpp", false);
    }
}

#[test]
fn c_tests_are_clean_under_valgrind() {
    let probe = Command::new("valgrind").arg("--version").output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "valgrind is not installed, so the leak check cannot run. {INSTALL_HINT}"
    );
    for name in C_TESTS {
        let bin = build(
            "gcc",
            Lang::C,
            &format!("tests/c/{name}.c"),
            &format!("vg-{name}"),
            &["-pthread"],
        );
        run_test_program(&bin, name, true);
    }
}

#[test]
fn header_compiles_alone_twice_and_as_cpp() {
    // Compiled (not linked: the tests above link every function) with -Wpedantic.
    for cc in ["gcc", "clang"] {
        for (src, std) in [
            ("header_alone", "-std=c99"),
            ("header_twice", "-std=c99"),
            ("header_alone", "-std=c17"),
        ] {
            let name = format!("{src}{std}-{cc}.o");
            compile(
                cc,
                Lang::C,
                &format!("tests/c/{src}.c"),
                &name,
                &[std, "-Wpedantic"],
                false,
            );
        }
    }
    for cxx in ["g++", "clang++"] {
        let name = format!("header_cpp-{cxx}.o");
        compile(
            cxx,
            Lang::Cxx,
            "tests/c/header_cpp.cpp",
            &name,
            &["-Wpedantic"],
            false,
        );
    }
}

/// A server started by a test: killed if the test fails before stopping it.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `cmd`, returning it and a reader of its stdout lines.
fn spawn_lines(cmd: &mut Command) -> (Server, BufReader<std::process::ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let out = BufReader::new(child.stdout.take().unwrap());
    (Server(Some(child)), out)
}

fn next_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    assert_ne!(
        r.read_line(&mut line).unwrap(),
        0,
        "the program ended early"
    );
    line.trim_end().to_string()
}

/// Sends SIGTERM and expects a clean exit.
fn terminate(mut server: Server, what: &str) {
    let mut child = server.0.take().expect("running");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + HANG_GUARD;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{what} did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{what} exited {status}");
}

fn port_from(line: &str) -> u16 {
    line.rsplit([':', ' '])
        .find_map(|w| w.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

#[test]
fn examples_build_and_run() {
    for (cc, cxx) in [("gcc", "g++"), ("clang", "clang++")] {
        // echo_server: echoes on two cores, stops cleanly on SIGTERM.
        let echo = build(
            cc,
            Lang::C,
            "examples/echo_server.c",
            "echo_server",
            &["-pthread"],
        );
        let (child, mut out) =
            spawn_lines(Command::new(&echo).args(["--port", "0", "--cores", "2"]));
        let line = next_line(&mut out);
        assert!(
            line.starts_with("echo server on 127.0.0.1:") && line.ends_with("2 cores"),
            "{line}"
        );
        let port = line
            .trim_start_matches("echo server on 127.0.0.1:")
            .split(',')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap();
        for i in 0..8 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let msg = format!("hello {i} {}", "z".repeat(i * 1000));
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
        terminate(child, "echo_server");

        // wal_tool: append (arguments and stdin), dump, stat, truncate.
        let tool = build(cc, Lang::C, "examples/wal_tool.c", "wal_tool", &[]);
        let dir = lib().work.join(format!("wal-tool-{cc}"));
        let _ = std::fs::remove_dir_all(&dir);
        let o = run(
            Command::new(&tool)
                .arg("append")
                .arg(&dir)
                .args(["one", "two", "three"]),
            "wal_tool append",
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout).trim(), "appended 3 record(s), last LSN 3");
        let mut child = Command::new(&tool)
            .arg("append")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"four\nfive\n")
            .unwrap();
        let o = wait_guarded(child, "wal_tool append from stdin");
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout).trim(), "appended 2 record(s), last LSN 5");
        let o = run(
            Command::new(&tool).arg("dump").arg(&dir).arg("2"),
            "wal_tool dump",
        );
        assert_eq!(text(&o.stdout), "2\ttwo\n3\tthree\n4\tfour\n5\tfive\n");
        let o = run(Command::new(&tool).arg("stat").arg(&dir), "wal_tool stat");
        assert!(
            text(&o.stdout).contains("next LSN 6, 5 record(s)"),
            "{}",
            text(&o.stdout)
        );
        let o = run(
            Command::new(&tool).arg("truncate").arg(&dir).arg("1"),
            "wal_tool truncate",
        );
        assert!(
            o.status.success() && text(&o.stdout).starts_with("removed "),
            "{}",
            text(&o.stderr)
        );
        let o = run(
            Command::new(&tool).arg("dump").arg("/nonexistent/rf"),
            "wal_tool dump",
        );
        assert!(
            !o.status.success() && text(&o.stderr).contains("RF_ERR_IO"),
            "{}",
            text(&o.stderr)
        );

        // wal_logger (C++): lines acknowledged once durable, replayed after a restart (one
        // core, so one log numbers every line).
        let logger = build(
            cxx,
            Lang::Cxx,
            "examples/wal_logger.cpp",
            "wal_logger",
            &["-pthread"],
        );
        let dir = lib().work.join(format!("wal-logger-{cxx}"));
        let _ = std::fs::remove_dir_all(&dir);
        for (round, want_replayed) in [(0, 0), (1, 3)] {
            let (child, mut out) = spawn_lines(Command::new(&logger).arg(&dir).args(["0", "1"]));
            assert_eq!(
                next_line(&mut out),
                format!("replayed {want_replayed} records")
            );
            let port = port_from(&next_line(&mut out));
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"alpha\nbeta\ngamma\n").unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let first = round * 3 + 1;
            for i in 0..3 {
                assert_eq!(
                    next_line(&mut r),
                    format!("OK {}", first + i),
                    "round {round}"
                );
            }
            drop(s);
            terminate(child, "wal_logger");
        }
    }
}

#[test]
fn installs_and_builds_with_pkg_config() {
    let lib = lib();
    let prefix = lib.work.join("prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let o = run(
        Command::new("bash")
            .arg(ffi_dir().join("install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .arg("--from")
            .arg(&lib.work),
        "install.sh",
    );
    assert!(
        o.status.success(),
        "install.sh failed:\n{}",
        text(&o.stderr)
    );
    for f in [
        "lib/libringfort.so",
        "lib/libringfort.so.0",
        "lib/libringfort.a",
        "include/ringfort.h",
        "include/ringfort.hpp",
        "lib/pkgconfig/ringfort.pc",
    ] {
        assert!(prefix.join(f).exists(), "{f} was not installed");
    }
    let pc_path = prefix.join("lib/pkgconfig");
    let flags = run(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "ringfort"])
            .env("PKG_CONFIG_PATH", &pc_path),
        "pkg-config",
    );
    assert!(
        flags.status.success(),
        "pkg-config: {}",
        text(&flags.stderr)
    );
    let flags = text(&flags.stdout);
    assert!(flags.contains("-lringfort"), "{flags}");
    // Exactly what the README shows: cc prog.c $(pkg-config --cflags --libs ringfort).
    let exe = lib.work.join("echo_server-pkg-config");
    let o = run(
        Command::new("cc")
            .args(["-Wall", "-Wextra", "-Werror"])
            .arg(ffi_dir().join("examples/echo_server.c"))
            .args(flags.split_whitespace())
            .arg("-pthread")
            .arg("-o")
            .arg(&exe),
        "cc with pkg-config flags",
    );
    assert!(o.status.success(), "cc failed:\n{}", text(&o.stderr));
    let o = run(
        Command::new(&exe)
            .arg("--version")
            .env("LD_LIBRARY_PATH", prefix.join("lib")),
        "echo_server --version",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        format!(
            "ringfort {0} (compiled against {0})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
