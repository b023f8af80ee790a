//! # ringfort-benches
//!
//! Ringfort's one benchmark harness. Every performance claim the project makes comes from
//! here, and every figure is measured beside a peer in the same run on the same machine,
//! with the ratio reported: the machines are shared and noisy, so an absolute number
//! measured alone means little. The contract is `shared/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p ringfort-benches -- SUITE [--quick] [--json PATH]
//! cargo run --release -p ringfort-benches -- all [--quick] [--json PATH] [--out DIR]
//! cargo run --release -p ringfort-benches -- compare A.json B.json [--threshold PERCENT]
//! ```
//!
//! - `SUITE` is `pool`, `wal`, `echo` or `resp`; `all` runs every suite. A suite that is
//!   not built yet says so, names the issue that builds it, and the process exits
//!   non-zero; it never prints a made-up row.
//! - `--quick` keeps each suite to about a minute, for smoke runs. The default run repeats
//!   more trials and reports the median with the spread (p25..p75, min..max).
//! - Data flows: first the peer programs are looked for ([`peers`]; the bench installs
//!   nothing, and a missing one is named with its `apt-get` line while its rows are
//!   reported as not measured), then the physical limits that bear on the chosen suites
//!   are measured ([`limits`]), then each suite runs and hands back a
//!   [`report::SuiteReport`]. The rows go to the human table on stdout (the machine and
//!   the limits on top, the issues' [`targets`] at the end), and with `--json PATH` to a
//!   JSON array with one object per measured case: `suite`, `case`, `metric`,
//!   `higher_is_better`, `ours`, `peers` (name -> median), plus `ours_advantage`,
//!   `spread`, `trials`, `peers_not_run`, `latency` (per side, p50/p99/p999 in
//!   microseconds, when the case measures latency), `extra` (further figures such as
//!   io_uring_enter calls per 1,000 messages), `sweep` (the row's place in a plot),
//!   `notes`, `machine` and `limits`.
//! - `all` also writes the report into `--out` (default `benches/results`): `latest.json`,
//!   the SVG [`plots`] and `latest.md` ([`markdown`]).
//! - `compare` prints ratios per row between two JSON files and flags regressions
//!   ([`compare`]).
//! - Progress goes to stderr.
//!
//! ## Modules
//!
//! - [`machine`]: what the machine is, printed above the table and put in every row.
//! - [`peers`]: the peer programs (redis-server, redis-benchmark, fio), found, never
//!   installed.
//! - [`limits`]: the physical limits, measured in the same run.
//! - [`stats`]: trials and their median and spread.
//! - [`report`]: rows, the table and the JSON.
//! - [`targets`]: the issues' targets, checked against the medians.
//! - [`plots`]: the SVG plots.
//! - [`markdown`]: the markdown report.
//! - [`compare`]: two result files side by side.
//! - [`progress`]: progress lines on stderr.
//! - [`hugetlb`]: reserving 2 MiB hugepages for a case and giving them back.
//! - [`sys`]: CPU affinity, RLIMIT_NOFILE, /proc/stat and /proc/diskstats readings, a
//!   data directory on a real disk.
//! - [`fio`]: fio as a peer (never installed by the bench; missing fio is a named reason).
//! - [`loadgen`]: the echo load generator, run as a child process of this binary
//!   (`ringfort-benches __loadgen ...`), the same for every server.
//! - [`pool`]: the `pool` suite (ringfort-pool against the std allocator).
//! - [`wal`]: the `wal` suite (ringfort-wal's durable appends against okaywal, with
//!   fio's fdatasync and O_DIRECT limits).
//! - [`echo`]: the `echo` suite (the ringfort engine's echo server against tokio, one
//!   multi-thread runtime and one current-thread runtime per core, and the C echo server
//!   of the C ABI against the Rust one).
//! - [`c_echo`]: building and running `ffi/examples/echo_server.c` for the `echo` suite.
//! - [`resp`]: the `resp` suite (the RESP server against redis-server, driven by
//!   redis-benchmark).
//!
//! ## Adding a suite
//!
//! 1. Write `src/NAME.rs` with `pub fn run(opts: &RunOpts) -> Result<SuiteReport,
//!    BoxError>`. Measure ours and every peer in the same process run, interleaving their
//!    trials (ours, peer, ours, peer, ...) so machine noise falls on both, and summarise
//!    each side with [`stats::Trials`]. A peer that cannot run goes in
//!    [`report::Row::peers_not_run`] with its reason; a case that cannot be measured at
//!    all goes in [`report::SuiteReport::dropped`]. Never substitute a fallback number.
//!    Honour [`RunOpts::quick`] and report progress with [`progress::Progress`].
//! 2. Declare the module here, add it to [`SUITES`] and give it a subcommand; name the
//!    limits that bear on it in [`limits::for_suite`].
//! 3. Latency figures come from an HDR histogram (p50/p99/p999), never a mean alone.
//! 4. Rows of a sweep carry a [`report::Sweep`] naming their plot in [`plots`].

mod c_echo;
mod compare;
mod echo;
mod fio;
mod hugetlb;
mod limits;
mod loadgen;
mod machine;
mod markdown;
mod peers;
mod plots;
mod pool;
mod progress;
mod report;
mod resp;
mod stats;
mod sys;
mod targets;
mod wal;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use crate::limits::Limits;
use crate::machine::Machine;
use crate::report::SuiteReport;

/// The error a suite returns when it cannot run at all.
pub type BoxError = Box<dyn std::error::Error>;

/// Options every suite receives.
#[derive(Clone, Copy, Debug)]
pub struct RunOpts {
    /// Finish within about 60 seconds: fewer trials, shorter ones.
    pub quick: bool,
}

/// Whether a suite can run yet.
#[derive(Clone, Copy)]
pub enum Status {
    /// Runs the suite.
    Built(fn(&RunOpts) -> Result<SuiteReport, BoxError>),
    /// Not built yet; the string names the issue that builds it ("built by ...").
    NotBuilt(&'static str),
}

/// One suite the harness knows.
pub struct Suite {
    /// The name given on the command line.
    pub name: &'static str,
    /// Whether it runs.
    pub status: Status,
}

/// Every suite, in the order `all` runs them.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "pool",
        status: Status::Built(pool::run),
    },
    Suite {
        name: "wal",
        status: Status::Built(wal::run),
    },
    Suite {
        name: "echo",
        status: Status::Built(echo::run),
    },
    Suite {
        name: "resp",
        status: Status::Built(resp::run),
    },
];

/// Where `all` writes its report unless told otherwise: `benches/results`.
const RESULTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/results");

/// Ringfort's benchmarks: ours beside peers, measured in the same run.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// ringfort-pool against the std allocator.
    Pool(RunArgs),
    /// ringfort-wal's durable appends against okaywal and fio's limits.
    Wal(RunArgs),
    /// The engine's echo server against tokio, with one load generator.
    Echo(RunArgs),
    /// The RESP server against redis-server, driven by redis-benchmark.
    Resp(RunArgs),
    /// Every suite, the physical limits, and the report: JSON, markdown and SVG plots.
    All(AllArgs),
    /// Ratios per row between two JSON result files, flagging regressions.
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Smoke run: each suite finishes within about 60 seconds.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as a JSON array to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct AllArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Where the report goes: latest.json, latest.md and the SVG plots.
    #[arg(long, value_name = "DIR", default_value = RESULTS_DIR)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// The earlier result file (a JSON array, e.g. an older benches/results/latest.json).
    a: PathBuf,
    /// The later result file.
    b: PathBuf,
    /// Flag a row when ours' advantage over a peer changed by more than this percentage.
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    threshold: f64,
}

fn main() -> ExitCode {
    // The echo suite's load generator is this binary started as a child process.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(loadgen::ROLE_ARG) {
        return ExitCode::from(loadgen::child_main(&args[2..]) as u8);
    }
    let (names, run, out): (Vec<&str>, RunArgs, Option<PathBuf>) = match Cli::parse().cmd {
        Cmd::Pool(a) => (vec!["pool"], a, None),
        Cmd::Wal(a) => (vec!["wal"], a, None),
        Cmd::Echo(a) => (vec!["echo"], a, None),
        Cmd::Resp(a) => (vec!["resp"], a, None),
        Cmd::All(a) => (SUITES.iter().map(|s| s.name).collect(), a.run, Some(a.out)),
        Cmd::Compare(c) => {
            return match compare::run(&c.a, &c.b, c.threshold) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("compare: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    run_suites(&names, &run, out.as_deref())
}

/// The machine, the peers and the limits, then every suite in `names`; the table on
/// stdout, the JSON with `--json`, and the full report into `out` (for `all`).
fn run_suites(names: &[&str], args: &RunArgs, out: Option<&Path>) -> ExitCode {
    let started = SystemTime::now();
    let t0 = Instant::now();
    let opts = RunOpts { quick: args.quick };
    let machine = Machine::read();
    let tag = if names.len() > 1 { "all" } else { names[0] };

    let found = peers::check();
    for f in &found {
        match &f.version {
            Ok(v) => eprintln!("[{tag}] peer {}: {v}", f.program.bin),
            Err(why) => eprintln!(
                "[{tag}] MISSING peer {}: {why}; {} will be reported as not measured",
                f.program.bin, f.program.needed_by
            ),
        }
    }
    if let Some(line) = peers::install_line(&found) {
        eprintln!("[{tag}] nothing is installed by the bench; to measure every row: {line}");
    }

    eprintln!("[{tag}] measuring the physical limits of this machine");
    let limits = limits::measure(names, opts.quick);

    let mut reports = Vec::new();
    let mut missing: Vec<(&str, String)> = Vec::new();
    let mut failed = false;
    let mut unbuilt = false;
    for (i, name) in names.iter().enumerate() {
        let Some(suite) = SUITES.iter().find(|s| s.name == *name) else {
            continue;
        };
        match suite.status {
            Status::NotBuilt(issue) => {
                eprintln!("[{name}] suite `{name}` is not built yet: it is built by {issue}");
                missing.push((
                    name,
                    format!("NOT BUILT YET, so no figures: built by {issue}"),
                ));
                unbuilt = true;
            }
            Status::Built(run) => {
                eprintln!(
                    "[{name}] running{} (suite {} of {}, {:.0} s into the run)",
                    if opts.quick { " (quick)" } else { "" },
                    i + 1,
                    names.len(),
                    t0.elapsed().as_secs_f64()
                );
                match run(&opts) {
                    Ok(rep) => reports.push(rep),
                    Err(e) => {
                        eprintln!("[{name}] failed: {e}");
                        missing.push((name, format!("FAILED: {e}")));
                        failed = true;
                    }
                }
            }
        }
    }

    print!("{}", report::table(&machine, &limits, &reports));
    for (name, why) in &missing {
        println!();
        println!("== suite {name} ==");
        println!("{why}");
    }
    let targets: Vec<String> = targets::TARGETS
        .iter()
        .filter(|t| names.contains(&t.suite))
        .map(|t| {
            let v = targets::evaluate(t, &reports);
            format!("  {}: {} ({})", t.text, v.word(), v.detail())
        })
        .collect();
    if !targets.is_empty() {
        println!();
        println!("== targets (from the issues; reported, never asserted) ==");
        targets.iter().for_each(|t| println!("{t}"));
    }

    let mut write_failed = false;
    if let Some(path) = &args.json {
        write_failed |= !write_json(path, &machine, &limits, &reports);
    }
    if let Some(dir) = out {
        write_failed |= !write_report(
            dir, &machine, &found, &limits, &reports, &missing, started, t0, args.quick,
        );
    }
    eprintln!(
        "[{tag}] done in {:.1} min",
        t0.elapsed().as_secs_f64() / 60.0
    );

    if failed || write_failed {
        ExitCode::FAILURE
    } else if unbuilt {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes the JSON array; false (with the reason on stderr) when it could not.
fn write_json(path: &Path, machine: &Machine, limits: &Limits, reports: &[SuiteReport]) -> bool {
    if reports.is_empty() {
        eprintln!("no suite ran, so {} was not written", path.display());
        return true;
    }
    match report::write_json(path, machine, limits, reports) {
        Ok(()) => {
            eprintln!("wrote {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("writing {}: {e}", path.display());
            false
        }
    }
}

/// Writes `dir/latest.json`, the SVG plots and `dir/latest.md`; false when any failed.
#[allow(clippy::too_many_arguments)]
fn write_report(
    dir: &Path,
    machine: &Machine,
    found: &[peers::Found],
    limits: &Limits,
    reports: &[SuiteReport],
    missing: &[(&str, String)],
    started: SystemTime,
    t0: Instant,
    quick: bool,
) -> bool {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("making {}: {e}", dir.display());
        return false;
    }
    let mut ok = write_json(&dir.join("latest.json"), machine, limits, reports);
    let plots = plots::write_all(dir, reports, limits);
    for p in &plots {
        match &p.outcome {
            Ok(f) => eprintln!("wrote {}", f.display()),
            Err(why) => eprintln!("plot {} not drawn: {why}", p.id),
        }
    }
    let run = markdown::RunInfo {
        started: markdown::utc(
            started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
        command: format!(
            "cargo run --release -p ringfort-benches -- all{}",
            if quick { " --quick" } else { "" }
        ),
        seconds: t0.elapsed().as_secs_f64(),
        commit: git_commit(),
    };
    let md = markdown::render(
        &markdown::Inputs {
            run: &run,
            machine,
            peers: found,
            limits,
            reports,
            missing,
            plots: &plots,
        },
        dir,
    );
    let path = dir.join("latest.md");
    match std::fs::write(&path, md) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("writing {}: {e}", path.display());
            ok = false;
        }
    }
    ok
}

/// The measured commit, `abc1234` or `abc1234 (+ uncommitted changes)`, when git can say.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{head} (+ uncommitted changes)")
    } else {
        head
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_suite_has_a_subcommand() {
        for s in SUITES {
            let cli = Cli::try_parse_from(["ringfort-benches", s.name, "--quick"]).unwrap();
            let named = match cli.cmd {
                Cmd::Pool(_) => "pool",
                Cmd::Wal(_) => "wal",
                Cmd::Echo(_) => "echo",
                Cmd::Resp(_) => "resp",
                Cmd::All(_) | Cmd::Compare(_) => "",
            };
            assert_eq!(named, s.name);
        }
    }

    #[test]
    fn all_writes_to_benches_results_by_default() {
        let cli = Cli::try_parse_from(["ringfort-benches", "all", "--quick"]).unwrap();
        let Cmd::All(a) = cli.cmd else {
            panic!("not all")
        };
        assert!(a.run.quick);
        assert!(a.out.ends_with("benches/results"), "{}", a.out.display());
        let cli = Cli::try_parse_from(["ringfort-benches", "compare", "a.json", "b.json"]);
        assert!(matches!(cli.unwrap().cmd, Cmd::Compare(c) if c.threshold == 10.0));
        assert!(Cli::try_parse_from(["ringfort-benches", "nope"]).is_err());
    }
}
