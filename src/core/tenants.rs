//! Per-tenant settings (`SESSION.TENANT`) and their persisted form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::session::{Limits, Timeouts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OnLimit {
    #[default]
    Reject,
    EvictOldest,
}

impl OnLimit {
    pub fn name(self) -> &'static str {
        match self {
            OnLimit::Reject => "reject",
            OnLimit::EvictOldest => "evict-oldest",
        }
    }

    pub fn parse(s: &[u8]) -> Option<OnLimit> {
        if s.eq_ignore_ascii_case(b"reject") {
            Some(OnLimit::Reject)
        } else if s.eq_ignore_ascii_case(b"evict-oldest") {
            Some(OnLimit::EvictOldest)
        } else {
            None
        }
    }
}

/// A tenant's settings; `None` falls back to the module default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Settings {
    pub idle: Option<i64>,
    pub absolute: Option<i64>,
    pub grace: Option<i64>,
    pub maxdata: Option<i64>,
    /// 0 = no cap.
    pub maxpersubject: Option<i64>,
    pub onlimit: Option<OnLimit>,
}

impl Settings {
    /// `other`'s given values written over these.
    pub fn merged(&self, other: &Settings) -> Settings {
        Settings {
            idle: other.idle.or(self.idle),
            absolute: other.absolute.or(self.absolute),
            grace: other.grace.or(self.grace),
            maxdata: other.maxdata.or(self.maxdata),
            maxpersubject: other.maxpersubject.or(self.maxpersubject),
            onlimit: other.onlimit.or(self.onlimit),
        }
    }

    pub fn timeouts(&self, defaults: Timeouts) -> Timeouts {
        Timeouts {
            idle: self.idle.unwrap_or(defaults.idle),
            absolute: self.absolute.unwrap_or(defaults.absolute),
            grace: self.grace.unwrap_or(defaults.grace),
        }
    }

    pub fn limits(&self, defaults: Limits) -> Limits {
        Limits {
            max_data_bytes: self.maxdata.map_or(defaults.max_data_bytes, |v| v as usize),
            ..defaults
        }
    }
}

/// What a new session of a subject meets under the tenant's cap on
/// sessions per subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cap {
    /// Under the cap, or no cap (or no subject).
    Room,
    /// `ONLIMIT reject`: the create is refused with this message.
    Reject(String),
    /// `ONLIMIT evict-oldest`: revoke this many of the subject's oldest.
    Evict(usize),
}

impl Settings {
    /// The cap's verdict for a subject that has `live` live sessions.
    pub fn cap(&self, subject: &[u8], live: usize) -> Cap {
        let cap = self.maxpersubject.unwrap_or(0).max(0) as usize;
        if cap == 0 || subject.is_empty() || live < cap {
            return Cap::Room;
        }
        match self.onlimit.unwrap_or_default() {
            OnLimit::Reject => Cap::Reject(format!("subject has {live} sessions, tenant allows {cap}")),
            OnLimit::EvictOldest => Cap::Evict(live + 1 - cap),
        }
    }
}

/// The `n` oldest of a subject's sessions, given as (key, created): by
/// creation time, then by key, so every server picks the same ones.
pub fn oldest(mut live: Vec<(Vec<u8>, i64)>, n: usize) -> Vec<Vec<u8>> {
    live.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    live.into_iter().take(n).map(|(key, _)| key).collect()
}

/// Every tenant's settings, in name order.
pub type Table = BTreeMap<Vec<u8>, Settings>;

/// Version of the persisted table (RDB aux data).
pub const TABLE_ENCODING: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Persisted {
    encoding: u8,
    tenants: Vec<(serde_bytes::ByteBuf, Settings)>,
}

pub fn encode(table: &Table) -> Vec<u8> {
    let p = Persisted {
        encoding: TABLE_ENCODING,
        tenants: table
            .iter()
            .map(|(k, v)| (serde_bytes::ByteBuf::from(k.clone()), *v))
            .collect(),
    };
    rmp_serde::to_vec(&p).unwrap_or_default()
}

pub fn decode(buf: &[u8]) -> Result<Table, String> {
    let p: Persisted = rmp_serde::from_slice(buf).map_err(|e| e.to_string())?;
    if p.encoding != TABLE_ENCODING {
        return Err(format!("unknown tenant table encoding {}", p.encoding));
    }
    Ok(p.tenants.into_iter().map(|(k, v)| (k.into_vec(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_and_eviction_choice() {
        let capped = |onlimit| Settings {
            maxpersubject: Some(2),
            onlimit,
            ..Default::default()
        };
        assert_eq!(Settings::default().cap(b"u", 1000), Cap::Room);
        assert_eq!(capped(None).cap(b"", 1000), Cap::Room, "no subject, no cap");
        assert_eq!(capped(None).cap(b"u", 1), Cap::Room);
        assert_eq!(
            capped(None).cap(b"u", 2),
            Cap::Reject("subject has 2 sessions, tenant allows 2".into())
        );
        assert_eq!(capped(Some(OnLimit::EvictOldest)).cap(b"u", 2), Cap::Evict(1));
        assert_eq!(capped(Some(OnLimit::EvictOldest)).cap(b"u", 5), Cap::Evict(4));
        let live = vec![(b"k3".to_vec(), 5), (b"k1".to_vec(), 7), (b"k2".to_vec(), 5)];
        assert_eq!(oldest(live.clone(), 2), vec![b"k2".to_vec(), b"k3".to_vec()]);
        assert_eq!(oldest(live, 9).len(), 3);
    }

    #[test]
    fn merge_and_round_trip() {
        let a = Settings {
            idle: Some(5),
            maxpersubject: Some(2),
            ..Default::default()
        };
        let b = Settings {
            idle: Some(7),
            onlimit: Some(OnLimit::EvictOldest),
            ..Default::default()
        };
        let m = a.merged(&b);
        assert_eq!(m.idle, Some(7));
        assert_eq!(m.maxpersubject, Some(2));
        assert_eq!(m.onlimit, Some(OnLimit::EvictOldest));
        let mut t = Table::new();
        t.insert(b"acme".to_vec(), m);
        assert_eq!(decode(&encode(&t)), Ok(t));
        assert!(decode(b"\x92\x09\x90").is_err());
        assert!(decode(b"garbage").is_err());
    }
}
