//! The RESP request parser (engine/examples/resp-server/protocol.rs, included by path so it
//! is the very same code) on arbitrary bytes in arbitrary chunkings.
//!
//! Input layout: byte 0 picks the configuration (bit 0 set: not authenticated; bit 1 set:
//! tiny limits, so the "too big" and length checks are reached with short inputs), byte 1
//! seeds the chunking (receives of 1 to 2^(seed % 8) bytes), the rest is the byte stream.
//!
//! Checks:
//! - no panic, whatever the bytes;
//! - the outcome does not depend on the chunking: the stream fed whole and fed in pieces
//!   gives the same commands, the same final error (or none) and the same leftover;
//! - `Ok(false)` is stable (calling again without new bytes changes nothing) and an error
//!   is final (returned again by the next call);
//! - every command has at least one argument and respects the limits;
//! - a parsed command re-serialized as a multibulk parses back to the same arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfort_pool::{
    Arena, BackingPref, BufChain, Growth, NumaPolicy, PoolConfig, Registration, SizeClass,
};

#[path = "../../engine/examples/resp-server/protocol.rs"]
#[allow(dead_code)]
mod protocol;

use protocol::{Limits, Parser, ProtocolError};

thread_local! {
    static ARENA: Arena = Arena::new(PoolConfig {
        classes: vec![
            SizeClass { size: 4096, count: 1024 },
            SizeClass { size: 65536, count: 64 },
        ],
        growth: Growth::Chunks { max_chunks: 4 },
        backing: BackingPref::SmallPages,
        registration: Registration::Off,
        numa: NumaPolicy::FirstTouch,
    })
    .expect("arena");
}

const CHAIN_MAX: usize = 1 << 24;

type Cmd = Vec<Vec<u8>>;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    commands: Vec<Cmd>,
    error: Option<ProtocolError>,
    leftover: usize,
}

fn new_parser(limits: Limits, authenticated: bool) -> Parser {
    let mut p = Parser::new(limits);
    p.set_authenticated(authenticated);
    p
}

/// Parses everything `data` holds now; `None` if the arena ran dry (not the parser's fault).
fn drain(
    p: &mut Parser,
    data: &mut BufChain,
    arena: &Arena,
    limits: &Limits,
    out: &mut Outcome,
) -> Option<()> {
    let mut args = Vec::new();
    loop {
        match p.parse(data, arena, &mut args) {
            Ok(true) => {
                assert!(!args.is_empty(), "a command without arguments");
                for a in &args {
                    assert!(a.len() <= limits.proto_max_bulk_len.max(limits.max_inline_len));
                }
                assert!(args.len() <= limits.max_multibulk_len.max(limits.max_inline_len));
                out.commands
                    .push(args.iter().map(BufChain::to_vec).collect());
            }
            Ok(false) => {
                let before = data.len();
                assert_eq!(p.parse(data, arena, &mut args), Ok(false));
                assert_eq!(
                    data.len(),
                    before,
                    "Ok(false) consumed more on a second call"
                );
                assert!(args.is_empty());
                return Some(());
            }
            Err(ProtocolError::OutOfBuffers) => return None,
            Err(e) => {
                assert_eq!(p.parse(data, arena, &mut args), Err(e), "error not final");
                out.error = Some(e);
                return Some(());
            }
        }
    }
}

fn run(
    stream: &[u8],
    chunking: Option<u8>,
    limits: Limits,
    authenticated: bool,
    arena: &Arena,
) -> Option<Outcome> {
    let mut out = Outcome {
        commands: Vec::new(),
        error: None,
        leftover: 0,
    };
    let mut p = new_parser(limits, authenticated);
    // The receives are zero-copy slices of `full`, so any chunking costs no allocation.
    let mut full = BufChain::new(CHAIN_MAX);
    full.append_slice(arena, stream).ok()?;
    let mut data = BufChain::new(CHAIN_MAX);
    let mut rng = u32::from(chunking.unwrap_or(0)).wrapping_mul(2_654_435_761) | 1;
    let max_piece = 1usize << (chunking.unwrap_or(0) % 8);
    while !full.is_empty() {
        let n = match chunking {
            None => full.len(),
            Some(_) => {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                1 + (rng as usize) % max_piece
            }
        };
        data.append(&mut full.split_to(n.min(full.len()))).ok()?;
        drain(&mut p, &mut data, arena, &limits, &mut out)?;
        if out.error.is_some() {
            break;
        }
    }
    out.leftover = data.len() + full.len();
    Some(out)
}

/// Serializes `cmd` as a multibulk and parses it with a fresh parser.
fn roundtrip(cmd: &Cmd, arena: &Arena) {
    let mut wire = format!("*{}\r\n", cmd.len()).into_bytes();
    for a in cmd {
        wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        wire.extend_from_slice(a);
        wire.extend_from_slice(b"\r\n");
    }
    let mut data = BufChain::new(CHAIN_MAX);
    if data.append_slice(arena, &wire).is_err() {
        return;
    }
    let mut p = new_parser(Limits::default(), true);
    let mut args = Vec::new();
    assert_eq!(p.parse(&mut data, arena, &mut args), Ok(true));
    let again: Cmd = args.iter().map(BufChain::to_vec).collect();
    assert_eq!(&again, cmd, "re-serialized command parsed differently");
    assert!(data.is_empty());
}

fuzz_target!(|input: &[u8]| {
    if input.len() > 1 << 20 {
        return;
    }
    let (config, seed, stream) = match input {
        [c, s, rest @ ..] => (*c, *s, rest),
        _ => (0, 0, input),
    };
    let authenticated = config & 1 == 0;
    let limits = if config & 2 != 0 {
        Limits {
            proto_max_bulk_len: 40,
            max_multibulk_len: 6,
            max_inline_len: 24,
        }
    } else {
        Limits::default()
    };
    ARENA.with(|arena| {
        let Some(whole) = run(stream, None, limits, authenticated, arena) else {
            return;
        };
        let Some(pieces) = run(stream, Some(seed), limits, authenticated, arena) else {
            return;
        };
        assert_eq!(whole, pieces, "the outcome depends on the chunking");
        for cmd in &whole.commands {
            roundtrip(cmd, arena);
        }
    });
});
