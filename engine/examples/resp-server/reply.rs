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
        if value.len() <= COPY_MAX {
            let mut buf = [0u8; COPY_MAX + 24];
            let mut len_text = itoa_buf(value.len() as i64);
            let digits = len_text.format();
            buf[0] = b'$';
            buf[1..1 + digits.len()].copy_from_slice(digits);
            let mut at = 1 + digits.len();
            buf[at..at + 2].copy_from_slice(b"\r\n");
            at += 2;
            for c in value.chunks() {
                buf[at..at + c.len()].copy_from_slice(c);
                at += c.len();
            }
            buf[at..at + 2].copy_from_slice(b"\r\n");
            return self.raw(&buf[..at + 2]);
        }
        self.number_line(b'$', value.len() as i64)?;
        let mut shared = value.clone();
        self.out.append(&mut shared)?;
        self.raw(b"\r\n")
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
        for n in [0, 1, 64, COPY_MAX] {
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
}
