//! SESSION.KEYRING RELOAD | LIST: the keys that seal data at rest.

use super::apply::reindex_in_place;
use super::config;
use super::guard::{Args, CmdError, CmdResult};
use super::rm::{Ctx, Key, OwnedStr, Slot};
use super::sealing::{self, load_keyfile};
use super::state;
use crate::core::index::Before;
use crate::core::session::Flags;

/// Re-reads the key file; on any error the keys in use stay as they were.
pub fn reload(ctx: Ctx, _args: Args) -> CmdResult {
    let path = config::keyfile(ctx.0);
    if path.is_empty() {
        return Err(CmdError::Err(
            "no key file configured (module option keyfile)".into(),
        ));
    }
    let ring = load_keyfile(&path).map_err(CmdError::Err)?;
    let msg = format!(
        "session: key file reloaded, {} key(s), active key '{}'",
        ring.ids().count(),
        String::from_utf8_lossy(ring.active_id())
    );
    state::with(|st| st.keyring = Some(ring));
    let opened = open_held_sealed(ctx);
    let msg = format!("{msg}; {opened} session(s) held sealed could now be opened");
    ctx.log_notice(&msg);
    ctx.reply_simple(c"OK");
    Ok(())
}

/// Sessions held sealed (they arrived under a key the server did not have)
/// are opened once their key is back, so the server holds them like any
/// other: in plaintext, with the digest a server that loads them afresh
/// would have. Scans the keyspace only when the index counts such values.
fn open_held_sealed(ctx: Ctx) -> usize {
    if state::with(|st| st.index.sealed_counts(None).is_empty()) {
        return 0;
    }
    let original = ctx.db();
    let mut opened = 0;
    let mut db = 0;
    while ctx.select_db(db) {
        let mut names = Vec::new();
        ctx.scan_sessions(|name, s| {
            if s.flags.contains(Flags::SEALED) {
                names.push(name.to_vec());
            }
        });
        for name in names {
            let n = OwnedStr::new(ctx, &name);
            let key = Key::open(ctx, n.ptr, true);
            if let Slot::Session(s) = key.slot() {
                let before = Before::of(s);
                sealing::open_on_arrival(s, &name);
                if !s.flags.contains(Flags::SEALED) {
                    reindex_in_place(ctx, &name, before, s);
                    opened += 1;
                }
            }
        }
        db += 1;
    }
    ctx.select_db(original);
    opened
}

/// Key ids, each `active` or `available`; never key bytes.
pub fn list(ctx: Ctx, _args: Args) -> CmdResult {
    let ids: Vec<Vec<u8>> = state::with(|st| {
        st.keyring
            .as_ref()
            .map(|r| r.ids().map(<[u8]>::to_vec).collect())
            .unwrap_or_default()
    });
    ctx.reply_map(ids.len());
    for (i, id) in ids.iter().enumerate() {
        ctx.reply_bulk(id);
        ctx.reply_bulk(if i == 0 { b"active" } else { b"available" });
    }
    Ok(())
}
