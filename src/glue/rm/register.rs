//! Registration: commands, module options, server and keyspace events.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use redis_module::raw;

use super::{api, Ctx, RStr};

pub type CmdFunc = extern "C" fn(*mut raw::RedisModuleCtx, *mut RStr, c_int) -> c_int;

/// Registers one command; `parent|sub` names a subcommand (its container is
/// created on first use), so each subcommand carries its own flags.
pub fn command(ctx: Ctx, name: &str, handler: CmdFunc, flags: &str, keys: (c_int, c_int, c_int)) -> bool {
    let ok = raw::REDISMODULE_OK as c_int;
    let (parent, sub) = name.split_once('|').unwrap_or((name, ""));
    let (Ok(flags), Ok(cparent), Ok(csub)) = (CString::new(flags), CString::new(parent), CString::new(sub))
    else {
        return false;
    };
    unsafe {
        if sub.is_empty() {
            return api!(RedisModule_CreateCommand)(
                ctx.0,
                cparent.as_ptr(),
                Some(handler),
                flags.as_ptr(),
                keys.0,
                keys.1,
                keys.2,
            ) == ok;
        }
        let mut container = api!(RedisModule_GetCommand)(ctx.0, cparent.as_ptr());
        if container.is_null() {
            if api!(RedisModule_CreateCommand)(ctx.0, cparent.as_ptr(), None, c"".as_ptr(), 0, 0, 0) != ok {
                return false;
            }
            container = api!(RedisModule_GetCommand)(ctx.0, cparent.as_ptr());
        }
        api!(RedisModule_CreateSubcommand)(
            container,
            csub.as_ptr(),
            Some(handler),
            flags.as_ptr(),
            keys.0,
            keys.1,
            keys.2,
        ) == ok
    }
}

/// Registers an effect command. Its `flags` carry neither `write`,
/// `readonly` nor `fast`, so on servers that derive ACL categories from
/// flags (7.2+) it is in none of `@write`, `@read`, `@fast`; `admin` puts it
/// in `@admin`/`@dangerous` (and keeps it out of `MONITOR`), which already
/// grant the keys to everything. Redis 7.0 gives module commands no
/// category at all: only `+@all` or naming the command grants it. Where the
/// server knows the `internal` flag (Redis 8), the command is also hidden
/// from clients altogether (it answers as an unknown command); the flag is
/// tried first and dropped where the server refuses it. Whatever the ACL,
/// `guard::run` refuses it to clients.
pub fn internal_command(
    ctx: Ctx,
    name: &str,
    handler: CmdFunc,
    flags: &str,
    keys: (c_int, c_int, c_int),
) -> Option<Hidden> {
    if command(ctx, name, handler, &format!("{flags} internal"), keys) {
        Some(Hidden::Yes)
    } else {
        command(ctx, name, handler, flags, keys).then_some(Hidden::No)
    }
}

/// Whether the server took the `internal` flag (hides the command from clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    Yes,
    No,
}

/// Writes signal `WATCH`/tracking themselves (so a read or a suppressed
/// touch, which open the key for writing, does not), and the type's
/// callbacks handle I/O errors.
pub fn set_module_options(ctx: Ctx) {
    unsafe {
        api!(RedisModule_SetModuleOptions)(
            ctx.0,
            (raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED | raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS)
                as c_int,
        )
    };
}

pub type ServerEventFn =
    unsafe extern "C" fn(*mut raw::RedisModuleCtx, raw::RedisModuleEvent, u64, *mut c_void);
pub type KeyspaceEventFn =
    unsafe extern "C" fn(*mut raw::RedisModuleCtx, c_int, *const c_char, RStr) -> c_int;

/// Subscribes `cb` to the server event `id` (`REDISMODULE_EVENT_*`).
pub fn server_event(ctx: Ctx, id: u64, cb: ServerEventFn) -> bool {
    let ev = raw::RedisModuleEvent { id, dataver: 1 };
    unsafe { api!(RedisModule_SubscribeToServerEvent)(ctx.0, ev, Some(cb)) == raw::REDISMODULE_OK as c_int }
}

/// Subscribes `cb` to keyspace notifications of `types`.
pub fn keyspace_events(ctx: Ctx, types: raw::NotifyEvent, cb: KeyspaceEventFn) -> bool {
    unsafe {
        api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.0, types.bits(), Some(cb))
            == raw::REDISMODULE_OK as c_int
    }
}

// What the module tells newer servers about its commands besides their
// flags (`glue::cmdinfo`). Each API is used only where the running server
// has it, found by its pointer, never by a version number; `None` where it
// lacks one, else whether the server took the call.

/// `RedisModule_CachedMicroseconds` (7.2+): the command's start time.
pub fn has_cached_time() -> bool {
    unsafe { raw::RedisModule_CachedMicroseconds }.is_some()
}

/// `RedisModule_SetCommandInfo` (7.0.3+).
pub fn has_command_info() -> bool {
    unsafe { raw::RedisModule_SetCommandInfo }.is_some()
}

/// `RedisModule_SetCommandACLCategories` (7.2+).
pub fn has_command_categories() -> bool {
    unsafe { raw::RedisModule_SetCommandACLCategories }.is_some()
}

/// Adds an ACL category of the module's own (7.4+, Valkey 8+).
pub fn add_acl_category(ctx: Ctx, name: &CStr) -> Option<bool> {
    // SAFETY: a pointer set by Redis at load, or None.
    let add = unsafe { raw::RedisModule_AddACLCategory }?;
    Some(unsafe { add(ctx.0, name.as_ptr()) } == raw::REDISMODULE_OK as c_int)
}

fn command_ptr(ctx: Ctx, name: &CStr) -> Option<*mut raw::RedisModuleCommand> {
    let cmd = unsafe { api!(RedisModule_GetCommand)(ctx.0, name.as_ptr()) };
    (!cmd.is_null()).then_some(cmd)
}

/// The key spec of a command that only reads argv[1] (one key): `RO
/// ACCESS` instead of the `RW ACCESS UPDATE` Redis gives a module command's
/// key by default, so `%R~` ACL patterns admit it.
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

/// Sets a command's summary, tips (empty: none) and, for a command that
/// only reads its key, its key spec.
pub fn set_command_info(ctx: Ctx, name: &CStr, summary: &CStr, tips: &CStr, reads_key: bool) -> Option<bool> {
    // SAFETY: a pointer set by Redis at load, or None.
    let set_info = unsafe { raw::RedisModule_SetCommandInfo }?;
    let Some(cmd) = command_ptr(ctx, name) else {
        return Some(false);
    };
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let mut specs = read_key_spec();
    let ci = raw::RedisModuleCommandInfo {
        version: &version,
        summary: summary.as_ptr(),
        complexity: ptr::null(),
        since: ptr::null(),
        history: ptr::null_mut(),
        tips: if tips.is_empty() {
            ptr::null()
        } else {
            tips.as_ptr()
        },
        arity: 0,
        key_specs: if reads_key {
            specs.as_mut_ptr()
        } else {
            ptr::null_mut()
        },
        args: ptr::null_mut(),
    };
    Some(unsafe { set_info(cmd, &ci) } == raw::REDISMODULE_OK as c_int)
}

/// Sets a command's ACL categories (space-separated names).
pub fn set_command_categories(ctx: Ctx, name: &CStr, categories: &str) -> Option<bool> {
    // SAFETY: a pointer set by Redis at load, or None.
    let set = unsafe { raw::RedisModule_SetCommandACLCategories }?;
    let (Some(cmd), Ok(cats)) = (command_ptr(ctx, name), CString::new(categories)) else {
        return Some(false);
    };
    Some(unsafe { set(cmd, cats.as_ptr()) } == raw::REDISMODULE_OK as c_int)
}
