//! Sealing data values at rest with XChaCha20-Poly1305 (README, *Sealed data at rest*).
//!
//! A sealed value is `2 | id_len | id | nonce(24) | ciphertext+tag`. The
//! associated data binds the session's key name (which holds its tenant and
//! sid) and the field name, each length-prefixed, so a value moved to
//! another field, session or tenant fails to open. Binding the whole name
//! rather than the parts the configured prefix yields keeps a value
//! openable whatever `key-prefix` says when it is loaded. Key bytes live only in
//! the ciphers, which wipe them on drop; nothing here formats them.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::flatmap::{put_varint, FlatMap};

/// Format 1 (before this one) bound tenant and sid with one-byte lengths,
/// which two long names outside the key grammar could share; it is refused.
const FORMAT: u8 = 2;
const NONCE_LEN: usize = 24;
pub const ID_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The value names a key id the keyring does not hold.
    UnknownKey(String),
    /// Tampered, truncated, or moved from another field/session/tenant.
    Authentication,
    /// A sealed session on a server started without a key file.
    NoKeyring,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::UnknownKey(id) => {
                write!(f, "data sealed under key '{id}', which is not in the key file")
            }
            SealError::Authentication => write!(f, "sealed data failed authentication"),
            SealError::NoKeyring => write!(f, "data is sealed and no key file is loaded"),
        }
    }
}

pub struct Keyring {
    /// The first key is the active one.
    keys: Vec<(Vec<u8>, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const AD_LABEL: &[u8] = b"redis-session seal v2\0";

/// The associated data of one value: a label, then the key name and the
/// field, each with its length (a varint), so no two (name, field) pairs
/// share it.
fn associated_data(name: &[u8], field: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + 10 + name.len() + field.len());
    ad.extend_from_slice(AD_LABEL);
    put_varint(&mut ad, name.len());
    ad.extend_from_slice(name);
    put_varint(&mut ad, field.len());
    ad.extend_from_slice(field);
    ad
}

/// The key id a sealed value names, if it is one.
pub fn key_id(sealed: &[u8]) -> Option<&[u8]> {
    let (&format, rest) = sealed.split_first()?;
    let (&n, rest) = rest.split_first()?;
    if format != FORMAT || n == 0 {
        return None;
    }
    rest.get(..n as usize)
}

impl Keyring {
    /// Parses a key file: one `id:64-hex-chars` per line, the first active.
    /// Blank lines and lines starting with `#` are skipped. Errors name the
    /// line, never its key bytes.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut keys: Vec<(Vec<u8>, XChaCha20Poly1305)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((id, hexkey)) = line.split_once(':') else {
                return Err(format!("line {}: expected id:64-hex-chars", n + 1));
            };
            if !valid_id(id) {
                return Err(format!(
                    "line {}: key id must be 1-{ID_MAX} of A-Z a-z 0-9 _ -",
                    n + 1
                ));
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            if hexkey.len() != 64 || hex::decode_to_slice(hexkey, &mut bytes[..]).is_err() {
                return Err(format!("line {}: key must be 64 hex characters", n + 1));
            }
            if keys.iter().any(|(k, _)| k == id.as_bytes()) {
                return Err(format!("line {}: duplicate key id '{id}'", n + 1));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes[..])
                .map_err(|_| format!("line {}: bad key", n + 1))?;
            keys.push((id.as_bytes().to_vec(), cipher));
        }
        if keys.is_empty() {
            return Err("the key file holds no key".into());
        }
        Ok(Keyring { keys })
    }

    pub fn active_id(&self) -> &[u8] {
        self.keys.first().map(|(id, _)| &id[..]).unwrap_or_default()
    }

    pub fn ids(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|(id, _)| &id[..])
    }

    /// Seals `plain` as field `field` of the session at key `name`.
    pub fn seal(&self, name: &[u8], field: &[u8], plain: &[u8]) -> Vec<u8> {
        let Some((id, cipher)) = self.keys.first() else {
            return plain.to_vec();
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ad = associated_data(name, field);
        let ct = cipher
            .encrypt(&nonce, Payload { msg: plain, aad: &ad })
            .unwrap_or_default();
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + ct.len());
        out.push(FORMAT);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, name: &[u8], field: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let id = key_id(sealed).ok_or(SealError::Authentication)?;
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, c)| c)
            .ok_or_else(|| SealError::UnknownKey(String::from_utf8_lossy(id).into_owned()))?;
        let body = &sealed[2 + id.len()..];
        if body.len() < NONCE_LEN + 16 {
            return Err(SealError::Authentication);
        }
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let ad = associated_data(name, field);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
            .map_err(|_| SealError::Authentication)
    }

    /// Seals every value of `map` under the active key.
    pub fn seal_map(&self, name: &[u8], map: &FlatMap) -> FlatMap {
        let sealed: Vec<(&[u8], Vec<u8>)> = map.iter().map(|(k, v)| (k, self.seal(name, k, v))).collect();
        FlatMap::from_pairs(sealed.iter().map(|(k, v)| (*k, &v[..])))
    }
}

/// Opens every value of a sealed map.
pub fn open_map(ring: Option<&Keyring>, name: &[u8], map: &FlatMap) -> Result<FlatMap, SealError> {
    let ring = ring.ok_or(SealError::NoKeyring)?;
    let opened = map
        .iter()
        .map(|(k, v)| ring.open(name, k, v).map(|p| (k, p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FlatMap::from_pairs(opened.iter().map(|(k, v)| (*k, &v[..]))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "k2:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n# old\nk1:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n";

    #[test]
    fn seals_and_opens_with_binding() {
        let ring = Keyring::parse(FILE).unwrap();
        assert_eq!(ring.active_id(), b"k2");
        let s = ring.seal(b"sess:acme:sid1", b"cart", b"secret");
        assert_eq!(key_id(&s), Some(&b"k2"[..]));
        assert!(!s.windows(6).any(|w| w == b"secret"));
        assert_eq!(ring.open(b"sess:acme:sid1", b"cart", &s).unwrap(), b"secret");
        assert_eq!(
            ring.open(b"sess:acme:sid1", b"other", &s),
            Err(SealError::Authentication)
        );
        assert_eq!(
            ring.open(b"sess:acme:sid2", b"cart", &s),
            Err(SealError::Authentication)
        );
        assert_eq!(
            ring.open(b"sess:evil:sid1", b"cart", &s),
            Err(SealError::Authentication)
        );
        let mut t = s.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(
            ring.open(b"sess:acme:sid1", b"cart", &t),
            Err(SealError::Authentication)
        );
        assert_ne!(
            ring.seal(b"sess:acme:sid1", b"cart", b"secret"),
            s,
            "nonces are fresh"
        );
    }

    /// The field and the name are each length-prefixed: moving bytes from
    /// the end of a (long) name to the front of the field changes the AD.
    #[test]
    fn binding_is_unambiguous() {
        let ring = Keyring::parse(FILE).unwrap();
        let long = vec![b'n'; 300];
        let s = ring.seal(&long, b"xf", b"v");
        let mut shorter = long.clone();
        shorter.truncate(256);
        let field = [&long[256..], &b"xf"[..]].concat();
        assert_eq!(ring.open(&shorter, &field, &s), Err(SealError::Authentication));
        assert_eq!(ring.open(&long, b"xf", &s).unwrap(), b"v");
        // a value naming an empty key id is not a sealed value
        let mut t = s.clone();
        t[1] = 0;
        assert_eq!(key_id(&t), None);
        // format 1 is refused
        let mut f1 = s.clone();
        f1[0] = 1;
        assert_eq!(ring.open(&long, b"xf", &f1), Err(SealError::Authentication));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old =
            Keyring::parse("k1:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100").unwrap();
        let s = old.seal(b"t:s", b"f", b"v");
        let ring = Keyring::parse(FILE).unwrap();
        assert_eq!(ring.open(b"t:s", b"f", &s).unwrap(), b"v");
        let only_new = Keyring::parse(FILE.lines().next().unwrap()).unwrap();
        assert_eq!(
            only_new.open(b"t:s", b"f", &s),
            Err(SealError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn refuses_bad_files_without_echoing_keys() {
        for bad in [
            "",
            "k1",
            "k1:abc",
            "bad id:00",
            &format!("k1:{}\nk1:{}", "0".repeat(64), "1".repeat(64)),
        ] {
            let e = Keyring::parse(bad).unwrap_err();
            assert!(!e.contains("0000"), "{e}");
        }
        let e = Keyring::parse(&format!("k1:{}zz", "a".repeat(62))).unwrap_err();
        assert!(!e.contains("aaaa"));
    }

    #[test]
    fn maps_round_trip() {
        let ring = Keyring::parse(FILE).unwrap();
        let m = FlatMap::from_pairs([(&b"a"[..], &b"1"[..]), (b"b", b"")]);
        let sealed = ring.seal_map(b"t:s", &m);
        assert_eq!(open_map(Some(&ring), b"t:s", &sealed).unwrap(), m);
        assert_eq!(open_map(None, b"t:s", &sealed), Err(SealError::NoKeyring));
    }
}
