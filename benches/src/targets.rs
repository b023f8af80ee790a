//! The performance targets of the project's issues, checked against a run's medians.
//!
//! A target is reported as met, missed, or not measured (with the reason). It is never
//! asserted: a benchmark measures and reports.

use crate::report::{Row, SuiteReport};

/// What a target compares.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// Ours is at least `min` times better than every peer whose key contains `peer`.
    /// `limit` names a peer of the row that measures what any implementation can reach
    /// (a device limit): a missed target whose goal lies beyond it says so.
    Advantage {
        peer: &'static str,
        min: f64,
        limit: Option<&'static str>,
    },
    /// Ours' median is at most `max` (in the row's metric).
    OursAtMost { max: f64 },
    /// An extra figure of the row is at most `max`.
    ExtraAtMost { key: &'static str, max: f64 },
    /// The extra figure `ours` is at most `max` times the extra figure `peer`.
    ExtraRatioAtMost {
        ours: &'static str,
        peer: &'static str,
        max: f64,
    },
}

/// One target of an issue.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Where it comes from.
    pub issue: &'static str,
    /// The row it is about.
    pub suite: &'static str,
    /// The row's case name.
    pub case: &'static str,
    /// The target in words.
    pub text: &'static str,
    check: Check,
}

/// The targets, in report order.
pub const TARGETS: [Target; 14] = [
    Target {
        issue: "issue 2 (pool)",
        suite: "pool",
        case: "alloc+free 4 KiB",
        text: "alloc+free 4 KiB >= 3x faster than the std allocator",
        check: Check::Advantage {
            peer: "std allocator",
            min: 3.0,
            limit: None,
        },
    },
    Target {
        issue: "issue 2 (pool)",
        suite: "pool",
        case: "alloc+free 4 KiB",
        text: "alloc+free 4 KiB median <= 10 ns",
        check: Check::OursAtMost { max: 10.0 },
    },
    Target {
        issue: "issue 3 (WAL)",
        suite: "wal",
        case: "durable-append 256 B x16",
        text: "durable appends 256 B x16 >= 3x okaywal",
        check: Check::Advantage {
            peer: "okaywal",
            min: 3.0,
            limit: Some("fio fdatasync limit x batch"),
        },
    },
    Target {
        issue: "issue 3 (WAL)",
        suite: "wal",
        case: "durable-append 1 MiB x1 (bandwidth)",
        text: "durable appends 1 MiB x1 >= 0.85x fio's O_DIRECT bandwidth",
        check: Check::Advantage {
            peer: "fio O_DIRECT QD16",
            min: 0.85,
            limit: None,
        },
    },
    Target {
        issue: "issue 4 (engine)",
        suite: "echo",
        case: "echo 100 B x1,000 conns",
        text: "echo 100 B x1,000 conns >= 1.5x tokio (both runtimes)",
        check: Check::Advantage {
            peer: "tokio",
            min: 1.5,
            limit: None,
        },
    },
    Target {
        issue: "issue 4 (engine)",
        suite: "echo",
        case: "echo 100 B x1,000 conns",
        text: "echo 100 B x1,000 conns: <= 50 io_uring_enter calls per 1,000 msgs",
        check: Check::ExtraAtMost {
            key: "ours io_uring_enter calls per 1,000 msgs",
            max: 50.0,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "SET -P1 64 B",
        text: "SET -P1 64 B >= 1.5x redis-server",
        check: Check::Advantage {
            peer: "redis-server",
            min: 1.5,
            limit: None,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "SET -P1 64 B",
        text: "SET -P1 64 B: <= 0.5x redis-server's CPU per request",
        check: Check::ExtraRatioAtMost {
            ours: "cpu_s_per_M ours",
            peer: "cpu_s_per_M redis-server",
            max: 0.5,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "GET -P1 64 B",
        text: "GET -P1 64 B >= 1.5x redis-server",
        check: Check::Advantage {
            peer: "redis-server",
            min: 1.5,
            limit: None,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "GET -P1 64 B",
        text: "GET -P1 64 B: <= 0.5x redis-server's CPU per request",
        check: Check::ExtraRatioAtMost {
            ours: "cpu_s_per_M ours",
            peer: "cpu_s_per_M redis-server",
            max: 0.5,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "SET -P16 64 B",
        text: "SET -P16 64 B >= 1.2x redis-server",
        check: Check::Advantage {
            peer: "redis-server",
            min: 1.2,
            limit: None,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "GET -P16 64 B",
        text: "GET -P16 64 B >= 1.2x redis-server",
        check: Check::Advantage {
            peer: "redis-server",
            min: 1.2,
            limit: None,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "durable SET -P1 64 B",
        text: "durable SET -P1 64 B >= 3x redis-server appendfsync always",
        check: Check::Advantage {
            peer: "redis-server appendfsync always",
            min: 3.0,
            limit: None,
        },
    },
    Target {
        issue: "issue 5 (RESP)",
        suite: "resp",
        case: "durable SET -P16 64 B",
        text: "durable SET -P16 64 B >= 2x redis-server appendfsync always",
        check: Check::Advantage {
            peer: "redis-server appendfsync always",
            min: 2.0,
            limit: None,
        },
    },
];

/// A target's outcome in a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Met: the measured figure, in words.
    Met(String),
    /// Missed: the measured figure, in words.
    Missed(String),
    /// Not measured, and why.
    NotMeasured(String),
}

impl Verdict {
    /// `met`, `MISSED` or `not measured`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Met(_) => "met",
            Verdict::Missed(_) => "MISSED",
            Verdict::NotMeasured(_) => "not measured",
        }
    }

    /// The measured figure or the reason.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Met(s) | Verdict::Missed(s) | Verdict::NotMeasured(s) => s,
        }
    }
}

fn judge(ok: bool, what: String) -> Verdict {
    if ok {
        Verdict::Met(what)
    } else {
        Verdict::Missed(what)
    }
}

/// Checks `t` against the rows of `reports`.
pub fn evaluate(t: &Target, reports: &[SuiteReport]) -> Verdict {
    let Some(rep) = reports.iter().find(|r| r.suite == t.suite) else {
        return Verdict::NotMeasured(format!("the {} suite did not run", t.suite));
    };
    let Some(row) = rep.rows.iter().find(|r| r.case == t.case) else {
        let why = rep
            .dropped
            .iter()
            .find(|d| d.case == t.case)
            .map_or("the case did not run".to_string(), |d| d.reason.clone());
        return Verdict::NotMeasured(why);
    };
    check(t.check, row)
}

fn extra(row: &Row, key: &str) -> Option<f64> {
    row.extra
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s.median)
}

fn check(c: Check, row: &Row) -> Verdict {
    match c {
        Check::Advantage { peer, min, limit } => {
            let advs: Vec<(String, f64)> = row
                .peers
                .iter()
                .filter(|(n, _)| n.contains(peer))
                .map(|(n, s)| (n.clone(), row.advantage(s)))
                .collect();
            if advs.is_empty() {
                let why = row
                    .peers_not_run
                    .iter()
                    .find(|(n, _)| n.contains(peer))
                    .map_or_else(
                        || format!("no peer named like `{peer}` ran"),
                        |(n, w)| format!("{n} not run: {w}"),
                    );
                return Verdict::NotMeasured(why);
            }
            let what = advs
                .iter()
                .map(|(n, a)| format!("{a:.2}x {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let met = advs.iter().all(|(_, a)| *a >= min);
            let beyond = limit
                .filter(|_| !met && row.higher_is_better)
                .and_then(|l| {
                    let (lname, lsum) = row.peers.iter().find(|(n, _)| n.contains(l))?;
                    let goal = row
                        .peers
                        .iter()
                        .filter(|(n, _)| n.contains(peer))
                        .map(|(_, s)| s.median * min)
                        .fold(0.0, f64::max);
                    // Only a limit that held for ours in this run is taken as a bound.
                    (goal > lsum.median && row.ours.median <= lsum.median).then(|| {
                        format!(
                            "; the goal ({goal:.0} {}) lies beyond {lname} ({:.0}), which bounds \
                             any implementation in this run",
                            row.metric, lsum.median
                        )
                    })
                });
            judge(met, what + beyond.as_deref().unwrap_or(""))
        }
        Check::OursAtMost { max } => judge(
            row.ours.median <= max,
            format!("{:.2} {}", row.ours.median, row.metric),
        ),
        Check::ExtraAtMost { key, max } => match extra(row, key) {
            Some(v) => judge(v <= max, format!("{v:.1}")),
            None => Verdict::NotMeasured(format!("the row has no `{key}` figure")),
        },
        Check::ExtraRatioAtMost { ours, peer, max } => match (extra(row, ours), extra(row, peer)) {
            (Some(o), Some(p)) if p > 0.0 => judge(o / p <= max, format!("{:.2}x", o / p)),
            _ => Verdict::NotMeasured(format!("the row lacks `{ours}` or `{peer}`")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::summary;
    use crate::report::Dropped;

    fn echo_row(ours: f64, mt: f64, ct: f64) -> Row {
        Row {
            suite: "echo",
            case: "echo 100 B x1,000 conns".into(),
            metric: "msgs/s",
            higher_is_better: true,
            ours: summary(&[ours]),
            peers: vec![
                ("tokio multi-thread".into(), summary(&[mt])),
                ("tokio current-thread per core".into(), summary(&[ct])),
            ],
            peers_not_run: Vec::new(),
            notes: Vec::new(),
            latency: Vec::new(),
            extra: vec![(
                "ours io_uring_enter calls per 1,000 msgs".into(),
                summary(&[40.0]),
            )],
            sweep: None,
        }
    }

    fn echo(row: Row) -> Vec<SuiteReport> {
        vec![SuiteReport {
            suite: "echo",
            rows: vec![row],
            dropped: Vec::new(),
        }]
    }

    #[test]
    fn advantage_must_hold_against_every_matching_peer() {
        let t = &TARGETS[4];
        assert_eq!(t.case, "echo 100 B x1,000 conns");
        let v = evaluate(t, &echo(echo_row(300.0, 100.0, 150.0)));
        assert_eq!(v.word(), "met");
        assert_eq!(
            v.detail(),
            "3.00x tokio multi-thread, 2.00x tokio current-thread per core"
        );
        let v = evaluate(t, &echo(echo_row(300.0, 100.0, 250.0)));
        assert_eq!(v.word(), "MISSED");
        assert_eq!(
            evaluate(&TARGETS[5], &echo(echo_row(1.0, 1.0, 1.0))).word(),
            "met"
        );
    }

    #[test]
    fn a_goal_beyond_the_device_limit_says_so() {
        let t = &TARGETS[2];
        assert_eq!(t.case, "durable-append 256 B x16");
        let row = |ours: f64, okaywal: f64, limit: f64| Row {
            suite: "wal",
            case: "durable-append 256 B x16".into(),
            metric: "records/s",
            higher_is_better: true,
            ours: summary(&[ours]),
            peers: vec![
                ("okaywal".into(), summary(&[okaywal])),
                ("fio fdatasync limit x batch".into(), summary(&[limit])),
            ],
            peers_not_run: Vec::new(),
            notes: Vec::new(),
            latency: Vec::new(),
            extra: Vec::new(),
            sweep: None,
        };
        let reports = |r: Row| {
            vec![SuiteReport {
                suite: "wal",
                rows: vec![r],
                dropped: Vec::new(),
            }]
        };
        let v = evaluate(t, &reports(row(40_000.0, 30_000.0, 70_000.0)));
        assert_eq!(v.word(), "MISSED");
        assert_eq!(
            v.detail(),
            "1.33x okaywal; the goal (90000 records/s) lies beyond fio fdatasync limit x \
             batch (70000), which bounds any implementation in this run"
        );
        let v = evaluate(t, &reports(row(40_000.0, 20_000.0, 70_000.0)));
        assert_eq!(v.detail(), "2.00x okaywal");
        // A "limit" ours exceeded was no bound in that run.
        let v = evaluate(t, &reports(row(80_000.0, 30_000.0, 70_000.0)));
        assert_eq!(v.detail(), "2.67x okaywal");
        let v = evaluate(t, &reports(row(95_000.0, 30_000.0, 70_000.0)));
        assert_eq!((v.word(), v.detail()), ("met", "3.17x okaywal"));
    }

    #[test]
    fn unmeasured_targets_say_why() {
        let v = evaluate(&TARGETS[0], &echo(echo_row(1.0, 1.0, 1.0)));
        assert_eq!(v, Verdict::NotMeasured("the pool suite did not run".into()));
        let reports = vec![SuiteReport {
            suite: "echo",
            rows: Vec::new(),
            dropped: vec![Dropped {
                case: "echo 100 B x1,000 conns".into(),
                reason: "RLIMIT_NOFILE".into(),
            }],
        }];
        assert_eq!(
            evaluate(&TARGETS[4], &reports),
            Verdict::NotMeasured("RLIMIT_NOFILE".into())
        );
        let mut r = echo_row(1.0, 1.0, 1.0);
        r.peers.clear();
        r.peers_not_run
            .push(("tokio multi-thread".into(), "failed".into()));
        assert_eq!(
            evaluate(&TARGETS[4], &echo(r)).detail(),
            "tokio multi-thread not run: failed"
        );
    }

    #[test]
    fn lower_is_better_targets() {
        let row = Row {
            suite: "pool",
            case: "alloc+free 4 KiB".into(),
            metric: "ns/pair",
            higher_is_better: false,
            ours: summary(&[5.0]),
            peers: vec![(
                "std allocator (Vec::with_capacity + drop)".into(),
                summary(&[30.0]),
            )],
            peers_not_run: Vec::new(),
            notes: Vec::new(),
            latency: Vec::new(),
            extra: Vec::new(),
            sweep: None,
        };
        let reports = vec![SuiteReport {
            suite: "pool",
            rows: vec![row],
            dropped: Vec::new(),
        }];
        assert_eq!(evaluate(&TARGETS[0], &reports).word(), "met");
        assert_eq!(evaluate(&TARGETS[1], &reports).detail(), "5.00 ns/pair");
    }
}
