//! Keys and values: opening a key, what it holds, storing a session, its
//! expiry, module strings, and walking the keyspace.

use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;

use super::{api, bytes, Ctx, RStr};
use crate::core::session::Session;

/// The session type, as registered with Redis (set once at load).
static SESSION_TYPE: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(ptr::null_mut());

pub fn set_session_type(t: *mut raw::RedisModuleType) {
    SESSION_TYPE.store(t, Ordering::Relaxed);
}

fn session_type() -> *mut raw::RedisModuleType {
    SESSION_TYPE.load(Ordering::Relaxed)
}

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

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            unsafe { api!(RedisModule_CloseKey)(self.ptr) };
        }
    }
}

/// A module string the module created, freed on drop. Created with a null
/// context where there is none (the AOF rewrite).
pub struct OwnedStr {
    ctx: Ctx,
    pub ptr: RStr,
}

impl OwnedStr {
    pub fn new(ctx: Ctx, b: &[u8]) -> OwnedStr {
        let ptr = unsafe { api!(RedisModule_CreateString)(ctx.0, b.as_ptr().cast::<c_char>(), b.len()) };
        OwnedStr { ctx, ptr }
    }

    pub fn from_int(ctx: Ctx, v: i64) -> OwnedStr {
        let ptr = unsafe { api!(RedisModule_CreateStringFromLongLong)(ctx.0, v) };
        OwnedStr { ctx, ptr }
    }
}

impl Drop for OwnedStr {
    fn drop(&mut self) {
        unsafe { api!(RedisModule_FreeString)(self.ctx.0, self.ptr) };
    }
}

impl Ctx {
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

// --- routing rings (SPEC §8): the ring type's slot --------------------------

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
            // Redis did not take ownership.
            drop(unsafe { Box::from_raw(raw_value) });
            return false;
        }
        true
    }
}
