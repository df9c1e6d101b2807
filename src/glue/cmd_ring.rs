//! SESSION.RING.SET / RING.NODE / RING.LOAD / RING.GET and SESSION.ROUTE
//! (SPEC §8), and the two effect commands replicas and the AOF receive.
//! Each command takes one key; the logic is `core::routing`.
//!
//! Every ring write, a client's or the primary's effect, ends in the
//! applier (`apply::commit_ring`): propagation with absolute values (the
//! wire format in `wire.rs`), the modified-key signal, the keyspace event.

use super::apply::{commit_ring as commit, RingEffect as Effect};
use super::guard::{Args, CmdError, CmdResult};
use super::parse::{self, is};
use super::rm::{self, Ctx, Key, RingSlot};
use super::wire;
use crate::core::routing::{self, NodeState, Ring, RingError};

impl From<RingError> for CmdError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::BadWeight | RingError::BadLoad => CmdError::NotInteger,
            e => CmdError::Err(e.to_string()),
        }
    }
}

fn weight(arg: &[u8]) -> Result<u32, CmdError> {
    let w = parse::at_least(arg, 1)?;
    if w > routing::MAX_WEIGHT as i64 {
        return Err(CmdError::NotInteger);
    }
    Ok(w as u32)
}

fn balance(arg: &[u8]) -> Result<u32, CmdError> {
    routing::parse_balance(arg).ok_or_else(|| {
        CmdError::Err("BALANCE must be a decimal above 1 and at most 1000, with at most 3 decimals".into())
    })
}

/// SESSION.RING.SET ring [BALANCE c] [LOADTTL ms] NODE name weight [NODE ...]
pub fn set(ctx: Ctx, args: Args) -> CmdResult {
    let (mut bal, mut ttl) = (None, None);
    let mut members: Vec<(&[u8], u32)> = Vec::new();
    let mut i = 2;
    while i < args.len() {
        let word = args.get(i);
        if is(word, "BALANCE") {
            parse::once(&mut bal, balance(parse::value(&args, i)?)?)?;
            i += 2;
        } else if is(word, "LOADTTL") {
            let v = parse::at_least(parse::value(&args, i)?, 1)?;
            if v > routing::MAX_LOADTTL {
                return Err(CmdError::NotInteger);
            }
            parse::once(&mut ttl, v)?;
            i += 2;
        } else if is(word, "NODE") {
            if i + 2 >= args.len() {
                return Err(CmdError::Syntax);
            }
            members.push((args.get(i + 1), weight(args.get(i + 2))?));
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if members.is_empty() {
        return Err(CmdError::Syntax);
    }
    let key = Key::open(ctx, args.raw(1), true);
    let version = match key.ring_slot() {
        RingSlot::Other => return Err(CmdError::WrongType),
        RingSlot::Ring(r) => {
            r.set(bal, ttl, &members)?;
            commit(ctx, args.raw(1), r, Effect::Whole, Some(c"ring.set"));
            r.version
        }
        RingSlot::Empty => {
            let r = Ring::new(
                bal.unwrap_or(routing::DEFAULT_BALANCE),
                ttl.unwrap_or(routing::DEFAULT_LOADTTL),
                &members,
            )?;
            if !key.put_ring(Box::new(r)) {
                return Err(CmdError::Err("could not store the ring".into()));
            }
            let RingSlot::Ring(r) = key.ring_slot() else {
                return Err(CmdError::Err("could not store the ring".into()));
            };
            commit(ctx, args.raw(1), r, Effect::Whole, Some(c"ring.set"));
            r.version
        }
    };
    ctx.reply_int(version as i64);
    Ok(())
}

/// SESSION.RING.NODE ring name UP|DOWN|DRAIN [WEIGHT w]: nil for a missing
/// ring.
pub fn node(ctx: Ctx, args: Args) -> CmdResult {
    let state = NodeState::parse(args.get(3)).ok_or(CmdError::Syntax)?;
    let w = match args.len() {
        4 => None,
        6 if is(args.get(4), "WEIGHT") => Some(weight(args.get(5))?),
        _ => return Err(CmdError::Syntax),
    };
    let key = Key::open(ctx, args.raw(1), true);
    match key.ring_slot() {
        RingSlot::Other => Err(CmdError::WrongType),
        RingSlot::Empty => {
            ctx.reply_null();
            Ok(())
        }
        RingSlot::Ring(r) => {
            r.set_node(args.get(2), state, w)?;
            commit(ctx, args.raw(1), r, Effect::Whole, Some(c"ring.node"));
            ctx.reply_int(r.version as i64);
            Ok(())
        }
    }
}

/// SESSION.RING.LOAD ring name load [name load ...]: `OK`, nil for a
/// missing ring. Loads carry no version; the key is still signalled
/// modified, so a router tracking the ring sees them.
pub fn load(ctx: Ctx, args: Args) -> CmdResult {
    let pairs = wire::ring_load_pairs(&args, 2)?;
    let key = Key::open(ctx, args.raw(1), true);
    match key.ring_slot() {
        RingSlot::Other => Err(CmdError::WrongType),
        RingSlot::Empty => {
            ctx.reply_null();
            Ok(())
        }
        RingSlot::Ring(r) => {
            let now = rm::now_ms();
            r.set_loads(now, &pairs)?;
            let rest = args.argv().get(2..).unwrap_or(&[]);
            commit(ctx, args.raw(1), r, Effect::Loads(now, rest), None);
            ctx.reply_simple(c"OK");
            Ok(())
        }
    }
}

/// SESSION.RING.GET ring: the map of SPEC §8, nil for a missing ring. A
/// node that never reported has load 0 and load_age_ms -1.
pub fn get(ctx: Ctx, args: Args) -> CmdResult {
    let key = Key::open(ctx, args.raw(1), false);
    let r = match key.ring_slot() {
        RingSlot::Other => return Err(CmdError::WrongType),
        RingSlot::Empty => {
            ctx.reply_null();
            return Ok(());
        }
        RingSlot::Ring(r) => r,
    };
    let now = rm::now_ms();
    ctx.reply_map(4);
    ctx.reply_bulk(b"version");
    ctx.reply_int(r.version as i64);
    ctx.reply_bulk(b"balance");
    ctx.reply_bulk(routing::format_balance(r.balance).as_bytes());
    ctx.reply_bulk(b"loadttl");
    ctx.reply_int(r.loadttl);
    ctx.reply_bulk(b"nodes");
    ctx.reply_map(r.nodes().len());
    for n in r.nodes() {
        ctx.reply_bulk(&n.name);
        ctx.reply_map(4);
        ctx.reply_bulk(b"weight");
        ctx.reply_int(n.weight as i64);
        ctx.reply_bulk(b"state");
        ctx.reply_bulk(n.state.name().as_bytes());
        let (load, age) = match n.load {
            Some((l, at)) => (l as i64, now.saturating_sub(at).max(0)),
            None => (0, -1),
        };
        ctx.reply_bulk(b"load");
        ctx.reply_int(load);
        ctx.reply_bulk(b"load_age_ms");
        ctx.reply_int(age);
    }
    Ok(())
}

/// SESSION.ROUTE ring id [STICKY node] [COUNT k]
pub fn route(ctx: Ctx, args: Args) -> CmdResult {
    let (mut sticky, mut count) = (None, None);
    let mut i = 3;
    while i < args.len() {
        if is(args.get(i), "STICKY") {
            parse::once(&mut sticky, parse::value(&args, i)?)?;
        } else if is(args.get(i), "COUNT") {
            let k = parse::at_least(parse::value(&args, i)?, 1)?;
            parse::once(&mut count, k.min(routing::MAX_NODES as i64) as usize)?;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let key = Key::open(ctx, args.raw(1), false);
    let r = match key.ring_slot() {
        RingSlot::Other => return Err(CmdError::WrongType),
        RingSlot::Empty => {
            ctx.reply_null();
            return Ok(());
        }
        RingSlot::Ring(r) => r,
    };
    let now = rm::now_ms();
    let name = |i: usize| r.nodes().get(i).map(|n| n.name.as_slice()).unwrap_or_default();
    match count {
        None => match r.route(args.get(2), now, sticky) {
            Some(i) => ctx.reply_bulk(name(i)),
            None => ctx.reply_null(),
        },
        Some(k) => {
            let many = r.route_count(args.get(2), now, sticky, k);
            if many.is_empty() {
                ctx.reply_null();
            } else {
                ctx.reply_array(many.len());
                for i in many {
                    ctx.reply_bulk(name(i));
                }
            }
        }
    }
    Ok(())
}

/// SESSION.RING.APPLY ring payload: stores a whole encoded ring (the
/// effect of RING.SET and RING.NODE, and the AOF rewrite's form). An
/// existing ring is replaced in place, so the key keeps its expiry.
pub fn apply(ctx: Ctx, args: Args) -> CmdResult {
    let payload = wire::parse_ring_apply(&args)?;
    let ring = Ring::decode(payload).map_err(|e| CmdError::Err(format!("bad ring payload: {e}")))?;
    let key = Key::open(ctx, args.raw(1), true);
    match key.ring_slot() {
        RingSlot::Other => return Err(CmdError::WrongType),
        RingSlot::Ring(r) => *r = ring,
        RingSlot::Empty => {
            if !key.put_ring(Box::new(ring)) {
                return Err(CmdError::Err("could not store the ring".into()));
            }
        }
    }
    let RingSlot::Ring(r) = key.ring_slot() else {
        return Err(CmdError::Err("could not store the ring".into()));
    };
    commit(ctx, args.raw(1), r, Effect::Whole, Some(c"ring.apply"));
    ctx.reply_simple(c"OK");
    Ok(())
}

/// SESSION.RING.APPLYLOAD ring at name load [name load ...]: loads as the
/// primary recorded them, at its absolute time. 0 for a missing ring.
pub fn apply_load(ctx: Ctx, args: Args) -> CmdResult {
    let (at, pairs) = wire::parse_ring_loads(&args)?;
    let key = Key::open(ctx, args.raw(1), true);
    match key.ring_slot() {
        RingSlot::Other => Err(CmdError::WrongType),
        RingSlot::Empty => {
            ctx.reply_int(0);
            Ok(())
        }
        RingSlot::Ring(r) => {
            r.set_loads(at, &pairs)?;
            let rest = args.argv().get(3..).unwrap_or(&[]);
            commit(ctx, args.raw(1), r, Effect::Loads(at, rest), None);
            ctx.reply_int(1);
            Ok(())
        }
    }
}
