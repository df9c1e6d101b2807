//! Per-tenant lines of `INFO session`, one dict field per tenant in the
//! style of `INFO keyspace`:
//!
//! ```text
//! session_tenant_acme:sessions=3,created=5,hits=9,...,data_bytes=120
//! ```
//!
//! A tenant is listed when it has live sessions, counters, or settings, so
//! a tenant without settings shows up as soon as it has sessions, and an
//! exporter that reads unknown INFO fields (or the `ops/` exporter script)
//! can find every tenant from one `INFO session`.

use std::collections::BTreeSet;

use redis_module::{raw, InfoContext};

use crate::core::keys::valid_tenant;
use crate::glue::{cmd_index, state};

/// Every tenant the server knows of, sorted: live sessions, counters, settings.
pub fn known_tenants() -> BTreeSet<Vec<u8>> {
    state::with(|st| {
        let mut out: BTreeSet<Vec<u8>> = st.tenants.keys().cloned().collect();
        out.extend(st.stats.tenants().map(<[u8]>::to_vec));
        out.extend(st.index.live_tenants().map(<[u8]>::to_vec));
        out
    })
}

/// Adds one `tenant_<name>:counter=value,...` field per known tenant, with
/// the counters `SESSION.STATS <tenant>` answers, in its order.
pub fn add_tenant_fields(ctx: &InfoContext) {
    for tenant in known_tenants() {
        // Tenant names are checked where they enter; a name that is not a
        // valid tenant (which would break the line's syntax) is left out.
        if !valid_tenant(&tenant) {
            continue;
        }
        let Ok(name) = std::str::from_utf8(&tenant) else {
            continue;
        };
        raw::add_info_begin_dict_field(ctx.ctx, &format!("tenant_{name}"));
        for (field, v) in cmd_index::stats_rows(Some(&tenant)) {
            raw::add_info_field_long_long(ctx.ctx, field, v as i64);
        }
        raw::add_info_end_dict_field(ctx.ctx);
    }
}
