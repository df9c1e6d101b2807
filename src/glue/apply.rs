//! The applier: the one path every session write takes, whatever made it —
//! a client's command (through a `core::effect` transition) or an effect
//! from the primary or the AOF (`cmd_internal`). From the effect alone it
//! stores the value, sets the key's expiry, propagates the effect to
//! replicas and the AOF, signals `WATCH`/tracking, publishes the keyspace
//! event, and keeps the per-subject index and the counters. No other code
//! does any of these, so no write can do one and forget another.
//!
//! Also here: the index and counters for what happens to keys outside our
//! commands (`events`), which go through the same state.

use std::ffi::CStr;

use super::guard::CmdError;
use super::rm::{self, Ctx, Key, RStr, Slot};
use super::{config, sealing, state, wire};
use crate::core::effect::{self, Whole};
use crate::core::index::{Before, Indexed};
use crate::core::keys;
use crate::core::session::Session;
use crate::core::stats::Counts;

/// An effect on a session key, its passed-on arguments held as module strings.
pub type Effect<'w> = effect::Effect<'w, RStr>;

/// The value a write leaves in the key.
pub enum Value {
    /// Changed in place; what the index held of it before (`Before::of`).
    InPlace(Option<Before>),
    /// A whole new value to store (replacing any old one, which leaves the
    /// index through the type's unlink callback).
    New(Box<Session>),
}

/// Applies `e` to the key `name` (open for writing as `key`, of `tenant`
/// when it is a session key under the configured prefix) and returns the
/// value as it now is.
pub fn commit<'k>(
    ctx: Ctx,
    key: &'k Key,
    name: RStr,
    tenant: Option<&[u8]>,
    value: Value,
    e: &Effect,
) -> Result<&'k Session, CmdError> {
    let before = match value {
        Value::InPlace(before) => before,
        Value::New(s) => {
            if !key.put(s) {
                return Err(CmdError::Err("could not store the session".into()));
            }
            None
        }
    };
    let Slot::Session(s) = key.slot() else {
        return Err(CmdError::Err("could not store the session".into()));
    };
    if e.sets_expiry() {
        key.set_abs_expire(s.end_of_life());
    }
    propagate(ctx, name, s, e);
    if e.reader_visible() {
        ctx.signal_modified(name);
    }
    ctx.notify(e.event(), name);
    let counts = e.counts();
    if let (Some(tenant), true) = (tenant, e.moves_index() || !counts.is_empty()) {
        let db = ctx.db();
        state::with(|st| {
            // While Redis loads, the index is rebuilt when loading ends.
            if e.moves_index() && !state::loading() {
                st.index.follow(db, rm::bytes(name), tenant, before.as_ref(), s);
            }
            st.stats.bump(tenant, counts, true);
        });
    }
    Ok(s)
}

/// Sends the effect to replicas and the AOF, with absolute times and
/// explicit values, in the form this server writes out: with a key file,
/// never plaintext data (a field write goes out as the whole sealed value).
fn propagate(ctx: Ctx, name: RStr, s: &Session, e: &Effect) {
    let whole = |expire: bool| {
        sealing::with_outgoing(s, rm::bytes(name), |v| {
            ctx.replicate(&wire::apply(name, v, expire))
        })
    };
    match e {
        Effect::Renew(r) => ctx.replicate(&wire::apply_renew(name, *r)),
        Effect::Fields { version, write } if !write.rest.is_empty() && !sealing::seals_outgoing() => {
            ctx.replicate(&wire::apply_set(name, *version, wire::rest_of(write)))
        }
        Effect::Whole(Whole::Arrived { expire }) => whole(*expire),
        Effect::Whole(_) | Effect::Fields { .. } => whole(true),
    }
}

/// Counts what a command did besides its write (reads, misses, refusals),
/// and what happened to keys outside our commands (expired, evicted). A
/// tenant gets a row of its own only when `new_tenant_ok`.
#[inline]
pub fn count(tenant: &[u8], counts: Counts, new_tenant_ok: bool) {
    if !counts.is_empty() {
        state::with(|st| st.stats.bump(tenant, counts, new_tenant_ok));
    }
}

/// The tenant of a key under the configured prefix.
pub fn tenant_of(ctx: Ctx, name: &[u8]) -> Option<&[u8]> {
    config::with_prefix(ctx.0, |p| keys::parse(name, p).map(|k| k.tenant))
}

/// A value changed in place without a write (its data opened after a
/// `KEYRING RELOAD`): the index follows, nothing is propagated.
pub fn reindex_in_place(ctx: Ctx, name: &[u8], before: Option<Before>, s: &Session) {
    let Some(tenant) = tenant_of(ctx, name) else {
        return;
    };
    let db = ctx.db();
    state::with(|st| st.index.follow(db, name, tenant, before.as_ref(), s));
}

/// Puts a value that arrived by another path (RENAME, MOVE, COPY, RESTORE,
/// a rebuild after loading) into the index. While Redis loads, the index
/// is left alone: it is rebuilt when loading ends.
pub fn index_value(ctx: Ctx, name: &[u8], s: &Session) {
    let Some(tenant) = tenant_of(ctx, name) else {
        return;
    };
    let db = ctx.db();
    state::with(|st| {
        if let (false, Some(v)) = (state::loading(), Indexed::of(tenant, s)) {
            st.index.add(db, name, &v);
        }
    });
}

/// Indexes a value `rdb_load` reads, when this load indexes as it goes
/// (see `events::on_loading`).
pub fn index_loaded(db: usize, name: &[u8], s: &Session) {
    let Some(tenant) = tenant_of(Ctx(std::ptr::null_mut()), name) else {
        return;
    };
    state::with(|st| {
        if let (true, Some(v)) = (state::loading() && st.index_while_loading, Indexed::of(tenant, s)) {
            st.index.add(db, name, &v);
        }
    });
}

/// Takes a value leaving the keyspace out of the index; returns its tenant
/// if it was a live indexed session.
pub fn unindex_value(ctx: Ctx, db: usize, name: &[u8], s: &Session) -> Option<Vec<u8>> {
    let tenant = tenant_of(ctx, name)?;
    let v = Indexed::of(tenant, s)?;
    state::with(|st| (!state::loading() && st.index.remove(db, name, &v)).then(|| tenant.to_vec()))
}

// --- routing rings ------------------------------------------------------------

/// What a ring write sends to replicas and the AOF (`wire.rs`).
pub enum RingEffect<'a> {
    /// The whole ring (membership, states, weights, options, loads).
    Whole,
    /// Loads reported at an absolute time: the name/load pairs as received.
    Loads(i64, &'a [RStr]),
}

/// Publishes a write already made to the ring `r` held by the key `name`,
/// a client's (`cmd_ring`) or the primary's effect alike: propagates the
/// effect with absolute values, signals the key modified (`WATCH`,
/// client-side caching; a load report too, so a tracking router sees it)
/// and publishes `event`. Rings have no expiry of their own, no index and
/// no counters.
pub fn commit_ring(
    ctx: Ctx,
    name: RStr,
    r: &crate::core::routing::Ring,
    effect: RingEffect,
    event: Option<&CStr>,
) {
    match effect {
        RingEffect::Whole => ctx.replicate(&wire::ring_apply(name, &r.encode())),
        RingEffect::Loads(at, pairs) => ctx.replicate(&wire::ring_loads(name, at, pairs)),
    }
    ctx.signal_modified(name);
    if let Some(event) = event {
        ctx.notify(event, name);
    }
}
