//! The per-subject index and the live totals of every tenant, kept in
//! module memory per database. `LIST`, `REVOKEALL` and `COUNT` read it; no
//! command scans the keyspace.
//!
//! The index holds each session's key once (in its subject's set, or in the
//! set of sessions without a subject) and nothing else per session: what it
//! needs to take a session out again (tenant, subject, sizes, sealing) is
//! read from the value, which Redis hands to every removal path (the type's
//! unlink callback, our own writes). That keeps its memory at about one key
//! per session. `add` and `remove` report whether they changed anything, so
//! a path seen twice cannot count twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::seal;
use super::session::{Flags, Session};

// The index is keyed by what clients choose (subjects, key names), so its
// tables use std's randomly keyed SipHash, like Redis's own dicts: with a
// fixed hash (xxh3's default secret) chosen names could be made to collide
// and turn every lookup into a walk. The price: ~5 % over xxh3 in a 1M-key
// insert-and-get microbenchmark; SipHash is 3.4 % of a SESSION.CREATE in
// perf (xxh3 was ~1 %). The per-table keys take room: see `Members`.
type Map<K, V> = HashMap<K, V>;
type Set<K> = HashSet<K>;

/// What the index needs to know of one session value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexed<'a> {
    pub tenant: &'a [u8],
    /// Empty for a session without a subject.
    pub subject: &'a [u8],
    pub data_bytes: u64,
    /// How many data values the session has, and the key id they are held
    /// sealed under: empty for values held in plaintext.
    pub seal: Option<(&'a [u8], u64)>,
}

impl<'a> Indexed<'a> {
    /// What the index holds of a value of `tenant`: `None` for a revoked
    /// tombstone (not live, not indexed).
    pub fn of(tenant: &'a [u8], s: &'a Session) -> Option<Indexed<'a>> {
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
}

/// What [`Indexed::of`] said of a value before it changed in place. No
/// write in place changes the subject, so it is read from the value
/// afterwards; the key id is copied only for a value held sealed
/// (plaintext: empty, no allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    data_bytes: u64,
    seal: Option<(Vec<u8>, u64)>,
}

impl Before {
    pub fn of(s: &Session) -> Option<Before> {
        let i = Indexed::of(b"", s)?;
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

/// Live totals of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub sessions: u64,
    pub data_bytes: u64,
}

type Key = Box<[u8]>;

/// The keys of one subject's sessions. Most subjects have one session, so
/// that case holds the key inline instead of a hash table of one; the
/// table of a subject with several is boxed, so every slot of `groups`
/// stays 32 bytes (a `HashSet` inline, with its 16-byte SipHash keys, made
/// `Members` 48 bytes and each slot 64: ~50 bytes more per session at 1M
/// one-session subjects, and a slower RDB load).
enum Members {
    One(Key),
    Many(Box<Set<Key>>),
}

impl Members {
    fn contains(&self, key: &[u8]) -> bool {
        match self {
            Members::One(k) => **k == *key,
            Members::Many(set) => set.contains(key),
        }
    }

    /// Adds `key`; false if it was there.
    fn insert(&mut self, key: &[u8]) -> bool {
        if self.contains(key) {
            return false;
        }
        if let Members::One(k) = self {
            let mut set = Box::<Set<Key>>::default();
            set.insert(std::mem::take(k));
            *self = Members::Many(set);
        }
        if let Members::Many(set) = self {
            set.insert(key.into());
        }
        true
    }

    /// Removes `key`; false if it was not there.
    fn remove(&mut self, key: &[u8]) -> bool {
        match self {
            Members::One(k) if **k == *key => {
                *k = Key::default();
                true
            }
            Members::One(_) => false,
            Members::Many(set) => set.remove(key),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Members::One(k) => k.is_empty(),
            Members::Many(set) => set.is_empty(),
        }
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        match self {
            Members::One(k) => vec![k.to_vec()],
            Members::Many(set) => set.iter().map(|k| k.to_vec()).collect(),
        }
    }
}

#[derive(Default)]
struct Db {
    /// `tenant:subject` → keys of that subject's sessions.
    groups: Map<Box<[u8]>, Members>,
    /// Keys of sessions without a subject.
    loose: Set<Key>,
    live: Map<Box<[u8]>, Live>,
    sealed: Map<Box<[u8]>, u64>,
}

/// The index of every database.
#[derive(Default)]
pub struct Index {
    dbs: Vec<Db>,
}

/// Runs `f` with the group key `tenant:subject`, built on the stack when it
/// fits (every add, remove and in-place write looks one up).
fn with_group_key<T>(tenant: &[u8], subject: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let n = tenant.len() + 1 + subject.len();
    let mut stack = [0u8; 192];
    if n <= stack.len() {
        stack[..tenant.len()].copy_from_slice(tenant);
        stack[tenant.len()] = b':';
        stack[tenant.len() + 1..n].copy_from_slice(subject);
        f(&stack[..n])
    } else {
        f(&[tenant, b":", subject].concat())
    }
}

impl Db {
    fn totals(&mut self, v: &Indexed, add: bool) {
        let live = match self.live.get_mut(v.tenant) {
            Some(l) => l,
            None => self.live.entry(v.tenant.into()).or_default(),
        };
        if add {
            live.sessions += 1;
            live.data_bytes += v.data_bytes;
        } else {
            live.sessions = live.sessions.saturating_sub(1);
            live.data_bytes = live.data_bytes.saturating_sub(v.data_bytes);
            if live.sessions == 0 {
                self.live.remove(v.tenant);
            }
        }
        self.seal_count(v.seal, add);
    }

    fn seal_count(&mut self, seal: Option<(&[u8], u64)>, add: bool) {
        if let Some((id, n)) = seal {
            let count = match self.sealed.get_mut(id) {
                Some(c) => c,
                None => self.sealed.entry(id.into()).or_default(),
            };
            *count = if add { *count + n } else { count.saturating_sub(n) };
            if *count == 0 {
                self.sealed.remove(id);
            }
        }
    }

    /// A value changed in place within its tenant: its bytes and sealed
    /// counts move, the session count stays (one lookup in the usual case).
    fn move_totals(&mut self, old: &Indexed, new: &Indexed) {
        match self.live.get_mut(new.tenant) {
            Some(live) => live.data_bytes = live.data_bytes.saturating_sub(old.data_bytes) + new.data_bytes,
            None => {
                self.totals(old, false);
                self.totals(new, true);
                return;
            }
        }
        if old.seal != new.seal {
            self.seal_count(old.seal, false);
            self.seal_count(new.seal, true);
        }
    }
}

impl Index {
    fn db(&mut self, db: usize) -> &mut Db {
        if self.dbs.len() <= db {
            self.dbs.resize_with(db + 1, Db::default);
        }
        &mut self.dbs[db]
    }

    /// Records `key` as a live session; false if it was already there.
    pub fn add(&mut self, db: usize, key: &[u8], v: &Indexed) -> bool {
        let d = self.db(db);
        let added = if v.subject.is_empty() {
            !d.loose.contains(key) && d.loose.insert(key.into())
        } else {
            with_group_key(v.tenant, v.subject, |g| match d.groups.get_mut(g) {
                Some(members) => members.insert(key),
                None => {
                    d.groups.insert(g.into(), Members::One(key.into()));
                    true
                }
            })
        };
        if added {
            d.totals(v, true);
        }
        added
    }

    /// Forgets `key`, described by its value `v`; false if it was not there.
    pub fn remove(&mut self, db: usize, key: &[u8], v: &Indexed) -> bool {
        let Some(d) = self.dbs.get_mut(db) else {
            return false;
        };
        let removed = if v.subject.is_empty() {
            d.loose.remove(key)
        } else {
            with_group_key(v.tenant, v.subject, |g| {
                let Some(members) = d.groups.get_mut(g) else {
                    return false;
                };
                let removed = members.remove(key);
                if members.is_empty() {
                    d.groups.remove(g);
                }
                removed
            })
        };
        if removed {
            d.totals(v, false);
        }
        removed
    }

    /// A value changed in place (its data): moves its totals from `old` to `new`.
    pub fn update(&mut self, db: usize, key: &[u8], old: &Indexed, new: &Indexed) {
        if old.tenant == new.tenant && old.subject == new.subject {
            // Same place in the index (the usual SET/CAS): only the totals
            // move, and a write that changes neither size nor seal moves none.
            if old.data_bytes == new.data_bytes && old.seal == new.seal {
                return;
            }
            if self.contains(db, key, old) {
                self.db(db).move_totals(old, new);
            }
        } else if self.remove(db, key, old) {
            self.add(db, key, new);
        }
    }

    fn contains(&self, db: usize, key: &[u8], v: &Indexed) -> bool {
        let Some(d) = self.dbs.get(db) else { return false };
        if v.subject.is_empty() {
            return d.loose.contains(key);
        }
        with_group_key(v.tenant, v.subject, |g| {
            d.groups.get(g).is_some_and(|m| m.contains(key))
        })
    }

    /// Moves the entry of `key` from what `before` said (`None`: not
    /// indexed) to what `s`, of `tenant`, is now.
    pub fn follow(&mut self, db: usize, key: &[u8], tenant: &[u8], before: Option<&Before>, s: &Session) {
        let old = before.map(|b| b.view(tenant, &s.subject));
        match (old, Indexed::of(tenant, s)) {
            (Some(old), Some(new)) => self.update(db, key, &old, &new),
            (Some(old), None) => {
                self.remove(db, key, &old);
            }
            (None, Some(new)) => {
                self.add(db, key, &new);
            }
            (None, None) => {}
        }
    }

    /// The keys of a subject's sessions in `db`, sorted.
    pub fn keys_of(&self, db: usize, tenant: &[u8], subject: &[u8]) -> Vec<Vec<u8>> {
        if subject.is_empty() {
            return Vec::new();
        }
        let mut keys: Vec<Vec<u8>> = self
            .dbs
            .get(db)
            .and_then(|d| with_group_key(tenant, subject, |g| d.groups.get(g).map(Members::keys)))
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Live totals of a tenant in `db`.
    pub fn live(&self, db: usize, tenant: &[u8]) -> Live {
        self.dbs
            .get(db)
            .and_then(|d| d.live.get(tenant))
            .copied()
            .unwrap_or_default()
    }

    /// Live totals of a tenant over every database, or of everything.
    pub fn live_total(&self, tenant: Option<&[u8]>) -> Live {
        let mut total = Live::default();
        for d in &self.dbs {
            for (t, l) in &d.live {
                if tenant.is_none_or(|want| **t == *want) {
                    total.sessions += l.sessions;
                    total.data_bytes += l.data_bytes;
                }
            }
        }
        total
    }

    /// Data values per key id they would be written out under, over every
    /// database: values held in plaintext go under the `active` key (and
    /// are not counted without one), values held sealed under their own.
    pub fn sealed_counts(&self, active: Option<&[u8]>) -> BTreeMap<Vec<u8>, u64> {
        let mut out = BTreeMap::new();
        for d in &self.dbs {
            for (id, n) in &d.sealed {
                let id = match (id.is_empty(), active) {
                    (false, _) => &id[..],
                    (true, Some(active)) => active,
                    (true, None) => continue,
                };
                *out.entry(id.to_vec()).or_default() += n;
            }
        }
        out
    }

    /// Tenants with a live session in any database (unordered, may repeat
    /// across databases).
    pub fn live_tenants(&self) -> impl Iterator<Item = &[u8]> {
        self.dbs.iter().flat_map(|d| d.live.keys().map(|t| &**t))
    }

    /// No live session in any database.
    pub fn is_empty(&self) -> bool {
        self.dbs.iter().all(|d| d.loose.is_empty() && d.groups.is_empty())
    }

    pub fn clear_db(&mut self, db: usize) {
        if let Some(d) = self.dbs.get_mut(db) {
            *d = Db::default();
        }
    }

    pub fn clear(&mut self) {
        self.dbs.clear();
    }

    pub fn swap_dbs(&mut self, a: usize, b: usize) {
        self.db(a.max(b));
        self.dbs.swap(a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<'a>(tenant: &'a [u8], subject: &'a [u8], bytes: u64) -> Indexed<'a> {
        Indexed {
            tenant,
            subject,
            data_bytes: bytes,
            seal: None,
        }
    }

    #[test]
    fn a_subject_costs_two_words_of_table() {
        // The slot of `groups` is the group key and its members: a subject
        // with one session must not pay for a hash table inline.
        assert_eq!(std::mem::size_of::<Members>(), 2 * std::mem::size_of::<usize>());
    }

    #[test]
    fn tracks_groups_and_totals() {
        let mut ix = Index::default();
        assert!(ix.add(0, b"k1", &v(b"acme", b"u1", 10)));
        assert!(
            !ix.add(0, b"k1", &v(b"acme", b"u1", 10)),
            "a second add changes nothing"
        );
        ix.add(0, b"k2", &v(b"acme", b"u1", 5));
        ix.add(0, b"k3", &v(b"acme", b"", 1));
        ix.add(1, b"k4", &v(b"acme", b"u1", 1));
        assert_eq!(
            ix.keys_of(0, b"acme", b"u1"),
            vec![b"k1".to_vec(), b"k2".to_vec()]
        );
        assert!(ix.keys_of(0, b"acme", b"").is_empty());
        assert_eq!(
            ix.live(0, b"acme"),
            Live {
                sessions: 3,
                data_bytes: 16
            }
        );
        assert_eq!(
            ix.live_total(Some(b"acme")),
            Live {
                sessions: 4,
                data_bytes: 17
            }
        );
        ix.update(0, b"k1", &v(b"acme", b"u1", 10), &v(b"acme", b"u1", 20));
        assert_eq!(ix.live(0, b"acme").data_bytes, 26);
        ix.update(0, b"k1", &v(b"acme", b"u1", 20), &v(b"acme", b"u1", 20));
        assert_eq!(ix.live(0, b"acme").data_bytes, 26, "same size: nothing moves");
        ix.update(0, b"nope", &v(b"acme", b"u1", 20), &v(b"acme", b"u1", 90));
        assert_eq!(
            ix.live(0, b"acme").data_bytes,
            26,
            "a key the index lacks moves nothing"
        );
        assert!(ix.remove(0, b"k2", &v(b"acme", b"u1", 5)));
        assert!(
            !ix.remove(0, b"k2", &v(b"acme", b"u1", 5)),
            "a second remove changes nothing"
        );
        assert!(ix.remove(0, b"k3", &v(b"acme", b"", 1)));
        assert_eq!(
            ix.live(0, b"acme"),
            Live {
                sessions: 1,
                data_bytes: 20
            }
        );
        ix.swap_dbs(0, 1);
        assert_eq!(ix.live(0, b"acme").sessions, 1);
        assert_eq!(ix.keys_of(1, b"acme", b"u1"), vec![b"k1".to_vec()]);
        ix.clear_db(1);
        assert_eq!(ix.live_total(None).sessions, 1);
    }

    #[test]
    fn live_tenants_follow_the_sessions() {
        let mut ix = Index::default();
        ix.add(0, b"k1", &v(b"acme", b"u1", 1));
        ix.add(2, b"k2", &v(b"beta", b"", 1));
        let mut t: Vec<&[u8]> = ix.live_tenants().collect();
        t.sort();
        assert_eq!(t, [&b"acme"[..], &b"beta"[..]]);
        ix.remove(0, b"k1", &v(b"acme", b"u1", 1));
        assert_eq!(ix.live_tenants().collect::<Vec<_>>(), [&b"beta"[..]]);
    }

    #[test]
    fn counts_sealed_values_per_key() {
        let mut ix = Index::default();
        let sealed = |id: &'static [u8], n| Indexed {
            seal: Some((id, n)),
            ..v(b"t", b"u", 3)
        };
        let counts = |ix: &Index, active: Option<&[u8]>| -> Vec<(Vec<u8>, u64)> {
            ix.sealed_counts(active).into_iter().collect()
        };
        ix.add(0, b"s1", &sealed(b"k1", 2));
        ix.add(0, b"s2", &sealed(b"k1", 3));
        assert_eq!(counts(&ix, None), [(b"k1".to_vec(), 5)]);
        ix.update(0, b"s1", &sealed(b"k1", 2), &sealed(b"k2", 2));
        assert_eq!(counts(&ix, None), [(b"k1".to_vec(), 3), (b"k2".to_vec(), 2)]);
        // plaintext values go under the active key, and nowhere without one
        ix.add(1, b"s3", &sealed(b"", 4));
        assert_eq!(
            counts(&ix, Some(b"k2")),
            [(b"k1".to_vec(), 3), (b"k2".to_vec(), 6)]
        );
        assert_eq!(
            counts(&ix, Some(b"k9")),
            [(b"k1".to_vec(), 3), (b"k2".to_vec(), 2), (b"k9".to_vec(), 4)]
        );
        assert_eq!(counts(&ix, None), [(b"k1".to_vec(), 3), (b"k2".to_vec(), 2)]);
        ix.remove(0, b"s2", &sealed(b"k1", 3));
        ix.remove(0, b"s1", &sealed(b"k2", 2));
        ix.remove(1, b"s3", &sealed(b"", 4));
        assert!(ix.sealed_counts(Some(b"k2")).is_empty());
    }

    #[test]
    fn follows_a_value_through_its_changes() {
        use crate::core::flatmap::FlatMap;
        use crate::core::session::{Limits, Timeouts};
        let t = Timeouts {
            idle: 10,
            absolute: 0,
            grace: 0,
        };
        let data = FlatMap::from_pairs([(&b"a"[..], &b"12"[..])]);
        let mut s = Session::create(0, b"u", t, FlatMap::new(), data, &Limits::NONE).unwrap();
        let entry = Indexed::of(b"acme", &s).unwrap();
        assert_eq!((entry.data_bytes, entry.seal), (3, Some((&b""[..], 1))));
        let mut ix = Index::default();
        ix.follow(0, b"k", b"acme", None, &s);
        assert_eq!(
            ix.live(0, b"acme"),
            Live {
                sessions: 1,
                data_bytes: 3
            }
        );
        let before = Before::of(&s);
        s.set(None, &[], &[], &[(b"b", b"1")], &Limits::NONE).unwrap();
        ix.follow(0, b"k", b"acme", before.as_ref(), &s);
        assert_eq!(
            ix.live(0, b"acme"),
            Live {
                sessions: 1,
                data_bytes: 5
            }
        );
        let before = Before::of(&s);
        s.revoke(1, b"", 10);
        assert!(Indexed::of(b"acme", &s).is_none() && Before::of(&s).is_none());
        ix.follow(0, b"k", b"acme", before.as_ref(), &s);
        assert!(ix.is_empty());
        assert_eq!(ix.live_total(None), Live::default());
    }
}
