//! The peers that are programs on the machine, not crates built into the bench: found by
//! name, never installed. When one is missing, the harness names it and the exact
//! `apt-get` line, and the rows that need it are reported as not measured.

use std::process::{Command, Stdio};

/// A peer program and the Debian package that brings it.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// The binary's name on `PATH`.
    pub bin: &'static str,
    /// The package to install.
    pub package: &'static str,
    /// What needs it, for the message when it is missing.
    pub needed_by: &'static str,
}

/// The RESP suite's peer server.
pub const REDIS_SERVER: Program = Program {
    bin: "redis-server",
    package: "redis-server",
    needed_by: "the resp suite's redis-server columns",
};
/// The RESP suite's load generator, for every server.
pub const REDIS_BENCHMARK: Program = Program {
    bin: "redis-benchmark",
    package: "redis-tools",
    needed_by: "every resp row (it is the load generator)",
};
/// The device's limits for the WAL suite and the physical limits.
pub const FIO: Program = Program {
    bin: "fio",
    package: "fio",
    needed_by: "the wal suite's fio columns and the fio limits",
};

/// Every peer program, in the order they are reported.
pub const PROGRAMS: [Program; 3] = [REDIS_SERVER, REDIS_BENCHMARK, FIO];

/// `BIN --version`'s first line, or why the program cannot run (with the install command
/// when it is missing).
pub fn version_of(p: &Program) -> Result<String, String> {
    match Command::new(p.bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()),
        Ok(out) => Err(format!(
            "`{} --version` failed ({}): {}",
            p.bin,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{} not installed: apt-get install -y {}",
            p.bin, p.package
        )),
        Err(e) => Err(format!("running {}: {e}", p.bin)),
    }
}

/// One peer program as found on this machine.
#[derive(Clone, Debug)]
pub struct Found {
    /// The program.
    pub program: Program,
    /// Its version line, or why it cannot run.
    pub version: Result<String, String>,
}

/// Looks for every peer program.
pub fn check() -> Vec<Found> {
    PROGRAMS
        .iter()
        .map(|&program| Found {
            program,
            version: version_of(&program),
        })
        .collect()
}

/// The one `apt-get` line that installs every missing program, when any is missing.
pub fn install_line(found: &[Found]) -> Option<String> {
    let mut packages: Vec<&str> = found
        .iter()
        .filter(|f| f.version.is_err())
        .map(|f| f.program.package)
        .collect();
    packages.dedup();
    (!packages.is_empty()).then(|| format!("apt-get install -y {}", packages.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let p = Program {
            bin: "ringfort-no-such-program",
            package: "ringfort-no-such-package",
            needed_by: "a test",
        };
        let e = version_of(&p).unwrap_err();
        assert_eq!(
            e,
            "ringfort-no-such-program not installed: apt-get install -y ringfort-no-such-package"
        );
        let found = [
            Found {
                program: p,
                version: Err(e),
            },
            Found {
                program: FIO,
                version: Ok("fio-3.33".into()),
            },
        ];
        assert_eq!(
            install_line(&found).as_deref(),
            Some("apt-get install -y ringfort-no-such-package")
        );
        assert_eq!(install_line(&found[1..]), None);
    }
}
