//! One batch: the pool blocks it is built in, where each frame goes, and sealing (framing,
//! padding and CRCs).
//!
//! Appending lays a record out at once (which block, which offset, which fragments) and
//! copies a slice payload into place; a [`BufChain`] payload is kept as it is and copied at
//! sealing. Headers and CRCs are written only when the batch is sealed, so the appender's
//! call does no checksum work. Every table here has its capacity reserved when the batch
//! is built and batches are reused, so steady-state appends allocate nothing.

use ringfort_pool::{BufChain, PoolBuf};

use crate::codec::{seal_frame, FrameSpec};
use crate::config::Limits;
use crate::format::{page_align_up, FrameKind, FRAME_HEADER_LEN};
use crate::Lsn;

/// Where one frame goes.
#[derive(Clone, Copy, Debug)]
struct FrameSlot {
    block: u32,
    off: u32,
    len: u32,
    kind: FrameKind,
    lsn: Lsn,
}

/// A batch being filled, sealed, or written.
pub(crate) struct Batch {
    pub id: u64,
    pub first_lsn: Lsn,
    pub end_lsn: Lsn,
    pub blocks: Vec<PoolBuf>,
    /// Bytes used in the last block.
    used: usize,
    frames: Vec<FrameSlot>,
    /// Chain payloads not yet copied: (index of the record's first frame, chain).
    chains: Vec<(u32, BufChain)>,
    records: usize,
    block: usize,
    /// Bytes written from the last block once sealed (a whole number of pages).
    pub last_len: usize,
}

impl Batch {
    pub fn new(lim: &Limits) -> Batch {
        Batch {
            id: 0,
            first_lsn: 0,
            end_lsn: 0,
            blocks: Vec::with_capacity(lim.max_batch_blocks),
            used: 0,
            frames: Vec::with_capacity(lim.max_frames),
            chains: Vec::with_capacity(lim.max_batch_records),
            records: 0,
            block: lim.block,
            last_len: 0,
        }
    }

    /// Makes an empty batch whose first record will get `first_lsn`.
    pub fn reset(&mut self, id: u64, first_lsn: Lsn) {
        debug_assert!(self.blocks.is_empty() && self.chains.is_empty());
        self.id = id;
        self.first_lsn = first_lsn;
        self.end_lsn = first_lsn;
        self.used = 0;
        self.frames.clear();
        self.records = 0;
        self.last_len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes this batch takes on disk once sealed.
    pub fn disk_len(&self) -> u64 {
        match self.blocks.len() {
            0 => 0,
            n => ((n - 1) * self.block) as u64 + page_align_up(self.used as u64),
        }
    }

    fn room(&self) -> usize {
        if self.blocks.is_empty() {
            0
        } else {
            self.block - self.used
        }
    }

    /// New blocks a record of `len` bytes needs.
    pub fn blocks_needed(&self, len: usize) -> usize {
        let room = self.room();
        let here = FRAME_HEADER_LEN + usize::from(len > 0);
        let rest = if room >= here {
            len - len.min(room - FRAME_HEADER_LEN)
        } else {
            len
        };
        if room >= here && rest == 0 {
            0
        } else {
            rest.div_ceil(self.block - FRAME_HEADER_LEN).max(1)
        }
    }

    /// Lays out record `lsn` of `len` bytes, taking new blocks from `reserve` (which holds
    /// at least [`Batch::blocks_needed`]). Returns the index of its first frame.
    pub fn place(&mut self, lsn: Lsn, len: usize, reserve: &mut Vec<PoolBuf>) -> u32 {
        debug_assert_eq!(lsn, self.end_lsn);
        let first_frame = self.frames.len() as u32;
        let mut remaining = len;
        let mut first = true;
        loop {
            if self.room() < FRAME_HEADER_LEN + usize::from(remaining > 0) {
                let block = reserve.pop().expect("reserve checked by blocks_needed");
                debug_assert!(self.blocks.len() < self.blocks.capacity());
                self.blocks.push(block);
                self.used = 0;
            }
            let n = remaining.min(self.room() - FRAME_HEADER_LEN);
            let last = n == remaining;
            let kind = match (first, last) {
                (true, true) => FrameKind::Full,
                (true, false) => FrameKind::First,
                (false, true) => FrameKind::Last,
                (false, false) => FrameKind::Middle,
            };
            debug_assert!(self.frames.len() < self.frames.capacity());
            self.frames.push(FrameSlot {
                block: (self.blocks.len() - 1) as u32,
                off: self.used as u32,
                len: n as u32,
                kind,
                lsn,
            });
            self.used += FRAME_HEADER_LEN + n;
            remaining -= n;
            first = false;
            if last {
                break;
            }
        }
        self.records += 1;
        self.end_lsn = lsn + 1;
        first_frame
    }

    /// Copies `payload` into the frames of the record whose first frame is `first`.
    pub fn copy_in(&mut self, first: u32, payload: &[u8]) {
        let mut done = 0;
        for f in &self.frames[first as usize..] {
            let start = f.off as usize + FRAME_HEADER_LEN;
            let n = f.len as usize;
            self.blocks[f.block as usize][start..start + n]
                .copy_from_slice(&payload[done..done + n]);
            done += n;
            if matches!(f.kind, FrameKind::Full | FrameKind::Last) {
                break;
            }
        }
    }

    /// Keeps a chain payload, to be copied in at sealing.
    pub fn keep_chain(&mut self, first: u32, chain: BufChain) {
        debug_assert!(self.chains.len() < self.chains.capacity());
        self.chains.push((first, chain));
    }

    /// Seals the batch: copies kept chains into place, pads the last block to a page
    /// boundary, and writes every frame header and CRC, binding them to `signature`.
    pub fn seal(&mut self, signature: u64, watermark: Lsn) {
        let mut chains = std::mem::take(&mut self.chains);
        for (first, chain) in chains.drain(..) {
            self.copy_chain(first, &chain);
        }
        self.chains = chains;
        let Some(last_block) = self.blocks.len().checked_sub(1) else {
            return;
        };
        let target = page_align_up(self.used as u64) as usize;
        let slack = target - self.used;
        let mut tail_pad = slack;
        if slack >= FRAME_HEADER_LEN {
            let frame = &mut self.blocks[last_block][self.used..target];
            seal_frame(
                frame,
                signature,
                FrameSpec {
                    lsn: self.end_lsn,
                    watermark,
                    kind: FrameKind::Padding,
                    len: (slack - FRAME_HEADER_LEN) as u32,
                    pad: 0,
                },
            );
            tail_pad = 0;
        }
        let n = self.frames.len();
        for i in 0..n {
            let f = self.frames[i];
            let end = f.off as usize + FRAME_HEADER_LEN + f.len as usize;
            let pad = match self.frames.get(i + 1) {
                Some(next) if next.block == f.block => 0,
                Some(_) => self.block - end,
                None => tail_pad,
            };
            let frame = &mut self.blocks[f.block as usize][f.off as usize..];
            seal_frame(
                frame,
                signature,
                FrameSpec {
                    lsn: f.lsn,
                    watermark,
                    kind: f.kind,
                    len: f.len,
                    pad: pad as u16,
                },
            );
        }
        self.last_len = target;
    }

    fn copy_chain(&mut self, first: u32, chain: &BufChain) {
        let mut done = 0;
        for f in &self.frames[first as usize..] {
            let start = f.off as usize + FRAME_HEADER_LEN;
            let n = f.len as usize;
            chain.copy_to_slice(done, &mut self.blocks[f.block as usize][start..start + n]);
            done += n;
            if matches!(f.kind, FrameKind::Full | FrameKind::Last) {
                break;
            }
        }
    }

    /// Bytes to write from block `i` (all but the last are written whole).
    pub fn block_len(&self, i: usize) -> usize {
        if i + 1 == self.blocks.len() {
            self.last_len
        } else {
            self.block
        }
    }

    /// Empties the batch, handing its blocks to `sink`, and dropping kept chains.
    pub fn clear(&mut self, mut sink: impl FnMut(PoolBuf)) {
        for b in self.blocks.drain(..) {
            sink(b);
        }
        self.chains.clear();
        self.frames.clear();
        self.records = 0;
        self.used = 0;
    }
}
