//! The one wrapper every command handler runs in: arity check, panic guard
//! and the mapping of errors to Redis error replies with their code word.

use std::borrow::Cow;
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

    /// Arguments `from..` as Redis passed them, except the two at `skip`
    /// (an option and its value): what an effect command passes on as is.
    pub fn raw_rest(&self, from: usize, skip: Option<usize>) -> Cow<'a, [RStr]> {
        without_pair(self.argv, from, skip)
    }

    /// The bytes of argument `i` (empty past the end; handlers check lengths).
    pub fn get(&self, i: usize) -> &'a [u8] {
        match self.argv.get(i) {
            Some(&s) => rm::bytes(s),
            None => &[],
        }
    }
}

/// `items[from..]` less the two items at `skip` (when it lies there):
/// borrowed unless the pair sits in the middle.
fn without_pair<T: Clone>(items: &[T], from: usize, skip: Option<usize>) -> Cow<'_, [T]> {
    let rest = items.get(from..).unwrap_or(&[]);
    match skip.and_then(|at| at.checked_sub(from)) {
        None => rest.into(),
        Some(0) => rest.get(2..).unwrap_or(&[]).into(),
        Some(n) => {
            let (head, tail) = rest.split_at(n.min(rest.len()));
            head.iter()
                .chain(tail.iter().skip(2))
                .cloned()
                .collect::<Vec<_>>()
                .into()
        }
    }
}

/// Arity as Redis declares it: `n` exactly, or `-n` for at least n.
pub type Arity = i32;

pub(crate) fn run(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut RStr,
    argc: c_int,
    name: &str,
    arity: Arity,
    handler: fn(Ctx, Args) -> CmdResult,
) -> c_int {
    let ctx = Ctx(ctx);
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

#[cfg(test)]
mod tests {
    use super::without_pair;

    #[test]
    fn without_pair_drops_the_option_and_its_value() {
        let argv = [0, 1, 2, 3, 4, 5, 6];
        assert_eq!(&*without_pair(&argv, 2, None), &[2, 3, 4, 5, 6]);
        assert_eq!(&*without_pair(&argv, 2, Some(2)), &[4, 5, 6]);
        assert_eq!(&*without_pair(&argv, 2, Some(4)), &[2, 3, 6]);
        assert_eq!(&*without_pair(&argv, 2, Some(5)), &[2, 3, 4]);
        assert_eq!(&*without_pair(&argv, 2, Some(6)), &[2, 3, 4, 5]);
        assert_eq!(
            &*without_pair(&argv, 2, Some(1)),
            &[2, 3, 4, 5, 6],
            "before `from`: ignored"
        );
        assert_eq!(&*without_pair(&argv, 9, Some(9)), &[] as &[i32]);
        assert!(matches!(
            without_pair(&argv, 2, Some(2)),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
