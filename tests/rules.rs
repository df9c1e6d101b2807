//! Property tests of the rules `core` decides without a server: the
//! per-subject cap and which sessions it evicts, the index entry a value
//! leaves, and that replaying an effect gives the value it came from.

use std::borrow::Cow;

use proptest::prelude::*;
use redis_session::core::effect::{self, FieldWrite};
use redis_session::core::flatmap::FlatMap;
use redis_session::core::index::{Before, Index, Indexed};
use redis_session::core::session::{Limits, Session, Timeouts};
use redis_session::core::tenants::{oldest, Cap, OnLimit, Settings};

fn live() -> impl Strategy<Value = Vec<(Vec<u8>, i64)>> {
    prop::collection::btree_map(prop::collection::vec(b'a'..=b'e', 1..4), 0..5i64, 0..12)
        .prop_map(|m| m.into_iter().collect())
}

const T: Timeouts = Timeouts {
    idle: 1000,
    absolute: 0,
    grace: 10,
};

proptest! {
    /// Reject refuses exactly at the cap; evict-oldest revokes just enough
    /// for the new session to fit, and the ones it picks are the oldest
    /// (by creation, then key), whatever order they were listed in.
    #[test]
    fn the_cap_evicts_just_enough_of_the_oldest(
        live in live(),
        cap in 0..6i64,
        evict in any::<bool>(),
        shuffle in any::<prop::sample::Index>(),
    ) {
        let s = Settings {
            maxpersubject: Some(cap),
            onlimit: Some(if evict { OnLimit::EvictOldest } else { OnLimit::Reject }),
            ..Default::default()
        };
        let n = live.len();
        match s.cap(b"u", n) {
            Cap::Room => prop_assert!(cap == 0 || (n as i64) < cap),
            Cap::Reject(_) => prop_assert!(!evict && cap > 0 && n as i64 >= cap),
            Cap::Evict(k) => {
                prop_assert!(evict && cap > 0);
                prop_assert_eq!(n - k + 1, cap as usize, "after the create the subject is at its cap");
                let mut listed = live.clone();
                listed.rotate_left(shuffle.index(n.max(1)) % n.max(1));
                let chosen = oldest(listed, k);
                let mut sorted = live.clone();
                sorted.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
                let expect: Vec<Vec<u8>> = sorted.into_iter().take(k).map(|(key, _)| key).collect();
                prop_assert_eq!(chosen, expect);
            }
        }
        prop_assert_eq!(s.cap(b"", n), Cap::Room, "sessions without a subject are never capped");
    }

    /// A field write replayed from its effect gives the primary's value, and
    /// the index follows it from its entry before to its entry after.
    #[test]
    fn replayed_field_writes_match_and_the_index_follows(
        data in prop::collection::vec((prop::collection::vec(b'a'..=b'c', 1..3), prop::collection::vec(any::<u8>(), 0..20)), 0..6),
        unset in prop::collection::vec(prop::collection::vec(b'a'..=b'c', 1..3), 0..3),
    ) {
        let start = FlatMap::from_pairs([(&b"a"[..], &b"12"[..])]);
        let mut primary = Session::create(5, b"u", T, FlatMap::new(), start, &Limits::NONE).unwrap();
        let mut replica = primary.clone();
        let mut ix = Index::default();
        ix.follow(0, b"k", b"t", None, &primary);
        let w: FieldWrite<()> = FieldWrite {
            if_version: None,
            meta: vec![],
            unset: unset.iter().map(|u| &u[..]).collect(),
            data: data.iter().map(|(k, v)| (&k[..], &v[..])).collect(),
            rest: Cow::Borrowed(&[()]),
        };
        let before = Before::of(&primary);
        let e = effect::set(&mut primary, &w, &Limits::NONE).unwrap();
        effect::replay(&mut replica, &e).unwrap();
        prop_assert_eq!(&primary, &replica);
        ix.follow(0, b"k", b"t", before.as_ref(), &primary);
        let entry = Indexed::of(b"t", &primary).unwrap();
        prop_assert_eq!(ix.live(0, b"t").data_bytes, entry.data_bytes);
        prop_assert_eq!(ix.live(0, b"t").sessions, 1);
    }
}
