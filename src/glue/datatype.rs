//! The session data type's callbacks: RDB save/load, AOF rewrite, digest,
//! memory usage, copy and free. Each runs under a panic guard.

use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::native_types::RedisType;
use redis_module::raw;

use super::guard::guarded;
use super::rm::io::{self, Io};
use super::rm::propagate::emit_aof;
use super::{apply, sealing, state, wire};
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

extern "C" fn rdb_load(rdb: Io, encver: c_int) -> *mut c_void {
    guarded(ptr::null_mut(), || {
        if encver < 1 || encver > TYPE_ENCODING_VERSION {
            io::log_error(rdb, &format!("session: unknown RDB encoding version {encver}"));
            return ptr::null_mut();
        }
        match io::load_buffer(rdb, encoding::decode) {
            None => ptr::null_mut(),
            Some(Ok(mut s)) => {
                // While an RDB loads into an empty index, each value goes
                // into the index as it is read (see `events::on_loading`);
                // RESTORE and other loads of single values are indexed by
                // their keyspace events instead.
                if let Some(name) = io::key_name(rdb) {
                    sealing::open_on_arrival(&mut s, name);
                    apply::index_loaded(io::db(rdb), name, &s);
                }
                Box::into_raw(Box::new(s)).cast::<c_void>()
            }
            Some(Err(e)) => {
                io::log_error(rdb, &format!("session: refused value: {e}"));
                ptr::null_mut()
            }
        }
    })
}

extern "C" fn rdb_save(rdb: Io, v: *mut c_void) {
    guarded((), || {
        if let Some(s) = value(v) {
            // The encoder copies the whole session, cold when a save walks
            // the keyspace.
            s.prefetch_all();
            // Without a key name there is nothing to bind seals to; such a
            // value is sealed as the empty name (readable nowhere) rather
            // than written in plaintext.
            let name = io::key_name(rdb).unwrap_or_default();
            sealing::with_outgoing(s, name, |buf| io::save_buffer(rdb, buf))
        }
    })
}

/// Set in the AOF-rewriting child once it has written the tenant table.
static TENANTS_IN_AOF: AtomicBool = AtomicBool::new(false);

/// Writes `SESSION.TENANT SET ...` for every tenant into a rewritten AOF.
/// Redis 7.0 gives module aux data no place in an AOF without an RDB
/// preamble, so the table goes ahead of the first session the rewrite meets
/// (the rewrite runs in a forked child, whose flag starts clear).
fn emit_tenants(aof: Io) {
    if TENANTS_IN_AOF.swap(true, Ordering::Relaxed) {
        return;
    }
    let table = state::with(|st| st.tenants.clone());
    let mut scratch = Vec::new();
    for (name, s) in &table {
        if let Some(c) = wire::tenant_set(name, s, &mut scratch) {
            emit_aof(aof, &c);
        }
    }
}

extern "C" fn aux_save(rdb: Io, _when: c_int) {
    guarded((), || {
        let buf = state::with(|st| tenants::encode(&st.tenants));
        io::save_buffer(rdb, &buf);
    })
}

extern "C" fn aux_load(rdb: Io, encver: c_int, _when: c_int) -> c_int {
    let err = raw::REDISMODULE_ERR as c_int;
    guarded(err, || {
        if encver < 1 || encver > TYPE_ENCODING_VERSION {
            return err;
        }
        match io::load_buffer(rdb, tenants::decode) {
            Some(Ok(table)) => {
                state::with(|st| st.tenants = table);
                raw::REDISMODULE_OK as c_int
            }
            _ => err,
        }
    })
}

extern "C" fn aof_rewrite(aof: Io, key: *mut raw::RedisModuleString, v: *mut c_void) {
    guarded((), || {
        emit_tenants(aof);
        if let Some(s) = value(v) {
            sealing::with_outgoing(s, super::rm::bytes(key), |buf| {
                emit_aof(aof, &wire::apply(key, buf, false))
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
            io::digest(md, &encoding::encode(s));
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
