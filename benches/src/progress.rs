//! Progress on stderr, so a long run shows it is alive without touching the table on stdout.

use std::io::Write as _;
use std::time::Instant;

/// One case in progress: a line that grows one dot per trial and ends with the time taken.
pub struct Progress {
    start: Instant,
}

impl Progress {
    /// Starts the line `[suite] case: N trials `.
    pub fn start(suite: &str, case: &str, trials: usize) -> Progress {
        eprint!("[{suite}] {case}: {trials} trial(s) ");
        let _ = std::io::stderr().flush();
        Progress {
            start: Instant::now(),
        }
    }

    /// Marks one trial (of every side) done.
    pub fn trial(&self) {
        eprint!(".");
        let _ = std::io::stderr().flush();
    }

    /// Ends the line with the time the case took.
    pub fn finish(self) {
        eprintln!(" done in {:.1} s", self.start.elapsed().as_secs_f64());
    }
}

/// A one-off progress line: `[suite] message`.
pub fn say(suite: &str, msg: &str) {
    eprintln!("[{suite}] {msg}");
}
