//! The session value and every transition on it, as plain functions of
//! (session, now, request). Nothing here knows about Redis.

use super::flatmap::{self, FlatMap};

bitflags::bitflags! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Flags: u32 {
        /// Data dropped; reads answer `REVOKED <reason>` until `revoked_until`.
        const REVOKED = 1;
        /// Data values are sealed (`core::seal`). In the persisted form:
        /// sealed on the way out. In memory: a value that arrived sealed
        /// under a key this server could not open it with.
        const SEALED = 2;
    }
}

/// Largest accepted time argument: 100 years in ms. Keeps every deadline
/// computation far from overflow.
pub const TIME_MAX: i64 = 3_153_600_000_000;
/// Largest version a value may carry (2^53: exact in every client's
/// number type). A session would need 2^53 writes to reach it.
pub const VERSION_MAX: i64 = 1 << 53;
pub const SUBJECT_MAX: usize = 512;
pub const META_ENTRY_MAX: usize = 1024;
pub const REASON_MAX: usize = 256;
pub const DEFAULT_REASON: &[u8] = b"revoked";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub subject: Box<[u8]>,
    pub created: i64,
    pub version: i64,
    /// Time of the last renewal; the idle deadline is `last_access + idle`.
    pub last_access: i64,
    pub idle: i64,
    /// Absolute deadline in ms since epoch; 0 = no absolute limit.
    pub absolute_deadline: i64,
    pub grace: i64,
    pub flags: Flags,
    /// For a revoked session: when the tombstone goes away.
    pub revoked_until: i64,
    pub reason: Box<[u8]>,
    pub meta: FlatMap,
    pub data: FlatMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Grace,
    Revoked,
    Expired,
}

impl State {
    /// The name replies use (a C string: it goes out as a RESP simple string).
    pub fn name(self) -> &'static std::ffi::CStr {
        match self {
            State::Active => c"active",
            State::Grace => c"grace",
            State::Revoked => c"revoked",
            State::Expired => c"expired",
        }
    }

    /// Active or in grace: the session exists for its users.
    pub fn is_live(self) -> bool {
        matches!(self, State::Active | State::Grace)
    }
}

/// Idle, absolute and grace durations for a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: i64,
    pub absolute: i64,
    pub grace: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_data_bytes: usize,
    pub max_fields: usize,
    pub max_meta: usize,
}

impl Limits {
    /// No limit: for effects, whose limits were checked where they were made.
    pub const NONE: Limits = Limits {
        max_data_bytes: usize::MAX,
        max_fields: usize::MAX,
        max_meta: usize::MAX,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The session's current version, which the request did not match.
    Conflict(i64),
    TooBig(String),
    /// Input no command accepts (a revoke reason with CR or LF).
    Syntax,
}

/// A revoke reason (`REVOKE`, `REVOKEALL`): one line, at most
/// [`REASON_MAX`] bytes.
pub fn check_reason(reason: &[u8]) -> Result<(), Error> {
    if reason.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(Error::Syntax);
    }
    if reason.len() > REASON_MAX {
        return Err(Error::TooBig(format!("reason longer than {REASON_MAX} bytes")));
    }
    Ok(())
}

/// What a renewal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// False when suppressed by the touch resolution: nothing changed.
    pub applied: bool,
    /// The session was in grace and is active again.
    pub revived: bool,
}

/// Milliseconds left on each clock (README, `SESSION.TTL`); -1 where no limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub state: State,
    pub idle_ms: i64,
    pub absolute_ms: i64,
    pub grace_ms: i64,
}

fn check_limits(subject: &[u8], meta: &FlatMap, data: &FlatMap, limits: &Limits) -> Result<(), Error> {
    if subject.len() > SUBJECT_MAX {
        return Err(Error::TooBig(format!("subject longer than {SUBJECT_MAX} bytes")));
    }
    if meta.len() > limits.max_meta {
        return Err(Error::TooBig(format!(
            "more than {} meta entries",
            limits.max_meta
        )));
    }
    if meta
        .iter()
        .any(|(k, v)| k.len() > META_ENTRY_MAX || v.len() > META_ENTRY_MAX)
    {
        return Err(Error::TooBig(format!(
            "meta name or value longer than {META_ENTRY_MAX} bytes"
        )));
    }
    if data.len() > limits.max_fields {
        return Err(Error::TooBig(format!(
            "more than {} data fields",
            limits.max_fields
        )));
    }
    let bytes = data.payload_bytes();
    if bytes > limits.max_data_bytes {
        return Err(Error::TooBig(format!(
            "data is {bytes} bytes, limit {}",
            limits.max_data_bytes
        )));
    }
    Ok(())
}

impl Session {
    /// Starts loading every byte of the subject, meta and data, each its own
    /// allocation, at once: for a caller about to copy them all (a write, a
    /// save), which would otherwise miss on each in turn.
    #[inline]
    pub fn prefetch_all(&self) {
        flatmap::prefetch(&self.subject, usize::MAX);
        self.meta.prefetch_all();
        self.data.prefetch_all();
    }

    pub fn create(
        now: i64,
        subject: &[u8],
        t: Timeouts,
        meta: FlatMap,
        data: FlatMap,
        limits: &Limits,
    ) -> Result<Session, Error> {
        check_limits(subject, &meta, &data, limits)?;
        Ok(Session {
            subject: subject.into(),
            created: now,
            version: 1,
            last_access: now,
            idle: t.idle,
            absolute_deadline: if t.absolute > 0 {
                now.saturating_add(t.absolute)
            } else {
                0
            },
            grace: t.grace,
            flags: Flags::empty(),
            revoked_until: 0,
            reason: Box::default(),
            meta,
            data,
        })
    }

    pub fn idle_deadline(&self) -> i64 {
        self.last_access.saturating_add(self.idle)
    }

    /// The absolute deadline, or `i64::MAX` when there is none.
    fn absolute_or_max(&self) -> i64 {
        if self.absolute_deadline > 0 {
            self.absolute_deadline
        } else {
            i64::MAX
        }
    }

    /// End of the grace state: the last instant (exclusive) the session lives.
    pub fn grace_until(&self) -> i64 {
        self.idle_deadline()
            .saturating_add(self.grace)
            .min(self.absolute_or_max())
    }

    /// When the Redis key holding this value should expire.
    pub fn end_of_life(&self) -> i64 {
        if self.flags.contains(Flags::REVOKED) {
            self.revoked_until
        } else {
            self.grace_until()
        }
    }

    pub fn state(&self, now: i64) -> State {
        if self.flags.contains(Flags::REVOKED) {
            return if now < self.revoked_until {
                State::Revoked
            } else {
                State::Expired
            };
        }
        if now >= self.absolute_or_max() {
            State::Expired
        } else if now < self.idle_deadline() {
            State::Active
        } else if now < self.grace_until() {
            State::Grace
        } else {
            State::Expired
        }
    }

    /// Sliding renewal of a live session; `new_idle` also changes the idle
    /// timeout (and the version). A plain renewal of an active session that
    /// would move the idle deadline by less than `resolution` changes nothing.
    pub fn renew(&mut self, now: i64, new_idle: Option<i64>, resolution: i64) -> Renewal {
        let state = self.state(now);
        let revived = state == State::Grace;
        if new_idle.is_none() && state == State::Active && now - self.last_access < resolution {
            return Renewal {
                applied: false,
                revived,
            };
        }
        if let Some(idle) = new_idle {
            self.idle = idle;
            self.bump_version();
        }
        self.last_access = self.last_access.max(now);
        Renewal {
            applied: true,
            revived,
        }
    }

    /// Ms from `now` to the idle deadline, capped by the absolute deadline.
    pub fn ms_to_idle_deadline(&self, now: i64) -> i64 {
        (self.idle_deadline().min(self.absolute_or_max()) - now).max(0)
    }

    fn check_version(&self, expected: Option<i64>) -> Result<(), Error> {
        match expected {
            Some(v) if v != self.version => Err(Error::Conflict(self.version)),
            _ => Ok(()),
        }
    }

    /// Field-level write: `meta_set` and `data_set` are merged in, `unset`
    /// fields removed, every other field kept.
    pub fn set(
        &mut self,
        if_version: Option<i64>,
        meta_set: &[(&[u8], &[u8])],
        unset: &[&[u8]],
        data_set: &[(&[u8], &[u8])],
        limits: &Limits,
    ) -> Result<i64, Error> {
        self.check_version(if_version)?;
        let meta = (!meta_set.is_empty()).then(|| self.meta.merged(meta_set, &[]));
        let data = (!(data_set.is_empty() && unset.is_empty())).then(|| self.data.merged(data_set, unset));
        check_limits(
            &self.subject,
            meta.as_ref().unwrap_or(&self.meta),
            data.as_ref().unwrap_or(&self.data),
            limits,
        )?;
        if let Some(meta) = meta {
            self.meta = meta;
        }
        if let Some(data) = data {
            self.data = data;
        }
        self.bump_version();
        Ok(self.version)
    }

    /// Replaces the whole data map if the version matches.
    pub fn cas(&mut self, version: i64, data: FlatMap, limits: &Limits) -> Result<i64, Error> {
        self.check_version(Some(version))?;
        check_limits(&self.subject, &self.meta, &data, limits)?;
        self.data = data;
        self.bump_version();
        Ok(self.version)
    }

    /// Versions stop at VERSION_MAX rather than wrap.
    fn bump_version(&mut self) {
        self.version = (self.version.saturating_add(1)).min(VERSION_MAX);
    }

    /// Drops data and metadata and keeps a tombstone until the session's own
    /// end, at most `retention` ms from now.
    pub fn revoke(&mut self, now: i64, reason: &[u8], retention: i64) {
        self.revoked_until = self.grace_until().min(now.saturating_add(retention));
        self.flags |= Flags::REVOKED;
        self.flags -= Flags::SEALED;
        self.reason = if reason.is_empty() {
            DEFAULT_REASON.into()
        } else {
            reason.into()
        };
        self.meta = FlatMap::new();
        self.data = FlatMap::new();
    }

    pub fn ttl(&self, now: i64) -> Ttl {
        Ttl {
            state: self.state(now),
            idle_ms: (self.idle_deadline() - now).max(0),
            absolute_ms: if self.absolute_deadline > 0 {
                (self.absolute_deadline - now).max(0)
            } else {
                -1
            },
            grace_ms: (self.grace_until() - now).max(0),
        }
    }

    /// Bytes this value holds, for `MEMORY USAGE`.
    pub fn mem_usage(&self) -> usize {
        std::mem::size_of::<Session>()
            + self.subject.len()
            + self.reason.len()
            + self.meta.heap_bytes()
            + self.data.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_data_bytes: 100,
        max_fields: 3,
        max_meta: 2,
    };
    const T: Timeouts = Timeouts {
        idle: 1000,
        absolute: 10_000,
        grace: 500,
    };

    fn fm(pairs: &[(&str, &str)]) -> FlatMap {
        FlatMap::from_pairs(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    fn new_session() -> Session {
        Session::create(
            1_000_000,
            b"user1",
            T,
            fm(&[("ip", "1.2.3.4")]),
            fm(&[("a", "1")]),
            &LIMITS,
        )
        .unwrap()
    }

    #[test]
    fn states_follow_the_clocks() {
        let s = new_session();
        assert_eq!(s.state(1_000_000), State::Active);
        assert_eq!(s.state(1_000_999), State::Active);
        assert_eq!(s.state(1_001_000), State::Grace);
        assert_eq!(s.state(1_001_499), State::Grace);
        assert_eq!(s.state(1_001_500), State::Expired);
        assert_eq!(s.grace_until(), 1_001_500);
        assert_eq!(s.end_of_life(), 1_001_500);
    }

    #[test]
    fn absolute_deadline_has_no_grace() {
        let mut s = new_session();
        s.renew(1_009_800, None, 0);
        assert_eq!(s.state(1_009_999), State::Active);
        assert_eq!(s.state(1_010_000), State::Expired);
        assert_eq!(s.grace_until(), 1_010_000);
        assert_eq!(s.ms_to_idle_deadline(1_009_800), 200);
    }

    #[test]
    fn renew_respects_resolution_and_revives_grace() {
        let mut s = new_session();
        let r = s.renew(1_000_500, None, 1000);
        assert_eq!(
            r,
            Renewal {
                applied: false,
                revived: false
            }
        );
        assert_eq!(s.last_access, 1_000_000);
        let r = s.renew(1_001_200, None, 1000);
        assert_eq!(
            r,
            Renewal {
                applied: true,
                revived: true
            }
        );
        assert_eq!(s.last_access, 1_001_200);
        assert_eq!(s.state(1_001_300), State::Active);
        assert_eq!(s.version, 1);
        let r = s.renew(1_001_300, Some(5000), 1000);
        assert!(r.applied);
        assert_eq!((s.idle, s.version), (5000, 2));
    }

    #[test]
    fn set_merges_fields_and_checks_version() {
        let mut s = new_session();
        assert_eq!(s.set(Some(1), &[], &[], &[(b"b", b"2")], &LIMITS), Ok(2));
        assert_eq!(
            s.set(None, &[(b"ua", b"x")], &[b"a"], &[(b"c", b"3")], &LIMITS),
            Ok(3)
        );
        assert_eq!(s.data, fm(&[("b", "2"), ("c", "3")]));
        assert_eq!(s.meta, fm(&[("ip", "1.2.3.4"), ("ua", "x")]));
        let before = s.clone();
        assert_eq!(
            s.set(Some(1), &[], &[], &[(b"d", b"4")], &LIMITS),
            Err(Error::Conflict(3))
        );
        assert_eq!(s, before);
    }

    #[test]
    fn limits_refuse_and_change_nothing() {
        let mut s = new_session();
        let before = s.clone();
        let big = vec![b'x'; 101];
        assert!(matches!(
            s.set(None, &[], &[], &[(b"a", &big)], &LIMITS),
            Err(Error::TooBig(_))
        ));
        assert!(matches!(
            s.set(None, &[], &[], &[(b"b", b""), (b"c", b""), (b"d", b"")], &LIMITS),
            Err(Error::TooBig(_))
        ));
        assert!(matches!(
            s.set(None, &[(b"x", b""), (b"y", b"")], &[], &[], &LIMITS),
            Err(Error::TooBig(_))
        ));
        assert_eq!(s, before);
        let long_subject = vec![b's'; SUBJECT_MAX + 1];
        assert!(Session::create(0, &long_subject, T, FlatMap::new(), FlatMap::new(), &LIMITS).is_err());
    }

    #[test]
    fn versions_stop_at_the_maximum() {
        let mut s = new_session();
        s.version = VERSION_MAX;
        assert_eq!(s.set(None, &[], &[], &[(b"b", b"2")], &LIMITS), Ok(VERSION_MAX));
        assert_eq!(s.cas(VERSION_MAX, fm(&[]), &LIMITS), Ok(VERSION_MAX));
        s.renew(1_000_100, Some(10), 0);
        assert_eq!(s.version, VERSION_MAX);
    }

    #[test]
    fn cas_replaces_data() {
        let mut s = new_session();
        assert_eq!(s.cas(2, fm(&[]), &LIMITS), Err(Error::Conflict(1)));
        assert_eq!(s.cas(1, fm(&[("z", "9")]), &LIMITS), Ok(2));
        assert_eq!(s.data, fm(&[("z", "9")]));
    }

    #[test]
    fn revoke_keeps_a_bounded_tombstone() {
        let mut s = new_session();
        s.revoke(1_000_100, b"", 3_600_000);
        assert_eq!(s.state(1_000_200), State::Revoked);
        assert_eq!(s.revoked_until, 1_001_500);
        assert!(s.data.is_empty() && s.meta.is_empty());
        assert_eq!(&*s.reason, DEFAULT_REASON);
        let mut s = new_session();
        s.revoke(1_000_100, b"logout", 100);
        assert_eq!(s.end_of_life(), 1_000_200);
        assert_eq!(s.state(1_000_200), State::Expired);
    }

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(check_reason(b""), Ok(()));
        assert_eq!(check_reason(&[b'r'; REASON_MAX]), Ok(()));
        assert!(matches!(
            check_reason(&[b'r'; REASON_MAX + 1]),
            Err(Error::TooBig(_))
        ));
        assert_eq!(check_reason(b"a\nb"), Err(Error::Syntax));
        assert_eq!(check_reason(b"a\r"), Err(Error::Syntax));
    }

    #[test]
    fn ttl_reports_each_clock() {
        let s = new_session();
        let t = s.ttl(1_000_200);
        assert_eq!(
            t,
            Ttl {
                state: State::Active,
                idle_ms: 800,
                absolute_ms: 9800,
                grace_ms: 1300
            }
        );
        let mut s = new_session();
        s.absolute_deadline = 0;
        assert_eq!(s.ttl(1_001_100).absolute_ms, -1);
        assert_eq!(s.ttl(1_001_100).idle_ms, 0);
    }
}
