//! Configuration: sizes, bounds, durability, the sync method and the recovery mode, with
//! the checks that keep them consistent.

use crate::format::{FRAME_HEADER_LEN, PAGE, SEGMENT_HEADER_LEN};
use crate::recovery::RecoveryMode;
use crate::WalError;

/// The largest `max_record` accepted (1 GiB).
pub const MAX_RECORD_LIMIT: usize = 1 << 30;
/// The largest segment accepted, header included (1 GiB plus the header page). Recovery
/// holds at most two segment images in memory, so this bounds its memory.
pub const MAX_SEGMENT_LIMIT: u64 = (1 << 30) + SEGMENT_HEADER_LEN as u64;
/// The most batches a core may hold at once (`max_batches`).
pub const MAX_BATCHES_LIMIT: usize = 64;
/// The most records one batch may hold (`max_batch_records`).
pub const MAX_BATCH_RECORDS_LIMIT: usize = 1 << 20;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After the record's batch is written and synced to the device. The default.
    #[default]
    Sync,
    /// After the record's batch is written (it is in the page cache, or on the device with
    /// `direct_io`); a power loss can still lose it.
    Buffered,
    /// At once; the batch is written in the background. A crash can lose it, and a write
    /// failure is reported by the next call on the handle.
    None,
}

/// How [`Durability::Sync`] makes a batch durable. See the crate docs for the
/// measurements behind the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMethod {
    /// A plain write, then `fdatasync`; one sync can cover several coalesced batches. The
    /// default.
    #[default]
    Fdatasync,
    /// A write with `RWF_DSYNC` (per-write `O_DSYNC`): one system call, no separate sync.
    Dsync,
}

/// The whole configuration of a log. [`WalConfig::default`] gives the documented
/// defaults; [`WalConfig::validate`] says what is wrong with a bad one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Bytes per segment file, header included; a multiple of 4 KiB. Segments are
    /// preallocated to this size and rotated when the next batch would not fit.
    pub segment_size: u64,
    /// Bytes per pool block that batches are built in; a multiple of 4 KiB from 8 KiB to
    /// 16 MiB. A record larger than one block spans several, as `First`/`Middle`/`Last`
    /// frames.
    pub block_size: usize,
    /// A batch is sealed once it holds this many bytes (or on an explicit flush).
    pub batch_bytes: usize,
    /// The largest record accepted; a larger one is refused with
    /// [`WalError::RecordTooLarge`].
    pub max_record: usize,
    /// A batch is sealed once it holds this many records.
    pub max_batch_records: usize,
    /// The most batches that exist at once: the one being filled plus those sealed or in
    /// flight. At the bound, appends get [`WalError::Full`] (the blocking driver makes
    /// them wait).
    pub max_batches: usize,
    /// When appends are acknowledged.
    pub durability: Durability,
    /// How `Sync` durability syncs.
    pub sync_method: SyncMethod,
    /// What recovery does with damage when the log is opened.
    pub recovery: RecoveryMode,
    /// Write segments with `O_DIRECT` (falls back to buffered writes, with a warning,
    /// where the file system refuses it). On by default: the crate docs have the
    /// measurements. Turn it off with [`Durability::Buffered`] or [`Durability::None`]
    /// when bursts should land in the page cache rather than wait for the device.
    pub direct_io: bool,
    /// Segments removed by `truncate_prefix` kept as spares (up to this many) and reused
    /// for new segments instead of creating and preallocating files. Stale bytes in a
    /// reused file never validate: every frame's CRC is bound to the segment signature.
    pub recycle_segments: usize,
    /// Blocking driver: the most appenders that can wait for durability at once; more wait
    /// for a free slot first.
    pub max_waiters: usize,
    /// Blocking driver: the most groups whose `fdatasync` runs at once, each on its own
    /// syncer thread, while the next group is gathered and written; 1 syncs one group at
    /// a time. Each group holds a batch and one is being filled, so at most
    /// `max_batches - 1` are used.
    pub syncs_in_flight: usize,
    /// Zero-filled spare segments kept ready (0 to 4). A new segment takes one, and its
    /// writes then overwrite written blocks: on ext4 an `fdatasync` after overwriting has
    /// no extent conversion to commit, which took this machine from 6.7 k to 11.6 k syncs/s
    /// (fio, 4 KiB writes). Spares are built off the append path: the blocking driver
    /// builds the first before `open` returns, the engine's driver in the background;
    /// after that, one when a segment is half written, if its mean group is at most
    /// [`ZERO_FILL_MAX_GROUP`](crate::segment::ZERO_FILL_MAX_GROUP) (for larger groups
    /// bandwidth bounds the log, and zeroing would write it twice). Costs `segment_size` of
    /// disk per spare.
    pub zeroed_spares: usize,
}

impl Default for WalConfig {
    /// 64 MiB segments, 256 KiB blocks, 1 MiB batches, 8 MiB records, 4096 records and
    /// 4 batches, `Sync` durability with `fdatasync`, tolerate a corrupted tail, `O_DIRECT`
    /// writes, no recycling, 4096 waiters, 2 syncs in flight, 1 zero-filled spare.
    fn default() -> Self {
        WalConfig {
            segment_size: 64 << 20,
            block_size: 256 << 10,
            batch_bytes: 1 << 20,
            max_record: 8 << 20,
            max_batch_records: 4096,
            max_batches: 4,
            durability: Durability::Sync,
            sync_method: SyncMethod::Fdatasync,
            recovery: RecoveryMode::TolerateCorruptedTail,
            direct_io: true,
            recycle_segments: 0,
            max_waiters: 4096,
            syncs_in_flight: 2,
            zeroed_spares: 1,
        }
    }
}

/// Bounds derived from a valid configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub block: usize,
    pub batch_bytes: usize,
    pub max_record: usize,
    pub max_batch_records: usize,
    pub max_batches: usize,
    /// Blocks one batch can need: a batch just short of `batch_bytes` plus a record of
    /// `max_record`.
    pub max_batch_blocks: usize,
    /// Frames one batch can hold.
    pub max_frames: usize,
    /// Blocks kept in the reserve between batches.
    pub keep_blocks: usize,
    pub segment_size: u64,
}

impl WalConfig {
    /// Checks the configuration; the error names the field.
    pub fn validate(&self) -> Result<(), WalError> {
        self.limits().map(|_| ())
    }

    /// The most pool blocks one sealed batch can span (a batch just short of
    /// `batch_bytes` plus a record of `max_record`): a driver that writes one block per
    /// operation sizes its submission queue from this.
    pub fn max_batch_blocks(&self) -> Result<usize, WalError> {
        self.limits().map(|l| l.max_batch_blocks)
    }

    pub(crate) fn limits(&self) -> Result<Limits, WalError> {
        let bad = |m: String| Err(WalError::Config(m));
        if self.block_size % PAGE != 0 || !(2 * PAGE..=16 << 20).contains(&self.block_size) {
            return bad(format!(
                "block_size {} must be a multiple of 4096 from 8 KiB to 16 MiB",
                self.block_size
            ));
        }
        if !(PAGE..=256 << 20).contains(&self.batch_bytes) {
            return bad(format!(
                "batch_bytes {} must be from 4 KiB to 256 MiB",
                self.batch_bytes
            ));
        }
        if self.max_record > MAX_RECORD_LIMIT {
            return bad(format!(
                "max_record {} exceeds the limit of {MAX_RECORD_LIMIT}",
                self.max_record
            ));
        }
        if !(1..=MAX_BATCH_RECORDS_LIMIT).contains(&self.max_batch_records) {
            return bad(format!(
                "max_batch_records {} must be from 1 to {MAX_BATCH_RECORDS_LIMIT}",
                self.max_batch_records
            ));
        }
        if !(2..=MAX_BATCHES_LIMIT).contains(&self.max_batches) {
            return bad(format!(
                "max_batches {} must be from 2 to {MAX_BATCHES_LIMIT}",
                self.max_batches
            ));
        }
        if self.max_waiters == 0 || self.max_waiters > 1 << 20 {
            return bad(format!(
                "max_waiters {} must be from 1 to {}",
                self.max_waiters,
                1 << 20
            ));
        }
        if self.syncs_in_flight == 0 || self.syncs_in_flight > MAX_BATCHES_LIMIT {
            return bad(format!(
                "syncs_in_flight {} must be from 1 to {MAX_BATCHES_LIMIT}",
                self.syncs_in_flight
            ));
        }
        if self.zeroed_spares > 4 {
            return bad(format!(
                "zeroed_spares {} must be from 0 to 4",
                self.zeroed_spares
            ));
        }
        let block = self.block_size;
        let per_block = block - 2 * FRAME_HEADER_LEN;
        let max_batch_blocks =
            self.batch_bytes.div_ceil(block) + (self.max_record + 1).div_ceil(per_block) + 1;
        let batch_max = (max_batch_blocks * block) as u64;
        if self.segment_size % PAGE as u64 != 0
            || self.segment_size > MAX_SEGMENT_LIMIT
            || self.segment_size < SEGMENT_HEADER_LEN as u64 + batch_max
        {
            return bad(format!(
                "segment_size {} must be a multiple of 4096, at most {MAX_SEGMENT_LIMIT}, and \
                 hold the header plus the largest batch ({batch_max} B for batch_bytes {} and \
                 max_record {} in {block} B blocks)",
                self.segment_size, self.batch_bytes, self.max_record
            ));
        }
        Ok(Limits {
            block,
            batch_bytes: self.batch_bytes,
            max_record: self.max_record,
            max_batch_records: self.max_batch_records,
            max_batches: self.max_batches,
            max_batch_blocks,
            max_frames: self.max_batch_records + max_batch_blocks + 1,
            keep_blocks: self.max_batches * self.batch_bytes.div_ceil(block) + 1,
            segment_size: self.segment_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        let l = WalConfig::default().limits().unwrap();
        assert!(l.max_batch_blocks * l.block <= (64 << 20) - PAGE);
    }

    #[test]
    fn bad_fields_are_named() {
        type Case = (fn(&mut WalConfig), &'static str);
        let cases: [Case; 6] = [
            (|c| c.block_size = 5000, "block_size"),
            (|c| c.batch_bytes = 10, "batch_bytes"),
            (|c| c.max_record = usize::MAX, "max_record"),
            (|c| c.max_batches = 1, "max_batches"),
            (|c| c.segment_size = 1 << 20, "segment_size"),
            (|c| c.max_batch_records = 0, "max_batch_records"),
        ];
        for (f, name) in cases {
            let mut c = WalConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
