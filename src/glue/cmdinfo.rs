//! What the module tells the server about its commands besides their flags:
//! key specs and command tips (`RedisModule_SetCommandInfo`), ACL
//! categories (`RedisModule_SetCommandACLCategories`, Redis 7.2+) and the
//! `session` category (`RedisModule_AddACLCategory`, Redis 7.4+ / Valkey
//! 8+). Each API is used only where the running server has it, found by
//! its pointer, never by a version number.

use std::ffi::{c_char, CStr, CString};
use std::os::raw::c_int;
use std::ptr;

use redis_module::raw;

use super::rm::{api, Ctx};

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
        c"Internal: a session write's effect.", "write dangerous", c"", false, false
    ),
    info!(
        c"session.applyset",
        c"Internal: a field write's effect.", "write dangerous", c"", false, false
    ),
    info!(
        c"session.applyrenew",
        c"Internal: a renewal's effect.", "write dangerous", c"", false, false
    ),
    info!(
        c"session.ring.set",
        c"Replaces a routing ring's membership.", "write", c"", false, true
    ),
    info!(
        c"session.ring.node",
        c"Changes one node of a routing ring.", "write fast", c"", false, true
    ),
    info!(
        c"session.ring.load",
        c"Records the loads of routing ring nodes.", "write fast", c"", false, true
    ),
    info!(
        c"session.ring.get",
        c"A routing ring's nodes, weights, states and loads.", "read fast", c"", true, true
    ),
    info!(
        c"session.route",
        c"The node of a routing ring that serves an id.", "read fast", c"", true, true
    ),
    info!(
        c"session.ring.apply",
        c"Internal: a ring write's effect.", "write dangerous", c"", false, false
    ),
    info!(
        c"session.ring.applyload",
        c"Internal: a ring load report's effect.", "write dangerous", c"", false, false
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

/// The key spec of a command that reads argv[1] (one key).
fn read_key_spec() -> [raw::RedisModuleCommandKeySpec; 2] {
    // SAFETY: a plain C struct; all-zero is its documented terminator.
    let mut specs: [raw::RedisModuleCommandKeySpec; 2] = unsafe { std::mem::zeroed() };
    specs[0].flags = (raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS) as u64;
    specs[0].begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    specs[0].bs.index.pos = 1;
    specs[0].find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
    specs[0].fk.range = raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
        lastkey: 0,
        keystep: 1,
        limit: 0,
    };
    specs
}

/// Sets what the server supports for every command; called from the
/// module's load, after the commands are registered. A call the server
/// refuses is logged and the module loads without it.
pub fn apply(ctx: Ctx, warn: impl Fn(&str)) -> Applied {
    let mut applied = Applied {
        cached_time: unsafe { raw::RedisModule_CachedMicroseconds }.is_some(),
        ..Applied::default()
    };
    // SAFETY (all blocks below): pointers set by Redis at load or None.
    if let Some(add) = unsafe { raw::RedisModule_AddACLCategory } {
        if unsafe { add(ctx.0, c"session".as_ptr()) } == raw::REDISMODULE_OK as c_int {
            applied.session_category = true;
        } else {
            warn("session: could not add the ACL category 'session'");
        }
    }
    let get_command = api!(RedisModule_GetCommand);
    let set_info = unsafe { raw::RedisModule_SetCommandInfo };
    let set_categories = unsafe { raw::RedisModule_SetCommandACLCategories };
    applied.command_info = set_info.is_some();
    applied.categories = set_categories.is_some();
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    for info in INFOS {
        let cmd = unsafe { get_command(ctx.0, info.name.as_ptr()) };
        if cmd.is_null() {
            warn(&format!("session: no command {:?} to describe", info.name));
            continue;
        }
        if let Some(set_info) = set_info {
            let mut specs = read_key_spec();
            let tips: *const c_char = if info.tips.is_empty() {
                ptr::null()
            } else {
                info.tips.as_ptr()
            };
            let ci = raw::RedisModuleCommandInfo {
                version: &version,
                summary: info.summary.as_ptr(),
                complexity: ptr::null(),
                since: ptr::null(),
                history: ptr::null_mut(),
                tips,
                arity: 0,
                key_specs: if info.reads_key {
                    specs.as_mut_ptr()
                } else {
                    ptr::null_mut()
                },
                args: ptr::null_mut(),
            };
            if unsafe { set_info(cmd, &ci) } != raw::REDISMODULE_OK as c_int {
                warn(&format!(
                    "session: the server refused the command info of {:?}",
                    info.name
                ));
                applied.command_info = false;
            }
        }
        if let Some(set_categories) = set_categories {
            let cats = if applied.session_category && info.in_session {
                format!("{} session", info.categories)
            } else {
                info.categories.to_string()
            };
            let ok = CString::new(cats)
                .map(|c| unsafe { set_categories(cmd, c.as_ptr()) } == raw::REDISMODULE_OK as c_int)
                .unwrap_or(false);
            if !ok {
                warn(&format!(
                    "session: the server refused the ACL categories of {:?}",
                    info.name
                ));
                applied.categories = false;
            }
        }
    }
    applied
}
