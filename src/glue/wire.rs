//! The effect wire format: the internal commands replicas and the AOF
//! receive (`SESSION.APPLY`, `SESSION.APPLYSET`, `SESSION.APPLYRENEW`, the
//! `SESSION.TENANT SET` an AOF rewrite writes, and the routing rings'
//! `SESSION.RING.APPLY` / `SESSION.RING.APPLYLOAD`), built here and parsed
//! here, nowhere else. Encoding gives a [`Command`] the module API sends
//! (`rm::replicate`, `rm::emit_aof`); parsing turns a command's arguments
//! back into an effect. Both are plain functions over any argument form
//! ([`Argv`]), so the round trip is unit-tested without a server.

use std::borrow::Cow;
use std::ffi::CStr;

use super::guard::CmdError;
use super::parse::{self, is, Argv};
use crate::core::effect::{FieldWrite, Renewed};
use crate::core::session::{TIME_MAX, VERSION_MAX};
use crate::core::tenants::Settings;

pub const APPLY: &CStr = c"SESSION.APPLY";
pub const APPLYSET: &CStr = c"SESSION.APPLYSET";
pub const APPLYRENEW: &CStr = c"SESSION.APPLYRENEW";
pub const TENANT: &CStr = c"SESSION.TENANT";
pub const RING_APPLY: &CStr = c"SESSION.RING.APPLY";
pub const RING_APPLYLOAD: &CStr = c"SESSION.RING.APPLYLOAD";

/// One argument of an outgoing command. `R` is an argument passed on as it
/// arrived (a client's field write), never copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a, R> {
    Raw(R),
    Bytes(&'a [u8]),
    Int(i64),
}

/// The most arguments a command has before its passed-on tail
/// (`SESSION.TENANT SET name` and six options with their values).
pub const HEAD: usize = 14;

/// An outgoing command: its name, its own arguments, then `rest` (passed on
/// as it arrived). Held on the stack: the hot path allocates nothing here.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a, R> {
    pub name: &'static CStr,
    head: [Arg<'a, R>; HEAD],
    len: usize,
    pub rest: &'a [R],
}

impl<'a, R: Copy> Command<'a, R> {
    fn new(name: &'static CStr, head: &[Arg<'a, R>], rest: &'a [R]) -> Self {
        let mut c = Command {
            name,
            head: [Arg::Int(0); HEAD],
            len: 0,
            rest,
        };
        for &a in head {
            c.push(a);
        }
        c
    }

    fn push(&mut self, a: Arg<'a, R>) {
        if let Some(slot) = self.head.get_mut(self.len) {
            *slot = a;
            self.len += 1;
        }
    }

    /// The arguments before `rest`.
    pub fn head(&self) -> &[Arg<'a, R>] {
        &self.head[..self.len]
    }

    /// Number of arguments, the name excluded.
    pub fn argc(&self) -> usize {
        self.len + self.rest.len()
    }
}

/// `SESSION.APPLY key payload [NOEXPIRE]`: a whole encoded value.
pub fn apply<'a, R: Copy>(key: R, payload: &'a [u8], expire: bool) -> Command<'a, R> {
    let mut c = Command::new(APPLY, &[Arg::Raw(key), Arg::Bytes(payload)], &[]);
    if !expire {
        c.push(Arg::Bytes(b"NOEXPIRE"));
    }
    c
}

/// `SESSION.APPLYSET key version <options>`: a field write's options (less
/// IFVERSION) and the version it produced.
pub fn apply_set<'a, R: Copy>(key: R, version: i64, rest: &'a [R]) -> Command<'a, R> {
    Command::new(APPLYSET, &[Arg::Raw(key), Arg::Int(version)], rest)
}

/// `SESSION.APPLYRENEW key last_access idle version`.
pub fn apply_renew<'a, R: Copy>(key: R, r: Renewed) -> Command<'a, R> {
    let head = [
        Arg::Raw(key),
        Arg::Int(r.last_access),
        Arg::Int(r.idle),
        Arg::Int(r.version),
    ];
    Command::new(APPLYRENEW, &head, &[])
}

/// `SESSION.TENANT SET name <option value>...`: a tenant's settings, for an
/// AOF rewritten without an RDB preamble. `None` for settings with nothing
/// set. Option values are numbers, each formatted into `scratch`.
pub fn tenant_set<'a, R: Copy>(
    name: &'a [u8],
    s: &Settings,
    scratch: &'a mut Vec<u8>,
) -> Option<Command<'a, R>> {
    let numbers = [
        ("IDLE", s.idle),
        ("ABSOLUTE", s.absolute),
        ("GRACE", s.grace),
        ("MAXDATA", s.maxdata),
        ("MAXPERSUBJECT", s.maxpersubject),
    ];
    if numbers.iter().all(|(_, v)| v.is_none()) && s.onlimit.is_none() {
        return None;
    }
    // Numbers go in as text through one buffer; spans are taken after.
    scratch.clear();
    let mut spans = Vec::new();
    for (_, v) in numbers {
        let start = scratch.len();
        if let Some(v) = v {
            scratch.extend_from_slice(v.to_string().as_bytes());
        }
        spans.push(start..scratch.len());
    }
    let scratch: &'a [u8] = scratch;
    let mut c = Command::new(TENANT, &[Arg::Bytes(b"SET"), Arg::Bytes(name)], &[]);
    for ((word, v), span) in numbers.iter().zip(spans) {
        if v.is_some() {
            c.push(Arg::Bytes(word.as_bytes()));
            c.push(Arg::Bytes(&scratch[span]));
        }
    }
    if let Some(on) = s.onlimit {
        c.push(Arg::Bytes(b"ONLIMIT"));
        c.push(Arg::Bytes(on.name().as_bytes()));
    }
    Some(c)
}

/// The arguments of `SESSION.APPLY key payload [NOEXPIRE]` (argv[0] the
/// name): the payload and whether the key's expiry is set from it.
pub fn parse_apply<'a, A: Argv<'a> + ?Sized>(args: &A) -> Result<(&'a [u8], bool), CmdError> {
    match args.len() {
        3 => Ok((args.get(2), true)),
        4 if is(args.get(3), "NOEXPIRE") => Ok((args.get(2), false)),
        _ => Err(CmdError::Syntax),
    }
}

/// The arguments of `SESSION.APPLYSET key version <options>`: the version
/// and the field write (its `rest` the options, to pass on as they came).
pub fn parse_apply_set<'s, 'a: 's, A: Argv<'a> + ?Sized>(
    args: &'s A,
) -> Result<(i64, FieldWrite<'s, A::Raw>), CmdError> {
    let version = version(args.get(2))?;
    let w = parse::field_write(args, 3, "session.applyset", false)?;
    Ok((version, w))
}

/// The arguments of `SESSION.APPLYRENEW key last_access idle version`.
pub fn parse_apply_renew<'a, A: Argv<'a> + ?Sized>(args: &A) -> Result<Renewed, CmdError> {
    let last_access = parse::at_least(args.get(2), 0)?;
    let idle = parse::time(args.get(3), 1)?;
    let version = version(args.get(4))?;
    // Far enough from overflow for every deadline computed from it.
    if last_access > i64::MAX - 2 * TIME_MAX {
        return Err(CmdError::NotInteger);
    }
    Ok(Renewed {
        last_access,
        idle,
        version,
        visible: false,
    })
}

fn version(arg: &[u8]) -> Result<i64, CmdError> {
    let v = parse::at_least(arg, 1)?;
    if v > VERSION_MAX {
        return Err(CmdError::NotInteger);
    }
    Ok(v)
}

/// The passed-on arguments of a field write, borrowed when they can be.
pub fn rest_of<'a, R: Clone>(w: &'a FieldWrite<'a, R>) -> &'a [R] {
    match &w.rest {
        Cow::Borrowed(r) => r,
        Cow::Owned(r) => r,
    }
}

// --- routing rings --------------------------------------------------------

/// `SESSION.RING.APPLY key payload`: a whole encoded ring (the effect of
/// `RING.SET` and `RING.NODE`, and the AOF rewrite's form).
pub fn ring_apply<'a, R: Copy>(key: R, payload: &'a [u8]) -> Command<'a, R> {
    Command::new(RING_APPLY, &[Arg::Raw(key), Arg::Bytes(payload)], &[])
}

/// `SESSION.RING.APPLYLOAD key at name load [name load ...]`: loads as the
/// primary recorded them, at its absolute time `at`; the pairs passed on as
/// the client sent them.
pub fn ring_loads<'a, R: Copy>(key: R, at: i64, pairs: &'a [R]) -> Command<'a, R> {
    Command::new(RING_APPLYLOAD, &[Arg::Raw(key), Arg::Int(at)], pairs)
}

/// The payload of `SESSION.RING.APPLY key payload`.
pub fn parse_ring_apply<'a, A: Argv<'a> + ?Sized>(args: &A) -> Result<&'a [u8], CmdError> {
    match args.len() {
        3 => Ok(args.get(2)),
        _ => Err(CmdError::Syntax),
    }
}

/// Node names and their loads, borrowed from the arguments.
pub type LoadPairs<'a> = Vec<(&'a [u8], u64)>;

/// `name load` pairs from argument `from` on (`RING.LOAD`'s and the
/// effect's): each load an integer 0..=`MAX_LOAD`.
pub fn ring_load_pairs<'a, A: Argv<'a> + ?Sized>(args: &A, from: usize) -> Result<LoadPairs<'a>, CmdError> {
    let n = args.len().saturating_sub(from);
    if n == 0 || !n.is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let mut out = Vec::with_capacity(n / 2);
    for i in (from..args.len()).step_by(2) {
        let l = parse::at_least(args.get(i + 1), 0)?;
        if l as u64 > crate::core::routing::MAX_LOAD {
            return Err(CmdError::NotInteger);
        }
        out.push((args.get(i), l as u64));
    }
    Ok(out)
}

/// The arguments of `SESSION.RING.APPLYLOAD key at name load ...`.
pub fn parse_ring_loads<'a, A: Argv<'a> + ?Sized>(args: &A) -> Result<(i64, LoadPairs<'a>), CmdError> {
    let at = parse::int(args.get(2))?;
    Ok((at, ring_load_pairs(args, 3)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tenants::OnLimit;

    type B<'a> = &'a [u8];

    /// A command's arguments as bytes (name first), as a server receives them.
    fn to_bytes<'a, R: AsRef<[u8]> + Copy>(c: &Command<'a, R>) -> Vec<Vec<u8>> {
        let mut out = vec![c.name.to_bytes().to_vec()];
        for a in c.head() {
            out.push(match a {
                Arg::Raw(r) => r.as_ref().to_vec(),
                Arg::Bytes(b) => b.to_vec(),
                Arg::Int(v) => v.to_string().into_bytes(),
            });
        }
        out.extend(c.rest.iter().map(|r| r.as_ref().to_vec()));
        out
    }

    fn argv(c: &Command<B>) -> Vec<Vec<u8>> {
        to_bytes(c)
    }

    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|a| &a[..]).collect()
    }

    #[test]
    fn apply_round_trips() {
        for expire in [true, false] {
            let c = apply(&b"sess:t:k"[..], b"\x9d\x01payload", expire);
            let a = argv(&c);
            assert_eq!(a[0], b"SESSION.APPLY");
            assert_eq!(a[1], b"sess:t:k");
            let r = refs(&a);
            assert_eq!(parse_apply(&r[..]).unwrap(), (&b"\x9d\x01payload"[..], expire));
        }
        let bad: Vec<&[u8]> = vec![b"SESSION.APPLY", b"k", b"p", b"EXPIRE"];
        assert!(parse_apply(&bad[..]).is_err());
    }

    #[test]
    fn apply_set_round_trips_and_passes_options_on() {
        let opts: Vec<&[u8]> = vec![
            b"META", b"1", b"ip", b"1.2.3.4", b"UNSET", b"1", b"x", b"DATA", b"f", b"v",
        ];
        let c = apply_set(&b"k"[..], 42, &opts);
        let a = argv(&c);
        let r = refs(&a);
        let (version, w) = parse_apply_set(&r[..]).unwrap();
        assert_eq!(version, 42);
        assert_eq!(w.meta, vec![(&b"ip"[..], &b"1.2.3.4"[..])]);
        assert_eq!(w.unset, vec![&b"x"[..]]);
        assert_eq!(w.data, vec![(&b"f"[..], &b"v"[..])]);
        assert_eq!(w.if_version, None);
        assert_eq!(rest_of(&w), &opts[..], "what it passes on is what it got");
        // A rebuilt command is the same command.
        assert_eq!(argv(&apply_set(&b"k"[..], version, rest_of(&w))), a);
        for bad in [
            vec![&b"SESSION.APPLYSET"[..], b"k", b"0", b"DATA", b"a", b"b"],
            vec![
                b"SESSION.APPLYSET",
                b"k",
                b"9007199254740993",
                b"DATA",
                b"a",
                b"b",
            ],
            vec![
                b"SESSION.APPLYSET",
                b"k",
                b"2",
                b"IFVERSION",
                b"1",
                b"DATA",
                b"a",
                b"b",
            ],
            vec![b"SESSION.APPLYSET", b"k", b"2"],
        ] {
            assert!(parse_apply_set(&bad[..]).is_err());
        }
    }

    #[test]
    fn apply_renew_round_trips() {
        let r = Renewed {
            last_access: 1_795_528_289_114,
            idle: 900_000,
            version: 7,
            visible: false,
        };
        let a = argv(&apply_renew(&b"k"[..], r));
        assert_eq!(a.len(), 5);
        assert_eq!(parse_apply_renew(&refs(&a)[..]).unwrap(), r);
        for bad in [
            ["-1", "1", "1"],
            ["1", "0", "1"],
            ["1", "1", "0"],
            ["x", "1", "1"],
        ] {
            let mut v: Vec<&[u8]> = vec![b"SESSION.APPLYRENEW", b"k"];
            v.extend(bad.iter().map(|s| s.as_bytes()));
            assert!(parse_apply_renew(&v[..]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tenant_settings_as_a_command() {
        let mut scratch = Vec::new();
        let s = Settings {
            idle: Some(900_000),
            maxpersubject: Some(5),
            onlimit: Some(OnLimit::EvictOldest),
            ..Default::default()
        };
        let c = tenant_set::<B>(b"acme", &s, &mut scratch).unwrap();
        let a: Vec<String> = argv(&c)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(
            a,
            [
                "SESSION.TENANT",
                "SET",
                "acme",
                "IDLE",
                "900000",
                "MAXPERSUBJECT",
                "5",
                "ONLIMIT",
                "evict-oldest"
            ]
        );
        assert!(tenant_set::<B>(b"acme", &Settings::default(), &mut scratch).is_none());
        let full = Settings {
            idle: Some(1),
            absolute: Some(2),
            grace: Some(3),
            maxdata: Some(4),
            maxpersubject: Some(5),
            onlimit: Some(OnLimit::Reject),
        };
        assert_eq!(tenant_set::<B>(b"t", &full, &mut scratch).unwrap().argc(), 14);
    }

    #[test]
    fn ring_effects_round_trip() {
        let c = ring_apply(&b"ring:web"[..], b"\x01ring");
        let a = argv(&c);
        assert_eq!(a[0], b"SESSION.RING.APPLY");
        assert_eq!(parse_ring_apply(&refs(&a)[..]).unwrap(), &b"\x01ring"[..]);
        let pairs: Vec<&[u8]> = vec![b"app-1", b"7", b"app-2", b"0"];
        let c = ring_loads(&b"ring:web"[..], 1_700_000_000_123, &pairs);
        let a = argv(&c);
        assert_eq!(a[0], b"SESSION.RING.APPLYLOAD");
        let (at, loads) = parse_ring_loads(&refs(&a)[..]).unwrap();
        assert_eq!(at, 1_700_000_000_123);
        assert_eq!(loads, vec![(&b"app-1"[..], 7), (&b"app-2"[..], 0)]);
        for bad in [
            vec![&b"SESSION.RING.APPLYLOAD"[..], b"k", b"1", b"a"],
            vec![&b"SESSION.RING.APPLYLOAD"[..], b"k", b"1"],
            vec![&b"SESSION.RING.APPLYLOAD"[..], b"k", b"x", b"a", b"1"],
            vec![&b"SESSION.RING.APPLYLOAD"[..], b"k", b"1", b"a", b"-1"],
            vec![
                &b"SESSION.RING.APPLYLOAD"[..],
                b"k",
                b"1",
                b"a",
                b"9007199254740992",
            ],
        ] {
            assert!(parse_ring_loads(&bad[..]).is_err(), "{bad:?}");
        }
    }
}
