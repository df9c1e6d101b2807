//! SESSION.KEYRING RELOAD | LIST: the keys that seal data at rest.

use super::config;
use super::guard::{Args, CmdError, CmdResult};
use super::rm::Ctx;
use super::sealing::load_keyfile;
use super::state;

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
    redis_module::Context::new(ctx.0).log_notice(&msg);
    ctx.reply_simple(c"OK");
    Ok(())
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
