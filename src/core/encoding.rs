//! The persisted form of a session (RDB, `DUMP`, AOF rewrite, replication):
//! one MessagePack array via serde + rmp-serde, whose first element is the
//! encoding version. The two maps are carried in their packed form, so
//! encoding and decoding are a handful of copies; every length and field is
//! checked before the value is trusted.

use serde::{Deserialize, Serialize};

use super::flatmap::FlatMap;
use super::session::{Flags, Session, TIME_MAX, VERSION_MAX};

/// Encoding written today. Decoders keep reading every older version.
pub const ENCODING_VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct RecordV1<'a> {
    encoding: u8,
    #[serde(with = "serde_bytes", borrow)]
    subject: &'a [u8],
    created: i64,
    version: i64,
    last_access: i64,
    idle: i64,
    absolute_deadline: i64,
    grace: i64,
    flags: u32,
    revoked_until: i64,
    #[serde(with = "serde_bytes", borrow)]
    reason: &'a [u8],
    #[serde(with = "serde_bytes", borrow)]
    meta: &'a [u8],
    #[serde(with = "serde_bytes", borrow)]
    data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Malformed(String),
    UnknownEncoding(u8),
    Invalid(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(e) => write!(f, "malformed session value: {e}"),
            DecodeError::UnknownEncoding(v) => write!(f, "unknown session encoding version {v}"),
            DecodeError::Invalid(what) => write!(f, "invalid session value: {what}"),
        }
    }
}

pub fn encode(s: &Session) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(s, &mut out);
    out
}

/// Encodes into `out` (cleared first), so a caller encoding many values
/// (RDB save) reuses one buffer.
pub fn encode_into(s: &Session, out: &mut Vec<u8>) {
    encode_with_data(s, s.flags, &s.data, out)
}

/// Encodes `s` with `data` and `flags` in place of its own: sealing writes a
/// plaintext session out with sealed values without copying the rest.
pub fn encode_with_data(s: &Session, flags: Flags, data: &FlatMap, out: &mut Vec<u8>) {
    out.clear();
    let record = RecordV1 {
        encoding: ENCODING_VERSION,
        subject: &s.subject,
        created: s.created,
        version: s.version,
        last_access: s.last_access,
        idle: s.idle,
        absolute_deadline: s.absolute_deadline,
        grace: s.grace,
        flags: flags.bits(),
        revoked_until: s.revoked_until,
        reason: &s.reason,
        meta: s.meta.as_bytes(),
        data: data.as_bytes(),
    };
    // Serializing plain integers and byte slices into a Vec cannot fail.
    let _ = rmp_serde::encode::write(out, &record);
}

pub fn decode(buf: &[u8]) -> Result<Session, DecodeError> {
    match buf.get(1) {
        // A MessagePack array header, then the encoding version as a positive fixint.
        Some(&1) => decode_v1(buf),
        Some(&v) if v < 0x80 => Err(DecodeError::UnknownEncoding(v)),
        _ => Err(DecodeError::Malformed("no encoding version".into())),
    }
}

fn decode_v1(buf: &[u8]) -> Result<Session, DecodeError> {
    let r: RecordV1 = rmp_serde::from_slice(buf).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let times_ok = r.created >= 0
        && r.last_access >= 0
        && (1..=TIME_MAX).contains(&r.idle)
        && (0..=TIME_MAX).contains(&r.grace)
        && r.absolute_deadline >= 0
        && r.revoked_until >= 0
        && (1..=VERSION_MAX).contains(&r.version);
    if !times_ok {
        return Err(DecodeError::Invalid("time or version out of range"));
    }
    let flags = Flags::from_bits(r.flags).ok_or(DecodeError::Invalid("unknown flags"))?;
    let meta = FlatMap::from_encoded(r.meta).map_err(|_| DecodeError::Invalid("meta map"))?;
    let data = FlatMap::from_encoded(r.data).map_err(|_| DecodeError::Invalid("data map"))?;
    Ok(Session {
        subject: r.subject.into(),
        created: r.created,
        version: r.version,
        last_access: r.last_access,
        idle: r.idle,
        absolute_deadline: r.absolute_deadline,
        grace: r.grace,
        flags,
        revoked_until: r.revoked_until,
        reason: r.reason.into(),
        meta,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::{Limits, Timeouts};

    fn sample() -> Session {
        let limits = Limits {
            max_data_bytes: 1000,
            max_fields: 10,
            max_meta: 10,
        };
        let t = Timeouts {
            idle: 1000,
            absolute: 0,
            grace: 5,
        };
        let meta = FlatMap::from_pairs([(&b"ua"[..], &b"Mozilla"[..])]);
        let data = FlatMap::from_pairs([(&b"cart"[..], &b"[1,2]"[..]), (b"x", b"")]);
        Session::create(42, b"u1", t, meta, data, &limits).unwrap()
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
        let mut r = sample();
        r.revoke(50, b"admin", 10);
        assert_eq!(decode(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn refuses_unknown_versions_and_garbage() {
        let mut b = encode(&sample());
        b[1] = 9;
        assert_eq!(decode(&b), Err(DecodeError::UnknownEncoding(9)));
        assert!(decode(b"").is_err());
        assert!(decode(&[0x9d]).is_err());
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "prefix {cut} accepted");
        }
    }
}
