//! Routing rings (SPEC §8) in plain Rust: which application node serves an
//! id. A ring is a set of named nodes with weights and states, the load each
//! last reported, and a balance factor.
//!
//! The algorithm is **weighted rendezvous hashing** (highest random weight)
//! with **bounded loads**; README "Routing rings" documents it for other
//! languages and the figures that chose it over a ring of virtual nodes and a
//! Maglev table. In short, for an id and a node named `n` of weight `w`:
//!
//! - `h` = the low 32 bits of `XXH3_64(id, seed ID_SEED)`, `s` = the low
//!   32 bits of `XXH3_64(n, seed NODE_SEED)`;
//! - `v = fmix32(h ^ s)` (MurmurHash3's 32-bit finalizer);
//! - `key = -ln((v + 1) / 2^32) / w` in IEEE-754 doubles;
//! - the id's preference order sorts the nodes by `key` ascending, then `v`
//!   descending, then name bytes ascending. It depends only on the id, the
//!   names and the weights; a node's chance to come first is `w / Σw`.
//!
//! Removing a node deletes it from every order and moves nothing else;
//! adding one puts it first for exactly the ids whose key it beats.

use std::cell::RefCell;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of the id hash ("ROUTE" in ASCII).
pub const ID_SEED: u64 = 0x52_4f_55_54_45;
/// Seed of the node-name hash ("NODE" in ASCII).
pub const NODE_SEED: u64 = 0x4e_4f_44_45;

pub const MAX_NODES: usize = 10_000;
pub const MAX_WEIGHT: u32 = 1_000_000;
pub const MAX_NAME: usize = 256;
/// Balance factors are held in thousandths: 1250 is c = 1.25.
pub const DEFAULT_BALANCE: u32 = 1250;
pub const MIN_BALANCE: u32 = 1001;
pub const MAX_BALANCE: u32 = 1_000_000;
pub const DEFAULT_LOADTTL: i64 = 10_000;
pub const MAX_LOADTTL: i64 = 3_153_600_000_000;
/// Loads above this are refused (so sums fit any client's integers).
pub const MAX_LOAD: u64 = (1 << 53) - 1;

/// The encoding's format byte; `decode` still reads every older one.
const FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Down,
    Drain,
}

impl NodeState {
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Drain => "drain",
        }
    }

    pub fn parse(word: &[u8]) -> Option<NodeState> {
        [NodeState::Up, NodeState::Down, NodeState::Drain]
            .into_iter()
            .find(|s| word.eq_ignore_ascii_case(s.name().as_bytes()))
    }

    fn code(self) -> u8 {
        match self {
            NodeState::Up => 0,
            NodeState::Down => 1,
            NodeState::Drain => 2,
        }
    }

    fn from_code(c: u8) -> Option<NodeState> {
        [NodeState::Up, NodeState::Down, NodeState::Drain]
            .get(c as usize)
            .copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub weight: u32,
    pub state: NodeState,
    /// The last reported load and when it was reported (absolute ms);
    /// `None` until the node first reports.
    pub load: Option<(u64, i64)>,
}

impl Node {
    pub fn new(name: &[u8], weight: u32) -> Node {
        Node {
            name: name.to_vec(),
            weight,
            state: NodeState::Up,
            load: None,
        }
    }
}

/// Why a ring change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    NoSuchNode(Vec<u8>),
    DuplicateNode(Vec<u8>),
    BadName,
    BadWeight,
    BadLoad,
    TooManyNodes,
    Empty,
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::NoSuchNode(n) => write!(f, "no such node '{}'", String::from_utf8_lossy(n)),
            RingError::DuplicateNode(n) => {
                write!(f, "node '{}' is named twice", String::from_utf8_lossy(n))
            }
            RingError::BadName => write!(f, "a node name is 1 to {MAX_NAME} bytes"),
            RingError::BadWeight => write!(f, "a weight is an integer from 1 to {MAX_WEIGHT}"),
            RingError::BadLoad => write!(f, "a load is an integer from 0 to {MAX_LOAD}"),
            RingError::TooManyNodes => write!(f, "a ring has at most {MAX_NODES} nodes"),
            RingError::Empty => write!(f, "a ring has at least one node"),
        }
    }
}

/// What the bounded-load rule says at one instant, cached until a reported
/// load goes stale or the ring changes.
#[derive(Debug, Clone)]
struct Bounds {
    computed_at: i64,
    valid_until: i64,
    /// Per node: above `c` × the weighted mean of the fresh loads of UP nodes.
    over: Vec<bool>,
    /// Some UP node is not over the bound (so the over ones are skipped).
    any_under: bool,
    /// Per node: may take new ids (UP, and not skipped for its load).
    eligible: Vec<bool>,
    /// The same in lane order (see `Ring::lanes`), and UP in lane order
    /// (the fallback when no UP node is under the bound). Empty when every
    /// lane is eligible (the kernel then needs no mask).
    eligible_lanes: Vec<bool>,
    up_lanes: Vec<bool>,
}

#[derive(Debug, Clone)]
pub struct Ring {
    pub version: u64,
    /// c in thousandths.
    pub balance: u32,
    pub loadttl: i64,
    /// Sorted by name, names unique.
    nodes: Vec<Node>,
    /// Per node, parallel to `nodes`: the name hash.
    seeds: Vec<u32>,
    /// The name hashes laid out by weight class (stable: within a class in
    /// name order), `lane_node` naming each lane's node; the lookup scans
    /// each class's lanes with a vectorized kernel.
    lanes: Vec<u32>,
    lane_node: Vec<u32>,
    /// The distinct weights, with each one's range of lanes.
    classes: Vec<(u32, std::ops::Range<usize>)>,
    bounds: RefCell<Option<Bounds>>,
}

impl PartialEq for Ring {
    fn eq(&self, o: &Ring) -> bool {
        self.version == o.version
            && self.balance == o.balance
            && self.loadttl == o.loadttl
            && self.nodes == o.nodes
    }
}

/// MurmurHash3's 32-bit finalizer.
#[inline(always)]
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// MurmurHash3's 64-bit finalizer (the tests' and simulation's generator).
#[inline(always)]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The id's hash: the low 32 bits of XXH3-64 with seed [`ID_SEED`].
pub fn id_hash(id: &[u8]) -> u32 {
    xxh3_64_with_seed(id, ID_SEED) as u32
}

/// A node name's hash: the low 32 bits of XXH3-64 with seed [`NODE_SEED`].
pub fn node_hash(name: &[u8]) -> u32 {
    xxh3_64_with_seed(name, NODE_SEED) as u32
}

/// The draw of node `seed` for id hash `h`. 32 bits, so that the lookup
/// runs eight nodes to a vector instruction.
#[inline(always)]
pub fn draw(h: u32, seed: u32) -> u32 {
    fmix32(h ^ seed)
}

/// The rendezvous key of a draw at a weight: smaller comes first.
pub fn key(v: u32, weight: u32) -> f64 {
    let x = (v as f64 + 1.0) / 4_294_967_296.0;
    -x.ln() / weight as f64
}

/// A node's rank for one id: (key, draw, index); the order is key
/// ascending, draw descending, index (= name) ascending.
#[derive(Clone, Copy, Debug)]
struct Rank {
    key: f64,
    v: u32,
    i: usize,
}

fn before(a: &Rank, b: &Rank) -> bool {
    if a.key != b.key {
        return a.key < b.key;
    }
    if a.v != b.v {
        return a.v > b.v;
    }
    a.i < b.i
}

impl Ring {
    /// A ring of `nodes` (all UP, no loads) at version 1.
    pub fn new(balance: u32, loadttl: i64, nodes: &[(&[u8], u32)]) -> Result<Ring, RingError> {
        let mut r = Ring {
            version: 1,
            balance,
            loadttl,
            nodes: Vec::new(),
            seeds: Vec::new(),
            lanes: Vec::new(),
            lane_node: Vec::new(),
            classes: Vec::new(),
            bounds: RefCell::new(None),
        };
        r.nodes = Self::membership(&[], nodes)?;
        r.rebuild();
        Ok(r)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok()
    }

    /// The new node list for `members`: a node that stays keeps its state
    /// and load.
    fn membership(old: &[Node], members: &[(&[u8], u32)]) -> Result<Vec<Node>, RingError> {
        if members.is_empty() {
            return Err(RingError::Empty);
        }
        if members.len() > MAX_NODES {
            return Err(RingError::TooManyNodes);
        }
        let mut out: Vec<Node> = Vec::with_capacity(members.len());
        for &(name, weight) in members {
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(RingError::BadName);
            }
            if weight == 0 || weight > MAX_WEIGHT {
                return Err(RingError::BadWeight);
            }
            let mut n = match old.binary_search_by(|n| n.name.as_slice().cmp(name)) {
                Ok(i) => old.get(i).cloned().unwrap_or_else(|| Node::new(name, weight)),
                Err(_) => Node::new(name, weight),
            };
            n.weight = weight;
            out.push(n);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = out.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(RingError::DuplicateNode(w[0].name.clone()));
        }
        Ok(out)
    }

    /// Recomputes what follows from the node list.
    fn rebuild(&mut self) {
        self.seeds = self.nodes.iter().map(|n| node_hash(&n.name)).collect();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by_key(|&i| (self.nodes.get(i).map_or(0, |n| n.weight), i));
        self.lanes = order
            .iter()
            .map(|&i| self.seeds.get(i).copied().unwrap_or(0))
            .collect();
        self.lane_node = order.iter().map(|&i| i as u32).collect();
        self.classes.clear();
        for (lane, &i) in order.iter().enumerate() {
            let w = self.nodes.get(i).map_or(0, |n| n.weight);
            match self.classes.last_mut() {
                Some((cw, range)) if *cw == w => range.end = lane + 1,
                _ => self.classes.push((w, lane..lane + 1)),
            }
        }
        self.bounds.replace(None);
    }

    /// SESSION.RING.SET: replaces the membership (and the options given);
    /// the version grows by one.
    pub fn set(
        &mut self,
        balance: Option<u32>,
        loadttl: Option<i64>,
        members: &[(&[u8], u32)],
    ) -> Result<(), RingError> {
        self.nodes = Self::membership(&self.nodes, members)?;
        if let Some(b) = balance {
            self.balance = b;
        }
        if let Some(t) = loadttl {
            self.loadttl = t;
        }
        self.version = self.version.saturating_add(1);
        self.rebuild();
        Ok(())
    }

    /// SESSION.RING.NODE: one node's state (and weight).
    pub fn set_node(&mut self, name: &[u8], state: NodeState, weight: Option<u32>) -> Result<(), RingError> {
        if weight.is_some_and(|w| w == 0 || w > MAX_WEIGHT) {
            return Err(RingError::BadWeight);
        }
        let i = self
            .find(name)
            .ok_or_else(|| RingError::NoSuchNode(name.to_vec()))?;
        let Some(n) = self.nodes.get_mut(i) else {
            return Err(RingError::NoSuchNode(name.to_vec()));
        };
        n.state = state;
        if let Some(w) = weight {
            n.weight = w;
        }
        self.version = self.version.saturating_add(1);
        self.rebuild();
        Ok(())
    }

    /// SESSION.RING.LOAD: records loads reported at `at` (absolute ms).
    /// Every name is checked before any load changes.
    pub fn set_loads(&mut self, at: i64, loads: &[(&[u8], u64)]) -> Result<(), RingError> {
        let mut idx = Vec::with_capacity(loads.len());
        for &(name, load) in loads {
            if load > MAX_LOAD {
                return Err(RingError::BadLoad);
            }
            idx.push(
                self.find(name)
                    .ok_or_else(|| RingError::NoSuchNode(name.to_vec()))?,
            );
        }
        for (i, &(_, load)) in idx.into_iter().zip(loads) {
            if let Some(n) = self.nodes.get_mut(i) {
                n.load = Some((load, at));
            }
        }
        self.bounds.replace(None);
        Ok(())
    }

    /// Whether node `i`'s load counts at `now`.
    fn fresh(&self, i: usize, now: i64) -> Option<(u64, i64)> {
        let (load, at) = self.nodes.get(i)?.load?;
        (now.saturating_sub(at) <= self.loadttl).then_some((load, at))
    }

    fn compute_bounds(&self, now: i64) -> Bounds {
        let n = self.nodes.len();
        let (mut sum_load, mut sum_w) = (0u128, 0u128);
        let mut valid_until = i64::MAX;
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some((load, at)) = self.fresh(i, now) {
                valid_until = valid_until.min(at.saturating_add(self.loadttl).saturating_add(1));
                if node.state == NodeState::Up {
                    sum_load += load as u128;
                    sum_w += node.weight as u128;
                }
            }
        }
        let c = self.balance as u128;
        let mut over = vec![false; n];
        let mut any_under = false;
        for (i, node) in self.nodes.iter().enumerate() {
            // load / w > c/1000 × sum_load / sum_w, in integers.
            let o = self
                .fresh(i, now)
                .is_some_and(|(load, _)| load as u128 * 1000 * sum_w > c * sum_load * node.weight as u128);
            if let Some(slot) = over.get_mut(i) {
                *slot = o;
            }
            any_under |= node.state == NodeState::Up && !o;
        }
        let eligible: Vec<bool> = self
            .nodes
            .iter()
            .zip(&over)
            .map(|(node, &o)| node.state == NodeState::Up && !(o && any_under))
            .collect();
        let lane = |v: &Vec<bool>| -> Vec<bool> {
            self.lane_node
                .iter()
                .map(|&i| v.get(i as usize).copied().unwrap_or(false))
                .collect()
        };
        let up: Vec<bool> = self.nodes.iter().map(|n| n.state == NodeState::Up).collect();
        Bounds {
            computed_at: now,
            valid_until,
            over,
            any_under,
            eligible_lanes: if eligible.iter().all(|&e| e) {
                Vec::new()
            } else {
                lane(&eligible)
            },
            up_lanes: lane(&up),
            eligible,
        }
    }

    fn with_bounds<T>(&self, now: i64, f: impl FnOnce(&Bounds) -> T) -> T {
        let mut cache = self.bounds.borrow_mut();
        let stale = match cache.as_ref() {
            Some(b) => now < b.computed_at || now >= b.valid_until,
            None => true,
        };
        if stale {
            *cache = Some(self.compute_bounds(now));
        }
        match cache.as_ref() {
            Some(b) => f(b),
            None => f(&self.compute_bounds(now)),
        }
    }

    /// Whether node `i` is skipped for its load at `now`.
    pub fn overloaded(&self, i: usize, now: i64) -> bool {
        self.with_bounds(now, |b| b.any_under && b.over.get(i).copied().unwrap_or(false))
    }

    fn rank(&self, h: u32, i: usize) -> Rank {
        let v = draw(h, self.seeds.get(i).copied().unwrap_or(0));
        let w = self.nodes.get(i).map_or(1, |n| n.weight);
        Rank { key: key(v, w), v, i }
    }

    /// The id's full preference order (node indexes), ignoring states and
    /// loads.
    pub fn preference(&self, id: &[u8]) -> Vec<usize> {
        let h = id_hash(id);
        let mut ranks: Vec<Rank> = (0..self.nodes.len()).map(|i| self.rank(h, i)).collect();
        ranks.sort_by(|a, b| {
            if before(a, b) {
                std::cmp::Ordering::Less
            } else if before(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        ranks.into_iter().map(|r| r.i).collect()
    }

    /// Whether `sticky` is kept: in the ring, UP or DRAIN, not skipped for load.
    fn sticky_kept(&self, sticky: Option<&[u8]>, b: &Bounds) -> Option<usize> {
        let i = self.find(sticky?)?;
        let n = self.nodes.get(i)?;
        let skipped = b.any_under && b.over.get(i).copied().unwrap_or(false);
        (matches!(n.state, NodeState::Up | NodeState::Drain) && !skipped).then_some(i)
    }

    /// SESSION.ROUTE: the node for `id` at `now` (index), or `None` when no
    /// node is UP (and no sticky node is kept: a DRAIN node keeps its
    /// sessions even when nothing else is UP).
    pub fn route(&self, id: &[u8], now: i64, sticky: Option<&[u8]>) -> Option<usize> {
        self.with_bounds(now, |b| {
            if let Some(i) = self.sticky_kept(sticky, b) {
                return Some(i);
            }
            let h = id_hash(id);
            // No UP node under the bound: the rule skips nothing.
            self.first_eligible(h, &b.eligible_lanes)
                .or_else(|| self.first_eligible(h, &b.up_lanes))
        })
    }

    /// The first node of `h`'s preference order among the eligible lanes
    /// (empty `eligible`: all of them):
    /// the largest draw of each weight class (ties to the smaller name),
    /// then, with several classes, the smallest key among those.
    fn first_eligible(&self, h: u32, eligible: &[bool]) -> Option<usize> {
        let mut winner: Option<Rank> = None;
        for (w, range) in &self.classes {
            let ok = if eligible.is_empty() {
                &[][..]
            } else {
                match eligible.get(range.clone()) {
                    Some(ok) => ok,
                    None => continue,
                }
            };
            let Some(seeds) = self.lanes.get(range.clone()) else {
                continue;
            };
            let Some((v, lane)) = kernel::first_max(h, seeds, ok) else {
                continue;
            };
            let Some(&i) = self.lane_node.get(range.start + lane) else {
                continue;
            };
            let r = Rank {
                // One class: its winner is the answer, no key needed.
                key: if self.classes.len() == 1 { 0.0 } else { key(v, *w) },
                v,
                i: i as usize,
            };
            if winner.as_ref().is_none_or(|best| before(&r, best)) {
                winner = Some(r);
            }
        }
        winner.map(|r| r.i)
    }

    /// SESSION.ROUTE ... COUNT k: up to k distinct nodes: the kept sticky
    /// node, then the eligible nodes in preference order, then UP nodes
    /// skipped for their load. Empty when no node is UP and no sticky node
    /// is kept.
    pub fn route_count(&self, id: &[u8], now: i64, sticky: Option<&[u8]>, k: usize) -> Vec<usize> {
        let mut out = Vec::new();
        if k == 0 {
            return out;
        }
        self.with_bounds(now, |b| {
            let kept = self.sticky_kept(sticky, b);
            out.extend(kept);
            let order = self.preference(id);
            let up = |i: usize| self.nodes.get(i).is_some_and(|n| n.state == NodeState::Up);
            let eligible = |i: usize| b.eligible.get(i).copied().unwrap_or(false);
            let firsts = order.iter().copied().filter(|&i| eligible(i));
            let seconds = order.iter().copied().filter(|&i| up(i) && !eligible(i));
            for i in firsts.chain(seconds) {
                if out.len() >= k {
                    break;
                }
                if Some(i) != kept {
                    out.push(i);
                }
            }
            out.truncate(k);
        });
        out
    }

    // --- encoding ----------------------------------------------------------

    /// The value as bytes: format byte, then little-endian fields (README
    /// "Ring encoding"). Loads are included; the cache is not.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.nodes.len() * 40);
        b.push(FORMAT);
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.balance.to_le_bytes());
        b.extend_from_slice(&self.loadttl.to_le_bytes());
        b.extend_from_slice(&(self.nodes.len() as u32).to_le_bytes());
        for n in &self.nodes {
            b.extend_from_slice(&(n.name.len() as u32).to_le_bytes());
            b.extend_from_slice(&n.name);
            b.extend_from_slice(&n.weight.to_le_bytes());
            b.push(n.state.code());
            match n.load {
                None => b.push(0),
                Some((load, at)) => {
                    b.push(1);
                    b.extend_from_slice(&load.to_le_bytes());
                    b.extend_from_slice(&at.to_le_bytes());
                }
            }
        }
        b
    }

    /// Reads what `encode` wrote, checking every length, count and range;
    /// anything else is refused whole.
    pub fn decode(buf: &[u8]) -> Result<Ring, String> {
        let mut r = Reader { buf, at: 0 };
        let format = r.u8()?;
        if format != FORMAT {
            return Err(format!("unknown ring format {format}"));
        }
        let version = r.u64()?;
        let balance = r.u32()?;
        let loadttl = r.i64()?;
        let n = r.u32()? as usize;
        if version == 0
            || !(MIN_BALANCE..=MAX_BALANCE).contains(&balance)
            || !(1..=MAX_LOADTTL).contains(&loadttl)
        {
            return Err("ring settings out of range".into());
        }
        if n == 0 || n > MAX_NODES || n > buf.len() / 10 {
            return Err("bad node count".into());
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u32()? as usize;
            if len == 0 || len > MAX_NAME {
                return Err("bad node name".into());
            }
            let name = r.take(len)?.to_vec();
            let weight = r.u32()?;
            if weight == 0 || weight > MAX_WEIGHT {
                return Err("bad weight".into());
            }
            let state = NodeState::from_code(r.u8()?).ok_or("bad node state")?;
            let load = match r.u8()? {
                0 => None,
                1 => {
                    let load = r.u64()?;
                    let at = r.i64()?;
                    if load > MAX_LOAD {
                        return Err("bad load".into());
                    }
                    Some((load, at))
                }
                _ => return Err("bad load flag".into()),
            };
            if nodes.last().is_some_and(|p| p.name >= name) {
                return Err("node names out of order".into());
            }
            nodes.push(Node {
                name,
                weight,
                state,
                load,
            });
        }
        if r.at != buf.len() {
            return Err("trailing bytes".into());
        }
        let mut ring = Ring {
            version,
            balance,
            loadttl,
            nodes,
            seeds: Vec::new(),
            lanes: Vec::new(),
            lane_node: Vec::new(),
            classes: Vec::new(),
            bounds: RefCell::new(None),
        };
        ring.rebuild();
        Ok(ring)
    }

    pub fn mem_usage(&self) -> usize {
        std::mem::size_of::<Ring>()
            + self
                .nodes
                .iter()
                .map(|n| std::mem::size_of::<Node>() + n.name.capacity() + 8 + 4)
                .sum::<usize>()
            + self.lanes.capacity() * 8
            + self.classes.capacity() * std::mem::size_of::<(u32, std::ops::Range<usize>)>()
            + self.bounds.borrow().as_ref().map_or(0, |b| b.over.capacity() * 4)
    }
}

/// The lookup's inner loop: the largest 53-bit draw over a run of nodes and
/// the first lane holding it. Written as plain loops over fixed-size chunks
/// (draws into a buffer, then a max, then a search) so that the compiler
/// vectorizes them; compiled again for AVX2 and picked at run time, the
/// same arithmetic on every path. (An AVX-512 build measured slower than
/// AVX2 on the dev box's AMD EPYC, so there is none.)
mod kernel {
    use super::draw;

    const CHUNK: usize = 64;

    /// `ok` empty: every lane may be chosen (the common case, no mask).
    #[inline(always)]
    fn scan(h: u32, seeds: &[u32], ok: &[bool]) -> Option<(u32, usize)> {
        const ALL: [bool; CHUNK] = [true; CHUNK];
        let mut best: Option<(u32, usize)> = None;
        for (c, s) in seeds.chunks(CHUNK).enumerate() {
            let mut buf = [0u32; CHUNK];
            let e = if ok.is_empty() {
                &ALL[..s.len()]
            } else {
                ok.get(c * CHUNK..c * CHUNK + s.len()).unwrap_or(&[])
            };
            if ok.is_empty() {
                for (b, &s) in buf.iter_mut().zip(s) {
                    *b = draw(h, s);
                }
            } else {
                // Draws, 0 for a lane that may not be chosen.
                for ((b, &s), &e) in buf.iter_mut().zip(s).zip(e) {
                    *b = draw(h, s) & u32::from(e).wrapping_neg();
                }
            }
            let m = buf.iter().copied().max().unwrap_or(0);
            if best.is_some_and(|(bv, _)| m <= bv) {
                continue;
            }
            // The first lane holding the max; a max of 0 may be an
            // eligible lane's draw of 0 or no eligible lane at all.
            let at = buf.iter().zip(e).position(|(&b, &e)| b == m && e);
            if let Some(at) = at {
                best = Some((m, c * CHUNK + at));
            }
        }
        best
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn scan_avx2(h: u32, seeds: &[u32], ok: &[bool]) -> Option<(u32, usize)> {
        scan(h, seeds, ok)
    }

    pub fn first_max(h: u32, seeds: &[u32], ok: &[bool]) -> Option<(u32, usize)> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the feature the function was built for.
                return unsafe { scan_avx2(h, seeds, ok) };
            }
        }
        scan(h, seeds, ok)
    }

    #[cfg(test)]
    pub fn first_max_portable(h: u32, seeds: &[u32], ok: &[bool]) -> Option<(u32, usize)> {
        scan(h, seeds, ok)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("truncated ring")?;
        let s = self.buf.get(self.at..end).ok_or("truncated ring")?;
        self.at = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?.try_into().map_err(|_| "truncated ring".to_string())
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.arr::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
}

/// Parses a balance factor: a decimal above 1 with at most three decimals,
/// into thousandths.
pub fn parse_balance(s: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(s).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || int.len() > 4 || frac.len() > 3 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let mut f: u32 = frac.parse().unwrap_or(0);
    for _ in frac.len()..3 {
        f *= 10;
    }
    let v = int.parse::<u32>().ok()?.checked_mul(1000)?.checked_add(f)?;
    (MIN_BALANCE..=MAX_BALANCE).contains(&v).then_some(v)
}

/// A balance in thousandths as the shortest decimal ("1.25").
pub fn format_balance(b: u32) -> String {
    let (i, f) = (b / 1000, b % 1000);
    if f == 0 {
        return format!("{i}");
    }
    let mut s = format!("{i}.{f:03}");
    while s.ends_with('0') {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_parses_and_formats() {
        assert_eq!(parse_balance(b"1.25"), Some(1250));
        assert_eq!(parse_balance(b"2"), Some(2000));
        assert_eq!(parse_balance(b"1.001"), Some(1001));
        for bad in [
            &b"1"[..],
            b"1.0",
            b"0.5",
            b"1.2345",
            b"",
            b".5",
            b"1.",
            b"-2",
            b"x",
            b"1000.001",
            b"1e3",
        ] {
            assert_eq!(parse_balance(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(format_balance(1250), "1.25");
        assert_eq!(format_balance(2000), "2");
        assert_eq!(format_balance(1001), "1.001");
    }

    #[test]
    fn encoding_round_trips_and_refuses_truncation() {
        let mut r = Ring::new(1500, 5000, &[(b"a", 1), (b"b", 2)]).unwrap();
        r.set_loads(77, &[(b"b", 9)]).unwrap();
        r.set_node(b"a", NodeState::Drain, None).unwrap();
        let e = r.encode();
        let d = Ring::decode(&e).unwrap();
        assert_eq!(d, r);
        assert_eq!(d.encode(), e);
        for cut in 0..e.len() {
            assert!(Ring::decode(&e[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = e.clone();
        long.push(0);
        assert!(Ring::decode(&long).is_err());
    }

    #[test]
    fn every_kernel_agrees() {
        let seeds: Vec<u32> = (0..300u64).map(|i| fmix64(i + 17) as u32).collect();
        for n in [0usize, 1, 5, 63, 64, 65, 300] {
            for h in 0..200u32 {
                let ok: Vec<bool> = (0..n).map(|i| !(i as u32 * 7 + h).is_multiple_of(5)).collect();
                let want = (0..n)
                    .filter(|&i| ok[i])
                    .map(|i| (draw(h, seeds[i]), std::cmp::Reverse(i)))
                    .max()
                    .map(|(v, std::cmp::Reverse(i))| (v, i));
                assert_eq!(kernel::first_max(h, &seeds[..n], &ok), want);
                assert_eq!(kernel::first_max_portable(h, &seeds[..n], &ok), want);
                let all = (0..n).map(|i| (draw(h, seeds[i]), std::cmp::Reverse(i))).max();
                let all = all.map(|(v, std::cmp::Reverse(i))| (v, i));
                assert_eq!(kernel::first_max(h, &seeds[..n], &[]), all);
            }
        }
    }

    #[test]
    fn a_draw_of_zero_still_wins() {
        // fmix32 is a bijection: the seed that draws 0 for h = 5.
        let zero = (0..=u32::MAX).find(|&s| draw(5, s) == 0).unwrap();
        assert_eq!(kernel::first_max(5, &[zero], &[true]), Some((0, 0)));
        assert_eq!(kernel::first_max(5, &[zero, zero], &[false, true]), Some((0, 1)));
        assert_eq!(kernel::first_max(5, &[zero], &[false]), None);
    }

    #[test]
    fn fast_path_matches_the_full_order() {
        let r = Ring::new(1250, 1000, &[(b"a", 1), (b"b", 3), (b"c", 3), (b"d", 7)]).unwrap();
        for i in 0..2000u32 {
            let id = i.to_le_bytes();
            assert_eq!(r.route(&id, 0, None), r.preference(&id).first().copied());
        }
    }
}
