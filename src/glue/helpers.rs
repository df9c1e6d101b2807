//! What the command files share: checking a session key or a tenant
//! argument, looking a session up, a tenant's settings, a subject's live
//! sessions, revoking one by name, and the counters STATS and INFO show.

use super::apply::{self, Value};
use super::guard::{Args, CmdError};
use super::rm::{acl, Ctx, Key, OwnedStr, Slot};
use super::{config, state};
use crate::core::effect;
use crate::core::index::Before;
use crate::core::keys::{self, SessionKey};
use crate::core::session::{Limits, Session, State};
use crate::core::stats::Counters;
use crate::core::tenants::Settings;

pub use acl::{READ, WRITE};

/// Tenant and sid of argv[1], or `ERR invalid session key` when it is not
/// `<prefix><tenant>:<sid>`.
#[inline]
pub fn check_key<'a>(ctx: Ctx, args: &Args<'a>) -> Result<SessionKey<'a>, CmdError> {
    let name = args.get(1);
    config::with_prefix(ctx.0, |prefix| keys::parse(name, prefix)).ok_or(CmdError::InvalidKey)
}

/// A tenant argument: valid, and allowed by the caller's ACL key patterns
/// (checked on the probe key `<prefix><tenant>:*`).
pub fn tenant_arg(ctx: Ctx, tenant: &[u8], flags: u32) -> Result<&[u8], CmdError> {
    if !keys::valid_tenant(tenant) {
        return Err(CmdError::Err("invalid tenant".into()));
    }
    if !tenant_allowed(ctx, tenant, flags) {
        return Err(CmdError::NoPerm(String::from_utf8_lossy(tenant).into_owned()));
    }
    Ok(tenant)
}

/// Whether the caller's ACL allows the tenant's probe key `<prefix><tenant>:*`.
pub fn tenant_allowed(ctx: Ctx, tenant: &[u8], flags: u32) -> bool {
    let probe = config::with_prefix(ctx.0, |p| keys::build(p, tenant, b"*"));
    ctx.acl_allows(&probe, flags)
}

/// Whether the caller's ACL allows every session key (`<prefix>*`).
pub fn every_tenant_allowed(ctx: Ctx, flags: u32) -> bool {
    let probe = config::with_prefix(ctx.0, |p| [p, b"*"].concat());
    ctx.acl_allows(&probe, flags)
}

/// A session as the commands see it.
pub enum Found<'a> {
    Missing,
    Revoked(&'a [u8]),
    Live(&'a mut Session),
}

#[inline]
pub fn lookup(key: &Key, now: i64) -> Result<Found<'_>, CmdError> {
    match key.slot() {
        Slot::Empty => Ok(Found::Missing),
        Slot::Other => Err(CmdError::WrongType),
        Slot::Session(s) => Ok(match s.state(now) {
            State::Expired => Found::Missing,
            State::Revoked => Found::Revoked(&s.reason),
            State::Active | State::Grace => Found::Live(s),
        }),
    }
}

/// The live session held by `key`; `Ok(None)` when missing, `REVOKED` when revoked.
#[inline]
pub fn open_live(key: &Key, now: i64) -> Result<Option<&mut Session>, CmdError> {
    match lookup(key, now)? {
        Found::Missing => Ok(None),
        Found::Revoked(reason) => Err(CmdError::Revoked(reason.to_vec())),
        Found::Live(s) => Ok(Some(s)),
    }
}

/// A tenant's settings (module defaults where it has none).
#[inline]
pub fn tenant_settings(tenant: &[u8]) -> Settings {
    state::with(|st| st.tenants.get(tenant).copied()).unwrap_or_default()
}

/// The data limits of a tenant: its MAXDATA over the module's limits.
#[inline]
pub fn tenant_limits(tenant: &[u8]) -> Limits {
    tenant_settings(tenant).limits(config::limits())
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
            let e = effect::revoke(s, now, reason, config::revoked_retention());
            apply::commit(ctx, &key, n.ptr, Some(tenant), Value::InPlace(before), &e).is_ok()
        }
        _ => false,
    }
}

/// The counters of STATS and INFO, in the README's order: sessions, the
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
