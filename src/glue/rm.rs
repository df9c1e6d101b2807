//! The few raw Redis module API calls the glue needs, wrapped once.
//!
//! The crate has no safe wrapper for some of these (absolute expiry, map
//! replies, cached time), and its generic wrappers allocate on every call
//! (argument vectors, reply trees). The hot path goes through here instead.
//! Every function pointer used is checked at load time by [`check_api`], so
//! the calls below may assume it is present.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;

use crate::core::session::Session;

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

/// The session type, as registered with Redis (set once at load).
static SESSION_TYPE: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(ptr::null_mut());

pub fn set_session_type(t: *mut raw::RedisModuleType) {
    SESSION_TYPE.store(t, Ordering::Relaxed);
}

fn session_type() -> *mut raw::RedisModuleType {
    SESSION_TYPE.load(Ordering::Relaxed)
}

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

/// A command's context.
#[derive(Clone, Copy)]
pub struct Ctx(pub *mut raw::RedisModuleCtx);

/// What a key holds.
pub enum Slot<'a> {
    Empty,
    Session(&'a mut Session),
    Other,
}

/// An open key, closed on drop.
pub struct Key {
    ptr: *mut raw::RedisModuleKey,
}

impl Key {
    pub fn open(ctx: Ctx, name: RStr, write: bool) -> Key {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        let ptr = unsafe { api!(RedisModule_OpenKey)(ctx.0, name, mode as c_int) };
        Key { ptr: ptr.cast() }
    }

    pub fn slot(&self) -> Slot<'_> {
        if self.ptr.is_null() {
            return Slot::Empty;
        }
        unsafe {
            let kt = api!(RedisModule_KeyType)(self.ptr);
            if kt == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
                return Slot::Empty;
            }
            if kt != raw::REDISMODULE_KEYTYPE_MODULE as c_int
                || api!(RedisModule_ModuleTypeGetType)(self.ptr) != session_type()
            {
                return Slot::Other;
            }
            let v = api!(RedisModule_ModuleTypeGetValue)(self.ptr).cast::<Session>();
            match v.as_mut() {
                Some(s) => Slot::Session(s),
                None => Slot::Empty,
            }
        }
    }

    /// Stores a new value (replacing any old one, whose expiry Redis drops).
    pub fn put(&self, s: Box<Session>) -> bool {
        let raw_value = Box::into_raw(s);
        let rc = unsafe {
            api!(RedisModule_ModuleTypeSetValue)(self.ptr, session_type(), raw_value.cast::<c_void>())
        };
        if rc != raw::REDISMODULE_OK as c_int {
            // Redis did not take ownership.
            drop(unsafe { Box::from_raw(raw_value) });
            return false;
        }
        true
    }

    pub fn set_abs_expire(&self, at_ms: i64) {
        unsafe { api!(RedisModule_SetAbsExpire)(self.ptr, at_ms) };
    }
}

/// A key name for an ACL check: one the module made, or an argument.
pub trait KeyArg {
    fn ptr(&self) -> RStr;
}

impl KeyArg for RStr {
    fn ptr(&self) -> RStr {
        *self
    }
}

impl KeyArg for OwnedStr {
    fn ptr(&self) -> RStr {
        self.ptr
    }
}

/// A module string the module created, freed on drop.
pub struct OwnedStr {
    ctx: Ctx,
    pub ptr: RStr,
}

impl OwnedStr {
    pub fn new(ctx: Ctx, b: &[u8]) -> OwnedStr {
        let ptr = unsafe { api!(RedisModule_CreateString)(ctx.0, b.as_ptr().cast::<c_char>(), b.len()) };
        OwnedStr { ctx, ptr }
    }
}

impl Drop for OwnedStr {
    fn drop(&mut self) {
        unsafe { api!(RedisModule_FreeString)(self.ctx.0, self.ptr) };
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            unsafe { api!(RedisModule_CloseKey)(self.ptr) };
        }
    }
}

impl Ctx {
    pub fn reply_map(self, len: usize) {
        unsafe { api!(RedisModule_ReplyWithMap)(self.0, len as _) };
    }

    pub fn reply_array(self, len: usize) {
        unsafe { api!(RedisModule_ReplyWithArray)(self.0, len as _) };
    }

    pub fn reply_bulk(self, b: &[u8]) {
        unsafe { api!(RedisModule_ReplyWithStringBuffer)(self.0, b.as_ptr().cast::<c_char>(), b.len()) };
    }

    pub fn reply_simple(self, s: &CStr) {
        unsafe { api!(RedisModule_ReplyWithSimpleString)(self.0, s.as_ptr()) };
    }

    pub fn reply_int(self, v: i64) {
        unsafe { api!(RedisModule_ReplyWithLongLong)(self.0, v) };
    }

    pub fn reply_null(self) {
        unsafe { api!(RedisModule_ReplyWithNull)(self.0) };
    }

    /// An error reply; `msg` starts with its code word (`ERR`, `CONFLICT`, ...).
    pub fn reply_error(self, msg: &str) {
        let clean: Vec<u8> = msg
            .bytes()
            .map(|b| {
                if b == b'\r' || b == b'\n' || b == 0 {
                    b' '
                } else {
                    b
                }
            })
            .chain(std::iter::once(0))
            .collect();
        unsafe { api!(RedisModule_ReplyWithError)(self.0, clean.as_ptr().cast::<c_char>()) };
    }

    pub fn signal_modified(self, key: RStr) {
        unsafe { api!(RedisModule_SignalModifiedKey)(self.0, key) };
    }

    pub fn notify(self, event: &CStr, key: RStr) {
        unsafe {
            api!(RedisModule_NotifyKeyspaceEvent)(
                self.0,
                raw::NotifyEvent::MODULE.bits(),
                event.as_ptr(),
                key,
            )
        };
    }

    pub fn replicate_verbatim(self) {
        unsafe { api!(RedisModule_ReplicateVerbatim)(self.0) };
    }

    /// Propagates `SESSION.APPLY key payload` to replicas and the AOF.
    pub fn replicate_apply(self, key: RStr, payload: &[u8]) {
        unsafe {
            api!(RedisModule_Replicate)(
                self.0,
                c"SESSION.APPLY".as_ptr(),
                c"sb".as_ptr(),
                key,
                payload.as_ptr().cast::<c_char>(),
                payload.len(),
            )
        };
    }

    /// Propagates `SESSION.APPLY key payload NOEXPIRE`.
    pub fn replicate_apply_noexpire(self, key: RStr, payload: &[u8]) {
        unsafe {
            api!(RedisModule_Replicate)(
                self.0,
                c"SESSION.APPLY".as_ptr(),
                c"sbc".as_ptr(),
                key,
                payload.as_ptr().cast::<c_char>(),
                payload.len(),
                c"NOEXPIRE".as_ptr(),
            )
        };
    }

    /// Propagates `SESSION.APPLYSET key version <rest>`; `rest` (never
    /// empty) is passed by reference, not copied.
    pub fn replicate_fields(self, key: RStr, version: i64, rest: &[RStr]) {
        debug_assert!(!rest.is_empty());
        unsafe {
            api!(RedisModule_Replicate)(
                self.0,
                c"SESSION.APPLYSET".as_ptr(),
                c"slv".as_ptr(),
                key,
                version as std::os::raw::c_longlong,
                rest.as_ptr(),
                rest.len(),
            )
        };
    }

    /// Propagates `SESSION.APPLYRENEW key last_access idle version`.
    pub fn replicate_renew(self, key: RStr, s: &Session) {
        unsafe {
            api!(RedisModule_Replicate)(
                self.0,
                c"SESSION.APPLYRENEW".as_ptr(),
                c"slll".as_ptr(),
                key,
                s.last_access as std::os::raw::c_longlong,
                s.idle as std::os::raw::c_longlong,
                s.version as std::os::raw::c_longlong,
            )
        };
    }

    /// The selected database.
    pub fn db(self) -> usize {
        (unsafe { api!(RedisModule_GetSelectedDb)(self.0) }).max(0) as usize
    }

    pub fn select_db(self, db: usize) -> bool {
        (unsafe { api!(RedisModule_SelectDb)(self.0, db as c_int) }) == raw::REDISMODULE_OK as c_int
    }

    /// `RedisModule_GetContextFlags`: what kind of server and client this
    /// command runs on (`REDISMODULE_CTX_FLAGS_*`).
    pub fn flags(self) -> u32 {
        (unsafe { api!(RedisModule_GetContextFlags)(self.0) }) as u32
    }

    /// Whether the calling user's ACL key patterns allow `key` for `flags`
    /// (`REDISMODULE_CMD_KEY_*`). Contexts without a user (replication, AOF)
    /// are allowed.
    pub fn acl_allows(self, key: &[u8], flags: u32) -> bool {
        self.acl_allows_with(flags, |ctx| OwnedStr::new(ctx, key))
    }

    /// [`Ctx::acl_allows`] for a key the command was given (no copy), for a
    /// caller that has already read [`Ctx::flags`] and handled a context
    /// without a user (replicated, loading).
    pub fn acl_allows_arg(self, key: RStr, flags: u32) -> bool {
        self.acl_user_allows(flags, |_| key)
    }

    fn acl_allows_with<K: KeyArg>(self, flags: u32, key: impl FnOnce(Ctx) -> K) -> bool {
        // Redis 7.0 crashes in GetCurrentUserName for clients without a user
        // (the primary's link, the AOF loader): their commands were checked
        // where they were first run.
        let unchecked = raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
        if self.flags() & unchecked != 0 {
            return true;
        }
        self.acl_user_allows(flags, key)
    }

    fn acl_user_allows<K: KeyArg>(self, flags: u32, key: impl FnOnce(Ctx) -> K) -> bool {
        unsafe {
            let name = api!(RedisModule_GetCurrentUserName)(self.0);
            if name.is_null() {
                return true;
            }
            let user = api!(RedisModule_GetModuleUserFromUserName)(name);
            api!(RedisModule_FreeString)(self.0, name);
            if user.is_null() {
                return false;
            }
            let probe = key(self);
            let rc = api!(RedisModule_ACLCheckKeyPermissions)(user, probe.ptr(), flags as c_int);
            api!(RedisModule_FreeModuleUser)(user);
            rc == raw::REDISMODULE_OK as c_int
        }
    }

    /// Calls `f` with every session (key name, value) of the selected database.
    pub fn scan_sessions(self, mut f: impl FnMut(&[u8], &Session)) {
        type Cb<'a> = &'a mut dyn FnMut(&[u8], &Session);
        unsafe extern "C" fn each(
            _ctx: *mut raw::RedisModuleCtx,
            name: RStr,
            key: *mut raw::RedisModuleKey,
            privdata: *mut c_void,
        ) {
            let k = Key { ptr: key };
            if let Slot::Session(s) = k.slot() {
                let f = &mut *privdata.cast::<Cb>();
                f(bytes(name), s);
            }
            // Redis owns and closes keys handed to scan callbacks.
            std::mem::forget(k);
        }
        let mut cb: Cb = &mut f;
        unsafe {
            let cursor = api!(RedisModule_ScanCursorCreate)();
            while api!(RedisModule_Scan)(self.0, cursor, Some(each), (&mut cb as *mut Cb).cast::<c_void>())
                != 0
            {}
            api!(RedisModule_ScanCursorDestroy)(cursor);
        }
    }
}

// --- routing rings (SPEC §8): the ring type's slot and its effects ---------

/// The ring type, as registered with Redis (set once at load).
static RING_TYPE: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(ptr::null_mut());

pub fn set_ring_type(t: *mut raw::RedisModuleType) {
    RING_TYPE.store(t, Ordering::Relaxed);
}

/// What a key holds, seen by the ring commands.
pub enum RingSlot<'a> {
    Empty,
    Ring(&'a mut crate::core::routing::Ring),
    Other,
}

impl Key {
    pub fn ring_slot(&self) -> RingSlot<'_> {
        if self.ptr.is_null() {
            return RingSlot::Empty;
        }
        unsafe {
            let kt = api!(RedisModule_KeyType)(self.ptr);
            if kt == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
                return RingSlot::Empty;
            }
            if kt != raw::REDISMODULE_KEYTYPE_MODULE as c_int
                || api!(RedisModule_ModuleTypeGetType)(self.ptr) != RING_TYPE.load(Ordering::Relaxed)
            {
                return RingSlot::Other;
            }
            let v = api!(RedisModule_ModuleTypeGetValue)(self.ptr).cast::<crate::core::routing::Ring>();
            match v.as_mut() {
                Some(r) => RingSlot::Ring(r),
                None => RingSlot::Empty,
            }
        }
    }

    /// Stores a ring in an empty key.
    pub fn put_ring(&self, r: Box<crate::core::routing::Ring>) -> bool {
        let raw_value = Box::into_raw(r);
        let rc = unsafe {
            api!(RedisModule_ModuleTypeSetValue)(
                self.ptr,
                RING_TYPE.load(Ordering::Relaxed),
                raw_value.cast::<c_void>(),
            )
        };
        if rc != raw::REDISMODULE_OK as c_int {
            drop(unsafe { Box::from_raw(raw_value) });
            return false;
        }
        true
    }
}

impl Ctx {
    /// Propagates `SESSION.RING.APPLY key payload`: the whole ring.
    pub fn replicate_ring(self, key: RStr, payload: &[u8]) {
        unsafe {
            api!(RedisModule_Replicate)(
                self.0,
                c"SESSION.RING.APPLY".as_ptr(),
                c"sb".as_ptr(),
                key,
                payload.as_ptr().cast::<c_char>(),
                payload.len(),
            )
        };
    }

    /// Propagates `SESSION.RING.APPLYLOAD key at name load ...`; `pairs`
    /// (never empty) are the caller's arguments, passed by reference.
    pub fn replicate_ring_loads(self, key: RStr, at: i64, pairs: &[RStr]) {
        unsafe {
            api!(RedisModule_Replicate)(
                self.0,
                c"SESSION.RING.APPLYLOAD".as_ptr(),
                c"slv".as_ptr(),
                key,
                at as std::os::raw::c_longlong,
                pairs.as_ptr(),
                pairs.len(),
            )
        };
    }
}
