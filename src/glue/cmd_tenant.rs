//! SESSION.TENANT SET/GET/DEL/LIST: per-tenant settings, replicated and
//! persisted (RDB aux data; see `datatype` for the AOF).

use super::config;
use super::guard::{Args, CmdError, CmdResult};
use super::helpers::{tenant_allowed, tenant_arg, READ, WRITE};
use super::parse::{self, is, once};
use super::rm::Ctx;
use super::state;
use crate::core::tenants::{OnLimit, Settings};

pub fn set(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = tenant_arg(ctx, args.get(2), WRITE)?;
    let mut s = Settings::default();
    let mut i = 3;
    while i < args.len() {
        let opt = args.get(i);
        let v = parse::value(&args, i)?;
        if is(opt, "IDLE") {
            once(&mut s.idle, parse::time(v, 1)?)?;
        } else if is(opt, "ABSOLUTE") {
            once(&mut s.absolute, parse::time(v, 0)?)?;
        } else if is(opt, "GRACE") {
            once(&mut s.grace, parse::time(v, 0)?)?;
        } else if is(opt, "MAXDATA") {
            once(&mut s.maxdata, parse::at_least(v, 0)?)?;
        } else if is(opt, "MAXPERSUBJECT") {
            once(&mut s.maxpersubject, parse::at_least(v, 0)?)?;
        } else if is(opt, "ONLIMIT") {
            once(&mut s.onlimit, OnLimit::parse(v).ok_or(CmdError::Syntax)?)?;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    if s == Settings::default() {
        return Err(CmdError::Syntax);
    }
    state::with(|st| {
        let entry = st.tenants.entry(tenant.to_vec()).or_default();
        *entry = entry.merged(&s);
    });
    ctx.replicate_verbatim();
    ctx.reply_simple(c"OK");
    Ok(())
}

pub fn get(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = tenant_arg(ctx, args.get(2), READ)?;
    let Some(s) = state::with(|st| st.tenants.get(tenant).copied()) else {
        ctx.reply_null();
        return Ok(());
    };
    let t = s.timeouts(config::default_timeouts());
    let l = s.limits(config::limits());
    ctx.reply_map(6);
    for (name, v) in [
        ("idle", t.idle),
        ("absolute", t.absolute),
        ("grace", t.grace),
        ("maxdata", l.max_data_bytes as i64),
        ("maxpersubject", s.maxpersubject.unwrap_or(0)),
    ] {
        ctx.reply_bulk(name.as_bytes());
        ctx.reply_int(v);
    }
    ctx.reply_bulk(b"onlimit");
    ctx.reply_bulk(s.onlimit.unwrap_or_default().name().as_bytes());
    Ok(())
}

pub fn del(ctx: Ctx, args: Args) -> CmdResult {
    let tenant = tenant_arg(ctx, args.get(2), WRITE)?;
    let removed = state::with(|st| st.tenants.remove(tenant).is_some());
    if removed {
        ctx.replicate_verbatim();
    }
    ctx.reply_int(removed as i64);
    Ok(())
}

pub fn list(ctx: Ctx, _args: Args) -> CmdResult {
    let names: Vec<Vec<u8>> = state::with(|st| st.tenants.keys().cloned().collect());
    let visible: Vec<Vec<u8>> = names
        .into_iter()
        .filter(|t| tenant_allowed(ctx, t, READ))
        .collect();
    ctx.reply_array(visible.len());
    for t in &visible {
        ctx.reply_bulk(t);
    }
    Ok(())
}
