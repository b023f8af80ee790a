//! Repeated trials and their summary: the median, the quartiles and the extremes.
//!
//! One trial is one timed measurement that yields one number (say, nanoseconds per
//! alloc+free pair). A case runs several trials, interleaving ours and the peers so that
//! the noise of a shared machine falls on every side alike, and reports the median with
//! the spread around it.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The numbers one side of a case produced, one per trial, in the order they ran.
#[derive(Clone, Debug, Default)]
pub struct Trials {
    values: Vec<f64>,
}

impl Trials {
    /// No trials yet.
    pub fn new() -> Trials {
        Trials::default()
    }

    /// Records one trial's result.
    pub fn push(&mut self, value: f64) {
        debug_assert!(value.is_finite(), "a trial produced {value}");
        self.values.push(value);
    }

    /// The median and the spread, or `None` when no trial ran.
    pub fn summary(&self) -> Option<Summary> {
        if self.values.is_empty() {
            return None;
        }
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            trials: v.len(),
            min: v[0],
            p25: quantile(&v, 0.25),
            median: quantile(&v, 0.5),
            p75: quantile(&v, 0.75),
            max: v[v.len() - 1],
        })
    }
}

/// The median of a set of trials and the spread around it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many trials the figures come from.
    pub trials: usize,
    /// The smallest trial.
    pub min: f64,
    /// The 25th percentile (linear interpolation between trials).
    pub p25: f64,
    /// The median: the figure reported as `ours` or as a peer's number.
    pub median: f64,
    /// The 75th percentile.
    pub p75: f64,
    /// The largest trial.
    pub max: f64,
}

/// Latency percentiles from an HDR histogram of nanoseconds, given in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    /// The median, in microseconds.
    pub p50_us: f64,
    /// The 99th percentile, in microseconds.
    pub p99_us: f64,
    /// The 99.9th percentile, in microseconds.
    pub p999_us: f64,
    /// The largest sample, in microseconds.
    pub max_us: f64,
    /// How many samples the percentiles come from.
    pub samples: u64,
}

/// A histogram of nanoseconds from 1 ns to 100 s with three significant digits: what every
/// latency in the harness is recorded into.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("the bounds are valid")
}

impl Latency {
    /// The percentiles of `h` (nanoseconds), or `None` when it holds no sample.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            samples: h.len(),
        })
    }
}

/// The `q` quantile of sorted, non-empty `v`, interpolating linearly between neighbours.
fn quantile(v: &[f64], q: f64) -> f64 {
    debug_assert!(!v.is_empty() && (0.0..=1.0).contains(&q));
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_median_is_the_middle_trial() {
        let mut t = Trials::new();
        for x in [5.0, 1.0, 3.0, 2.0, 4.0] {
            t.push(x);
        }
        let s = t.summary().unwrap();
        assert_eq!(
            (s.min, s.p25, s.median, s.p75, s.max),
            (1.0, 2.0, 3.0, 4.0, 5.0)
        );
        assert_eq!(s.trials, 5);
    }

    #[test]
    fn even_count_interpolates() {
        let mut t = Trials::new();
        for x in [1.0, 2.0, 3.0, 4.0] {
            t.push(x);
        }
        assert_eq!(t.summary().unwrap().median, 2.5);
    }

    #[test]
    fn latency_from_a_histogram() {
        let mut h = latency_histogram();
        assert!(Latency::from_histogram(&h).is_none());
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap();
        }
        let l = Latency::from_histogram(&h).unwrap();
        assert_eq!(l.samples, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 1.0, "{l:?}");
        assert!(l.p999_us <= l.max_us);
    }

    #[test]
    fn one_trial_is_its_own_spread() {
        let mut t = Trials::new();
        t.push(7.0);
        let s = t.summary().unwrap();
        assert_eq!((s.min, s.median, s.max), (7.0, 7.0, 7.0));
        assert!(Trials::new().summary().is_none());
    }
}
