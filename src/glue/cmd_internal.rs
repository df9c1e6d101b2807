//! The effect commands replicas and the AOF receive. They carry absolute
//! times and explicit values, so replaying them gives the primary's value
//! exactly, whenever and wherever they run.

use super::apply::{index_value, reindex_in_place, Before};
use super::guard::{Args, CmdError, CmdResult};
use super::parse::{self, is};
use super::rm::{Ctx, Key, Slot};
use super::sealing;
use crate::core::encoding;
use crate::core::session::{Flags, Limits, TIME_MAX, VERSION_MAX};

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

/// SESSION.APPLYSET key version [META n name value ...] [UNSET n field ...]
/// [DATA field value ...]: the effect of a field-level SESSION.SET on a
/// server whose values leave in plaintext. The fields are merged exactly as
/// the primary merged them (its limits were checked there) and the version
/// is set to the primary's. Replies 1, or 0 when the key is missing.
pub fn apply_set(ctx: Ctx, args: Args) -> CmdResult {
    let version = parse::at_least(args.get(2), 1)?;
    if version > VERSION_MAX {
        return Err(CmdError::NotInteger);
    }
    let w = parse::FieldWrite::parse(&args, 3, "session.applyset", false)?;
    let key = Key::open(ctx, args.raw(1), true);
    let s = match key.slot() {
        Slot::Other => return Err(CmdError::WrongType),
        Slot::Empty => {
            ctx.reply_int(0);
            return Ok(());
        }
        Slot::Session(s) => s,
    };
    // Neither can follow a field write on a primary in step with this
    // server; refused, so a stray effect changes nothing.
    if s.flags.contains(Flags::REVOKED) {
        return Err(CmdError::Revoked(s.reason.to_vec()));
    }
    if s.flags.contains(Flags::SEALED) {
        return Err(CmdError::Sealed("the session's data is held sealed here".into()));
    }
    let before = Before::of(s);
    s.set(None, &w.meta, &w.unset, &w.data, &Limits::NONE)?;
    s.version = version;
    reindex_in_place(ctx, args.get(1), before, s);
    ctx.signal_modified(args.raw(1));
    ctx.notify(c"session.set", args.raw(1));
    // Passed on as this server writes out: a server with a key file never
    // puts plaintext fields into its AOF.
    if sealing::seals_outgoing() {
        sealing::with_outgoing(s, args.get(1), |v| ctx.replicate_apply(args.raw(1), v));
    } else {
        ctx.replicate_verbatim();
    }
    ctx.reply_int(1);
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
            // What the primary's renewal showed its readers: a new version,
            // or a session in grace back to active (the renewal's time, now
            // last_access, at or past the old idle deadline). Only that is
            // signalled, as on the primary (`Write::Renew`).
            let visible = version != s.version
                || (!s.flags.contains(Flags::REVOKED) && last_access >= s.idle_deadline());
            s.last_access = last_access;
            s.idle = idle;
            s.version = version;
            key.set_abs_expire(s.end_of_life());
            if visible {
                ctx.signal_modified(args.raw(1));
            }
            ctx.notify(c"session.renew", args.raw(1));
            ctx.replicate_verbatim();
            ctx.reply_int(1);
        }
    }
    Ok(())
}
