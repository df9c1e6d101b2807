//! ACL checks of keys a keyless command names (a tenant's probe key).

use std::os::raw::c_int;

use redis_module::raw;

use super::{api, Ctx, OwnedStr};

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
        if self.is_primary_or_loading() {
            return true;
        }
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
            let probe = OwnedStr::new(self, key);
            let rc = api!(RedisModule_ACLCheckKeyPermissions)(user, probe.ptr, flags as c_int);
            api!(RedisModule_FreeModuleUser)(user);
            rc == raw::REDISMODULE_OK as c_int
        }
    }
}
