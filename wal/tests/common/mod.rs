//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod sim;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringfort-wal-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deterministic payload for `lsn`-th record of writer `w`.
pub fn payload(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(2654435761) as usize).wrapping_add(i * 13) as u8)
        .collect()
}

/// Small sizes so tests rotate segments and span blocks quickly.
pub fn small_config() -> ringfort_wal::WalConfig {
    ringfort_wal::WalConfig {
        segment_size: 256 << 10,
        block_size: 8 << 10,
        batch_bytes: 16 << 10,
        max_record: 64 << 10,
        max_batch_records: 64,
        max_batches: 4,
        max_waiters: 64,
        ..ringfort_wal::WalConfig::default()
    }
}

/// Proptest cases: `PROPTEST_CASES` if set, else `ci` under `CI=true`, else `local`.
pub fn cases(local: u32, ci: u32) -> u32 {
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        ci
    } else {
        local
    }
}
