//! Module options: load arguments (`--loadmodule <so> idle 60000`) and
//! `CONFIG SET session.<name>`. The values live in atomics read on every
//! command.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;

use redis_module::{Context, RedisGILGuard};

use crate::core::session::{Limits, Timeouts};

pub static IDLE: AtomicI64 = AtomicI64::new(1_800_000);
pub static ABSOLUTE: AtomicI64 = AtomicI64::new(604_800_000);
pub static GRACE: AtomicI64 = AtomicI64::new(60_000);
pub static TOUCH_RESOLUTION: AtomicI64 = AtomicI64::new(1000);
pub static REVOKED_RETENTION: AtomicI64 = AtomicI64::new(3_600_000);
pub static MAX_DATA_BYTES: AtomicI64 = AtomicI64::new(65_536);
pub static MAX_FIELDS: AtomicI64 = AtomicI64::new(256);
pub static MAX_META: AtomicI64 = AtomicI64::new(32);

pub static KEY_PREFIX: LazyLock<RedisGILGuard<String>> = LazyLock::new(|| RedisGILGuard::new("sess:".into()));

fn get(v: &AtomicI64) -> i64 {
    v.load(Ordering::Relaxed)
}

pub fn default_timeouts() -> Timeouts {
    Timeouts {
        idle: get(&IDLE),
        absolute: get(&ABSOLUTE),
        grace: get(&GRACE),
    }
}

pub fn limits() -> Limits {
    Limits {
        max_data_bytes: get(&MAX_DATA_BYTES) as usize,
        max_fields: get(&MAX_FIELDS) as usize,
        max_meta: get(&MAX_META) as usize,
    }
}

pub fn touch_resolution() -> i64 {
    get(&TOUCH_RESOLUTION)
}

pub fn revoked_retention() -> i64 {
    get(&REVOKED_RETENTION)
}

/// Runs `f` with the configured key prefix.
pub fn with_prefix<T>(ctx: *mut redis_module::raw::RedisModuleCtx, f: impl FnOnce(&[u8]) -> T) -> T {
    let context = Context::new(ctx);
    let prefix = KEY_PREFIX.lock(&context);
    f(prefix.as_bytes())
}

/// Path of the key file that seals data at rest; empty = no sealing.
pub static KEYFILE: LazyLock<RedisGILGuard<String>> = LazyLock::new(|| RedisGILGuard::new(String::new()));

pub fn keyfile(ctx: *mut redis_module::raw::RedisModuleCtx) -> String {
    let context = Context::new(ctx);
    let path = KEYFILE.lock(&context);
    path.clone()
}
