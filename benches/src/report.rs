//! Rows, the human table and the JSON array.
//!
//! A suite hands back a [`SuiteReport`]: one [`Row`] per measured case, plus the cases it
//! could not measure and why ([`Dropped`]). A row holds ours and every peer that ran, each
//! as a [`Summary`] of its trials; a peer that could not run is named with its reason and
//! never given a number.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::limits::Limits;
use crate::machine::Machine;
use crate::stats::{Latency, Summary};

/// One measured case: ours beside the peers, all from the same run.
#[derive(Clone, Debug)]
pub struct Row {
    /// The suite name (`pool`, `wal`, ...).
    pub suite: &'static str,
    /// What was measured, in words a reader understands.
    pub case: String,
    /// The unit of the figures, e.g. `ns/pair` or `records/s`.
    pub metric: &'static str,
    /// Whether a larger figure is better.
    pub higher_is_better: bool,
    /// Our trials.
    pub ours: Summary,
    /// Every peer that ran, keyed by a name a reader understands, in display order.
    pub peers: Vec<(String, Summary)>,
    /// Peers that could not run, with the reason.
    pub peers_not_run: Vec<(String, String)>,
    /// Lines a reader needs to judge the figures (backings, reservations, ...).
    pub notes: Vec<String>,
    /// Latency percentiles (HDR histogram, every trial merged) per side: `ours` or a peer
    /// name. Empty when the case measures no latency.
    pub latency: Vec<(String, Latency)>,
    /// Further figures of the case, each with its spread across trials, keyed by a name a
    /// reader understands (e.g. `ours io_uring_enter calls per 1,000 msgs`).
    pub extra: Vec<(String, Summary)>,
    /// Where the row sits in a sweep a plot draws, when it does.
    pub sweep: Option<Sweep>,
}

/// A row's place in a sweep: one point per side (ours and each peer) of one plot.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sweep {
    /// The plot, named by its file stem (see [`crate::plots`]).
    pub plot: &'static str,
    /// The swept parameter's value: connections, clients, record bytes.
    pub x: f64,
    /// Turns the row's figures into the plot's unit (record bytes / 1e6 turns records/s
    /// into MB/s; 1.0 keeps them).
    pub y_scale: f64,
}

impl Row {
    /// How many times better ours is than `peer` (above 1: ours is better), from the
    /// medians.
    pub fn advantage(&self, peer: &Summary) -> f64 {
        if self.higher_is_better {
            self.ours.median / peer.median
        } else {
            peer.median / self.ours.median
        }
    }
}

/// A case a suite meant to measure and could not, with the reason. It gets no row.
#[derive(Clone, Debug)]
pub struct Dropped {
    /// The case name.
    pub case: String,
    /// Why it was not measured.
    pub reason: String,
}

/// Everything one suite produced.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    /// The suite name.
    pub suite: &'static str,
    /// Measured cases.
    pub rows: Vec<Row>,
    /// Cases that could not be measured.
    pub dropped: Vec<Dropped>,
}

/// Formats a figure with about four significant digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 10_000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// The spread of a summary, in parentheses.
pub fn spread(s: &Summary) -> String {
    if s.trials == 1 {
        "(1 trial)".to_string()
    } else {
        format!(
            "(p25 {} .. p75 {}, min {} .. max {}, {} trials)",
            num(s.p25),
            num(s.p75),
            num(s.min),
            num(s.max),
            s.trials
        )
    }
}

/// One limit as `name: median unit (spread)` or `name: not measured: why`.
pub fn limit_line(l: &crate::limits::Limit) -> String {
    match &l.outcome {
        Ok(s) => format!("{}: {} {} {}", l.name, num(s.median), l.unit, spread(s)),
        Err(why) => format!("{}: NOT MEASURED: {why}", l.name),
    }
}

/// The human table for `reports`, with the machine and the physical limits on top.
pub fn table(machine: &Machine, limits: &Limits, reports: &[SuiteReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{machine}");
    if !limits.0.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "== physical limits, measured in this run ==");
        for l in &limits.0 {
            let _ = writeln!(out, "  {}", limit_line(l));
            let _ = writeln!(out, "    how: {}", l.how);
        }
    }
    for rep in reports {
        let _ = writeln!(out);
        let _ = writeln!(out, "== suite {} ==", rep.suite);
        let beside: Vec<String> = crate::limits::for_suite(rep.suite)
            .iter()
            .filter_map(|n| limits.0.iter().find(|l| l.name == *n))
            .map(limit_line)
            .collect();
        if !beside.is_empty() {
            let _ = writeln!(out, "limits beside this suite: {}", beside.join("; "));
        }
        let width = rep
            .rows
            .iter()
            .flat_map(|r| {
                r.peers
                    .iter()
                    .map(|(n, _)| n.len())
                    .chain(r.latency.iter().map(|(n, _)| n.len()))
                    .chain(r.peers_not_run.iter().map(|(n, _)| n.len()))
                    .chain((!r.latency.is_empty()).then_some("latency, us (HDR)".len()))
            })
            .chain(std::iter::once(4))
            .max()
            .unwrap_or(4);
        for r in &rep.rows {
            let better = if r.higher_is_better {
                "higher"
            } else {
                "lower"
            };
            let _ = writeln!(out);
            let _ = writeln!(out, "{}  [{}, {better} is better]", r.case, r.metric);
            let _ = writeln!(
                out,
                "  {:<width$}  {:>10}  {}",
                "ours",
                num(r.ours.median),
                spread(&r.ours)
            );
            for (name, s) in &r.peers {
                let adv = r.advantage(s);
                let verdict = if adv >= 1.0 {
                    format!("ours is {}x better", num(adv))
                } else {
                    format!("ours is {}x worse", num(1.0 / adv))
                };
                let _ = writeln!(
                    out,
                    "  {name:<width$}  {:>10}  {}  -> {verdict}",
                    num(s.median),
                    spread(s)
                );
            }
            for (name, why) in &r.peers_not_run {
                let _ = writeln!(out, "  {name:<width$}  not run: {why}");
            }
            if !r.latency.is_empty() {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>10}  {:>10}  {:>10}  {:>10}",
                    "latency, us (HDR)", "p50", "p99", "p999", "max"
                );
                for (name, l) in &r.latency {
                    let _ = writeln!(
                        out,
                        "  {name:<width$}  {:>10}  {:>10}  {:>10}  {:>10}  ({} samples)",
                        num(l.p50_us),
                        num(l.p99_us),
                        num(l.p999_us),
                        num(l.max_us),
                        l.samples
                    );
                }
            }
            for (name, s) in &r.extra {
                let _ = writeln!(out, "  {name}: {}  {}", num(s.median), spread(s));
            }
            for n in &r.notes {
                let _ = writeln!(out, "  note: {n}");
            }
        }
        for d in &rep.dropped {
            let _ = writeln!(out);
            let _ = writeln!(out, "{}  NOT MEASURED: {}", d.case, d.reason);
        }
        if rep.rows.is_empty() && rep.dropped.is_empty() {
            let _ = writeln!(out, "(no cases)");
        }
    }
    out
}

/// One JSON object per measured case. The first six keys are the contract of
/// `shared/BENCHMARKS.md`; the rest help a reader judge the figures.
#[derive(Serialize)]
struct JsonRow<'a> {
    suite: &'a str,
    case: &'a str,
    metric: &'a str,
    higher_is_better: bool,
    /// Our median.
    ours: f64,
    /// Each peer's median.
    peers: BTreeMap<&'a str, f64>,
    /// Per peer, how many times better ours is (peer/ours when lower is better, ours/peer
    /// when higher is better), from the medians.
    ours_advantage: BTreeMap<&'a str, f64>,
    /// Every side's spread across trials.
    spread: JsonSpread<'a>,
    /// Trials of ours (peers ran the same number, interleaved).
    trials: usize,
    peers_not_run: BTreeMap<&'a str, &'a str>,
    /// Latency percentiles per side (`ours` or a peer name), in microseconds, from an HDR
    /// histogram of every trial; absent when the case measures no latency.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    latency: BTreeMap<&'a str, Latency>,
    /// Further figures of the case (median and spread), absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<&'a str, Summary>,
    /// The row's place in a plotted sweep, absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep: Option<Sweep>,
    notes: &'a [String],
    machine: &'a Machine,
    /// The physical limits measured in the same run (every row carries all of them, like
    /// the machine), absent when none was measured.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    limits: BTreeMap<&'a str, JsonLimit<'a>>,
}

#[derive(Clone, Copy, Serialize)]
struct JsonLimit<'a> {
    unit: &'a str,
    median: f64,
    spread: Summary,
    how: &'a str,
}

#[derive(Serialize)]
struct JsonSpread<'a> {
    ours: Summary,
    peers: BTreeMap<&'a str, Summary>,
}

/// The JSON rows for `reports`, keys in the contract's order.
fn json_rows<'a>(
    machine: &'a Machine,
    limits: &'a Limits,
    reports: &'a [SuiteReport],
) -> Vec<JsonRow<'a>> {
    let limits: BTreeMap<&str, JsonLimit> = limits
        .0
        .iter()
        .filter_map(|l| {
            let s = l.outcome.as_ref().ok()?;
            Some((
                l.name,
                JsonLimit {
                    unit: l.unit,
                    median: s.median,
                    spread: *s,
                    how: &l.how,
                },
            ))
        })
        .collect();
    reports
        .iter()
        .flat_map(|rep| rep.rows.iter())
        .map(|r| JsonRow {
            suite: r.suite,
            case: &r.case,
            metric: r.metric,
            higher_is_better: r.higher_is_better,
            ours: r.ours.median,
            peers: r
                .peers
                .iter()
                .map(|(n, s)| (n.as_str(), s.median))
                .collect(),
            ours_advantage: r
                .peers
                .iter()
                .map(|(n, s)| (n.as_str(), r.advantage(s)))
                .collect(),
            spread: JsonSpread {
                ours: r.ours,
                peers: r.peers.iter().map(|(n, s)| (n.as_str(), *s)).collect(),
            },
            trials: r.ours.trials,
            peers_not_run: r
                .peers_not_run
                .iter()
                .map(|(n, w)| (n.as_str(), w.as_str()))
                .collect(),
            latency: r.latency.iter().map(|(n, l)| (n.as_str(), *l)).collect(),
            extra: r.extra.iter().map(|(n, s)| (n.as_str(), *s)).collect(),
            sweep: r.sweep,
            notes: &r.notes,
            machine,
            limits: limits.clone(),
        })
        .collect()
}

/// The JSON array for `reports`, pretty-printed, one object per measured case.
pub fn json_text(machine: &Machine, limits: &Limits, reports: &[SuiteReport]) -> String {
    let mut text = serde_json::to_string_pretty(&json_rows(machine, limits, reports))
        .expect("rows are plain data and always serialize");
    text.push('\n');
    text
}

/// Writes the JSON array for `reports` to `path`.
pub fn write_json(
    path: &Path,
    machine: &Machine,
    limits: &Limits,
    reports: &[SuiteReport],
) -> std::io::Result<()> {
    std::fs::write(path, json_text(machine, limits, reports))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::limits::Limit;
    use crate::stats::Trials;

    pub(crate) fn summary(xs: &[f64]) -> Summary {
        let mut t = Trials::new();
        xs.iter().for_each(|&x| t.push(x));
        t.summary().unwrap()
    }

    pub(crate) fn limits() -> Limits {
        Limits(vec![
            Limit {
                name: crate::limits::MEMCPY,
                unit: "GB/s",
                outcome: Ok(summary(&[10.0, 11.0, 12.0])),
                how: "copy".into(),
            },
            Limit {
                name: crate::limits::FIO_SYNC,
                unit: "syncs/s",
                outcome: Err("fio not installed: apt-get install fio".into()),
                how: "fio".into(),
            },
        ])
    }

    pub(crate) fn report() -> SuiteReport {
        SuiteReport {
            suite: "pool",
            rows: vec![Row {
                suite: "pool",
                case: "alloc+free 4 KiB".into(),
                metric: "ns/pair",
                higher_is_better: false,
                ours: summary(&[2.0, 3.0, 4.0]),
                peers: vec![("std".into(), summary(&[12.0]))],
                peers_not_run: vec![("other".into(), "not installed".into())],
                notes: vec!["a note".into()],
                latency: vec![(
                    "ours".into(),
                    Latency {
                        p50_us: 1.0,
                        p99_us: 2.0,
                        p999_us: 3.0,
                        max_us: 4.0,
                        samples: 10,
                    },
                )],
                extra: vec![("enters per 1,000 msgs".into(), summary(&[7.0]))],
                sweep: None,
            }],
            dropped: vec![Dropped {
                case: "gone".into(),
                reason: "no pages".into(),
            }],
        }
    }

    #[test]
    fn json_has_the_contract_keys() {
        let m = Machine::read();
        let text = json_text(&m, &limits(), &[report()]);
        assert!(
            text.trim_start().starts_with("[\n  {\n    \"suite\""),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = &v.as_array().unwrap()[0];
        for k in [
            "suite",
            "case",
            "metric",
            "higher_is_better",
            "ours",
            "peers",
            "machine",
        ] {
            assert!(o.get(k).is_some(), "missing {k}");
        }
        assert_eq!(o["ours"], 3.0);
        assert_eq!(o["peers"]["std"], 12.0);
        assert_eq!(o["ours_advantage"]["std"], 4.0);
        assert_eq!(o["latency"]["ours"]["p99_us"], 2.0);
        assert_eq!(o["extra"]["enters per 1,000 msgs"]["median"], 7.0);
        assert!(o["peers"].get("other").is_none());
        assert_eq!(o["limits"][crate::limits::MEMCPY]["median"], 11.0);
        assert!(
            o["limits"].get(crate::limits::FIO_SYNC).is_none(),
            "an unmeasured limit gets no number"
        );
        assert!(o.get("sweep").is_none());
        assert_eq!(
            v.as_array().unwrap().len(),
            1,
            "dropped cases get no object"
        );
    }

    #[test]
    fn table_names_reasons_and_ratios() {
        let t = table(&Machine::read(), &limits(), &[report()]);
        assert!(
            t.contains("limits beside this suite: memory copy bandwidth (1 thread): 11.00 GB/s")
        );
        assert!(t.contains("NOT MEASURED: fio not installed"));
        assert!(t.contains("ours is 4.00x better"));
        assert!(t.contains("not run: not installed"));
        assert!(t.contains("NOT MEASURED: no pages"));
        assert!(t.contains("p999"));
        assert!(t.contains("enters per 1,000 msgs: 7.00"));
    }
}
