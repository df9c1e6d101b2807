//! The keyless commands that read the per-subject index and the counters:
//! LIST, REVOKEALL, COUNT, STATS. None of them scans the keyspace.

use redis_module::raw;

use super::apply::{commit, Before, Write};
use super::config;
use super::guard::{Args, CmdError, CmdResult};
use super::parse::is;
use super::rm::{self, Ctx, Key, OwnedStr, Slot};
use super::state;
use crate::core::keys;
use crate::core::session::REASON_MAX;
use crate::core::stats::Counters;

pub const READ: u32 = raw::REDISMODULE_CMD_KEY_ACCESS;
pub const WRITE: u32 = raw::REDISMODULE_CMD_KEY_UPDATE;

/// A tenant argument: valid, and allowed by the caller's ACL key patterns
/// (checked on the probe key `<prefix><tenant>:*`).
pub fn tenant_arg(ctx: Ctx, tenant: &[u8], flags: u32) -> Result<&[u8], CmdError> {
    if !keys::valid_tenant(tenant) {
        return Err(CmdError::Err("invalid tenant".into()));
    }
    let probe = config::with_prefix(ctx.0, |p| keys::build(p, tenant, b"*"));
    if !ctx.acl_allows(&probe, flags) {
        return Err(CmdError::NoPerm(String::from_utf8_lossy(tenant).into_owned()));
    }
    Ok(tenant)
}

/// The subject's live sessions in the selected database, as (key, created).
/// Each key is checked, so a session past its end that Redis has not yet
/// deleted is not counted.
pub fn live_sessions(ctx: Ctx, tenant: &[u8], subject: &[u8], now: i64) -> Vec<(Vec<u8>, i64)> {
    let db = ctx.db();
    let names = state::with(|st| st.index.keys_of(db, tenant, subject));
    names
        .into_iter()
        .filter_map(|name| {
            let n = OwnedStr::new(ctx, &name);
            let key = Key::open(ctx, n.ptr, false);
            let created = match key.slot() {
                Slot::Session(s) if s.state(now).is_live() => Some(s.created),
                _ => None,
            };
            created.map(|c| (name, c))
        })
        .collect()
}

/// Revokes the session stored at `name` if it is live; true if it was.
pub fn revoke_by_name(ctx: Ctx, name: &[u8], tenant: &[u8], reason: &[u8], now: i64) -> bool {
    let n = OwnedStr::new(ctx, name);
    let key = Key::open(ctx, n.ptr, true);
    match key.slot() {
        Slot::Session(s) if s.state(now).is_live() => {
            let before = Before::of(s);
            s.revoke(now, reason, config::revoked_retention());
            commit(ctx, &key, n.ptr, tenant, s, Write::Revoke, before);
            true
        }
        _ => false,
    }
}

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
        let value = super::parse::value(&args, i)?;
        if is(opt, "EXCEPT") {
            super::parse::once(&mut except, value)?;
        } else if is(opt, "REASON") {
            super::parse::once(&mut reason, value)?;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let reason = reason.unwrap_or(b"");
    if reason.len() > REASON_MAX || reason.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(CmdError::Syntax);
    }
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

/// The counters of STATS and INFO, in the SPEC's order: sessions, the
/// counters since start, data_bytes.
pub fn stats_rows(tenant: Option<&[u8]>) -> Vec<(&'static str, u64)> {
    state::with(|st| {
        let live = st.index.live_total(tenant);
        let c: Counters = match tenant {
            Some(t) => st.stats.tenant(t),
            None => st.stats.total,
        };
        let mut rows = vec![("sessions", live.sessions)];
        rows.extend(c.named());
        rows.push(("data_bytes", live.data_bytes));
        rows
    })
}

/// SESSION.STATS [tenant]
pub fn stats(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = match args.len() {
        1 => {
            let probe = config::with_prefix(ctx.0, |p| [p, b"*"].concat());
            if !ctx.acl_allows(&probe, READ) {
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
