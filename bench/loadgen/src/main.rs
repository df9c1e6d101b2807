//! loadgen — the part of redis-session's benchmark that `redis-benchmark`
//! cannot do: compare-and-set writes that follow each key's version (and
//! count `CONFLICT` replies instead of stopping), WATCH/MULTI/EXEC
//! transactions, and creates of fresh keys (where a repeated key answers
//! `EXISTS`).
//!
//! One thread, one epoll loop (mio), N connections, each sending a batch of
//! P requests and waiting for all P replies before the next batch — the same
//! closed loop as `redis-benchmark -c N -P P`. A request's latency is the time
//! from writing its batch to reading the batch's last reply.
//!
//! ```text
//! loadgen --port 6379 --mode cas --keys 100000 --key-prefix sess:bench: \
//!         --sid bQ7xZ2vK9mLp4TnR8wYc --probe session --conns 50 --pipeline 16 \
//!         --duration 3 -- SESSION.SET {key} IFVERSION {ver} DATA cart xyz
//! ```
//!
//! Modes:
//! - `cas`: each request is the template with `{key}` a random key of the
//!   population (`<key-prefix><sid><12-digit index>`) and `{ver}` the last
//!   version seen for it. An integer reply is the new version; an error
//!   `CONFLICT <n>` is a conflict and teaches the current version; nil is a
//!   missing key; any other error is an error. Each connection owns the keys
//!   with `index % conns == connection` and a batch never names one key
//!   twice, so with a correct server no conflict is expected.
//! - `watch`: WATCH key + HGET key version; if the version is the expected
//!   one, MULTI + the template commands + EXEC (nil EXEC = conflict), else
//!   UNWATCH and a conflict. `--pipeline` is ignored (a transaction is
//!   sequential on its connection).
//! - `over`: like `cas` without versions: the template over random keys of
//!   the population, any reply but an error (or nil: a missing key) counts
//!   as done. For plain writes over existing keys (`SET {key} <blob> PX ..`).
//! - `fresh`: each request uses a new key `<key-prefix><sid><12-digit n>`
//!   (n counting from `--start`); `{n}` is that number. Any error reply
//!   (e.g. `EXISTS`) is counted.
//!
//! Template commands are separated by the argument `;;`; all commands of one
//! request are sent back to back (pipelined).
//!
//! Output: one JSON object on stdout.

use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

// ---------------------------------------------------------------- arguments

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Cas,
    Watch,
    Fresh,
    Over,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Probe {
    None,
    Hget,
    Session,
}

struct Args {
    host: String,
    port: u16,
    db: u32,
    mode: Mode,
    conns: usize,
    pipeline: usize,
    duration: Option<f64>,
    requests: Option<u64>,
    keys: usize,
    key_prefix: String,
    sid: String,
    start: u64,
    probe: Probe,
    seed: u64,
    template: Vec<Vec<Vec<Piece>>>,
}

#[derive(Clone, Debug)]
enum Piece {
    Lit(Vec<u8>),
    Key,
    Ver,
    N,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen --port P [--host H] [--db D] --mode cas|watch|fresh|over [--conns 50] [--pipeline 1] \
         (--duration SECS | --requests N) [--keys N] [--key-prefix S] [--sid S] [--start N] \
         [--probe none|hget|session] [--seed N] -- CMD ARG... [;; CMD ARG...]"
    );
    std::process::exit(2)
}

fn parse_pieces(arg: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = arg;
    while !rest.is_empty() {
        let found = [("{key}", Piece::Key), ("{ver}", Piece::Ver), ("{n}", Piece::N)]
            .into_iter()
            .find(|(p, _)| rest.starts_with(p));
        if let Some((p, piece)) = found {
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit).into_bytes()));
            }
            out.push(piece);
            rest = &rest[p.len()..];
        } else {
            let c = rest.chars().next().unwrap();
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !lit.is_empty() || out.is_empty() {
        out.push(Piece::Lit(lit.into_bytes()));
    }
    out
}

fn parse_args() -> Args {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 0,
        db: 0,
        mode: Mode::Cas,
        conns: 50,
        pipeline: 1,
        duration: None,
        requests: None,
        keys: 0,
        key_prefix: String::new(),
        sid: String::new(),
        start: 0,
        probe: Probe::None,
        seed: 0x9E37_79B9_7F4A_7C15,
        template: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let mut mode_set = false;
    while i < argv.len() {
        let k = argv[i].as_str();
        if k == "--" {
            let mut cmd: Vec<Vec<Piece>> = Vec::new();
            for t in &argv[i + 1..] {
                if t == ";;" {
                    if !cmd.is_empty() {
                        a.template.push(std::mem::take(&mut cmd));
                    }
                } else {
                    cmd.push(parse_pieces(t));
                }
            }
            if !cmd.is_empty() {
                a.template.push(cmd);
            }
            break;
        }
        let v = argv
            .get(i + 1)
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{k}: not a number: {v}")))
        };
        match k {
            "--host" => a.host = v.clone(),
            "--port" => a.port = num(v) as u16,
            "--db" => a.db = num(v) as u32,
            "--mode" => {
                mode_set = true;
                a.mode = match v.as_str() {
                    "cas" => Mode::Cas,
                    "watch" => Mode::Watch,
                    "fresh" => Mode::Fresh,
                    "over" => Mode::Over,
                    _ => usage("unknown mode"),
                }
            }
            "--conns" => a.conns = num(v).max(1) as usize,
            "--pipeline" => a.pipeline = num(v).max(1) as usize,
            "--duration" => a.duration = Some(v.parse().unwrap_or_else(|_| usage("bad --duration"))),
            "--requests" => a.requests = Some(num(v)),
            "--keys" => a.keys = num(v) as usize,
            "--key-prefix" => a.key_prefix = v.clone(),
            "--sid" => a.sid = v.clone(),
            "--start" => a.start = num(v),
            "--seed" => a.seed = num(v) | 1,
            "--probe" => {
                a.probe = match v.as_str() {
                    "none" => Probe::None,
                    "hget" => Probe::Hget,
                    "session" => Probe::Session,
                    _ => usage("unknown probe"),
                }
            }
            _ => usage(&format!("unknown option {k}")),
        }
        i += 2;
    }
    if a.port == 0 || !mode_set {
        usage("--port and --mode are required");
    }
    if a.duration.is_none() && a.requests.is_none() {
        usage("one of --duration and --requests is required");
    }
    if a.template.is_empty() {
        usage("no command template after --");
    }
    if a.mode != Mode::Fresh && a.keys == 0 {
        usage("--keys is required for cas and watch");
    }
    if a.mode == Mode::Watch {
        a.pipeline = 1;
    }
    a
}

// --------------------------------------------------------------------- RESP

#[derive(Debug, Clone)]
enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_int(s: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer in reply: {:?}", String::from_utf8_lossy(s)))
}

/// Parses one reply starting at `pos`: `Ok(None)` when more bytes are needed.
fn parse(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, String> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some(eol) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let next = eol + 2;
    match buf[pos] {
        b'+' => Ok(Some((Value::Simple(line.to_vec()), next))),
        b'-' => Ok(Some((Value::Error(line.to_vec()), next))),
        b':' => Ok(Some((Value::Int(parse_int(line)?), next))),
        b'_' => Ok(Some((Value::Nil, next))),
        b'$' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((Value::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' | b'%' => {
            let mut n = parse_int(line)?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            if buf[pos] == b'%' {
                n *= 2;
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut p = next;
            for _ in 0..n {
                match parse(buf, p)? {
                    Some((v, np)) => {
                        items.push(v);
                        p = np;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), p)))
        }
        c => Err(format!("unexpected reply type byte {:?}", c as char)),
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) if *n >= 0 => Some(*n as u64),
        Value::Bulk(b) | Value::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// The version in a SESSION.GET reply (RESP2 flat array of name, value).
fn session_version(v: &Value) -> Option<u64> {
    if let Value::Array(items) = v {
        for pair in items.chunks(2) {
            if let [Value::Bulk(name) | Value::Simple(name), val] = pair {
                if name == b"version" {
                    return value_u64(val);
                }
            }
        }
    }
    None
}

// --------------------------------------------------------------------- misc

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        (((self.next() >> 11) as u128 * n as u128) >> 53) as u64
    }
}

fn key_bytes(prefix: &str, sid: &str, idx: u64) -> Vec<u8> {
    format!("{prefix}{sid}{idx:012}").into_bytes()
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

// -------------------------------------------------------------------- probe

/// Reads every key's current version over one blocking connection.
fn probe_versions(a: &Args) -> io::Result<(Vec<u64>, u64)> {
    let mut s = StdTcpStream::connect((a.host.as_str(), a.port))?;
    s.set_nodelay(true)?;
    let mut versions = vec![0u64; a.keys];
    let mut missing = 0u64;
    let mut rbuf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut tmp = vec![0u8; 1 << 16];
    if a.db != 0 {
        let mut out = Vec::new();
        encode(&mut out, &[b"SELECT", a.db.to_string().as_bytes()]);
        s.write_all(&out)?;
    }
    let mut pending_select = a.db != 0;
    const CHUNK: usize = 1000;
    let mut base = 0;
    while base < a.keys {
        let end = (base + CHUNK).min(a.keys);
        let mut out = Vec::new();
        for i in base..end {
            let k = key_bytes(&a.key_prefix, &a.sid, i as u64);
            match a.probe {
                Probe::Hget => encode(&mut out, &[b"HGET", &k, b"version"]),
                _ => encode(&mut out, &[b"SESSION.GET", &k, b"NODATA"]),
            }
        }
        s.write_all(&out)?;
        let mut pos = 0;
        let mut i = if pending_select {
            base.wrapping_sub(1)
        } else {
            base
        };
        while i != end {
            match parse(&rbuf, pos).map_err(io::Error::other)? {
                Some((v, np)) => {
                    pos = np;
                    if pending_select {
                        pending_select = false;
                        if let Value::Error(e) = v {
                            return Err(io::Error::other(format!(
                                "SELECT: {}",
                                String::from_utf8_lossy(&e)
                            )));
                        }
                        i = base;
                        continue;
                    }
                    let ver = match a.probe {
                        Probe::Hget => value_u64(&v),
                        _ => session_version(&v),
                    };
                    if let Value::Error(e) = &v {
                        return Err(io::Error::other(format!("probe: {}", String::from_utf8_lossy(e))));
                    }
                    match ver {
                        Some(n) => versions[i] = n,
                        None => missing += 1,
                    }
                    i += 1;
                }
                None => {
                    rbuf.drain(..pos);
                    pos = 0;
                    let n = s.read(&mut tmp)?;
                    if n == 0 {
                        return Err(io::Error::other("server closed the connection"));
                    }
                    rbuf.extend_from_slice(&tmp[..n]);
                }
            }
        }
        rbuf.drain(..pos);
        base = end;
    }
    Ok((versions, missing))
}

// ---------------------------------------------------------------- the loop

#[derive(PartialEq, Clone, Copy)]
enum Stage {
    Select,
    Batch,
    WatchRead,
    WatchExec,
    WatchUnwatch,
    Done,
}

struct Conn {
    stream: TcpStream,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    rpos: usize,
    expect: usize,
    replies: Vec<Value>,
    stage: Stage,
    batch_keys: Vec<u64>,
    batch_start: Instant,
    index: usize,
    batches: u64,
}

#[derive(Default)]
struct Stats {
    ok: u64,
    conflicts: u64,
    errors: u64,
    missing: u64,
    first_error: Option<String>,
    lat_ns: Vec<u64>,
}

struct Run {
    a: Args,
    versions: Vec<u64>,
    next_fresh: u64,
    started_ops: u64,
    deadline: Option<Instant>,
    rng: Rng,
    stats: Stats,
    last_done: Instant,
}

impl Run {
    /// A connection stops at the deadline (once it has completed a batch, so
    /// that a stalled start still measures something) or when the request
    /// budget is spent.
    fn may_start(&self, c: &Conn) -> bool {
        if let Some(d) = self.deadline {
            if c.batches > 0 && Instant::now() >= d {
                return false;
            }
        }
        if let Some(n) = self.a.requests {
            if self.started_ops >= n {
                return false;
            }
        }
        true
    }

    fn emit(&self, out: &mut Vec<u8>, cmd: &[Vec<Piece>], key: &[u8], ver: u64, n: u64) {
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(cmd.len());
        for arg in cmd {
            let mut b = Vec::new();
            for p in arg {
                match p {
                    Piece::Lit(l) => b.extend_from_slice(l),
                    Piece::Key => b.extend_from_slice(key),
                    Piece::Ver => b.extend_from_slice(ver.to_string().as_bytes()),
                    Piece::N => b.extend_from_slice(n.to_string().as_bytes()),
                }
            }
            args.push(b);
        }
        let refs: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
        encode(out, &refs);
    }

    fn error(&mut self, e: &[u8]) {
        self.stats.errors += 1;
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some(String::from_utf8_lossy(e).into_owned());
        }
    }

    /// Queues the next request(s) on `c`, or marks it done.
    fn start(&mut self, c: &mut Conn) {
        if !self.may_start(c) {
            c.stage = Stage::Done;
            return;
        }
        c.replies.clear();
        c.batch_keys.clear();
        c.batch_start = Instant::now();
        let conns = self.a.conns as u64;
        match self.a.mode {
            Mode::Cas | Mode::Watch | Mode::Over => {
                let own = (self.a.keys as u64 + conns - 1 - c.index as u64) / conns;
                if own == 0 {
                    c.stage = Stage::Done;
                    return;
                }
                let mut want = (self.a.pipeline as u64).min(own);
                if let Some(n) = self.a.requests {
                    want = want.min(n - self.started_ops);
                }
                while (c.batch_keys.len() as u64) < want {
                    let idx = c.index as u64 + self.rng.below(own) * conns;
                    if !c.batch_keys.contains(&idx) {
                        c.batch_keys.push(idx);
                    }
                }
                self.started_ops += want;
                let keys = std::mem::take(&mut c.batch_keys);
                for &idx in &keys {
                    let k = key_bytes(&self.a.key_prefix, &self.a.sid, idx);
                    if self.a.mode == Mode::Watch {
                        encode(&mut c.wbuf, &[b"WATCH", &k]);
                        encode(&mut c.wbuf, &[b"HGET", &k, b"version"]);
                        c.expect = 2;
                        c.stage = Stage::WatchRead;
                    } else {
                        let ver = self.versions[idx as usize];
                        for cmd in &self.a.template {
                            self.emit(&mut c.wbuf, cmd, &k, ver, idx);
                        }
                    }
                }
                if self.a.mode != Mode::Watch {
                    c.expect = keys.len() * self.a.template.len();
                    c.stage = Stage::Batch;
                }
                c.batch_keys = keys;
            }
            Mode::Fresh => {
                let mut want = self.a.pipeline as u64;
                if let Some(n) = self.a.requests {
                    want = want.min(n - self.started_ops);
                }
                self.started_ops += want;
                for _ in 0..want {
                    let n = self.next_fresh;
                    self.next_fresh += 1;
                    let k = key_bytes(&self.a.key_prefix, &self.a.sid, n);
                    for cmd in &self.a.template {
                        self.emit(&mut c.wbuf, cmd, &k, 0, n);
                    }
                    c.batch_keys.push(n);
                }
                c.expect = want as usize * self.a.template.len();
                c.stage = Stage::Batch;
            }
        }
    }

    fn record(&mut self, c: &mut Conn, ops: usize) {
        c.batches += 1;
        let now = Instant::now();
        let ns = now.duration_since(c.batch_start).as_nanos() as u64;
        for _ in 0..ops {
            self.stats.lat_ns.push(ns);
        }
        self.last_done = now;
    }

    /// All replies `c` waited for have arrived.
    fn complete(&mut self, c: &mut Conn) {
        let replies = std::mem::take(&mut c.replies);
        match c.stage {
            Stage::Select => {
                if let Some(Value::Error(e)) = replies.first() {
                    eprintln!("loadgen: SELECT failed: {}", String::from_utf8_lossy(e));
                    std::process::exit(1);
                }
                self.start(c);
            }
            Stage::Batch => {
                let per = self.a.template.len();
                let keys = std::mem::take(&mut c.batch_keys);
                for (i, &idx) in keys.iter().enumerate() {
                    let rs = &replies[i * per..(i + 1) * per];
                    match self.a.mode {
                        Mode::Cas => match &rs[per - 1] {
                            Value::Int(v) => {
                                self.versions[idx as usize] = *v as u64;
                                self.stats.ok += 1;
                            }
                            Value::Error(e) if e.starts_with(b"CONFLICT") => {
                                self.stats.conflicts += 1;
                                let cur = e
                                    .split(|&b| b == b' ')
                                    .nth(1)
                                    .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
                                match cur {
                                    Some(v) => self.versions[idx as usize] = v,
                                    None => self.error(e),
                                }
                            }
                            Value::Error(e) => {
                                let e = e.clone();
                                self.error(&e)
                            }
                            Value::Nil => self.stats.missing += 1,
                            other => self.error(format!("unexpected reply {other:?}").as_bytes()),
                        },
                        _ => {
                            let mut bad = None;
                            for r in rs {
                                if let Value::Error(e) = r {
                                    bad = Some(e.clone());
                                    break;
                                }
                            }
                            match bad {
                                Some(e) => self.error(&e),
                                None => self.stats.ok += 1,
                            }
                        }
                    }
                }
                self.record(c, keys.len());
                c.batch_keys = keys;
                self.start(c);
            }
            Stage::WatchRead => {
                let idx = c.batch_keys[0];
                let k = key_bytes(&self.a.key_prefix, &self.a.sid, idx);
                if let Value::Error(e) = &replies[0] {
                    let e = e.clone();
                    self.error(&e);
                }
                match &replies[1] {
                    Value::Nil => {
                        self.stats.missing += 1;
                        encode(&mut c.wbuf, &[b"UNWATCH"]);
                        c.expect = 1;
                        c.stage = Stage::WatchUnwatch;
                    }
                    v => match value_u64(v) {
                        Some(cur) if cur == self.versions[idx as usize] => {
                            encode(&mut c.wbuf, &[b"MULTI"]);
                            for cmd in &self.a.template {
                                self.emit(&mut c.wbuf, cmd, &k, cur, idx);
                            }
                            encode(&mut c.wbuf, &[b"EXEC"]);
                            c.expect = 2 + self.a.template.len();
                            c.stage = Stage::WatchExec;
                        }
                        Some(cur) => {
                            self.versions[idx as usize] = cur;
                            self.stats.conflicts += 1;
                            encode(&mut c.wbuf, &[b"UNWATCH"]);
                            c.expect = 1;
                            c.stage = Stage::WatchUnwatch;
                        }
                        None => {
                            self.error(format!("HGET version: {v:?}").as_bytes());
                            encode(&mut c.wbuf, &[b"UNWATCH"]);
                            c.expect = 1;
                            c.stage = Stage::WatchUnwatch;
                        }
                    },
                }
            }
            Stage::WatchExec => {
                let idx = c.batch_keys[0] as usize;
                for r in &replies[..replies.len() - 1] {
                    if let Value::Error(e) = r {
                        let e = e.clone();
                        self.error(&e);
                    }
                }
                match replies.last().unwrap() {
                    Value::Array(items) => match items.last().and_then(value_u64) {
                        Some(v) => {
                            self.versions[idx] = v;
                            self.stats.ok += 1;
                        }
                        None => self.error(format!("EXEC: {items:?}").as_bytes()),
                    },
                    Value::Nil => self.stats.conflicts += 1,
                    Value::Error(e) => {
                        let e = e.clone();
                        self.error(&e)
                    }
                    other => self.error(format!("EXEC: {other:?}").as_bytes()),
                }
                self.record(c, 1);
                self.start(c);
            }
            Stage::WatchUnwatch => {
                self.record(c, 1);
                self.start(c);
            }
            Stage::Done => {}
        }
    }
}

/// Writes what is queued; false when the connection failed.
fn flush(c: &mut Conn) -> io::Result<()> {
    while c.wpos < c.wbuf.len() {
        match c.stream.write(&c.wbuf[c.wpos..]) {
            Ok(0) => return Err(io::Error::other("write returned 0")),
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.wbuf.clear();
    c.wpos = 0;
    Ok(())
}

fn main() {
    let a = parse_args();
    let t_probe = Instant::now();
    let (versions, probe_missing) = if a.mode != Mode::Fresh && a.probe != Probe::None {
        probe_versions(&a).unwrap_or_else(|e| {
            eprintln!("loadgen: probe failed: {e}");
            std::process::exit(1)
        })
    } else {
        (vec![1u64; a.keys], 0)
    };
    let probe_secs = t_probe.elapsed().as_secs_f64();

    let mut poll = Poll::new().expect("poll");
    let mut conns: Vec<Conn> = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let s = StdTcpStream::connect((a.host.as_str(), a.port)).unwrap_or_else(|e| {
            eprintln!("loadgen: connect: {e}");
            std::process::exit(1)
        });
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        conns.push(Conn {
            stream,
            wbuf: Vec::with_capacity(64 * 1024),
            wpos: 0,
            rbuf: Vec::with_capacity(64 * 1024),
            rpos: 0,
            expect: 0,
            replies: Vec::new(),
            stage: Stage::Batch,
            batch_keys: Vec::new(),
            batch_start: Instant::now(),
            index: i,
            batches: 0,
        });
    }

    let t0 = Instant::now();
    let mut run = Run {
        deadline: a.duration.map(|d| t0 + Duration::from_secs_f64(d)),
        rng: Rng(a.seed),
        next_fresh: a.start,
        started_ops: 0,
        stats: Stats {
            lat_ns: Vec::with_capacity(1 << 20),
            ..Default::default()
        },
        versions,
        last_done: t0,
        a,
    };
    for c in conns.iter_mut() {
        if run.a.db != 0 {
            encode(&mut c.wbuf, &[b"SELECT", run.a.db.to_string().as_bytes()]);
            c.expect = 1;
            c.stage = Stage::Select;
        } else {
            run.start(c);
        }
        if let Err(e) = flush(c) {
            eprintln!("loadgen: write: {e}");
            std::process::exit(1);
        }
    }

    let mut events = Events::with_capacity(1024);
    let mut tmp = vec![0u8; 256 * 1024];
    let mut live = conns.iter().filter(|c| c.stage != Stage::Done).count();
    let hard_stop = run.deadline.map(|d| d + Duration::from_secs(30));
    while live > 0 {
        if let Some(h) = hard_stop {
            if Instant::now() > h {
                eprintln!("loadgen: {live} connections still waiting for replies 30 s after the deadline");
                std::process::exit(1);
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("poll: {e}");
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.stage == Stage::Done {
                continue;
            }
            if ev.is_writable() {
                if let Err(e) = flush(c) {
                    eprintln!("loadgen: write: {e}");
                    std::process::exit(1);
                }
            }
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match c.stream.read(&mut tmp) {
                        Ok(0) => {
                            eprintln!("loadgen: server closed a connection");
                            std::process::exit(1);
                        }
                        Ok(n) => c.rbuf.extend_from_slice(&tmp[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("loadgen: read: {e}");
                            std::process::exit(1);
                        }
                    }
                }
                loop {
                    match parse(&c.rbuf, c.rpos) {
                        Ok(Some((v, np))) => {
                            c.rpos = np;
                            c.replies.push(v);
                            if c.replies.len() == c.expect {
                                run.complete(c);
                                if c.stage == Stage::Done {
                                    live -= 1;
                                    break;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("loadgen: protocol error: {e}");
                            std::process::exit(1);
                        }
                    }
                }
                if c.rpos > 0 {
                    c.rbuf.drain(..c.rpos);
                    c.rpos = 0;
                }
                if c.stage != Stage::Done {
                    if let Err(e) = flush(c) {
                        eprintln!("loadgen: write: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
    }

    let secs = run.last_done.duration_since(t0).as_secs_f64().max(1e-9);
    let st = &mut run.stats;
    let ops = st.lat_ns.len() as u64;
    st.lat_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        if st.lat_ns.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (st.lat_ns.len() as f64)).ceil() as usize;
        st.lat_ns[i.clamp(1, st.lat_ns.len()) - 1] as f64 / 1e6
    };
    let (p50, p99) = (pct(50.0), pct(99.0));
    let avg = if ops > 0 {
        st.lat_ns.iter().sum::<u64>() as f64 / ops as f64 / 1e6
    } else {
        0.0
    };
    println!(
        "{{\"mode\":\"{:?}\",\"conns\":{},\"pipeline\":{},\"ops\":{},\"secs\":{:.4},\"rps\":{:.1},\
         \"avg_ms\":{:.4},\"p50_ms\":{:.4},\"p99_ms\":{:.4},\"ok\":{},\"conflicts\":{},\"errors\":{},\
         \"missing\":{},\"probe_missing\":{},\"probe_secs\":{:.3},\"first_error\":{}}}",
        run.a.mode,
        run.a.conns,
        run.a.pipeline,
        ops,
        secs,
        ops as f64 / secs,
        avg,
        p50,
        p99,
        st.ok,
        st.conflicts,
        st.errors,
        st.missing,
        probe_missing,
        probe_secs,
        st.first_error
            .as_deref()
            .map(json_str)
            .unwrap_or_else(|| "null".into())
    );
}
