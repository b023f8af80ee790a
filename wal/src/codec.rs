//! The frame codec: the CRC that binds a frame to its segment, framing a payload in
//! place, and decoding (with every check) a frame out of a segment image.

use crate::format::{le_u32, le_u64, FrameHeader, FrameKind, FRAME_HEADER_LEN, FRAME_MAGIC};
use crate::Lsn;

/// CRC32 (crc32fast: PCLMULQDQ/SSE4.2 when the CPU has them) over the segment signature,
/// the frame header less its CRC field, and the payload.
#[inline]
pub fn frame_crc(signature: u64, header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&signature.to_le_bytes());
    h.update(&header[0..4]);
    h.update(&header[8..FRAME_HEADER_LEN]);
    h.update(payload);
    h.finalize()
}

/// What one frame says about itself, before its header is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The durable watermark at sealing time.
    pub watermark: Lsn,
    /// What the frame holds.
    pub kind: FrameKind,
    /// Payload bytes.
    pub len: u32,
    /// Bytes skipped after the payload.
    pub pad: u16,
}

/// Frames a payload in place: `frame[FRAME_HEADER_LEN..][..spec.len]` already holds the
/// payload; this writes the header and its CRC into `frame[..FRAME_HEADER_LEN]`. The pad
/// bytes are left as they are (readers never look at them).
///
/// # Panics
/// If `frame` is shorter than the header plus the payload.
#[inline]
pub fn seal_frame(frame: &mut [u8], signature: u64, spec: FrameSpec) {
    let end = FRAME_HEADER_LEN + spec.len as usize;
    let (head, rest) = frame[..end].split_at_mut(FRAME_HEADER_LEN);
    let mut h = FrameHeader {
        crc: 0,
        lsn: spec.lsn,
        watermark: spec.watermark,
        len: spec.len,
        kind: spec.kind,
        pad: spec.pad,
    };
    h.write(head);
    h.crc = frame_crc(signature, head, rest);
    head[4..8].copy_from_slice(&h.crc.to_le_bytes());
}

/// A frame that decoded and whose CRC matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Why the bytes at a position are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameProblem {
    /// Fewer than [`FRAME_HEADER_LEN`] bytes are left.
    #[error("not enough bytes left for a frame header")]
    Truncated,
    /// The header bytes are all zero (preallocated, never written).
    #[error("zero-filled bytes where a frame header should be")]
    Zero,
    /// The magic is wrong.
    #[error("bad frame magic")]
    BadMagic,
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    /// Reserved flag bits are set.
    #[error("reserved frame flags {0:#x} set")]
    BadFlags(u8),
    /// The frame claims more bytes than the segment holds.
    #[error("frame of {span} B runs past the end of the segment ({room} B left)")]
    Overrun {
        /// Bytes the frame claims (header, payload, pad).
        span: usize,
        /// Bytes left in the segment.
        room: usize,
    },
    /// The CRC does not match (a torn write, a flipped bit, or stale bytes from an
    /// earlier use of a recycled file).
    #[error("frame checksum mismatch")]
    BadChecksum,
}

/// Decodes the frame at `pos` of a segment image and checks it fully, CRC included.
/// Never panics, whatever the bytes.
pub fn decode_frame(image: &[u8], pos: usize, signature: u64) -> Result<Frame<'_>, FrameProblem> {
    let room = image.len().saturating_sub(pos);
    if room < FRAME_HEADER_LEN {
        return Err(FrameProblem::Truncated);
    }
    let head = &image[pos..pos + FRAME_HEADER_LEN];
    if le_u32(head, 0) != FRAME_MAGIC {
        return Err(if head.iter().all(|&b| b == 0) {
            FrameProblem::Zero
        } else {
            FrameProblem::BadMagic
        });
    }
    let kind = FrameKind::from_u8(head[28]).ok_or(FrameProblem::BadKind(head[28]))?;
    if head[29] != 0 {
        return Err(FrameProblem::BadFlags(head[29]));
    }
    let header = FrameHeader {
        crc: le_u32(head, 4),
        lsn: le_u64(head, 8),
        watermark: le_u64(head, 16),
        len: le_u32(head, 24),
        kind,
        pad: u16::from_le_bytes([head[30], head[31]]),
    };
    let span = header.span();
    if span > room {
        return Err(FrameProblem::Overrun { span, room });
    }
    let payload = &image[pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + header.len as usize];
    if frame_crc(signature, head, payload) != header.crc {
        return Err(FrameProblem::BadChecksum);
    }
    Ok(Frame { header, payload })
}

/// Whether the bytes at `pos` start with the frame magic (a cheap pre-check).
#[inline]
pub fn has_frame_magic(image: &[u8], pos: usize) -> bool {
    image.len() >= pos.saturating_add(4) && le_u32(image, pos) == FRAME_MAGIC
}

/// The LSN field of whatever frame-like header sits at `pos`, if the magic is there.
pub fn peek_lsn(image: &[u8], pos: usize) -> Option<Lsn> {
    (has_frame_magic(image, pos) && image.len() >= pos + FRAME_HEADER_LEN)
        .then(|| le_u64(image, pos + 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(sig: u64, payload: &[u8], pad: u16) -> Vec<u8> {
        let mut buf = vec![0u8; FRAME_HEADER_LEN + payload.len() + pad as usize];
        buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload.len()].copy_from_slice(payload);
        seal_frame(
            &mut buf,
            sig,
            FrameSpec {
                lsn: 9,
                watermark: 5,
                kind: FrameKind::Full,
                len: payload.len() as u32,
                pad,
            },
        );
        buf
    }

    #[test]
    fn round_trip() {
        let buf = framed(77, b"hello", 3);
        let f = decode_frame(&buf, 0, 77).unwrap();
        assert_eq!(f.payload, b"hello");
        assert_eq!(f.header.lsn, 9);
        assert_eq!(f.header.watermark, 5);
        assert_eq!(f.header.span(), buf.len());
    }

    #[test]
    fn every_bit_flip_in_header_and_payload_is_caught() {
        let buf = framed(77, b"some payload bytes", 0);
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&bad, 0, 77).is_err(),
                "flip of bit {bit} accepted"
            );
        }
    }

    #[test]
    fn another_signature_never_validates() {
        let buf = framed(77, b"payload", 0);
        assert_eq!(decode_frame(&buf, 0, 78), Err(FrameProblem::BadChecksum));
    }

    #[test]
    fn zeros_and_short_input() {
        assert_eq!(decode_frame(&[0; 64], 0, 1), Err(FrameProblem::Zero));
        assert_eq!(decode_frame(&[0; 64], 40, 1), Err(FrameProblem::Truncated));
        assert_eq!(
            decode_frame(&[], usize::MAX, 1),
            Err(FrameProblem::Truncated)
        );
        let buf = framed(1, &[7; 100], 0);
        assert!(matches!(
            decode_frame(&buf[..120], 0, 1),
            Err(FrameProblem::Overrun { .. })
        ));
    }
}
