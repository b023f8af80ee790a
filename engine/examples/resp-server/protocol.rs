//! The RESP2 request parser: one resumable [`Parser`] per connection turns the bytes in the
//! connection's receive chain into commands, with the behaviour (and the exact error texts)
//! of Redis 7.0's `processMultibulkBuffer` / `processInlineBuffer` in `networking.c`.
//!
//! # What it accepts
//!
//! A request whose first byte is `*` is a *multibulk*: `*<n>\r\n` then `n` times
//! `$<len>\r\n<len bytes>\r\n`. Any other first byte starts an *inline* request: one line
//! ended by `\n` (a `\r` just before it is dropped), split into arguments by the rules of
//! Redis's `sdssplitargs` — whitespace separates, `"..."` understands `\n \r \t \b \a`,
//! `\xHH` and `\<any>` escapes, `'...'` understands only `\'`, and a closing quote must be
//! followed by whitespace or the end of the line. Empty requests (`*0`, any negative count
//! such as `*-1`, an empty or all-blank inline line) are skipped, as Redis does.
//!
//! Redis quirks mirrored on purpose, each checked against a real redis-server 7.0.15:
//!
//! - Numbers follow `string2ll`: no `+`, no leading zeros, no `-0`, at most 20 characters.
//! - The byte after a header's `\r` and the two bytes after a bulk payload are skipped
//!   without being looked at (Redis assumes they are `\n` and `\r\n`), so
//!   `*1\rX$4\rXPINGxx` is a valid PING.
//! - A NUL byte inside a header or an inline line hides the line end from Redis's
//!   `strchr`, so the request never completes: the parser waits, counting bytes, until the
//!   line limit gives "too big ... " (NULs inside bulk payloads are of course fine).
//! - `expected '$', got 'X'` reports the raw byte, with `\r` and `\n` shown as a space
//!   (Redis's `addReplyErrorFormat` maps them); see [`ProtocolError::wire_bytes`].
//!
//! # Limits ([`Limits`]) and what happens at each
//!
//! - `max_inline_len` (64 KiB, Redis's `PROTO_INLINE_MAX_SIZE`): a header or inline line
//!   must have its terminator within its first `max_inline_len + 1` bytes, else "too big
//!   inline request" / "too big mbulk count string" / "too big bulk count string". Redis
//!   checks the same bound against whatever its last 16 KiB reads left buffered, so a
//!   slightly longer line sometimes slips through there; here the outcome never depends on
//!   how the bytes were chunked.
//! - `max_multibulk_len` (1 Mi arguments): a larger `*<n>` is "invalid multibulk length".
//!   Redis 7.0 itself only refuses counts above `INT_MAX`; we bound it lower because each
//!   pending argument costs a `BufChain` of memory.
//! - `proto_max_bulk_len` (512 MiB): a larger `$<len>` is "invalid bulk length".
//! - Before authentication ([`Parser::set_authenticated`] false) Redis allows at most 10
//!   arguments and 16 KiB per bulk: "unauthenticated multibulk length" / "unauthenticated
//!   bulk length".
//!
//! Every error is final: the server replies `-ERR <error>` and closes the connection after
//! the reply (Redis's `CLIENT_CLOSE_AFTER_REPLY`); the parser keeps returning it.
//!
//! # Zero copy, no rescans
//!
//! Bulk arguments are never copied: each is [`BufChain::split_to`] off the front of the
//! receive chain, so it shares the receive blocks (a 16 MiB value received as 256 blocks
//! stays those 256 blocks) — and keeps them alive as long as it lives. Only inline
//! arguments, which are small and may carry escapes, are copied: all of one line's
//! arguments go into one block from the arena and are split from it.
//!
//! The parser consumes input as soon as it has recorded it: finished arguments move to its
//! pending list, header bytes are scanned once and dropped (keeping the few a number
//! needs), and a partial bulk is just a length compared with the bytes buffered. So a
//! command of 100 000 arguments arriving one byte per receive costs linear work in total,
//! and a 16 MiB bulk arriving in 4 KiB pieces costs O(1) per receive. Nothing is sized
//! from an untrusted count before the bytes arrive.
//!
//! The receive chain's `max_len` must leave room for a whole bulk (`proto_max_bulk_len +
//! 2`) plus one receive, or a command with a bulk that big can never complete.

use std::borrow::Cow;
use std::fmt;

use ringfort_pool::{Arena, BufChain};

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest header or inline line.
pub const PROTO_INLINE_MAX_SIZE: usize = 64 * 1024;
/// Most arguments in one multibulk before authentication (Redis's `ll > 10` check).
pub const UNAUTH_MAX_MULTIBULK_LEN: i64 = 10;
/// Longest bulk before authentication (Redis's `ll > 16384` check).
pub const UNAUTH_MAX_BULK_LEN: i64 = 16384;
/// Redis's `LONG_STR_SIZE`: `string2ll` refuses strings of this length or longer.
const LONG_STR_SIZE: usize = 21;
/// Header bytes kept while scanning: the type byte plus the longest valid number.
const HEAD_KEEP: usize = LONG_STR_SIZE + 1;
/// Room kept in reusable scratch buffers between requests; more is given back.
const SCRATCH_KEEP: usize = 4096;

/// The parser's bounds; see the module docs for what happens at each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk argument (Redis `proto-max-bulk-len`, default 512 MiB).
    pub proto_max_bulk_len: usize,
    /// Most arguments in one multibulk (default 1024 * 1024).
    pub max_multibulk_len: usize,
    /// Longest header or inline line (Redis `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            proto_max_bulk_len: 512 << 20,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: PROTO_INLINE_MAX_SIZE,
        }
    }
}

/// A request the server must refuse; it replies `-ERR <Display>` and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// An inline line without `\n` within the line limit.
    TooBigInline,
    /// An inline line with an unclosed quote, or a closing quote not followed by a space.
    UnbalancedQuotes,
    /// A `*<n>` line without `\r` within the line limit.
    TooBigMultibulkCount,
    /// A `*<n>` that is not a number or is too large.
    InvalidMultibulkLength,
    /// More than 10 arguments before authentication.
    UnauthenticatedMultibulkLength,
    /// A `$<len>` line without `\r` within the line limit.
    TooBigBulkCount,
    /// A bulk header that does not start with `$`; carries the byte found.
    ExpectedDollar(u8),
    /// A `$<len>` that is not a number, is negative, or exceeds `proto_max_bulk_len`.
    InvalidBulkLength,
    /// A bulk over 16 KiB before authentication.
    UnauthenticatedBulkLength,
    /// The arena had no block for an inline request's arguments (not a Redis error: Redis
    /// aborts on allocation failure).
    OutOfBuffers,
}

impl ProtocolError {
    fn fixed_text(self) -> Option<&'static str> {
        Some(match self {
            ProtocolError::TooBigInline => "Protocol error: too big inline request",
            ProtocolError::UnbalancedQuotes => "Protocol error: unbalanced quotes in request",
            ProtocolError::TooBigMultibulkCount => "Protocol error: too big mbulk count string",
            ProtocolError::InvalidMultibulkLength => "Protocol error: invalid multibulk length",
            ProtocolError::UnauthenticatedMultibulkLength => {
                "Protocol error: unauthenticated multibulk length"
            }
            ProtocolError::TooBigBulkCount => "Protocol error: too big bulk count string",
            ProtocolError::InvalidBulkLength => "Protocol error: invalid bulk length",
            ProtocolError::UnauthenticatedBulkLength => {
                "Protocol error: unauthenticated bulk length"
            }
            ProtocolError::OutOfBuffers => "no buffer memory for the request",
            ProtocolError::ExpectedDollar(_) => return None,
        })
    }

    /// The message as Redis puts it on the wire after `-ERR `, byte for byte. It differs
    /// from `Display` only for [`ProtocolError::ExpectedDollar`] with a byte >= 0x80, which
    /// Redis sends raw and `Display` (being UTF-8) shows as the Latin-1 character.
    #[allow(dead_code)] // for servers that want byte-exact replies; used by tests
    pub fn wire_bytes(self) -> Cow<'static, [u8]> {
        match self {
            ProtocolError::ExpectedDollar(b) => {
                let mut v = b"Protocol error: expected '$', got '".to_vec();
                v.push(redis_error_byte(b));
                v.push(b'\'');
                Cow::Owned(v)
            }
            other => Cow::Borrowed(other.fixed_text().unwrap_or_default().as_bytes()),
        }
    }
}

/// Redis's `addReplyErrorFormat` turns `\r` and `\n` into spaces so the reply stays one line.
fn redis_error_byte(b: u8) -> u8 {
    match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::ExpectedDollar(b) => write!(
                f,
                "Protocol error: expected '$', got '{}'",
                char::from(redis_error_byte(b))
            ),
            other => f.write_str(other.fixed_text().unwrap_or_default()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Which line is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// `*<n>`.
    Count,
    /// `$<len>` of a multibulk with `remaining` bulks still to come (this one included).
    Bulk { remaining: usize },
    /// An inline request.
    Inline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between requests.
    Start,
    /// Scanning a line.
    Line(Line),
    /// Waiting for a bulk payload of `len` bytes plus its two trailing bytes.
    Payload { remaining: usize, len: usize },
}

enum Scan {
    Done,
    More,
    TooBig,
}

/// One connection's request parser. See the module docs.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    /// See [`Parser::set_authenticated`].
    authenticated: bool,
    state: State,
    /// Bytes of the current line consumed so far (terminator excluded; after a NUL, every
    /// byte counts, as in Redis's buffer-length check).
    line_len: usize,
    /// A header's `\r` was consumed; one more byte (assumed `\n`) ends the line.
    line_cr: bool,
    /// A NUL was seen: the line can never end (Redis's `strchr` stops there).
    line_nul: bool,
    /// First bytes of a header line.
    head: [u8; HEAD_KEEP],
    /// An inline line's bytes (at most `max_inline_len + 1`).
    inline: Vec<u8>,
    /// Inline arguments after unquoting, end to end, and where each ends.
    tokens: Vec<u8>,
    token_ends: Vec<usize>,
    /// Arguments of the multibulk being received.
    pending: Vec<BufChain>,
    failed: Option<ProtocolError>,
    /// Bytes examined by line scans: the work counter the no-rescan tests check.
    examined: u64,
}

impl Parser {
    /// A parser for a new connection, authenticated (see [`Parser::set_authenticated`]).
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            authenticated: true,
            state: State::Start,
            line_len: 0,
            line_cr: false,
            line_nul: false,
            head: [0; HEAD_KEEP],
            inline: Vec::new(),
            tokens: Vec::new(),
            token_ends: Vec::new(),
            pending: Vec::new(),
            failed: None,
            examined: 0,
        }
    }

    /// Whether the connection counts as authenticated. `false` while it must still
    /// authenticate (a password is configured and AUTH has not succeeded): Redis then
    /// refuses multibulks of more than 10 arguments and bulks over 16 KiB before reading
    /// them. `true`, the default (Redis without `requirepass`), lifts those caps. The server
    /// sets it at accept and after a successful AUTH; it is read at each header.
    pub fn set_authenticated(&mut self, yes: bool) {
        self.authenticated = yes;
    }

    /// See [`Parser::set_authenticated`].
    #[allow(dead_code)]
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The limits this parser enforces.
    #[allow(dead_code)]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether no request is partly received (nothing consumed but not yet returned).
    #[allow(dead_code)]
    pub fn is_idle(&self) -> bool {
        self.state == State::Start && self.failed.is_none()
    }

    /// Total bytes the line scans have examined: with no rescanning this never exceeds the
    /// bytes received. Bulk payloads are never examined.
    #[allow(dead_code)]
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }

    /// Takes the next command off the front of `data`.
    ///
    /// `args` is cleared first. `Ok(true)`: one whole command was consumed and its
    /// arguments (at least one) are in `args`, bulks split off `data` without copying.
    /// `Ok(false)`: more bytes are needed; what was consumed is recorded in the parser, so
    /// append the next receive to `data` and call again. `Err(e)`: reply `-ERR {e}` and
    /// close; every later call returns the same error. Empty requests are skipped within
    /// one call. Inline arguments are copied into a block from `arena`.
    pub fn parse(
        &mut self,
        data: &mut BufChain,
        arena: &Arena,
        args: &mut Vec<BufChain>,
    ) -> Result<bool, ProtocolError> {
        args.clear();
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.step(data, args, arena);
        if let Err(e) = result {
            self.failed = Some(e);
            self.pending.clear();
            args.clear();
        }
        result
    }

    fn step(
        &mut self,
        data: &mut BufChain,
        args: &mut Vec<BufChain>,
        arena: &Arena,
    ) -> Result<bool, ProtocolError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(&first) = data.chunks().find_map(|c| c.first()) else {
                        return Ok(false);
                    };
                    self.begin_line();
                    self.state = State::Line(if first == b'*' {
                        Line::Count
                    } else {
                        Line::Inline
                    });
                }
                State::Line(kind) => {
                    match self.scan_line(data, kind == Line::Inline) {
                        Scan::More => return Ok(false),
                        Scan::TooBig => {
                            return Err(match kind {
                                Line::Count => ProtocolError::TooBigMultibulkCount,
                                Line::Bulk { .. } => ProtocolError::TooBigBulkCount,
                                Line::Inline => ProtocolError::TooBigInline,
                            })
                        }
                        Scan::Done => {}
                    }
                    match kind {
                        Line::Count => {
                            let n = self.multibulk_count()?;
                            if n == 0 {
                                self.state = State::Start;
                            } else {
                                self.begin_line();
                                self.state = State::Line(Line::Bulk { remaining: n });
                            }
                        }
                        Line::Bulk { remaining } => {
                            let len = self.bulk_len()?;
                            self.state = State::Payload { remaining, len };
                        }
                        Line::Inline => {
                            self.state = State::Start;
                            let got = self.split_inline(data.max_len(), arena, args)?;
                            if self.inline.capacity() > SCRATCH_KEEP {
                                self.inline = Vec::new();
                            }
                            if got {
                                return Ok(true);
                            }
                        }
                    }
                }
                State::Payload { remaining, len } => {
                    debug_assert!(remaining >= 1 && len <= self.limits.proto_max_bulk_len);
                    // Redis needs the two bytes after the payload too, but never looks at them.
                    if data.len() < len.saturating_add(2) {
                        return Ok(false);
                    }
                    let arg = data.split_to(len);
                    data.advance(2);
                    self.pending.push(arg);
                    if remaining > 1 {
                        self.begin_line();
                        self.state = State::Line(Line::Bulk {
                            remaining: remaining - 1,
                        });
                        continue;
                    }
                    self.state = State::Start;
                    std::mem::swap(args, &mut self.pending);
                    if self.pending.capacity() > SCRATCH_KEEP {
                        self.pending = Vec::new();
                    }
                    return Ok(true);
                }
            }
        }
    }

    fn begin_line(&mut self) {
        self.line_len = 0;
        self.line_cr = false;
        self.line_nul = false;
        self.inline.clear();
    }

    /// Consumes the current line from the front of `data`, a chunk at a time, each byte
    /// examined once. Inline lines end at `\n`; header lines at `\r` plus one more byte.
    fn scan_line(&mut self, data: &mut BufChain, inline: bool) -> Scan {
        let term = if inline { b'\n' } else { b'\r' };
        let limit = self.limits.max_inline_len;
        loop {
            if self.line_cr {
                debug_assert!(!inline && !self.line_nul && self.line_len <= limit);
                if data.is_empty() {
                    return Scan::More;
                }
                data.advance(1);
                self.examined += 1;
                return Scan::Done;
            }
            if self.line_len > limit {
                return Scan::TooBig;
            }
            // The terminator may sit at index `limit` at the latest.
            let budget = (limit - self.line_len).saturating_add(1);
            let (step, hit) = {
                let Some(chunk) = data.chunks().find(|c| !c.is_empty()) else {
                    return Scan::More;
                };
                let window = &chunk[..chunk.len().min(budget)];
                if self.line_nul {
                    (window.len(), None)
                } else {
                    match window.iter().position(|&b| b == term || b == 0) {
                        Some(i) => {
                            self.keep(&window[..i], inline);
                            (i + 1, Some(window[i]))
                        }
                        None => {
                            self.keep(window, inline);
                            (window.len(), None)
                        }
                    }
                }
            };
            self.examined += step as u64;
            data.advance(step);
            match hit {
                None => self.line_len += step,
                Some(0) => {
                    self.line_len += step;
                    self.line_nul = true;
                }
                Some(_) => {
                    self.line_len += step - 1;
                    if inline {
                        return Scan::Done;
                    }
                    self.line_cr = true;
                }
            }
        }
    }

    /// Records line bytes: all of an inline line, the first few of a header.
    fn keep(&mut self, bytes: &[u8], inline: bool) {
        if inline {
            self.inline.extend_from_slice(bytes);
        } else {
            let at = self.line_len.min(HEAD_KEEP);
            let n = bytes.len().min(HEAD_KEEP - at);
            self.head[at..at + n].copy_from_slice(&bytes[..n]);
        }
    }

    /// The number after a header's type byte, by `string2ll`'s rules.
    fn header_number(&self) -> Option<i64> {
        let digits = self.line_len.checked_sub(1)?;
        if digits >= LONG_STR_SIZE {
            return None;
        }
        string2ll(&self.head[1..1 + digits])
    }

    fn multibulk_count(&self) -> Result<usize, ProtocolError> {
        let ll = match self.header_number() {
            Some(ll) if ll <= i64::from(i32::MAX) => ll,
            _ => return Err(ProtocolError::InvalidMultibulkLength),
        };
        if ll > UNAUTH_MAX_MULTIBULK_LEN && !self.authenticated {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        if ll <= 0 {
            return Ok(0);
        }
        let n = usize::try_from(ll).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
        if n > self.limits.max_multibulk_len {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        Ok(n)
    }

    fn bulk_len(&self) -> Result<usize, ProtocolError> {
        // An empty line starts with its own `\r`, which is what Redis reports.
        let first = if self.line_len == 0 {
            b'\r'
        } else {
            self.head[0]
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedDollar(first));
        }
        let len = self
            .header_number()
            .and_then(|ll| usize::try_from(ll).ok())
            .filter(|&len| len <= self.limits.proto_max_bulk_len)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        if len as u64 > UNAUTH_MAX_BULK_LEN as u64 && !self.authenticated {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        Ok(len)
    }

    /// Splits the finished inline line into `args`; `Ok(false)` when it has none.
    fn split_inline(
        &mut self,
        max_len: usize,
        arena: &Arena,
        args: &mut Vec<BufChain>,
    ) -> Result<bool, ProtocolError> {
        let mut line = &self.inline[..];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        self.tokens.clear();
        self.token_ends.clear();
        split_args(line, &mut self.tokens, &mut self.token_ends)?;
        if self.token_ends.is_empty() {
            return Ok(false);
        }
        let mut all = BufChain::new(max_len.max(self.tokens.len()));
        all.append_slice(arena, &self.tokens)
            .map_err(|_| ProtocolError::OutOfBuffers)?;
        let mut start = 0;
        for &end in &self.token_ends {
            args.push(all.split_to(end - start));
            start = end;
        }
        if self.tokens.capacity() > SCRATCH_KEEP {
            self.tokens = Vec::new();
        }
        Ok(true)
    }
}

/// C `isspace` in the "C" locale (Redis never sets `LC_CTYPE`).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`, for a line without NULs: each argument's bytes are appended to
/// `out` and its end offset to `ends`. Reading past the end yields 0, as the C string's
/// terminator does.
fn split_args(line: &[u8], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Result<(), ProtocolError> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(());
        }
        let (mut inq, mut insq, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if inq {
                if c == b'\\' && at(p + 1) == b'x' {
                    if let (Some(h), Some(l)) = (hex_value(at(p + 2)), hex_value(at(p + 3))) {
                        out.push(h * 16 + l);
                        p += 3;
                    } else {
                        // `\x` without two hex digits is just an escaped `x`.
                        p += 1;
                        out.push(b'x');
                    }
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    out.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => out.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        ends.push(out.len());
    }
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros (so no `-0`), no spaces,
/// fewer than 21 characters, within `i64`.
fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= LONG_STR_SIZE {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfort_pool::{BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass};

    fn arena_with(big_blocks: usize) -> Arena {
        Arena::new(PoolConfig {
            classes: vec![
                SizeClass {
                    size: 4096,
                    count: 256,
                },
                SizeClass {
                    size: 65536,
                    count: big_blocks,
                },
            ],
            growth: Growth::Fixed,
            backing: BackingPref::SmallPages,
            registration: Registration::Off,
            numa: NumaPolicy::FirstTouch,
        })
        .unwrap()
    }

    fn arena() -> Arena {
        arena_with(16)
    }

    fn chain(a: &Arena, bytes: &[u8]) -> BufChain {
        let mut c = BufChain::new(64 << 20);
        c.append_slice(a, bytes).unwrap();
        c
    }

    type Cmd = Vec<Vec<u8>>;

    /// Parses until the parser wants more bytes or fails.
    fn drain(
        p: &mut Parser,
        data: &mut BufChain,
        a: &Arena,
        out: &mut Vec<Cmd>,
    ) -> Option<ProtocolError> {
        let mut args = Vec::new();
        loop {
            match p.parse(data, a, &mut args) {
                Ok(true) => out.push(args.iter().map(BufChain::to_vec).collect()),
                Ok(false) => return None,
                Err(e) => return Some(e),
            }
        }
    }

    fn parse_all(bytes: &[u8], authenticated: bool) -> (Vec<Cmd>, Option<ProtocolError>) {
        let a = arena();
        let mut p = Parser::new(Limits::default());
        p.set_authenticated(authenticated);
        let mut data = chain(&a, bytes);
        let mut out = Vec::new();
        let err = drain(&mut p, &mut data, &a, &mut out);
        (out, err)
    }

    fn cmd(parts: &[&[u8]]) -> Cmd {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn pipelined_commands_in_one_chain() {
        let a = arena();
        let mut p = Parser::new(Limits::default());
        let mut data = chain(
            &a,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
              PING\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
        );
        assert_eq!(data.segment_count(), 1);
        let block = data.segments().next().unwrap().0.as_ptr();
        let mut args = Vec::new();
        let mut got = Vec::new();
        while p.parse(&mut data, &a, &mut args).unwrap() {
            // Bulk arguments are ranges of the receive block, not copies.
            if got.len() != 2 {
                for arg in args.iter().filter(|a| !a.is_empty()) {
                    assert_eq!(arg.segments().next().unwrap().0.as_ptr(), block);
                }
            }
            got.push(args.iter().map(BufChain::to_vec).collect::<Cmd>());
        }
        assert_eq!(
            got,
            vec![
                cmd(&[b"SET", b"k", b"hello"]),
                cmd(&[b"GET", b"k"]),
                cmd(&[b"PING"]),
                cmd(&[b"PING"]),
                cmd(&[b"ECHO", b""]),
            ]
        );
        assert!(data.is_empty());
        assert!(p.is_idle());
    }

    /// A pipeline touching every path: multibulk, binary payloads holding CR LF, empty
    /// bulks, skipped empty requests, inline with quotes, escapes and bare `\n`.
    const MIXED: &[u8] = b"*3\r\n$3\r\nSET\r\n$4\r\nk\r\nv\r\n$6\r\n\x00\r\n\r\n\xff\r\n\
        \r\n*0\r\n*-1\r\n\n   \r\n\
        SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\n\
        *2\r\n$4\r\nECHO\r\n$0\r\n\r\n\
        ECHO\tx\n\
        *1\r\n$4\r\nPING\r\n";

    fn mixed_expected() -> Vec<Cmd> {
        vec![
            cmd(&[b"SET", b"k\r\nv", b"\x00\r\n\r\n\xff"]),
            cmd(&[b"SET", b"a b", b"c'd", b"A\n"]),
            cmd(&[b"ECHO", b""]),
            cmd(&[b"ECHO", b"x"]),
            cmd(&[b"PING"]),
        ]
    }

    #[test]
    fn every_split_point_gives_the_same_commands() {
        let a = arena();
        assert_eq!(parse_all(MIXED, true), (mixed_expected(), None));
        for cut in 0..=MIXED.len() {
            let mut p = Parser::new(Limits::default());
            let mut data = chain(&a, &MIXED[..cut]);
            let mut out = Vec::new();
            assert_eq!(drain(&mut p, &mut data, &a, &mut out), None, "cut {cut}");
            data.append_slice(&a, &MIXED[cut..]).unwrap();
            assert_eq!(drain(&mut p, &mut data, &a, &mut out), None, "cut {cut}");
            assert_eq!(out, mixed_expected(), "cut at {cut}");
            assert!(data.is_empty() && p.is_idle(), "cut {cut}");
        }
        // And one byte per receive.
        let mut p = Parser::new(Limits::default());
        let mut data = BufChain::new(1 << 20);
        let mut out = Vec::new();
        for &b in MIXED {
            data.append_slice(&a, &[b]).unwrap();
            assert_eq!(drain(&mut p, &mut data, &a, &mut out), None);
        }
        assert_eq!(out, mixed_expected());
    }

    #[test]
    fn large_bulk_arrives_in_pieces_without_copy_or_rescan() {
        const VALUE: usize = 16 << 20;
        const RECV: usize = 65536;
        let a = arena_with(300);
        let mut wire = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$16777216\r\n".to_vec();
        let header_len = wire.len();
        wire.extend((0..VALUE).map(|i| (i * 7 + i / 65536) as u8));
        wire.extend_from_slice(b"\r\n");

        let mut p = Parser::new(Limits::default());
        let mut data = BufChain::new(32 << 20);
        let mut args = Vec::new();
        let mut recv_blocks = Vec::new();
        let mut calls = 0;
        for (i, piece) in wire.chunks(RECV).enumerate() {
            // A receive: the kernel fills a pool block, the block joins the chain.
            let mut block = a.alloc(RECV).unwrap();
            block[..piece.len()].copy_from_slice(piece);
            recv_blocks.push(block.as_ptr() as usize);
            data.push_buf(block, piece.len())
                .map_err(|(_, e)| e)
                .unwrap();
            calls += 1;
            let done = p.parse(&mut data, &a, &mut args).unwrap();
            assert_eq!(done, i == wire.len().div_ceil(RECV) - 1);
        }
        assert_eq!(calls, 257);
        assert_eq!(args.len(), 3);
        assert_eq!(args[0].to_vec(), b"SET");
        assert_eq!(args[1].to_vec(), b"big");
        let value = &args[2];
        assert_eq!(value.len(), VALUE);
        assert!(value.to_vec() == wire[header_len..header_len + VALUE]);
        // Not copied: the value is the receive blocks themselves.
        assert_eq!(value.segment_count(), 257);
        for (buf, _) in value.segments() {
            assert!(recv_blocks.contains(&(buf.as_ptr() as usize)));
        }
        // Not rescanned: only the header lines (`*3`, `$3`, `$3`, `$16777216`, each with its
        // CR LF) were ever examined, once each; no payload byte was.
        assert_eq!(
            p.bytes_examined(),
            (header_len - b"SET\r\nbig\r\n".len()) as u64
        );
        assert!(data.is_empty());
    }

    #[test]
    fn many_args_one_byte_at_a_time_is_linear() {
        const ARGS: usize = 100_000;
        let a = arena_with(32);
        let mut wire = format!("*{ARGS}\r\n").into_bytes();
        let mut header_bytes = wire.len();
        for i in 0..ARGS {
            let s = i.to_string();
            let header = format!("${}\r\n", s.len());
            header_bytes += header.len();
            wire.extend_from_slice(header.as_bytes());
            wire.extend_from_slice(format!("{s}\r\n").as_bytes());
        }
        // The receives are one-byte slices of these blocks, so feeding allocates nothing.
        let mut full = chain(&a, &wire);
        let mut p = Parser::new(Limits::default());
        let mut data = BufChain::new(1 << 30);
        let mut args = Vec::new();
        let mut calls = 0u64;
        let mut done = false;
        while !full.is_empty() {
            data.append(&mut full.split_to(1)).unwrap();
            calls += 1;
            done = p.parse(&mut data, &a, &mut args).unwrap();
            assert_eq!(done, full.is_empty());
        }
        assert!(done);
        assert_eq!(calls, wire.len() as u64);
        assert_eq!(args.len(), ARGS);
        assert_eq!(args[0].to_vec(), b"0");
        assert_eq!(args[ARGS - 1].to_vec(), (ARGS - 1).to_string().as_bytes());
        // Over all the calls each header byte was examined exactly once and no payload byte
        // at all, so the total work is linear in the bytes received however they arrive.
        assert_eq!(p.bytes_examined(), header_bytes as u64);

        // A 64 KiB header line arriving a byte at a time is scanned once too.
        let mut p = Parser::new(Limits::default());
        let mut line = vec![b'*'];
        line.resize(PROTO_INLINE_MAX_SIZE, b'1');
        let mut data = BufChain::new(1 << 20);
        for &b in &line {
            data.append_slice(&a, &[b]).unwrap();
            assert_eq!(p.parse(&mut data, &a, &mut args), Ok(false));
        }
        assert_eq!(p.bytes_examined(), line.len() as u64);
        data.append_slice(&a, b"\r\n").unwrap();
        assert_eq!(
            p.parse(&mut data, &a, &mut args),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn inline_quotes_and_escapes() {
        // Each expectation was checked with ECHO against redis-server 7.0.15.
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"SET \"a b\" 'c d'\r\n", &[b"SET", b"a b", b"c d"]),
            (b"ECHO \"\\x41\\n\\t\\q\"\r\n", &[b"ECHO", b"A\n\tq"]),
            (b"ECHO \"\\b\\a\\r\"\r\n", &[b"ECHO", b"\x08\x07\r"]),
            (b"ECHO \"\\xAf\"\r\n", &[b"ECHO", b"\xaf"]),
            (b"ECHO \"\\x4\"\r\n", &[b"ECHO", b"x4"]),
            (b"ECHO \"\\xzz\"\r\n", &[b"ECHO", b"xzz"]),
            (b"ECHO \"a\\\\b\\\"c\"\r\n", &[b"ECHO", b"a\\b\"c"]),
            (b"ECHO \"a\rb\"\r\n", &[b"ECHO", b"a\rb"]),
            (b"ECHO 'it\\'s \\n'\r\n", &[b"ECHO", b"it's \\n"]),
            (b"ECHO '\\x41'\r\n", &[b"ECHO", b"\\x41"]),
            (b"ECHO 'a\\\\b'\r\n", &[b"ECHO", b"a\\\\b"]),
            (b"ECHO a\"b c\"\r\n", &[b"ECHO", b"ab c"]),
            (b"ECHO \"\"\r\n", &[b"ECHO", b""]),
            (b"ECHO\t'a b'\n", &[b"ECHO", b"a b"]),
            (b"ECHO \"a\"\x0b\r\n", &[b"ECHO", b"a"]),
            (b"ECHO 'a'\x0c\r\n", &[b"ECHO", b"a"]),
            (b"\x0c\x0bECHO\x0ba\r\n", &[b"ECHO\x0ba"]),
            (b"ECHO a\rb\n", &[b"ECHO", b"a", b"b"]),
            (b"ECHO x\r\r\r\n", &[b"ECHO", b"x"]),
            (b"  GET   k  \n", &[b"GET", b"k"]),
            (b"$3\r\n", &[b"$3"]),
        ];
        for (line, want) in cases {
            let (got, err) = parse_all(line, true);
            assert_eq!(err, None, "{line:?}");
            assert_eq!(got, vec![cmd(want)], "{line:?}");
        }
        // All of one line's arguments share one block.
        let a = arena();
        let mut p = Parser::new(Limits::default());
        let mut data = chain(&a, b"SET key value\r\n");
        let mut args = Vec::new();
        assert_eq!(p.parse(&mut data, &a, &mut args), Ok(true));
        let blocks: Vec<_> = args
            .iter()
            .map(|c| c.segments().next().unwrap().0.as_ptr())
            .collect();
        assert!(blocks.iter().all(|&b| b == blocks[0]));
    }

    /// Every expected text below was checked byte for byte against redis-server 7.0.15
    /// (raw bytes over TCP; each of these replies was followed by the server closing the
    /// connection). The `unauthenticated` ones were taken with `requirepass` set.
    #[test]
    fn errors_match_redis_7_0_15() {
        let long = |prefix: &[u8], n: usize| {
            let mut v = prefix.to_vec();
            v.resize(prefix.len() + n, b'1');
            v
        };
        let cases: Vec<(Vec<u8>, bool, &str)> = vec![
            (
                b"*abc\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*2147483648\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*-0\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*01\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"* 1\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*+1\r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1 \r\n".to_vec(),
                true,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1\r\nX\r\n".to_vec(),
                true,
                "Protocol error: expected '$', got 'X'",
            ),
            (
                b"*1\r\n\r\n".to_vec(),
                true,
                "Protocol error: expected '$', got ' '",
            ),
            (
                b"*1\r\n\n\r\n".to_vec(),
                true,
                "Protocol error: expected '$', got ' '",
            ),
            (
                b"*1\r\n$-1\r\n".to_vec(),
                true,
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$01\r\n".to_vec(),
                true,
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$536870913\r\n".to_vec(),
                true,
                "Protocol error: invalid bulk length",
            ),
            (
                long(b"*", 70_000),
                true,
                "Protocol error: too big mbulk count string",
            ),
            (
                long(b"*", 65_536),
                true,
                "Protocol error: too big mbulk count string",
            ),
            (
                long(b"*1\r\n", 70_000),
                true,
                "Protocol error: too big bulk count string",
            ),
            (
                long(b"a", 70_000),
                true,
                "Protocol error: too big inline request",
            ),
            (
                b"SET \"a b\r\n".to_vec(),
                true,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"ECHO \"a\"b\r\n".to_vec(),
                true,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"ECHO 'a'b\r\n".to_vec(),
                true,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"ECHO \"ab\\\r\n".to_vec(),
                true,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"ECHO a\"b c\"d\r\n".to_vec(),
                true,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"ECHO \"a\"\xa0\r\n".to_vec(),
                true,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"*11\r\n".to_vec(),
                false,
                "Protocol error: unauthenticated multibulk length",
            ),
            (
                b"*11\r\n$1\r\na\r\n".to_vec(),
                false,
                "Protocol error: unauthenticated multibulk length",
            ),
            (
                b"*1\r\n$16385\r\n".to_vec(),
                false,
                "Protocol error: unauthenticated bulk length",
            ),
            // The validity checks come before the authentication ones.
            (
                b"*1\r\n$-1\r\n".to_vec(),
                false,
                "Protocol error: invalid bulk length",
            ),
            (
                b"*2147483648\r\n".to_vec(),
                false,
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1\r\n$536870913\r\n".to_vec(),
                false,
                "Protocol error: invalid bulk length",
            ),
        ];
        for (input, auth, want) in &cases {
            let (cmds, err) = parse_all(input, *auth);
            assert!(cmds.is_empty(), "{:?}", String::from_utf8_lossy(input));
            let err =
                err.unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)));
            assert_eq!(
                err.to_string(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(&*err.wire_bytes(), want.as_bytes());
        }
        // Redis sends the offending byte raw.
        let (_, err) = parse_all(b"*1\r\n\xff\r\n", true);
        assert_eq!(err, Some(ProtocolError::ExpectedDollar(0xff)));
        assert_eq!(
            &*err.unwrap().wire_bytes(),
            b"Protocol error: expected '$', got '\xff'"
        );

        // Commands before the error are still returned, as Redis runs them first
        // (`PING\r\n*x\r\nPING\r\n` gets `+PONG` then the error, then the close).
        let (cmds, err) = parse_all(b"PING\r\n*x\r\nPING\r\n", true);
        assert_eq!(cmds, vec![cmd(&[b"PING"])]);
        assert_eq!(err, Some(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn the_error_is_final() {
        let a = arena();
        let mut p = Parser::new(Limits::default());
        let mut data = chain(&a, b"*1\r\n$x\r\n");
        let mut args = vec![BufChain::new(1)];
        assert_eq!(
            p.parse(&mut data, &a, &mut args),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert!(args.is_empty());
        data.append_slice(&a, b"*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(
            p.parse(&mut data, &a, &mut args),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert!(!p.is_idle());
    }

    #[test]
    fn empty_requests_are_skipped() {
        let (cmds, err) = parse_all(b"\r\n\n   \r\n*0\r\n*-1\r\n*-5\r\n\x0b\r\nPING\r\n", true);
        assert_eq!((cmds, err), (vec![cmd(&[b"PING"])], None));
        // With nothing after them, they are consumed and the parser waits.
        let a = arena();
        let mut p = Parser::new(Limits::default());
        let mut data = chain(&a, b"*0\r\n\r\n*-1\r\n");
        let mut args = Vec::new();
        assert_eq!(p.parse(&mut data, &a, &mut args), Ok(false));
        assert!(data.is_empty() && p.is_idle());
        // A negative count is skipped even before authentication.
        assert_eq!(
            parse_all(b"*-100\r\nPING\r\n", false).0,
            vec![cmd(&[b"PING"])]
        );
    }

    #[test]
    fn bytes_after_cr_and_payload_are_not_checked() {
        // redis-server 7.0.15 answers both of these with +PONG per PING.
        let (cmds, err) = parse_all(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", true);
        assert_eq!((cmds, err), (vec![cmd(&[b"PING"]), cmd(&[b"PING"])], None));
        let (cmds, err) = parse_all(b"*1\rX$4\rXPING\r\n", true);
        assert_eq!((cmds, err), (vec![cmd(&[b"PING"])], None));
        // The payload needs its two trailing bytes before the command is complete.
        let (cmds, err) = parse_all(b"*1\r\n$4\r\nPING\r", true);
        assert_eq!((cmds.len(), err), (0, None));
    }

    #[test]
    fn nul_in_a_line_stalls_like_redis() {
        let a = arena();
        for (start, err) in [
            (&b"PING\x00\r\n"[..], ProtocolError::TooBigInline),
            (b"*1\x00\r\n", ProtocolError::TooBigMultibulkCount),
            (b"*1\r\n$4\x00\r\nPING\r\n", ProtocolError::TooBigBulkCount),
        ] {
            let mut p = Parser::new(Limits::default());
            let mut data = chain(&a, start);
            let mut args = Vec::new();
            assert_eq!(p.parse(&mut data, &a, &mut args), Ok(false));
            data.append_slice(&a, b"\r\n*1\r\n$4\r\nPING\r\n").unwrap();
            assert_eq!(p.parse(&mut data, &a, &mut args), Ok(false));
            // Redis gives up once more than 64 KiB are buffered with no visible line end.
            data.append_slice(&a, &[b'\r'; 70_000]).unwrap();
            assert_eq!(p.parse(&mut data, &a, &mut args), Err(err));
        }
        // A NUL inside a bulk payload is just data (Redis: unknown command 'PI').
        let (cmds, err) = parse_all(b"*1\r\n$4\r\nPI\x00G\r\n", true);
        assert_eq!((cmds, err), (vec![cmd(&[b"PI\x00G"])], None));
    }

    #[test]
    fn line_limit_boundaries() {
        let a = arena();
        let feed = |bytes: &[u8]| {
            let mut p = Parser::new(Limits::default());
            let mut data = chain(&a, bytes);
            let mut args = Vec::new();
            let r = p.parse(&mut data, &a, &mut args);
            (r, args.first().map(BufChain::len))
        };
        let mut count = vec![b'*'];
        count.resize(PROTO_INLINE_MAX_SIZE, b'1');
        // 65 536 bytes and no \r yet: wait (Redis: still open).
        assert_eq!(feed(&count).0, Ok(false));
        // The \r as byte 65 537: still a line (Redis: open, waiting for the next byte).
        count.push(b'\r');
        assert_eq!(feed(&count).0, Ok(false));
        // 65 537 bytes without \r: too big (Redis: the same).
        count.pop();
        count.push(b'1');
        assert_eq!(feed(&count).0, Err(ProtocolError::TooBigMultibulkCount));

        let mut line = vec![b'a'; PROTO_INLINE_MAX_SIZE];
        assert_eq!(feed(&line).0, Ok(false));
        line.push(b'\n');
        assert_eq!(feed(&line), (Ok(true), Some(PROTO_INLINE_MAX_SIZE)));
        line.pop();
        line.push(b'a');
        assert_eq!(feed(&line).0, Err(ProtocolError::TooBigInline));
    }

    #[test]
    fn limits_are_configurable() {
        let a = arena();
        let limits = Limits {
            proto_max_bulk_len: 5,
            max_multibulk_len: 3,
            max_inline_len: 16,
        };
        let run = |bytes: &[u8]| {
            let mut p = Parser::new(limits);
            let mut data = chain(&a, bytes);
            let mut out = Vec::new();
            let err = drain(&mut p, &mut data, &a, &mut out);
            (out.len(), err)
        };
        assert_eq!(
            run(b"*3\r\n$5\r\nabcde\r\n$0\r\n\r\n$1\r\nx\r\n"),
            (1, None)
        );
        assert_eq!(
            run(b"*4\r\n"),
            (0, Some(ProtocolError::InvalidMultibulkLength))
        );
        assert_eq!(
            run(b"*1\r\n$6\r\n"),
            (0, Some(ProtocolError::InvalidBulkLength))
        );
        assert_eq!(run(&[b'a'; 16]), (0, None));
        assert_eq!(run(&[b'a'; 17]), (0, Some(ProtocolError::TooBigInline)));
        assert_eq!(
            run(b"*1\r\n$00000000000000000"),
            (0, Some(ProtocolError::TooBigBulkCount))
        );
        // Before authentication the Redis caps apply below the configured ones.
        let mut p = Parser::new(Limits::default());
        p.set_authenticated(false);
        let mut data = chain(&a, b"*10\r\n$16384\r\n");
        let mut args = Vec::new();
        assert_eq!(p.parse(&mut data, &a, &mut args), Ok(false));
        assert_eq!(Limits::default().proto_max_bulk_len, 512 << 20);
        assert_eq!(Limits::default().max_multibulk_len, 1 << 20);
        assert_eq!(Limits::default().max_inline_len, 64 << 10);
    }

    #[test]
    fn string2ll_matches_redis() {
        let ok: &[(&[u8], i64)] = &[
            (b"0", 0),
            (b"7", 7),
            (b"-1", -1),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ];
        for (s, v) in ok {
            assert_eq!(string2ll(s), Some(*v), "{s:?}");
        }
        let bad: &[&[u8]] = &[
            b"",
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"000000000000000000001",
        ];
        for s in bad {
            assert_eq!(string2ll(s), None, "{s:?}");
        }
    }

    #[test]
    fn display_maps_line_breaks_like_redis() {
        assert_eq!(
            ProtocolError::ExpectedDollar(b'\n').to_string(),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'%').to_string(),
            "Protocol error: expected '$', got '%'"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(0xe9).to_string(),
            "Protocol error: expected '$', got '\u{e9}'"
        );
    }
}
