//! The per-subject index and the live totals of every tenant, kept in
//! module memory per database. `LIST`, `REVOKEALL` and `COUNT` read it; no
//! command scans the keyspace. The glue keeps it exact by calling `upsert`
//! and `remove` on every path a session key can take.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

type Map<K, V> = HashMap<K, V, Xxh3DefaultBuilder>;
type Set<K> = HashSet<K, Xxh3DefaultBuilder>;

/// What the index knows of one live session.
#[derive(Debug, Clone)]
struct Entry {
    tenant: Rc<[u8]>,
    /// `tenant:subject`, or `None` for a session without a subject.
    group: Option<Rc<[u8]>>,
    data_bytes: u64,
    /// Key id the data values are sealed under, and how many there are.
    seal: Option<(Rc<[u8]>, u64)>,
}

/// Live totals of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub sessions: u64,
    pub data_bytes: u64,
}

#[derive(Default)]
struct Db {
    by_key: Map<Rc<[u8]>, Entry>,
    by_group: Map<Rc<[u8]>, Set<Rc<[u8]>>>,
    live: Map<Rc<[u8]>, Live>,
    sealed: Map<Rc<[u8]>, u64>,
}

/// The index of every database.
#[derive(Default)]
pub struct Index {
    dbs: Vec<Db>,
}

fn group_key(tenant: &[u8], subject: &[u8]) -> Vec<u8> {
    [tenant, b":", subject].concat()
}

impl Index {
    fn db(&mut self, db: usize) -> &mut Db {
        if self.dbs.len() <= db {
            self.dbs.resize_with(db + 1, Db::default);
        }
        &mut self.dbs[db]
    }

    /// Records `key` as a live session of `tenant`/`subject` holding
    /// `data_bytes`, with `seal` = (key id, values) when its data is sealed.
    pub fn upsert(
        &mut self,
        db: usize,
        key: &[u8],
        tenant: &[u8],
        subject: &[u8],
        data_bytes: u64,
        seal: Option<(&[u8], u64)>,
    ) {
        if self.dbs.get(db).is_some_and(|d| {
            d.by_key
                .get(key)
                .is_some_and(|e| e.seal.is_some() || seal.is_some())
        }) {
            // Sealing counts move with the value: re-insert from scratch.
            self.remove(db, key);
        }
        let d = self.db(db);
        if let Some(e) = d.by_key.get_mut(key) {
            let same_group = match &e.group {
                Some(g) => **g == *group_key(tenant, subject),
                None => subject.is_empty(),
            };
            if *e.tenant == *tenant && same_group {
                if let Some(live) = d.live.get_mut(&e.tenant) {
                    live.data_bytes = live.data_bytes - e.data_bytes + data_bytes;
                }
                e.data_bytes = data_bytes;
                return;
            }
            self.remove(db, key);
        }
        let d = self.db(db);
        let key: Rc<[u8]> = key.into();
        let tenant: Rc<[u8]> = match d.live.get_key_value(tenant) {
            Some((t, _)) => t.clone(),
            None => tenant.into(),
        };
        let group = (!subject.is_empty()).then(|| {
            let g = group_key(&tenant, subject);
            match d.by_group.get_key_value(&g[..]) {
                Some((existing, _)) => existing.clone(),
                None => Rc::<[u8]>::from(g),
            }
        });
        if let Some(g) = &group {
            d.by_group.entry(g.clone()).or_default().insert(key.clone());
        }
        let live = d.live.entry(tenant.clone()).or_default();
        live.sessions += 1;
        live.data_bytes += data_bytes;
        let seal = seal.map(|(id, n)| {
            let id: Rc<[u8]> = match d.sealed.get_key_value(id) {
                Some((existing, _)) => existing.clone(),
                None => id.into(),
            };
            *d.sealed.entry(id.clone()).or_default() += n;
            (id, n)
        });
        d.by_key.insert(
            key,
            Entry {
                tenant,
                group,
                data_bytes,
                seal,
            },
        );
    }

    /// Forgets `key`; returns its tenant if it was a live session.
    pub fn remove(&mut self, db: usize, key: &[u8]) -> Option<Rc<[u8]>> {
        let d = self.dbs.get_mut(db)?;
        let e = d.by_key.remove(key)?;
        if let Some(g) = &e.group {
            if let Some(set) = d.by_group.get_mut(g) {
                set.remove(key);
                if set.is_empty() {
                    d.by_group.remove(g);
                }
            }
        }
        if let Some((id, n)) = &e.seal {
            if let Some(count) = d.sealed.get_mut(id) {
                *count -= n;
                if *count == 0 {
                    d.sealed.remove(id);
                }
            }
        }
        if let Some(live) = d.live.get_mut(&e.tenant) {
            live.sessions -= 1;
            live.data_bytes -= e.data_bytes;
            if live.sessions == 0 {
                d.live.remove(&e.tenant);
            }
        }
        Some(e.tenant)
    }

    pub fn contains(&self, db: usize, key: &[u8]) -> bool {
        self.dbs.get(db).is_some_and(|d| d.by_key.contains_key(key))
    }

    /// The keys of a subject's sessions in `db`, sorted.
    pub fn keys_of(&self, db: usize, tenant: &[u8], subject: &[u8]) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .dbs
            .get(db)
            .and_then(|d| d.by_group.get(&group_key(tenant, subject)[..]))
            .map(|set| set.iter().map(|k| k.to_vec()).collect())
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

    /// Sealed data values per key id, over every database.
    pub fn sealed_counts(&self) -> std::collections::BTreeMap<Vec<u8>, u64> {
        let mut out = std::collections::BTreeMap::new();
        for d in &self.dbs {
            for (id, n) in &d.sealed {
                *out.entry(id.to_vec()).or_default() += n;
            }
        }
        out
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
        let n = a.max(b);
        self.db(n);
        self.dbs.swap(a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_groups_and_totals() {
        let mut ix = Index::default();
        ix.upsert(0, b"k1", b"acme", b"u1", 10, None);
        ix.upsert(0, b"k2", b"acme", b"u1", 5, None);
        ix.upsert(0, b"k3", b"acme", b"", 1, None);
        ix.upsert(1, b"k4", b"acme", b"u1", 1, None);
        assert_eq!(
            ix.keys_of(0, b"acme", b"u1"),
            vec![b"k1".to_vec(), b"k2".to_vec()]
        );
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
        ix.upsert(0, b"k1", b"acme", b"u1", 20, None);
        assert_eq!(ix.live(0, b"acme").data_bytes, 26);
        ix.upsert(0, b"k1", b"acme", b"u2", 20, None);
        assert_eq!(ix.keys_of(0, b"acme", b"u1"), vec![b"k2".to_vec()]);
        assert_eq!(ix.keys_of(0, b"acme", b"u2"), vec![b"k1".to_vec()]);
        assert_eq!(ix.remove(0, b"k2").as_deref(), Some(&b"acme"[..]));
        assert_eq!(ix.remove(0, b"k2"), None);
        assert!(ix.keys_of(0, b"acme", b"u1").is_empty());
        ix.swap_dbs(0, 1);
        assert_eq!(ix.live(0, b"acme").sessions, 1);
        assert_eq!(ix.live(1, b"acme").sessions, 2);
        ix.clear_db(1);
        assert_eq!(ix.live_total(None).sessions, 1);
        ix.upsert(0, b"s1", b"acme", b"u", 3, Some((b"k1", 2)));
        ix.upsert(0, b"s2", b"acme", b"u", 3, Some((b"k1", 3)));
        assert_eq!(ix.sealed_counts().get(&b"k1"[..]), Some(&5));
        ix.upsert(0, b"s1", b"acme", b"u", 3, Some((b"k2", 2)));
        assert_eq!(ix.sealed_counts().get(&b"k1"[..]), Some(&3));
        assert_eq!(ix.sealed_counts().get(&b"k2"[..]), Some(&2));
        ix.remove(0, b"s2");
        ix.upsert(0, b"s1", b"acme", b"u", 3, None);
        assert!(ix.sealed_counts().is_empty());
    }
}
