//! The command table and the keyspace executor, with Redis 7.0's replies byte for byte.
//!
//! - **Table.** [`lookup`] finds a [`CommandSpec`] by name, case-insensitively and without
//!   allocating (a binary search over the sorted table). A spec holds what Redis 7.0.15
//!   reports in `COMMAND INFO` and `COMMAND DOCS` (arity, flags, key positions, ACL
//!   categories, tips, key specs, docs) plus what the handler routes on: [`Cmd`] and
//!   [`Scope`]. The data was generated from a live redis-server 7.0.15. For the
//!   container commands CLIENT, CONFIG and COMMAND, the table lists only the subcommands
//!   this server serves ([`lookup_subcommand`]). Any other subcommand gets Redis's
//!   "unknown subcommand" error ([`unknown_subcommand_error`]).
//! - **Errors.** [`check_arity`] and [`unknown_command_error`] give Redis's texts exactly.
//! - **Executor.** [`execute`] runs one keyspace command on the shard that owns all its
//!   keys, writes the reply, and returns the [`LogRecord`] to append to the WAL if the
//!   command changed anything. [`replay`] applies such a record at recovery.
//! - **COMMAND.** [`command_reply`] serves `COMMAND`, `COMMAND COUNT`, `COMMAND INFO` and
//!   `COMMAND DOCS` (redis-cli 7 asks for the docs at startup).
//!
//! # Log records are deterministic
//!
//! A record never depends on the clock or on what was expired at the time, so replaying
//! it (with [`replay`], which treats nothing as expired) rebuilds the same keyspace:
//!
//! | command | record |
//! |---|---|
//! | `SET` with any options, `INCR`/`INCRBY`/`DECR`/`DECRBY` | `SET key value [PXAT ms]`, giving the resulting value and expiry |
//! | `SET`/`EXPIRE…` whose expiry already passed, `GETDEL` | `DEL key` (nothing if the key was absent) |
//! | `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` | `PEXPIREAT key ms` |
//! | `APPEND` to a live key / to an absent key | `APPEND key value` / `SET key value` |
//! | `DEL`, `MSET`, `PERSIST`, `FLUSHALL` | as sent (`FLUSHALL` without its `SYNC`/`ASYNC` flag) |
//!
//! A command that changed nothing (for example `SET NX` on an existing key, `DEL` of
//! absent keys or `EXPIRE` of an absent key) returns no record.
//!
//! # Failure atomicity
//!
//! [`execute`] changes the keyspace only in its last step, after the record and the reply
//! have been built. An `Err` (the pool ran dry) therefore means the keyspace is unchanged
//! and there is no record. The reply may hold a partial answer: the caller truncates
//! `reply.out` back to its length before the call and reports the error.

use std::cmp::Ordering;
use std::collections::HashSet;

use ringfort::pool::{Arena, BufChain, PoolError};

use crate::db::{AsKey, Db, MAX_STRING_LEN};
use crate::reply::{itoa_buf, Reply};

/// Which command a spec describes, for dispatch without comparing strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `APPEND key value`
    Append,
    /// `AUTH [username] password`
    Auth,
    /// `CLIENT <subcommand>` (container)
    Client,
    /// `CLIENT GETNAME`
    ClientGetName,
    /// `CLIENT ID`
    ClientId,
    /// `CLIENT INFO`
    ClientInfo,
    /// `CLIENT LIST`
    ClientList,
    /// `CLIENT SETNAME name`
    ClientSetName,
    /// `COMMAND [<subcommand>]`
    Command,
    /// `COMMAND COUNT`
    CommandCount,
    /// `COMMAND DOCS [name ...]`
    CommandDocs,
    /// `COMMAND INFO [name ...]`
    CommandInfo,
    /// `CONFIG <subcommand>` (container)
    Config,
    /// `CONFIG GET pattern ...`
    ConfigGet,
    /// `CONFIG RESETSTAT`
    ConfigResetStat,
    /// `CONFIG SET name value ...`
    ConfigSet,
    /// `DBSIZE`
    DbSize,
    /// `DECR key`
    Decr,
    /// `DECRBY key decrement`
    DecrBy,
    /// `DEL key ...`
    Del,
    /// `ECHO message`
    Echo,
    /// `EXISTS key ...`
    Exists,
    /// `EXPIRE key seconds [NX|XX|GT|LT]`
    Expire,
    /// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`
    ExpireAt,
    /// `FLUSHALL [ASYNC|SYNC]`
    FlushAll,
    /// `GET key`
    Get,
    /// `GETDEL key`
    GetDel,
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`
    Hello,
    /// `INCR key`
    Incr,
    /// `INCRBY key increment`
    IncrBy,
    /// `INFO [section ...]`
    Info,
    /// `MGET key ...`
    MGet,
    /// `MSET key value ...`
    MSet,
    /// `PERSIST key`
    Persist,
    /// `PEXPIRE key milliseconds [NX|XX|GT|LT]`
    PExpire,
    /// `PEXPIREAT key unix-ms [NX|XX|GT|LT]`
    PExpireAt,
    /// `PING [message]`
    Ping,
    /// `PSUBSCRIBE pattern ...`
    PSubscribe,
    /// `PTTL key`
    PTtl,
    /// `PUBLISH channel message`
    Publish,
    /// `PUNSUBSCRIBE [pattern ...]`
    PUnsubscribe,
    /// `QUIT`
    Quit,
    /// `SELECT index`
    Select,
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT t|KEEPTTL]`
    Set,
    /// `STRLEN key`
    StrLen,
    /// `SUBSCRIBE channel ...`
    Subscribe,
    /// `TTL key`
    Ttl,
    /// `UNSUBSCRIBE [channel ...]`
    Unsubscribe,
}

/// Where the handler runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One key, `args[1]`: run [`execute`] on the shard that owns it.
    Key,
    /// Keys at `first_key..=last_key` every `step` (`DEL`, `EXISTS`, `MGET`, `MSET`):
    /// run [`execute`] when one shard owns them all, else split the work over the
    /// owners with the [`Db`] primitives.
    MultiKey,
    /// Every shard (`DBSIZE` sums, `FLUSHALL` runs everywhere): run [`execute`] on each
    /// shard and combine.
    AllShards,
    /// Served by the connection handler itself (no keyspace).
    Connection,
    /// Publish/subscribe, served by the handler's pub/sub machinery.
    PubSub,
}

/// Command flags, as bits of [`CommandSpec::flags`]; reported in this order.
pub mod flag {
    /// May modify the keyspace.
    pub const WRITE: u32 = 1 << 0;
    /// Never modifies the keyspace.
    pub const READONLY: u32 = 1 << 1;
    /// May grow memory use.
    pub const DENYOOM: u32 = 1 << 2;
    /// Administrative.
    pub const ADMIN: u32 = 1 << 3;
    /// Publish/subscribe.
    pub const PUBSUB: u32 = 1 << 4;
    /// Not allowed in scripts.
    pub const NOSCRIPT: u32 = 1 << 5;
    /// Allowed while loading.
    pub const LOADING: u32 = 1 << 6;
    /// Allowed on a stale replica.
    pub const STALE: u32 = 1 << 7;
    /// O(1) or O(log n).
    pub const FAST: u32 = 1 << 8;
    /// Allowed before authentication.
    pub const NO_AUTH: u32 = 1 << 9;
    /// Allowed while a script is busy.
    pub const ALLOW_BUSY: u32 = 1 << 10;

    pub(super) const NAMES: [(u32, &str); 11] = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (ALLOW_BUSY, "allow_busy"),
    ];
}

/// ACL categories, as bits of [`CommandSpec::acl`]; reported in this order.
pub mod acl {
    /// `@keyspace`
    pub const KEYSPACE: u32 = 1 << 0;
    /// `@read`
    pub const READ: u32 = 1 << 1;
    /// `@write`
    pub const WRITE: u32 = 1 << 2;
    /// `@string`
    pub const STRING: u32 = 1 << 3;
    /// `@pubsub`
    pub const PUBSUB: u32 = 1 << 4;
    /// `@admin`
    pub const ADMIN: u32 = 1 << 5;
    /// `@fast`
    pub const FAST: u32 = 1 << 6;
    /// `@slow`
    pub const SLOW: u32 = 1 << 7;
    /// `@dangerous`
    pub const DANGEROUS: u32 = 1 << 8;
    /// `@connection`
    pub const CONNECTION: u32 = 1 << 9;

    pub(super) const NAMES: [(u32, &str); 10] = [
        (KEYSPACE, "@keyspace"),
        (READ, "@read"),
        (WRITE, "@write"),
        (STRING, "@string"),
        (PUBSUB, "@pubsub"),
        (ADMIN, "@admin"),
        (FAST, "@fast"),
        (SLOW, "@slow"),
        (DANGEROUS, "@dangerous"),
        (CONNECTION, "@connection"),
    ];
}

/// Key-spec flags, as bits of [`KeySpec::flags`]; reported in this order.
pub mod ks {
    /// Read-only access.
    pub const RO: u32 = 1 << 0;
    /// Read-write access.
    pub const RW: u32 = 1 << 1;
    /// Overwrite.
    pub const OW: u32 = 1 << 2;
    /// Removal.
    pub const RM: u32 = 1 << 3;
    /// Returns user data.
    pub const ACCESS: u32 = 1 << 4;
    /// Updates data.
    pub const UPDATE: u32 = 1 << 5;
    /// Adds data.
    pub const INSERT: u32 = 1 << 6;
    /// Deletes data.
    pub const DELETE: u32 = 1 << 7;
    /// Flags depend on the arguments.
    pub const VARIABLE_FLAGS: u32 = 1 << 8;

    pub(super) const NAMES: [(u32, &str); 9] = [
        (RO, "RO"),
        (RW, "RW"),
        (OW, "OW"),
        (RM, "RM"),
        (ACCESS, "access"),
        (UPDATE, "update"),
        (INSERT, "insert"),
        (DELETE, "delete"),
        (VARIABLE_FLAGS, "variable_flags"),
    ];
}

/// Argument flags in the docs, as bits of [`Arg::flags`].
pub mod arg {
    /// May be left out.
    pub const OPTIONAL: u8 = 1 << 0;
    /// May repeat.
    pub const MULTIPLE: u8 = 1 << 1;
    /// Repeats with its token each time.
    pub const MULTIPLE_TOKEN: u8 = 1 << 2;

    pub(super) const NAMES: [(u8, &str); 3] = [
        (OPTIONAL, "optional"),
        (MULTIPLE, "multiple"),
        (MULTIPLE_TOKEN, "multiple_token"),
    ];
}

/// One key spec (Redis 7): where the keys are and how they are accessed. All of ours
/// begin at an index and find keys by range.
pub struct KeySpec {
    /// Free-form remark.
    pub notes: Option<&'static str>,
    /// [`ks`] bits.
    pub flags: u32,
    /// Index of the first key.
    pub begin_index: i32,
    /// Last key relative to the first (`-1` = the last argument).
    pub last_key: i32,
    /// Distance between keys.
    pub key_step: i32,
    /// Range limit (0 = none).
    pub limit: i32,
}

/// The type of a documented argument.
#[derive(Clone, Copy)]
pub enum ArgKind {
    /// `string`
    String,
    /// `integer`
    Integer,
    /// `unix-time`
    UnixTime,
    /// `key`
    Key,
    /// `pattern`
    Pattern,
    /// `pure-token`
    PureToken,
    /// `oneof`
    OneOf,
    /// `block`
    Block,
}

impl ArgKind {
    fn as_str(self) -> &'static str {
        match self {
            ArgKind::String => "string",
            ArgKind::Integer => "integer",
            ArgKind::UnixTime => "unix-time",
            ArgKind::Key => "key",
            ArgKind::Pattern => "pattern",
            ArgKind::PureToken => "pure-token",
            ArgKind::OneOf => "oneof",
            ArgKind::Block => "block",
        }
    }
}

/// A documented argument (`COMMAND DOCS`).
pub struct Arg {
    /// Argument name.
    pub name: &'static str,
    /// Its type.
    pub kind: ArgKind,
    /// For keys: the index of its key spec.
    pub key_spec_index: Option<i32>,
    /// The literal token that introduces it.
    pub token: Option<&'static str>,
    /// The version that added it.
    pub since: Option<&'static str>,
    /// [`arg`] bits.
    pub flags: u8,
    /// Members of a `oneof` or `block`.
    pub args: &'static [Arg],
}

impl Arg {
    const fn new(name: &'static str, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            key_spec_index: None,
            token: None,
            since: None,
            flags: 0,
            args: &[],
        }
    }

    const fn key_spec(self, index: i32) -> Arg {
        Arg {
            key_spec_index: Some(index),
            ..self
        }
    }

    const fn token(self, token: &'static str) -> Arg {
        Arg {
            token: Some(token),
            ..self
        }
    }

    const fn since(self, since: &'static str) -> Arg {
        Arg {
            since: Some(since),
            ..self
        }
    }

    const fn flags(self, flags: u8) -> Arg {
        Arg { flags, ..self }
    }

    const fn args(self, args: &'static [Arg]) -> Arg {
        Arg { args, ..self }
    }
}

/// A command's documentation (`COMMAND DOCS`).
pub struct Docs {
    /// One-line summary.
    pub summary: &'static str,
    /// Redis version that added the command.
    pub since: &'static str,
    /// Command group.
    pub group: &'static str,
    /// Time complexity.
    pub complexity: &'static str,
    /// `(version, change)` pairs.
    pub history: &'static [(&'static str, &'static str)],
    /// Arguments.
    pub arguments: &'static [Arg],
}

/// A command's static description. See the module docs.
pub struct CommandSpec {
    /// Lowercase name; `parent|sub` for a subcommand.
    pub name: &'static str,
    /// What to run.
    pub cmd: Cmd,
    /// Where to run it.
    pub scope: Scope,
    /// Argument count including the name; negative: at least `-arity`.
    pub arity: i32,
    /// [`flag`] bits.
    pub flags: u32,
    /// Position of the first key (0: none).
    pub first_key: i32,
    /// Position of the last key (-1: the last argument).
    pub last_key: i32,
    /// Distance between keys.
    pub step: i32,
    /// [`acl`] bits.
    pub acl: u32,
    /// Hints for clients and proxies (`request_policy:...`).
    pub tips: &'static [&'static str],
    /// Key specs.
    pub key_specs: &'static [KeySpec],
    /// Subcommands (containers only).
    pub subcommands: &'static [CommandSpec],
    /// Documentation.
    pub docs: Docs,
}

impl CommandSpec {
    /// Whether the command may change the keyspace (and so may return a [`LogRecord`]).
    pub fn is_write(&self) -> bool {
        self.flags & flag::WRITE != 0
    }

    /// Whether the command may grow memory (Redis's `denyoom` flag), so that it is refused
    /// with [`OOM_ERROR`] when memory is short.
    pub fn denies_oom(&self) -> bool {
        self.flags & flag::DENYOOM != 0
    }
}

/// Redis's refusal of a command that may grow memory when memory is short.
pub const OOM_ERROR: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// A write in the deterministic form to append to the WAL: the arguments of a command
/// that [`replay`] accepts (see the module docs for the forms). The chains share the
/// request's blocks; only synthesized arguments (a name, `PXAT`, a number) take a block,
/// one for all of them.
#[derive(Clone, Debug)]
pub enum LogRecord {
    /// The first `n` arguments of the request, as they came: most writes log themselves,
    /// and this builds no vector for them.
    Request(usize),
    /// Arguments built for the log.
    Built(Vec<BufChain>),
}

impl LogRecord {
    /// The record's arguments, given the request's.
    pub fn args<'a>(&'a self, request: &'a [BufChain]) -> &'a [BufChain] {
        match self {
            LogRecord::Request(n) => &request[..*n],
            LogRecord::Built(args) => args,
        }
    }
}

/// The spec of the top-level command `name` (any case); allocates nothing.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    TABLE
        .binary_search_by(|s| cmp_ignore_case(s.name.as_bytes(), name))
        .ok()
        .map(|i| TABLE[i])
}

/// The spec of subcommand `name` (any case) of the container `parent`.
pub fn lookup_subcommand(
    parent: &'static CommandSpec,
    name: &[u8],
) -> Option<&'static CommandSpec> {
    let prefix = parent.name.len() + 1;
    parent
        .subcommands
        .iter()
        .find(|s| s.name.as_bytes()[prefix..].eq_ignore_ascii_case(name))
}

/// `name` or `parent|sub`, as `COMMAND INFO` and `COMMAND DOCS` accept them.
fn lookup_path(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        None => lookup(name),
        Some(i) => lookup_subcommand(lookup(&name[..i])?, &name[i + 1..]),
    }
}

/// The spec of the top-level command named by `name` (any case); allocates nothing.
pub fn lookup_chain(name: &BufChain) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    let n = name.len();
    if n > buf.len() {
        return None;
    }
    name.copy_to_slice(0, &mut buf[..n]);
    lookup(&buf[..n])
}

fn cmp_ignore_case(table_name: &[u8], name: &[u8]) -> Ordering {
    table_name
        .iter()
        .copied()
        .cmp(name.iter().map(u8::to_ascii_lowercase))
}

/// Redis's arity check: `Err("ERR wrong number of arguments for 'get' command")` when
/// `argc` (the name included) does not fit `spec.arity`.
pub fn check_arity(spec: &CommandSpec, argc: usize) -> Result<(), String> {
    let want = spec.arity.unsigned_abs() as usize;
    let ok = if spec.arity >= 0 {
        argc == want
    } else {
        argc >= want
    };
    if ok {
        Ok(())
    } else {
        Err(arity_error(spec))
    }
}

fn arity_error(spec: &CommandSpec) -> String {
    format!("ERR wrong number of arguments for '{}' command", spec.name)
}

/// How much of a client's text Redis quotes in "unknown command" errors.
const QUOTE_LIMIT: usize = 128;

/// Redis 7.0's error for an unknown command: the name (up to 128 bytes) and the
/// arguments, each quoted and followed by a space, while the list is under 128 bytes
/// (the last one cut to fit). Like Redis's C strings, each text stops at a NUL byte.
/// `\r` and `\n` become spaces. Bytes that are not UTF-8 are replaced (U+FFFD).
pub fn unknown_command_error(args: &[BufChain]) -> String {
    let mut msg = b"ERR unknown command '".to_vec();
    if let Some(name) = args.first() {
        push_c_prefix(&mut msg, name, QUOTE_LIMIT);
    }
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut list = Vec::new();
    for a in args.iter().skip(1) {
        if list.len() >= QUOTE_LIMIT {
            break;
        }
        let room = QUOTE_LIMIT - list.len();
        list.push(b'\'');
        push_c_prefix(&mut list, a, room);
        list.extend_from_slice(b"' ");
    }
    msg.extend_from_slice(&list);
    sanitize(&mut msg);
    String::from_utf8_lossy(&msg).into_owned()
}

/// Redis 7.0's error for an unknown subcommand of `parent`:
/// "ERR unknown subcommand 'foo'. Try CONFIG HELP."
pub fn unknown_subcommand_error(parent: &CommandSpec, sub: &[u8]) -> String {
    let mut msg = b"ERR unknown subcommand '".to_vec();
    let n = sub.len().min(QUOTE_LIMIT);
    let end = sub[..n].iter().position(|&b| b == 0).unwrap_or(n);
    msg.extend_from_slice(&sub[..end]);
    msg.extend_from_slice(b"'. Try ");
    msg.extend_from_slice(parent.name.to_ascii_uppercase().as_bytes());
    msg.extend_from_slice(b" HELP.");
    sanitize(&mut msg);
    String::from_utf8_lossy(&msg).into_owned()
}

/// Appends up to `max` bytes of `c`, stopping at a NUL as C's `%.*s` does.
fn push_c_prefix(out: &mut Vec<u8>, c: &BufChain, max: usize) {
    let start = out.len();
    let n = c.len().min(max);
    out.resize(start + n, 0);
    c.copy_to_slice(0, &mut out[start..]);
    if let Some(p) = out[start..].iter().position(|&b| b == 0) {
        out.truncate(start + p);
    }
}

/// Maps `\r` and `\n` to spaces, as Redis does so an error stays one line.
fn sanitize(msg: &mut [u8]) {
    for b in msg.iter_mut() {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
}

const SYNTAX: &str = "ERR syntax error";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const DECR_OVERFLOW: &str = "ERR decrement would overflow";
const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// How much of an unsupported option `EXPIRE` quotes back. Redis quotes all of it. We
/// stop at 1 KiB so a huge argument cannot make a huge error.
const OPTION_QUOTE_LIMIT: usize = 1024;

/// The first bytes of an argument as C would see them: up to the first NUL, or all of
/// it; `overflow` when that is longer than the buffer.
struct Token {
    buf: [u8; 16],
    len: usize,
    overflow: bool,
}

impl Token {
    fn of(c: &BufChain) -> Token {
        let mut buf = [0u8; 16];
        let n = c.len().min(buf.len());
        c.copy_to_slice(0, &mut buf[..n]);
        let (len, overflow) = match buf[..n].iter().position(|&b| b == 0) {
            Some(p) => (p, false),
            None => (n, c.len() > n),
        };
        Token { buf, len, overflow }
    }

    /// Whether the token is `word` (ASCII, any case).
    fn is(&self, word: &str) -> bool {
        !self.overflow && self.buf[..self.len].eq_ignore_ascii_case(word.as_bytes())
    }
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros, no `-0`, no spaces, at
/// most 20 characters, within `i64`.
fn parse_i64(c: &BufChain) -> Option<i64> {
    let mut buf = [0u8; 20];
    let n = c.len();
    if n == 0 || n > buf.len() {
        return None;
    }
    c.copy_to_slice(0, &mut buf[..n]);
    parse_i64_bytes(&buf[..n])
}

fn parse_i64_bytes(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    let (first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(first) {
        return None;
    }
    let mut v = u64::from(first - b'0');
    for &d in rest {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

/// Builds small arguments in one pool block, which they then share.
fn synth<const N: usize>(arena: &Arena, parts: [&[u8]; N]) -> Result<[BufChain; N], PoolError> {
    let total = parts.iter().map(|p| p.len()).sum();
    let mut all = BufChain::new(total);
    for p in parts {
        all.append_slice(arena, p)?;
    }
    Ok(parts.map(|p| all.split_to(p.len())))
}

/// `SET key value [PXAT at]` for a `SET` command `args`: its own name, key and value
/// chains, so only an expiry takes a block.
fn set_record(
    arena: &Arena,
    args: &[BufChain],
    expire_at: Option<u64>,
) -> Result<LogRecord, PoolError> {
    let Some(at) = expire_at else {
        return Ok(LogRecord::Request(3));
    };
    let mut record = args[..3].to_vec();
    let mut t = itoa_buf(at as i64);
    record.extend(synth(arena, [b"PXAT".as_slice(), t.format()])?);
    Ok(LogRecord::Built(record))
}

/// `DEL key`.
fn del_record(arena: &Arena, key: &BufChain) -> Result<LogRecord, PoolError> {
    let [name] = synth(arena, [b"DEL".as_slice()])?;
    Ok(LogRecord::Built(vec![name, key.clone()]))
}

type Outcome = Result<Option<LogRecord>, PoolError>;

/// Runs one keyspace command on `db` at `now_ms` (unix ms) and writes its reply; returns
/// the record to log if the command changed the keyspace. `spec` is `args[0]`'s (see
/// [`lookup_chain`]): the caller looks it up once, to route the command too. Wrong
/// argument counts get Redis's errors. Connection and pub/sub commands
/// ([`Scope::Connection`], [`Scope::PubSub`]) other than `PING` and `ECHO` are the
/// handler's and get an error here. On `Err` the keyspace is unchanged; see the module
/// docs.
pub fn execute(
    db: &mut Db,
    spec: &'static CommandSpec,
    args: &[BufChain],
    now_ms: u64,
    reply: &mut Reply,
) -> Outcome {
    if let Err(msg) = check_arity(spec, args.len()) {
        reply.error(&msg)?;
        return Ok(None);
    }
    let keyspace = matches!(spec.scope, Scope::Key | Scope::MultiKey | Scope::AllShards);
    if !keyspace && !matches!(spec.cmd, Cmd::Ping | Cmd::Echo) {
        reply.error(&not_keyspace(spec))?;
        return Ok(None);
    }
    let mut x = Exec {
        db,
        args,
        now: now_ms,
        now_i: i64::try_from(now_ms).unwrap_or(i64::MAX),
        reply,
        spec,
    };
    let out = x.run()?;
    debug_assert!(
        out.is_none() || spec.is_write(),
        "{} logged a write",
        spec.name
    );
    Ok(out)
}

fn not_keyspace(spec: &CommandSpec) -> String {
    format!(
        "ERR '{}' is served by the connection handler, not the keyspace",
        spec.name
    )
}

/// One command being executed.
struct Exec<'a, 'r> {
    db: &'a mut Db,
    args: &'a [BufChain],
    now: u64,
    now_i: i64,
    reply: &'a mut Reply<'r>,
    spec: &'static CommandSpec,
}

impl Exec<'_, '_> {
    fn run(&mut self) -> Outcome {
        match self.spec.cmd {
            Cmd::Ping => self.ping(),
            Cmd::Echo => self.bulk_arg(1),
            Cmd::Set => self.set(),
            Cmd::Get => self.get(),
            Cmd::GetDel => self.getdel(),
            Cmd::Del => self.del(),
            Cmd::Exists => self.exists(),
            Cmd::Incr => self.incr_by(1),
            Cmd::Decr => self.incr_by(-1),
            Cmd::IncrBy => match parse_i64(&self.args[2]) {
                Some(n) => self.incr_by(n),
                None => self.fail(NOT_INT),
            },
            Cmd::DecrBy => match parse_i64(&self.args[2]) {
                Some(i64::MIN) => self.fail(DECR_OVERFLOW),
                Some(n) => self.incr_by(-n),
                None => self.fail(NOT_INT),
            },
            Cmd::MGet => self.mget(),
            Cmd::MSet => self.mset(),
            Cmd::Append => self.append(),
            Cmd::StrLen => self.strlen(),
            Cmd::Expire => self.expire(true, true),
            Cmd::PExpire => self.expire(false, true),
            Cmd::ExpireAt => self.expire(true, false),
            Cmd::PExpireAt => self.expire(false, false),
            Cmd::Ttl => self.ttl(false),
            Cmd::PTtl => self.ttl(true),
            Cmd::Persist => self.persist(),
            Cmd::DbSize => self.int(self.db.len() as i64),
            Cmd::FlushAll => self.flushall(),
            _ => self.fail(&not_keyspace(self.spec)),
        }
    }

    fn fail(&mut self, msg: &str) -> Outcome {
        self.reply.error(msg)?;
        Ok(None)
    }

    fn int(&mut self, n: i64) -> Outcome {
        self.reply.integer(n)?;
        Ok(None)
    }

    fn bulk_arg(&mut self, i: usize) -> Outcome {
        self.reply.bulk_chain(&self.args[i])?;
        Ok(None)
    }

    fn ping(&mut self) -> Outcome {
        match self.args.len() {
            1 => {
                self.reply.simple("PONG")?;
                Ok(None)
            }
            2 => self.bulk_arg(1),
            _ => self.fail(&arity_error(self.spec)),
        }
    }

    fn get(&mut self) -> Outcome {
        let key = self.args[1].key_bytes();
        match self.db.get(&key, self.now) {
            Some(v) => self.reply.bulk_chain(v)?,
            None => self.reply.null_bulk()?,
        }
        Ok(None)
    }

    fn getdel(&mut self) -> Outcome {
        let key = self.args[1].key_bytes();
        let Some(v) = self.db.get(&key, self.now) else {
            self.reply.null_bulk()?;
            return Ok(None);
        };
        let record = del_record(self.reply.arena(), &self.args[1])?;
        self.reply.bulk_chain(v)?;
        self.db.del(&key, self.now);
        Ok(Some(record))
    }

    fn set(&mut self) -> Outcome {
        const NX: u8 = 1;
        const XX: u8 = 2;
        const GET: u8 = 4;
        const KEEPTTL: u8 = 8;
        const EX: u8 = 16;
        const PX: u8 = 32;
        const EXAT: u8 = 64;
        const PXAT: u8 = 128;
        let args = self.args;
        let mut flags = 0u8;
        let mut expire = None;
        let mut j = 3;
        // Redis's parseExtendedStringArgumentsOrReply, condition for condition.
        while j < args.len() {
            let opt = Token::of(&args[j]);
            let next = args.get(j + 1);
            let timed = if opt.is("ex") {
                Some((EX, KEEPTTL | EXAT | PX | PXAT))
            } else if opt.is("px") {
                Some((PX, KEEPTTL | EX | EXAT | PXAT))
            } else if opt.is("exat") {
                Some((EXAT, KEEPTTL | EX | PX | PXAT))
            } else if opt.is("pxat") {
                Some((PXAT, KEEPTTL | EX | EXAT | PX))
            } else {
                None
            };
            let ok = if opt.is("nx") && flags & XX == 0 {
                flags |= NX;
                true
            } else if opt.is("xx") && flags & NX == 0 {
                flags |= XX;
                true
            } else if opt.is("get") {
                flags |= GET;
                true
            } else if opt.is("keepttl") && flags & (EX | EXAT | PX | PXAT) == 0 {
                flags |= KEEPTTL;
                true
            } else if let Some((flag, excl)) = timed {
                let allowed = flags & excl == 0 && next.is_some();
                if allowed {
                    flags |= flag;
                    expire = next;
                    j += 1;
                }
                allowed
            } else {
                false
            };
            if !ok {
                return self.fail(SYNTAX);
            }
            j += 1;
        }
        let at = match expire {
            None => None,
            Some(t) => {
                let Some(n) = parse_i64(t) else {
                    return self.fail(NOT_INT);
                };
                let seconds = flags & (EX | EXAT) != 0;
                let relative = flags & (EX | PX) != 0;
                match expire_time(n, seconds, relative.then_some(self.now_i)) {
                    Some(ms) => Some(ms),
                    None => return self.fail(&self.invalid_expire()),
                }
            }
        };
        let key = args[1].key_bytes();
        let old = self.db.get_with_expiry(&key, self.now);
        let found = old.is_some();
        let old_expiry = old.as_ref().and_then(|(_, e)| *e);
        if flags & GET != 0 {
            match &old {
                Some((v, _)) => self.reply.bulk_chain(v)?,
                None => self.reply.null_bulk()?,
            }
        }
        if (flags & NX != 0 && found) || (flags & XX != 0 && !found) {
            if flags & GET == 0 {
                self.reply.null_bulk()?;
            }
            return Ok(None);
        }
        let expire_at = if flags & KEEPTTL != 0 { old_expiry } else { at };
        let arena = self.reply.arena();
        if expire_at.is_some_and(|e| self.now > e) {
            // EXAT/PXAT in the past: the key is gone at once.
            let record = if found {
                Some(del_record(arena, &args[1])?)
            } else {
                None
            };
            if flags & GET == 0 {
                self.reply.simple("OK")?;
            }
            self.db.del(&key, self.now);
            return Ok(record);
        }
        let record = set_record(arena, args, expire_at)?;
        if flags & GET == 0 {
            self.reply.simple("OK")?;
        }
        self.db.set(&key, args[2].clone(), expire_at);
        Ok(Some(record))
    }

    fn invalid_expire(&self) -> String {
        format!("ERR invalid expire time in '{}' command", self.spec.name)
    }

    fn del(&mut self) -> Outcome {
        let keys = &self.args[1..];
        let n = if keys.len() == 1 {
            usize::from(self.db.exists(&keys[0].key_bytes(), self.now))
        } else {
            let mut seen = HashSet::new();
            keys.iter()
                .filter(|&k| {
                    let b = k.key_bytes();
                    self.db.exists(&b, self.now) && seen.insert(b)
                })
                .count()
        };
        if n == 0 {
            return self.int(0);
        }
        let record = LogRecord::Request(self.args.len());
        self.reply.integer(n as i64)?;
        for k in keys {
            self.db.del(&k.key_bytes(), self.now);
        }
        Ok(Some(record))
    }

    fn exists(&mut self) -> Outcome {
        let now = self.now;
        let n = self.args[1..]
            .iter()
            .filter(|k| self.db.exists(&k.key_bytes(), now))
            .count();
        self.int(n as i64)
    }

    fn mget(&mut self) -> Outcome {
        let keys = &self.args[1..];
        self.reply.array(keys.len())?;
        for k in keys {
            match self.db.get(&k.key_bytes(), self.now) {
                Some(v) => self.reply.bulk_chain(v)?,
                None => self.reply.null_bulk()?,
            }
        }
        Ok(None)
    }

    fn mset(&mut self) -> Outcome {
        if self.args.len() % 2 == 0 {
            return self.fail(&arity_error(self.spec));
        }
        let record = LogRecord::Request(self.args.len());
        self.reply.simple("OK")?;
        for pair in self.args[1..].chunks_exact(2) {
            self.db.set(&pair[0].key_bytes(), pair[1].clone(), None);
        }
        Ok(Some(record))
    }

    fn incr_by(&mut self, incr: i64) -> Outcome {
        let key = self.args[1].key_bytes();
        let (old, expire_at) = match self.db.get_with_expiry(&key, self.now) {
            None => (0, None),
            Some((v, e)) => match parse_i64(v) {
                Some(n) => (n, e),
                None => return self.fail(NOT_INT),
            },
        };
        let Some(new) = old.checked_add(incr) else {
            return self.fail(OVERFLOW);
        };
        let arena = self.reply.arena();
        let mut digits = itoa_buf(new);
        let digits = digits.format();
        let (value, record) = match expire_at {
            None => {
                let [name, value] = synth(arena, [b"SET".as_slice(), digits])?;
                let record = LogRecord::Built(vec![name, self.args[1].clone(), value.clone()]);
                (value, record)
            }
            Some(at) => {
                let mut t = itoa_buf(at as i64);
                let [name, value, px, at] =
                    synth(arena, [b"SET".as_slice(), digits, b"PXAT", t.format()])?;
                let record =
                    LogRecord::Built(vec![name, self.args[1].clone(), value.clone(), px, at]);
                (value, record)
            }
        };
        self.reply.integer(new)?;
        self.db.set(&key, value, expire_at);
        Ok(Some(record))
    }

    fn append(&mut self) -> Outcome {
        let key = self.args[1].key_bytes();
        let data = &self.args[2];
        let current = self.db.get(&key, self.now).map(BufChain::len);
        let new_len = current.unwrap_or(0).saturating_add(data.len());
        if new_len > MAX_STRING_LEN {
            return self.fail(TOO_BIG);
        }
        if current.is_some() && data.is_empty() {
            return self.int(new_len as i64);
        }
        let arena = self.reply.arena();
        let record = if current.is_some() {
            LogRecord::Request(self.args.len())
        } else {
            let [name] = synth(arena, [b"SET".as_slice()])?;
            LogRecord::Built(vec![name, self.args[1].clone(), data.clone()])
        };
        self.reply.integer(new_len as i64)?;
        self.db.append(&key, data, arena, self.now)?;
        Ok(Some(record))
    }

    fn strlen(&mut self) -> Outcome {
        let len = self
            .db
            .get(&self.args[1].key_bytes(), self.now)
            .map_or(0, BufChain::len);
        self.int(len as i64)
    }

    fn expire(&mut self, seconds: bool, relative: bool) -> Outcome {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for opt in &self.args[3..] {
            let t = Token::of(opt);
            if t.is("nx") {
                nx = true;
            } else if t.is("xx") {
                xx = true;
            } else if t.is("gt") {
                gt = true;
            } else if t.is("lt") {
                lt = true;
            } else {
                return self.unsupported_option(opt);
            }
        }
        if nx && (xx || gt || lt) {
            return self
                .fail("ERR NX and XX, GT or LT options at the same time are not compatible");
        }
        if gt && lt {
            return self.fail("ERR GT and LT options at the same time are not compatible");
        }
        let Some(when) = parse_i64(&self.args[2]) else {
            return self.fail(NOT_INT);
        };
        // Redis's expireGenericCommand: EXPIRE accepts negative times (the key goes at
        // once) and refuses only what overflows.
        let when = if seconds {
            if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
                return self.fail(&self.invalid_expire());
            }
            when * 1000
        } else {
            when
        };
        let base = if relative { self.now_i } else { 0 };
        let Some(when) = when.checked_add(base) else {
            return self.fail(&self.invalid_expire());
        };
        let key = self.args[1].key_bytes();
        let Some((_, current)) = self.db.get_with_expiry(&key, self.now) else {
            return self.int(0);
        };
        let current = current.map(|c| c as i64);
        let refused = (nx && current.is_some())
            || (xx && current.is_none())
            || (gt && current.is_none_or(|c| when <= c))
            || (lt && current.is_some_and(|c| when >= c));
        if refused {
            return self.int(0);
        }
        let arena = self.reply.arena();
        if when <= self.now_i {
            let record = del_record(arena, &self.args[1])?;
            self.reply.integer(1)?;
            self.db.del(&key, self.now);
            return Ok(Some(record));
        }
        let mut t = itoa_buf(when);
        let [name, at] = synth(arena, [b"PEXPIREAT".as_slice(), t.format()])?;
        let record = LogRecord::Built(vec![name, self.args[1].clone(), at]);
        self.reply.integer(1)?;
        self.db.set_expire(&key, Some(when as u64), self.now);
        Ok(Some(record))
    }

    /// "ERR Unsupported option <opt>", with Redis's treatment of the text: cut at a NUL,
    /// trailing `\r`/`\n` trimmed, inner ones turned into spaces.
    fn unsupported_option(&mut self, opt: &BufChain) -> Outcome {
        let mut msg = b"-ERR Unsupported option ".to_vec();
        push_c_prefix(&mut msg, opt, OPTION_QUOTE_LIMIT);
        while msg.last().is_some_and(|&b| b == b'\r' || b == b'\n') {
            msg.pop();
        }
        sanitize(&mut msg);
        msg.extend_from_slice(b"\r\n");
        let arena = self.reply.arena();
        self.reply.out.append_slice(arena, &msg)?;
        Ok(None)
    }

    fn ttl(&mut self, ms: bool) -> Outcome {
        let ttl = match self.db.get_with_expiry(&self.args[1].key_bytes(), self.now) {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(at))) => {
                let left = (at as i64).saturating_sub(self.now_i).max(0);
                if ms {
                    left
                } else {
                    left.saturating_add(500) / 1000
                }
            }
        };
        self.int(ttl)
    }

    fn persist(&mut self) -> Outcome {
        let key = self.args[1].key_bytes();
        match self.db.get_with_expiry(&key, self.now) {
            Some((_, Some(_))) => {
                let record = LogRecord::Request(self.args.len());
                self.reply.integer(1)?;
                self.db.set_expire(&key, None, self.now);
                Ok(Some(record))
            }
            _ => self.int(0),
        }
    }

    fn flushall(&mut self) -> Outcome {
        let ok = match self.args.get(1) {
            None => true,
            Some(mode) => {
                let t = Token::of(mode);
                self.args.len() == 2 && (t.is("sync") || t.is("async"))
            }
        };
        if !ok {
            return self.fail(SYNTAX);
        }
        let record = (self.db.len() > 0).then(|| LogRecord::Built(vec![self.args[0].clone()]));
        self.reply.simple("OK")?;
        self.db.flush();
        Ok(record)
    }
}

/// Redis's getExpireMillisecondsOrReply: `n` must be positive, is scaled from seconds,
/// and is added to `now` for relative times; `None` is "invalid expire time".
fn expire_time(n: i64, seconds: bool, now: Option<i64>) -> Option<u64> {
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return None;
    }
    let ms = if seconds { n * 1000 } else { n };
    let ms = match now {
        Some(now) => ms.checked_add(now)?,
        None => ms,
    };
    u64::try_from(ms).ok().filter(|&ms| ms > 0)
}

/// Applies a [`LogRecord`] (as the WAL returns it) to `db` without a reply. Nothing is
/// treated as expired (time is 0): the record already says what happened. `arena`
/// supplies blocks for `APPEND`. An unknown or malformed record is an error naming it.
pub fn replay(db: &mut Db, record_args: &[BufChain], arena: &Arena) -> Result<(), String> {
    let args = record_args;
    let bad = || {
        let name = args
            .first()
            .map(|a| {
                let mut v = Vec::new();
                push_c_prefix(&mut v, a, 32);
                String::from_utf8_lossy(&v).into_owned()
            })
            .unwrap_or_default();
        format!(
            "unsupported log record '{name}' with {} argument(s)",
            args.len()
        )
    };
    let Some(name) = args.first().map(Token::of) else {
        return Err(bad());
    };
    let at = |c: &BufChain| {
        parse_i64(c)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("bad expiry time in log record ({} argument(s))", args.len()))
    };
    let n = args.len();
    if name.is("set") && n == 3 {
        db.set(&args[1].key_bytes(), args[2].clone(), None);
    } else if name.is("set") && n == 5 && Token::of(&args[3]).is("pxat") {
        db.set(&args[1].key_bytes(), args[2].clone(), Some(at(&args[4])?));
    } else if name.is("del") && n >= 2 {
        for k in &args[1..] {
            db.del(&k.key_bytes(), 0);
        }
    } else if name.is("append") && n == 3 {
        let key = args[1].key_bytes();
        let len = db.get(&key, 0).map_or(0, BufChain::len);
        if len.saturating_add(args[2].len()) > MAX_STRING_LEN {
            return Err("log record APPEND exceeds the string limit".to_string());
        }
        db.append(&key, &args[2], arena, 0)
            .map_err(|e| format!("replaying APPEND: {e}"))?;
    } else if name.is("pexpireat") && n == 3 {
        db.set_expire(&args[1].key_bytes(), Some(at(&args[2])?), 0);
    } else if name.is("persist") && n == 2 {
        db.set_expire(&args[1].key_bytes(), None, 0);
    } else if name.is("mset") && n >= 3 && n % 2 == 1 {
        for pair in args[1..].chunks_exact(2) {
            db.set(&pair[0].key_bytes(), pair[1].clone(), None);
        }
    } else if name.is("flushall") && n == 1 {
        db.flush();
    } else {
        return Err(bad());
    }
    Ok(())
}

/// Serves `COMMAND` and its subcommands `COUNT`, `INFO` and `DOCS`; `args` is the whole
/// command, `args[0]` being `COMMAND`. Replies as Redis 7.0 does, in RESP2 (maps as flat
/// arrays), for the commands of this server. An unknown subcommand or a wrong count gets
/// Redis's error.
pub fn command_reply(reply: &mut Reply, args: &[BufChain]) -> Result<(), PoolError> {
    let Some(sub) = args.get(1) else {
        return write_all_info(reply);
    };
    let sub = sub.key_bytes();
    let Some(spec) = lookup_subcommand(&SPEC_COMMAND, &sub) else {
        return reply.error(&unknown_subcommand_error(&SPEC_COMMAND, &sub));
    };
    if let Err(msg) = check_arity(spec, args.len()) {
        return reply.error(&msg);
    }
    let args = &args[2..];
    match spec.cmd {
        Cmd::CommandCount => reply.integer(TABLE.len() as i64),
        Cmd::CommandInfo if args.is_empty() => write_all_info(reply),
        Cmd::CommandInfo => {
            reply.array(args.len())?;
            for a in args {
                match lookup_path(&a.key_bytes()) {
                    Some(s) => write_info(reply, s)?,
                    None => reply.null_bulk()?,
                }
            }
            Ok(())
        }
        Cmd::CommandDocs => {
            let found: Vec<&CommandSpec> = if args.is_empty() {
                TABLE.to_vec()
            } else {
                args.iter()
                    .filter_map(|a| lookup_path(&a.key_bytes()))
                    .collect()
            };
            reply.array(2 * found.len())?;
            for s in found {
                reply.bulk(s.name.as_bytes())?;
                write_docs(reply, s)?;
            }
            Ok(())
        }
        _ => reply.error(&unknown_subcommand_error(&SPEC_COMMAND, &sub)),
    }
}

fn write_all_info(reply: &mut Reply) -> Result<(), PoolError> {
    reply.array(TABLE.len())?;
    TABLE.iter().try_for_each(|s| write_info(reply, s))
}

fn write_flags<T: Copy + Into<u32>>(
    reply: &mut Reply,
    bits: T,
    names: &[(T, &str)],
) -> Result<(), PoolError> {
    let bits: u32 = bits.into();
    let set = || names.iter().filter(move |(b, _)| bits & (*b).into() != 0);
    reply.array(set().count())?;
    set().try_for_each(|(_, name)| reply.simple(name))
}

/// One `COMMAND INFO` entry: the ten fields of Redis 7.0.
fn write_info(reply: &mut Reply, s: &CommandSpec) -> Result<(), PoolError> {
    reply.array(10)?;
    reply.bulk(s.name.as_bytes())?;
    reply.integer(i64::from(s.arity))?;
    write_flags(reply, s.flags, &flag::NAMES)?;
    reply.integer(i64::from(s.first_key))?;
    reply.integer(i64::from(s.last_key))?;
    reply.integer(i64::from(s.step))?;
    write_flags(reply, s.acl, &acl::NAMES)?;
    reply.array(s.tips.len())?;
    for tip in s.tips {
        reply.bulk(tip.as_bytes())?;
    }
    reply.array(s.key_specs.len())?;
    for k in s.key_specs {
        reply.array(if k.notes.is_some() { 8 } else { 6 })?;
        if let Some(notes) = k.notes {
            reply.bulk(b"notes")?;
            reply.bulk(notes.as_bytes())?;
        }
        reply.bulk(b"flags")?;
        write_flags(reply, k.flags, &ks::NAMES)?;
        reply.bulk(b"begin_search")?;
        reply.array(4)?;
        reply.bulk(b"type")?;
        reply.bulk(b"index")?;
        reply.bulk(b"spec")?;
        reply.array(2)?;
        reply.bulk(b"index")?;
        reply.integer(i64::from(k.begin_index))?;
        reply.bulk(b"find_keys")?;
        reply.array(4)?;
        reply.bulk(b"type")?;
        reply.bulk(b"range")?;
        reply.bulk(b"spec")?;
        reply.array(6)?;
        reply.bulk(b"lastkey")?;
        reply.integer(i64::from(k.last_key))?;
        reply.bulk(b"keystep")?;
        reply.integer(i64::from(k.key_step))?;
        reply.bulk(b"limit")?;
        reply.integer(i64::from(k.limit))?;
    }
    reply.array(s.subcommands.len())?;
    s.subcommands
        .iter()
        .try_for_each(|sub| write_info(reply, sub))
}

/// One `COMMAND DOCS` map, flattened.
fn write_docs(reply: &mut Reply, s: &CommandSpec) -> Result<(), PoolError> {
    let d = &s.docs;
    let fields = 4
        + usize::from(!d.history.is_empty())
        + usize::from(!d.arguments.is_empty())
        + usize::from(!s.subcommands.is_empty());
    reply.array(2 * fields)?;
    for (k, v) in [
        ("summary", d.summary),
        ("since", d.since),
        ("group", d.group),
        ("complexity", d.complexity),
    ] {
        reply.bulk(k.as_bytes())?;
        reply.bulk(v.as_bytes())?;
    }
    if !d.history.is_empty() {
        reply.bulk(b"history")?;
        reply.array(d.history.len())?;
        for (version, change) in d.history {
            reply.array(2)?;
            reply.bulk(version.as_bytes())?;
            reply.bulk(change.as_bytes())?;
        }
    }
    if !d.arguments.is_empty() {
        reply.bulk(b"arguments")?;
        write_args(reply, d.arguments)?;
    }
    if !s.subcommands.is_empty() {
        reply.bulk(b"subcommands")?;
        reply.array(2 * s.subcommands.len())?;
        for sub in s.subcommands {
            reply.bulk(sub.name.as_bytes())?;
            write_docs(reply, sub)?;
        }
    }
    Ok(())
}

fn write_args(reply: &mut Reply, args: &[Arg]) -> Result<(), PoolError> {
    reply.array(args.len())?;
    for a in args {
        let fields = 2
            + usize::from(a.key_spec_index.is_some())
            + usize::from(a.token.is_some())
            + usize::from(a.since.is_some())
            + usize::from(a.flags != 0)
            + usize::from(!a.args.is_empty());
        reply.array(2 * fields)?;
        reply.bulk(b"name")?;
        reply.bulk(a.name.as_bytes())?;
        reply.bulk(b"type")?;
        reply.bulk(a.kind.as_str().as_bytes())?;
        if let Some(i) = a.key_spec_index {
            reply.bulk(b"key_spec_index")?;
            reply.integer(i64::from(i))?;
        }
        if let Some(token) = a.token {
            reply.bulk(b"token")?;
            reply.bulk(token.as_bytes())?;
        }
        if let Some(since) = a.since {
            reply.bulk(b"since")?;
            reply.bulk(since.as_bytes())?;
        }
        if a.flags != 0 {
            reply.bulk(b"flags")?;
            write_flags(reply, a.flags, &arg::NAMES)?;
        }
        if !a.args.is_empty() {
            reply.bulk(b"arguments")?;
            write_args(reply, a.args)?;
        }
    }
    Ok(())
}

// The table below was generated from a live redis-server 7.0.15 (`COMMAND INFO` and
// `COMMAND DOCS` of each command), keeping only the subcommands this server serves.

/// Every top-level command, sorted by name for [`lookup`].
static TABLE: [&CommandSpec; 37] = [
    &SPEC_APPEND,
    &SPEC_AUTH,
    &SPEC_CLIENT,
    &SPEC_COMMAND,
    &SPEC_CONFIG,
    &SPEC_DBSIZE,
    &SPEC_DECR,
    &SPEC_DECRBY,
    &SPEC_DEL,
    &SPEC_ECHO,
    &SPEC_EXISTS,
    &SPEC_EXPIRE,
    &SPEC_EXPIREAT,
    &SPEC_FLUSHALL,
    &SPEC_GET,
    &SPEC_GETDEL,
    &SPEC_HELLO,
    &SPEC_INCR,
    &SPEC_INCRBY,
    &SPEC_INFO,
    &SPEC_MGET,
    &SPEC_MSET,
    &SPEC_PERSIST,
    &SPEC_PEXPIRE,
    &SPEC_PEXPIREAT,
    &SPEC_PING,
    &SPEC_PSUBSCRIBE,
    &SPEC_PTTL,
    &SPEC_PUBLISH,
    &SPEC_PUNSUBSCRIBE,
    &SPEC_QUIT,
    &SPEC_SELECT,
    &SPEC_SET,
    &SPEC_STRLEN,
    &SPEC_SUBSCRIBE,
    &SPEC_TTL,
    &SPEC_UNSUBSCRIBE,
];

static SPEC_APPEND: CommandSpec = CommandSpec {
    name: "append",
    cmd: Cmd::Append,
    scope: Scope::Key,
    arity: 3,
    flags: flag::WRITE | flag::DENYOOM | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec { notes: None, flags: ks::RW | ks::INSERT, begin_index: 1, last_key: 0, key_step: 1, limit: 0 }],
    subcommands: &[],
    docs: Docs {
        summary: "Append a value to a key",
        since: "2.0.0",
        group: "string",
        complexity: "O(1). The amortized time complexity is O(1) assuming the appended value is small and the already present value is of any size, since the dynamic string library used by Redis will double the free space available on every reallocation.",
        history: &[],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("value", ArgKind::String),
        ],
    },
};

static SPEC_AUTH: CommandSpec = CommandSpec {
    name: "auth",
    cmd: Cmd::Auth,
    scope: Scope::Connection,
    arity: -2,
    flags: flag::NOSCRIPT
        | flag::LOADING
        | flag::STALE
        | flag::FAST
        | flag::NO_AUTH
        | flag::ALLOW_BUSY,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::FAST | acl::CONNECTION,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Authenticate to the server",
        since: "1.0.0",
        group: "connection",
        complexity: "O(N) where N is the number of passwords defined for the user",
        history: &[("6.0.0", "Added ACL style (username and password).")],
        arguments: &[
            Arg::new("username", ArgKind::String)
                .since("6.0.0")
                .flags(arg::OPTIONAL),
            Arg::new("password", ArgKind::String),
        ],
    },
};

static SPEC_CLIENT: CommandSpec = CommandSpec {
    name: "client",
    cmd: Cmd::Client,
    scope: Scope::Connection,
    arity: -2,
    flags: 0,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::SLOW,
    tips: &[],
    key_specs: &[],
    subcommands: &[
        CommandSpec {
            name: "client|getname",
            cmd: Cmd::ClientGetName,
            scope: Scope::Connection,
            arity: 2,
            flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &[],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Get the current connection name",
                since: "2.6.9",
                group: "connection",
                complexity: "O(1)",
                history: &[],
                arguments: &[],
            },
        },
        CommandSpec {
            name: "client|id",
            cmd: Cmd::ClientId,
            scope: Scope::Connection,
            arity: 2,
            flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &[],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Returns the client ID for the current connection",
                since: "5.0.0",
                group: "connection",
                complexity: "O(1)",
                history: &[],
                arguments: &[],
            },
        },
        CommandSpec {
            name: "client|info",
            cmd: Cmd::ClientInfo,
            scope: Scope::Connection,
            arity: 2,
            flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &["nondeterministic_output"],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Returns information about the current client connection.",
                since: "6.2.0",
                group: "connection",
                complexity: "O(1)",
                history: &[],
                arguments: &[],
            },
        },
        CommandSpec {
            name: "client|list",
            cmd: Cmd::ClientList,
            scope: Scope::Connection,
            arity: -2,
            flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::ADMIN | acl::SLOW | acl::DANGEROUS | acl::CONNECTION,
            tips: &["nondeterministic_output"],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Get the list of client connections",
                since: "2.4.0",
                group: "connection",
                complexity: "O(N) where N is the number of client connections",
                history: &[("2.8.12", "Added unique client `id` field."), ("5.0.0", "Added optional `TYPE` filter."), ("6.0.0", "Added `user` field."), ("6.2.0", "Added `argv-mem`, `tot-mem`, `laddr` and `redir` fields and the optional `ID` filter."), ("7.0.0", "Added `resp`, `multi-mem`, `rbs` and `rbp` fields."), ("7.0.3", "Added `ssub` field.")],
                arguments: &[
                    Arg::new("normal_master_replica_pubsub", ArgKind::OneOf).token("TYPE").since("5.0.0").flags(arg::OPTIONAL).args(&[
                        Arg::new("normal", ArgKind::PureToken).token("NORMAL"),
                        Arg::new("master", ArgKind::PureToken).token("MASTER"),
                        Arg::new("replica", ArgKind::PureToken).token("REPLICA"),
                        Arg::new("pubsub", ArgKind::PureToken).token("PUBSUB"),
                    ]),
                    Arg::new("id", ArgKind::Block).token("ID").since("6.2.0").flags(arg::OPTIONAL).args(&[
                        Arg::new("client-id", ArgKind::Integer).flags(arg::MULTIPLE),
                    ]),
                ],
            },
        },
        CommandSpec {
            name: "client|setname",
            cmd: Cmd::ClientSetName,
            scope: Scope::Connection,
            arity: 3,
            flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &[],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Set the current connection name",
                since: "2.6.9",
                group: "connection",
                complexity: "O(1)",
                history: &[],
                arguments: &[
                    Arg::new("connection-name", ArgKind::String),
                ],
            },
        },
    ],
    docs: Docs {
        summary: "A container for client connection commands",
        since: "2.4.0",
        group: "connection",
        complexity: "Depends on subcommand.",
        history: &[],
        arguments: &[],
    },
};

static SPEC_COMMAND: CommandSpec = CommandSpec {
    name: "command",
    cmd: Cmd::Command,
    scope: Scope::Connection,
    arity: -1,
    flags: flag::LOADING | flag::STALE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::SLOW | acl::CONNECTION,
    tips: &["nondeterministic_output_order"],
    key_specs: &[],
    subcommands: &[
        CommandSpec {
            name: "command|count",
            cmd: Cmd::CommandCount,
            scope: Scope::Connection,
            arity: 2,
            flags: flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &[],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Get total number of Redis commands",
                since: "2.8.13",
                group: "server",
                complexity: "O(1)",
                history: &[],
                arguments: &[],
            },
        },
        CommandSpec {
            name: "command|docs",
            cmd: Cmd::CommandDocs,
            scope: Scope::Connection,
            arity: -2,
            flags: flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &["nondeterministic_output_order"],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Get array of specific Redis command documentation",
                since: "7.0.0",
                group: "server",
                complexity: "O(N) where N is the number of commands to look up",
                history: &[],
                arguments: &[
                    Arg::new("command-name", ArgKind::String).flags(arg::OPTIONAL | arg::MULTIPLE)
                ],
            },
        },
        CommandSpec {
            name: "command|info",
            cmd: Cmd::CommandInfo,
            scope: Scope::Connection,
            arity: -2,
            flags: flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::SLOW | acl::CONNECTION,
            tips: &["nondeterministic_output_order"],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary:
                    "Get array of specific Redis command details, or all when no argument is given.",
                since: "2.8.13",
                group: "server",
                complexity: "O(N) where N is the number of commands to look up",
                history: &[(
                    "7.0.0",
                    "Allowed to be called with no argument to get info on all commands.",
                )],
                arguments: &[
                    Arg::new("command-name", ArgKind::String).flags(arg::OPTIONAL | arg::MULTIPLE)
                ],
            },
        },
    ],
    docs: Docs {
        summary: "Get array of Redis command details",
        since: "2.8.13",
        group: "server",
        complexity: "O(N) where N is the total number of Redis commands",
        history: &[],
        arguments: &[],
    },
};

static SPEC_CONFIG: CommandSpec = CommandSpec {
    name: "config",
    cmd: Cmd::Config,
    scope: Scope::Connection,
    arity: -2,
    flags: 0,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::SLOW,
    tips: &[],
    key_specs: &[],
    subcommands: &[
        CommandSpec {
            name: "config|get",
            cmd: Cmd::ConfigGet,
            scope: Scope::Connection,
            arity: -3,
            flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::ADMIN | acl::SLOW | acl::DANGEROUS,
            tips: &[],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Get the values of configuration parameters",
                since: "2.0.0",
                group: "server",
                complexity: "O(N) when N is the number of configuration parameters provided",
                history: &[(
                    "7.0.0",
                    "Added the ability to pass multiple pattern parameters in one call",
                )],
                arguments: &[Arg::new("parameter", ArgKind::Block)
                    .flags(arg::MULTIPLE)
                    .args(&[Arg::new("parameter", ArgKind::String)])],
            },
        },
        CommandSpec {
            name: "config|resetstat",
            cmd: Cmd::ConfigResetStat,
            scope: Scope::Connection,
            arity: 2,
            flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::ADMIN | acl::SLOW | acl::DANGEROUS,
            tips: &[],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Reset the stats returned by INFO",
                since: "2.0.0",
                group: "server",
                complexity: "O(1)",
                history: &[],
                arguments: &[],
            },
        },
        CommandSpec {
            name: "config|set",
            cmd: Cmd::ConfigSet,
            scope: Scope::Connection,
            arity: -4,
            flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl: acl::ADMIN | acl::SLOW | acl::DANGEROUS,
            tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
            key_specs: &[],
            subcommands: &[],
            docs: Docs {
                summary: "Set configuration parameters to the given values",
                since: "2.0.0",
                group: "server",
                complexity: "O(N) when N is the number of configuration parameters provided",
                history: &[(
                    "7.0.0",
                    "Added the ability to set multiple parameters in one call.",
                )],
                arguments: &[Arg::new("parameter_value", ArgKind::Block)
                    .flags(arg::MULTIPLE)
                    .args(&[
                        Arg::new("parameter", ArgKind::String),
                        Arg::new("value", ArgKind::String),
                    ])],
            },
        },
    ],
    docs: Docs {
        summary: "A container for server configuration commands",
        since: "2.0.0",
        group: "server",
        complexity: "Depends on subcommand.",
        history: &[],
        arguments: &[],
    },
};

static SPEC_DBSIZE: CommandSpec = CommandSpec {
    name: "dbsize",
    cmd: Cmd::DbSize,
    scope: Scope::AllShards,
    arity: 1,
    flags: flag::READONLY | flag::FAST,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::KEYSPACE | acl::READ | acl::FAST,
    tips: &["request_policy:all_shards", "response_policy:agg_sum"],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Return the number of keys in the selected database",
        since: "1.0.0",
        group: "server",
        complexity: "O(1)",
        history: &[],
        arguments: &[],
    },
};

static SPEC_DECR: CommandSpec = CommandSpec {
    name: "decr",
    cmd: Cmd::Decr,
    scope: Scope::Key,
    arity: 2,
    flags: flag::WRITE | flag::DENYOOM | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::ACCESS | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Decrement the integer value of a key by one",
        since: "1.0.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_DECRBY: CommandSpec = CommandSpec {
    name: "decrby",
    cmd: Cmd::DecrBy,
    scope: Scope::Key,
    arity: 3,
    flags: flag::WRITE | flag::DENYOOM | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::ACCESS | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Decrement the integer value of a key by the given number",
        since: "1.0.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("decrement", ArgKind::Integer),
        ],
    },
};

static SPEC_DEL: CommandSpec = CommandSpec {
    name: "del",
    cmd: Cmd::Del,
    scope: Scope::MultiKey,
    arity: -2,
    flags: flag::WRITE,
    first_key: 1,
    last_key: -1,
    step: 1,
    acl: acl::KEYSPACE | acl::WRITE | acl::SLOW,
    tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
    key_specs: &[KeySpec { notes: None, flags: ks::RM | ks::DELETE, begin_index: 1, last_key: -1, key_step: 1, limit: 0 }],
    subcommands: &[],
    docs: Docs {
        summary: "Delete a key",
        since: "1.0.0",
        group: "generic",
        complexity: "O(N) where N is the number of keys that will be removed. When a key to remove holds a value other than a string, the individual complexity for this key is O(M) where M is the number of elements in the list, set, sorted set or hash. Removing a single key that holds a string value is O(1).",
        history: &[],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0).flags(arg::MULTIPLE),
        ],
    },
};

static SPEC_ECHO: CommandSpec = CommandSpec {
    name: "echo",
    cmd: Cmd::Echo,
    scope: Scope::Connection,
    arity: 2,
    flags: flag::LOADING | flag::STALE | flag::FAST,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::FAST | acl::CONNECTION,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Echo the given string",
        since: "1.0.0",
        group: "connection",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("message", ArgKind::String)],
    },
};

static SPEC_EXISTS: CommandSpec = CommandSpec {
    name: "exists",
    cmd: Cmd::Exists,
    scope: Scope::MultiKey,
    arity: -2,
    flags: flag::READONLY | flag::FAST,
    first_key: 1,
    last_key: -1,
    step: 1,
    acl: acl::KEYSPACE | acl::READ | acl::FAST,
    tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RO,
        begin_index: 1,
        last_key: -1,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Determine if a key exists",
        since: "1.0.0",
        group: "generic",
        complexity: "O(N) where N is the number of keys to check.",
        history: &[("3.0.3", "Accepts multiple `key` arguments.")],
        arguments: &[Arg::new("key", ArgKind::Key)
            .key_spec(0)
            .flags(arg::MULTIPLE)],
    },
};

static SPEC_EXPIRE: CommandSpec = CommandSpec {
    name: "expire",
    cmd: Cmd::Expire,
    scope: Scope::Key,
    arity: -3,
    flags: flag::WRITE | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::WRITE | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Set a key's time to live in seconds",
        since: "1.0.0",
        group: "generic",
        complexity: "O(1)",
        history: &[("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`.")],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("seconds", ArgKind::Integer),
            Arg::new("condition", ArgKind::OneOf)
                .since("7.0.0")
                .flags(arg::OPTIONAL)
                .args(&[
                    Arg::new("nx", ArgKind::PureToken).token("NX"),
                    Arg::new("xx", ArgKind::PureToken).token("XX"),
                    Arg::new("gt", ArgKind::PureToken).token("GT"),
                    Arg::new("lt", ArgKind::PureToken).token("LT"),
                ]),
        ],
    },
};

static SPEC_EXPIREAT: CommandSpec = CommandSpec {
    name: "expireat",
    cmd: Cmd::ExpireAt,
    scope: Scope::Key,
    arity: -3,
    flags: flag::WRITE | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::WRITE | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Set the expiration for a key as a UNIX timestamp",
        since: "1.2.0",
        group: "generic",
        complexity: "O(1)",
        history: &[("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`.")],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("unix-time-seconds", ArgKind::UnixTime),
            Arg::new("condition", ArgKind::OneOf)
                .since("7.0.0")
                .flags(arg::OPTIONAL)
                .args(&[
                    Arg::new("nx", ArgKind::PureToken).token("NX"),
                    Arg::new("xx", ArgKind::PureToken).token("XX"),
                    Arg::new("gt", ArgKind::PureToken).token("GT"),
                    Arg::new("lt", ArgKind::PureToken).token("LT"),
                ]),
        ],
    },
};

static SPEC_FLUSHALL: CommandSpec = CommandSpec {
    name: "flushall",
    cmd: Cmd::FlushAll,
    scope: Scope::AllShards,
    arity: -1,
    flags: flag::WRITE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::KEYSPACE | acl::WRITE | acl::SLOW | acl::DANGEROUS,
    tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Remove all keys from all databases",
        since: "1.0.0",
        group: "server",
        complexity: "O(N) where N is the total number of keys in all databases",
        history: &[
            ("4.0.0", "Added the `ASYNC` flushing mode modifier."),
            ("6.2.0", "Added the `SYNC` flushing mode modifier."),
        ],
        arguments: &[Arg::new("async", ArgKind::OneOf)
            .flags(arg::OPTIONAL)
            .args(&[
                Arg::new("async", ArgKind::PureToken)
                    .token("ASYNC")
                    .since("4.0.0"),
                Arg::new("sync", ArgKind::PureToken)
                    .token("SYNC")
                    .since("6.2.0"),
            ])],
    },
};

static SPEC_GET: CommandSpec = CommandSpec {
    name: "get",
    cmd: Cmd::Get,
    scope: Scope::Key,
    arity: 2,
    flags: flag::READONLY | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::READ | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RO | ks::ACCESS,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Get the value of a key",
        since: "1.0.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_GETDEL: CommandSpec = CommandSpec {
    name: "getdel",
    cmd: Cmd::GetDel,
    scope: Scope::Key,
    arity: 2,
    flags: flag::WRITE | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::ACCESS | ks::DELETE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Get the value of a key and delete the key",
        since: "6.2.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_HELLO: CommandSpec = CommandSpec {
    name: "hello",
    cmd: Cmd::Hello,
    scope: Scope::Connection,
    arity: -1,
    flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST | flag::NO_AUTH | flag::ALLOW_BUSY,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::FAST | acl::CONNECTION,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Handshake with Redis",
        since: "6.0.0",
        group: "connection",
        complexity: "O(1)",
        history: &[("6.2.0", "`protover` made optional; when called without arguments the command reports the current connection's context.")],
        arguments: &[
            Arg::new("arguments", ArgKind::Block).flags(arg::OPTIONAL).args(&[
                Arg::new("protover", ArgKind::Integer),
                Arg::new("username_password", ArgKind::Block).token("AUTH").flags(arg::OPTIONAL).args(&[
                    Arg::new("username", ArgKind::String),
                    Arg::new("password", ArgKind::String),
                ]),
                Arg::new("clientname", ArgKind::String).token("SETNAME").flags(arg::OPTIONAL),
            ]),
        ],
    },
};

static SPEC_INCR: CommandSpec = CommandSpec {
    name: "incr",
    cmd: Cmd::Incr,
    scope: Scope::Key,
    arity: 2,
    flags: flag::WRITE | flag::DENYOOM | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::ACCESS | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Increment the integer value of a key by one",
        since: "1.0.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_INCRBY: CommandSpec = CommandSpec {
    name: "incrby",
    cmd: Cmd::IncrBy,
    scope: Scope::Key,
    arity: 3,
    flags: flag::WRITE | flag::DENYOOM | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::ACCESS | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Increment the integer value of a key by the given amount",
        since: "1.0.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("increment", ArgKind::Integer),
        ],
    },
};

static SPEC_INFO: CommandSpec = CommandSpec {
    name: "info",
    cmd: Cmd::Info,
    scope: Scope::Connection,
    arity: -1,
    flags: flag::LOADING | flag::STALE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::SLOW | acl::DANGEROUS,
    tips: &[
        "nondeterministic_output",
        "request_policy:all_shards",
        "response_policy:special",
    ],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Get information and statistics about the server",
        since: "1.0.0",
        group: "server",
        complexity: "O(1)",
        history: &[(
            "7.0.0",
            "Added support for taking multiple section arguments.",
        )],
        arguments: &[Arg::new("section", ArgKind::String).flags(arg::OPTIONAL | arg::MULTIPLE)],
    },
};

static SPEC_MGET: CommandSpec = CommandSpec {
    name: "mget",
    cmd: Cmd::MGet,
    scope: Scope::MultiKey,
    arity: -2,
    flags: flag::READONLY | flag::FAST,
    first_key: 1,
    last_key: -1,
    step: 1,
    acl: acl::READ | acl::STRING | acl::FAST,
    tips: &["request_policy:multi_shard"],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RO | ks::ACCESS,
        begin_index: 1,
        last_key: -1,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Get the values of all the given keys",
        since: "1.0.0",
        group: "string",
        complexity: "O(N) where N is the number of keys to retrieve.",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key)
            .key_spec(0)
            .flags(arg::MULTIPLE)],
    },
};

static SPEC_MSET: CommandSpec = CommandSpec {
    name: "mset",
    cmd: Cmd::MSet,
    scope: Scope::MultiKey,
    arity: -3,
    flags: flag::WRITE | flag::DENYOOM,
    first_key: 1,
    last_key: -1,
    step: 2,
    acl: acl::WRITE | acl::STRING | acl::SLOW,
    tips: &[
        "request_policy:multi_shard",
        "response_policy:all_succeeded",
    ],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::OW | ks::UPDATE,
        begin_index: 1,
        last_key: -1,
        key_step: 2,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Set multiple keys to multiple values",
        since: "1.0.1",
        group: "string",
        complexity: "O(N) where N is the number of keys to set.",
        history: &[],
        arguments: &[Arg::new("key_value", ArgKind::Block)
            .flags(arg::MULTIPLE)
            .args(&[
                Arg::new("key", ArgKind::Key).key_spec(0),
                Arg::new("value", ArgKind::String),
            ])],
    },
};

static SPEC_PERSIST: CommandSpec = CommandSpec {
    name: "persist",
    cmd: Cmd::Persist,
    scope: Scope::Key,
    arity: 2,
    flags: flag::WRITE | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::WRITE | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Remove the expiration from a key",
        since: "2.2.0",
        group: "generic",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_PEXPIRE: CommandSpec = CommandSpec {
    name: "pexpire",
    cmd: Cmd::PExpire,
    scope: Scope::Key,
    arity: -3,
    flags: flag::WRITE | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::WRITE | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Set a key's time to live in milliseconds",
        since: "2.6.0",
        group: "generic",
        complexity: "O(1)",
        history: &[("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`.")],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("milliseconds", ArgKind::Integer),
            Arg::new("condition", ArgKind::OneOf)
                .since("7.0.0")
                .flags(arg::OPTIONAL)
                .args(&[
                    Arg::new("nx", ArgKind::PureToken).token("NX"),
                    Arg::new("xx", ArgKind::PureToken).token("XX"),
                    Arg::new("gt", ArgKind::PureToken).token("GT"),
                    Arg::new("lt", ArgKind::PureToken).token("LT"),
                ]),
        ],
    },
};

static SPEC_PEXPIREAT: CommandSpec = CommandSpec {
    name: "pexpireat",
    cmd: Cmd::PExpireAt,
    scope: Scope::Key,
    arity: -3,
    flags: flag::WRITE | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::WRITE | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RW | ks::UPDATE,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Set the expiration for a key as a UNIX timestamp specified in milliseconds",
        since: "2.6.0",
        group: "generic",
        complexity: "O(1)",
        history: &[("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`.")],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("unix-time-milliseconds", ArgKind::UnixTime),
            Arg::new("condition", ArgKind::OneOf)
                .since("7.0.0")
                .flags(arg::OPTIONAL)
                .args(&[
                    Arg::new("nx", ArgKind::PureToken).token("NX"),
                    Arg::new("xx", ArgKind::PureToken).token("XX"),
                    Arg::new("gt", ArgKind::PureToken).token("GT"),
                    Arg::new("lt", ArgKind::PureToken).token("LT"),
                ]),
        ],
    },
};

static SPEC_PING: CommandSpec = CommandSpec {
    name: "ping",
    cmd: Cmd::Ping,
    scope: Scope::Connection,
    arity: -1,
    flags: flag::FAST,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::FAST | acl::CONNECTION,
    tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Ping the server",
        since: "1.0.0",
        group: "connection",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("message", ArgKind::String).flags(arg::OPTIONAL)],
    },
};

static SPEC_PSUBSCRIBE: CommandSpec = CommandSpec {
    name: "psubscribe",
    cmd: Cmd::PSubscribe,
    scope: Scope::PubSub,
    arity: -2,
    flags: flag::PUBSUB | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::PUBSUB | acl::SLOW,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Listen for messages published to channels matching the given patterns",
        since: "2.0.0",
        group: "pubsub",
        complexity: "O(N) where N is the number of patterns the client is already subscribed to.",
        history: &[],
        arguments: &[Arg::new("pattern", ArgKind::Block)
            .flags(arg::MULTIPLE)
            .args(&[Arg::new("pattern", ArgKind::Pattern)])],
    },
};

static SPEC_PTTL: CommandSpec = CommandSpec {
    name: "pttl",
    cmd: Cmd::PTtl,
    scope: Scope::Key,
    arity: 2,
    flags: flag::READONLY | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::READ | acl::FAST,
    tips: &["nondeterministic_output"],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RO | ks::ACCESS,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Get the time to live for a key in milliseconds",
        since: "2.6.0",
        group: "generic",
        complexity: "O(1)",
        history: &[("2.8.0", "Added the -2 reply.")],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_PUBLISH: CommandSpec = CommandSpec {
    name: "publish",
    cmd: Cmd::Publish,
    scope: Scope::PubSub,
    arity: 3,
    flags: flag::PUBSUB | flag::LOADING | flag::STALE | flag::FAST,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::PUBSUB | acl::FAST,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Post a message to a channel",
        since: "2.0.0",
        group: "pubsub",
        complexity: "O(N+M) where N is the number of clients subscribed to the receiving channel and M is the total number of subscribed patterns (by any client).",
        history: &[],
        arguments: &[
            Arg::new("channel", ArgKind::String),
            Arg::new("message", ArgKind::String),
        ],
    },
};

static SPEC_PUNSUBSCRIBE: CommandSpec = CommandSpec {
    name: "punsubscribe",
    cmd: Cmd::PUnsubscribe,
    scope: Scope::PubSub,
    arity: -1,
    flags: flag::PUBSUB | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::PUBSUB | acl::SLOW,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Stop listening for messages posted to channels matching the given patterns",
        since: "2.0.0",
        group: "pubsub",
        complexity: "O(N+M) where N is the number of patterns the client is already subscribed and M is the number of total patterns subscribed in the system (by any client).",
        history: &[],
        arguments: &[
            Arg::new("pattern", ArgKind::Pattern).flags(arg::OPTIONAL | arg::MULTIPLE),
        ],
    },
};

static SPEC_QUIT: CommandSpec = CommandSpec {
    name: "quit",
    cmd: Cmd::Quit,
    scope: Scope::Connection,
    arity: -1,
    flags: flag::NOSCRIPT
        | flag::LOADING
        | flag::STALE
        | flag::FAST
        | flag::NO_AUTH
        | flag::ALLOW_BUSY,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::FAST | acl::CONNECTION,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Close the connection",
        since: "1.0.0",
        group: "connection",
        complexity: "O(1)",
        history: &[],
        arguments: &[],
    },
};

static SPEC_SELECT: CommandSpec = CommandSpec {
    name: "select",
    cmd: Cmd::Select,
    scope: Scope::Connection,
    arity: 2,
    flags: flag::LOADING | flag::STALE | flag::FAST,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::FAST | acl::CONNECTION,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Change the selected database for the current connection",
        since: "1.0.0",
        group: "connection",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("index", ArgKind::Integer)],
    },
};

static SPEC_SET: CommandSpec = CommandSpec {
    name: "set",
    cmd: Cmd::Set,
    scope: Scope::Key,
    arity: -3,
    flags: flag::WRITE | flag::DENYOOM,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::WRITE | acl::STRING | acl::SLOW,
    tips: &[],
    key_specs: &[KeySpec {
        notes: Some("RW and ACCESS due to the optional `GET` argument"),
        flags: ks::RW | ks::ACCESS | ks::UPDATE | ks::VARIABLE_FLAGS,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Set the string value of a key",
        since: "1.0.0",
        group: "string",
        complexity: "O(1)",
        history: &[
            ("2.6.12", "Added the `EX`, `PX`, `NX` and `XX` options."),
            ("6.0.0", "Added the `KEEPTTL` option."),
            ("6.2.0", "Added the `GET`, `EXAT` and `PXAT` option."),
            (
                "7.0.0",
                "Allowed the `NX` and `GET` options to be used together.",
            ),
        ],
        arguments: &[
            Arg::new("key", ArgKind::Key).key_spec(0),
            Arg::new("value", ArgKind::String),
            Arg::new("condition", ArgKind::OneOf)
                .since("2.6.12")
                .flags(arg::OPTIONAL)
                .args(&[
                    Arg::new("nx", ArgKind::PureToken).token("NX"),
                    Arg::new("xx", ArgKind::PureToken).token("XX"),
                ]),
            Arg::new("get", ArgKind::PureToken)
                .token("GET")
                .since("6.2.0")
                .flags(arg::OPTIONAL),
            Arg::new("expiration", ArgKind::OneOf)
                .flags(arg::OPTIONAL)
                .args(&[
                    Arg::new("seconds", ArgKind::Integer)
                        .token("EX")
                        .since("2.6.12"),
                    Arg::new("milliseconds", ArgKind::Integer)
                        .token("PX")
                        .since("2.6.12"),
                    Arg::new("unix-time-seconds", ArgKind::UnixTime)
                        .token("EXAT")
                        .since("6.2.0"),
                    Arg::new("unix-time-milliseconds", ArgKind::UnixTime)
                        .token("PXAT")
                        .since("6.2.0"),
                    Arg::new("keepttl", ArgKind::PureToken)
                        .token("KEEPTTL")
                        .since("6.0.0"),
                ]),
        ],
    },
};

static SPEC_STRLEN: CommandSpec = CommandSpec {
    name: "strlen",
    cmd: Cmd::StrLen,
    scope: Scope::Key,
    arity: 2,
    flags: flag::READONLY | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::READ | acl::STRING | acl::FAST,
    tips: &[],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RO,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Get the length of the value stored in a key",
        since: "2.2.0",
        group: "string",
        complexity: "O(1)",
        history: &[],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_SUBSCRIBE: CommandSpec = CommandSpec {
    name: "subscribe",
    cmd: Cmd::Subscribe,
    scope: Scope::PubSub,
    arity: -2,
    flags: flag::PUBSUB | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::PUBSUB | acl::SLOW,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Listen for messages published to the given channels",
        since: "2.0.0",
        group: "pubsub",
        complexity: "O(N) where N is the number of channels to subscribe to.",
        history: &[],
        arguments: &[Arg::new("channel", ArgKind::String).flags(arg::MULTIPLE)],
    },
};

static SPEC_TTL: CommandSpec = CommandSpec {
    name: "ttl",
    cmd: Cmd::Ttl,
    scope: Scope::Key,
    arity: 2,
    flags: flag::READONLY | flag::FAST,
    first_key: 1,
    last_key: 1,
    step: 1,
    acl: acl::KEYSPACE | acl::READ | acl::FAST,
    tips: &["nondeterministic_output"],
    key_specs: &[KeySpec {
        notes: None,
        flags: ks::RO | ks::ACCESS,
        begin_index: 1,
        last_key: 0,
        key_step: 1,
        limit: 0,
    }],
    subcommands: &[],
    docs: Docs {
        summary: "Get the time to live for a key in seconds",
        since: "1.0.0",
        group: "generic",
        complexity: "O(1)",
        history: &[("2.8.0", "Added the -2 reply.")],
        arguments: &[Arg::new("key", ArgKind::Key).key_spec(0)],
    },
};

static SPEC_UNSUBSCRIBE: CommandSpec = CommandSpec {
    name: "unsubscribe",
    cmd: Cmd::Unsubscribe,
    scope: Scope::PubSub,
    arity: -1,
    flags: flag::PUBSUB | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: acl::PUBSUB | acl::SLOW,
    tips: &[],
    key_specs: &[],
    subcommands: &[],
    docs: Docs {
        summary: "Stop listening for messages posted to the given channels",
        since: "2.0.0",
        group: "pubsub",
        complexity: "O(N) where N is the number of clients already subscribed to a channel.",
        history: &[],
        arguments: &[Arg::new("channel", ArgKind::String).flags(arg::OPTIONAL | arg::MULTIPLE)],
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use ringfort::pool::{BackingPref, Growth, NumaPolicy, PoolConfig, Registration, SizeClass};

    /// A fixed clock: 2023-11-14T22:13:20Z.
    const NOW: u64 = 1_700_000_000_000;

    fn arena_with(small: usize, large: usize) -> Arena {
        Arena::new(PoolConfig {
            classes: vec![
                SizeClass {
                    size: 4096,
                    count: small,
                },
                SizeClass {
                    size: 65536,
                    count: large,
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
        arena_with(256, 32)
    }

    /// The arguments as the parser would give them: split off one received chain.
    fn argv(arena: &Arena, args: &[&[u8]]) -> Vec<BufChain> {
        let mut all = BufChain::new(1 << 30);
        for a in args {
            all.append_slice(arena, a).unwrap();
        }
        args.iter().map(|a| all.split_to(a.len())).collect()
    }

    /// The spec of a known command's arguments.
    fn spec_of(args: &[BufChain]) -> &'static CommandSpec {
        lookup_chain(&args[0]).expect("a known command")
    }

    /// Runs one command; its reply, and its log record's arguments.
    fn exec(
        arena: &Arena,
        db: &mut Db,
        now: u64,
        args: &[&[u8]],
    ) -> (Vec<u8>, Option<Vec<BufChain>>) {
        let argv = argv(arena, args);
        let mut reply = Reply::new(arena, 1 << 30);
        // An unknown name is answered before execution, as the server's handler does.
        let record = match lookup_chain(&argv[0]) {
            Some(spec) => execute(db, spec, &argv, now, &mut reply).unwrap(),
            None => {
                reply.error(&unknown_command_error(&argv)).unwrap();
                None
            }
        };
        (reply.out.to_vec(), record.map(|r| r.args(&argv).to_vec()))
    }

    fn show(args: &[&[u8]]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn record_text(r: &[BufChain]) -> Vec<String> {
        r.iter()
            .map(|a| String::from_utf8_lossy(&a.to_vec()).into_owned())
            .collect()
    }

    /// Every key name an argument list could touch.
    fn keys_of(steps: &[&[&[u8]]]) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = steps
            .iter()
            .flat_map(|s| s.iter().skip(1).map(|a| a.to_vec()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Asserts that two keyspaces agree on `keys` as seen at `now`.
    fn assert_same(a: &mut Db, b: &mut Db, keys: &[Vec<u8>], now: u64) {
        for k in keys {
            let x = a.get_with_expiry(k, now).map(|(v, e)| (v.to_vec(), e));
            let y = b.get_with_expiry(k, now).map(|(v, e)| (v.to_vec(), e));
            assert_eq!(x, y, "key {:?}", String::from_utf8_lossy(k));
        }
    }

    /// Runs `steps` at `NOW` on a fresh keyspace, checking each reply byte for byte; then
    /// checks that replaying the records rebuilds the same keyspace.
    fn script(steps: &[(&[&[u8]], &[u8])]) {
        let arena = arena();
        let mut db = Db::new();
        let mut replayed = Db::new();
        for (args, want) in steps {
            let (got, record) = exec(&arena, &mut db, NOW, args);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "reply to {:?}",
                show(args)
            );
            if let Some(r) = record {
                replay(&mut replayed, &r, &arena).unwrap();
            }
        }
        let keys = keys_of(&steps.iter().map(|(a, _)| *a).collect::<Vec<_>>());
        assert_same(&mut db, &mut replayed, &keys, NOW);
    }

    #[test]
    fn redis_set_options() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (&[b"get", b"k"], b"$1\r\nv\r\n"),
            (
                &[b"set", b"k", b"v", b"EX", b"100", b"EX", b"200"],
                b"+OK\r\n",
            ),
            (&[b"ttl", b"k"], b":200\r\n"),
            (
                &[b"set", b"k", b"v", b"EX", b"0"],
                b"-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"EX", b"-1"],
                b"-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"EX", b"abc"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"k", b"v", b"EX"], b"-ERR syntax error\r\n"),
            (
                &[b"set", b"k", b"v", b"NX", b"XX"],
                b"-ERR syntax error\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"KEEPTTL", b"EX", b"10"],
                b"-ERR syntax error\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"EX", b"10", b"PX", b"100"],
                b"-ERR syntax error\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"ex", b"10", b"keepttl"],
                b"-ERR syntax error\r\n",
            ),
            (&[b"set", b"k", b"v", b"foo"], b"-ERR syntax error\r\n"),
            (
                &[b"set", b"k", b"v", b"EXAT", b"9223372036854776"],
                b"-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"EX", b"9223372036854775"],
                b"-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"PX", b"9223372036854775807"],
                b"-ERR invalid expire time in 'set' command\r\n",
            ),
            (&[b"set", b"k", b"v", b"PXAT", b"1"], b"+OK\r\n"),
            (&[b"get", b"k"], b"$-1\r\n"),
            (&[b"set", b"k", b"v", b"nx"], b"+OK\r\n"),
            (&[b"set", b"k", b"v2", b"nx", b"get"], b"$1\r\nv\r\n"),
            (&[b"set", b"k", b"v3", b"xx", b"get"], b"$1\r\nv\r\n"),
            (&[b"get", b"k"], b"$2\r\nv3\r\n"),
            (&[b"set", b"k2", b"v", b"xx", b"get"], b"$-1\r\n"),
            (&[b"set", b"k2", b"v", b"xx"], b"$-1\r\n"),
            (&[b"set", b"k2", b"v", b"nx", b"get"], b"$-1\r\n"),
            (&[b"get", b"k2"], b"$1\r\nv\r\n"),
            (&[b"set", b"k", b"v", b"keepttl"], b"+OK\r\n"),
            (&[b"ttl", b"k"], b":-1\r\n"),
            (
                &[b"set", b"k", b"w", b"px", b"100000", b"get"],
                b"$1\r\nv\r\n",
            ),
            (&[b"ttl", b"k"], b":100\r\n"),
            (&[b"set", b"k", b"x", b"keepttl"], b"+OK\r\n"),
            (&[b"ttl", b"k"], b":100\r\n"),
            (&[b"set", b"k", b"y"], b"+OK\r\n"),
            (&[b"ttl", b"k"], b":-1\r\n"),
            (
                &[b"set"],
                b"-ERR wrong number of arguments for 'set' command\r\n",
            ),
            (
                &[b"set", b"k"],
                b"-ERR wrong number of arguments for 'set' command\r\n",
            ),
        ]);
    }

    #[test]
    fn redis_incr_decr() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (
                &[b"incr", b"k"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"n", b"10"], b"+OK\r\n"),
            (&[b"incr", b"n"], b":11\r\n"),
            (&[b"incrby", b"n", b"-20"], b":-9\r\n"),
            (&[b"decr", b"n"], b":-10\r\n"),
            (&[b"decrby", b"n", b"5"], b":-15\r\n"),
            (
                &[b"decrby", b"n", b"-9223372036854775808"],
                b"-ERR decrement would overflow\r\n",
            ),
            (
                &[b"incrby", b"n", b"abc"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (
                &[b"decrby", b"n", b"abc"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (
                &[b"incrby", b"n", b"9223372036854775807"],
                b":9223372036854775792\r\n",
            ),
            (&[b"set", b"n", b"9223372036854775807"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR increment or decrement would overflow\r\n",
            ),
            (&[b"set", b"n", b"-9223372036854775808"], b"+OK\r\n"),
            (
                &[b"decr", b"n"],
                b"-ERR increment or decrement would overflow\r\n",
            ),
            (&[b"set", b"n", b"+1"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"n", b"01"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"n", b"-0"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"n", b" 1"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"n", b"1.0"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (&[b"set", b"n", b"123456789012345678901"], b"+OK\r\n"),
            (
                &[b"incr", b"n"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (
                &[b"incrby", b"n2", b"-9223372036854775808"],
                b":-9223372036854775808\r\n",
            ),
            (
                &[b"decrby", b"n3", b"9223372036854775807"],
                b":-9223372036854775807\r\n",
            ),
            (&[b"get", b"n3"], b"$20\r\n-9223372036854775807\r\n"),
            (&[b"incr", b"fresh"], b":1\r\n"),
            (&[b"get", b"fresh"], b"$1\r\n1\r\n"),
            (
                &[b"incr"],
                b"-ERR wrong number of arguments for 'incr' command\r\n",
            ),
            (
                &[b"incrby", b"n"],
                b"-ERR wrong number of arguments for 'incrby' command\r\n",
            ),
            (
                &[b"decr", b"a", b"b"],
                b"-ERR wrong number of arguments for 'decr' command\r\n",
            ),
            (
                &[b"decrby", b"a"],
                b"-ERR wrong number of arguments for 'decrby' command\r\n",
            ),
        ]);
    }

    #[test]
    fn redis_expire_family() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (&[b"expire", b"nokey", b"10"], b":0\r\n"),
            (
                &[b"expire", b"nokey", b"abc"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
            (
                &[b"expire", b"nokey", b"10", b"foo"],
                b"-ERR Unsupported option foo\r\n",
            ),
            (
                &[b"expire", b"nokey", b"10", b"nx", b"xx"],
                b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
            ),
            (
                &[b"expire", b"nokey", b"10", b"gt", b"lt"],
                b"-ERR GT and LT options at the same time are not compatible\r\n",
            ),
            (
                &[b"expire", b"nokey", b"10", b"nx", b"gt"],
                b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
            ),
            (&[b"expire", b"nokey", b"10", b"xx", b"gt"], b":0\r\n"),
            (&[b"expire", b"nokey", b"10", b"gt", b"xx"], b":0\r\n"),
            (
                &[b"expire", b"nokey", b"9223372036854776"],
                b"-ERR invalid expire time in 'expire' command\r\n",
            ),
            (
                &[b"expire", b"nokey", b"-9223372036854776"],
                b"-ERR invalid expire time in 'expire' command\r\n",
            ),
            (
                &[b"pexpire", b"nokey", b"9223372036854775807"],
                b"-ERR invalid expire time in 'pexpire' command\r\n",
            ),
            (&[b"pexpireat", b"nokey", b"9223372036854775807"], b":0\r\n"),
            (&[b"expireat", b"nokey", b"9223372036854775"], b":0\r\n"),
            (
                &[b"expire", b"nokey", b"abc", b"foo"],
                b"-ERR Unsupported option foo\r\n",
            ),
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (&[b"expire", b"k", b"100", b"xx"], b":0\r\n"),
            (&[b"expire", b"k", b"100", b"nx"], b":1\r\n"),
            (&[b"expire", b"k", b"100", b"nx"], b":0\r\n"),
            (&[b"ttl", b"k"], b":100\r\n"),
            (&[b"expire", b"k", b"50", b"gt"], b":0\r\n"),
            (&[b"expire", b"k", b"150", b"gt"], b":1\r\n"),
            (&[b"ttl", b"k"], b":150\r\n"),
            (&[b"expire", b"k", b"200", b"lt"], b":0\r\n"),
            (&[b"expire", b"k", b"50", b"lt"], b":1\r\n"),
            (&[b"ttl", b"k"], b":50\r\n"),
            (&[b"persist", b"k"], b":1\r\n"),
            (&[b"persist", b"k"], b":0\r\n"),
            (&[b"expire", b"k", b"100", b"lt"], b":1\r\n"),
            (&[b"expire", b"k", b"100", b"gt"], b":0\r\n"),
            (&[b"persist", b"k"], b":1\r\n"),
            (&[b"ttl", b"k"], b":-1\r\n"),
            (&[b"pttl", b"k"], b":-1\r\n"),
            (&[b"ttl", b"nokey"], b":-2\r\n"),
            (&[b"pttl", b"nokey"], b":-2\r\n"),
            (&[b"persist", b"nokey"], b":0\r\n"),
            (&[b"expire", b"k", b"0"], b":1\r\n"),
            (&[b"exists", b"k"], b":0\r\n"),
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (&[b"expire", b"k", b"-5"], b":1\r\n"),
            (&[b"exists", b"k"], b":0\r\n"),
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (&[b"pexpireat", b"k", b"1"], b":1\r\n"),
            (&[b"exists", b"k"], b":0\r\n"),
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (&[b"expireat", b"k", b"1"], b":1\r\n"),
            (&[b"get", b"k"], b"$-1\r\n"),
            (&[b"set", b"k", b"v"], b"+OK\r\n"),
            (&[b"expireat", b"k", b"4102444800"], b":1\r\n"),
            (&[b"pexpireat", b"k", b"4102444800000", b"gt"], b":0\r\n"),
            (&[b"pexpireat", b"k", b"4102444800001", b"gt"], b":1\r\n"),
            (
                &[b"expire"],
                b"-ERR wrong number of arguments for 'expire' command\r\n",
            ),
            (
                &[b"expire", b"k"],
                b"-ERR wrong number of arguments for 'expire' command\r\n",
            ),
            (
                &[b"pexpire", b"k"],
                b"-ERR wrong number of arguments for 'pexpire' command\r\n",
            ),
            (
                &[b"expireat", b"k"],
                b"-ERR wrong number of arguments for 'expireat' command\r\n",
            ),
            (
                &[b"pexpireat", b"k"],
                b"-ERR wrong number of arguments for 'pexpireat' command\r\n",
            ),
            (
                &[b"ttl"],
                b"-ERR wrong number of arguments for 'ttl' command\r\n",
            ),
            (
                &[b"ttl", b"a", b"b"],
                b"-ERR wrong number of arguments for 'ttl' command\r\n",
            ),
            (
                &[b"pttl"],
                b"-ERR wrong number of arguments for 'pttl' command\r\n",
            ),
            (
                &[b"persist"],
                b"-ERR wrong number of arguments for 'persist' command\r\n",
            ),
        ]);
    }

    #[test]
    fn redis_keys_multi() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (
                &[b"del"],
                b"-ERR wrong number of arguments for 'del' command\r\n",
            ),
            (&[b"del", b"a", b"b", b"c"], b":0\r\n"),
            (&[b"set", b"a", b"1"], b"+OK\r\n"),
            (&[b"set", b"b", b"2"], b"+OK\r\n"),
            (&[b"del", b"a", b"a", b"b", b"c"], b":2\r\n"),
            (&[b"exists", b"a", b"b"], b":0\r\n"),
            (&[b"set", b"a", b"1"], b"+OK\r\n"),
            (&[b"exists", b"a", b"a", b"b", b"a"], b":3\r\n"),
            (
                &[b"exists"],
                b"-ERR wrong number of arguments for 'exists' command\r\n",
            ),
            (
                &[b"mget", b"a", b"b", b"a"],
                b"*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n1\r\n",
            ),
            (
                &[b"mget"],
                b"-ERR wrong number of arguments for 'mget' command\r\n",
            ),
            (
                &[b"mset", b"a"],
                b"-ERR wrong number of arguments for 'mset' command\r\n",
            ),
            (
                &[b"mset", b"a", b"1", b"b"],
                b"-ERR wrong number of arguments for 'mset' command\r\n",
            ),
            (&[b"mset", b"a", b"1", b"b", b"2"], b"+OK\r\n"),
            (
                &[b"mget", b"a", b"b", b"c"],
                b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n",
            ),
            (&[b"append", b"a", b"xyz"], b":4\r\n"),
            (&[b"append", b"c", b"hello"], b":5\r\n"),
            (&[b"get", b"a"], b"$4\r\n1xyz\r\n"),
            (&[b"get", b"c"], b"$5\r\nhello\r\n"),
            (&[b"strlen", b"a"], b":4\r\n"),
            (&[b"strlen", b"nokey"], b":0\r\n"),
            (&[b"dbsize"], b":3\r\n"),
            (&[b"getdel", b"nokey"], b"$-1\r\n"),
            (&[b"set", b"g", b"v"], b"+OK\r\n"),
            (&[b"getdel", b"g"], b"$1\r\nv\r\n"),
            (&[b"getdel", b"g"], b"$-1\r\n"),
            (
                &[b"strlen"],
                b"-ERR wrong number of arguments for 'strlen' command\r\n",
            ),
            (
                &[b"append", b"x"],
                b"-ERR wrong number of arguments for 'append' command\r\n",
            ),
            (
                &[b"getdel"],
                b"-ERR wrong number of arguments for 'getdel' command\r\n",
            ),
            (
                &[b"get"],
                b"-ERR wrong number of arguments for 'get' command\r\n",
            ),
            (
                &[b"get", b"a", b"b"],
                b"-ERR wrong number of arguments for 'get' command\r\n",
            ),
            (
                &[b"dbsize", b"x"],
                b"-ERR wrong number of arguments for 'dbsize' command\r\n",
            ),
        ]);
    }

    #[test]
    fn redis_misc() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (&[b"flushall", b"sync"], b"+OK\r\n"),
            (&[b"flushall", b"async"], b"+OK\r\n"),
            (&[b"flushall", b"foo"], b"-ERR syntax error\r\n"),
            (&[b"flushall", b"sync", b"async"], b"-ERR syntax error\r\n"),
            (&[b"flushall"], b"+OK\r\n"),
            (&[b"dbsize"], b":0\r\n"),
            (&[b"ping"], b"+PONG\r\n"),
            (&[b"ping", b"hello"], b"$5\r\nhello\r\n"),
            (
                &[b"ping", b"a", b"b"],
                b"-ERR wrong number of arguments for 'ping' command\r\n",
            ),
            (&[b"PING"], b"+PONG\r\n"),
            (
                &[b"echo"],
                b"-ERR wrong number of arguments for 'echo' command\r\n",
            ),
            (&[b"echo", b"hi"], b"$2\r\nhi\r\n"),
            (
                &[b"echo", b"a", b"b"],
                b"-ERR wrong number of arguments for 'echo' command\r\n",
            ),
        ]);
    }

    #[test]
    fn redis_expiry_across_writes() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (&[b"set", b"k", b"v", b"ex", b"100"], b"+OK\r\n"),
            (&[b"mset", b"k", b"w"], b"+OK\r\n"),
            (&[b"ttl", b"k"], b":-1\r\n"),
            (&[b"set", b"k", b"v", b"ex", b"100"], b"+OK\r\n"),
            (&[b"append", b"k", b"x"], b":2\r\n"),
            (&[b"ttl", b"k"], b":100\r\n"),
            (&[b"get", b"k"], b"$2\r\nvx\r\n"),
            (&[b"set", b"n", b"1", b"ex", b"100"], b"+OK\r\n"),
            (&[b"incr", b"n"], b":2\r\n"),
            (&[b"ttl", b"n"], b":100\r\n"),
            (&[b"decrby", b"n", b"5"], b":-3\r\n"),
            (&[b"ttl", b"n"], b":100\r\n"),
            (&[b"getdel", b"n"], b"$2\r\n-3\r\n"),
            (&[b"ttl", b"n"], b":-2\r\n"),
            (&[b"set", b"k", b"v", b"ex", b"100"], b"+OK\r\n"),
            (&[b"set", b"k", b"w"], b"+OK\r\n"),
            (&[b"ttl", b"k"], b":-1\r\n"),
            (
                &[b"set", b"k", b"v", b"px", b"100000", b"keepttl"],
                b"-ERR syntax error\r\n",
            ),
            (
                &[b"set", b"k", b"v", b"keepttl", b"ex", b"5"],
                b"-ERR syntax error\r\n",
            ),
            (&[b"expire", b"k", b"100", b"xx"], b":0\r\n"),
            (&[b"expire", b"k", b"200", b"gt"], b":0\r\n"),
            (&[b"ttl", b"k"], b":-1\r\n"),
            (&[b"pexpire", b"k", b"100000", b"lt"], b":1\r\n"),
            (&[b"ttl", b"k"], b":100\r\n"),
            (&[b"exists", b"k", b"k", b"nokey"], b":2\r\n"),
            (&[b"del", b"k", b"k"], b":1\r\n"),
            (&[b"set", b"e", b""], b"+OK\r\n"),
            (&[b"get", b"e"], b"$0\r\n\r\n"),
            (&[b"strlen", b"e"], b":0\r\n"),
            (&[b"append", b"e", b""], b":0\r\n"),
            (&[b"exists", b"e"], b":1\r\n"),
            (
                &[b"incrby", b"e", b"1"],
                b"-ERR value is not an integer or out of range\r\n",
            ),
        ]);
    }

    #[test]
    fn redis_binary_args() {
        // Every expected reply below was checked against redis-server 7.0.15.
        script(&[
            (
                &[b"set", b"k", b"v", b"n\x00junk"],
                b"-ERR syntax error\r\n",
            ),
            (&[b"set", b"k", b"v", b"nx\x00junk"], b"+OK\r\n"),
            (&[b"get", b"k"], b"$1\r\nv\r\n"),
            (&[b"set", b"k", b"v", b"ex\x00", b"10"], b"+OK\r\n"),
            (&[b"ttl", b"k"], b":10\r\n"),
            (
                &[b"expire", b"k", b"10", b"fo\r\no"],
                b"-ERR Unsupported option fo  o\r\n",
            ),
            (
                &[b"expire", b"k", b"10", b"foo\r\n"],
                b"-ERR Unsupported option foo\r\n",
            ),
            (
                &[b"expire", b"k", b"10", b"\r\nfoo"],
                b"-ERR Unsupported option   foo\r\n",
            ),
            (
                &[b"expire", b"k", b"10", b"f\x00oo"],
                b"-ERR Unsupported option f\r\n",
            ),
            (&[b"expire", b"k", b"10", b"nx\x00yy"], b":0\r\n"),
            (
                &[b"expire", b"k", b"10", b"\xe9"],
                b"-ERR Unsupported option \xe9\r\n",
            ),
            (&[b"flushall", b"sync\x00x"], b"+OK\r\n"),
            (&[b"dbsize"], b":0\r\n"),
            (&[b"set", b"bin\x00key", b"v\r\n\x00\xff"], b"+OK\r\n"),
            (&[b"get", b"bin\x00key"], b"$5\r\nv\r\n\x00\xff\r\n"),
            (&[b"strlen", b"bin\x00key"], b":5\r\n"),
            (&[b"append", b"bin\x00key", b"\x00"], b":6\r\n"),
            (&[b"get", b"bin\x00key"], b"$6\r\nv\r\n\x00\xff\x00\r\n"),
            (&[b"SeT", b"k", b"v"], b"+OK\r\n"),
            (&[b"GET", b"k"], b"$1\r\nv\r\n"),
        ]);
    }

    /// `command info get set del mset expire ping publish auth dbsize flushall ttl nosuch config|get CLIENT|SETNAME command|count`, checked against redis-server 7.0.15.
    const INFO_SAMPLE: &[u8] = b"*15\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$3\r\nset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@write\r\n+@string\r\n+@slow\r\n*0\r\n*1\r\n*8\r\n$5\r\nnotes\r\n$48\r\nRW and ACCESS due to the optional `GET` argument\r\n$5\r\nflags\r\n*4\r\n+RW\r\n+access\r\n+update\r\n+variable_flags\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$3\r\ndel\r\n:-2\r\n*1\r\n+write\r\n:1\r\n:-1\r\n:1\r\n*3\r\n+@keyspace\r\n+@write\r\n+@slow\r\n*2\r\n$26\r\nrequest_policy:multi_shard\r\n$23\r\nresponse_policy:agg_sum\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RM\r\n+delete\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n*3\r\n+@write\r\n+@string\r\n+@slow\r\n*2\r\n$26\r\nrequest_policy:multi_shard\r\n$29\r\nresponse_policy:all_succeeded\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+OW\r\n+update\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:2\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$6\r\nexpire\r\n:-3\r\n*2\r\n+write\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@keyspace\r\n+@write\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RW\r\n+update\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$4\r\nping\r\n:-1\r\n*1\r\n+fast\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@fast\r\n+@connection\r\n*2\r\n$25\r\nrequest_policy:all_shards\r\n$29\r\nresponse_policy:all_succeeded\r\n*0\r\n*0\r\n*10\r\n$7\r\npublish\r\n:3\r\n*4\r\n+pubsub\r\n+loading\r\n+stale\r\n+fast\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@pubsub\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n*10\r\n$4\r\nauth\r\n:-2\r\n*6\r\n+noscript\r\n+loading\r\n+stale\r\n+fast\r\n+no_auth\r\n+allow_busy\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@fast\r\n+@connection\r\n*0\r\n*0\r\n*0\r\n*10\r\n$6\r\ndbsize\r\n:1\r\n*2\r\n+readonly\r\n+fast\r\n:0\r\n:0\r\n:0\r\n*3\r\n+@keyspace\r\n+@read\r\n+@fast\r\n*2\r\n$25\r\nrequest_policy:all_shards\r\n$23\r\nresponse_policy:agg_sum\r\n*0\r\n*0\r\n*10\r\n$8\r\nflushall\r\n:-1\r\n*1\r\n+write\r\n:0\r\n:0\r\n:0\r\n*4\r\n+@keyspace\r\n+@write\r\n+@slow\r\n+@dangerous\r\n*2\r\n$25\r\nrequest_policy:all_shards\r\n$29\r\nresponse_policy:all_succeeded\r\n*0\r\n*0\r\n*10\r\n$3\r\nttl\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@keyspace\r\n+@read\r\n+@fast\r\n*1\r\n$23\r\nnondeterministic_output\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n$-1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n*4\r\n+admin\r\n+noscript\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*3\r\n+@admin\r\n+@slow\r\n+@dangerous\r\n*0\r\n*0\r\n*0\r\n*10\r\n$14\r\nclient|setname\r\n:3\r\n*3\r\n+noscript\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@slow\r\n+@connection\r\n*0\r\n*0\r\n*0\r\n*10\r\n$13\r\ncommand|count\r\n:2\r\n*2\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@slow\r\n+@connection\r\n*0\r\n*0\r\n*0\r\n";
    /// `command docs get nosuch set expire mset hello flushall config|get subscribe info`, checked against redis-server 7.0.15.
    const DOCS_SAMPLE: &[u8] = b"*18\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n$3\r\nset\r\n*12\r\n$7\r\nsummary\r\n$29\r\nSet the string value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$7\r\nhistory\r\n*4\r\n*2\r\n$6\r\n2.6.12\r\n$44\r\nAdded the `EX`, `PX`, `NX` and `XX` options.\r\n*2\r\n$5\r\n6.0.0\r\n$27\r\nAdded the `KEEPTTL` option.\r\n*2\r\n$5\r\n6.2.0\r\n$42\r\nAdded the `GET`, `EXAT` and `PXAT` option.\r\n*2\r\n$5\r\n7.0.0\r\n$55\r\nAllowed the `NX` and `GET` options to be used together.\r\n$9\r\narguments\r\n*5\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n*4\r\n$4\r\nname\r\n$5\r\nvalue\r\n$4\r\ntype\r\n$6\r\nstring\r\n*10\r\n$4\r\nname\r\n$9\r\ncondition\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*2\r\n*6\r\n$4\r\nname\r\n$2\r\nnx\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nNX\r\n*6\r\n$4\r\nname\r\n$2\r\nxx\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nXX\r\n*10\r\n$4\r\nname\r\n$3\r\nget\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$3\r\nGET\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\nflags\r\n*1\r\n+optional\r\n*8\r\n$4\r\nname\r\n$10\r\nexpiration\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*5\r\n*8\r\n$4\r\nname\r\n$7\r\nseconds\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nEX\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n*8\r\n$4\r\nname\r\n$12\r\nmilliseconds\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nPX\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n*8\r\n$4\r\nname\r\n$17\r\nunix-time-seconds\r\n$4\r\ntype\r\n$9\r\nunix-time\r\n$5\r\ntoken\r\n$4\r\nEXAT\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n*8\r\n$4\r\nname\r\n$22\r\nunix-time-milliseconds\r\n$4\r\ntype\r\n$9\r\nunix-time\r\n$5\r\ntoken\r\n$4\r\nPXAT\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n*8\r\n$4\r\nname\r\n$7\r\nkeepttl\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$7\r\nKEEPTTL\r\n$5\r\nsince\r\n$5\r\n6.0.0\r\n$6\r\nexpire\r\n*12\r\n$7\r\nsummary\r\n$35\r\nSet a key's time to live in seconds\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$7\r\ngeneric\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n7.0.0\r\n$41\r\nAdded options: `NX`, `XX`, `GT` and `LT`.\r\n$9\r\narguments\r\n*3\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n*4\r\n$4\r\nname\r\n$7\r\nseconds\r\n$4\r\ntype\r\n$7\r\ninteger\r\n*10\r\n$4\r\nname\r\n$9\r\ncondition\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nsince\r\n$5\r\n7.0.0\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*4\r\n*6\r\n$4\r\nname\r\n$2\r\nnx\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nNX\r\n*6\r\n$4\r\nname\r\n$2\r\nxx\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nXX\r\n*6\r\n$4\r\nname\r\n$2\r\ngt\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nGT\r\n*6\r\n$4\r\nname\r\n$2\r\nlt\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nLT\r\n$4\r\nmset\r\n*10\r\n$7\r\nsummary\r\n$36\r\nSet multiple keys to multiple values\r\n$5\r\nsince\r\n$5\r\n1.0.1\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$42\r\nO(N) where N is the number of keys to set.\r\n$9\r\narguments\r\n*1\r\n*8\r\n$4\r\nname\r\n$9\r\nkey_value\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\nflags\r\n*1\r\n+multiple\r\n$9\r\narguments\r\n*2\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n*4\r\n$4\r\nname\r\n$5\r\nvalue\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\nhello\r\n*12\r\n$7\r\nsummary\r\n$20\r\nHandshake with Redis\r\n$5\r\nsince\r\n$5\r\n6.0.0\r\n$5\r\ngroup\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n6.2.0\r\n$109\r\n`protover` made optional; when called without arguments the command reports the current connection's context.\r\n$9\r\narguments\r\n*1\r\n*8\r\n$4\r\nname\r\n$9\r\narguments\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*3\r\n*4\r\n$4\r\nname\r\n$8\r\nprotover\r\n$4\r\ntype\r\n$7\r\ninteger\r\n*10\r\n$4\r\nname\r\n$17\r\nusername_password\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\ntoken\r\n$4\r\nAUTH\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*2\r\n*4\r\n$4\r\nname\r\n$8\r\nusername\r\n$4\r\ntype\r\n$6\r\nstring\r\n*4\r\n$4\r\nname\r\n$8\r\npassword\r\n$4\r\ntype\r\n$6\r\nstring\r\n*8\r\n$4\r\nname\r\n$10\r\nclientname\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$7\r\nSETNAME\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$8\r\nflushall\r\n*12\r\n$7\r\nsummary\r\n$34\r\nRemove all keys from all databases\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nserver\r\n$10\r\ncomplexity\r\n$57\r\nO(N) where N is the total number of keys in all databases\r\n$7\r\nhistory\r\n*2\r\n*2\r\n$5\r\n4.0.0\r\n$41\r\nAdded the `ASYNC` flushing mode modifier.\r\n*2\r\n$5\r\n6.2.0\r\n$40\r\nAdded the `SYNC` flushing mode modifier.\r\n$9\r\narguments\r\n*1\r\n*8\r\n$4\r\nname\r\n$5\r\nasync\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*2\r\n*8\r\n$4\r\nname\r\n$5\r\nasync\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$5\r\nASYNC\r\n$5\r\nsince\r\n$5\r\n4.0.0\r\n*8\r\n$4\r\nname\r\n$4\r\nsync\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$4\r\nSYNC\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$10\r\nconfig|get\r\n*12\r\n$7\r\nsummary\r\n$42\r\nGet the values of configuration parameters\r\n$5\r\nsince\r\n$5\r\n2.0.0\r\n$5\r\ngroup\r\n$6\r\nserver\r\n$10\r\ncomplexity\r\n$62\r\nO(N) when N is the number of configuration parameters provided\r\n$7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n7.0.0\r\n$65\r\nAdded the ability to pass multiple pattern parameters in one call\r\n$9\r\narguments\r\n*1\r\n*8\r\n$4\r\nname\r\n$9\r\nparameter\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\nflags\r\n*1\r\n+multiple\r\n$9\r\narguments\r\n*1\r\n*4\r\n$4\r\nname\r\n$9\r\nparameter\r\n$4\r\ntype\r\n$6\r\nstring\r\n$9\r\nsubscribe\r\n*10\r\n$7\r\nsummary\r\n$51\r\nListen for messages published to the given channels\r\n$5\r\nsince\r\n$5\r\n2.0.0\r\n$5\r\ngroup\r\n$6\r\npubsub\r\n$10\r\ncomplexity\r\n$55\r\nO(N) where N is the number of channels to subscribe to.\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$7\r\nchannel\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\nflags\r\n*1\r\n+multiple\r\n$4\r\ninfo\r\n*12\r\n$7\r\nsummary\r\n$47\r\nGet information and statistics about the server\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nserver\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n7.0.0\r\n$52\r\nAdded support for taking multiple section arguments.\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$7\r\nsection\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\nflags\r\n*2\r\n+optional\r\n+multiple\r\n";

    #[test]
    fn unsupported_option_quote_is_bounded() {
        let arena = arena();
        let mut db = Db::new();
        // Redis 7.0.15 quotes a 300-byte option whole; we do too up to 1 KiB.
        let opt = vec![b'x'; 300];
        let (got, _) = exec(&arena, &mut db, NOW, &[b"expire", b"k", b"10", &opt]);
        assert_eq!(
            got,
            [b"-ERR Unsupported option ".as_slice(), &opt, b"\r\n"].concat()
        );
        let opt = vec![b'y'; 5000];
        let (got, _) = exec(&arena, &mut db, NOW, &[b"expire", b"k", b"10", &opt]);
        assert_eq!(
            got.len(),
            b"-ERR Unsupported option ".len() + OPTION_QUOTE_LIMIT + 2
        );
    }

    #[test]
    fn unknown_command_errors_match_redis() {
        let arena = arena();
        let err = |args: &[&[u8]]| unknown_command_error(&argv(&arena, args));
        // Checked against redis-server 7.0.15.
        assert_eq!(
            err(&[b"foo", b"a", b"b"]),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            err(&[b"foo"]),
            "ERR unknown command 'foo', with args beginning with: "
        );
        assert_eq!(
            err(&[b"foo", b"a\r\nb", b"c\x00d"]),
            "ERR unknown command 'foo', with args beginning with: 'a  b' 'c' "
        );
        assert_eq!(
            err(&[b"fo\r\no"]),
            "ERR unknown command 'fo  o', with args beginning with: "
        );
        assert_eq!(
            err(&[b"f\x00oo", b"a"]),
            "ERR unknown command 'f', with args beginning with: 'a' "
        );
        let x40: Vec<&[u8]> = std::iter::once(b"foo".as_slice())
            .chain(std::iter::repeat_n(b"x".as_slice(), 40))
            .collect();
        assert_eq!(
            err(&x40),
            format!(
                "ERR unknown command 'foo', with args beginning with: {}",
                "'x' ".repeat(32)
            )
        );
        let (long, a100, b100) = (vec![b'x'; 200], vec![b'a'; 100], vec![b'b'; 100]);
        assert_eq!(
            err(&[&long, &a100, &b100]),
            format!(
                "ERR unknown command '{}', with args beginning with: '{}' '{}' ",
                "x".repeat(128),
                "a".repeat(100),
                "b".repeat(25)
            )
        );
        for (n, want_b) in [(126, false), (125, false), (124, true)] {
            let a = vec![b'a'; n];
            let tail = if want_b { "'b' " } else { "" };
            assert_eq!(
                err(&[b"foo", &a, b"b"]),
                format!(
                    "ERR unknown command 'foo', with args beginning with: '{}' {tail}",
                    "a".repeat(n)
                )
            );
        }
        // As a reply.
        let mut db = Db::new();
        let (got, record) = exec(&arena, &mut db, NOW, &[b"foo", b"a", b"b"]);
        assert_eq!(
            got,
            b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
        );
        assert!(record.is_none());
    }

    #[test]
    fn arity_and_subcommand_errors_match_redis() {
        // Checked against redis-server 7.0.15.
        let get = lookup(b"GET").unwrap();
        assert_eq!(check_arity(get, 2), Ok(()));
        assert_eq!(
            check_arity(get, 1).unwrap_err(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            check_arity(get, 3).unwrap_err(),
            "ERR wrong number of arguments for 'get' command"
        );
        let set = lookup(b"sEt").unwrap();
        assert_eq!(
            check_arity(set, 2).unwrap_err(),
            "ERR wrong number of arguments for 'set' command"
        );
        assert_eq!(check_arity(set, 9), Ok(()));
        let config = lookup(b"config").unwrap();
        assert_eq!(
            check_arity(config, 1).unwrap_err(),
            "ERR wrong number of arguments for 'config' command"
        );
        let config_get = lookup_subcommand(config, b"GET").unwrap();
        assert_eq!(
            check_arity(config_get, 2).unwrap_err(),
            "ERR wrong number of arguments for 'config|get' command"
        );
        let client = lookup(b"client").unwrap();
        let setname = lookup_subcommand(client, b"setname").unwrap();
        assert_eq!(
            check_arity(setname, 2).unwrap_err(),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            unknown_subcommand_error(config, b"foo"),
            "ERR unknown subcommand 'foo'. Try CONFIG HELP."
        );
        assert_eq!(
            unknown_subcommand_error(client, b"foo"),
            "ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
        assert_eq!(
            unknown_subcommand_error(config, &[b'x'; 200]),
            format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                "x".repeat(128)
            )
        );
        assert_eq!(
            unknown_subcommand_error(lookup(b"command").unwrap(), b"foo\r\nbar"),
            "ERR unknown subcommand 'foo  bar'. Try COMMAND HELP."
        );
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(TABLE.windows(2).all(|w| w[0].name < w[1].name));
        let names = "ping echo set get getdel del exists incr incrby decr decrby mget mset append \
                     strlen expire pexpire expireat pexpireat ttl pttl persist dbsize flushall \
                     publish subscribe unsubscribe psubscribe punsubscribe auth select quit hello \
                     client info config command";
        for name in names.split_whitespace() {
            let spec = lookup(name.as_bytes()).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(spec.name, name);
            assert_eq!(
                lookup(name.to_ascii_uppercase().as_bytes()).unwrap().name,
                name
            );
            let sub_prefix = format!("{name}|");
            assert!(spec
                .subcommands
                .iter()
                .all(|s| s.name.starts_with(&sub_prefix)));
            assert_eq!(spec.is_write(), spec.flags & flag::WRITE != 0);
        }
        assert_eq!(TABLE.len(), names.split_whitespace().count());
        assert!(lookup(b"nosuch").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(b"get\0").is_none());
        assert!(lookup_path(b"config|GET").is_some());
        assert!(lookup_path(b"config|nosuch").is_none());
        assert!(lookup_path(b"get|x").is_none());
        assert!(lookup_path(b"config|get|x").is_none());
        for (cmd, scope) in [
            (b"get".as_slice(), Scope::Key),
            (b"mset", Scope::MultiKey),
            (b"dbsize", Scope::AllShards),
            (b"publish", Scope::PubSub),
            (b"hello", Scope::Connection),
        ] {
            assert_eq!(lookup(cmd).unwrap().scope, scope);
        }
    }

    fn command(args: &[&[u8]]) -> Vec<u8> {
        let arena = arena();
        let argv = argv(&arena, args);
        let mut reply = Reply::new(&arena, 1 << 30);
        command_reply(&mut reply, &argv).unwrap();
        reply.out.to_vec()
    }

    #[test]
    fn command_info_and_docs_match_redis() {
        let info: Vec<&[u8]> = vec![
            b"command",
            b"info",
            b"get",
            b"set",
            b"del",
            b"mset",
            b"expire",
            b"ping",
            b"publish",
            b"auth",
            b"dbsize",
            b"flushall",
            b"ttl",
            b"nosuch",
            b"config|get",
            b"CLIENT|SETNAME",
            b"command|count",
        ];
        assert_eq!(
            String::from_utf8_lossy(&command(&info)),
            String::from_utf8_lossy(INFO_SAMPLE)
        );
        let docs: Vec<&[u8]> = vec![
            b"command",
            b"docs",
            b"get",
            b"nosuch",
            b"set",
            b"expire",
            b"mset",
            b"hello",
            b"flushall",
            b"config|get",
            b"subscribe",
            b"info",
        ];
        assert_eq!(
            String::from_utf8_lossy(&command(&docs)),
            String::from_utf8_lossy(DOCS_SAMPLE)
        );
        // Checked against redis-server 7.0.15.
        assert_eq!(
            command(&[b"command", b"count", b"x"]),
            b"-ERR wrong number of arguments for 'command|count' command\r\n"
        );
        assert_eq!(
            command(&[b"command", b"foo\r\nbar"]),
            b"-ERR unknown subcommand 'foo  bar'. Try COMMAND HELP.\r\n"
        );
        assert_eq!(command(&[b"command", b"docs", b"nosuch"]), b"*0\r\n");
        assert_eq!(command(&[b"command", b"info", b"get|x"]), b"*1\r\n$-1\r\n");
        assert_eq!(
            command(&[b"command", b"info", b"config|nosuch"]),
            b"*1\r\n$-1\r\n"
        );
        // Ours: 37 commands.
        assert_eq!(command(&[b"command", b"count"]), b":37\r\n");
        assert_eq!(command(&[b"COMMAND", b"COUNT"]), b":37\r\n");
    }

    /// A minimal RESP2 reader for checking reply shapes.
    fn parse(b: &[u8], i: &mut usize) -> Option<Vec<Vec<u8>>> {
        let end = b[*i..].windows(2).position(|w| w == b"\r\n")? + *i;
        let (t, line) = (b[*i], &b[*i + 1..end]);
        *i = end + 2;
        let n: i64 = std::str::from_utf8(line).ok()?.parse().unwrap_or(0);
        match t {
            b'$' if n >= 0 => {
                let s = b[*i..*i + n as usize].to_vec();
                *i += n as usize + 2;
                Some(vec![s])
            }
            b'*' => {
                let mut out = Vec::new();
                for _ in 0..n {
                    out.extend(parse(b, i)?);
                }
                Some(out)
            }
            _ => Some(vec![line.to_vec()]),
        }
    }

    #[test]
    fn command_all_lists_every_command() {
        for args in [&[b"command".as_slice()][..], &[b"command", b"info"]] {
            let out = command(args);
            assert!(out.starts_with(b"*37\r\n*10\r\n$6\r\nappend\r\n:3\r\n"));
            let mut i = 0;
            parse(&out, &mut i).unwrap();
            assert_eq!(i, out.len());
        }
        let out = command(&[b"command", b"docs"]);
        assert!(out.starts_with(b"*74\r\n$6\r\nappend\r\n*10\r\n$7\r\nsummary\r\n"));
        let mut i = 0;
        let flat = parse(&out, &mut i).unwrap();
        assert_eq!(i, out.len());
        for spec in TABLE {
            assert!(flat.iter().any(|s| s == spec.name.as_bytes()));
        }
    }

    #[test]
    fn records_are_rewritten_deterministically() {
        let arena = arena();
        let mut db = Db::new();
        let cases: &[(&[&[u8]], &[&str])] = &[
            (
                &[b"set", b"k", b"v", b"EX", b"10", b"GET"],
                &["set", "k", "v", "PXAT", "1700000010000"],
            ),
            (
                &[b"set", b"k", b"w", b"KEEPTTL"],
                &["set", "k", "w", "PXAT", "1700000010000"],
            ),
            (&[b"set", b"k", b"x", b"NX"], &[]),
            (
                &[b"set", b"k", b"x", b"XX", b"PX", b"1"],
                &["set", "k", "x", "PXAT", "1700000000001"],
            ),
            (&[b"set", b"k", b"y"], &["set", "k", "y"]),
            (&[b"incr", b"n"], &["SET", "n", "1"]),
            (&[b"incrby", b"n", b"41"], &["SET", "n", "42"]),
            (
                &[b"expire", b"n", b"5"],
                &["PEXPIREAT", "n", "1700000005000"],
            ),
            (
                &[b"decrby", b"n", b"2"],
                &["SET", "n", "40", "PXAT", "1700000005000"],
            ),
            (&[b"pexpire", b"n", b"100", b"GT"], &[]),
            (&[b"persist", b"n"], &["persist", "n"]),
            (&[b"persist", b"n"], &[]),
            (&[b"expireat", b"n", b"1"], &["DEL", "n"]),
            (&[b"append", b"n", b"z"], &["SET", "n", "z"]),
            (&[b"append", b"n", b"z"], &["append", "n", "z"]),
            (&[b"append", b"n", b""], &[]),
            (&[b"getdel", b"n"], &["DEL", "n"]),
            (&[b"getdel", b"n"], &[]),
            (&[b"del", b"n", b"k"], &["del", "n", "k"]),
            (&[b"del", b"n", b"k"], &[]),
            (
                &[b"mset", b"a", b"1", b"b", b"2"],
                &["mset", "a", "1", "b", "2"],
            ),
            (&[b"set", b"a", b"v", b"PXAT", b"1"], &["DEL", "a"]),
            (&[b"set", b"a", b"v", b"EXAT", b"1"], &[]),
            (&[b"get", b"b"], &[]),
            (&[b"flushall", b"ASYNC"], &["flushall"]),
            (&[b"flushall"], &[]),
        ];
        for (args, want) in cases {
            let (_, record) = exec(&arena, &mut db, NOW, args);
            let got = record.as_deref().map(record_text).unwrap_or_default();
            assert_eq!(got, *want, "record of {:?}", show(args));
        }
    }

    #[test]
    fn replay_rebuilds_the_keyspace_across_time_and_a_checkpoint() {
        // The clock advances between commands, keys expire under later commands, and a
        // checkpoint is taken half-way: recovery (checkpoint + the records after it) must
        // end where the live keyspace ended.
        let arena = arena();
        let mut live = Db::new();
        let steps: &[(u64, &[&[u8]])] = &[
            (0, &[b"set", b"a", b"1", b"PX", b"100"]),
            (0, &[b"set", b"b", b"x", b"PX", b"100"]),
            (0, &[b"set", b"c", b"5", b"PX", b"1000"]),
            (0, &[b"set", b"d", b"keep", b"PX", b"1000"]),
            (0, &[b"set", b"e", b"gone", b"PX", b"150"]),
            (10, &[b"mset", b"f", b"1", b"g", b"2"]),
            (50, &[b"checkpoint"]),
            (200, &[b"incr", b"a"]),
            (200, &[b"append", b"b", b"y"]),
            (300, &[b"incr", b"c"]),
            (300, &[b"append", b"d", b"!"]),
            (300, &[b"set", b"e", b"new", b"KEEPTTL"]),
            (400, &[b"persist", b"d"]),
            (400, &[b"expire", b"f", b"10"]),
            (500, &[b"getdel", b"g"]),
            (2000, &[b"set", b"h", b"v", b"NX"]),
        ];
        let mut checkpoint = Vec::new();
        let mut records = Vec::new();
        for (dt, args) in steps {
            if args[0] == b"checkpoint" {
                live.write_checkpoint(&mut checkpoint, NOW + dt).unwrap();
                records.clear();
                continue;
            }
            let (_, record) = exec(&arena, &mut live, NOW + dt, args);
            records.extend(record);
        }
        let mut recovered = Db::read_checkpoint(&mut checkpoint.as_slice(), &arena).unwrap();
        for r in &records {
            replay(&mut recovered, r, &arena).unwrap();
        }
        let end = NOW + 2000;
        let keys = keys_of(&steps.iter().map(|(_, a)| *a).collect::<Vec<_>>());
        assert_same(&mut live, &mut recovered, &keys, end);
        // What the live keyspace holds at the end, for the record.
        let mut at_end = |k: &[u8]| live.get_with_expiry(k, end).map(|(v, e)| (v.to_vec(), e));
        assert_eq!(at_end(b"a"), Some((b"1".to_vec(), None)));
        assert_eq!(at_end(b"b"), Some((b"y".to_vec(), None)));
        assert_eq!(at_end(b"c"), None);
        assert_eq!(at_end(b"d"), Some((b"keep!".to_vec(), None)));
        assert_eq!(at_end(b"e"), Some((b"new".to_vec(), None)));
        assert_eq!(at_end(b"f"), Some((b"1".to_vec(), Some(NOW + 10_400))));
        assert_eq!(at_end(b"g"), None);
        assert_eq!(at_end(b"h"), Some((b"v".to_vec(), None)));
        recovered.expire_cycle(end, 100);
        live.expire_cycle(end, 100);
        assert_eq!(recovered.len(), live.len());
    }

    #[test]
    fn random_commands_never_panic_and_replay_exactly() {
        // 20 000 commands drawn from the keyspace vocabulary, with options, numbers and
        // junk, over a few keys while the clock moves; a checkpoint every 2 000. Every
        // reply must parse, and recovery must match the live keyspace at the end.
        let arena = arena_with(1024, 64);
        let names: &[&[u8]] = &[
            b"set",
            b"get",
            b"getdel",
            b"del",
            b"exists",
            b"incr",
            b"incrby",
            b"decr",
            b"decrby",
            b"mget",
            b"mset",
            b"append",
            b"strlen",
            b"expire",
            b"pexpire",
            b"expireat",
            b"pexpireat",
            b"ttl",
            b"pttl",
            b"persist",
            b"dbsize",
            b"flushall",
        ];
        let words: &[&[u8]] = &[
            b"a",
            b"b",
            b"c",
            b"d",
            b"NX",
            b"XX",
            b"GT",
            b"LT",
            b"GET",
            b"KEEPTTL",
            b"EX",
            b"PX",
            b"EXAT",
            b"PXAT",
            b"1",
            b"-1",
            b"0",
            b"10",
            b"250",
            b"-7",
            b"abc",
            b"",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"1700000000100",
            b"1700000001",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut live = Db::new();
        let mut checkpoint = Vec::new();
        let mut records = Vec::new();
        let mut now = NOW;
        let mut writes = 0;
        for i in 0..20_000 {
            now += next(40) as u64;
            if i % 2_000 == 0 {
                checkpoint.clear();
                live.write_checkpoint(&mut checkpoint, now).unwrap();
                records.clear();
            }
            let mut args = vec![names[next(names.len())], words[next(4)]];
            for _ in 0..next(5) {
                args.push(words[next(words.len())]);
            }
            let (reply, record) = exec(&arena, &mut live, now, &args);
            let mut at = 0;
            assert!(
                parse(&reply, &mut at).is_some() && at == reply.len(),
                "{:?}",
                show(&args)
            );
            writes += usize::from(record.is_some());
            records.extend(record);
            if i % 100 == 0 {
                live.expire_cycle(now, 10);
            }
        }
        assert!(writes > 1_000, "only {writes} writes");
        let mut recovered = Db::read_checkpoint(&mut checkpoint.as_slice(), &arena).unwrap();
        for r in &records {
            replay(&mut recovered, r, &arena).unwrap();
        }
        let keys: Vec<Vec<u8>> = words.iter().map(|w| w.to_vec()).collect();
        assert_same(&mut live, &mut recovered, &keys, now);
    }

    #[test]
    fn replay_rejects_what_it_does_not_know() {
        let arena = arena();
        let mut db = Db::new();
        let bad: &[&[&[u8]]] = &[
            &[b"incr", b"k"],
            &[b"set", b"k"],
            &[b"set", b"k", b"v", b"EX", b"10"],
            &[b"set", b"k", b"v", b"PXAT", b"soon"],
            &[b"set", b"k", b"v", b"PXAT", b"0"],
            &[b"pexpireat", b"k", b"-5"],
            &[b"mset", b"k"],
            &[b"flushall", b"async"],
            &[b"del"],
            &[],
        ];
        for args in bad {
            let err = replay(&mut db, &argv(&arena, args), &arena).unwrap_err();
            assert!(!err.is_empty());
        }
        assert_eq!(db.len(), 0);
        replay(
            &mut db,
            &argv(&arena, &[b"SET", b"k", b"v", b"pxat", b"7"]),
            &arena,
        )
        .unwrap();
        assert_eq!(
            db.get_with_expiry(b"k", 0).map(|(v, e)| (v.to_vec(), e)),
            Some((b"v".to_vec(), Some(7)))
        );
    }

    #[test]
    fn lazy_expiry_follows_redis_boundaries() {
        let arena = arena();
        let mut db = Db::new();
        exec(&arena, &mut db, NOW, &[b"set", b"k", b"v", b"PX", b"1000"]);
        assert_eq!(exec(&arena, &mut db, NOW, &[b"pttl", b"k"]).0, b":1000\r\n");
        assert_eq!(
            exec(&arena, &mut db, NOW + 499, &[b"ttl", b"k"]).0,
            b":1\r\n"
        );
        assert_eq!(
            exec(&arena, &mut db, NOW + 501, &[b"ttl", b"k"]).0,
            b":0\r\n"
        );
        // At the deadline itself the key is alive with a PTTL of 0; a millisecond later it
        // is gone.
        assert_eq!(
            exec(&arena, &mut db, NOW + 1000, &[b"pttl", b"k"]).0,
            b":0\r\n"
        );
        assert_eq!(
            exec(&arena, &mut db, NOW + 1000, &[b"get", b"k"]).0,
            b"$1\r\nv\r\n"
        );
        assert_eq!(
            exec(&arena, &mut db, NOW + 1001, &[b"get", b"k"]).0,
            b"$-1\r\n"
        );
        assert_eq!(db.len(), 0);
        // SET with a deadline in the past deletes at once, even an existing key.
        exec(&arena, &mut db, NOW, &[b"set", b"k", b"v"]);
        let (reply, record) = exec(
            &arena,
            &mut db,
            NOW,
            &[b"set", b"k", b"w", b"PXAT", b"1", b"GET"],
        );
        assert_eq!(reply, b"$1\r\nv\r\n");
        assert_eq!(
            record.map(|r| record_text(&r)),
            Some(vec!["DEL".into(), "k".into()])
        );
        assert_eq!(db.len(), 0);
        // EXPIRE to now deletes (Redis's checkAlreadyExpired uses <=).
        exec(&arena, &mut db, NOW, &[b"set", b"k", b"v"]);
        assert_eq!(
            exec(
                &arena,
                &mut db,
                NOW,
                &[b"pexpireat", b"k", NOW.to_string().as_bytes()]
            )
            .0,
            b":1\r\n"
        );
        assert_eq!(db.len(), 0);
        // The farthest deadline Redis accepts; its TTL cannot overflow, even at time 0.
        let max = i64::MAX.to_string();
        exec(
            &arena,
            &mut db,
            NOW,
            &[b"set", b"far", b"v", b"PXAT", max.as_bytes()],
        );
        let ttl = format!(":{}\r\n", (i64::MAX - NOW as i64 + 500) / 1000);
        assert_eq!(
            exec(&arena, &mut db, NOW, &[b"ttl", b"far"]).0,
            ttl.as_bytes()
        );
        assert_eq!(
            exec(&arena, &mut db, 0, &[b"ttl", b"far"]).0,
            b":9223372036854775\r\n"
        );
    }

    #[test]
    fn values_are_stored_and_served_without_copies() {
        let arena = arena();
        let mut db = Db::new();
        let big = vec![7u8; 300_000];
        let args = argv(&arena, &[b"set", b"big", &big]);
        let value_blocks: Vec<*const u8> = args[2].chunks().map(<[u8]>::as_ptr).collect();
        let mut reply = Reply::new(&arena, 1 << 30);
        execute(&mut db, spec_of(&args), &args, NOW, &mut reply).unwrap();
        let stored: Vec<*const u8> = db
            .get(b"big", NOW)
            .unwrap()
            .chunks()
            .map(<[u8]>::as_ptr)
            .collect();
        assert_eq!(stored, value_blocks);
        let mut reply = Reply::new(&arena, 1 << 30);
        let get = argv(&arena, &[b"get", b"big"]);
        execute(&mut db, spec_of(&get), &get, NOW, &mut reply).unwrap();
        assert!(reply
            .out
            .chunks()
            .any(|c| value_blocks.contains(&c.as_ptr())));
        assert_eq!(reply.out.len(), 9 + 300_000 + 2);
        // APPEND grows it past the parser chain's own limit.
        let mut small = BufChain::new(4);
        small.append_slice(&arena, b"abcd").unwrap();
        db.set(b"s", small, None);
        let (reply, _) = exec(
            &arena,
            &mut db,
            NOW,
            &[b"append", b"s", &vec![b'e'; 10_000]],
        );
        assert_eq!(reply, b":10004\r\n");
        assert_eq!(db.get(b"s", NOW).unwrap().to_vec()[..6], *b"abcdee");
    }

    #[test]
    fn pool_exhaustion_leaves_the_keyspace_unchanged() {
        let arena = arena_with(8, 1);
        let mut db = Db::new();
        exec(&arena, &mut db, NOW, &[b"set", b"n", b"41"]);
        let incr = argv(&arena, &[b"incr", b"n"]);
        let append = argv(&arena, &[b"append", b"n", b"x"]);
        // Take every free block: INCR cannot build its value, APPEND cannot reply.
        let mut hoard = Vec::new();
        for class in 0..2 {
            while let Ok(b) = arena.alloc_class(class) {
                hoard.push(b);
            }
        }
        for args in [&incr, &append] {
            let mut reply = Reply::new(&arena, 1 << 20);
            assert!(execute(&mut db, spec_of(args), args, NOW, &mut reply).is_err());
            assert_eq!(db.get(b"n", NOW).unwrap().to_vec(), b"41");
        }
        drop(hoard);
        let mut reply = Reply::new(&arena, 1 << 20);
        assert!(execute(&mut db, spec_of(&incr), &incr, NOW, &mut reply)
            .unwrap()
            .is_some());
        assert_eq!(db.get(b"n", NOW).unwrap().to_vec(), b"42");
    }

    #[test]
    fn keyspace_commands_only() {
        let arena = arena();
        let mut db = Db::new();
        let (reply, record) = exec(&arena, &mut db, NOW, &[b"publish", b"c", b"m"]);
        assert!(reply.starts_with(b"-ERR 'publish' is served by the connection handler"));
        assert!(record.is_none());
    }

    #[test]
    fn integers_parse_like_string2ll() {
        for (s, want) in [
            (&b"0"[..], Some(0)),
            (b"-1", Some(-1)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"-9223372036854775809", None),
            (b"", None),
            (b"-", None),
            (b"+1", None),
            (b"01", None),
            (b"-0", None),
            (b"1 ", None),
            (b"1a", None),
            (b"99999999999999999999", None),
        ] {
            assert_eq!(parse_i64_bytes(s), want, "{:?}", String::from_utf8_lossy(s));
        }
    }
}
