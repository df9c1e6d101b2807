//! The ring data type's callbacks (SPEC §8): RDB save/load, AOF rewrite,
//! digest, memory usage, copy and free, each under a panic guard. The value
//! is `core::routing::Ring`; its encoding (with its own format byte) is the
//! one RDB, AOF, replication and DEBUG DIGEST all see.

use std::os::raw::{c_int, c_void};
use std::ptr;

use redis_module::native_types::RedisType;
use redis_module::raw;

use super::guard::guarded;
use super::rm::{io, propagate};
use super::wire;
use crate::core::routing::Ring;

/// The encoding version Redis records with each ring; `rdb_load` refuses
/// any it does not know.
pub const RING_ENCODING_VERSION: i32 = 1;

pub static RING_TYPE: RedisType = RedisType::new(
    "sess-ring",
    RING_ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

fn value<'a>(v: *mut c_void) -> Option<&'a Ring> {
    // SAFETY: Redis hands back the pointers this type gave it.
    unsafe { v.cast::<Ring>().as_ref() }
}

extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    guarded(ptr::null_mut(), || {
        if encver < 1 || encver > RING_ENCODING_VERSION {
            io::log_error(
                rdb,
                &format!("session: refused ring: unknown RDB encoding version {encver}"),
            );
            return ptr::null_mut();
        }
        match io::load_buffer(rdb, Ring::decode) {
            Some(Ok(r)) => Box::into_raw(Box::new(r)).cast::<c_void>(),
            Some(Err(e)) => {
                io::log_error(rdb, &format!("session: refused ring: {e}"));
                ptr::null_mut()
            }
            None => ptr::null_mut(),
        }
    })
}

extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, v: *mut c_void) {
    guarded((), || {
        if let Some(r) = value(v) {
            io::save_buffer(rdb, &r.encode());
        }
    })
}

/// One `SESSION.RING.APPLY key payload`: the whole ring with its absolute
/// load times; Redis writes the key's PEXPIREAT (if any) after it.
extern "C" fn aof_rewrite(aof: *mut raw::RedisModuleIO, key: *mut raw::RedisModuleString, v: *mut c_void) {
    guarded((), || {
        if let Some(r) = value(v) {
            propagate::emit_aof(aof, &wire::ring_apply(key, &r.encode()));
        }
    })
}

extern "C" fn mem_usage(v: *const c_void) -> usize {
    guarded(0, || value(v.cast_mut()).map_or(0, Ring::mem_usage))
}

/// The encoded ring, loads and their absolute times included.
extern "C" fn digest(md: *mut raw::RedisModuleDigest, v: *mut c_void) {
    guarded((), || {
        if let Some(r) = value(v) {
            io::digest(md, &r.encode());
        }
    })
}

extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    v: *const c_void,
) -> *mut c_void {
    guarded(ptr::null_mut(), || match value(v.cast_mut()) {
        Some(r) => Box::into_raw(Box::new(r.clone())).cast::<c_void>(),
        None => ptr::null_mut(),
    })
}

extern "C" fn free(v: *mut c_void) {
    guarded((), || {
        if !v.is_null() {
            // SAFETY: the pointer came from Box::into_raw in this module.
            drop(unsafe { Box::from_raw(v.cast::<Ring>()) });
        }
    })
}
