//! `compare A.json B.json`: ratios per row between two result files, to spot regressions
//! between commits.
//!
//! Rows are matched by suite, case and metric. For each, the table shows ours in A and in
//! B and how B changed, as a factor where above 1 is better (B/A when higher is better,
//! A/B when lower is). Absolute figures from two runs can differ with the machine's
//! load, so a row is judged by ours' advantage over each peer it had in both runs, which
//! was measured side by side within each run: a row is flagged `REGRESSION` when that
//! advantage shrank by more than the threshold against any common peer, and `improved`
//! when it grew by more than the threshold against every one. A row with no common peer is
//! judged by ours alone, and says so. The physical limits the two runs measured are
//! compared first, since a different machine or a busier one moves every row.
//!
//! Only the contract's keys are read (`suite`, `case`, `metric`, `higher_is_better`,
//! `ours`, `peers`), plus `limits` when present, so any file that follows
//! `shared/BENCHMARKS.md` can be compared.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::report::num;

/// One row of a result file.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    higher_is_better: bool,
    ours: f64,
    peers: BTreeMap<String, f64>,
}

impl Entry {
    /// How many times better ours is than a peer's figure.
    fn advantage(&self, peer: f64) -> f64 {
        if self.higher_is_better {
            self.ours / peer
        } else {
            peer / self.ours
        }
    }
}

type Key = (String, String, String);

/// A result file: rows by (suite, case, metric) in file order, and the limits.
#[derive(Debug)]
struct Results {
    order: Vec<Key>,
    rows: BTreeMap<Key, Entry>,
    limits: BTreeMap<String, (f64, String)>,
}

fn load(path: &Path) -> Result<Results, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Results, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let arr = v.as_array().ok_or("not a JSON array of rows")?;
    let mut out = Results {
        order: Vec::new(),
        rows: BTreeMap::new(),
        limits: BTreeMap::new(),
    };
    for (i, o) in arr.iter().enumerate() {
        let s = |k: &str| {
            o[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("row {i}: no string `{k}`"))
        };
        let key = (s("suite")?, s("case")?, s("metric")?);
        let entry = Entry {
            higher_is_better: o["higher_is_better"]
                .as_bool()
                .ok_or_else(|| format!("row {i}: no boolean `higher_is_better`"))?,
            ours: o["ours"]
                .as_f64()
                .ok_or_else(|| format!("row {i}: no number `ours`"))?,
            peers: o["peers"]
                .as_object()
                .ok_or_else(|| format!("row {i}: no object `peers`"))?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect(),
        };
        if let Some(l) = o["limits"].as_object() {
            for (name, v) in l {
                if let Some(m) = v["median"].as_f64() {
                    let unit = v["unit"].as_str().unwrap_or("").to_string();
                    out.limits.entry(name.clone()).or_insert((m, unit));
                }
            }
        }
        if out.rows.insert(key.clone(), entry).is_none() {
            out.order.push(key);
        }
    }
    Ok(out)
}

/// How a row changed from A to B.
#[derive(Clone, Debug, PartialEq)]
struct Change {
    /// Ours in B against ours in A, as a factor where above 1 is better.
    ours: f64,
    /// Per peer in both runs: ours' advantage in A, in B, and B's over A's.
    peers: Vec<(String, f64, f64, f64)>,
    flag: &'static str,
}

fn change(a: &Entry, b: &Entry, threshold: f64) -> Change {
    let ours = if a.higher_is_better {
        b.ours / a.ours
    } else {
        a.ours / b.ours
    };
    let peers: Vec<(String, f64, f64, f64)> = a
        .peers
        .iter()
        .filter_map(|(n, &pa)| {
            let pb = *b.peers.get(n)?;
            let (aa, ab) = (a.advantage(pa), b.advantage(pb));
            Some((n.clone(), aa, ab, ab / aa))
        })
        .collect();
    let factors: Vec<f64> = if peers.is_empty() {
        vec![ours]
    } else {
        peers.iter().map(|p| p.3).collect()
    };
    let worst = factors.iter().copied().fold(f64::INFINITY, f64::min);
    let best_all = factors.iter().all(|&f| f > 1.0 + threshold);
    let flag = match (worst < 1.0 - threshold, best_all, peers.is_empty()) {
        (true, _, false) => "REGRESSION",
        (true, _, true) => "REGRESSION (ours alone, no common peer)",
        (false, true, false) => "improved",
        (false, true, true) => "improved (ours alone, no common peer)",
        _ => "",
    };
    Change { ours, peers, flag }
}

/// `suite / case [metric]`.
fn label(k: &Key) -> String {
    format!("{} / {} [{}]", k.0, k.1, k.2)
}

/// A factor, as `1.25x`.
fn ratio(x: f64) -> String {
    format!("{x:.2}x")
}

/// Compares two result files; the table, or why the files cannot be compared.
pub fn run(a: &Path, b: &Path, threshold_pct: f64) -> Result<String, String> {
    if !(0.0..100.0).contains(&threshold_pct) {
        return Err(format!(
            "--threshold must be a percentage in 0..100, not {threshold_pct}"
        ));
    }
    let (ra, rb) = (load(a)?, load(b)?);
    Ok(render(
        &ra,
        &rb,
        &a.display().to_string(),
        &b.display().to_string(),
        threshold_pct / 100.0,
    ))
}

fn render(a: &Results, b: &Results, name_a: &str, name_b: &str, threshold: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {name_a}");
    let _ = writeln!(out, "B: {name_b}");
    let _ = writeln!(
        out,
        "B vs A: a factor above 1 means B is better (B/A when higher is better, A/B when \
         lower is). A row is flagged when ours' advantage over a peer it had in both runs \
         changed by more than {:.0}%.",
        threshold * 100.0
    );
    let common: Vec<&String> = a
        .limits
        .keys()
        .filter(|k| b.limits.contains_key(*k))
        .collect();
    if !common.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "physical limits (B vs A above 1: B's machine had more):"
        );
        for k in common {
            let ((va, unit), (vb, _)) = (&a.limits[k], &b.limits[k]);
            let _ = writeln!(
                out,
                "  {k}: {} -> {} {unit} ({})",
                num(*va),
                num(*vb),
                ratio(vb / va)
            );
        }
    }
    let width = a
        .order
        .iter()
        .chain(&b.order)
        .map(|k| label(k).len())
        .max()
        .unwrap_or(10);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>8}  ours' advantage over each peer: A -> B (B vs A)",
        "suite / case [metric]", "ours A", "ours B", "B vs A"
    );
    let mut flagged = 0;
    for k in &a.order {
        let label = label(k);
        let ea = &a.rows[k];
        let Some(eb) = b.rows.get(k) else {
            let _ = writeln!(
                out,
                "{label:<width$}  {:>12}  {:>12}  only in A",
                num(ea.ours),
                "-"
            );
            continue;
        };
        let c = change(ea, eb, threshold);
        let peers = c
            .peers
            .iter()
            .map(|(n, aa, ab, f)| format!("{n} {} -> {} ({})", ratio(*aa), ratio(*ab), ratio(*f)))
            .collect::<Vec<_>>()
            .join("; ");
        if c.flag.starts_with("REGRESSION") {
            flagged += 1;
        }
        let _ = writeln!(
            out,
            "{label:<width$}  {:>12}  {:>12}  {:>8}  {}{}{}",
            num(ea.ours),
            num(eb.ours),
            ratio(c.ours),
            if peers.is_empty() {
                "no common peer"
            } else {
                &peers
            },
            if c.flag.is_empty() { "" } else { "  <- " },
            c.flag
        );
    }
    for k in b.order.iter().filter(|k| !a.rows.contains_key(*k)) {
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  only in B",
            label(k),
            "-",
            num(b.rows[k].ours)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{flagged} row(s) flagged as regressions beyond {:.0}%",
        threshold * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"[
      {"suite": "wal", "case": "w", "metric": "records/s", "higher_is_better": true,
       "ours": 100.0, "peers": {"okaywal": 50.0},
       "limits": {"crc32fast (1 thread)": {"unit": "GB/s", "median": 20.0}}},
      {"suite": "pool", "case": "p", "metric": "ns/pair", "higher_is_better": false,
       "ours": 5.0, "peers": {"std": 30.0}},
      {"suite": "echo", "case": "gone", "metric": "msgs/s", "higher_is_better": true,
       "ours": 1.0, "peers": {}}
    ]"#;

    const B: &str = r#"[
      {"suite": "wal", "case": "w", "metric": "records/s", "higher_is_better": true,
       "ours": 120.0, "peers": {"okaywal": 80.0},
       "limits": {"crc32fast (1 thread)": {"unit": "GB/s", "median": 10.0}}},
      {"suite": "pool", "case": "p", "metric": "ns/pair", "higher_is_better": false,
       "ours": 4.0, "peers": {"std": 30.0}},
      {"suite": "echo", "case": "new", "metric": "msgs/s", "higher_is_better": true,
       "ours": 1.0, "peers": {}}
    ]"#;

    #[test]
    fn advantage_changes_decide_the_flag() {
        let (a, b) = (parse(A).unwrap(), parse(B).unwrap());
        let k = |s: &str, c: &str, m: &str| (s.to_string(), c.to_string(), m.to_string());
        // Ours got faster (1.2x), but okaywal got faster still: 2x -> 1.5x is a 0.75 factor.
        let c = change(
            &a.rows[&k("wal", "w", "records/s")],
            &b.rows[&k("wal", "w", "records/s")],
            0.1,
        );
        assert!((c.ours - 1.2).abs() < 1e-9);
        assert!((c.peers[0].3 - 0.75).abs() < 1e-9);
        assert_eq!(c.flag, "REGRESSION");
        // Lower is better: 5 ns -> 4 ns is a 1.25x improvement.
        let c = change(
            &a.rows[&k("pool", "p", "ns/pair")],
            &b.rows[&k("pool", "p", "ns/pair")],
            0.1,
        );
        assert!((c.ours - 1.25).abs() < 1e-9);
        assert_eq!(c.flag, "improved");
        let same = change(
            &a.rows[&k("pool", "p", "ns/pair")],
            &a.rows[&k("pool", "p", "ns/pair")],
            0.1,
        );
        assert_eq!(same.flag, "");
    }

    #[test]
    fn the_table_names_everything() {
        let t = render(
            &parse(A).unwrap(),
            &parse(B).unwrap(),
            "a.json",
            "b.json",
            0.1,
        );
        assert!(
            t.contains("crc32fast (1 thread): 20.00 -> 10.00 GB/s (0.50x)"),
            "{t}"
        );
        assert!(
            t.contains("okaywal 2.00x -> 1.50x (0.75x)  <- REGRESSION"),
            "{t}"
        );
        assert!(t.contains("only in A"), "{t}");
        assert!(t.contains("pool / p [ns/pair]"), "{t}");
        assert!(t.contains("only in B"), "{t}");
        assert!(t.contains("1 row(s) flagged"), "{t}");
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(parse("{}").is_err());
        assert!(parse("[{\"suite\": \"x\"}]").unwrap_err().contains("row 0"));
        assert!(run(Path::new("/nonexistent/a.json"), Path::new("b"), 10.0).is_err());
        assert!(run(Path::new("a"), Path::new("b"), 150.0)
            .unwrap_err()
            .contains("threshold"));
    }
}
