//! The global allocator: Redis's own (so `INFO memory` and `maxmemory` see
//! every session byte) once Redis has handed the module its API, the system
//! allocator before that. Unit and property tests link this crate with no
//! server at all, so they run on the system allocator; inside Redis nothing
//! allocates before `RedisModule_OnLoad` sets the API pointers.

use std::alloc::{GlobalAlloc, Layout, System};

use redis_module::alloc::RedisAlloc;
use redis_module::raw;

pub struct ModuleAlloc;

fn in_redis() -> bool {
    // SAFETY: written once by Redis before any module code runs.
    unsafe { raw::RedisModule_Alloc }.is_some()
}

unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_redis() {
            RedisAlloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_redis() {
            RedisAlloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }
}
