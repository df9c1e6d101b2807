//! The session type's I/O: RDB buffers, the key an RDB callback works on,
//! I/O error logs, digests, and the unlink callback's key.

use std::ffi::CString;
use std::os::raw::{c_char, c_void};

use redis_module::raw;

use super::{api, bytes};

pub type Io = *mut raw::RedisModuleIO;

/// Reads one string buffer and calls `f` on it; `None` on an I/O error.
pub fn load_buffer<T>(io: Io, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    let mut len = 0usize;
    let buf = unsafe { api!(RedisModule_LoadStringBuffer)(io, &mut len) };
    if unsafe { api!(RedisModule_IsIOError)(io) } != 0 || buf.is_null() {
        return None;
    }
    // SAFETY: Redis returned a buffer of `len` bytes, freed below.
    let out = f(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) });
    unsafe { api!(RedisModule_Free)(buf.cast::<c_void>()) };
    Some(out)
}

pub fn save_buffer(io: Io, buf: &[u8]) {
    unsafe { api!(RedisModule_SaveStringBuffer)(io, buf.as_ptr().cast::<c_char>(), buf.len()) };
}

/// Logs why a value was refused while loading.
pub fn log_error(io: Io, msg: &str) {
    if let Ok(msg) = CString::new(msg) {
        unsafe { api!(RedisModule_LogIOError)(io, c"warning".as_ptr(), c"%s".as_ptr(), msg.as_ptr()) };
    }
}

/// The name of the key an RDB callback is saving or loading (Redis passes
/// it for RDB files, `DUMP`/`RESTORE` and `MIGRATE`).
pub fn key_name<'a>(io: Io) -> Option<&'a [u8]> {
    let name = unsafe { api!(RedisModule_GetKeyNameFromIO)(io) };
    (!name.is_null()).then(|| bytes(name.cast_mut()))
}

/// The database an RDB callback loads into.
pub fn db(io: Io) -> usize {
    unsafe { api!(RedisModule_GetDbIdFromIO)(io) }.max(0) as usize
}

/// Adds one value to `DEBUG DIGEST`.
pub fn digest(md: *mut raw::RedisModuleDigest, buf: &[u8]) {
    unsafe {
        api!(RedisModule_DigestAddStringBuffer)(md, buf.as_ptr().cast::<c_char>(), buf.len());
        api!(RedisModule_DigestEndSequence)(md);
    }
}

/// The key name and database an unlink callback is called for.
pub fn unlinked_key<'a>(octx: *mut raw::RedisModuleKeyOptCtx) -> Option<(&'a [u8], usize)> {
    let name = unsafe { api!(RedisModule_GetKeyNameFromOptCtx)(octx) };
    let db = unsafe { api!(RedisModule_GetDbIdFromOptCtx)(octx) }.max(0) as usize;
    (!name.is_null()).then(|| (bytes(name.cast_mut()), db))
}
