//! [`BufChain`]: a message held as a chain of pool blocks.
//!
//! A message grows block by block, bounded only by the chain's configured maximum; it is
//! never copied just to make it contiguous. Segments are [`SharedBuf`] ranges, so a chain
//! can be split or cloned and one payload handed to many receivers without copying, and
//! every block returns to its arena exactly once, when its last segment drops.
//!
//! Up to four segments live inline; longer chains spill to the heap once and then reuse
//! that room. [`BufChain::clear`] keeps it, so a chain reused per connection allocates
//! nothing in the steady state.

use std::io::IoSlice;
use std::ops::Range;

use smallvec::SmallVec;

use crate::arena::Arena;
use crate::buf::{PoolBuf, SharedBuf};
use crate::error::PoolError;

const INLINE_SEGS: usize = 4;

struct Seg {
    buf: SharedBuf,
    start: u32,
    end: u32,
}

impl Seg {
    #[inline]
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start as usize..self.end as usize]
    }
}

/// A byte message made of pool blocks. See the module docs.
pub struct BufChain {
    /// `segs[head..]` are live; `segs[..head]` were consumed from the front and are `None`
    /// until the next compaction, which keeps front removal O(1).
    segs: SmallVec<[Option<Seg>; INLINE_SEGS]>,
    head: usize,
    len: usize,
    max_len: usize,
}

impl BufChain {
    /// An empty chain that refuses to grow past `max_len` bytes.
    pub fn new(max_len: usize) -> BufChain {
        BufChain {
            segs: SmallVec::new(),
            head: 0,
            len: 0,
            max_len,
        }
    }

    /// An empty chain with room for `segments` segments before it reallocates.
    pub fn with_capacity(max_len: usize, segments: usize) -> BufChain {
        BufChain {
            segs: SmallVec::with_capacity(segments),
            ..BufChain::new(max_len)
        }
    }

    /// Bytes in the chain.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chain holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most bytes this chain accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of segments (blocks or block ranges).
    pub fn segment_count(&self) -> usize {
        self.segs.len() - self.head
    }

    fn live(&self) -> impl DoubleEndedIterator<Item = &Seg> + '_ {
        self.segs[self.head..]
            .iter()
            .map(|s| s.as_ref().expect("live segment"))
    }

    fn check_room(&self, add: usize) -> Result<(), PoolError> {
        match self.len.checked_add(add) {
            Some(n) if n <= self.max_len => Ok(()),
            _ => Err(PoolError::ChainFull {
                len: self.len,
                add,
                max: self.max_len,
            }),
        }
    }

    fn push_seg(&mut self, seg: Seg) {
        if self.head > 0 && self.segs.len() == self.segs.capacity() {
            self.segs.drain(..self.head);
            self.head = 0;
        }
        self.len += seg.len();
        self.segs.push(Some(seg));
    }

    /// Copies `data` onto the end: first into the spare room of the last block (when this
    /// chain is its only holder), then into new blocks from `arena`, each of the class
    /// [`Arena::fill_class`] picks for what is left, so blocks end up mostly full. All or
    /// nothing: on error the chain is as it was.
    pub fn append_slice(&mut self, arena: &Arena, mut data: &[u8]) -> Result<(), PoolError> {
        self.check_room(data.len())?;
        let before = self.len;
        if let Some(Some(last)) = self.segs.last_mut() {
            let end = last.end as usize;
            if let Some(block) = last.buf.get_mut() {
                let n = data.len().min(block.len() - end);
                block[end..end + n].copy_from_slice(&data[..n]);
                last.end += n as u32;
                self.len += n;
                data = &data[n..];
            }
        }
        while !data.is_empty() {
            let mut block = match arena.alloc_class(arena.fill_class(data.len())) {
                Ok(b) => b,
                Err(e) => {
                    self.truncate(before);
                    return Err(e);
                }
            };
            let n = data.len().min(block.capacity());
            block[..n].copy_from_slice(&data[..n]);
            data = &data[n..];
            self.push_seg(Seg {
                buf: block.into_shared(),
                start: 0,
                end: n as u32,
            });
        }
        Ok(())
    }

    /// Appends the first `len` bytes of a filled block (a receive, say). On error the block
    /// is handed back with the reason.
    pub fn push_buf(&mut self, buf: PoolBuf, len: usize) -> Result<(), (PoolBuf, PoolError)> {
        assert!(len <= buf.capacity(), "push_buf: {len} B exceed the block");
        if let Err(e) = self.check_room(len) {
            return Err((buf, e));
        }
        if len > 0 {
            self.push_seg(Seg {
                buf: buf.into_shared(),
                start: 0,
                end: len as u32,
            });
        }
        Ok(())
    }

    /// Appends `range` of a shared block without copying.
    ///
    /// # Panics
    /// If `range` is not inside the block.
    pub fn push_shared(&mut self, buf: SharedBuf, range: Range<usize>) -> Result<(), PoolError> {
        assert!(
            range.start <= range.end && range.end <= buf.capacity(),
            "push_shared: range {range:?} is outside a {} B block",
            buf.capacity()
        );
        self.check_room(range.len())?;
        if !range.is_empty() {
            self.push_seg(Seg {
                buf,
                start: range.start as u32,
                end: range.end as u32,
            });
        }
        Ok(())
    }

    /// Moves all of `other`'s segments onto the end of this chain, leaving `other` empty.
    /// On error neither chain changes.
    pub fn append(&mut self, other: &mut BufChain) -> Result<(), PoolError> {
        self.check_room(other.len)?;
        for seg in other.segs.drain(other.head..).flatten() {
            self.push_seg(seg);
        }
        other.clear();
        Ok(())
    }

    /// Splits off and returns the first `at` bytes; this chain keeps the rest. A block
    /// straddling the split is shared by both, not copied. The new chain has the same
    /// maximum length.
    ///
    /// # Panics
    /// If `at > self.len()`.
    pub fn split_to(&mut self, at: usize) -> BufChain {
        assert!(
            at <= self.len,
            "split_to({at}) on a chain of {} B",
            self.len
        );
        let mut front = BufChain::new(self.max_len);
        let mut left = at;
        while left > 0 {
            let seg = self.segs[self.head].as_mut().expect("live segment");
            if seg.len() <= left {
                left -= seg.len();
                let seg = self.pop_front();
                front.push_seg(seg);
            } else {
                let cut = seg.start + left as u32;
                front.push_seg(Seg {
                    buf: seg.buf.clone(),
                    start: seg.start,
                    end: cut,
                });
                seg.start = cut;
                self.len -= left;
                left = 0;
            }
        }
        front
    }

    fn pop_front(&mut self) -> Seg {
        let seg = self.segs[self.head].take().expect("live segment");
        self.head += 1;
        self.len -= seg.len();
        if self.head == self.segs.len() {
            self.segs.clear();
            self.head = 0;
        }
        seg
    }

    /// Drops the first `n` bytes.
    ///
    /// # Panics
    /// If `n > self.len()`.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len, "advance({n}) on a chain of {} B", self.len);
        let mut left = n;
        while left > 0 {
            let seg = self.segs[self.head].as_mut().expect("live segment");
            if seg.len() <= left {
                left -= seg.len();
                self.pop_front();
            } else {
                seg.start += left as u32;
                self.len -= left;
                left = 0;
            }
        }
    }

    /// Keeps the first `len` bytes and drops the rest (no-op if `len >= self.len()`).
    pub fn truncate(&mut self, len: usize) {
        while self.len > len {
            let excess = self.len - len;
            let seg = self
                .segs
                .last_mut()
                .and_then(Option::as_mut)
                .expect("live segment");
            if seg.len() <= excess {
                self.len -= seg.len();
                self.segs.pop();
                if self.segs.len() == self.head {
                    self.segs.clear();
                    self.head = 0;
                }
            } else {
                seg.end -= excess as u32;
                self.len = len;
            }
        }
    }

    /// Drops every segment; keeps the segment list's room for reuse.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.head = 0;
        self.len = 0;
    }

    /// The bytes, segment by segment.
    pub fn chunks(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.live().map(Seg::bytes)
    }

    /// The bytes as `IoSlice`s (iovec-compatible), for vectored I/O.
    pub fn io_slices(&self) -> impl Iterator<Item = IoSlice<'_>> + '_ {
        self.chunks().map(IoSlice::new)
    }

    /// Fills `out` with iovecs for the first segments; returns how many were written. The
    /// iovecs borrow this chain's blocks: keep the chain alive and unchanged while the
    /// kernel uses them.
    pub fn fill_iovecs(&self, out: &mut [libc::iovec]) -> usize {
        let mut n = 0;
        for (slot, bytes) in out.iter_mut().zip(self.chunks()) {
            *slot = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            n += 1;
        }
        n
    }

    /// Each segment's shared block and the byte range used in it: what fixed-buffer I/O
    /// needs (the block's [`SharedBuf::reg_slot`] plus the range).
    pub fn segments(&self) -> impl Iterator<Item = (&SharedBuf, Range<usize>)> + '_ {
        self.live()
            .map(|s| (&s.buf, s.start as usize..s.end as usize))
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Panics
    /// If `offset + dst.len() > self.len()`.
    pub fn copy_to_slice(&self, offset: usize, dst: &mut [u8]) {
        assert!(
            offset.checked_add(dst.len()).is_some_and(|e| e <= self.len),
            "copy_to_slice: {offset} + {} B past a chain of {} B",
            dst.len(),
            self.len
        );
        let mut skip = offset;
        let mut done = 0;
        for bytes in self.chunks() {
            if done == dst.len() {
                break;
            }
            if skip >= bytes.len() {
                skip -= bytes.len();
                continue;
            }
            let part = &bytes[skip..];
            skip = 0;
            let n = part.len().min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&part[..n]);
            done += n;
        }
    }

    /// The whole chain copied into a new `Vec` (allocates; for tests and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.copy_to_slice(0, &mut v);
        v
    }

    /// `N` bytes at `offset`, across block boundaries; `None` past the end.
    #[inline]
    pub fn read_array<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        if offset.checked_add(N)? > self.len {
            return None;
        }
        let mut out = [0; N];
        self.copy_to_slice(offset, &mut out);
        Some(out)
    }

    /// The byte at `offset`.
    pub fn get_u8(&self, offset: usize) -> Option<u8> {
        self.read_array::<1>(offset).map(|b| b[0])
    }

    /// A little-endian `u16` at `offset`.
    pub fn get_u16_le(&self, offset: usize) -> Option<u16> {
        self.read_array(offset).map(u16::from_le_bytes)
    }

    /// A big-endian `u16` at `offset`.
    pub fn get_u16_be(&self, offset: usize) -> Option<u16> {
        self.read_array(offset).map(u16::from_be_bytes)
    }

    /// A little-endian `u32` at `offset`.
    pub fn get_u32_le(&self, offset: usize) -> Option<u32> {
        self.read_array(offset).map(u32::from_le_bytes)
    }

    /// A big-endian `u32` at `offset`.
    pub fn get_u32_be(&self, offset: usize) -> Option<u32> {
        self.read_array(offset).map(u32::from_be_bytes)
    }

    /// A little-endian `u64` at `offset`.
    pub fn get_u64_le(&self, offset: usize) -> Option<u64> {
        self.read_array(offset).map(u64::from_le_bytes)
    }

    /// A big-endian `u64` at `offset`.
    pub fn get_u64_be(&self, offset: usize) -> Option<u64> {
        self.read_array(offset).map(u64::from_be_bytes)
    }
}

impl Clone for BufChain {
    /// Shares every block (reference counts go up); copies no payload bytes.
    fn clone(&self) -> Self {
        let mut segs = SmallVec::with_capacity(self.segment_count());
        segs.extend(self.live().map(|s| {
            Some(Seg {
                buf: s.buf.clone(),
                start: s.start,
                end: s.end,
            })
        }));
        BufChain {
            segs,
            head: 0,
            len: self.len,
            max_len: self.max_len,
        }
    }
}

impl std::fmt::Debug for BufChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufChain")
            .field("len", &self.len)
            .field("segments", &self.segment_count())
            .field("max_len", &self.max_len)
            .finish()
    }
}
