//! The PACKED reply's test vectors (`tests/vectors/packed.json`, written by
//! an independent MessagePack encoder): the module's encoder must produce
//! exactly their bytes.

use redis_session::core::flatmap::FlatMap;
use redis_session::core::packed::Writer;
use redis_session::core::session::{Flags, Session};
use serde_json::Value;

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn pairs(v: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    v.as_array()
        .expect("pairs")
        .iter()
        .map(|p| (hex_of(&p[0]), hex_of(&p[1])))
        .collect()
}

fn flat(v: &Value) -> FlatMap {
    let p = pairs(v);
    FlatMap::from_pairs(p.iter().map(|(k, v)| (&k[..], &v[..])))
}

fn int(v: &Value) -> i64 {
    v.as_i64().expect("integer")
}

#[test]
fn packed_vectors() {
    let text = include_str!("vectors/packed.json");
    let doc: Value = serde_json::from_str(text).expect("valid JSON");
    assert_eq!(doc["layout"], 1);
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let s = &c["session"];
        let session = Session {
            subject: hex_of(&s["subject"]).into(),
            created: int(&s["created"]),
            version: int(&s["version"]),
            last_access: int(&s["last_access"]),
            idle: int(&s["idle"]),
            absolute_deadline: int(&s["absolute_deadline"]),
            grace: int(&s["grace"]),
            flags: Flags::empty(),
            revoked_until: 0,
            reason: Box::default(),
            meta: flat(&s["meta"]),
            data: flat(&s["data"]),
        };
        let now = int(&c["now"]);
        let read = &c["read"];
        let mut w = Writer::new();
        let state = session.state(now);
        if read["nodata"].as_bool().expect("nodata") {
            w.session(&session, state, None::<(usize, std::iter::Empty<_>)>);
        } else if read["fields"].is_null() {
            w.session(&session, state, Some((session.data.len(), session.data.iter())));
        } else {
            // FIELDS: the fields the session has, once each, in the order asked.
            let asked: Vec<Vec<u8>> = read["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .map(hex_of)
                .collect();
            let mut picked: Vec<(&[u8], &[u8])> = Vec::new();
            for f in &asked {
                if let Some(v) = session.data.get(f) {
                    if !picked.iter().any(|(k, _)| *k == &f[..]) {
                        picked.push((f, v));
                    }
                }
            }
            w.session(&session, state, Some((picked.len(), picked.into_iter())));
        }
        assert_eq!(
            hex::encode(w.bytes()),
            c["packed_hex"].as_str().expect("packed_hex"),
            "vector {name}"
        );
    }
}
