//! RESP2 reply encoding into pool-backed chains. Stored values go out as shared blocks
//! (a bulk reply of a 16 MiB value copies only its header).

use ringfort::pool::{Arena, BufChain, PoolError};

/// Values up to this size are copied into their bulk reply rather than shared: for small
/// values a copy costs less than a second block, a reference count and an iovec.
pub const COPY_MAX: usize = 1024;

/// Builds one connection's reply bytes in a chain from the core's arena.
pub struct Reply<'a> {
    pub out: BufChain,
    arena: &'a Arena,
}

impl<'a> Reply<'a> {
    /// An empty reply of at most `max` bytes.
    pub fn new(arena: &'a Arena, max: usize) -> Reply<'a> {
        Reply {
            out: BufChain::new(max),
            arena,
        }
    }

    /// The arena the reply draws from.
    pub fn arena(&self) -> &'a Arena {
        self.arena
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), PoolError> {
        self.out.append_slice(self.arena, bytes)
    }

    fn line(&mut self, prefix: u8, body: &[u8]) -> Result<(), PoolError> {
        let mut head = [0u8; 64];
        if body.len() + 3 <= head.len() {
            head[0] = prefix;
            head[1..1 + body.len()].copy_from_slice(body);
            head[1 + body.len()..3 + body.len()].copy_from_slice(b"\r\n");
            return self.raw(&head[..3 + body.len()]);
        }
        self.raw(&[prefix])?;
        self.raw(body)?;
        self.raw(b"\r\n")
    }

    fn number_line(&mut self, prefix: u8, n: i64) -> Result<(), PoolError> {
        let mut buf = itoa_buf(n);
        let s = buf.format();
        self.line(prefix, s)
    }

    /// `+OK` style status.
    pub fn simple(&mut self, s: &str) -> Result<(), PoolError> {
        self.line(b'+', s.as_bytes())
    }

    /// `-ERR ...` style error; `msg` is the text after the dash.
    pub fn error(&mut self, msg: &str) -> Result<(), PoolError> {
        self.line(b'-', msg.as_bytes())
    }

    /// `:n`.
    pub fn integer(&mut self, n: i64) -> Result<(), PoolError> {
        self.number_line(b':', n)
    }

    /// `$len\r\n<bytes>\r\n`.
    pub fn bulk(&mut self, bytes: &[u8]) -> Result<(), PoolError> {
        self.number_line(b'$', bytes.len() as i64)?;
        self.raw(bytes)?;
        self.raw(b"\r\n")
    }

    /// A bulk reply whose payload is `value`: shared rather than copied, unless it is at
    /// most [`COPY_MAX`] bytes, when header, payload and trailer are copied into one
    /// segment (one block and one iovec instead of three).
    pub fn bulk_chain(&mut self, value: &BufChain) -> Result<(), PoolError> {
        // Two stack sizes, so that a short value does not pay for zeroing a 1 KiB buffer.
        if value.len() <= SHORT_BULK {
            let mut buf = [0u8; SHORT_BULK + BULK_FRAMING];
            let at = put_bulk(&mut buf, 0, value);
            return self.raw(&buf[..at]);
        }
        if value.len() <= COPY_MAX {
            let mut buf = [0u8; COPY_MAX + BULK_FRAMING];
            let at = put_bulk(&mut buf, 0, value);
            return self.raw(&buf[..at]);
        }
        self.number_line(b'$', value.len() as i64)?;
        let mut shared = value.clone();
        self.out.append(&mut shared)?;
        self.raw(b"\r\n")
    }

    /// A command as RESP sends it, an array of bulk strings: arguments up to
    /// [`SHORT_BULK`] bytes are gathered on the stack and copied in together, longer ones
    /// go through [`Reply::bulk_chain`].
    pub fn command(&mut self, args: &[BufChain]) -> Result<(), PoolError> {
        let mut buf = [0u8; 4 * (SHORT_BULK + BULK_FRAMING)];
        let mut at = put_number_line(&mut buf, 0, b'*', args.len());
        for a in args {
            if a.len() > SHORT_BULK {
                self.raw(&buf[..at])?;
                at = 0;
                self.bulk_chain(a)?;
                continue;
            }
            if at + a.len() + BULK_FRAMING > buf.len() {
                self.raw(&buf[..at])?;
                at = 0;
            }
            at = put_bulk(&mut buf, at, a);
        }
        self.raw(&buf[..at])
    }

    /// `$-1`.
    pub fn null_bulk(&mut self) -> Result<(), PoolError> {
        self.raw(b"$-1\r\n")
    }

    /// `*n` followed by `n` elements the caller writes.
    pub fn array(&mut self, n: usize) -> Result<(), PoolError> {
        self.number_line(b'*', n as i64)
    }
}

/// Bulk values up to this size are framed in a small stack buffer.
pub const SHORT_BULK: usize = 128;
/// The most bytes a bulk adds around its value: `$`, 20 digits and two CRLFs.
const BULK_FRAMING: usize = 25;

/// Writes `prefix`, `n` and CRLF into `buf` at `at`; returns the new end.
fn put_number_line(buf: &mut [u8], at: usize, prefix: u8, n: usize) -> usize {
    let mut text = itoa_buf(n as i64);
    let digits = text.format();
    buf[at] = prefix;
    let mut end = at + 1;
    buf[end..end + digits.len()].copy_from_slice(digits);
    end += digits.len();
    buf[end..end + 2].copy_from_slice(b"\r\n");
    end + 2
}

/// Writes `value` as a bulk string into `buf` at `at` (room for it plus
/// [`BULK_FRAMING`] is the caller's to ensure); returns the new end.
fn put_bulk(buf: &mut [u8], at: usize, value: &BufChain) -> usize {
    let mut end = put_number_line(buf, at, b'$', value.len());
    for c in value.chunks() {
        buf[end..end + c.len()].copy_from_slice(c);
        end += c.len();
    }
    buf[end..end + 2].copy_from_slice(b"\r\n");
    end + 2
}

/// A stack buffer for formatting an integer without allocating.
pub struct ItoaBuf {
    buf: [u8; 20],
    start: usize,
}

impl ItoaBuf {
    pub fn format(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Formats `n` in decimal on the stack.
pub fn itoa_buf(n: i64) -> ItoaBuf {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    ItoaBuf { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfort::pool::{BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass};

    pub fn arena() -> Arena {
        Arena::new(PoolConfig {
            classes: vec![
                SizeClass {
                    size: 4096,
                    count: 64,
                },
                SizeClass {
                    size: 65536,
                    count: 8,
                },
            ],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .unwrap()
    }

    #[test]
    fn encodes_like_redis() {
        let a = arena();
        let mut r = Reply::new(&a, 1 << 20);
        r.simple("OK").unwrap();
        r.error("ERR unknown command 'foo'").unwrap();
        r.integer(-42).unwrap();
        r.integer(i64::MIN).unwrap();
        r.bulk(b"hi").unwrap();
        r.null_bulk().unwrap();
        r.array(2).unwrap();
        assert_eq!(
            r.out.to_vec(),
            b"+OK\r\n-ERR unknown command 'foo'\r\n:-42\r\n:-9223372036854775808\r\n$2\r\nhi\r\n$-1\r\n*2\r\n"
        );
    }

    #[test]
    fn a_small_bulk_chain_is_one_segment() {
        let a = arena();
        for n in [0, 1, 64, SHORT_BULK, SHORT_BULK + 1, COPY_MAX] {
            let mut v = BufChain::new(1 << 20);
            // In two pieces, so the copy must walk the chunks.
            v.append_slice(&a, &vec![3u8; n / 2]).unwrap();
            let mut tail = BufChain::new(1 << 20);
            tail.append_slice(&a, &vec![4u8; n - n / 2]).unwrap();
            v.append(&mut tail).unwrap();
            let mut r = Reply::new(&a, 1 << 20);
            r.bulk_chain(&v).unwrap();
            assert_eq!(r.out.chunks().count(), 1, "{n} bytes");
            let mut want = format!("${n}\r\n").into_bytes();
            want.extend(std::iter::repeat_n(3u8, n / 2));
            want.extend(std::iter::repeat_n(4u8, n - n / 2));
            want.extend_from_slice(b"\r\n");
            assert_eq!(r.out.to_vec(), want, "{n} bytes");
        }
    }

    #[test]
    fn bulk_chain_shares_the_value() {
        let a = arena();
        let mut v = BufChain::new(1 << 20);
        v.append_slice(&a, &vec![7u8; 100_000]).unwrap();
        let mut r = Reply::new(&a, 1 << 20);
        r.bulk_chain(&v).unwrap();
        let bytes = r.out.to_vec();
        assert!(bytes.starts_with(b"$100000\r\n"));
        assert!(bytes.ends_with(b"\r\n"));
        assert_eq!(bytes.len(), 9 + 100_000 + 2);
    }

    #[test]
    fn a_command_encodes_every_argument_whatever_its_size() {
        let a = arena();
        // Sizes around each threshold, and enough short arguments to overflow the stack
        // buffer several times.
        let mut sizes = vec![
            3,
            0,
            SHORT_BULK,
            SHORT_BULK + 1,
            COPY_MAX,
            COPY_MAX + 1,
            70_000,
        ];
        sizes.extend(std::iter::repeat_n(SHORT_BULK - 5, 20));
        let args: Vec<BufChain> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut v = BufChain::new(1 << 20);
                v.append_slice(&a, &vec![b'a' + (i % 26) as u8; n]).unwrap();
                v
            })
            .collect();
        let mut r = Reply::new(&a, 1 << 20);
        r.command(&args).unwrap();
        let mut want = format!("*{}\r\n", args.len()).into_bytes();
        for v in &args {
            want.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            want.extend(v.to_vec());
            want.extend_from_slice(b"\r\n");
        }
        assert_eq!(r.out.to_vec(), want);
    }
}
