//! What the module tells the server about its commands besides their flags:
//! key specs and command tips (`RedisModule_SetCommandInfo`), ACL
//! categories (`RedisModule_SetCommandACLCategories`, Redis 7.2+) and the
//! `session` category (`RedisModule_AddACLCategory`, Redis 7.4+ / Valkey
//! 8+). Each API is used only where the running server has it, found by
//! its pointer, never by a version number.

use std::ffi::CStr;

use super::rm::{register, Ctx};

/// One command's extra information.
struct Info {
    name: &'static CStr,
    summary: &'static CStr,
    /// ACL categories besides `session` (7.2+).
    categories: &'static str,
    /// Command tips for cluster clients, or empty.
    tips: &'static CStr,
    /// The key (argv[1]) is only read: a key spec `RO ACCESS` instead of
    /// the `RW ACCESS UPDATE` Redis gives a module command's key by
    /// default, so `%R~` ACL patterns admit the command.
    reads_key: bool,
    /// In the `session` category (not the internal effect commands, which
    /// only a replica's link and the AOF should send).
    in_session: bool,
}

const ALL_SUM: &CStr = c"request_policy:all_shards response_policy:agg_sum";
const ALL_OK: &CStr = c"request_policy:all_shards response_policy:all_succeeded";

macro_rules! info {
    ($name:literal, $summary:literal, $cats:literal, $tips:expr, $reads:literal, $session:literal) => {
        Info {
            name: $name,
            summary: $summary,
            categories: $cats,
            tips: $tips,
            reads_key: $reads,
            in_session: $session,
        }
    };
}

const INFOS: &[Info] = &[
    info!(
        c"session.create",
        c"Creates a session.", "write", c"", false, true
    ),
    info!(
        c"session.get",
        c"Reads a session; TOUCH also renews it.", "read fast", c"", true, true
    ),
    info!(
        c"session.renew",
        c"Renews a session.", "write fast", c"", false, true
    ),
    info!(
        c"session.set",
        c"Sets or removes data fields of a session.", "write", c"", false, true
    ),
    info!(
        c"session.cas",
        c"Replaces a session's data if its version matches.", "write", c"", false, true
    ),
    info!(
        c"session.revoke",
        c"Revokes a session.", "write fast", c"", false, true
    ),
    info!(
        c"session.ttl",
        c"Time left on each of a session's clocks.", "read fast", c"", true, true
    ),
    info!(
        c"session.list",
        c"Keys of a subject's live sessions on this server.",
        "read",
        c"request_policy:all_shards nondeterministic_output_order",
        false,
        true
    ),
    info!(
        c"session.revokeall",
        c"Revokes every session of a subject on this server.", "write", ALL_SUM, false, true
    ),
    info!(
        c"session.count",
        c"Live sessions of a tenant or subject on this server.", "read", ALL_SUM, false, true
    ),
    info!(
        c"session.stats",
        c"Counters of this server, or of one tenant.", "read", ALL_SUM, false, true
    ),
    info!(
        c"session.tenant|set",
        c"Sets a tenant's settings.", "write", ALL_OK, false, true
    ),
    info!(
        c"session.tenant|get",
        c"A tenant's settings.", "read", c"", false, true
    ),
    info!(
        c"session.tenant|del",
        c"Drops a tenant's settings.", "write", ALL_OK, false, true
    ),
    info!(
        c"session.tenant|list",
        c"Tenants with settings.", "read", c"", false, true
    ),
    info!(
        c"session.keyring|reload",
        c"Re-reads the key file.",
        "admin dangerous",
        c"request_policy:all_nodes response_policy:all_succeeded",
        false,
        true
    ),
    info!(
        c"session.keyring|list",
        c"Ids of the keys in the key file.", "admin dangerous", c"", false, true
    ),
    info!(
        c"session.apply",
        c"Internal: a session write's effect.", "admin dangerous", c"", false, false
    ),
    info!(
        c"session.applyset",
        c"Internal: a field write's effect.", "admin dangerous", c"", false, false
    ),
    info!(
        c"session.applyrenew",
        c"Internal: a renewal's effect.", "admin dangerous", c"", false, false
    ),
];

/// What the running server let the module set, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub command_info: bool,
    pub categories: bool,
    pub session_category: bool,
    pub cached_time: bool,
}

/// Sets what the server supports for every command; called from the
/// module's load, after the commands are registered. A call the server
/// refuses is logged and the module loads without it. The effect commands
/// get `admin dangerous` and never `write` or `session`: no category an
/// operator grants for the session commands covers them.
pub fn apply(ctx: Ctx, warn: impl Fn(&str)) -> Applied {
    let mut applied = Applied {
        cached_time: register::has_cached_time(),
        ..Applied::default()
    };
    match register::add_acl_category(ctx, c"session") {
        Some(true) => applied.session_category = true,
        Some(false) => warn("session: could not add the ACL category 'session'"),
        None => {}
    }
    applied.command_info = register::has_command_info();
    applied.categories = register::has_command_categories();
    for info in INFOS {
        match register::set_command_info(ctx, info.name, info.summary, info.tips, info.reads_key) {
            Some(false) => {
                warn(&format!(
                    "session: the server refused the command info of {:?}",
                    info.name
                ));
                applied.command_info = false;
            }
            Some(true) | None => {}
        }
        let cats = if applied.session_category && info.in_session {
            format!("{} session", info.categories)
        } else {
            info.categories.to_string()
        };
        if register::set_command_categories(ctx, info.name, &cats) == Some(false) {
            warn(&format!(
                "session: the server refused the ACL categories of {:?}",
                info.name
            ));
            applied.categories = false;
        }
    }
    applied
}
