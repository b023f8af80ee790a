//! fio as a peer: the device's limits, measured by fio's io_uring engine on the same file
//! system in the same run. The bench never installs fio; when it is missing, the peers
//! that need it are left out with the reason `fio not installed: apt-get install -y fio`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Why a fio peer is missing when fio is not on `PATH`.
pub const NOT_INSTALLED: &str = "fio not installed: apt-get install -y fio";

/// A usable fio binary.
#[derive(Clone, Debug)]
pub struct Fio {
    /// `fio --version`, e.g. `fio-3.33`.
    pub version: String,
}

impl Fio {
    /// Finds fio on `PATH`, or says why it cannot be used.
    pub fn find() -> Result<Fio, String> {
        match Command::new("fio").arg("--version").output() {
            Ok(out) if out.status.success() => Ok(Fio {
                version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            }),
            Ok(out) => Err(format!(
                "`fio --version` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NOT_INSTALLED.to_string()),
            Err(e) => Err(format!("running fio: {e}")),
        }
    }
}

/// One sequential-write fio job with the io_uring engine.
#[derive(Clone, Debug)]
pub struct Job {
    /// Block size of each write.
    pub bs: usize,
    /// `--direct=1` (O_DIRECT) instead of buffered writes.
    pub direct: bool,
    /// `--fdatasync=1`: an fdatasync after every write.
    pub fdatasync: bool,
    /// Writes in flight (`--iodepth`).
    pub iodepth: u32,
    /// File size; the file is removed after the run.
    pub size: u64,
    /// `--overwrite=1`: fio writes the whole file before the run, so the measured writes
    /// overwrite written blocks (as the WAL's zero-filled segments do); otherwise the file
    /// is fallocated (unwritten extents, converted as they are written).
    pub overwrite: bool,
    /// Not measured, before the run (`--ramp_time`).
    pub ramp: Duration,
    /// Measured (`--runtime`, time based).
    pub runtime: Duration,
}

impl Job {
    /// The fio command line, for the table notes.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "fio --ioengine=io_uring --rw=write --bs={} --iodepth={} --size={}",
            self.bs, self.iodepth, self.size
        );
        if self.direct {
            s.push_str(" --direct=1");
        }
        if self.fdatasync {
            s.push_str(" --fdatasync=1");
        }
        if self.overwrite {
            s.push_str(" --overwrite=1");
        }
        s.push_str(&format!(
            " --ramp_time={}ms --runtime={}ms --time_based",
            self.ramp.as_millis(),
            self.runtime.as_millis()
        ));
        s
    }
}

/// What one fio run measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Writes per second (with `fdatasync`, also syncs per second).
    pub iops: f64,
    /// Bytes written per second.
    pub bytes_per_sec: f64,
}

/// Runs `job` with its file in `dir`, and removes the file afterwards.
pub fn run(_fio: &Fio, dir: &Path, job: &Job) -> Result<Outcome, String> {
    let file: PathBuf = dir.join(format!("fio-{}.dat", std::process::id()));
    let out = Command::new("fio")
        .arg("--name=ringfort-bench")
        .arg(format!("--filename={}", file.display()))
        .arg("--ioengine=io_uring")
        .arg("--rw=write")
        .arg(format!("--bs={}", job.bs))
        .arg(format!("--iodepth={}", job.iodepth))
        .arg(format!("--size={}", job.size))
        .arg(format!("--direct={}", u8::from(job.direct)))
        .arg(format!("--fdatasync={}", u8::from(job.fdatasync)))
        .arg(format!("--overwrite={}", u8::from(job.overwrite)))
        .arg(format!("--ramp_time={}ms", job.ramp.as_millis()))
        .arg(format!("--runtime={}ms", job.runtime.as_millis()))
        .arg("--time_based")
        .arg("--output-format=json")
        .output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| format!("running fio: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "fio failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Reads write IOPS and bandwidth from fio's JSON output (which may be preceded by
/// warnings).
fn parse(text: &str) -> Result<Outcome, String> {
    let start = text
        .find('{')
        .ok_or_else(|| format!("fio printed no JSON: {}", text.trim()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text[start..]).map_err(|e| format!("fio's JSON: {e}"))?;
    let w = &v["jobs"][0]["write"];
    let iops = w["iops"]
        .as_f64()
        .ok_or("fio's JSON has no jobs[0].write.iops")?;
    let bytes_per_sec = w["bw_bytes"]
        .as_f64()
        .ok_or("fio's JSON has no jobs[0].write.bw_bytes")?;
    if iops <= 0.0 {
        return Err(format!("fio measured {iops} writes/s"));
    }
    Ok(Outcome {
        iops,
        bytes_per_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_json_after_warnings() {
        let text = "fio: some warning\n{\"jobs\": [{\"write\": {\"iops\": 350.5, \
                    \"bw_bytes\": 1435648}}]}";
        let o = parse(text).unwrap();
        assert_eq!(o.iops, 350.5);
        assert_eq!(o.bytes_per_sec, 1435648.0);
        assert!(parse("no json").is_err());
    }
}
