//! The keyed session commands: CREATE, GET, RENEW, SET, CAS, REVOKE, TTL.
//! Each parses its arguments, opens the key once, runs a transition of
//! `core::effect` and hands the effect to the applier (`apply::commit`).

use super::apply::{self, Value};
use super::guard::{Args, CmdError, CmdResult};
use super::helpers::{
    check_key, live_sessions, lookup, open_live, revoke_by_name, tenant_limits, tenant_settings, Found, WRITE,
};
use super::parse::{self, is, once};
use super::rm::{self, Ctx, Key, Slot};
use super::{config, sealing};
use crate::core::effect::{self, Effect, FieldWrite, Whole};
use crate::core::flatmap::FlatMap;
use crate::core::index::Before;
use crate::core::keys::SessionKey;
use crate::core::session::{check_reason, Flags, Limits, Session, State, Timeouts};
use crate::core::stats::Counts;
use crate::core::tenants::{self, Cap};

/// SESSION.CREATE key [SUBJECT s] [IDLE ms] [ABSOLUTE ms] [GRACE ms] [META n name value ...] [DATA field value ...]
pub fn create(ctx: Ctx, args: Args) -> CmdResult {
    let k = check_key(ctx, &args)?;
    let tenant = k.tenant;
    let (mut subject, mut idle, mut absolute, mut grace, mut meta) = (None, None, None, None, None);
    let mut data = Vec::new();
    let mut i = 2;
    while i < args.len() {
        let opt = args.get(i);
        if is(opt, "SUBJECT") {
            once(&mut subject, parse::value(&args, i)?)?;
            i += 2;
        } else if is(opt, "IDLE") {
            once(&mut idle, parse::time(parse::value(&args, i)?, 1)?)?;
            i += 2;
        } else if is(opt, "ABSOLUTE") {
            once(&mut absolute, parse::time(parse::value(&args, i)?, 0)?)?;
            i += 2;
        } else if is(opt, "GRACE") {
            once(&mut grace, parse::time(parse::value(&args, i)?, 0)?)?;
            i += 2;
        } else if is(opt, "META") {
            let (range, next) = parse::counted(&args, i, 2)?;
            once(&mut meta, parse::pairs(&args, range))?;
            i = next;
        } else if is(opt, "DATA") {
            data = parse::data_tail(&args, i, "session.create")?;
            break;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let settings = tenant_settings(tenant);
    let defaults = settings.timeouts(config::default_timeouts());
    let t = Timeouts {
        idle: idle.unwrap_or(defaults.idle),
        absolute: absolute.unwrap_or(defaults.absolute),
        grace: grace.unwrap_or(defaults.grace),
    };
    let subject = subject.unwrap_or_default();
    let now = rm::now_ms();
    let session = Session::create(
        now,
        subject,
        t,
        FlatMap::from_pairs(meta.unwrap_or_default()),
        FlatMap::from_pairs(data),
        &settings.limits(config::limits()),
    )?;
    let key = Key::open(ctx, args.raw(1), true);
    match key.slot() {
        Slot::Other => return Err(CmdError::WrongType),
        Slot::Session(s) if s.state(now) != State::Expired => return Err(CmdError::Exists),
        _ => {}
    }
    if settings.maxpersubject.unwrap_or(0) > 0 && !subject.is_empty() {
        let live = live_sessions(ctx, tenant, subject, now);
        match settings.cap(subject, live.len()) {
            Cap::Room => {}
            Cap::Reject(why) => return Err(CmdError::Limit(why)),
            Cap::Evict(n) => {
                for name in tenants::oldest(live, n) {
                    revoke_by_name(ctx, &name, tenant, b"evicted: session limit", now);
                }
            }
        }
    }
    let e: apply::Effect = Effect::Whole(Whole::Created);
    let s = apply::commit(
        ctx,
        &key,
        args.raw(1),
        Some(tenant),
        Value::New(Box::new(session)),
        &e,
    )?;
    ctx.reply_int(s.version);
    Ok(())
}

/// Which data fields a read returns.
enum DataView {
    All,
    /// The argument positions of the requested field names.
    Fields(std::ops::Range<usize>),
    None,
}

/// SESSION.GET key [TOUCH] [FIELDS n field ...] [NODATA] [VALUES] [PACKED]
pub fn get(ctx: Ctx, args: Args) -> CmdResult {
    let k = check_key(ctx, &args)?;
    let tenant = k.tenant;
    let mut touch = false;
    let mut values = false;
    let mut packed = false;
    let mut view = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args.get(i);
        if is(opt, "TOUCH") && !touch {
            touch = true;
            i += 1;
        } else if is(opt, "VALUES") && !values {
            values = true;
            i += 1;
        } else if is(opt, "PACKED") && !packed {
            packed = true;
            i += 1;
        } else if is(opt, "NODATA") {
            once(&mut view, DataView::None)?;
            i += 1;
        } else if is(opt, "FIELDS") {
            let (range, next) = parse::counted(&args, i, 1)?;
            once(&mut view, DataView::Fields(range))?;
            i = next;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    // VALUES answers the named fields alone: it needs FIELDS, and is
    // already the smallest reply (PACKED with it is refused).
    if values && (packed || !matches!(view, Some(DataView::Fields(_)))) {
        return Err(CmdError::Syntax);
    }
    if touch {
        touch_allowed(ctx, args.raw(1))?;
    }
    let now = rm::now_ms();
    let key = Key::open(ctx, args.raw(1), touch);
    let found = open_live(&key, now);
    let Ok(Some(s)) = found else {
        if !matches!(found, Err(CmdError::WrongType)) {
            apply::count(tenant, Counts::MISSES, false);
        }
        return found.map(|_| ctx.reply_null());
    };
    let view = view.unwrap_or(DataView::All);
    // Subject, meta and data are separate allocations; start loading the
    // ones the reply reads (VALUES reads only data) instead of waiting for
    // each in turn.
    if !values {
        crate::core::flatmap::prefetch(&s.subject, 1);
        s.meta.prefetch();
    }
    if !matches!(view, DataView::None) {
        s.data.prefetch();
    }
    // Sealed data is opened before anything changes, so a value that fails
    // to open leaves the session untouched.
    let opened = match view {
        DataView::None => None,
        _ if s.flags.contains(Flags::SEALED) => Some(sealing::open_data(s, args.get(1))?.into_owned()),
        _ => None,
    };
    let renewal = touch.then(|| effect::renew(s, now, None, config::touch_resolution()));
    apply::count(
        tenant,
        effect::read_counts(renewal.as_ref().map(|(r, _)| *r)),
        true,
    );
    let s: &Session = match renewal {
        Some((_, Some(e))) => apply::commit(ctx, &key, args.raw(1), Some(tenant), Value::InPlace(None), &e)?,
        _ => s,
    };
    let data = opened.as_ref().unwrap_or(&s.data);
    match view {
        DataView::Fields(range) if values => reply_values(ctx, &args, range, data),
        _ if packed => reply_packed(ctx, s, now, &args, &view, data),
        _ => reply_session(ctx, s, now, &args, &view, data),
    }
    Ok(())
}

/// A touch writes, so it is refused whole where a write is not allowed: on
/// a read-only replica (`READONLY`), and for a user whose ACL key patterns
/// do not let it write the key (`NOPERM`; `%R~` patterns let a user read
/// but not renew). `SESSION.GET` is a `readonly` command, so Redis checked
/// only read access before calling it.
fn touch_allowed(ctx: Ctx, key: rm::RStr) -> Result<(), CmdError> {
    let flags = ctx.flags();
    if flags & rm::FROM_PRIMARY_OR_LOADING != 0 {
        return Ok(());
    }
    if flags & rm::READONLY_REPLICA != 0 {
        return Err(CmdError::ReadOnly);
    }
    if !ctx.client_acl_allows_arg(key, WRITE) {
        return Err(CmdError::NoPermWrite);
    }
    Ok(())
}

/// The requested data fields that the session has, each once, in the
/// order asked.
fn wanted<'a>(
    args: &Args<'a>,
    range: std::ops::Range<usize>,
    data: &'a FlatMap,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone + 'a {
    let args = *args;
    range.clone().enumerate().filter_map(move |(n, j)| {
        let f = args.get(j);
        let first = !range.clone().take(n).any(|i| args.get(i) == f);
        data.get(f).filter(|_| first).map(|v| (f, v))
    })
}

thread_local! {
    /// The buffer PACKED replies are written into, kept between commands
    /// (Redis runs commands on one thread).
    static PACKED_BUF: std::cell::RefCell<crate::core::packed::Writer> =
        std::cell::RefCell::new(crate::core::packed::Writer::new());
}

/// Largest buffer kept between PACKED replies.
const PACKED_KEEP: usize = 64 * 1024;

/// `PACKED`: the session map as one MessagePack bulk string (README,
/// "Packed replies"), written into one reused buffer and handed to Redis
/// with one reply call.
fn reply_packed(ctx: Ctx, s: &Session, now: i64, args: &Args, view: &DataView, data: &FlatMap) {
    PACKED_BUF.with(|cell| {
        let Ok(mut w) = cell.try_borrow_mut() else {
            ctx.reply_error("ERR internal error");
            return;
        };
        w.reset(PACKED_KEEP);
        let state = s.state(now);
        match view {
            DataView::None => w.session(s, state, None::<(usize, std::iter::Empty<_>)>),
            DataView::All => {
                w.reserve(crate::core::packed::Writer::size_hint(s) + data.payload_bytes() + 10 * data.len());
                w.session(s, state, Some((data.len(), data.iter())))
            }
            DataView::Fields(range) => {
                let it = wanted(args, range.clone(), data);
                w.session(s, state, Some((it.clone().count(), it)))
            }
        }
        ctx.reply_bulk(w.bytes());
    })
}

/// `GET ... FIELDS n f ... VALUES`: the value of each named field in the
/// order asked, nil where the session has no such field (the shape of HMGET).
fn reply_values(ctx: Ctx, args: &Args, range: std::ops::Range<usize>, data: &FlatMap) {
    ctx.reply_array(range.len());
    for j in range {
        match data.get(args.get(j)) {
            Some(v) => ctx.reply_bulk(v),
            None => ctx.reply_null(),
        }
    }
}

fn reply_pairs<'a>(ctx: Ctx, len: usize, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    ctx.reply_map(len);
    for (k, v) in pairs {
        ctx.reply_bulk(k);
        ctx.reply_bulk(v);
    }
}

/// The session map of `SESSION.GET` (README command reference), written
/// straight from the stored value.
fn reply_session(ctx: Ctx, s: &Session, now: i64, args: &Args, view: &DataView, data: &FlatMap) {
    ctx.reply_map(if matches!(view, DataView::None) { 9 } else { 10 });
    ctx.reply_bulk(b"subject");
    ctx.reply_bulk(&s.subject);
    ctx.reply_bulk(b"created");
    ctx.reply_int(s.created);
    ctx.reply_bulk(b"version");
    ctx.reply_int(s.version);
    ctx.reply_bulk(b"state");
    ctx.reply_simple(s.state(now).name());
    ctx.reply_bulk(b"last_access");
    ctx.reply_int(s.last_access);
    ctx.reply_bulk(b"idle_deadline");
    ctx.reply_int(s.idle_deadline());
    ctx.reply_bulk(b"absolute_deadline");
    ctx.reply_int(if s.absolute_deadline > 0 {
        s.absolute_deadline
    } else {
        -1
    });
    ctx.reply_bulk(b"grace_until");
    ctx.reply_int(s.grace_until());
    ctx.reply_bulk(b"meta");
    reply_pairs(ctx, s.meta.len(), s.meta.iter());
    match view {
        DataView::None => {}
        DataView::All => {
            ctx.reply_bulk(b"data");
            reply_pairs(ctx, data.len(), data.iter());
        }
        DataView::Fields(range) => {
            // A field asked for twice is answered once; the length goes
            // first, so the reply stays one contiguous buffer.
            let it = wanted(args, range.clone(), data);
            ctx.reply_bulk(b"data");
            reply_pairs(ctx, it.clone().count(), it);
        }
    }
}

/// SESSION.RENEW key [IDLE ms]
pub fn renew(ctx: Ctx, args: Args) -> CmdResult {
    let k = check_key(ctx, &args)?;
    let tenant = k.tenant;
    let idle = match args.len() {
        2 => None,
        4 if is(args.get(2), "IDLE") => Some(parse::time(args.get(3), 1)?),
        _ => return Err(CmdError::Syntax),
    };
    let now = rm::now_ms();
    let key = Key::open(ctx, args.raw(1), true);
    let Some(s) = open_live(&key, now)? else {
        ctx.reply_null();
        return Ok(());
    };
    let (r, e) = effect::renew(s, now, idle, config::touch_resolution());
    apply::count(tenant, effect::renew_counts(r), true);
    let s: &Session = match e {
        Some(e) => apply::commit(ctx, &key, args.raw(1), Some(tenant), Value::InPlace(None), &e)?,
        None => s,
    };
    ctx.reply_int(s.ms_to_idle_deadline(now));
    Ok(())
}

/// SESSION.SET key [IFVERSION v] [META n name value ...] [UNSET n field ...] [DATA field value ...]
pub fn set(ctx: Ctx, args: Args) -> CmdResult {
    let k = check_key(ctx, &args)?;
    let w: FieldWrite<rm::RStr> = parse::field_write(&args, 2, "session.set", true)?;
    write_data(ctx, &args, &k, |s, limits| effect::set(s, &w, limits))
}

/// Opens the session of argv[1] (nil when missing), runs a data write on its
/// plaintext under the tenant's limits and commits its effect, replying with
/// the new version; a refused write leaves the stored value as it was.
fn write_data<'w>(
    ctx: Ctx,
    args: &Args,
    k: &SessionKey,
    f: impl FnOnce(&mut Session, &Limits) -> Result<apply::Effect<'w>, crate::core::session::Error>,
) -> CmdResult {
    let key = Key::open(ctx, args.raw(1), true);
    let Some(s) = open_live(&key, rm::now_ms())? else {
        ctx.reply_null();
        return Ok(());
    };
    // The write copies the whole data map, checks the meta limits and then
    // looks the subject up in the index.
    s.prefetch_all();
    let before = Before::of(s);
    let stored = sealing::unseal_for_write(s, args.get(1))?;
    match f(s, &tenant_limits(k.tenant)) {
        Ok(e) => {
            let s = apply::commit(ctx, &key, args.raw(1), Some(k.tenant), Value::InPlace(before), &e)?;
            ctx.reply_int(s.version);
            Ok(())
        }
        Err(e) => {
            sealing::restore_sealed(s, stored);
            apply::count(k.tenant, effect::refusal_counts(&e), true);
            Err(e.into())
        }
    }
}

/// SESSION.CAS key version [DATA field value ...]
pub fn cas(ctx: Ctx, args: Args) -> CmdResult {
    let k = check_key(ctx, &args)?;
    let version = parse::at_least(args.get(2), 0)?;
    let data = match args.len() {
        3 => Vec::new(),
        _ if is(args.get(3), "DATA") => parse::data_tail(&args, 3, "session.cas")?,
        _ => return Err(CmdError::Syntax),
    };
    write_data(ctx, &args, &k, |s, limits| {
        effect::cas(s, version, FlatMap::from_pairs(data), limits)
    })
}

/// SESSION.REVOKE key [REASON text]
pub fn revoke(ctx: Ctx, args: Args) -> CmdResult {
    let k = check_key(ctx, &args)?;
    let tenant = k.tenant;
    let reason: &[u8] = match args.len() {
        2 => b"",
        4 if is(args.get(2), "REASON") => args.get(3),
        _ => return Err(CmdError::Syntax),
    };
    check_reason(reason)?;
    let now = rm::now_ms();
    let key = Key::open(ctx, args.raw(1), true);
    match lookup(&key, now)? {
        Found::Missing | Found::Revoked(_) => ctx.reply_int(0),
        Found::Live(s) => {
            let before = Before::of(s);
            let e = effect::revoke(s, now, reason, config::revoked_retention());
            apply::commit(ctx, &key, args.raw(1), Some(tenant), Value::InPlace(before), &e)?;
            ctx.reply_int(1);
        }
    }
    Ok(())
}

/// SESSION.TTL key
pub fn ttl(ctx: Ctx, args: Args) -> CmdResult {
    check_key(ctx, &args)?;
    let now = rm::now_ms();
    let key = Key::open(ctx, args.raw(1), false);
    let Some(s) = open_live(&key, now)? else {
        ctx.reply_null();
        return Ok(());
    };
    let t = s.ttl(now);
    ctx.reply_map(4);
    ctx.reply_bulk(b"state");
    ctx.reply_simple(t.state.name());
    ctx.reply_bulk(b"idle_ms");
    ctx.reply_int(t.idle_ms);
    ctx.reply_bulk(b"absolute_ms");
    ctx.reply_int(t.absolute_ms);
    ctx.reply_bulk(b"grace_ms");
    ctx.reply_int(t.grace_ms);
    Ok(())
}
