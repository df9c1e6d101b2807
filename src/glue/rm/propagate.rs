//! What a write sends out: effect commands to replicas and the AOF, the
//! `WATCH`/tracking signal and keyspace events. The commands themselves are
//! built by `glue::wire`; this only hands them to Redis.

use std::ffi::CStr;
use std::os::raw::c_char;

use redis_module::raw;

use super::{api, Ctx, OwnedStr, RStr};
use crate::glue::wire::{Arg, Command};

/// Calls `f` with a command's arguments as module strings: arguments passed
/// on as they arrived go by reference unless `copy_raw`; the others are
/// created here and freed after `f` (Redis keeps its own references).
fn with_argv<T>(ctx: Ctx, c: &Command<RStr>, copy_raw: bool, f: impl FnOnce(&[RStr]) -> T) -> T {
    const STACK: usize = 24;
    // At most every head argument is created here (`wire` caps the head).
    const _: () = assert!(crate::glue::wire::HEAD <= 16);
    let mut owned: [Option<OwnedStr>; 16] = Default::default();
    let mut n_owned = 0;
    let mut own = |s: OwnedStr| -> RStr {
        let p = s.ptr;
        if let Some(slot) = owned.get_mut(n_owned) {
            *slot = Some(s);
            n_owned += 1;
        }
        p
    };
    let mut stack = [std::ptr::null_mut(); STACK];
    let mut heap = Vec::new();
    let argv: &mut [RStr] = if c.argc() <= STACK {
        &mut stack[..c.argc()]
    } else {
        heap.resize(c.argc(), std::ptr::null_mut());
        &mut heap
    };
    for (slot, a) in argv.iter_mut().zip(c.head()) {
        *slot = match *a {
            Arg::Raw(r) if copy_raw => own(OwnedStr::new(ctx, super::bytes(r))),
            Arg::Raw(r) => r,
            Arg::Bytes(b) => own(OwnedStr::new(ctx, b)),
            Arg::Int(v) => own(OwnedStr::from_int(ctx, v)),
        };
    }
    argv[c.head().len()..].copy_from_slice(c.rest);
    f(argv)
}

impl Ctx {
    /// Propagates `c` to replicas and the AOF.
    pub fn replicate(self, c: &Command<RStr>) {
        with_argv(self, c, false, |argv| unsafe {
            api!(RedisModule_Replicate)(self.0, c.name.as_ptr(), c"v".as_ptr(), argv.as_ptr(), argv.len())
        });
    }

    /// Propagates the command being run as it was received.
    pub fn replicate_verbatim(self) {
        unsafe { api!(RedisModule_ReplicateVerbatim)(self.0) };
    }

    /// `WATCH` and client-side caching invalidation of `key`.
    pub fn signal_modified(self, key: RStr) {
        unsafe { api!(RedisModule_SignalModifiedKey)(self.0, key) };
    }

    /// A keyspace event of the module class on `key`.
    pub fn notify(self, event: &CStr, key: RStr) {
        unsafe {
            api!(RedisModule_NotifyKeyspaceEvent)(
                self.0,
                raw::NotifyEvent::MODULE.bits(),
                event.as_ptr(),
                key,
            )
        };
    }
}

/// Writes `c` into an AOF being rewritten. The key Redis hands the rewrite
/// lives on its stack and must not be retained: every argument is copied.
pub fn emit_aof(aof: *mut raw::RedisModuleIO, c: &Command<RStr>) {
    debug_assert!(c.rest.is_empty());
    with_argv(Ctx(std::ptr::null_mut()), c, true, |argv| unsafe {
        api!(RedisModule_EmitAOF)(
            aof,
            c.name.as_ptr(),
            c"v".as_ptr().cast::<c_char>(),
            argv.as_ptr(),
            argv.len(),
        )
    });
}
