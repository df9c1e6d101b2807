//! The counters of `SESSION.STATS` and `INFO session`, per tenant and in all.

use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub created: u64,
    pub hits: u64,
    pub misses: u64,
    pub touches: u64,
    pub touches_propagated: u64,
    pub renewals: u64,
    pub grace_renewals: u64,
    pub cas_conflicts: u64,
    pub revocations: u64,
    pub expired: u64,
    pub evicted: u64,
}

bitflags::bitflags! {
    /// A set of counters, each bumped once (named as in the README's
    /// `SESSION.STATS`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Counts: u16 {
        const CREATED = 1;
        const HITS = 1 << 1;
        const MISSES = 1 << 2;
        const TOUCHES = 1 << 3;
        const TOUCHES_PROPAGATED = 1 << 4;
        const RENEWALS = 1 << 5;
        const GRACE_RENEWALS = 1 << 6;
        const CAS_CONFLICTS = 1 << 7;
        const REVOCATIONS = 1 << 8;
        const EXPIRED = 1 << 9;
        const EVICTED = 1 << 10;
    }
}

impl Counters {
    /// Adds one to each counter in `cs` (a read sets two to four).
    fn bump(&mut self, cs: Counts) {
        for c in cs.iter() {
            let slot = match c {
                Counts::CREATED => &mut self.created,
                Counts::HITS => &mut self.hits,
                Counts::MISSES => &mut self.misses,
                Counts::TOUCHES => &mut self.touches,
                Counts::TOUCHES_PROPAGATED => &mut self.touches_propagated,
                Counts::RENEWALS => &mut self.renewals,
                Counts::GRACE_RENEWALS => &mut self.grace_renewals,
                Counts::CAS_CONFLICTS => &mut self.cas_conflicts,
                Counts::REVOCATIONS => &mut self.revocations,
                Counts::EXPIRED => &mut self.expired,
                Counts::EVICTED => &mut self.evicted,
                _ => continue,
            };
            *slot += 1;
        }
    }

    /// Name/value pairs in the README's order (without the live totals).
    pub fn named(&self) -> [(&'static str, u64); 11] {
        [
            ("created", self.created),
            ("hits", self.hits),
            ("misses", self.misses),
            ("touches", self.touches),
            ("touches_propagated", self.touches_propagated),
            ("renewals", self.renewals),
            ("grace_renewals", self.grace_renewals),
            ("cas_conflicts", self.cas_conflicts),
            ("revocations", self.revocations),
            ("expired", self.expired),
            ("evicted", self.evicted),
        ]
    }
}

/// Counters since start, in all and per tenant.
#[derive(Default)]
pub struct Stats {
    pub total: Counters,
    per_tenant: HashMap<Box<[u8]>, Counters, Xxh3DefaultBuilder>,
}

impl Stats {
    /// Counts `cs` for `tenant` with one lookup. A tenant seen for the
    /// first time only gets a row of its own when `new_tenant_ok`: misses on
    /// made-up tenants must not grow module memory.
    pub fn bump(&mut self, tenant: &[u8], cs: Counts, new_tenant_ok: bool) {
        if cs.is_empty() {
            return;
        }
        self.total.bump(cs);
        let row = match self.per_tenant.get_mut(tenant) {
            Some(row) => row,
            None if new_tenant_ok => self.per_tenant.entry(tenant.into()).or_default(),
            None => return,
        };
        row.bump(cs);
    }

    /// Tenants that have a row of counters (unordered).
    pub fn tenants(&self) -> impl Iterator<Item = &[u8]> {
        self.per_tenant.keys().map(|t| &**t)
    }

    pub fn tenant(&self, tenant: &[u8]) -> Counters {
        self.per_tenant.get(tenant).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_tenant_and_in_all() {
        let mut s = Stats::default();
        s.bump(b"a", Counts::MISSES, false);
        s.bump(b"a", Counts::CREATED, true);
        s.bump(b"a", Counts::MISSES, false);
        s.bump(b"b", Counts::HITS | Counts::TOUCHES, true);
        assert_eq!(s.total.misses, 2);
        assert_eq!(s.tenant(b"a").misses, 1);
        assert_eq!(s.tenant(b"a").created, 1);
        assert_eq!((s.tenant(b"b").hits, s.tenant(b"b").touches), (1, 1));
        assert_eq!(s.tenant(b"zz"), Counters::default());
        let mut names: Vec<&[u8]> = s.tenants().collect();
        names.sort();
        assert_eq!(names, [&b"a"[..], &b"b"[..]]);
    }
}
