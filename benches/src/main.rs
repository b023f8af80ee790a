//! # ringfort-benches
//!
//! Ringfort's one benchmark harness. Every performance claim the project makes comes from
//! here, and every figure is measured beside a peer in the same run on the same machine,
//! with the ratio reported: the machines are shared and noisy, so an absolute number
//! measured alone means little. The contract is `shared/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p ringfort-benches -- SUITE [--quick] [--json PATH]
//! ```
//!
//! - `SUITE` is `pool`, `wal`, `echo`, `resp` or `all`. A suite that is not built yet says
//!   so, names the issue that builds it, and the process exits non-zero; it never prints a
//!   made-up row. `all` runs every built suite and exits non-zero while any is unbuilt.
//! - `--quick` keeps each suite within about 60 seconds, for smoke runs. The default run
//!   repeats more trials and reports the median with the spread (p25..p75, min..max).
//! - Progress goes to stderr, the human table to stdout (the machine on top: cores,
//!   kernel, 2 MiB hugepages, THP mode), and with `--json PATH` a JSON array with one
//!   object per measured case: `suite`, `case`, `metric`, `higher_is_better`, `ours`,
//!   `peers` (name -> median), plus `ours_advantage`, `spread`, `trials`,
//!   `peers_not_run`, `latency` (per side, p50/p99/p999 in microseconds, when the case
//!   measures latency), `extra` (further figures such as io_uring_enter calls per 1,000
//!   messages), `notes` and `machine`.
//!
//! ## Modules
//!
//! - [`machine`]: what the machine is, printed above the table and put in every row.
//! - [`stats`]: trials and their median and spread.
//! - [`report`]: rows, the table and the JSON.
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
//!
//! ## Adding a suite
//!
//! 1. Write `src/NAME.rs` with `pub fn run(opts: &RunOpts) -> Result<SuiteReport,
//!    BoxError>`. Measure ours and every peer in the same process run, interleaving their
//!    trials (ours, peer, ours, peer, ...) so machine noise falls on both, and summarise
//!    each side with [`stats::Trials`]. A peer that cannot run goes in
//!    [`report::Row::peers_not_run`] with its reason; a case that cannot be measured at
//!    all goes in [`report::SuiteReport::dropped`]. Never substitute a fallback number.
//!    Honour [`RunOpts::quick`] (at most about 60 s) and report progress with
//!    [`progress::Progress`].
//! 2. Declare the module here and switch its entry in [`SUITES`] from
//!    [`Status::NotBuilt`] to [`Status::Built`].
//! 3. Latency figures come from an HDR histogram (p50/p99/p999), never a mean alone.

mod c_echo;
mod echo;
mod fio;
mod hugetlb;
mod loadgen;
mod machine;
mod pool;
mod progress;
mod report;
mod resp;
mod stats;
mod sys;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SuiteArg {
    Pool,
    Wal,
    Echo,
    Resp,
    All,
}

impl SuiteArg {
    fn name(self) -> &'static str {
        match self {
            SuiteArg::Pool => "pool",
            SuiteArg::Wal => "wal",
            SuiteArg::Echo => "echo",
            SuiteArg::Resp => "resp",
            SuiteArg::All => "all",
        }
    }
}

/// Ringfort's benchmarks: ours beside peers, measured in the same run.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The suite to run (`all` runs every built suite).
    #[arg(value_enum)]
    suite: SuiteArg,
    /// Smoke run: each suite finishes within about 60 seconds.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as a JSON array to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The echo suite's load generator is this binary started as a child process.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(loadgen::ROLE_ARG) {
        return ExitCode::from(loadgen::child_main(&args[2..]) as u8);
    }
    let cli = Cli::parse();
    let opts = RunOpts { quick: cli.quick };
    let machine = Machine::read();
    let selected: Vec<&Suite> = SUITES
        .iter()
        .filter(|s| cli.suite == SuiteArg::All || s.name == cli.suite.name())
        .collect();

    let mut reports = Vec::new();
    let mut unbuilt = Vec::new();
    let mut failed = Vec::new();
    for suite in selected {
        match suite.status {
            Status::NotBuilt(issue) => {
                eprintln!(
                    "[{}] suite `{}` is not built yet: it is built by {issue}",
                    suite.name, suite.name
                );
                unbuilt.push((suite.name, issue));
            }
            Status::Built(run) => {
                eprintln!(
                    "[{}] running{}",
                    suite.name,
                    if opts.quick { " (quick)" } else { "" }
                );
                match run(&opts) {
                    Ok(rep) => reports.push(rep),
                    Err(e) => {
                        eprintln!("[{}] failed: {e}", suite.name);
                        failed.push((suite.name, e.to_string()));
                    }
                }
            }
        }
    }

    print!("{}", report::table(&machine, &reports));
    for (name, issue) in &unbuilt {
        println!();
        println!("== suite {name} ==");
        println!("NOT BUILT YET, so no figures: it is built by {issue}.");
    }
    for (name, why) in &failed {
        println!();
        println!("== suite {name} ==");
        println!("FAILED: {why}");
    }

    if let Some(path) = &cli.json {
        if reports.is_empty() {
            eprintln!("no suite ran, so {} was not written", path.display());
        } else if let Err(e) = report::write_json(path, &machine, &reports) {
            eprintln!("writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            eprintln!("wrote {}", path.display());
        }
    }

    if !failed.is_empty() {
        ExitCode::FAILURE
    } else if !unbuilt.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
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
    fn every_suite_arg_but_all_is_registered() {
        for arg in SuiteArg::value_variants() {
            if *arg != SuiteArg::All {
                assert!(SUITES.iter().any(|s| s.name == arg.name()), "{arg:?}");
            }
        }
    }
}
