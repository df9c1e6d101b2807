//! ACL checks of keys a keyless command names (a tenant's probe key).

use std::os::raw::c_int;

use redis_module::raw;

use super::{api, Ctx, OwnedStr, RStr};

/// Read access to keys (`REDISMODULE_CMD_KEY_ACCESS`).
pub const READ: u32 = raw::REDISMODULE_CMD_KEY_ACCESS;
/// Write access to keys (`REDISMODULE_CMD_KEY_UPDATE`).
pub const WRITE: u32 = raw::REDISMODULE_CMD_KEY_UPDATE;

impl Ctx {
    /// Whether the calling user's ACL key patterns allow `key` for `flags`
    /// ([`READ`], [`WRITE`]). Contexts without a user (replication, AOF)
    /// are allowed.
    pub fn acl_allows(self, key: &[u8], flags: u32) -> bool {
        // Redis 7.0 crashes in GetCurrentUserName for clients without a user
        // (the primary's link, the AOF loader): their commands were checked
        // where they were first run.
        self.is_primary_or_loading() || self.user_allows(flags, Probe::Owned(OwnedStr::new(self, key)))
    }

    /// [`Ctx::acl_allows`] for a key the command was given (no copy), in a
    /// context the caller knows is a client's (`rm::FROM_PRIMARY_OR_LOADING`
    /// not set).
    pub fn client_acl_allows_arg(self, key: RStr, flags: u32) -> bool {
        self.user_allows(flags, Probe::Arg(key))
    }

    fn user_allows(self, flags: u32, probe: Probe) -> bool {
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
            let rc = api!(RedisModule_ACLCheckKeyPermissions)(user, probe.ptr(), flags as c_int);
            api!(RedisModule_FreeModuleUser)(user);
            rc == raw::REDISMODULE_OK as c_int
        }
    }
}

/// A key name for an ACL check: one the module made, or an argument.
enum Probe {
    Owned(OwnedStr),
    Arg(RStr),
}

impl Probe {
    fn ptr(&self) -> RStr {
        match self {
            Probe::Owned(s) => s.ptr,
            Probe::Arg(p) => *p,
        }
    }
}
