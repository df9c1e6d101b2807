//! The one wrapper every command handler runs in: arity check, panic guard
//! and the mapping of errors to Redis error replies with their code word.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::raw;

use super::rm::{self, Ctx, RStr};
use crate::core::session::Error as SessionError;

/// Why a command was refused. Each variant answers with its code word first,
/// so clients and `INFO errorstats` can tell them apart.
#[derive(Debug)]
pub enum CmdError {
    Syntax,
    NotInteger,
    InvalidKey,
    WrongType,
    Exists,
    Conflict(i64),
    TooBig(String),
    Revoked(Vec<u8>),
    Limit(String),
    NoPerm(String),
    /// `TOUCH` by a user whose ACL does not allow writing the key.
    NoPermWrite,
    /// `TOUCH` on a read-only replica.
    ReadOnly,
    Sealed(String),
    Err(String),
}

impl CmdError {
    pub fn message(&self) -> String {
        match self {
            CmdError::Syntax => "ERR syntax error".into(),
            CmdError::NotInteger => "ERR value is not an integer or out of range".into(),
            CmdError::InvalidKey => "ERR invalid session key".into(),
            CmdError::WrongType => "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            CmdError::Exists => "EXISTS session already exists".into(),
            CmdError::Conflict(v) => format!("CONFLICT {v}"),
            CmdError::TooBig(what) => format!("TOOBIG {what}"),
            CmdError::Revoked(reason) => format!("REVOKED {}", String::from_utf8_lossy(reason)),
            CmdError::Limit(what) => format!("LIMIT {what}"),
            CmdError::Sealed(what) => format!("SEALED {what}"),
            CmdError::NoPerm(tenant) => {
                format!("NOPERM this user has no permissions to access tenant '{tenant}'")
            }
            CmdError::NoPermWrite => {
                "NOPERM this user has no permissions to write the key (TOUCH renews the session)".into()
            }
            CmdError::ReadOnly => {
                "READONLY You can't write against a read only replica (TOUCH renews the session; read without TOUCH here)"
                    .into()
            }
            CmdError::Err(msg) => format!("ERR {msg}"),
        }
    }
}

impl From<SessionError> for CmdError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Conflict(v) => CmdError::Conflict(v),
            SessionError::TooBig(what) => CmdError::TooBig(what),
            SessionError::Syntax => CmdError::Syntax,
        }
    }
}

pub type CmdResult = Result<(), CmdError>;

/// A command's arguments, argv[0] being the command name.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    argv: &'a [RStr],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.argv.len()
    }

    pub fn raw(&self, i: usize) -> RStr {
        self.argv.get(i).copied().unwrap_or(std::ptr::null_mut())
    }

    /// Every argument as Redis passed it.
    pub fn argv(&self) -> &'a [RStr] {
        self.argv
    }

    /// The bytes of argument `i` (empty past the end; handlers check lengths).
    pub fn get(&self, i: usize) -> &'a [u8] {
        match self.argv.get(i) {
            Some(&s) => rm::bytes(s),
            None => &[],
        }
    }
}

/// Arity as Redis declares it: `n` exactly, or `-n` for at least n.
pub type Arity = i32;

/// Who may send a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // named as the command table's rows read
pub enum Caller {
    /// Any client the ACL lets through.
    client,
    /// Only the primary's replication link and the AOF loader: the effect
    /// commands, which write whatever values they carry.
    internal,
}

pub(crate) fn run(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut RStr,
    argc: c_int,
    name: &str,
    arity: Arity,
    caller: Caller,
    handler: fn(Ctx, Args) -> CmdResult,
) -> c_int {
    let ctx = Ctx(ctx);
    // An effect command writes whatever values it carries (any version,
    // subject, deadline or size, past every limit): only the primary's
    // link and the AOF loader may send one. The context flags say which
    // sent this; a client, even one the ACL lets through, is refused.
    if caller == Caller::internal && !ctx.is_primary_or_loading() {
        ctx.reply_error(&format!(
            "ERR '{name}' is internal: only a primary's replication link or the AOF may send it"
        ));
        return raw::REDISMODULE_OK as c_int;
    }
    let argv: &[RStr] = if argv.is_null() || argc <= 0 {
        &[]
    } else {
        // SAFETY: Redis passes argc valid strings.
        unsafe { std::slice::from_raw_parts(argv, argc as usize) }
    };
    let n = argv.len() as i32;
    if (arity >= 0 && n != arity) || (arity < 0 && n < -arity) {
        ctx.reply_error(&format!("ERR wrong number of arguments for '{name}' command"));
        return raw::REDISMODULE_OK as c_int;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(ctx, Args { argv })));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => ctx.reply_error(&e.message()),
        Err(_) => ctx.reply_error("ERR internal error"),
    }
    raw::REDISMODULE_OK as c_int
}

/// Runs a type callback, turning a panic into `fallback`.
pub fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}
