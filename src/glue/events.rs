//! Keeping the index and counters right through what happens to keys
//! outside our commands: deletion (the type's unlink callback), rename,
//! move, copy, restore, expiry and eviction (keyspace notifications), and
//! flush, swapdb and loading (server events).

use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::Ordering;

use redis_module::raw;

use super::apply::{self, index_value, unindex_value};
use super::guard::guarded;
use super::rm::{self, register, Ctx, Key, Slot};
use super::state;
use crate::core::session::Session;
use crate::core::stats::Counts;

/// The type's unlink callback: a session key is leaving the keyspace
/// (DEL, UNLINK, expiry, eviction, overwrite, the source of RENAME/MOVE).
pub(crate) extern "C" fn unlink2(octx: *mut raw::RedisModuleKeyOptCtx, value: *const c_void) {
    guarded((), || {
        // SAFETY: Redis hands back the pointers this type gave it.
        let Some(s) = (unsafe { value.cast::<Session>().as_ref() }) else {
            return;
        };
        let Some((name, db)) = rm::io::unlinked_key(octx) else {
            return;
        };
        // No command context here; the prefix lookup only needs the GIL,
        // which Redis holds while it calls unlink.
        let tenant = unindex_value(Ctx(std::ptr::null_mut()), db, name, s);
        state::with(|st| st.last_unlinked = tenant.map(|t| (db, name.to_vec(), t)));
    })
}

/// Keyspace notifications (generic, expired, evicted).
unsafe extern "C" fn on_keyspace_event(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    guarded((), || {
        let ctx = Ctx(ctx);
        let event = unsafe { std::ffi::CStr::from_ptr(event) }.to_bytes();
        let name = rm::bytes(key);
        match event {
            b"rename_to" | b"move_to" | b"copy_to" | b"restore" => {
                let k = Key::open(ctx, key, false);
                if let Slot::Session(s) = k.slot() {
                    index_value(ctx, name, s);
                }
            }
            b"expired" | b"evicted" => {
                let db = ctx.db();
                let unlinked = state::with(|st| st.last_unlinked.take());
                if let Some((udb, uname, tenant)) = unlinked {
                    if udb == db && uname == name {
                        let c = if event == b"expired" {
                            Counts::EXPIRED
                        } else {
                            Counts::EVICTED
                        };
                        apply::count(&tenant, c, true);
                    }
                }
            }
            _ => {}
        }
    });
    raw::REDISMODULE_OK as c_int
}

/// The server events: flush, swapdb and loading, each to its handler.
unsafe extern "C" fn on_server_event(
    ctx: *mut raw::RedisModuleCtx,
    e: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    guarded((), || match e.id {
        raw::REDISMODULE_EVENT_FLUSHDB => on_flush(sub, data),
        raw::REDISMODULE_EVENT_SWAPDB => on_swapdb(data),
        raw::REDISMODULE_EVENT_LOADING => on_loading(Ctx(ctx), sub),
        _ => {}
    })
}

fn on_flush(sub: u64, data: *mut c_void) {
    if sub != raw::REDISMODULE_SUBEVENT_FLUSHDB_START {
        return;
    }
    // SAFETY: Redis passes the flush info with this event.
    let info = unsafe { data.cast::<raw::RedisModuleFlushInfo>().as_ref() };
    let dbnum = info.map_or(-1, |i| i.dbnum);
    state::with(|st| {
        if dbnum < 0 {
            st.index.clear();
        } else {
            st.index.clear_db(dbnum as usize);
        }
    });
}

fn on_swapdb(data: *mut c_void) {
    // SAFETY: Redis passes the swapdb info with this event.
    if let Some(info) = unsafe { data.cast::<raw::RedisModuleSwapDbInfo>().as_ref() } {
        let (a, b) = (
            info.dbnum_first.max(0) as usize,
            info.dbnum_second.max(0) as usize,
        );
        state::with(|st| st.index.swap_dbs(a, b));
    }
}

fn on_loading(ctx: Ctx, sub: u64) {
    match sub {
        raw::REDISMODULE_SUBEVENT_LOADING_RDB_START
        | raw::REDISMODULE_SUBEVENT_LOADING_AOF_START
        | raw::REDISMODULE_SUBEVENT_LOADING_REPL_START => state::with(|st| {
            // An RDB loaded into a keyspace without live sessions:
            // rdb_load indexes each value as it reads it, no scan after.
            // (An AOF runs commands that move and replace keys; it is
            // indexed by a scan at the end.)
            st.index_while_loading =
                st.index.is_empty() && sub != raw::REDISMODULE_SUBEVENT_LOADING_AOF_START;
            st.index.clear();
            st.last_unlinked = None;
            state::FREED_WHILE_LOADING.store(0, Ordering::SeqCst);
            state::set_loading(true);
        }),
        raw::REDISMODULE_SUBEVENT_LOADING_ENDED | raw::REDISMODULE_SUBEVENT_LOADING_FAILED => {
            state::set_loading(false);
            let exact = state::with(|st| std::mem::take(&mut st.index_while_loading))
                && sub == raw::REDISMODULE_SUBEVENT_LOADING_ENDED
                && state::FREED_WHILE_LOADING.load(Ordering::SeqCst) == 0;
            if !exact {
                rebuild_index(ctx);
            }
        }
        _ => {}
    }
}

/// Rebuilds the index from the keyspace, once, after a load that could not
/// index as it went (see `on_loading`).
fn rebuild_index(ctx: Ctx) {
    let original = ctx.db();
    state::with(|st| st.index.clear());
    let mut db = 0;
    while ctx.select_db(db) {
        ctx.scan_sessions(|name, s| index_value(ctx, name, s));
        db += 1;
    }
    ctx.select_db(original);
}

/// Subscribes to every event above; false if Redis refused one.
pub fn subscribe(ctx: Ctx) -> bool {
    let servers = [
        raw::REDISMODULE_EVENT_FLUSHDB,
        raw::REDISMODULE_EVENT_SWAPDB,
        raw::REDISMODULE_EVENT_LOADING,
    ];
    let types = raw::NotifyEvent::GENERIC | raw::NotifyEvent::EXPIRED | raw::NotifyEvent::EVICTED;
    servers
        .into_iter()
        .all(|id| register::server_event(ctx, id, on_server_event))
        && register::keyspace_events(ctx, types, on_keyspace_event)
}
