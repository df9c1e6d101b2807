//! Replies, written straight into the client's buffer.

use std::ffi::CStr;
use std::os::raw::c_char;

use redis_module::{raw, InfoContext};

use super::{api, Ctx};

impl Ctx {
    pub fn reply_map(self, len: usize) {
        unsafe { api!(RedisModule_ReplyWithMap)(self.0, len as _) };
    }

    pub fn reply_array(self, len: usize) {
        unsafe { api!(RedisModule_ReplyWithArray)(self.0, len as _) };
    }

    pub fn reply_bulk(self, b: &[u8]) {
        unsafe { api!(RedisModule_ReplyWithStringBuffer)(self.0, b.as_ptr().cast::<c_char>(), b.len()) };
    }

    pub fn reply_simple(self, s: &CStr) {
        unsafe { api!(RedisModule_ReplyWithSimpleString)(self.0, s.as_ptr()) };
    }

    pub fn reply_int(self, v: i64) {
        unsafe { api!(RedisModule_ReplyWithLongLong)(self.0, v) };
    }

    pub fn reply_null(self) {
        unsafe { api!(RedisModule_ReplyWithNull)(self.0) };
    }

    /// An error reply; `msg` starts with its code word (`ERR`, `CONFLICT`, ...).
    pub fn reply_error(self, msg: &str) {
        let clean: Vec<u8> = msg
            .bytes()
            .map(|b| {
                if b == b'\r' || b == b'\n' || b == 0 {
                    b' '
                } else {
                    b
                }
            })
            .chain(std::iter::once(0))
            .collect();
        unsafe { api!(RedisModule_ReplyWithError)(self.0, clean.as_ptr().cast::<c_char>()) };
    }
}

/// One dict field of an `INFO` section: `<name>:field=value,...`.
pub fn info_dict(ctx: &InfoContext, name: &str, fields: &[(&str, u64)]) {
    raw::add_info_begin_dict_field(ctx.ctx, name);
    for (field, v) in fields {
        raw::add_info_field_long_long(ctx.ctx, field, *v as i64);
    }
    raw::add_info_end_dict_field(ctx.ctx);
}
