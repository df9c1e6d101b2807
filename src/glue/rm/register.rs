//! Registration: commands, module options, server and keyspace events.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};

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
) -> bool {
    command(ctx, name, handler, &format!("{flags} internal"), keys)
        || command(ctx, name, handler, flags, keys)
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
