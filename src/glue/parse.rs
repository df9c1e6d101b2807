//! Argument parsing shared by the command files: option words, integers
//! and counted lists, each refusing bad input with the error the README's
//! *Errors* section names. Every function takes any [`Argv`]: a command's
//! arguments, or plain byte slices in unit tests.

use std::borrow::Cow;

use super::guard::{Args, CmdError};
use super::rm::RStr;
pub use crate::core::effect::{FieldWrite, Pairs};
use crate::core::session::TIME_MAX;

/// A command's arguments, argv[0] being the command name.
pub trait Argv<'a> {
    /// An argument as it arrived, for passing it on uncopied.
    type Raw: Copy;
    fn len(&self) -> usize;
    /// The bytes of argument `i` (empty past the end; callers check lengths).
    fn get(&self, i: usize) -> &'a [u8];
    /// Arguments `from..` as they arrived, less the two at `skip` (an
    /// option and its value): what an effect passes on as is.
    fn raw_rest(&self, from: usize, skip: Option<usize>) -> Cow<'_, [Self::Raw]>;
}

impl<'a> Argv<'a> for Args<'a> {
    type Raw = RStr;
    fn len(&self) -> usize {
        Args::len(self)
    }
    fn get(&self, i: usize) -> &'a [u8] {
        Args::get(self, i)
    }
    fn raw_rest(&self, from: usize, skip: Option<usize>) -> Cow<'_, [RStr]> {
        without_pair(self.argv(), from, skip)
    }
}

impl<'a> Argv<'a> for [&'a [u8]] {
    type Raw = &'a [u8];
    fn len(&self) -> usize {
        <[&[u8]]>::len(self)
    }
    fn get(&self, i: usize) -> &'a [u8] {
        <[&[u8]]>::get(self, i).copied().unwrap_or_default()
    }
    fn raw_rest(&self, from: usize, skip: Option<usize>) -> Cow<'_, [&'a [u8]]> {
        without_pair(self, from, skip)
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
pub fn value<'a, A: Argv<'a> + ?Sized>(args: &A, i: usize) -> Result<&'a [u8], CmdError> {
    if i + 1 >= args.len() {
        return Err(CmdError::Syntax);
    }
    Ok(args.get(i + 1))
}

/// `WORD n item...` at `i`, each item `per` arguments long: returns the
/// arguments of the items and the index after them.
pub fn counted<'a, A: Argv<'a> + ?Sized>(
    args: &A,
    i: usize,
    per: usize,
) -> Result<(std::ops::Range<usize>, usize), CmdError> {
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

/// Field/value pairs from the arguments in `range`.
pub fn pairs<'a, A: Argv<'a> + ?Sized>(args: &A, range: std::ops::Range<usize>) -> Pairs<'a> {
    range.step_by(2).map(|i| (args.get(i), args.get(i + 1))).collect()
}

/// A field-level write's options from argv[`from`] on: `[IFVERSION v]
/// [META n name value ...] [UNSET n field ...] [DATA field value ...]`, each
/// at most once, DATA last (SESSION.SET; its effect SESSION.APPLYSET takes
/// the same without IFVERSION). Its `rest` is the options less IFVERSION.
pub fn field_write<'s, 'a: 's, A: Argv<'a> + ?Sized>(
    args: &'s A,
    from: usize,
    cmd: &str,
    if_version: bool,
) -> Result<FieldWrite<'s, A::Raw>, CmdError> {
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
        meta: meta.unwrap_or_default(),
        unset: unset.unwrap_or_default(),
        data: data.unwrap_or_default(),
        rest: args.raw_rest(from, version.map(|(at, _)| at)),
    })
}

/// `DATA field value ...` taking every argument from `i` on: an even,
/// non-zero count, or the command's arity error.
pub fn data_tail<'a, A: Argv<'a> + ?Sized>(args: &A, i: usize, cmd: &str) -> Result<Pairs<'a>, CmdError> {
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

    #[test]
    fn field_write_passes_on_its_options_less_ifversion() {
        let args: Vec<&[u8]> = vec![b"SESSION.SET", b"k", b"DATA", b"a", b"1"];
        let w = field_write(&args[..], 2, "session.set", true).unwrap();
        assert_eq!(&*w.rest, &args[2..]);
        let args: Vec<&[u8]> = vec![
            b"SESSION.SET",
            b"k",
            b"UNSET",
            b"1",
            b"x",
            b"IFVERSION",
            b"3",
            b"DATA",
            b"a",
            b"1",
        ];
        let w = field_write(&args[..], 2, "session.set", true).unwrap();
        assert_eq!(w.if_version, Some(3));
        assert_eq!(&*w.rest, &[&b"UNSET"[..], b"1", b"x", b"DATA", b"a", b"1"][..]);
        assert!(field_write(&args[..], 2, "session.applyset", false).is_err());
        let none: Vec<&[u8]> = vec![b"SESSION.SET", b"k", b"IFVERSION", b"3"];
        assert!(field_write(&none[..], 2, "session.set", true).is_err());
    }

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
        assert!(matches!(without_pair(&argv, 2, Some(2)), Cow::Borrowed(_)));
    }
}
