//! The `PACKED` reply of `SESSION.GET`: the whole session map as one
//! MessagePack value, written into one buffer (layout v1, README "Packed
//! replies"; pinned by `tests/vectors/packed.json`).
//!
//! A map with string keys in this order: `v` (1), `subject` (bin),
//! `created`, `version`, `state` (str), `last_access`, `idle_deadline`,
//! `absolute_deadline` (-1: none), `grace_until`, `meta` (map bin -> bin),
//! then `data` (map bin -> bin) unless the read asked for no data. Integers
//! take their smallest MessagePack form.

use std::convert::Infallible;

use rmp::encode::{self, ByteBuf, ValueWriteError};

use super::session::{Session, State};

/// The layout's version, the value of the `v` entry.
pub const VERSION: i64 = 1;

/// Writing into a `ByteBuf` cannot fail (its error type is `Infallible`);
/// this drops the impossible error without an `unwrap`.
#[inline]
fn done<T>(r: Result<T, ValueWriteError<Infallible>>) {
    if let Err(e) = r {
        match e {
            ValueWriteError::InvalidMarkerWrite(never) | ValueWriteError::InvalidDataWrite(never) => {
                match never {}
            }
        }
    }
}

/// One buffer that the encoder appends to.
pub struct Writer {
    buf: ByteBuf,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        Writer { buf: ByteBuf::new() }
    }

    /// Starts a new reply, keeping the allocation of the last one unless it
    /// grew past `keep` bytes.
    pub fn reset(&mut self, keep: usize) {
        let v = self.buf.as_mut_vec();
        v.clear();
        if v.capacity() > keep {
            v.shrink_to(keep);
        }
    }

    pub fn bytes(&self) -> &[u8] {
        self.buf.as_slice()
    }

    pub fn reserve(&mut self, n: usize) {
        self.buf.as_mut_vec().reserve(n);
    }

    fn key(&mut self, name: &str) {
        done(encode::write_str(&mut self.buf, name));
    }

    fn int(&mut self, name: &str, v: i64) {
        self.key(name);
        done(encode::write_sint(&mut self.buf, v));
    }

    fn bin(&mut self, v: &[u8]) {
        done(encode::write_bin(&mut self.buf, v));
    }

    fn map_len(&mut self, n: usize) {
        done(encode::write_map_len(
            &mut self.buf,
            n.min(u32::MAX as usize) as u32,
        ));
    }

    /// A map of binary names to binary values, `n` entries long.
    fn pairs<'a>(&mut self, n: usize, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        self.map_len(n);
        for (k, v) in pairs {
            self.bin(k);
            self.bin(v);
        }
    }

    /// Bytes a packed session needs at most, besides its data: a hint for
    /// one allocation.
    pub fn size_hint(s: &Session) -> usize {
        // Ten keys and header values take < 160 bytes; each bin adds up to 5.
        160 + s.subject.len() + s.meta.payload_bytes() + 10 * s.meta.len()
    }

    /// Appends the whole packed session. `data` is `None` for `NODATA`,
    /// otherwise the number of entries and the entries to write.
    pub fn session<'a>(
        &mut self,
        s: &Session,
        state: State,
        data: Option<(usize, impl Iterator<Item = (&'a [u8], &'a [u8])>)>,
    ) {
        self.map_len(if data.is_some() { 11 } else { 10 });
        self.int("v", VERSION);
        self.key("subject");
        self.bin(&s.subject);
        self.int("created", s.created);
        self.int("version", s.version);
        self.key("state");
        done(encode::write_str(&mut self.buf, state_name(state)));
        self.int("last_access", s.last_access);
        self.int("idle_deadline", s.idle_deadline());
        self.int(
            "absolute_deadline",
            if s.absolute_deadline > 0 {
                s.absolute_deadline
            } else {
                -1
            },
        );
        self.int("grace_until", s.grace_until());
        self.key("meta");
        self.pairs(s.meta.len(), s.meta.iter());
        if let Some((n, pairs)) = data {
            self.key("data");
            self.pairs(n, pairs);
        }
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Active => "active",
        State::Grace => "grace",
        State::Revoked => "revoked",
        State::Expired => "expired",
    }
}

/// The packed session with all its data, as a new vector (tests, tools).
pub fn encode_all(s: &Session, now: i64) -> Vec<u8> {
    let mut w = Writer::new();
    w.session(s, s.state(now), Some((s.data.len(), s.data.iter())));
    w.buf.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flatmap::FlatMap;
    use crate::core::session::{Limits, Timeouts};

    #[test]
    fn smallest_integers_and_key_order() {
        let lim = Limits {
            max_data_bytes: 1000,
            max_fields: 10,
            max_meta: 10,
        };
        let t = Timeouts {
            idle: 1000,
            absolute: 0,
            grace: 0,
        };
        let s = Session::create(
            5,
            b"u",
            t,
            FlatMap::new(),
            FlatMap::from_pairs([(&b"a"[..], &b"1"[..])]),
            &lim,
        )
        .unwrap();
        let b = encode_all(&s, 5);
        // fixmap 11, fixstr "v", positive fixint 1
        assert_eq!(&b[..4], &[0x8b, 0xa1, b'v', 0x01]);
        // "subject" then bin8 of length 1
        assert_eq!(&b[4..12], b"\xa7subject");
        assert_eq!(&b[12..15], &[0xc4, 0x01, b'u']);
        // absolute_deadline -1 is a negative fixint
        let at = b.windows(18).position(|w| w == b"\xb1absolute_deadline").unwrap();
        assert_eq!(b.get(at + 18), Some(&0xff));
        assert!(b.ends_with(b"\xa4data\x81\xc4\x01a\xc4\x011"));
    }
}
