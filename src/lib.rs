//! redis-session: a native session data type for Redis.
//!
//! This file is the module's whole surface: the data type, the command
//! table, the options. `core` holds the session logic in plain Rust; `glue`
//! binds it to Redis. The README's command reference is the contract.

mod alloc;
pub mod core;
mod glue;

use std::os::raw::c_int;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{raw, redis_module, Context, InfoContext, RedisResult, RedisString, Status};

use glue::config::*;
use glue::datatype::SESSION_TYPE;
use glue::info::section as info;
use glue::rm::{self, register, Ctx};
use glue::{cmd_index, cmd_internal, cmd_keyring, cmd_session, cmd_tenant, events, guard};

/// The command table, in three groups: keyed commands (first/last/step
/// key 1, 1, 1), keyless ones, and the effect commands. Each row: name,
/// handler, flags, arity. Effect commands are refused at run time to
/// anything but the primary's link and the AOF loader (`guard::run`), and
/// registered so that no ACL category an operator grants covers them
/// (`register::internal_command`).
macro_rules! command_table {
    (
        keyed { $($kname:literal, $khandler:path, $kflags:literal, $karity:literal;)* }
        keyless { $($name:literal => $handler:path, $flags:literal, $arity:literal;)* }
        internal { $($iname:literal => ($ihandler:path) $iflags:literal, $iarity:literal;)* }
    ) => {
        fn register_commands(ctx: Ctx) -> Status {
            $(command_row!(ctx, client, $kname, $khandler, $kflags, (1, 1, 1), $karity);)*
            $(command_row!(ctx, client, $name, $handler, $flags, (0, 0, 0), $arity);)*
            $(command_row!(ctx, internal, $iname, $ihandler, $iflags, (1, 1, 1), $iarity);)*
            Status::Ok
        }
    };
}

/// Registers one row of the table, its handler run by `guard::run`.
macro_rules! command_row {
    ($ctx:ident, $caller:ident, $name:literal, $handler:path, $flags:literal, $keys:expr, $arity:literal) => {{
        extern "C" fn handler(ctx: *mut raw::RedisModuleCtx, argv: *mut rm::RStr, argc: c_int) -> c_int {
            guard::run(ctx, argv, argc, $name, $arity, guard::Caller::$caller, $handler)
        }
        let registered = match guard::Caller::$caller {
            guard::Caller::client => register::command($ctx, $name, handler, $flags, $keys),
            guard::Caller::internal => register::internal_command($ctx, $name, handler, $flags, $keys),
        };
        if !registered {
            $ctx.log_warning(concat!("session: could not register ", $name));
            return Status::Err;
        }
    }};
}

command_table! {
    keyed {
        "session.create", cmd_session::create, "write deny-oom", -2;
        "session.get", cmd_session::get, "readonly fast may-replicate", -2;
        "session.renew", cmd_session::renew, "write fast", -2;
        "session.set", cmd_session::set, "write deny-oom", -3;
        "session.cas", cmd_session::cas, "write deny-oom", -3;
        "session.revoke", cmd_session::revoke, "write fast", -2;
        "session.ttl", cmd_session::ttl, "readonly fast", 2;
    }
    keyless {
        "session.list" => cmd_index::list, "readonly", 3;
        "session.revokeall" => cmd_index::revoke_all, "write", -3;
        "session.count" => cmd_index::count, "readonly", -2;
        "session.stats" => cmd_index::stats, "readonly", -1;
        "session.tenant|set" => cmd_tenant::set, "write", -4;
        "session.tenant|get" => cmd_tenant::get, "readonly", 3;
        "session.tenant|del" => cmd_tenant::del, "write", 3;
        "session.tenant|list" => cmd_tenant::list, "readonly", 2;
        "session.keyring|reload" => cmd_keyring::reload, "admin", 2;
        "session.keyring|list" => cmd_keyring::list, "readonly admin", 2;
    }
    // The effects (glue::wire), from the primary's link and the AOF only.
    internal {
        "session.apply" => (cmd_internal::apply) "admin deny-script deny-oom", -3;
        "session.applyset" => (cmd_internal::apply_set) "admin deny-script deny-oom", -5;
        "session.applyrenew" => (cmd_internal::apply_renew) "admin deny-script", 5;
    }
}

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    if let Err(missing) = rm::check_api() {
        ctx.log_warning(&format!(
            "session: this Redis lacks {missing}; Redis 7.0 or later is required"
        ));
        return Status::Err;
    }
    let ctx = Ctx(ctx.ctx);
    rm::key::set_session_type(*SESSION_TYPE.raw_type.borrow());
    register::set_module_options(ctx);
    let keyfile = glue::config::keyfile(ctx.0);
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
    let applied = glue::cmdinfo::apply(ctx, |m| ctx.log_warning(m));
    ctx.log_notice(&format!("session: server features in use: {applied:?}"));
    if !events::subscribe(ctx) {
        ctx.log_warning("session: could not subscribe to server and keyspace events");
        return Status::Err;
    }
    Status::Ok
}

redis_module! {
    name: "session",
    version: 1,
    allocator: (alloc::ModuleAlloc, alloc::ModuleAlloc),
    data_types: [SESSION_TYPE],
    init: init,
    info: info,
    configurations: [
        i64: [
            ["idle", &IDLE, DEFAULT_IDLE, 1, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["absolute", &ABSOLUTE, DEFAULT_ABSOLUTE, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["grace", &GRACE, DEFAULT_GRACE, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["touch-resolution", &TOUCH_RESOLUTION, DEFAULT_TOUCH_RESOLUTION, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["revoked-retention", &REVOKED_RETENTION, DEFAULT_REVOKED_RETENTION, 0, core::session::TIME_MAX, ConfigurationFlags::DEFAULT, None],
            ["max-data-bytes", &MAX_DATA_BYTES, DEFAULT_MAX_DATA_BYTES, 0, 512 * 1024 * 1024, ConfigurationFlags::DEFAULT, None],
            ["max-fields", &MAX_FIELDS, DEFAULT_MAX_FIELDS, 0, 1_000_000, ConfigurationFlags::DEFAULT, None],
            ["max-meta", &MAX_META, DEFAULT_MAX_META, 0, 1_000_000, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["key-prefix", &*KEY_PREFIX, DEFAULT_KEY_PREFIX, ConfigurationFlags::DEFAULT, None],
            ["keyfile", &*KEYFILE, "", ConfigurationFlags::IMMUTABLE, None],
        ],
        bool: [],
        enum: [],
        module_args_as_configuration: true,
    ]
}
