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

/// One counter, named as in the SPEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Created,
    Hits,
    Misses,
    Touches,
    TouchesPropagated,
    Renewals,
    GraceRenewals,
    CasConflicts,
    Revocations,
    Expired,
    Evicted,
}

impl Counters {
    fn slot(&mut self, c: Counter) -> &mut u64 {
        match c {
            Counter::Created => &mut self.created,
            Counter::Hits => &mut self.hits,
            Counter::Misses => &mut self.misses,
            Counter::Touches => &mut self.touches,
            Counter::TouchesPropagated => &mut self.touches_propagated,
            Counter::Renewals => &mut self.renewals,
            Counter::GraceRenewals => &mut self.grace_renewals,
            Counter::CasConflicts => &mut self.cas_conflicts,
            Counter::Revocations => &mut self.revocations,
            Counter::Expired => &mut self.expired,
            Counter::Evicted => &mut self.evicted,
        }
    }

    /// Name/value pairs in the SPEC's order (without the live totals).
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
    /// Counts `c` for `tenant`. A tenant seen for the first time only gets a
    /// row of its own when `new_tenant_ok`: misses on made-up tenants must
    /// not grow module memory.
    pub fn bump(&mut self, tenant: &[u8], c: Counter, new_tenant_ok: bool) {
        self.bump_all(tenant, &[c], new_tenant_ok);
    }

    /// Counts each of `cs` for `tenant` with one lookup (the read path).
    pub fn bump_all(&mut self, tenant: &[u8], cs: &[Counter], new_tenant_ok: bool) {
        for &c in cs {
            *self.total.slot(c) += 1;
        }
        let row = match self.per_tenant.get_mut(tenant) {
            Some(row) => row,
            None if new_tenant_ok => self.per_tenant.entry(tenant.into()).or_default(),
            None => return,
        };
        for &c in cs {
            *row.slot(c) += 1;
        }
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
        s.bump(b"a", Counter::Misses, false);
        s.bump(b"a", Counter::Created, true);
        s.bump(b"a", Counter::Misses, false);
        s.bump(b"b", Counter::Hits, true);
        assert_eq!(s.total.misses, 2);
        assert_eq!(s.tenant(b"a").misses, 1);
        assert_eq!(s.tenant(b"a").created, 1);
        assert_eq!(s.tenant(b"b").hits, 1);
        assert_eq!(s.tenant(b"zz"), Counters::default());
        let mut names: Vec<&[u8]> = s.tenants().collect();
        names.sort();
        assert_eq!(names, [&b"a"[..], &b"b"[..]]);
    }
}
