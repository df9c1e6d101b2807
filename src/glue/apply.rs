//! The one path every session write takes after its transition: key expiry,
//! propagation to replicas and the AOF, `WATCH` invalidation, keyspace
//! events, the per-subject index and the counters. Keeping them together
//! means no command can do one and forget another.

use std::ffi::CStr;

use super::rm::{Ctx, Key, RStr};
use super::state;
use crate::core::encoding;
use crate::core::session::{Flags, Session};
use crate::core::stats::Counter;

/// What kind of write happened, which decides how it propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create,
    /// A renewal: only last access, idle timeout and version moved.
    Renew,
    Set,
    Revoke,
}

impl Write {
    fn event(self) -> &'static CStr {
        match self {
            Write::Create => c"session.create",
            Write::Renew => c"session.renew",
            Write::Set => c"session.set",
            Write::Revoke => c"session.revoke",
        }
    }
}

/// Publishes a write already made to `s` (held by `key`, named `name`, of
/// `tenant`): the key expires at the end of the session's last state,
/// replicas and the AOF receive the effect with absolute times and explicit
/// values, and the index and counters follow.
pub fn commit(ctx: Ctx, key: &Key, name: RStr, tenant: &[u8], s: &Session, w: Write) {
    key.set_abs_expire(s.end_of_life());
    match w {
        Write::Renew => ctx.replicate_renew(name, s),
        _ => ctx.replicate_apply(name, &encoding::encode(s)),
    }
    ctx.signal_modified(name);
    ctx.notify(w.event(), name);
    match w {
        Write::Renew => {}
        Write::Create => {
            index_value(ctx, super::rm::bytes(name), tenant, s);
            state::with(|st| st.stats.bump(tenant, Counter::Created, true));
        }
        Write::Set => index_value(ctx, super::rm::bytes(name), tenant, s),
        Write::Revoke => {
            index_value(ctx, super::rm::bytes(name), tenant, s);
            state::with(|st| st.stats.bump(tenant, Counter::Revocations, true));
        }
    }
}

/// Puts a session value into the index (or takes a revoked one out).
/// While Redis loads, the index is left alone: it is rebuilt when loading ends.
pub fn index_value(ctx: Ctx, name: &[u8], tenant: &[u8], s: &Session) {
    let db = ctx.db();
    state::with(|st| {
        if st.loading {
            return;
        }
        if s.flags.contains(Flags::REVOKED) {
            st.index.remove(db, name);
        } else {
            let seal = s
                .flags
                .contains(Flags::SEALED)
                .then(|| {
                    s.data
                        .iter()
                        .next()
                        .and_then(|(_, v)| crate::core::seal::key_id(v))
                })
                .flatten()
                .map(|id| (id, s.data.len() as u64));
            st.index
                .upsert(db, name, tenant, &s.subject, s.data.payload_bytes() as u64, seal);
        }
    });
}
