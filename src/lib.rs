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

use glue::cmdinfo::{self, ALL_KEYS, ALL_NODES, ALL_OK, ALL_SUM, NONE};
use glue::config::*;
use glue::datatype::SESSION_TYPE;
use glue::info::section as info;
use glue::ring_type::RING_TYPE;
use glue::rm::{self, register, Ctx};
use glue::{cmd_index, cmd_internal, cmd_keyring, cmd_ring, cmd_session, cmd_tenant, events, guard};

/// The command table, in three groups: keyed commands (first/last/step
/// key 1, 1, 1), keyless ones, and the effect commands. Each row: name,
/// handler, flags, arity, then what newer servers are told of it
/// (`glue::cmdinfo`): summary, ACL categories, command tips, and whether
/// it only reads its key. Effect commands are refused at run time to
/// anything but the primary's link and the AOF loader (`guard::run`), and
/// registered so that no ACL category an operator grants covers them
/// (`register::internal_command`, `cmdinfo::Info::in_session`).
macro_rules! command_table {
    (
        keyed { $($kname:literal, $khandler:path, $kflags:literal, $karity:literal, $kinfo:tt;)* }
        keyless { $($name:literal => $handler:path, $flags:literal, $arity:literal, $info:tt;)* }
        operator { $($oname:literal => [$ohandler:path] $oflags:literal, $oarity:literal, $oinfo:tt;)* }
        internal { $($iname:literal => ($ihandler:path) $iflags:literal, $iarity:literal, $iinfo:tt;)* }
    ) => {
        fn register_commands(ctx: Ctx) -> Status {
            let warn = |m: &str| ctx.log_warning(m);
            let mut applied = cmdinfo::begin(ctx, warn);
            $(command_row!(ctx, applied, client, $kname, $khandler, $kflags, (1, 1, 1), $karity, $kinfo);)*
            $(command_row!(ctx, applied, client, $name, $handler, $flags, (0, 0, 0), $arity, $info);)*
            $(command_row!(ctx, applied, client, $oname, $ohandler, $oflags, (1, 1, 1), $oarity, $oinfo);)*
            $(command_row!(ctx, applied, internal, $iname, $ihandler, $iflags, (1, 1, 1), $iarity, $iinfo);)*
            ctx.log_notice(&format!("session: server features in use: {applied:?}"));
            Status::Ok
        }
    };
}

/// Registers and describes one row of the table, its handler run by
/// `guard::run`.
macro_rules! command_row {
    ($ctx:ident, $applied:ident, $caller:ident, $name:literal, $handler:path, $flags:literal, $keys:expr, $arity:literal,
     ($summary:literal, $cats:literal, $tips:expr, $reads:literal)) => {{
        extern "C" fn handler(ctx: *mut raw::RedisModuleCtx, argv: *mut rm::RStr, argc: c_int) -> c_int {
            guard::run(ctx, argv, argc, $name, $arity, guard::Caller::$caller, $handler)
        }
        let registered = match guard::Caller::$caller {
            guard::Caller::client => register::command($ctx, $name, handler, $flags, $keys),
            guard::Caller::internal => {
                match register::internal_command($ctx, $name, handler, $flags, $keys) {
                    Some(hidden) => {
                        $applied.internal_flag = hidden == register::Hidden::Yes;
                        true
                    }
                    None => false,
                }
            }
        };
        if !registered {
            $ctx.log_warning(concat!("session: could not register ", $name));
            return Status::Err;
        }
        let info = cmdinfo::Info {
            // The server names a subcommand `parent|sub`, as the table does.
            name: match std::ffi::CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                Ok(n) => n,
                Err(_) => return Status::Err,
            },
            summary: $summary,
            categories: $cats,
            tips: $tips,
            reads_key: $reads,
            in_session: guard::Caller::$caller == guard::Caller::client,
        };
        cmdinfo::describe($ctx, &info, &mut $applied, |m| $ctx.log_warning(m));
    }};
}

command_table! {
    keyed {
        "session.create", cmd_session::create, "write deny-oom", -2, (c"Creates a session.", "write", NONE, false);
        "session.get", cmd_session::get, "readonly fast may-replicate", -2, (c"Reads a session; TOUCH also renews it.", "read fast", NONE, true);
        "session.renew", cmd_session::renew, "write fast", -2, (c"Renews a session.", "write fast", NONE, false);
        "session.set", cmd_session::set, "write deny-oom", -3, (c"Sets or removes data fields of a session.", "write", NONE, false);
        "session.cas", cmd_session::cas, "write deny-oom", -3, (c"Replaces a session's data if its version matches.", "write", NONE, false);
        "session.revoke", cmd_session::revoke, "write fast", -2, (c"Revokes a session.", "write fast", NONE, false);
        "session.ttl", cmd_session::ttl, "readonly fast", 2, (c"Time left on each of a session's clocks.", "read fast", NONE, true);
        "session.ring.set", cmd_ring::set, "write deny-oom", -5, (c"Replaces a routing ring's membership.", "write", NONE, false);
        "session.ring.node", cmd_ring::node, "write deny-oom fast", -4, (c"Changes one node of a routing ring.", "write fast", NONE, false);
        "session.ring.load", cmd_ring::load, "write deny-oom fast", -4, (c"Records the loads of routing ring nodes.", "write fast", NONE, false);
        "session.ring.get", cmd_ring::get, "readonly fast", 2, (c"A routing ring's nodes, weights, states and loads.", "read fast", NONE, true);
        "session.route", cmd_ring::route, "readonly fast", -3, (c"The node of a routing ring that serves an id.", "read fast", NONE, true);
    }
    keyless {
        "session.list" => cmd_index::list, "readonly", 3, (c"Keys of a subject's live sessions on this server.", "read", ALL_KEYS, false);
        "session.revokeall" => cmd_index::revoke_all, "write", -3, (c"Revokes every session of a subject on this server.", "write", ALL_SUM, false);
        "session.count" => cmd_index::count, "readonly", -2, (c"Live sessions of a tenant or subject on this server.", "read", ALL_SUM, false);
        "session.stats" => cmd_index::stats, "readonly", -1, (c"Counters of this server, or of one tenant.", "read", ALL_SUM, false);
        "session.tenant|set" => cmd_tenant::set, "write", -4, (c"Sets a tenant's settings.", "write", ALL_OK, false);
        "session.tenant|get" => cmd_tenant::get, "readonly", 3, (c"A tenant's settings.", "read", NONE, false);
        "session.tenant|del" => cmd_tenant::del, "write", 3, (c"Drops a tenant's settings.", "write", ALL_OK, false);
        "session.tenant|list" => cmd_tenant::list, "readonly", 2, (c"Tenants with settings.", "read", NONE, false);
        "session.keyring|reload" => cmd_keyring::reload, "admin", 2, (c"Re-reads the key file.", "admin dangerous", ALL_NODES, false);
        "session.keyring|list" => cmd_keyring::list, "readonly admin", 2, (c"Ids of the keys in the key file.", "admin dangerous", NONE, false);
    }
    // An operator's whole-value import (like RESTORE: @admin @dangerous).
    operator {
        "session.import" => [cmd_internal::import] "admin deny-oom deny-script may-replicate", 3, (c"Imports a whole encoded session (migration).", "admin dangerous", NONE, false);
    }
    // The effects (glue::wire), from the primary's link and the AOF only.
    internal {
        "session.apply" => (cmd_internal::apply) "admin deny-script deny-oom", -3, (c"Internal: a session write's effect.", "admin dangerous", NONE, false);
        "session.applyset" => (cmd_internal::apply_set) "admin deny-script deny-oom", -5, (c"Internal: a field write's effect.", "admin dangerous", NONE, false);
        "session.applyrenew" => (cmd_internal::apply_renew) "admin deny-script", 5, (c"Internal: a renewal's effect.", "admin dangerous", NONE, false);
        "session.ring.apply" => (cmd_ring::apply) "admin deny-script deny-oom", 3, (c"Internal: a ring write's effect.", "admin dangerous", NONE, false);
        "session.ring.applyload" => (cmd_ring::apply_load) "admin deny-script deny-oom", -5, (c"Internal: a ring load report's effect.", "admin dangerous", NONE, false);
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
    rm::key::set_ring_type(*RING_TYPE.raw_type.borrow());
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
    data_types: [SESSION_TYPE, RING_TYPE],
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
