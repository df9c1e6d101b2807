//! The one path every session write takes after its transition: key expiry,
//! propagation to replicas and the AOF, `WATCH` invalidation, keyspace
//! events, the per-subject index and the counters. Keeping them together
//! means no command can do one and forget another.

use std::ffi::CStr;

use super::rm::{Ctx, Key, RStr};
use super::{config, sealing, state};
use crate::core::index::{Index, Indexed};
use crate::core::keys;
use crate::core::seal;
use crate::core::session::{Flags, Session};
use crate::core::stats::Counter;

/// What kind of write happened, which decides how it propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write<'a> {
    Create,
    /// A renewal: only last access, idle timeout and version moved.
    /// `visible` when a reader sees more than the deadlines move (the
    /// version, or a session in grace back to active): only then are
    /// `WATCH` and client-side caches told.
    Renew {
        visible: bool,
    },
    /// A write of the whole data map (CAS).
    Set,
    /// A field-level SESSION.SET; its options as the client sent them, less
    /// IFVERSION. Where values leave in plaintext, replicas and the AOF get
    /// these and the new version (SESSION.APPLYSET) instead of the value.
    Fields(&'a [RStr]),
    Revoke,
}

impl Write<'_> {
    fn event(self) -> &'static CStr {
        match self {
            Write::Create => c"session.create",
            Write::Renew { .. } => c"session.renew",
            Write::Set | Write::Fields(_) => c"session.set",
            Write::Revoke => c"session.revoke",
        }
    }
}

/// What the index holds of a value: `None` for a revoked tombstone (not
/// live, not indexed).
pub fn indexed<'a>(tenant: &'a [u8], s: &'a Session) -> Option<Indexed<'a>> {
    if s.flags.contains(Flags::REVOKED) {
        return None;
    }
    // Plaintext values count under the empty id: they go out under
    // whichever key is active when they are written out.
    let n = s.data.len() as u64;
    let seal = if s.data.is_empty() {
        None
    } else if !s.flags.contains(Flags::SEALED) {
        Some((&b""[..], n))
    } else {
        s.data
            .iter()
            .next()
            .and_then(|(_, v)| seal::key_id(v))
            .map(|id| (id, n))
    };
    Some(Indexed {
        tenant,
        subject: &s.subject,
        data_bytes: s.data.payload_bytes() as u64,
        seal,
    })
}

/// What [`Indexed`] said of a value before it changed in place. No write
/// in place changes the subject, so it is read from the value afterwards;
/// the key id is copied only for a value held sealed (plaintext: empty, no
/// allocation).
pub struct Before {
    data_bytes: u64,
    seal: Option<(Vec<u8>, u64)>,
}

impl Before {
    pub fn of(s: &Session) -> Option<Before> {
        let i = indexed(b"", s)?;
        Some(Before {
            data_bytes: i.data_bytes,
            seal: i.seal.map(|(id, n)| (id.to_vec(), n)),
        })
    }

    fn view<'a>(&'a self, tenant: &'a [u8], subject: &'a [u8]) -> Indexed<'a> {
        Indexed {
            tenant,
            subject,
            data_bytes: self.data_bytes,
            seal: self.seal.as_ref().map(|(id, n)| (&id[..], *n)),
        }
    }
}

/// Publishes a write already made to `s` (held by `key`, named `name`, of
/// `tenant`; `before` is the value as it was, for writes in place): the key
/// expires at the end of the session's last state, replicas and the AOF
/// receive the effect with absolute times and explicit values, and the index
/// and counters follow.
pub fn commit(ctx: Ctx, key: &Key, name: RStr, tenant: &[u8], s: &Session, w: Write, before: Option<Before>) {
    key.set_abs_expire(s.end_of_life());
    match w {
        Write::Renew { .. } => ctx.replicate_renew(name, s),
        Write::Fields(rest) if !rest.is_empty() && !sealing::seals_outgoing() => {
            ctx.replicate_fields(name, s.version, rest)
        }
        _ => sealing::with_outgoing(s, super::rm::bytes(name), |v| ctx.replicate_apply(name, v)),
    }
    // Key modified for WATCH and client-side caching only when a reader can
    // see it: a renewal that moves the deadlines alone keeps a near-cache's
    // copy (the module runs with NO_IMPLICIT_SIGNAL_MODIFIED, and
    // RedisModule_SetAbsExpire signals nothing).
    if w != (Write::Renew { visible: false }) {
        ctx.signal_modified(name);
    }
    ctx.notify(w.event(), name);
    if matches!(w, Write::Renew { .. }) {
        return;
    }
    let db = ctx.db();
    let name = super::rm::bytes(name);
    state::with(|st| {
        reindex(&mut st.index, db, name, tenant, before.as_ref(), s);
        match w {
            Write::Create => st.stats.bump(tenant, Counter::Created, true),
            Write::Revoke => st.stats.bump(tenant, Counter::Revocations, true),
            _ => {}
        }
    });
}

/// Moves the index entry of `name` from what `before` said to what `s` is.
fn reindex(index: &mut Index, db: usize, name: &[u8], tenant: &[u8], before: Option<&Before>, s: &Session) {
    let old = before.map(|b| b.view(tenant, &s.subject));
    match (old, indexed(tenant, s)) {
        (Some(old), Some(new)) => index.update(db, name, &old, &new),
        (Some(old), None) => {
            index.remove(db, name, &old);
        }
        (None, Some(new)) => {
            index.add(db, name, &new);
        }
        (None, None) => {}
    }
}

/// A value changed in place without a write (its data opened after a
/// `KEYRING RELOAD`): the index follows, nothing is propagated.
pub fn reindex_in_place(ctx: Ctx, name: &[u8], before: Option<Before>, s: &Session) {
    let Some(tenant) = tenant_of(ctx, name) else {
        return;
    };
    let db = ctx.db();
    state::with(|st| reindex(&mut st.index, db, name, tenant, before.as_ref(), s));
}

/// The tenant of a key under the configured prefix.
pub fn tenant_of(ctx: Ctx, name: &[u8]) -> Option<&[u8]> {
    config::with_prefix(ctx.0, |p| keys::parse(name, p).map(|k| k.tenant))
}

/// Puts a value that arrived by another path (APPLY, RENAME, MOVE, COPY,
/// RESTORE, loading) into the index. While Redis loads, the index is left
/// alone: it is rebuilt when loading ends.
pub fn index_value(ctx: Ctx, name: &[u8], s: &Session) {
    let Some(tenant) = tenant_of(ctx, name) else {
        return;
    };
    let db = ctx.db();
    state::with(|st| {
        if let (false, Some(v)) = (state::loading(), indexed(tenant, s)) {
            st.index.add(db, name, &v);
        }
    });
}

/// Takes a value leaving the keyspace out of the index; returns its tenant
/// if it was a live indexed session.
pub fn unindex_value(ctx: Ctx, db: usize, name: &[u8], s: &Session) -> Option<Vec<u8>> {
    let tenant = tenant_of(ctx, name)?;
    let v = indexed(tenant, s)?;
    state::with(|st| (!state::loading() && st.index.remove(db, name, &v)).then(|| tenant.to_vec()))
}
