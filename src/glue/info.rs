//! The `INFO session` section: `session_<counter>` fields, the tenant
//! count, the active key, the sealed values per key id, and one dict field
//! per tenant in the style of `INFO keyspace`:
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

use redis_module::InfoContext;

use super::{helpers, rm, state};
use crate::core::keys::valid_tenant;

#[allow(deprecated)] // the builder cannot name the section after the module alone
pub fn section(ctx: &InfoContext, _for_crash_report: bool) {
    ctx.add_info_section(None);
    for (name, v) in helpers::stats_rows(None) {
        ctx.add_info_field_long_long(name, v as i64);
    }
    let (tenants, sealed, active) = state::with(|st| {
        let active = st.keyring.as_ref().map(|r| r.active_id());
        let sealed = st.index.sealed_counts(active);
        let active = active.map(|a| String::from_utf8_lossy(a).into_owned());
        (st.tenants.len(), sealed, active)
    });
    ctx.add_info_field_long_long("tenants", tenants as i64);
    ctx.add_info_field_str("keyring_active", active.as_deref().unwrap_or(""));
    for (id, n) in sealed {
        ctx.add_info_field_long_long(
            &format!("sealed_values_{}", String::from_utf8_lossy(&id)),
            n as i64,
        );
    }
    add_tenant_fields(ctx);
}

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
        rm::reply::info_dict(
            ctx,
            &format!("tenant_{name}"),
            &helpers::stats_rows(Some(&tenant)),
        );
    }
}
