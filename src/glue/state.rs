//! Module memory shared by the commands and callbacks: the per-subject
//! index, the counters and the tenant table.

use std::cell::UnsafeCell;

use crate::core::index::Index;
use crate::core::stats::Stats;
use crate::core::tenants::Table;

#[derive(Default)]
pub struct State {
    pub index: Index,
    pub stats: Stats,
    pub tenants: Table,
    /// The session key deleted last (db, key, tenant), so that the `expired`
    /// or `evicted` notification that follows the deletion can be counted.
    pub last_unlinked: Option<(usize, Vec<u8>, Vec<u8>)>,
    /// Keys for sealing data at rest (module option `keyfile`).
    pub keyring: Option<crate::core::seal::Keyring>,
    /// Whether this load indexes values as `rdb_load` reads them (the index
    /// was empty when it started); otherwise it is rebuilt at the end.
    pub index_while_loading: bool,
}

/// Session values freed while a load runs. `free` may run on a lazy-free
/// thread, so this is an atomic, not part of [`State`]. Any such free means
/// a loaded value may have been dropped after `rdb_load` indexed it (an
/// expired key discarded, a key replaced), so the index is rebuilt.
pub static FREED_WHILE_LOADING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Set while Redis loads an RDB or AOF. An atomic, like the count above,
/// because `free` reads it.
static LOADING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether Redis is loading an RDB or AOF now.
pub fn loading() -> bool {
    LOADING.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_loading(on: bool) {
    LOADING.store(on, std::sync::atomic::Ordering::SeqCst);
}

/// State only ever touched from Redis's main thread (commands, keyspace and
/// server events, type callbacks other than `free`), or from the forked
/// child that writes an RDB, which has a copy of its own.
struct GilCell(UnsafeCell<Option<State>>);

// SAFETY: see above; Redis runs all of these on one thread.
unsafe impl Sync for GilCell {}

static STATE: GilCell = GilCell(UnsafeCell::new(None));

/// Runs `f` with the module state. Callers never nest calls to `with`.
pub fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    // SAFETY: single-threaded access (see GilCell); no caller re-enters.
    let slot = unsafe { &mut *STATE.0.get() };
    f(slot.get_or_insert_with(State::default))
}
