//! The effect commands replicas and the AOF receive. They carry absolute
//! times and explicit values, so replaying them gives the primary's value
//! exactly, whenever and wherever they run.

use super::apply::index_value;
use super::guard::{Args, CmdError, CmdResult};
use super::parse::{self, is};
use super::rm::{Ctx, Key, Slot};
use super::sealing;
use crate::core::encoding;
use crate::core::session::TIME_MAX;

/// SESSION.APPLY key payload [NOEXPIRE]: stores a whole encoded value. The
/// key expires at the value's end of life unless NOEXPIRE is given (the AOF
/// rewrite uses it: Redis writes the key's own PEXPIREAT after it).
pub fn apply(ctx: Ctx, args: Args) -> CmdResult {
    let set_expire = match args.len() {
        3 => true,
        4 if is(args.get(3), "NOEXPIRE") => false,
        _ => return Err(CmdError::Syntax),
    };
    let mut session = encoding::decode(args.get(2)).map_err(|e| CmdError::Err(e.to_string()))?;
    sealing::open_on_arrival(&mut session, args.get(1));
    let key = Key::open(ctx, args.raw(1), true);
    if let Slot::Other = key.slot() {
        return Err(CmdError::WrongType);
    }
    let end = session.end_of_life();
    if !key.put(Box::new(session)) {
        return Err(CmdError::Err("could not store the session".into()));
    }
    if set_expire {
        key.set_abs_expire(end);
    }
    if let Slot::Session(s) = key.slot() {
        index_value(ctx, args.get(1), s);
        // Passed on (to this server's AOF) in the form this server writes
        // out: a plaintext payload sent to a server with a key file goes
        // into its AOF sealed, never as it came.
        sealing::with_outgoing(s, args.get(1), |v| {
            if set_expire {
                ctx.replicate_apply(args.raw(1), v)
            } else {
                ctx.replicate_apply_noexpire(args.raw(1), v)
            }
        });
    }
    ctx.signal_modified(args.raw(1));
    ctx.notify(c"session.apply", args.raw(1));
    ctx.reply_simple(c"OK");
    Ok(())
}

/// SESSION.APPLYRENEW key last_access idle version: the effect of a renewal.
pub fn apply_renew(ctx: Ctx, args: Args) -> CmdResult {
    let last_access = parse::time(args.get(2), 0).or_else(|_| parse::at_least(args.get(2), 0))?;
    let idle = parse::time(args.get(3), 1)?;
    let version = parse::at_least(args.get(4), 1)?;
    if version > crate::core::session::VERSION_MAX {
        return Err(CmdError::NotInteger);
    }
    if last_access > i64::MAX - 2 * TIME_MAX {
        return Err(CmdError::NotInteger);
    }
    let key = Key::open(ctx, args.raw(1), true);
    match key.slot() {
        Slot::Other => return Err(CmdError::WrongType),
        Slot::Empty => ctx.reply_int(0),
        Slot::Session(s) => {
            s.last_access = last_access;
            s.idle = idle;
            s.version = version;
            key.set_abs_expire(s.end_of_life());
            ctx.signal_modified(args.raw(1));
            ctx.notify(c"session.renew", args.raw(1));
            ctx.replicate_verbatim();
            ctx.reply_int(1);
        }
    }
    Ok(())
}
