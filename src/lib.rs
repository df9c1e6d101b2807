//! redis-session: a native session data type for Redis.
//!
//! This file is the module's whole surface: the data type, the command
//! table, the options. `core` holds the session logic in plain Rust; `glue`
//! binds it to Redis.

mod alloc;
pub mod core;
mod glue;

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{raw, redis_module, Context, InfoContext, RedisResult, RedisString, Status};

use glue::config::*;
use glue::datatype::SESSION_TYPE;
use glue::ring_type::RING_TYPE;
use glue::{cmd_index, cmd_internal, cmd_keyring, cmd_ring, cmd_session, cmd_tenant, events, guard, rm};

type CmdFunc = extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// Registers one command; `parent|sub` names a subcommand (its container is
/// created on first use), so each subcommand carries its own flags.
fn register(ctx: &Context, name: &str, handler: CmdFunc, flags: &str, keys: (c_int, c_int, c_int)) -> bool {
    let ok = raw::REDISMODULE_OK as c_int;
    let (parent, sub) = name.split_once('|').unwrap_or((name, ""));
    let (Ok(flags), Ok(cparent), Ok(csub)) = (CString::new(flags), CString::new(parent), CString::new(sub))
    else {
        return false;
    };
    unsafe {
        if sub.is_empty() {
            return rm::api!(RedisModule_CreateCommand)(
                ctx.ctx,
                cparent.as_ptr(),
                Some(handler),
                flags.as_ptr(),
                keys.0,
                keys.1,
                keys.2,
            ) == ok;
        }
        let mut container = rm::api!(RedisModule_GetCommand)(ctx.ctx, cparent.as_ptr());
        if container.is_null() {
            if rm::api!(RedisModule_CreateCommand)(ctx.ctx, cparent.as_ptr(), None, c"".as_ptr(), 0, 0, 0)
                != ok
            {
                return false;
            }
            container = rm::api!(RedisModule_GetCommand)(ctx.ctx, cparent.as_ptr());
        }
        rm::api!(RedisModule_CreateSubcommand)(
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

/// The command table: name, handler, flags, first/last/step key, arity.
macro_rules! command_table {
    ($([$name:literal, $handler:path, $flags:literal, $first:literal, $last:literal, $step:literal, $arity:literal]),* $(,)?) => {
        fn register_commands(ctx: &Context) -> Status {
            $({
                extern "C" fn handler(
                    ctx: *mut raw::RedisModuleCtx,
                    argv: *mut *mut raw::RedisModuleString,
                    argc: c_int,
                ) -> c_int {
                    guard::run(ctx, argv, argc, $name, $arity, $handler)
                }
                if !register(ctx, $name, handler, $flags, ($first, $last, $step)) {
                    ctx.log_warning(concat!("session: could not register ", $name));
                    return Status::Err;
                }
            })*
            Status::Ok
        }
    };
}

command_table! {
    ["session.create", cmd_session::create, "write deny-oom", 1, 1, 1, -2],
    ["session.get", cmd_session::get, "readonly fast may-replicate", 1, 1, 1, -2],
    ["session.renew", cmd_session::renew, "write fast", 1, 1, 1, -2],
    ["session.set", cmd_session::set, "write deny-oom", 1, 1, 1, -3],
    ["session.cas", cmd_session::cas, "write deny-oom", 1, 1, 1, -3],
    ["session.revoke", cmd_session::revoke, "write fast", 1, 1, 1, -2],
    ["session.ttl", cmd_session::ttl, "readonly fast", 1, 1, 1, 2],
    ["session.list", cmd_index::list, "readonly", 0, 0, 0, 3],
    ["session.revokeall", cmd_index::revoke_all, "write", 0, 0, 0, -3],
    ["session.count", cmd_index::count, "readonly", 0, 0, 0, -2],
    ["session.stats", cmd_index::stats, "readonly", 0, 0, 0, -1],
    ["session.tenant|set", cmd_tenant::set, "write", 0, 0, 0, -4],
    ["session.tenant|get", cmd_tenant::get, "readonly", 0, 0, 0, 3],
    ["session.tenant|del", cmd_tenant::del, "write", 0, 0, 0, 3],
    ["session.tenant|list", cmd_tenant::list, "readonly", 0, 0, 0, 2],
    ["session.keyring|reload", cmd_keyring::reload, "admin", 0, 0, 0, 2],
    ["session.keyring|list", cmd_keyring::list, "readonly admin", 0, 0, 0, 2],
    ["session.apply", cmd_internal::apply, "write deny-oom", 1, 1, 1, -3],
    ["session.applyset", cmd_internal::apply_set, "write deny-oom", 1, 1, 1, -5],
    ["session.applyrenew", cmd_internal::apply_renew, "write fast", 1, 1, 1, 5],
    ["session.ring.set", cmd_ring::set, "write deny-oom", 1, 1, 1, -5],
    ["session.ring.node", cmd_ring::node, "write deny-oom fast", 1, 1, 1, -4],
    ["session.ring.load", cmd_ring::load, "write deny-oom fast", 1, 1, 1, -4],
    ["session.ring.get", cmd_ring::get, "readonly fast", 1, 1, 1, 2],
    ["session.route", cmd_ring::route, "readonly fast", 1, 1, 1, -3],
    ["session.ring.apply", cmd_ring::apply, "write deny-oom", 1, 1, 1, 3],
    ["session.ring.applyload", cmd_ring::apply_load, "write deny-oom", 1, 1, 1, -5],
}

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    if let Err(missing) = rm::check_api() {
        ctx.log_warning(&format!(
            "session: this Redis lacks {missing}; Redis 7.0 or later is required"
        ));
        return Status::Err;
    }
    rm::set_session_type(*SESSION_TYPE.raw_type.borrow());
    rm::set_ring_type(*RING_TYPE.raw_type.borrow());
    // Writes signal WATCH/tracking themselves, so that a read or a
    // suppressed touch (which open the key for writing) does not.
    unsafe {
        rm::api!(RedisModule_SetModuleOptions)(
            ctx.ctx,
            (raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED | raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS)
                as c_int,
        )
    };
    let keyfile = glue::config::keyfile(ctx.ctx);
    if !keyfile.is_empty() {
        match glue::sealing::load_keyfile(&keyfile) {
            Ok(ring) => glue::state::with(|st| st.keyring = Some(ring)),
            Err(e) => {
                ctx.log_warning(&format!("session: refusing to load: {e}"));
                return Status::Err;
            }
        }
    }
    if register_commands(ctx) == Status::Err {
        return Status::Err;
    }
    let applied = glue::cmdinfo::apply(rm::Ctx(ctx.ctx), |m| ctx.log_warning(m));
    ctx.log_notice(&format!("session: server features in use: {applied:?}"));
    if !events::subscribe(rm::Ctx(ctx.ctx)) {
        ctx.log_warning("session: could not subscribe to server and keyspace events");
        return Status::Err;
    }
    Status::Ok
}

/// The `INFO session` section: `session_<counter>` fields.
#[allow(deprecated)] // the builder cannot name the section after the module alone
fn info(ctx: &InfoContext, _for_crash_report: bool) {
    ctx.add_info_section(None);
    for (name, v) in cmd_index::stats_rows(None) {
        ctx.add_info_field_long_long(name, v as i64);
    }
    let (tenants, sealed, active) = glue::state::with(|st| {
        let active = st.keyring.as_ref().map(|r| r.active_id());
        let sealed = st.index.sealed_counts(active);
        let active = active.map(|a| String::from_utf8_lossy(a).into_owned());
        (st.tenants.len(), sealed, active)
    });
    ctx.add_info_field_long_long("tenants", tenants as i64);
    ctx.add_info_field_str("keyring_active", active.as_deref().unwrap_or(""));
    for (id, n) in sealed {
        ctx.add_info_field_long_long(
            &format!("sealed_values_{}", String::from_utf8_lossy(&id)),
            n as i64,
        );
    }
    glue::info::add_tenant_fields(ctx);
}

redis_module! {
    name: "session",
    version: 1,
    allocator: (alloc::ModuleAlloc, alloc::ModuleAlloc),
    data_types: [SESSION_TYPE, RING_TYPE],
    init: init,
    info: info,
    configurations: [
        i64: [
            ["idle", &IDLE, 1_800_000, 1, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["absolute", &ABSOLUTE, 604_800_000, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["grace", &GRACE, 60_000, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["touch-resolution", &TOUCH_RESOLUTION, 1000, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["revoked-retention", &REVOKED_RETENTION, 3_600_000, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["max-data-bytes", &MAX_DATA_BYTES, 65_536, 0, 512 * 1024 * 1024, ConfigurationFlags::DEFAULT, None],
            ["max-fields", &MAX_FIELDS, 256, 0, 1_000_000, ConfigurationFlags::DEFAULT, None],
            ["max-meta", &MAX_META, 32, 0, 1_000_000, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["key-prefix", &*KEY_PREFIX, "sess:", ConfigurationFlags::DEFAULT, None],
            ["keyfile", &*KEYFILE, "", ConfigurationFlags::IMMUTABLE, None],
        ],
        bool: [],
        enum: [],
        module_args_as_configuration: true,
    ]
}
