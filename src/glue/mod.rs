//! Redis glue: thin layers binding `core` to the module API.

pub mod apply;
pub mod cmd_internal;
pub mod cmd_session;
pub mod config;
pub mod datatype;
pub mod guard;
pub mod parse;
pub mod rm;
