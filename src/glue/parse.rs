//! Argument parsing shared by the command files: option words, integers
//! and counted lists, each refusing bad input with the SPEC's error.

use super::guard::{Args, CmdError};
use crate::core::session::TIME_MAX;

pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// A strict decimal integer, as Redis parses one (no sign but `-`, no spaces).
pub fn int(arg: &[u8]) -> Result<i64, CmdError> {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CmdError::NotInteger);
    }
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(CmdError::NotInteger)
}

/// A non-negative integer no smaller than `min`.
pub fn at_least(arg: &[u8], min: i64) -> Result<i64, CmdError> {
    let v = int(arg)?;
    if v < min {
        return Err(CmdError::NotInteger);
    }
    Ok(v)
}

/// A time in ms, `min..=TIME_MAX`.
pub fn time(arg: &[u8], min: i64) -> Result<i64, CmdError> {
    let v = at_least(arg, min)?;
    if v > TIME_MAX {
        return Err(CmdError::NotInteger);
    }
    Ok(v)
}

/// Sets `slot` once; a repeated option is a syntax error.
pub fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), CmdError> {
    if slot.is_some() {
        return Err(CmdError::Syntax);
    }
    *slot = Some(v);
    Ok(())
}

/// The value after the option word at `i`.
pub fn value<'a>(args: &Args<'a>, i: usize) -> Result<&'a [u8], CmdError> {
    if i + 1 >= args.len() {
        return Err(CmdError::Syntax);
    }
    Ok(args.get(i + 1))
}

/// `WORD n item...` at `i`, each item `per` arguments long: returns the
/// arguments of the items and the index after them.
pub fn counted(args: &Args, i: usize, per: usize) -> Result<(std::ops::Range<usize>, usize), CmdError> {
    let n = at_least(value(args, i)?, 0)? as usize;
    let start = i + 2;
    let end = n
        .checked_mul(per)
        .and_then(|k| start.checked_add(k))
        .ok_or(CmdError::Syntax)?;
    if end > args.len() {
        return Err(CmdError::Syntax);
    }
    Ok((start..end, end))
}

/// Name/value pairs borrowed from the arguments.
pub type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Field/value pairs from the arguments in `range`.
pub fn pairs<'a>(args: &Args<'a>, range: std::ops::Range<usize>) -> Pairs<'a> {
    range.step_by(2).map(|i| (args.get(i), args.get(i + 1))).collect()
}

/// A field-level write's options from argv[`from`] on: `[IFVERSION v]
/// [META n name value ...] [UNSET n field ...] [DATA field value ...]`, each
/// at most once, DATA last (SESSION.SET; its effect SESSION.APPLYSET takes
/// the same without IFVERSION).
pub struct FieldWrite<'a> {
    pub if_version: Option<i64>,
    /// Where `IFVERSION` sat in argv: the effect passes on the rest.
    pub if_version_at: Option<usize>,
    pub meta: Pairs<'a>,
    pub unset: Vec<&'a [u8]>,
    pub data: Pairs<'a>,
}

impl<'a> FieldWrite<'a> {
    pub fn parse(args: &Args<'a>, from: usize, cmd: &str, if_version: bool) -> Result<Self, CmdError> {
        let (mut version, mut meta, mut unset, mut data) = (None, None, None, None);
        let mut i = from;
        while i < args.len() {
            let opt = args.get(i);
            if if_version && is(opt, "IFVERSION") {
                once(&mut version, (i, at_least(value(args, i)?, 0)?))?;
                i += 2;
            } else if is(opt, "META") {
                let (range, next) = counted(args, i, 2)?;
                once(&mut meta, pairs(args, range))?;
                i = next;
            } else if is(opt, "UNSET") {
                let (range, next) = counted(args, i, 1)?;
                once(&mut unset, range.map(|j| args.get(j)).collect::<Vec<_>>())?;
                i = next;
            } else if is(opt, "DATA") {
                data = Some(data_tail(args, i, cmd)?);
                break;
            } else {
                return Err(CmdError::Syntax);
            }
        }
        if meta.is_none() && unset.is_none() && data.is_none() {
            return Err(CmdError::Syntax);
        }
        Ok(FieldWrite {
            if_version: version.map(|(_, v)| v),
            if_version_at: version.map(|(at, _)| at),
            meta: meta.unwrap_or_default(),
            unset: unset.unwrap_or_default(),
            data: data.unwrap_or_default(),
        })
    }
}

/// `DATA field value ...` taking every argument from `i` on: an even,
/// non-zero count, or the command's arity error.
pub fn data_tail<'a>(args: &Args<'a>, i: usize, cmd: &str) -> Result<Pairs<'a>, CmdError> {
    let rest = args.len() - i - 1;
    if rest == 0 || !rest.is_multiple_of(2) {
        return Err(CmdError::Err(format!(
            "wrong number of arguments for '{cmd}' command"
        )));
    }
    Ok(pairs(args, i + 1..args.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        assert_eq!(int(b"42").ok(), Some(42));
        assert_eq!(int(b"-7").ok(), Some(-7));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1.0",
            b"0x10",
            b"-",
            b"99999999999999999999",
        ] {
            assert!(int(bad).is_err(), "{:?}", bad);
        }
        assert!(time(b"-1", 0).is_err());
        assert!(time(b"0", 1).is_err());
        assert!(time(b"3153600000001", 0).is_err());
        assert_eq!(time(b"3153600000000", 0).ok(), Some(TIME_MAX));
    }
}
