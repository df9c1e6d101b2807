//! The `INFO session` section: `session_<counter>` fields, the tenant
//! count, the active key and the sealed values per key id.

use redis_module::InfoContext;

use super::{helpers, state};

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
}
