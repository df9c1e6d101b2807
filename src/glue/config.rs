//! Module options: load arguments (`--loadmodule <so> idle 60000`) and
//! `CONFIG SET session.<name>`. The values live in atomics read on every
//! command. Each default is written once, here (`lib.rs` registers them).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;

use redis_module::{Context, RedisGILGuard};

use crate::core::session::{Limits, Timeouts};

pub const DEFAULT_IDLE: i64 = 1_800_000;
pub const DEFAULT_ABSOLUTE: i64 = 604_800_000;
pub const DEFAULT_GRACE: i64 = 60_000;
pub const DEFAULT_TOUCH_RESOLUTION: i64 = 1000;
pub const DEFAULT_REVOKED_RETENTION: i64 = 3_600_000;
pub const DEFAULT_MAX_DATA_BYTES: i64 = 65_536;
pub const DEFAULT_MAX_FIELDS: i64 = 256;
pub const DEFAULT_MAX_META: i64 = 32;
pub const DEFAULT_KEY_PREFIX: &str = "sess:";

pub static IDLE: AtomicI64 = AtomicI64::new(DEFAULT_IDLE);
pub static ABSOLUTE: AtomicI64 = AtomicI64::new(DEFAULT_ABSOLUTE);
pub static GRACE: AtomicI64 = AtomicI64::new(DEFAULT_GRACE);
pub static TOUCH_RESOLUTION: AtomicI64 = AtomicI64::new(DEFAULT_TOUCH_RESOLUTION);
pub static REVOKED_RETENTION: AtomicI64 = AtomicI64::new(DEFAULT_REVOKED_RETENTION);
pub static MAX_DATA_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_DATA_BYTES);
pub static MAX_FIELDS: AtomicI64 = AtomicI64::new(DEFAULT_MAX_FIELDS);
pub static MAX_META: AtomicI64 = AtomicI64::new(DEFAULT_MAX_META);

pub static KEY_PREFIX: LazyLock<RedisGILGuard<String>> =
    LazyLock::new(|| RedisGILGuard::new(DEFAULT_KEY_PREFIX.into()));

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
