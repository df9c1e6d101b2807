//! The one path every session write takes after its transition: key expiry,
//! propagation to replicas and the AOF, `WATCH` invalidation and keyspace
//! events. Keeping them together means no command can do one and forget
//! another.

use std::ffi::CStr;

use super::rm::{Ctx, Key, RStr};
use crate::core::encoding;
use crate::core::session::Session;

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

/// Publishes a write already made to `s` (held by `key`): the key expires at
/// the end of the session's last state, and replicas and the AOF receive the
/// effect with absolute times and explicit values.
pub fn commit(ctx: Ctx, key: &Key, name: RStr, s: &Session, w: Write) {
    key.set_abs_expire(s.end_of_life());
    match w {
        Write::Renew => ctx.replicate_renew(name, s),
        _ => ctx.replicate_apply(name, &encoding::encode(s)),
    }
    ctx.signal_modified(name);
    ctx.notify(w.event(), name);
}
