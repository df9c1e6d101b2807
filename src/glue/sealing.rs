//! Sealing at rest in the command path: the key file, and opening and
//! re-sealing a session's data around reads and writes (SPEC §7).

use std::borrow::Cow;
use std::os::unix::fs::PermissionsExt;

use zeroize::Zeroizing;

use super::guard::CmdError;
use super::state;
use crate::core::flatmap::FlatMap;
use crate::core::keys::SessionKey;
use crate::core::seal::{open_map, Keyring};
use crate::core::session::{Flags, Session};

/// Reads and checks a key file: it must exist, be readable by its owner
/// only (mode 0600 or 0400), and hold `id:64-hex` lines.
pub fn load_keyfile(path: &str) -> Result<Keyring, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read key file {path}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o177 != 0 {
        return Err(format!(
            "key file {path} has mode {mode:04o}; it must be 0600 or 0400"
        ));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("cannot read key file {path}: {e}"))?,
    );
    Keyring::parse(&text).map_err(|e| format!("key file {path}: {e}"))
}

/// The session's data in plaintext: borrowed when not sealed.
pub fn open_data<'a>(s: &'a Session, k: &SessionKey) -> Result<Cow<'a, FlatMap>, CmdError> {
    if !s.flags.contains(Flags::SEALED) {
        return Ok(Cow::Borrowed(&s.data));
    }
    state::with(|st| open_map(st.keyring.as_ref(), k.tenant, k.sid, &s.data))
        .map(Cow::Owned)
        .map_err(|e| CmdError::Sealed(e.to_string()))
}

/// Puts plaintext data in place for a write; returns the stored form to
/// put back if the write is refused.
pub fn unseal_for_write(s: &mut Session, k: &SessionKey) -> Result<Option<FlatMap>, CmdError> {
    if !s.flags.contains(Flags::SEALED) {
        return Ok(None);
    }
    let plain = open_data(s, k)?.into_owned();
    Ok(Some(std::mem::replace(&mut s.data, plain)))
}

/// After a write (or creation): seals the data under the active key when a
/// key file is loaded, so older keys' values are re-sealed as they are written.
pub fn seal_after_write(s: &mut Session, k: &SessionKey) {
    state::with(|st| match &st.keyring {
        Some(ring) if !s.data.is_empty() => {
            s.data = ring.seal_map(k.tenant, k.sid, &s.data);
            s.flags |= Flags::SEALED;
        }
        _ => s.flags -= Flags::SEALED,
    });
}
