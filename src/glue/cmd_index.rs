//! The keyless commands that read the per-subject index and the counters:
//! LIST, REVOKEALL, COUNT, STATS. None of them scans the keyspace.

use super::guard::{Args, CmdError, CmdResult};
use super::helpers::{
    every_tenant_allowed, live_sessions, revoke_by_name, stats_rows, tenant_arg, READ, WRITE,
};
use super::parse::{self, is};
use super::rm::{self, Ctx};
use super::state;
use crate::core::session::check_reason;

/// SESSION.LIST tenant subject
pub fn list(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = tenant_arg(ctx, args.get(1), READ)?;
    let live = live_sessions(ctx, tenant, args.get(2), rm::now_ms());
    ctx.reply_array(live.len());
    for (name, _) in &live {
        ctx.reply_bulk(name);
    }
    Ok(())
}

/// SESSION.REVOKEALL tenant subject [EXCEPT key] [REASON text]
pub fn revoke_all(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = tenant_arg(ctx, args.get(1), WRITE)?;
    let (mut except, mut reason): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    let mut i = 3;
    while i < args.len() {
        let opt = args.get(i);
        let value = parse::value(&args, i)?;
        if is(opt, "EXCEPT") {
            parse::once(&mut except, value)?;
        } else if is(opt, "REASON") {
            parse::once(&mut reason, value)?;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let reason = reason.unwrap_or(b"");
    check_reason(reason)?;
    let now = rm::now_ms();
    let mut n = 0;
    for (name, _) in live_sessions(ctx, tenant, args.get(2), now) {
        if Some(&name[..]) != except && revoke_by_name(ctx, &name, tenant, reason, now) {
            n += 1;
        }
    }
    ctx.reply_int(n);
    Ok(())
}

/// SESSION.COUNT tenant [subject]
pub fn count(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = tenant_arg(ctx, args.get(1), READ)?;
    let n = match args.len() {
        2 => {
            let db = ctx.db();
            state::with(|st| st.index.live(db, tenant).sessions) as usize
        }
        3 => live_sessions(ctx, tenant, args.get(2), rm::now_ms()).len(),
        _ => return Err(CmdError::Syntax),
    };
    ctx.reply_int(n as i64);
    Ok(())
}

/// SESSION.STATS [tenant]
pub fn stats(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = match args.len() {
        1 => {
            if !every_tenant_allowed(ctx, READ) {
                return Err(CmdError::NoPerm("*".into()));
            }
            None
        }
        2 => Some(tenant_arg(ctx, args.get(1), READ)?),
        _ => return Err(CmdError::Syntax),
    };
    let rows = stats_rows(tenant);
    ctx.reply_map(rows.len());
    for (name, v) in rows {
        ctx.reply_bulk(name.as_bytes());
        ctx.reply_int(v as i64);
    }
    Ok(())
}
