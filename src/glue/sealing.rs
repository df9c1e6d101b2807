//! Sealing at rest (README, *Sealed data at rest*): the key file, and the two edges where data
//! crosses the process boundary. Sessions are held in plaintext in memory
//! (the key lives with the server, so sealing memory would protect nothing
//! the key does not also expose); what leaves the process is sealed on its
//! way out (RDB, AOF rewrite, propagation, `DUMP`) and what arrives sealed is
//! opened once on its way in.

use std::borrow::Cow;
use std::os::unix::fs::PermissionsExt;

use zeroize::Zeroizing;

use super::guard::CmdError;
use super::state;
use crate::core::encoding;
use crate::core::flatmap::FlatMap;
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

/// A session that arrived sealed (RDB load, RESTORE, MIGRATE, APPLY from the
/// primary or the AOF) is opened once, here, and held in plaintext from then
/// on. One that cannot be opened (no key file, unknown key id, failed
/// authentication) stays sealed: reads and writes answer `SEALED`, and it is
/// written out again byte for byte.
pub fn open_on_arrival(s: &mut Session, name: &[u8]) {
    if !s.flags.contains(Flags::SEALED) {
        return;
    }
    if s.data.is_empty() {
        s.flags -= Flags::SEALED;
        return;
    }
    let opened = state::with(|st| open_map(st.keyring.as_ref(), name, &s.data));
    if let Ok(plain) = opened {
        s.data = plain;
        s.flags -= Flags::SEALED;
    }
}

thread_local! {
    /// One encoding buffer reused by every value written out (RDB save,
    /// AOF rewrite, propagation).
    static OUT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether values leave this server sealed (a key file is loaded): then
/// every effect carries the whole sealed value, never plaintext fields.
pub fn seals_outgoing() -> bool {
    state::with(|st| st.keyring.is_some())
}

/// Runs `f` on the form of `s` (held at key `name`) that leaves the process:
/// with a key file loaded, every data value sealed under the active key with
/// fresh nonces; a session still sealed goes out as it is.
pub fn with_outgoing<T>(s: &Session, name: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let fill = |out: &mut Vec<u8>| {
        state::with(|st| match &st.keyring {
            Some(ring) if !s.flags.contains(Flags::SEALED) && !s.data.is_empty() => {
                let sealed = ring.seal_map(name, &s.data);
                encoding::encode_with_data(s, s.flags | Flags::SEALED, &sealed, out)
            }
            _ => encoding::encode_into(s, out),
        })
    };
    OUT_BUF.with(|b| {
        // A nested call (none today) would get a buffer of its own.
        let mut own = Vec::new();
        let mut shared = b.try_borrow_mut();
        let buf = match &mut shared {
            Ok(shared) => &mut **shared,
            Err(_) => &mut own,
        };
        fill(buf);
        f(buf)
    })
}

/// The session's data in plaintext: borrowed unless it is still sealed
/// (arrived under a key the server could not open it with); such data is
/// opened with the current key ring, so a `KEYRING RELOAD` that brings its
/// key back makes it readable.
pub fn open_data<'a>(s: &'a Session, name: &[u8]) -> Result<Cow<'a, FlatMap>, CmdError> {
    if !s.flags.contains(Flags::SEALED) {
        return Ok(Cow::Borrowed(&s.data));
    }
    state::with(|st| open_map(st.keyring.as_ref(), name, &s.data))
        .map(Cow::Owned)
        .map_err(|e| CmdError::Sealed(e.to_string()))
}

/// Puts plaintext data in place for a write; returns the sealed form to put
/// back if the write is refused ([`restore_sealed`]).
pub fn unseal_for_write(s: &mut Session, name: &[u8]) -> Result<Option<FlatMap>, CmdError> {
    if !s.flags.contains(Flags::SEALED) {
        return Ok(None);
    }
    let plain = open_data(s, name)?.into_owned();
    s.flags -= Flags::SEALED;
    Ok(Some(std::mem::replace(&mut s.data, plain)))
}

/// Undoes [`unseal_for_write`] after a refused write.
pub fn restore_sealed(s: &mut Session, stored: Option<FlatMap>) {
    if let Some(data) = stored {
        s.data = data;
        s.flags |= Flags::SEALED;
    }
}
