//! What a write did, as an **effect**: the change with absolute times and
//! explicit values, never the request that caused it. Every transition
//! below returns one; the glue's applier (`glue::apply`) takes any effect,
//! whether a client's command made it here or it arrived from the primary
//! or the AOF (`replay`), and from it alone writes the key, its expiry, the
//! propagation, the signal, the event, the index and the counters.
//!
//! A new kind of write is a transition here returning an effect (a new
//! variant if none fits) plus its line in the applier. A create is
//! `Session::create` and the effect `Effect::Whole(Whole::Created)`.

use std::borrow::Cow;
use std::ffi::CStr;

use super::flatmap::FlatMap;
use super::session::{Error, Flags, Limits, Renewal, Session};
use super::stats::Counts;

/// Name/value pairs borrowed from a command's arguments.
pub type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// A field-level write (`SESSION.SET`, and its effect `SESSION.APPLYSET`).
/// `rest` is the write's options as they arrived (less `IFVERSION`), in
/// whatever form the caller holds arguments (`R`): the effect passes them on
/// as they are instead of re-encoding the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldWrite<'a, R: Clone> {
    pub if_version: Option<i64>,
    pub meta: Pairs<'a>,
    pub unset: Vec<&'a [u8]>,
    pub data: Pairs<'a>,
    pub rest: Cow<'a, [R]>,
}

/// A renewal's new values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    pub last_access: i64,
    pub idle: i64,
    pub version: i64,
    /// Whether a reader sees more than the deadlines move: a new version
    /// (a new idle timeout), or a session in grace back to active. Not
    /// sent: a replica works it out from the value it holds (`replay`).
    pub visible: bool,
}

/// How a whole value came to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whole {
    Created,
    /// CAS: the whole data map replaced.
    Replaced,
    Revoked,
    /// A whole encoded value from the primary or the AOF (`SESSION.APPLY`);
    /// `expire: false` leaves the key's expiry to a `PEXPIREAT` that follows
    /// (the AOF rewrite).
    Arrived {
        expire: bool,
    },
    /// A whole encoded value an operator imported (`SESSION.IMPORT`).
    Imported,
}

/// The effect of one write on one session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'w, R: Clone> {
    /// The key holds a whole new value (or one rewritten whole in place).
    Whole(Whole),
    Renew(Renewed),
    /// Fields merged in place; the session's version after the write.
    Fields {
        version: i64,
        write: &'w FieldWrite<'w, R>,
    },
}

impl<R: Clone> Effect<'_, R> {
    /// The keyspace event it publishes (module class).
    pub fn event(&self) -> &'static CStr {
        match self {
            Effect::Whole(Whole::Created) => c"session.create",
            Effect::Whole(Whole::Replaced) | Effect::Fields { .. } => c"session.set",
            Effect::Whole(Whole::Revoked) => c"session.revoke",
            Effect::Whole(Whole::Arrived { .. }) => c"session.apply",
            Effect::Whole(Whole::Imported) => c"session.import",
            Effect::Renew(_) => c"session.renew",
        }
    }

    /// Whether a reader can see the change: the applier signals `WATCH` and
    /// client-side caching exactly when this is true. A renewal that only
    /// moves the deadlines is not (a near-cache keeps its copy while the
    /// user clicks); every other write is.
    pub fn reader_visible(&self) -> bool {
        match self {
            Effect::Renew(r) => r.visible,
            _ => true,
        }
    }

    /// Whether the key's expiry follows the value's end of life.
    pub fn sets_expiry(&self) -> bool {
        !matches!(self, Effect::Whole(Whole::Arrived { expire: false }))
    }

    /// Whether what the index holds of the value may have changed (a
    /// renewal moves neither subject, sizes nor seals).
    pub fn moves_index(&self) -> bool {
        !matches!(self, Effect::Renew(_))
    }

    /// The counters the write itself bumps (a command's reads and outcomes
    /// are counted by `read_counts` and friends).
    pub fn counts(&self) -> Counts {
        match self {
            Effect::Whole(Whole::Created) => Counts::CREATED,
            Effect::Whole(Whole::Revoked) => Counts::REVOCATIONS,
            _ => Counts::empty(),
        }
    }
}

/// A sliding renewal; the effect is `None` when the touch resolution
/// suppressed it (nothing changed, nothing is sent).
pub fn renew<R: Clone>(
    s: &mut Session,
    now: i64,
    new_idle: Option<i64>,
    resolution: i64,
) -> (Renewal, Option<Effect<'static, R>>) {
    let r = s.renew(now, new_idle, resolution);
    let effect = r.applied.then_some(Effect::Renew(Renewed {
        last_access: s.last_access,
        idle: s.idle,
        version: s.version,
        visible: r.revived || new_idle.is_some(),
    }));
    (r, effect)
}

/// A field-level write under `limits`.
pub fn set<'w, R: Clone>(
    s: &mut Session,
    w: &'w FieldWrite<'w, R>,
    limits: &Limits,
) -> Result<Effect<'w, R>, Error> {
    let version = s.set(w.if_version, &w.meta, &w.unset, &w.data, limits)?;
    Ok(Effect::Fields { version, write: w })
}

/// Replaces the whole data map if the version matches.
pub fn cas<R: Clone>(
    s: &mut Session,
    version: i64,
    data: FlatMap,
    limits: &Limits,
) -> Result<Effect<'static, R>, Error> {
    s.cas(version, data, limits)?;
    Ok(Effect::Whole(Whole::Replaced))
}

/// Revokes a live session, keeping a tombstone.
pub fn revoke<R: Clone>(s: &mut Session, now: i64, reason: &[u8], retention: i64) -> Effect<'static, R> {
    s.revoke(now, reason, retention);
    Effect::Whole(Whole::Revoked)
}

/// Why an effect from the primary or the AOF could not be replayed. None of
/// these can follow a write on a primary in step with this server, so the
/// effect is refused and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    Revoked(Box<[u8]>),
    Sealed,
}

/// Replays an in-place effect (renewal, field write) on the value it was
/// made on: the values it carries are set as they are, limits aside (the
/// primary checked them). Whole values replace the key instead. A renewal
/// comes back with what its readers saw, as on the primary: a new version,
/// or a session in grace (its renewal time at or past the idle deadline
/// held here) back to active.
pub fn replay<'w, R: Clone>(s: &mut Session, e: &Effect<'w, R>) -> Result<Effect<'w, R>, ReplayError> {
    match e {
        Effect::Whole(_) => {}
        Effect::Renew(r) => {
            let visible = r.version != s.version
                || (!s.flags.contains(Flags::REVOKED) && r.last_access >= s.idle_deadline());
            s.last_access = r.last_access;
            s.idle = r.idle;
            s.version = r.version;
            return Ok(Effect::Renew(Renewed { visible, ..*r }));
        }
        Effect::Fields { version, write } => {
            if s.flags.contains(Flags::REVOKED) {
                return Err(ReplayError::Revoked(s.reason.clone()));
            }
            if s.flags.contains(Flags::SEALED) {
                return Err(ReplayError::Sealed);
            }
            // Without limits and without IFVERSION nothing can refuse it.
            let _ = s.set(None, &write.meta, &write.unset, &write.data, &Limits::NONE);
            s.version = *version;
        }
    }
    Ok(e.clone())
}

/// The counters of a `GET` that found a live session, with its renewal if
/// it asked for one (`TOUCH`).
#[inline]
pub fn read_counts(touch: Option<Renewal>) -> Counts {
    let mut c = Counts::HITS;
    if let Some(r) = touch {
        c |= Counts::TOUCHES;
        c.set(Counts::TOUCHES_PROPAGATED, r.applied);
        c.set(Counts::GRACE_RENEWALS, r.revived);
    }
    c
}

/// The counters of a `RENEW`.
#[inline]
pub fn renew_counts(r: Renewal) -> Counts {
    let mut c = Counts::RENEWALS;
    c.set(Counts::GRACE_RENEWALS, r.revived);
    c
}

/// The counters of a refused write: a version conflict counts.
#[inline]
pub fn refusal_counts(e: &Error) -> Counts {
    match e {
        Error::Conflict(_) => Counts::CAS_CONFLICTS,
        _ => Counts::empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::{State, Timeouts, DEFAULT_REASON};

    const T: Timeouts = Timeouts {
        idle: 1000,
        absolute: 0,
        grace: 100,
    };

    fn fresh() -> Session {
        let data = FlatMap::from_pairs([(&b"a"[..], &b"1"[..])]);
        Session::create(0, b"u", T, FlatMap::new(), data, &Limits::NONE).unwrap()
    }

    fn write<'a>(data: Pairs<'a>, unset: Vec<&'a [u8]>) -> FieldWrite<'a, ()> {
        FieldWrite {
            if_version: None,
            meta: vec![(b"ip", b"1")],
            unset,
            data,
            rest: Cow::Borrowed(&[()]),
        }
    }

    #[test]
    fn replaying_an_effect_gives_the_primary_value() {
        let primary = &mut fresh();
        let replica = &mut fresh();
        let (_, e) = renew::<()>(primary, 5000, Some(2000), 1000);
        let e = e.unwrap();
        assert!(e.reader_visible(), "a new idle timeout is a new version");
        assert_eq!(replay(replica, &e).unwrap(), e);
        assert_eq!(primary, replica);
        let (_, e) = renew::<()>(primary, 6500, None, 1000);
        let e = e.unwrap();
        assert!(
            !e.reader_visible(),
            "an active session's touch moves deadlines only"
        );
        assert_eq!(replay(replica, &e).unwrap(), e);
        let w = write(vec![(b"b", b"2")], vec![b"a"]);
        let e = set(primary, &w, &Limits::NONE).unwrap();
        assert_eq!(
            e,
            Effect::Fields {
                version: 3,
                write: &w
            }
        );
        assert_eq!(replay(replica, &e).unwrap(), e);
        assert_eq!(primary, replica);
    }

    #[test]
    fn suppressed_renewals_have_no_effect() {
        let s = &mut fresh();
        let (r, e) = renew::<()>(s, 10, None, 1000);
        assert!(!r.applied && e.is_none());
        assert_eq!(read_counts(Some(r)), Counts::HITS | Counts::TOUCHES);
        let (r, e) = renew::<()>(s, 1050, None, 1000);
        assert!(r.applied && r.revived);
        let e = e.unwrap();
        assert_eq!(e.event(), c"session.renew");
        assert!(e.reader_visible(), "grace back to active");
        assert_eq!(
            read_counts(Some(r)),
            Counts::HITS | Counts::TOUCHES | Counts::TOUCHES_PROPAGATED | Counts::GRACE_RENEWALS
        );
        assert_eq!(renew_counts(r), Counts::RENEWALS | Counts::GRACE_RENEWALS);
    }

    #[test]
    fn field_effects_refuse_revoked_and_sealed_values() {
        let s = &mut fresh();
        let w = write(vec![], vec![b"a"]);
        let e: Effect<()> = Effect::Fields {
            version: 9,
            write: &w,
        };
        s.flags |= Flags::SEALED;
        let before = s.clone();
        assert_eq!(replay(s, &e), Err(ReplayError::Sealed));
        assert_eq!(*s, before);
        let rv = revoke::<()>(s, 1, b"", 10);
        assert_eq!(rv.counts(), Counts::REVOCATIONS);
        assert_eq!(s.state(2), State::Revoked);
        assert_eq!(replay(s, &e), Err(ReplayError::Revoked(DEFAULT_REASON.into())));
    }

    #[test]
    fn what_each_effect_does() {
        let created: Effect<()> = Effect::Whole(Whole::Created);
        assert_eq!(created.counts(), Counts::CREATED);
        assert!(created.moves_index() && created.sets_expiry());
        let arrived: Effect<()> = Effect::Whole(Whole::Arrived { expire: false });
        assert!(!arrived.sets_expiry());
        assert_eq!(arrived.event(), c"session.apply");
        let renewed: Effect<()> = Effect::Renew(Renewed {
            last_access: 1,
            idle: 1,
            version: 1,
            visible: false,
        });
        assert!(!renewed.moves_index() && renewed.counts().is_empty());
        assert_eq!(refusal_counts(&Error::Conflict(3)), Counts::CAS_CONFLICTS);
        assert!(refusal_counts(&Error::TooBig(String::new())).is_empty());
        let s = &mut fresh();
        let e = cas::<()>(s, 1, FlatMap::new(), &Limits::NONE).unwrap();
        assert_eq!((e.event(), s.version), (c"session.set", 2));
    }
}
