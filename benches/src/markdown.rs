//! The markdown report of a run: when and where it ran, the peers found, the physical
//! limits, ours against every peer (medians and ratios), the issues' targets, latency
//! percentiles, what was not measured and why, the plots, and every row's notes.

use std::fmt::Write as _;
use std::path::Path;

use crate::limits::{self, Limits};
use crate::machine::Machine;
use crate::peers::Found;
use crate::plots::Written;
use crate::report::{num, SuiteReport};
use crate::targets::{self, TARGETS};

/// What the run was, for the report's head.
pub struct RunInfo {
    /// When it started, UTC.
    pub started: String,
    /// The command that produced it.
    pub command: String,
    /// Its wall time in seconds.
    pub seconds: f64,
    /// The commit it measured, when git could say.
    pub commit: Option<String>,
}

/// Suites that did not produce rows: (suite, why).
pub type Missing<'a> = &'a [(&'a str, String)];

/// Everything the report shows.
pub struct Inputs<'a> {
    /// The run.
    pub run: &'a RunInfo,
    /// The machine.
    pub machine: &'a Machine,
    /// Peer programs found or missing.
    pub peers: &'a [Found],
    /// The physical limits.
    pub limits: &'a Limits,
    /// The suites' results.
    pub reports: &'a [SuiteReport],
    /// Suites that failed or are not built.
    pub missing: Missing<'a>,
    /// The plots.
    pub plots: &'a [Written],
}

/// Escapes `|` for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The report as markdown; plot links are relative to `dir` (where the report is written).
pub fn render(i: &Inputs, dir: &Path) -> String {
    let mut o = String::new();
    let m = i.machine;
    let _ = writeln!(o, "# Ringfort benchmark report");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "- **Run:** {} UTC, `{}`, {:.1} min{}",
        i.run.started,
        i.run.command,
        i.run.seconds / 60.0,
        i.run
            .commit
            .as_ref()
            .map_or(String::new(), |c| format!(", commit {c}"))
    );
    let _ = writeln!(
        o,
        "- **Machine:** {} cores usable ({} online){}{}; {}",
        m.cores,
        m.cpus_online,
        m.cpu_model
            .as_ref()
            .map_or(String::new(), |c| format!(", {c}")),
        m.mem_total_mib.map_or(String::new(), |mib| format!(
            ", {} GiB RAM",
            mib.div_ceil(1024)
        )),
        m.kernel
    );
    let huge = match m.hugepages_2m {
        Some(h) if h.total == 0 => "none reserved at start".to_string(),
        Some(h) => format!("{} reserved at start ({} free)", h.total, h.free),
        None => "no 2 MiB hugetlb pool".to_string(),
    };
    let _ = writeln!(
        o,
        "- **Memory:** 2 MiB hugepages {huge}; transparent huge pages `{}`",
        m.thp.as_deref().unwrap_or("unsupported")
    );
    let _ = writeln!(
        o,
        "- **Noise:** load average {} at start. The machine may be shared: compare the \
         ratios (ours and its peers were measured side by side, interleaved), not the \
         absolute figures; rows marked DISTURBED saw other work just before or after.",
        m.loadavg_1m.map_or("unknown".into(), |l| format!("{l:.2}"))
    );
    let _ = writeln!(o);

    let _ = writeln!(o, "## Peers");
    let _ = writeln!(o);
    let _ = writeln!(o, "| peer | found | needed by |");
    let _ = writeln!(o, "|---|---|---|");
    for f in i.peers {
        let found = match &f.version {
            Ok(v) => cell(v),
            Err(why) => format!("**missing**: {}", cell(why)),
        };
        let _ = writeln!(
            o,
            "| {} | {found} | {} |",
            f.program.bin, f.program.needed_by
        );
    }
    let _ = writeln!(
        o,
        "| okaywal, tokio | crates built into the bench | the wal and echo suites |"
    );
    if let Some(line) = crate::peers::install_line(i.peers) {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Missing peers leave their rows not measured. Install them with `{line}`."
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Physical limits, measured in this run");
    let _ = writeln!(o);
    if i.limits.0.is_empty() {
        let _ = writeln!(o, "None measured.");
    } else {
        let _ = writeln!(o, "| limit | median | spread (min .. max) | how |");
        let _ = writeln!(o, "|---|---|---|---|");
        for l in &i.limits.0 {
            match &l.outcome {
                Ok(s) => {
                    let _ = writeln!(
                        o,
                        "| {} | {} {} | {} .. {} ({} trials) | {} |",
                        l.name,
                        num(s.median),
                        l.unit,
                        num(s.min),
                        num(s.max),
                        s.trials,
                        cell(&l.how)
                    );
                }
                Err(why) => {
                    let _ = writeln!(
                        o,
                        "| {} | not measured: {} | | {} |",
                        l.name,
                        cell(why),
                        cell(&l.how)
                    );
                }
            }
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Ours against each peer (medians)");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "\"ours vs peer\" is how many times better ours is (above 1: ours is better; peer/ours \
         when lower is better)."
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| suite | case | metric | ours | peer | peer's figure | ours vs peer |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for rep in i.reports {
        for r in &rep.rows {
            let mut first = true;
            let mut line = |peer: &str, fig: String, adv: String| {
                let (s, c, me, ours) = if first {
                    (r.suite, cell(&r.case), r.metric, num(r.ours.median))
                } else {
                    ("", String::new(), "", String::new())
                };
                first = false;
                let _ = writeln!(
                    o,
                    "| {s} | {c} | {me} | {ours} | {} | {fig} | {adv} |",
                    cell(peer)
                );
            };
            for (n, p) in &r.peers {
                let adv = r.advantage(p);
                line(n, num(p.median), format!("**{:.2}x**", adv));
            }
            for (n, why) in &r.peers_not_run {
                line(n, "not measured".into(), cell(why));
            }
            if r.peers.is_empty() && r.peers_not_run.is_empty() {
                line("(none)", String::new(), String::new());
            }
        }
    }
    let _ = writeln!(o);
    for rep in i.reports {
        let beside: Vec<String> = limits::for_suite(rep.suite)
            .iter()
            .filter_map(|n| i.limits.0.iter().find(|l| l.name == *n))
            .map(crate::report::limit_line)
            .collect();
        if !beside.is_empty() {
            let _ = writeln!(
                o,
                "- Limits beside **{}**: {}",
                rep.suite,
                beside.join("; ")
            );
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Targets (from the issues)");
    let _ = writeln!(o);
    let _ = writeln!(o, "| target | source | measured | verdict |");
    let _ = writeln!(o, "|---|---|---|---|");
    for t in &TARGETS {
        let v = targets::evaluate(t, i.reports);
        let word = match v.word() {
            "MISSED" => "**missed**",
            w => w,
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {word} |",
            t.text,
            t.issue,
            cell(v.detail())
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Latency percentiles (microseconds)");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| suite | case | side | p50 | p99 | p999 | max | samples |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for rep in i
        .reports
        .iter()
        .filter(|r| r.suite == "echo" || r.suite == "resp")
    {
        for r in rep.rows.iter().filter(|r| !r.latency.is_empty()) {
            for (side, l) in &r.latency {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.suite,
                    cell(&r.case),
                    cell(side),
                    num(l.p50_us),
                    num(l.p99_us),
                    num(l.p999_us),
                    num(l.max_us),
                    l.samples
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "\nEcho: the load generator's HDR histogram, every trial merged. RESP: \
         redis-benchmark's own HDR histogram (its p999 is the 99.902nd percentile, the \
         first step it prints at or above 99.9%). The WAL rows' append latency is in the \
         JSON and the text table."
    );
    let _ = writeln!(o);

    let not_measured: Vec<String> = i
        .missing
        .iter()
        .map(|(s, why)| format!("- suite **{s}**: {why}"))
        .chain(i.reports.iter().flat_map(|rep| {
            rep.dropped
                .iter()
                .map(move |d| format!("- {} / {}: {}", rep.suite, d.case, d.reason))
        }))
        .chain(i.plots.iter().filter_map(|p| {
            p.outcome
                .as_ref()
                .err()
                .map(|why| format!("- plot {}: {why}", p.id))
        }))
        .collect();
    if !not_measured.is_empty() {
        let _ = writeln!(o, "## Not measured");
        let _ = writeln!(o);
        for l in not_measured {
            let _ = writeln!(o, "{l}");
        }
        let _ = writeln!(o);
    }

    let drawn: Vec<&Written> = i.plots.iter().filter(|p| p.outcome.is_ok()).collect();
    if !drawn.is_empty() {
        let _ = writeln!(o, "## Plots");
        let _ = writeln!(o);
        for p in drawn {
            let file = p
                .outcome
                .as_ref()
                .ok()
                .and_then(|f| f.strip_prefix(dir).ok())
                .map_or_else(|| format!("{}.svg", p.id), |f| f.display().to_string());
            let _ = writeln!(o, "![{}]({file})", p.title);
            let _ = writeln!(o);
        }
    }

    let _ = writeln!(o, "## Notes per row");
    let _ = writeln!(o);
    for rep in i.reports {
        for r in &rep.rows {
            let _ = writeln!(o, "<details><summary>{} / {}</summary>", rep.suite, r.case);
            let _ = writeln!(o);
            for n in &r.notes {
                let _ = writeln!(o, "- {}", n.replace('\n', " "));
            }
            for (k, s) in &r.extra {
                let _ = writeln!(
                    o,
                    "- {k}: {} (min {} .. max {})",
                    num(s.median),
                    num(s.min),
                    num(s.max)
                );
            }
            let _ = writeln!(o);
            let _ = writeln!(o, "</details>");
            let _ = writeln!(o);
        }
    }
    o
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers;
    use crate::report::tests::{limits, report};

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc(1_795_332_000), "2026-11-22 07:20");
    }

    #[test]
    fn report_has_every_section() {
        let run = RunInfo {
            started: "2026-11-22 07:00".into(),
            command: "ringfort-benches all --quick".into(),
            seconds: 600.0,
            commit: Some("abc1234".into()),
        };
        let found = vec![peers::Found {
            program: peers::FIO,
            version: Err("fio not installed: apt-get install -y fio".into()),
        }];
        let missing = [("resp", "FAILED: boom".to_string())];
        let plots = [Written {
            id: crate::plots::ECHO_CONNS,
            title: "echo",
            outcome: Ok(Path::new("/r/echo-throughput-vs-connections.svg").to_path_buf()),
        }];
        let md = render(
            &Inputs {
                run: &run,
                machine: &Machine::read(),
                peers: &found,
                limits: &limits(),
                reports: &[report()],
                missing: &missing,
                plots: &plots,
            },
            Path::new("/r"),
        );
        for s in [
            "2026-11-22 07:00 UTC",
            "commit abc1234",
            "**missing**: fio not installed",
            "Install them with `apt-get install -y fio`",
            "| memory copy bandwidth (1 thread) | 11.00 GB/s |",
            "| pool | alloc+free 4 KiB | ns/pair | 3.00 | std | 12.00 | **4.00x** |",
            "| other | not measured | not installed |",
            "alloc+free 4 KiB >= 3x faster than the std allocator | issue 2 (pool) | no peer named like `std allocator` ran | not measured |",
            "- suite **resp**: FAILED: boom",
            "- pool / gone: no pages",
            "![echo](echo-throughput-vs-connections.svg)",
            "Limits beside **pool**: memory copy bandwidth",
        ] {
            assert!(md.contains(s), "missing {s:?} in\n{md}");
        }
    }
}
