//! The floor under `SESSION.GET`: a module command that does nothing but
//! what any read of a session must do.
//!
//! `CEILING.GET key` opens the key for reading (the keyspace lookup a plain
//! `GET` also pays), answers nil when it is missing, and otherwise replies
//! with the contract's map for a session of the benchmark's shape (README, `SESSION.GET`:
//! ten header fields, four meta fields incl. a 111-byte user agent, four data
//! fields of 600 bytes in all), written from constants through the same
//! Redis 7.0 module reply calls the module uses. `CEILING.GET key FIELDS1`
//! answers the narrow read's map (the header, meta, and the 300-byte `cart`).
//!
//! `make bench` loads it next to the session module and measures it in the
//! same rounds: the gap between `GET` and `CEILING.GET` is what the reply
//! the contract asks for costs through the module API; the gap between
//! `CEILING.GET` and `SESSION.GET TOUCH` is the module's own work (decoding
//! nothing, renewing, counting). Built by `cargo build --release --example
//! reply_ceiling`; not part of the module.

use std::os::raw::{c_char, c_int, c_long};

use redis_module::{raw, redis_module, Context, RedisString, Status};

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                  (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const CSRF: &str = "mqrcAnAQrgsP2abJDm8-8TUJp93CeLxSrilqXh3wrqY";
const CART: [u8; 300] = [b'c'; 300];
const PREFS: [u8; 157] = [b'p'; 157];
const FLASH: [u8; 100] = [b'f'; 100];

fn bulk(ctx: *mut raw::RedisModuleCtx, s: &[u8]) {
    // SAFETY: the pointers were set by RedisModule_Init before any command
    // can run; `s` outlives the call, which copies it.
    unsafe { raw::RedisModule_ReplyWithStringBuffer.unwrap()(ctx, s.as_ptr().cast::<c_char>(), s.len()) };
}

fn int(ctx: *mut raw::RedisModuleCtx, v: i64) {
    // SAFETY: as in `bulk`.
    unsafe { raw::RedisModule_ReplyWithLongLong.unwrap()(ctx, v as _) };
}

fn map(ctx: *mut raw::RedisModuleCtx, n: c_long) {
    // SAFETY: as in `bulk`.
    unsafe { raw::RedisModule_ReplyWithMap.unwrap()(ctx, n) };
}

extern "C" fn ceiling_get(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes `argc` valid strings in `argv`; the key handle is
    // closed before returning.
    unsafe {
        if !(2..=3).contains(&argc) {
            return raw::RedisModule_WrongArity.unwrap()(ctx);
        }
        let key = raw::RedisModule_OpenKey.unwrap()(ctx, *argv.add(1), raw::REDISMODULE_READ as c_int);
        let kind = raw::RedisModule_KeyType.unwrap()(key);
        raw::RedisModule_CloseKey.unwrap()(key);
        if kind == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
            raw::RedisModule_ReplyWithNull.unwrap()(ctx);
            return raw::REDISMODULE_OK as c_int;
        }
        map(ctx, 10);
        bulk(ctx, b"subject");
        bulk(ctx, b"user-3631516");
        bulk(ctx, b"created");
        int(ctx, 1_795_549_359_422);
        bulk(ctx, b"version");
        int(ctx, 1);
        bulk(ctx, b"state");
        raw::RedisModule_ReplyWithSimpleString.unwrap()(ctx, c"active".as_ptr());
        bulk(ctx, b"last_access");
        int(ctx, 1_795_549_361_809);
        bulk(ctx, b"idle_deadline");
        int(ctx, 1_795_551_161_809);
        bulk(ctx, b"absolute_deadline");
        int(ctx, 1_796_154_159_422);
        bulk(ctx, b"grace_until");
        int(ctx, 1_795_551_221_809);
        bulk(ctx, b"meta");
        map(ctx, 4);
        for (n, v) in [
            ("ip", "10.0.19.92"),
            ("locale", "en-GB"),
            ("node", "web-00"),
            ("ua", UA),
        ] {
            bulk(ctx, n.as_bytes());
            bulk(ctx, v.as_bytes());
        }
        bulk(ctx, b"data");
        if argc == 3 {
            map(ctx, 1);
            bulk(ctx, b"cart");
            bulk(ctx, &CART);
        } else {
            map(ctx, 4);
            for (f, v) in [
                (&b"cart"[..], &CART[..]),
                (b"csrf", CSRF.as_bytes()),
                (b"flash", &FLASH),
                (b"prefs", &PREFS),
            ] {
                bulk(ctx, f);
                bulk(ctx, v);
            }
        }
        raw::REDISMODULE_OK as c_int
    }
}

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // SAFETY: called from OnLoad with a valid context; the strings are static.
    let rc = unsafe {
        raw::RedisModule_CreateCommand.unwrap()(
            ctx.ctx,
            c"ceiling.get".as_ptr(),
            Some(ceiling_get),
            c"readonly fast".as_ptr(),
            1,
            1,
            1,
        )
    };
    if rc == raw::REDISMODULE_OK as c_int {
        Status::Ok
    } else {
        Status::Err
    }
}

redis_module! {
    name: "ceiling",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    commands: [],
}
