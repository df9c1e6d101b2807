//! The effect commands replicas and the AOF receive, and `SESSION.IMPORT`,
//! the operator's whole-value import. The effect commands replicas and the AOF receive (`glue::wire` holds
//! their format). Each parses its effect and hands it to the applier, the
//! same one a client's write takes, so replaying them gives the primary's
//! value exactly, whenever and wherever they run. They are internal: the
//! command table refuses them to anything but the primary's link and the
//! AOF loader.

use super::apply::{self, Effect, Value};
use super::guard::{Args, CmdError, CmdResult};
use super::rm::{Ctx, Key, Slot};
use super::{sealing, wire};
use crate::core::effect::{self, ReplayError, Whole};
use crate::core::encoding;
use crate::core::index::Before;

/// SESSION.APPLY key payload [NOEXPIRE]: stores a whole encoded value. The
/// key expires at the value's end of life unless NOEXPIRE is given (the AOF
/// rewrite uses it: Redis writes the key's own PEXPIREAT after it).
pub fn apply(ctx: Ctx, args: Args) -> CmdResult {
    let (payload, expire) = wire::parse_apply(&args)?;
    let mut session = encoding::decode(payload).map_err(|e| CmdError::Err(e.to_string()))?;
    sealing::open_on_arrival(&mut session, args.get(1));
    let key = Key::open(ctx, args.raw(1), true);
    if let Slot::Other = key.slot() {
        return Err(CmdError::WrongType);
    }
    let tenant = apply::tenant_of(ctx, args.get(1));
    let e: Effect = Effect::Whole(Whole::Arrived { expire });
    apply::commit(ctx, &key, args.raw(1), tenant, Value::New(Box::new(session)), &e)?;
    ctx.reply_simple(c"OK");
    Ok(())
}

/// SESSION.IMPORT key record: the operator's way to store a whole encoded
/// value (the fallback's `redis-session migrate`), checked as strictly as
/// an RDB value. Not an effect command: clients may send it where the ACL
/// lets them (`@admin @dangerous`, like `RESTORE`); refused on a read-only
/// replica and over an existing key.
pub fn import(ctx: Ctx, args: Args) -> CmdResult {
    if ctx.is_readonly_replica() {
        return Err(CmdError::ReadOnly);
    }
    let mut session = encoding::decode(args.get(2)).map_err(|e| CmdError::Err(e.to_string()))?;
    sealing::open_on_arrival(&mut session, args.get(1));
    let key = Key::open(ctx, args.raw(1), true);
    match key.slot() {
        Slot::Empty => {}
        Slot::Other => return Err(CmdError::WrongType),
        Slot::Session(_) => return Err(CmdError::Exists),
    }
    let tenant = apply::tenant_of(ctx, args.get(1));
    let e: Effect = Effect::Whole(Whole::Imported);
    apply::commit(ctx, &key, args.raw(1), tenant, Value::New(Box::new(session)), &e)?;
    ctx.reply_simple(c"OK");
    Ok(())
}

/// SESSION.APPLYSET key version [META n name value ...] [UNSET n field ...]
/// [DATA field value ...]: the effect of a field-level SESSION.SET. Replies
/// 1, or 0 when the key is missing.
pub fn apply_set(ctx: Ctx, args: Args) -> CmdResult {
    let (version, w) = wire::parse_apply_set(&args)?;
    replay(ctx, &args, &Effect::Fields { version, write: &w })
}

/// SESSION.APPLYRENEW key last_access idle version: the effect of a renewal.
pub fn apply_renew(ctx: Ctx, args: Args) -> CmdResult {
    let r = wire::parse_apply_renew(&args)?;
    replay(ctx, &args, &Effect::Renew(r))
}

/// Replays an in-place effect on the value at argv[1].
fn replay(ctx: Ctx, args: &Args, e: &Effect) -> CmdResult {
    let key = Key::open(ctx, args.raw(1), true);
    let s = match key.slot() {
        Slot::Other => return Err(CmdError::WrongType),
        Slot::Empty => {
            ctx.reply_int(0);
            return Ok(());
        }
        Slot::Session(s) => s,
    };
    let before = Before::of(s);
    let e = effect::replay(s, e).map_err(|err| match err {
        ReplayError::Revoked(reason) => CmdError::Revoked(reason.into_vec()),
        ReplayError::Sealed => CmdError::Sealed("the session's data is held sealed here".into()),
    })?;
    let tenant = apply::tenant_of(ctx, args.get(1));
    apply::commit(ctx, &key, args.raw(1), tenant, Value::InPlace(before), &e)?;
    ctx.reply_int(1);
    Ok(())
}
