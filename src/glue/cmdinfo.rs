//! What the module tells the server about its commands besides their flags
//! (the command table in `lib.rs` holds each command's values): key specs
//! and command tips (`RedisModule_SetCommandInfo`), ACL categories
//! (`RedisModule_SetCommandACLCategories`, Redis 7.2+) and the `session`
//! category (`RedisModule_AddACLCategory`, Redis 7.4+ / Valkey 8+). Each
//! API is used only where the running server has it, found by its pointer,
//! never by a version number (`rm::register`).

use std::ffi::CStr;

use super::rm::{register, Ctx};

/// One command's extra information.
pub struct Info {
    pub name: &'static CStr,
    pub summary: &'static CStr,
    /// ACL categories besides `session` (7.2+).
    pub categories: &'static str,
    /// Command tips for cluster clients, or empty.
    pub tips: &'static CStr,
    /// The key (argv[1]) is only read: a key spec `RO ACCESS` instead of
    /// the `RW ACCESS UPDATE` Redis gives a module command's key by
    /// default, so `%R~` ACL patterns admit the command.
    pub reads_key: bool,
    /// In the `session` category. The internal effect commands are not:
    /// their categories are `admin dangerous`, never `write`, so no
    /// category an operator grants for the session commands covers them.
    pub in_session: bool,
}

/// Tips of a keyless command whose counts add up over the shards.
pub const ALL_SUM: &CStr = c"request_policy:all_shards response_policy:agg_sum";
/// Tips of a keyless command that must succeed on every shard.
pub const ALL_OK: &CStr = c"request_policy:all_shards response_policy:all_succeeded";
/// Tips of `LIST`: every shard, keys in no particular order.
pub const ALL_KEYS: &CStr = c"request_policy:all_shards nondeterministic_output_order";
/// Tips of `KEYRING RELOAD`: every node, replicas included.
pub const ALL_NODES: &CStr = c"request_policy:all_nodes response_policy:all_succeeded";
/// No tips.
pub const NONE: &CStr = c"";

/// What the running server let the module set, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub command_info: bool,
    pub categories: bool,
    pub session_category: bool,
    pub cached_time: bool,
    /// The effect commands carry the `internal` flag (hidden from clients).
    pub internal_flag: bool,
}

/// What the server supports, and the `session` category where it can have
/// one; called once at load, before the commands are described.
pub fn begin(ctx: Ctx, warn: impl Fn(&str)) -> Applied {
    let mut applied = Applied {
        cached_time: register::has_cached_time(),
        command_info: register::has_command_info(),
        categories: register::has_command_categories(),
        ..Applied::default()
    };
    match register::add_acl_category(ctx, c"session") {
        Some(true) => applied.session_category = true,
        Some(false) => warn("session: could not add the ACL category 'session'"),
        None => {}
    }
    applied
}

/// Describes one registered command where the server lets it; a call the
/// server refuses is logged and the module loads without it.
pub fn describe(ctx: Ctx, info: &Info, applied: &mut Applied, warn: impl Fn(&str)) {
    if register::set_command_info(ctx, info.name, info.summary, info.tips, info.reads_key) == Some(false) {
        warn(&format!(
            "session: the server refused the command info of {:?}",
            info.name
        ));
        applied.command_info = false;
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
