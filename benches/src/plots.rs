//! The report's plots, as SVG files (plotters' SVG backend; text is left to the viewer's
//! fonts).
//!
//! Three plots are sweeps: rows tagged with a [`Sweep`](crate::report::Sweep) of the plot give one point per side
//! (ours and each peer), at the swept value, with the median as the point and the trials'
//! p25..p75 as a vertical bar. Both axes are logarithmic, so an equal ratio is an equal
//! distance anywhere on the plot. A physical limit measured in the same run is drawn as a
//! dashed line where one applies. The fourth plot draws the latency percentiles (p50, p99,
//! p999) of a few echo and RESP rows, one panel per row.
//!
//! A plot with nothing to draw is not written, and an older file of the same name is
//! removed, so a report never shows a stale plot.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::limits::{self, Limits};
use crate::report::{Row, SuiteReport};
use crate::stats::Latency;

/// Echo messages/s against connections: ours and tokio.
pub const ECHO_CONNS: &str = "echo-throughput-vs-connections";
/// Durable SET -P1 requests/s against clients: ours and redis-server appendfsync always.
pub const DURABLE_CLIENTS: &str = "durable-set-vs-clients";
/// WAL durable-append MB/s against record size: ours, okaywal and fio.
pub const WAL_SIZES: &str = "wal-throughput-vs-record-size";
/// Latency percentiles of echo and RESP rows.
pub const LATENCY: &str = "latency-percentiles";

/// The rows the latency plot draws, one panel each: (suite, case).
const LATENCY_ROWS: [(&str, &str); 6] = [
    ("echo", "echo 100 B x50 conns"),
    ("echo", "echo 100 B x1,000 conns"),
    ("echo", "echo 4 KiB x1,000 conns"),
    ("resp", "SET -P1 64 B"),
    ("resp", "GET -P1 64 B"),
    ("resp", "durable SET -P1 64 B"),
];

/// One sweep plot.
struct SweepSpec {
    id: &'static str,
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    x_fmt: fn(f64) -> String,
    /// The x axis's logarithm base: 2 puts its marks on powers of two (record sizes).
    x_base: f64,
    /// A limit drawn as a dashed line: its name, and the factor into the plot's unit.
    reference: Option<(&'static str, f64)>,
    /// Where the legend goes, away from the lines.
    legend: SeriesLabelPosition,
}

const SWEEPS: [SweepSpec; 3] = [
    SweepSpec {
        id: ECHO_CONNS,
        title: "echo 100 B: messages/s against connections",
        x_desc: "connections (log)",
        y_desc: "messages/s (log)",
        x_fmt: count,
        x_base: 10.0,
        reference: None,
        legend: SeriesLabelPosition::LowerRight,
    },
    SweepSpec {
        id: DURABLE_CLIENTS,
        title: "durable SET -P1 64 B: requests/s against clients",
        x_desc: "redis-benchmark clients (log)",
        y_desc: "acknowledged SETs/s (log)",
        x_fmt: count,
        x_base: 10.0,
        reference: Some((limits::FIO_SYNC, 1.0)),
        legend: SeriesLabelPosition::LowerRight,
    },
    SweepSpec {
        id: WAL_SIZES,
        title: "WAL durable appends, 16 writers: MB/s against record size",
        x_desc: "record size (log)",
        y_desc: "payload MB/s (log)",
        x_fmt: bytes,
        x_base: 2.0,
        reference: Some((limits::FIO_DIRECT, 1.0)),
        legend: SeriesLabelPosition::UpperLeft,
    },
];

/// What happened to one plot.
#[derive(Clone, Debug)]
pub struct Written {
    /// The plot's file stem.
    pub id: &'static str,
    /// What it shows.
    pub title: &'static str,
    /// The file written, or why none was.
    pub outcome: Result<PathBuf, String>,
}

/// Draws every plot into `dir`.
pub fn write_all(dir: &Path, reports: &[SuiteReport], limits: &Limits) -> Vec<Written> {
    let rows: Vec<&Row> = reports.iter().flat_map(|r| r.rows.iter()).collect();
    let mut out = Vec::new();
    for spec in &SWEEPS {
        let path = dir.join(format!("{}.svg", spec.id));
        let outcome = sweep_plot(&path, spec, &rows, limits);
        out.push(finish(spec.id, spec.title, path, outcome));
    }
    let path = dir.join(format!("{LATENCY}.svg"));
    let outcome = latency_plot(&path, &rows);
    out.push(finish(
        LATENCY,
        "latency percentiles, echo and RESP",
        path,
        outcome,
    ));
    out
}

fn finish(
    id: &'static str,
    title: &'static str,
    path: PathBuf,
    outcome: Result<(), String>,
) -> Written {
    if outcome.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    Written {
        id,
        title,
        outcome: outcome.map(|()| path),
    }
}

/// `1000` as `1k`.
fn count(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

/// `65536` as `64 KiB`.
fn bytes(v: f64) -> String {
    if v >= (1 << 20) as f64 {
        format!("{} MiB", trim(v / (1 << 20) as f64))
    } else if v >= 1024.0 {
        format!("{} KiB", trim(v / 1024.0))
    } else {
        format!("{} B", trim(v))
    }
}

/// A figure for an axis: whole numbers without decimals, large ones with a suffix.
fn figure(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The colour of the `i`-th side: ours first, in red.
fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(200, 30, 30),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(110, 110, 110),
    ];
    C[i % C.len()]
}

/// One side's points: (x, median, p25, p75) in the plot's unit, by increasing x.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    name: String,
    points: Vec<(f64, f64, f64, f64)>,
}

/// The series of the rows swept in plot `id`: ours first, then each peer as first seen.
fn sweep_series(id: &str, rows: &[&Row]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for r in rows {
        let Some(sw) = r.sweep.filter(|s| s.plot == id) else {
            continue;
        };
        let sides =
            std::iter::once(("ours", &r.ours)).chain(r.peers.iter().map(|(n, s)| (n.as_str(), s)));
        for (name, s) in sides {
            let p = (
                sw.x,
                s.median * sw.y_scale,
                s.p25 * sw.y_scale,
                s.p75 * sw.y_scale,
            );
            if !(p.0 > 0.0 && p.1 > 0.0 && p.2 > 0.0) {
                continue;
            }
            match out.iter_mut().find(|x| x.name == name) {
                Some(series) => series.points.push(p),
                None => out.push(Series {
                    name: name.to_string(),
                    points: vec![p],
                }),
            }
        }
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// A log axis range around `lo..hi`, with some room.
fn log_range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    (lo / 1.6)..(hi * 1.6)
}

/// A log axis range from the power of ten below `lo` to the one above `hi`, with some
/// room, so that the axis always has labelled decades.
fn decades(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let down = 10f64.powf((lo / 1.3).log10().floor());
    let up = 10f64.powf((hi * 1.3).log10().ceil());
    down..up
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn sweep_plot(path: &Path, spec: &SweepSpec, rows: &[&Row], limits: &Limits) -> Result<(), String> {
    let series = sweep_series(spec.id, rows);
    if series.is_empty() {
        return Err("no row of this sweep was measured".into());
    }
    let reference = spec.reference.and_then(|(name, scale)| {
        let s = limits.get(name)?;
        let unit = limits
            .0
            .iter()
            .find(|l| l.name == name)
            .map_or("", |l| l.unit);
        Some((
            format!("{name}: {} {unit} (same run)", figure(s.median)),
            s.median * scale,
        ))
    });
    draw_sweep(path, spec, &series, reference.as_ref()).map_err(|e| format!("drawing: {e}"))
}

fn draw_sweep(
    path: &Path,
    spec: &SweepSpec,
    series: &[Series],
    reference: Option<&(String, f64)>,
) -> DrawResult {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.1, p.2, p.3]))
        .chain(reference.map(|r| r.1));
    let (x0, x1) = bounds(xs);
    let (y0, y1) = bounds(ys);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            log_range(x0, x1).log_scale().base(spec.x_base),
            decades(y0, y1).log_scale(),
        )?;
    let x_fmt = spec.x_fmt;
    chart
        .configure_mesh()
        .x_desc(spec.x_desc)
        .y_desc(spec.y_desc)
        .x_label_formatter(&|v| x_fmt(*v))
        .y_label_formatter(&|v| figure(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        let line = c.stroke_width(2);
        chart
            .draw_series(LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), line))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], line));
        chart.draw_series(
            s.points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 4, c.filled())),
        )?;
        chart.draw_series(
            s.points
                .iter()
                .filter(|p| p.3 > p.2)
                .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], c.stroke_width(1))),
        )?;
    }
    if let Some((label, v)) = reference {
        let style = BLACK.stroke_width(1);
        let (a, b) = (x0 / 1.6, x1 * 1.6);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(a, *v), (b, *v)],
                6u32,
                4u32,
                style,
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    chart
        .configure_series_labels()
        .position(spec.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The smallest and largest of `vs` (positive values only); (1, 10) when there are none.
fn bounds(vs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vs
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() {
        (lo, hi)
    } else {
        (1.0, 10.0)
    }
}

// ---------------------------------------------------------------------------------------
// Latency

const PERCENTILES: [&str; 3] = ["p50", "p99", "p999"];

/// A panel: its case and every side's percentiles.
type Panel<'a> = (&'a str, &'a [(String, Latency)]);

fn latency_plot(path: &Path, rows: &[&Row]) -> Result<(), String> {
    let panels: Vec<Panel> = LATENCY_ROWS
        .iter()
        .filter_map(|(suite, case)| {
            rows.iter()
                .find(|r| r.suite == *suite && r.case == *case && !r.latency.is_empty())
                .map(|r| (r.case.as_str(), r.latency.as_slice()))
        })
        .collect();
    if panels.is_empty() {
        return Err("no echo or RESP row with latency was measured".into());
    }
    draw_latency(path, &panels).map_err(|e| format!("drawing: {e}"))
}

fn draw_latency(path: &Path, panels: &[Panel]) -> DrawResult {
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let root =
        SVGBackend::new(path, (400 * cols as u32, 40 + 330 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.titled(
        "latency percentiles, microseconds (HDR histograms, log scale)",
        ("sans-serif", 20),
    )?;
    for (area, panel) in body.split_evenly((rows, cols)).iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(area: &DrawingArea<SVGBackend, Shift>, (case, sides): &Panel) -> DrawResult {
    let (y0, y1) = bounds(sides.iter().flat_map(|(_, l)| [l.p50_us, l.p999_us]));
    let mut chart = ChartBuilder::on(area)
        .caption(*case, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.4f64..2.4f64, decades(y0, y1).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(3)
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && (0.0..3.0).contains(&i) {
                PERCENTILES[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| figure(*v))
        .disable_x_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, (name, l)) in sides.iter().enumerate() {
        let c = colour(i);
        let line = c.stroke_width(2);
        let pts = [(0.0, l.p50_us), (1.0, l.p99_us), (2.0, l.p999_us)];
        chart
            .draw_series(LineSeries::new(pts, line))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::summary;
    use crate::report::{Row, Sweep};

    fn row(suite: &'static str, case: &str, sweep: Option<Sweep>, ours: f64, peer: f64) -> Row {
        Row {
            suite,
            case: case.into(),
            metric: "msgs/s",
            higher_is_better: true,
            ours: summary(&[ours * 0.9, ours, ours * 1.1]),
            peers: vec![("tokio".into(), summary(&[peer]))],
            peers_not_run: Vec::new(),
            notes: Vec::new(),
            latency: vec![(
                "ours".into(),
                Latency {
                    p50_us: 10.0,
                    p99_us: 50.0,
                    p999_us: 90.0,
                    max_us: 100.0,
                    samples: 1000,
                },
            )],
            extra: Vec::new(),
            sweep,
        }
    }

    fn at(plot: &'static str, x: f64, y_scale: f64) -> Option<Sweep> {
        Some(Sweep { plot, x, y_scale })
    }

    #[test]
    fn sweep_series_are_per_side_and_sorted() {
        let rows = [
            row("echo", "b", at(ECHO_CONNS, 1000.0, 1.0), 300.0, 200.0),
            row("echo", "a", at(ECHO_CONNS, 10.0, 1.0), 100.0, 50.0),
            row("echo", "c", at(WAL_SIZES, 10.0, 1.0), 1.0, 1.0),
            row("echo", "d", None, 1.0, 1.0),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let s = sweep_series(ECHO_CONNS, &refs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "ours");
        assert_eq!(
            s[0].points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            [(10.0, 100.0), (1000.0, 300.0)]
        );
        assert_eq!(s[1].name, "tokio");
        assert!(sweep_series(DURABLE_CLIENTS, &refs).is_empty());
    }

    #[test]
    fn y_scale_turns_records_into_megabytes() {
        let rows = [row(
            "wal",
            "a",
            at(WAL_SIZES, 4096.0, 4096.0 / 1e6),
            1e4,
            1e3,
        )];
        let refs: Vec<&Row> = rows.iter().collect();
        let s = sweep_series(WAL_SIZES, &refs);
        assert!((s[0].points[0].1 - 40.96).abs() < 1e-9);
    }

    #[test]
    fn writes_svgs_and_removes_stale_ones() {
        let dir = std::env::temp_dir().join(format!("ringfort-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join(format!("{DURABLE_CLIENTS}.svg"));
        std::fs::write(&stale, "old").unwrap();
        let reports = [SuiteReport {
            suite: "echo",
            rows: vec![
                row(
                    "echo",
                    "echo 100 B x50 conns",
                    at(ECHO_CONNS, 50.0, 1.0),
                    2e5,
                    1e5,
                ),
                row(
                    "echo",
                    "echo 100 B x1,000 conns",
                    at(ECHO_CONNS, 1e3, 1.0),
                    3e5,
                    2e5,
                ),
            ],
            dropped: Vec::new(),
        }];
        let written = write_all(&dir, &reports, &crate::report::tests::limits());
        let echo = written.iter().find(|w| w.id == ECHO_CONNS).unwrap();
        let svg = std::fs::read_to_string(echo.outcome.as_ref().unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("tokio") && svg.contains("ours"));
        let lat = written.iter().find(|w| w.id == LATENCY).unwrap();
        let svg = std::fs::read_to_string(lat.outcome.as_ref().unwrap()).unwrap();
        assert!(svg.contains("p999") && svg.contains("echo 100 B x1,000 conns"));
        let durable = written.iter().find(|w| w.id == DURABLE_CLIENTS).unwrap();
        assert!(durable.outcome.is_err());
        assert!(
            !stale.exists(),
            "a plot that cannot be drawn leaves no stale file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn decades_hold_the_values() {
        assert_eq!(decades(5_000.0, 60_000.0), 1_000.0..100_000.0);
        assert_eq!(decades(1_000.0, 1_000.0), 100.0..10_000.0);
    }

    #[test]
    fn axis_labels() {
        assert_eq!(bytes(65536.0), "64 KiB");
        assert_eq!(bytes(1048576.0), "1 MiB");
        assert_eq!(bytes(128.0), "128 B");
        assert_eq!(count(1000.0), "1k");
        assert_eq!(figure(1_500_000.0), "1.5M");
        assert_eq!(figure(0.25), "0.25");
    }
}
