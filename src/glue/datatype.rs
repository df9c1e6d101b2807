//! The session data type's callbacks: RDB save/load, AOF rewrite, digest,
//! memory usage, copy and free. Each runs under a panic guard.

use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use redis_module::native_types::RedisType;
use redis_module::raw;

use std::sync::atomic::{AtomicBool, Ordering};

use super::apply;
use super::guard::guarded;
use super::rm::{api, Ctx};
use super::{sealing, state};
use crate::core::session::Session;
use crate::core::{encoding, tenants};

/// The encoding version Redis records with each value; `rdb_load` refuses
/// any it does not know.
pub const TYPE_ENCODING_VERSION: i32 = 1;

pub static SESSION_TYPE: RedisType = RedisType::new(
    "sessionT1",
    TYPE_ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as c_int,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: Some(super::events::unlink2),
    },
);

fn value<'a>(v: *mut c_void) -> Option<&'a Session> {
    // SAFETY: Redis hands back the pointers this type gave it.
    unsafe { v.cast::<Session>().as_ref() }
}

extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    guarded(ptr::null_mut(), || {
        if encver < 1 || encver > TYPE_ENCODING_VERSION {
            unsafe {
                api!(RedisModule_LogIOError)(
                    rdb,
                    c"warning".as_ptr(),
                    c"session: unknown RDB encoding version %d".as_ptr(),
                    encver,
                )
            };
            return ptr::null_mut();
        }
        let mut len = 0usize;
        let buf = unsafe { api!(RedisModule_LoadStringBuffer)(rdb, &mut len) };
        if unsafe { api!(RedisModule_IsIOError)(rdb) } != 0 || buf.is_null() {
            return ptr::null_mut();
        }
        let decoded = {
            // SAFETY: Redis returned a buffer of `len` bytes, freed below.
            let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
            encoding::decode(bytes)
        };
        unsafe { api!(RedisModule_Free)(buf.cast::<c_void>()) };
        match decoded {
            Ok(mut s) => {
                if let Some(name) = io_key_name(rdb) {
                    sealing::open_on_arrival(&mut s, name);
                    index_loaded(rdb, name, &s);
                }
                Box::into_raw(Box::new(s)).cast::<c_void>()
            }
            Err(e) => {
                if let Ok(msg) = std::ffi::CString::new(format!("session: refused value: {e}")) {
                    unsafe {
                        api!(RedisModule_LogIOError)(rdb, c"warning".as_ptr(), c"%s".as_ptr(), msg.as_ptr())
                    };
                }
                ptr::null_mut()
            }
        }
    })
}

/// While an RDB loads into an empty index, each value goes into the index
/// as it is read (see `events::on_loading`); RESTORE and other loads of
/// single values are indexed by their keyspace events instead.
fn index_loaded(rdb: *mut raw::RedisModuleIO, name: &[u8], s: &Session) {
    let Some(tenant) = apply::tenant_of(Ctx(std::ptr::null_mut()), name) else {
        return;
    };
    let db = unsafe { api!(RedisModule_GetDbIdFromIO)(rdb) }.max(0) as usize;
    state::with(|st| {
        if let (true, Some(v)) = (
            state::loading() && st.index_while_loading,
            apply::indexed(tenant, s),
        ) {
            st.index.add(db, name, &v);
        }
    });
}

/// The name of the key an RDB callback is saving or loading (Redis passes
/// it for RDB files, `DUMP`/`RESTORE` and `MIGRATE`).
fn io_key_name<'a>(io: *mut raw::RedisModuleIO) -> Option<&'a [u8]> {
    let name = unsafe { api!(RedisModule_GetKeyNameFromIO)(io) };
    (!name.is_null()).then(|| super::rm::bytes(name.cast_mut()))
}

extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, v: *mut c_void) {
    guarded((), || {
        if let Some(s) = value(v) {
            // The encoder copies the whole session, cold when a save walks
            // the keyspace.
            s.prefetch_all();
            // Without a key name there is nothing to bind seals to; such a
            // value is sealed as the empty name (readable nowhere) rather
            // than written in plaintext.
            let name = io_key_name(rdb).unwrap_or_default();
            sealing::with_outgoing(s, name, |buf| unsafe {
                api!(RedisModule_SaveStringBuffer)(rdb, buf.as_ptr().cast::<c_char>(), buf.len())
            })
        }
    })
}

/// Set in the AOF-rewriting child once it has written the tenant table.
static TENANTS_IN_AOF: AtomicBool = AtomicBool::new(false);

/// Writes `SESSION.TENANT SET ...` for every tenant into a rewritten AOF.
/// Redis 7.0 gives module aux data no place in an AOF without an RDB
/// preamble, so the table goes ahead of the first session the rewrite meets
/// (the rewrite runs in a forked child, whose flag starts clear).
fn emit_tenants(aof: *mut raw::RedisModuleIO) {
    if TENANTS_IN_AOF.swap(true, Ordering::Relaxed) {
        return;
    }
    let table = state::with(|st| st.tenants.clone());
    for (name, s) in &table {
        let mut args: Vec<Vec<u8>> = vec![b"SET".to_vec(), name.clone()];
        let mut push = |opt: &str, v: Option<String>| {
            if let Some(v) = v {
                args.push(opt.as_bytes().to_vec());
                args.push(v.into_bytes());
            }
        };
        push("IDLE", s.idle.map(|v| v.to_string()));
        push("ABSOLUTE", s.absolute.map(|v| v.to_string()));
        push("GRACE", s.grace.map(|v| v.to_string()));
        push("MAXDATA", s.maxdata.map(|v| v.to_string()));
        push("MAXPERSUBJECT", s.maxpersubject.map(|v| v.to_string()));
        push("ONLIMIT", s.onlimit.map(|v| v.name().to_string()));
        if args.len() <= 2 {
            continue;
        }
        let ptrs: Vec<(*const c_char, usize)> = args
            .iter()
            .map(|a| (a.as_ptr().cast::<c_char>(), a.len()))
            .collect();
        // EmitAOF is variadic; settings have at most 6 options, 14 arguments.
        let b = |i: usize| ptrs.get(i).copied().unwrap_or((ptr::null(), 0));
        let fmt = std::ffi::CString::new("b".repeat(ptrs.len())).unwrap_or_default();
        unsafe {
            api!(RedisModule_EmitAOF)(
                aof,
                c"SESSION.TENANT".as_ptr(),
                fmt.as_ptr(),
                b(0).0,
                b(0).1,
                b(1).0,
                b(1).1,
                b(2).0,
                b(2).1,
                b(3).0,
                b(3).1,
                b(4).0,
                b(4).1,
                b(5).0,
                b(5).1,
                b(6).0,
                b(6).1,
                b(7).0,
                b(7).1,
                b(8).0,
                b(8).1,
                b(9).0,
                b(9).1,
                b(10).0,
                b(10).1,
                b(11).0,
                b(11).1,
                b(12).0,
                b(12).1,
                b(13).0,
                b(13).1,
            )
        };
    }
}

extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    guarded((), || {
        let buf = state::with(|st| tenants::encode(&st.tenants));
        unsafe { api!(RedisModule_SaveStringBuffer)(rdb, buf.as_ptr().cast::<c_char>(), buf.len()) };
    })
}

extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, _when: c_int) -> c_int {
    let err = raw::REDISMODULE_ERR as c_int;
    guarded(err, || {
        if encver < 1 || encver > TYPE_ENCODING_VERSION {
            return err;
        }
        let mut len = 0usize;
        let buf = unsafe { api!(RedisModule_LoadStringBuffer)(rdb, &mut len) };
        if unsafe { api!(RedisModule_IsIOError)(rdb) } != 0 || buf.is_null() {
            return err;
        }
        let decoded = tenants::decode(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) });
        unsafe { api!(RedisModule_Free)(buf.cast::<c_void>()) };
        match decoded {
            Ok(table) => {
                state::with(|st| st.tenants = table);
                raw::REDISMODULE_OK as c_int
            }
            Err(_) => err,
        }
    })
}

extern "C" fn aof_rewrite(aof: *mut raw::RedisModuleIO, key: *mut raw::RedisModuleString, v: *mut c_void) {
    guarded((), || {
        emit_tenants(aof);
        if let Some(s) = value(v) {
            sealing::with_outgoing(s, super::rm::bytes(key), |buf| unsafe {
                api!(RedisModule_EmitAOF)(
                    aof,
                    c"SESSION.APPLY".as_ptr(),
                    c"sbc".as_ptr(),
                    key,
                    buf.as_ptr().cast::<c_char>(),
                    buf.len(),
                    c"NOEXPIRE".as_ptr(),
                )
            });
        }
    })
}

extern "C" fn mem_usage(v: *const c_void) -> usize {
    guarded(0, || value(v.cast_mut()).map_or(0, Session::mem_usage))
}

/// Every field goes into the digest: it is the encoded value.
extern "C" fn digest(md: *mut raw::RedisModuleDigest, v: *mut c_void) {
    guarded((), || {
        if let Some(s) = value(v) {
            let buf = encoding::encode(s);
            unsafe {
                api!(RedisModule_DigestAddStringBuffer)(md, buf.as_ptr().cast::<c_char>(), buf.len());
                api!(RedisModule_DigestEndSequence)(md);
            }
        }
    })
}

extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    v: *const c_void,
) -> *mut c_void {
    guarded(ptr::null_mut(), || match value(v.cast_mut()) {
        Some(s) => Box::into_raw(Box::new(s.clone())).cast::<c_void>(),
        None => ptr::null_mut(),
    })
}

extern "C" fn free(v: *mut c_void) {
    guarded((), || {
        if !v.is_null() {
            if state::loading() {
                state::FREED_WHILE_LOADING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // SAFETY: the pointer came from Box::into_raw in this module.
            drop(unsafe { Box::from_raw(v.cast::<Session>()) });
        }
    })
}
