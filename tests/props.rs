//! Property tests of the session logic and its encoding, no server needed.

use std::collections::BTreeMap;

use proptest::prelude::*;
use redis_session::core::encoding;
use redis_session::core::flatmap::FlatMap;
use redis_session::core::session::{Limits, Session, State, Timeouts, TIME_MAX};

const BIG: Limits = Limits {
    max_data_bytes: usize::MAX,
    max_fields: usize::MAX,
    max_meta: usize::MAX,
};

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..12)
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', 0u8, 0xff]), 0..3)
}

fn pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    prop::collection::vec((bytes(), bytes()), 0..8)
}

fn timeouts() -> impl Strategy<Value = Timeouts> {
    (
        1..100_000i64,
        prop_oneof![Just(0i64), 1..1_000_000i64],
        0..100_000i64,
    )
        .prop_map(|(idle, absolute, grace)| Timeouts {
            idle,
            absolute,
            grace,
        })
}

fn fm(p: &[(Vec<u8>, Vec<u8>)]) -> FlatMap {
    FlatMap::from_pairs(p.iter().map(|(k, v)| (&k[..], &v[..])))
}

fn session() -> impl Strategy<Value = Session> {
    (0..TIME_MAX, bytes(), timeouts(), pairs(), pairs())
        .prop_map(|(now, subj, t, m, d)| Session::create(now, &subj, t, fm(&m), fm(&d), &BIG).unwrap())
}

proptest! {
    /// The state at any instant is exactly the README's definition (*Expiry*).
    #[test]
    fn state_matches_the_spec(s in session(), dt in -10i64..2_000_000) {
        let now = s.created + dt;
        let idle_deadline = s.last_access + s.idle;
        let abs = if s.absolute_deadline > 0 { s.absolute_deadline } else { i64::MAX };
        let expected = if now < idle_deadline && now < abs {
            State::Active
        } else if idle_deadline <= now && now < idle_deadline + s.grace && now < abs {
            State::Grace
        } else {
            State::Expired
        };
        prop_assert_eq!(s.state(now), expected);
        // The key's own expiry is the end of the last state.
        prop_assert_eq!(s.state(s.end_of_life()), State::Expired);
        if s.end_of_life() > s.created {
            prop_assert!(s.state(s.end_of_life() - 1).is_live());
        }
    }

    /// No sequence of renewals keeps a session alive past its absolute deadline,
    /// and plain renewals never change the version.
    #[test]
    fn renewals_never_pass_the_absolute_deadline(
        mut s in session(),
        steps in prop::collection::vec((0..50_000i64, prop::option::of(1..100_000i64)), 1..20),
        resolution in 0..5_000i64,
    ) {
        let mut now = s.created;
        let mut version = s.version;
        for (dt, idle) in steps {
            now += dt;
            if !s.state(now).is_live() { break; }
            let before = s.clone();
            let r = s.renew(now, idle, resolution);
            if idle.is_some() { version += 1; }
            prop_assert_eq!(s.version, version);
            if !r.applied { prop_assert_eq!(&s, &before); }
            if s.absolute_deadline > 0 {
                prop_assert!(s.end_of_life() <= s.absolute_deadline);
                prop_assert!(now + s.ms_to_idle_deadline(now) <= s.absolute_deadline);
            }
            prop_assert_eq!(s.state(now), State::Active);
        }
    }

    /// SET merges fields like a map; CAS replaces; both bump the version by one
    /// and a version mismatch changes nothing.
    #[test]
    fn set_and_cas_follow_a_map_model(
        mut s in session(),
        ops in prop::collection::vec((pairs(), prop::collection::vec(bytes(), 0..3), any::<bool>(), any::<bool>()), 1..10),
    ) {
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = s.data.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        for (set, unset, use_cas, stale) in ops {
            let v = s.version;
            let asked = if stale { v + 1 } else { v };
            let before = s.clone();
            let result = if use_cas {
                s.cas(asked, fm(&set), &BIG)
            } else {
                let set_refs: Vec<(&[u8], &[u8])> = set.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                let unset_refs: Vec<&[u8]> = unset.iter().map(|k| &k[..]).collect();
                s.set(Some(asked), &[], &unset_refs, &set_refs, &BIG)
            };
            if stale {
                prop_assert!(result.is_err());
                prop_assert_eq!(&s, &before);
                continue;
            }
            prop_assert_eq!(result, Ok(v + 1));
            if use_cas {
                model = set.into_iter().collect();
            } else {
                for k in unset { model.remove(&k); }
                model.extend(set);
            }
            let got: BTreeMap<Vec<u8>, Vec<u8>> = s.data.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(&got, &model);
        }
    }

    /// The packed map against a BTreeMap model, with keys from a tiny
    /// alphabet so sets, unsets and repeats collide: later pairs win, a key
    /// both set and unset is set, and count, payload and the encoded form
    /// agree with a map decoded from the same bytes.
    #[test]
    fn flatmap_merge_follows_a_map_model(
        base in prop::collection::vec((small_key(), bytes()), 0..8),
        set in prop::collection::vec((small_key(), bytes()), 0..6),
        unset in prop::collection::vec(small_key(), 0..4),
    ) {
        let m = fm(&base);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = base.iter().cloned().collect();
        let check = |m: &FlatMap, model: &BTreeMap<Vec<u8>, Vec<u8>>| -> Result<(), TestCaseError> {
            let got: Vec<(Vec<u8>, Vec<u8>)> = m.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(m.len(), model.len());
            prop_assert_eq!(m.payload_bytes(), model.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
            let decoded = FlatMap::from_encoded(m.as_bytes());
            prop_assert_eq!(decoded.as_ref(), Ok(m));
            Ok(())
        };
        check(&m, &model)?;
        let set_refs: Vec<(&[u8], &[u8])> = set.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let unset_refs: Vec<&[u8]> = unset.iter().map(|k| &k[..]).collect();
        let merged = m.merged(&set_refs, &unset_refs);
        for k in &unset { model.remove(k); }
        model.extend(set.iter().cloned());
        check(&merged, &model)?;
    }

    /// Every value round-trips through the persisted encoding.
    #[test]
    fn encoding_round_trips(mut s in session(), revoke in any::<bool>(), reason in bytes()) {
        if revoke { s.revoke(s.created + 1, &reason, 1000); }
        prop_assert_eq!(encoding::decode(&encoding::encode(&s)), Ok(s));
    }

    /// The decoder never panics on arbitrary bytes, nor on mutations of a valid value;
    /// whatever it accepts re-encodes to a value it accepts again.
    #[test]
    fn decoder_survives_garbage(junk in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(s) = encoding::decode(&junk) {
            prop_assert_eq!(encoding::decode(&encoding::encode(&s)), Ok(s));
        }
    }

    #[test]
    fn decoder_survives_mutations(s in session(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let mut buf = encoding::encode(&s);
        for (i, b) in flips { let n = buf.len(); buf[i.index(n)] = b; }
        let n = buf.len();
        buf.truncate(cut.index(n + 1).max(1));
        if let Ok(s2) = encoding::decode(&buf) {
            prop_assert_eq!(encoding::decode(&encoding::encode(&s2)), Ok(s2));
        }
    }
}
