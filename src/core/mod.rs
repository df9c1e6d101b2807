//! Session logic in plain Rust: no Redis types anywhere below here, so all
//! of it is unit- and property-tested without a server.

pub mod effect;
pub mod encoding;
pub mod flatmap;
pub mod index;
pub mod keys;
pub mod packed;
pub mod routing;
pub mod seal;
pub mod session;
pub mod stats;
pub mod tenants;
