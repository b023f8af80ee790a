//! The on-disk format: constants, the segment header and the frame header. `FORMAT.md`
//! beside `Cargo.toml` draws the same layout as a byte diagram; the two must agree.
//!
//! Everything is little-endian. A segment file is a 4 KiB segment header followed by
//! batches; every batch starts on a 4 KiB boundary and is a whole number of 4 KiB pages,
//! so it can be written with `O_DIRECT`. A batch is a run of frames; a record is one
//! `Full` frame or a `First`, zero or more `Middle` and a `Last` frame, all carrying the
//! record's LSN.

use crate::Lsn;

/// Batches start on, and are a whole number of, this many bytes (the `O_DIRECT` unit).
pub const PAGE: usize = 4096;
/// Bytes of the segment header; the first batch starts right after it.
pub const SEGMENT_HEADER_LEN: usize = PAGE;
/// Bytes of the encoded part of the segment header (the rest of its page is zero).
pub const SEGMENT_HEADER_USED: usize = 40;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 32;
/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RFWALSEG";
/// The first four bytes of every frame (`"RFwr"`); never zero, so a zero-filled tail
/// never decodes as a frame.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RFwr");
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Segment-header flag: the file may be a recycled segment, so bytes past the end of the
/// log can be stale frames of an earlier use (they never validate: their CRC was bound to
/// another signature).
pub const FLAG_RECYCLABLE: u32 = 1;
/// Largest trailing pad a frame can carry.
pub const MAX_PAD: usize = u16::MAX as usize;

/// Rounds `n` up to a multiple of [`PAGE`].
#[inline]
pub const fn page_align_up(n: u64) -> u64 {
    n.div_ceil(PAGE as u64) * PAGE as u64
}

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A whole record.
    Full = 1,
    /// The first fragment of a record that spans blocks.
    First = 2,
    /// A fragment in the middle of a record.
    Middle = 3,
    /// The last fragment of a record.
    Last = 4,
    /// No record: readers skip it. Written as the resume marker after a torn tail is cut
    /// (see `FORMAT.md`).
    Padding = 5,
}

impl FrameKind {
    /// The kind for a byte, or `None` for an unknown value.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Full,
            2 => FrameKind::First,
            3 => FrameKind::Middle,
            4 => FrameKind::Last,
            5 => FrameKind::Padding,
            _ => return None,
        })
    }

    /// A short lower-case name, for the CLI and error messages.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Full => "full",
            FrameKind::First => "first",
            FrameKind::Middle => "middle",
            FrameKind::Last => "last",
            FrameKind::Padding => "padding",
        }
    }
}

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Flags ([`FLAG_RECYCLABLE`]).
    pub flags: u32,
    /// A random, non-zero number chosen when the segment file was (re)initialised. Every
    /// frame's CRC covers it, so frames of an earlier use of the file never validate.
    pub signature: u64,
    /// The LSN of the first record in the segment; also the file's name.
    pub first_lsn: Lsn,
}

/// Why a segment header did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    /// The file is shorter than a segment header.
    #[error("file shorter than the {SEGMENT_HEADER_LEN} B segment header")]
    Short,
    /// The header bytes are all zero: the file was created but its header never landed.
    #[error("segment header is all zero (creation did not complete)")]
    Zero,
    /// The magic is wrong.
    #[error("bad segment magic")]
    BadMagic,
    /// The header checksum does not match.
    #[error("segment header checksum mismatch")]
    BadChecksum,
    /// A version this build does not read.
    #[error("unsupported format version {0}")]
    Version(u32),
    /// The signature is zero, which writers never choose.
    #[error("segment signature is zero")]
    ZeroSignature,
    /// Unknown flag bits are set.
    #[error("unknown segment flags {0:#x}")]
    Flags(u32),
}

impl SegmentHeader {
    /// Encodes into the first [`SEGMENT_HEADER_LEN`] bytes of `out` (the unused part of the
    /// page is zeroed).
    ///
    /// # Panics
    /// If `out` is shorter than [`SEGMENT_HEADER_LEN`].
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..SEGMENT_HEADER_LEN];
        out.fill(0);
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.signature.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        // 32..36 reserved, zero.
        let crc = crc32fast::hash(&out[0..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and checks the header at the start of a segment image.
    pub fn decode(image: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        if image.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderProblem::Short);
        }
        let h = &image[..SEGMENT_HEADER_USED];
        if h.iter().all(|&b| b == 0) {
            return Err(HeaderProblem::Zero);
        }
        if h[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        if crc32fast::hash(&h[0..36]) != le_u32(h, 36) {
            return Err(HeaderProblem::BadChecksum);
        }
        let version = le_u32(h, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        let flags = le_u32(h, 12);
        if flags & !FLAG_RECYCLABLE != 0 {
            return Err(HeaderProblem::Flags(flags));
        }
        let signature = le_u64(h, 16);
        if signature == 0 {
            return Err(HeaderProblem::ZeroSignature);
        }
        Ok(SegmentHeader {
            version,
            flags,
            signature,
            first_lsn: le_u64(h, 24),
        })
    }

    /// Whether stale bytes of an earlier use may follow the end of the log in this file.
    pub fn recyclable(&self) -> bool {
        self.flags & FLAG_RECYCLABLE != 0
    }
}

/// A frame header as stored (the CRC is checked by [`crate::codec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// CRC32 over the segment signature, the header (less this field) and the payload.
    pub crc: u32,
    /// The record's LSN (the same in every fragment of a record).
    pub lsn: Lsn,
    /// Every LSN below this one was durable (synced) when the frame's batch was sealed.
    /// Recovery uses it to tell a torn tail from lost durable data.
    pub watermark: Lsn,
    /// Payload bytes in this frame.
    pub len: u32,
    /// What the frame holds.
    pub kind: FrameKind,
    /// Bytes after the payload that readers skip (filling to a block or page end).
    pub pad: u16,
}

impl FrameHeader {
    /// Bytes from the start of this frame to the start of the next.
    #[inline]
    pub fn span(&self) -> usize {
        FRAME_HEADER_LEN + self.len as usize + self.pad as usize
    }

    /// Writes the header into `out[..FRAME_HEADER_LEN]`, CRC field included.
    #[inline]
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.crc.to_le_bytes());
        out[8..16].copy_from_slice(&self.lsn.to_le_bytes());
        out[16..24].copy_from_slice(&self.watermark.to_le_bytes());
        out[24..28].copy_from_slice(&self.len.to_le_bytes());
        out[28] = self.kind as u8;
        out[29] = 0;
        out[30..32].copy_from_slice(&self.pad.to_le_bytes());
    }
}

/// Reads a little-endian `u32` at `off`.
#[inline]
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian `u64` at `off`.
#[inline]
pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// The file name of the segment whose first record has LSN `first_lsn`.
pub fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

/// The first LSN named by a segment file name, or `None` if `name` is not one.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// File-name prefix of spare segment files waiting for reuse: recycled segments, and
/// zero-filled files the blocking driver prepares.
pub const SPARE_PREFIX: &str = "spare-";

/// The file a zero-filled spare is built in before it is renamed to a spare name; one left
/// by a crash is removed by the next preparation.
pub const PREPARING_SPARE: &str = "preparing-spare";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            flags: FLAG_RECYCLABLE,
            signature: 0x1234_5678_9abc_def0,
            first_lsn: 42,
        };
        let mut page = vec![0xAA; SEGMENT_HEADER_LEN];
        h.encode(&mut page);
        assert!(page[SEGMENT_HEADER_USED..].iter().all(|&b| b == 0));
        assert_eq!(SegmentHeader::decode(&page), Ok(h));
        for bit in 0..SEGMENT_HEADER_USED * 8 {
            let mut bad = page.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&bad).is_err(),
                "bit {bit} flip accepted"
            );
        }
        assert_eq!(
            SegmentHeader::decode(&vec![0; SEGMENT_HEADER_LEN]),
            Err(HeaderProblem::Zero)
        );
        assert_eq!(
            SegmentHeader::decode(&page[..100]),
            Err(HeaderProblem::Short)
        );
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(segment_file_name(7), "00000000000000000007.wal");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("7.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000007.log"), None);
    }

    #[test]
    fn page_alignment() {
        assert_eq!(page_align_up(0), 0);
        assert_eq!(page_align_up(1), 4096);
        assert_eq!(page_align_up(4096), 4096);
        assert_eq!(page_align_up(4097), 8192);
    }
}
