//! Every raw Redis module API call the module makes, wrapped once, by
//! concern: keys and values (`key`), replies (`reply`), what a write sends
//! out (`propagate`), ACL checks (`acl`), the type's RDB/AOF/digest I/O
//! (`io`), and registration of commands, options and event handlers
//! (`register`). Nothing outside this folder calls the API.
//!
//! The crate has no safe wrapper for some of these (absolute expiry, map
//! replies, context flags), and its generic wrappers allocate on every call
//! (argument vectors, reply trees). Every function pointer used is checked
//! at load time by [`check_api`], so the calls may assume it is present.

use std::os::raw::c_int;

use redis_module::raw;

pub mod acl;
pub mod io;
pub mod key;
pub mod propagate;
pub mod register;
pub mod reply;

pub use key::{Key, OwnedStr, RingSlot, Slot};

/// Calls a Redis module API function pointer checked by [`check_api`].
macro_rules! api {
    ($name:ident) => {
        // SAFETY: `check_api` refused to load the module unless every
        // pointer named through this macro was set by Redis.
        {
            #[allow(unused_unsafe)]
            let f = unsafe { raw::$name.unwrap_unchecked() };
            f
        }
    };
}
pub(crate) use api;

/// Names every API the module calls through [`api!`]; loading fails if one is
/// missing (an older server).
pub fn check_api() -> Result<(), &'static str> {
    macro_rules! need {
        ($($name:ident),*) => {
            $(if unsafe { raw::$name }.is_none() { return Err(stringify!($name)); })*
        };
    }
    need!(
        RedisModule_Milliseconds,
        RedisModule_GetKeyNameFromIO,
        RedisModule_GetDbIdFromIO,
        RedisModule_StringPtrLen,
        RedisModule_OpenKey,
        RedisModule_CloseKey,
        RedisModule_KeyType,
        RedisModule_ModuleTypeGetType,
        RedisModule_ModuleTypeGetValue,
        RedisModule_ModuleTypeSetValue,
        RedisModule_SetAbsExpire,
        RedisModule_Replicate,
        RedisModule_ReplicateVerbatim,
        RedisModule_SignalModifiedKey,
        RedisModule_NotifyKeyspaceEvent,
        RedisModule_ReplyWithMap,
        RedisModule_ReplyWithArray,
        RedisModule_ReplyWithStringBuffer,
        RedisModule_ReplyWithSimpleString,
        RedisModule_ReplyWithLongLong,
        RedisModule_ReplyWithNull,
        RedisModule_ReplyWithError,
        RedisModule_LoadStringBuffer,
        RedisModule_SaveStringBuffer,
        RedisModule_IsIOError,
        RedisModule_Free,
        RedisModule_EmitAOF,
        RedisModule_DigestAddStringBuffer,
        RedisModule_DigestEndSequence,
        RedisModule_LogIOError,
        RedisModule_GetContextFlags,
        RedisModule_CreateCommand,
        RedisModule_GetCommand,
        RedisModule_CreateSubcommand,
        RedisModule_SetModuleOptions,
        RedisModule_GetSelectedDb,
        RedisModule_SelectDb,
        RedisModule_CreateString,
        RedisModule_CreateStringFromLongLong,
        RedisModule_FreeString,
        RedisModule_SubscribeToServerEvent,
        RedisModule_SubscribeToKeyspaceEvents,
        RedisModule_ScanCursorCreate,
        RedisModule_ScanCursorDestroy,
        RedisModule_Scan,
        RedisModule_GetKeyNameFromOptCtx,
        RedisModule_GetDbIdFromOptCtx,
        RedisModule_GetCurrentUserName,
        RedisModule_GetModuleUserFromUserName,
        RedisModule_FreeModuleUser,
        RedisModule_ACLCheckKeyPermissions,
        RedisModule_LoadUnsigned,
        RedisModule_SaveUnsigned
    );
    Ok(())
}

pub type RStr = *mut raw::RedisModuleString;

/// The current time in ms, read once per command. Where the server has
/// `RedisModule_CachedMicroseconds` (Redis 7.2+, Valkey 8+) it is the time
/// Redis took when the command (or the script or MULTI around it) started,
/// the same instant Redis's own key expiry uses, so the module and Redis
/// agree on what has expired. Redis 7.0 has no cached command time for
/// modules: there it is the clock now.
pub fn now_ms() -> i64 {
    // SAFETY: a pointer set by Redis at load, or None on servers without it.
    match unsafe { raw::RedisModule_CachedMicroseconds } {
        Some(cached) => (unsafe { cached() }) / 1000,
        None => unsafe { api!(RedisModule_Milliseconds)() },
    }
}

/// The bytes of a module string.
pub fn bytes<'a>(s: RStr) -> &'a [u8] {
    if s.is_null() {
        return &[];
    }
    let mut len = 0usize;
    // SAFETY: Redis keeps argv strings alive for the whole command.
    unsafe {
        let p = api!(RedisModule_StringPtrLen)(s, &mut len);
        if p.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

/// A command's (or event handler's) context. Null in callbacks that have
/// none (type callbacks); the functions that need one are not called there.
#[derive(Clone, Copy)]
pub struct Ctx(pub *mut raw::RedisModuleCtx);

impl Ctx {
    /// `RedisModule_GetContextFlags`: what kind of server and client this
    /// command runs on (`REDISMODULE_CTX_FLAGS_*`).
    pub fn flags(self) -> u32 {
        (unsafe { api!(RedisModule_GetContextFlags)(self.0) }) as u32
    }

    /// Whether this command came from the primary's replication link
    /// (`REPLICATED`, also inside a MULTI the primary sends) or from the AOF
    /// being loaded (`LOADING`): the only senders of effect commands.
    pub fn is_primary_or_loading(self) -> bool {
        self.flags() & FROM_PRIMARY_OR_LOADING != 0
    }

    /// Whether this server is a read-only replica and the command a client's.
    pub fn is_readonly_replica(self) -> bool {
        let f = self.flags();
        f & READONLY_REPLICA != 0 && f & FROM_PRIMARY_OR_LOADING == 0
    }
}

/// Context flags of a command sent by the primary's link or the AOF loader.
pub const FROM_PRIMARY_OR_LOADING: u32 =
    raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
/// Context flag of a read-only replica.
pub const READONLY_REPLICA: u32 = raw::REDISMODULE_CTX_FLAGS_READONLY;

impl Ctx {
    /// The selected database.
    pub fn db(self) -> usize {
        (unsafe { api!(RedisModule_GetSelectedDb)(self.0) }).max(0) as usize
    }

    pub fn select_db(self, db: usize) -> bool {
        (unsafe { api!(RedisModule_SelectDb)(self.0, db as c_int) }) == raw::REDISMODULE_OK as c_int
    }

    /// Logs a notice in the server's log.
    pub fn log_notice(self, msg: &str) {
        redis_module::Context::new(self.0).log_notice(msg);
    }

    /// Logs a warning in the server's log.
    pub fn log_warning(self, msg: &str) {
        redis_module::Context::new(self.0).log_warning(msg);
    }
}
