//! The key grammar: `<prefix><tenant>:<sid>` (README, *Keys and tenants*).

pub const TENANT_MAX: usize = 64;
pub const SID_MIN: usize = 16;
pub const SID_MAX: usize = 128;

/// A session key split into its identity parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey<'a> {
    pub tenant: &'a [u8],
    pub sid: &'a [u8],
}

fn url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Whether `tenant` is a valid tenant name (1–64 of `A-Z a-z 0-9 _ -`).
pub fn valid_tenant(tenant: &[u8]) -> bool {
    (1..=TENANT_MAX).contains(&tenant.len()) && tenant.iter().all(|&b| url_safe(b))
}

/// Splits `key` into tenant and sid, or `None` when it is not a session key
/// under `prefix`.
pub fn parse<'a>(key: &'a [u8], prefix: &[u8]) -> Option<SessionKey<'a>> {
    let rest = key.strip_prefix(prefix)?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let (tenant, sid) = (&rest[..colon], &rest[colon + 1..]);
    let sid_ok = (SID_MIN..=SID_MAX).contains(&sid.len()) && sid.iter().all(|&b| url_safe(b));
    (valid_tenant(tenant) && sid_ok).then_some(SessionKey { tenant, sid })
}

/// The key of a session, for building keys from a tenant and sid.
pub fn build(prefix: &[u8], tenant: &[u8], sid: &[u8]) -> Vec<u8> {
    [prefix, tenant, b":", sid].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &[u8] = b"abcdefghijklmnop";

    #[test]
    fn accepts_well_formed_keys() {
        let k = build(b"sess:", b"acme", SID);
        assert_eq!(
            parse(&k, b"sess:"),
            Some(SessionKey {
                tenant: b"acme",
                sid: SID
            })
        );
        assert!(parse(b"sess:a-b_C9:AAAAAAAAAAAAAAAA_-", b"sess:").is_some());
        assert!(parse(b"x:t:AAAAAAAAAAAAAAAA", b"x:").is_some());
        assert!(parse(b"t:AAAAAAAAAAAAAAAA", b"").is_some());
    }

    #[test]
    fn refuses_malformed_keys() {
        for bad in [
            &b"sess:acme:short"[..],
            b"sess::AAAAAAAAAAAAAAAA",
            b"other:acme:AAAAAAAAAAAAAAAA",
            b"sess:acme",
            b"sess:ac me:AAAAAAAAAAAAAAAA",
            b"sess:acme:AAAAAAAAAAAAAAAA:x",
            b"sess:acme:AAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(parse(bad, b"sess:"), None, "{}", String::from_utf8_lossy(bad));
        }
        let long_tenant = build(b"sess:", &[b'a'; 65], SID);
        assert_eq!(parse(&long_tenant, b"sess:"), None);
        let long_sid = build(b"sess:", b"t", &[b'a'; 129]);
        assert_eq!(parse(&long_sid, b"sess:"), None);
        let max_sid = build(b"sess:", &[b'a'; 64], &[b'a'; 128]);
        assert!(parse(&max_sid, b"sess:").is_some());
    }
}
