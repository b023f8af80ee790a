//! The engine's errors. Each start-up error names its cause and its remedy.

use crate::probe::ProbeError;

/// Everything that can stop the engine from starting or an operation from being queued.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is inconsistent; the text names the field.
    #[error("invalid engine config: {0}")]
    Config(String),
    /// The kernel lacks something the engine needs, or forbids io_uring.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The buffer pool could not be set up (memlock, hugepages, NUMA, config).
    #[error("buffer pool: {0}")]
    Pool(#[from] ringfort_pool::PoolError),
    /// A system call failed during setup; `what` says which step.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection does not exist (any more).
    #[error("no such connection")]
    NoConn,
    /// A bound was reached; the text names it and what to raise.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// A write-ahead log refused or failed.
    #[error("write-ahead log: {0}")]
    Wal(#[from] ringfort_wal::WalError),
    /// The engine is stopping and takes no new work.
    #[error("the engine is stopping")]
    Stopping,
    /// A core thread panicked or failed; the text says which and why.
    #[error("core {core} failed: {why}")]
    Core {
        /// The core index.
        core: usize,
        /// What went wrong.
        why: String,
    },
}

impl EngineError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> EngineError {
        EngineError::Io {
            what: what.into(),
            source,
        }
    }
}
