//! Redis glue: thin layers binding `core` to the module API.

pub mod apply;
pub mod cmd_index;
pub mod cmd_internal;
pub mod cmd_keyring;
pub mod cmd_ring;
pub mod cmd_session;
pub mod cmd_tenant;
pub mod cmdinfo;
pub mod config;
pub mod datatype;
pub mod events;
pub mod guard;
pub mod helpers;
pub mod info;
pub mod parse;
pub mod ring_type;
pub mod rm;
pub mod sealing;
pub mod state;
pub mod wire;
