//! The measurements behind the routing algorithm (README "Routing rings"):
//! weighted rendezvous (the module's `core::routing`) against a ring with
//! virtual nodes and a Maglev table, on balance, disruption and lookup cost;
//! then the bounded-load simulation with Zipf-skewed request weights.
//!
//! `cargo run --release --example routing_sim [-- --smoke] [-- --json]`;
//! `make bench` runs it and files its figures as rows.

use std::collections::BTreeMap;
use std::time::Instant;

use redis_session::core::routing::{fmix64, NodeState, Ring, ID_SEED, NODE_SEED};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A small deterministic generator (splitmix64), so runs repeat.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        fmix64(self.0)
    }
}

fn ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&r.next().to_le_bytes());
            b[8..].copy_from_slice(&r.next().to_le_bytes());
            b
        })
        .collect()
}

fn names(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("app-{i:04}").into_bytes()).collect()
}

trait Router {
    fn lookup(&self, id: &[u8]) -> usize;
}

struct Hrw(Ring);
impl Router for Hrw {
    fn lookup(&self, id: &[u8]) -> usize {
        self.0.route(id, 0, None).unwrap_or(usize::MAX)
    }
}

/// A consistent-hash ring: `vnodes × weight` points per node; an id goes to
/// the node of the first point at or after its hash.
struct VRing {
    points: Vec<(u64, u32)>,
}
impl VRing {
    fn new(nodes: &[(Vec<u8>, u32)], vnodes: u32) -> VRing {
        let mut points = Vec::new();
        for (i, (name, w)) in nodes.iter().enumerate() {
            let s = xxh3_64_with_seed(name, NODE_SEED);
            for v in 0..vnodes * w {
                points.push((fmix64(s ^ fmix64(v as u64 + 1)), i as u32));
            }
        }
        points.sort_unstable();
        VRing { points }
    }
}
impl Router for VRing {
    fn lookup(&self, id: &[u8]) -> usize {
        let h = xxh3_64_with_seed(id, ID_SEED);
        let at = self.points.partition_point(|p| p.0 < h);
        let p = self.points.get(at).or(self.points.first());
        p.map_or(usize::MAX, |p| p.1 as usize)
    }
}

/// Maglev (Eisenbud et al. 2016): a prime-sized table filled round-robin
/// from each node's permutation; weights as turns per round.
struct Maglev {
    table: Vec<u32>,
}
fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}
impl Maglev {
    /// The table size stays fixed as nodes come and go (`per_node` × the
    /// base fleet, `base`), as Maglev requires.
    fn new(nodes: &[(Vec<u8>, u32)], per_node: usize, base: usize) -> Maglev {
        let mut m = (base * per_node).max(7);
        while !is_prime(m) {
            m += 1;
        }
        let perms: Vec<(usize, usize)> = nodes
            .iter()
            .map(|(name, _)| {
                let off = xxh3_64_with_seed(name, 1) as usize % m;
                let skip = xxh3_64_with_seed(name, 2) as usize % (m - 1) + 1;
                (off, skip)
            })
            .collect();
        let mut next = vec![0usize; nodes.len()];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'outer: loop {
            for (i, &(off, skip)) in perms.iter().enumerate() {
                for _ in 0..nodes[i].1 {
                    let mut c = (off + next[i] * skip) % m;
                    while table[c] != u32::MAX {
                        next[i] += 1;
                        c = (off + next[i] * skip) % m;
                    }
                    table[c] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == m {
                        break 'outer;
                    }
                }
            }
        }
        Maglev { table }
    }
}
impl Router for Maglev {
    fn lookup(&self, id: &[u8]) -> usize {
        let h = xxh3_64_with_seed(id, ID_SEED) as usize % self.table.len();
        self.table[h] as usize
    }
}

fn build(algo: &str, nodes: &[(Vec<u8>, u32)], base: usize) -> Box<dyn Router> {
    match algo {
        "rendezvous" => {
            let m: Vec<(&[u8], u32)> = nodes.iter().map(|(n, w)| (n.as_slice(), *w)).collect();
            Box::new(Hrw(Ring::new(1250, 10_000, &m).unwrap_or_else(|e| panic!("{e}"))))
        }
        "vnodes-160" => Box::new(VRing::new(nodes, 160)),
        "vnodes-1000" => Box::new(VRing::new(nodes, 1000)),
        "maglev-100" => Box::new(Maglev::new(nodes, 100, base)),
        _ => Box::new(Maglev::new(nodes, 1000, base)),
    }
}

/// max/mean count per node, weights taken into account.
fn max_over_mean(counts: &[usize], weights: &[u32]) -> f64 {
    let total: usize = counts.iter().sum();
    let wsum: u32 = weights.iter().sum();
    counts
        .iter()
        .zip(weights)
        .map(|(&c, &w)| c as f64 / (total as f64 * w as f64 / wsum as f64))
        .fold(0.0, f64::max)
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let json = std::env::args().any(|a| a == "--json");
    let n_ids = if smoke { 100_000 } else { 1_000_000 };
    let sizes: &[usize] = if std::env::var_os("ONLY1000").is_some() {
        &[1000]
    } else if smoke {
        &[10, 100]
    } else {
        &[10, 100, 1000]
    };
    let algos = [
        "rendezvous",
        "vnodes-160",
        "vnodes-1000",
        "maglev-100",
        "maglev-1000",
    ];
    let idset = ids(n_ids, 42);
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let mut put = |k: String, v: f64| {
        if !json {
            println!("{k:<48} {v:.4}");
        }
        out.insert(k, v);
    };

    for &n in sizes {
        // Independent uniform placement in the same run: the binomial floor.
        let mut r = Rng(7 + n as u64);
        let mut uni = vec![0usize; n];
        for _ in 0..n_ids {
            uni[(r.next() % n as u64) as usize] += 1;
        }
        let ones = vec![1u32; n];
        put(format!("balance.uniform.n{n}"), max_over_mean(&uni, &ones));
        for algo in algos.iter().copied() {
            if n == 1000 && algo == "vnodes-1000" && smoke {
                continue;
            }
            let nodes: Vec<(Vec<u8>, u32)> = names(n).into_iter().map(|s| (s, 1)).collect();
            let t = Instant::now();
            let router = build(algo, &nodes, n);
            let build_ms = t.elapsed().as_secs_f64() * 1e3;
            let before: Vec<usize> = idset.iter().map(|id| router.lookup(id)).collect();
            // Lookup cost: the best of five passes over 20k ids (a shared
            // machine's noise only ever adds).
            let mut ns = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                let mut x = 0usize;
                for id in idset.iter().take(20_000) {
                    x = x.wrapping_add(router.lookup(id));
                }
                std::hint::black_box(x);
                ns = ns.min(t.elapsed().as_secs_f64() * 1e9 / 20_000.0);
            }
            let mut counts = vec![0usize; n];
            for &b in &before {
                if let Some(c) = counts.get_mut(b) {
                    *c += 1;
                }
            }
            put(format!("balance.{algo}.n{n}"), max_over_mean(&counts, &ones));
            put(format!("lookup_ns.{algo}.n{n}"), ns);
            put(format!("build_ms.{algo}.n{n}"), build_ms);
            // Remove one node: ids not on it that move.
            let gone = n / 2;
            let mut fewer = nodes.clone();
            fewer.remove(gone);
            let after = build(algo, &fewer, n);
            let mut others_moved = 0usize;
            for (id, &b) in idset.iter().zip(&before) {
                let a = after.lookup(id);
                let a = if a >= gone { a + 1 } else { a };
                if b != gone && a != b {
                    others_moved += 1;
                }
            }
            put(format!("remove.others_moved.{algo}.n{n}"), others_moved as f64);
            // Add one node: share of ids that move, against 1/(N+1).
            let mut more = nodes.clone();
            more.push((b"app-new".to_vec(), 1));
            more.sort();
            let newi = more.iter().position(|x| x.0 == b"app-new").unwrap_or(0);
            let after = build(algo, &more, n);
            let (mut moved, mut moved_elsewhere) = (0usize, 0usize);
            for (id, &b) in idset.iter().zip(&before) {
                let a = after.lookup(id);
                let b = if b >= newi { b + 1 } else { b };
                if a != b {
                    moved += 1;
                    if a != newi {
                        moved_elsewhere += 1;
                    }
                }
            }
            put(
                format!("add.moved_x_n1.{algo}.n{n}"),
                moved as f64 / n_ids as f64 * (n + 1) as f64,
            );
            put(format!("add.moved_elsewhere.{algo}.n{n}"), moved_elsewhere as f64);
        }
    }

    // Weights 1:2:4.
    for algo in algos.iter().copied() {
        let nodes = vec![(b"a".to_vec(), 1), (b"b".to_vec(), 2), (b"c".to_vec(), 4)];
        let router = build(algo, &nodes, 3);
        let mut counts = [0usize; 3];
        for id in &idset {
            if let Some(c) = counts.get_mut(router.lookup(id)) {
                *c += 1;
            }
        }
        let worst = counts
            .iter()
            .zip([1.0, 2.0, 4.0])
            .map(|(&c, w)| (c as f64 / n_ids as f64 / (w / 7.0) - 1.0).abs())
            .fold(0.0, f64::max);
        put(format!("weights_124.worst_error.{algo}"), worst);
    }

    // Bounded loads: 100k ids with Zipf request weights, c = 1.25, N = 10.
    let (bounded, plain, bound_ok) = zipf_sim(if smoke { 20_000 } else { 100_000 }, 10, 1250);
    put("zipf.bounded.max_over_mean".into(), bounded.0);
    put("zipf.bounded.limit_c_plus_one_weight".into(), bounded.1);
    put("zipf.bounded.rule_held".into(), if bound_ok { 1.0 } else { 0.0 });
    put("zipf.plain.max_over_mean".into(), plain);

    if json {
        let body: Vec<String> = out.iter().map(|(k, v)| format!("  \"{k}\": {v}")).collect();
        println!("{{\n{}\n}}", body.join(",\n"));
    }
}

/// Places `n_ids` sessions one after another; each carries a Zipf(1.0)
/// request weight and its node's load grows by it. Returns the bounded
/// ring's (max/mean, c + max weight/mean), plain rendezvous's max/mean, and
/// whether every placement obeyed the rule (no node above c × mean chosen
/// while another was under).
fn zipf_sim(n_ids: usize, n: usize, c: u32) -> ((f64, f64), f64, bool) {
    let mut r = Rng(99);
    let idset = ids(n_ids, 1234);
    // Rank r (shuffled over the ids) has weight ⌈10000 / r⌉.
    let mut ranks: Vec<usize> = (1..=n_ids).collect();
    for i in (1..ranks.len()).rev() {
        let j = (r.next() % (i as u64 + 1)) as usize;
        ranks.swap(i, j);
    }
    let weight = |k: usize| 10_000u64.div_ceil(ranks[k] as u64);
    let nm = names(n);
    let members: Vec<(&[u8], u32)> = nm.iter().map(|s| (s.as_slice(), 1)).collect();
    let mut ring = Ring::new(c, 1_000_000, &members).unwrap_or_else(|e| panic!("{e}"));
    let plain_ring = ring.clone();
    let mut loads = vec![0u64; n];
    let mut plain = vec![0u64; n];
    let mut ok = true;
    let mut max_w = 0u64;
    for (k, id) in idset.iter().enumerate() {
        let w = weight(k);
        max_w = max_w.max(w);
        let pairs: Vec<(&[u8], u64)> = nm
            .iter()
            .map(|s| s.as_slice())
            .zip(loads.iter().copied())
            .collect();
        if ring.set_loads(0, &pairs).is_err() {
            ok = false;
        }
        let i = ring.route(id, 0, None).unwrap_or(0);
        let total: u64 = loads.iter().sum();
        let mean = total as f64 / n as f64;
        let over = |x: u64| x as f64 > c as f64 / 1000.0 * mean;
        if over(loads[i]) && loads.iter().any(|&x| !over(x)) {
            ok = false;
        }
        loads[i] += w;
        plain[plain_ring.route(id, 0, None).unwrap_or(0)] += w;
    }
    let _ = NodeState::Up;
    let mean = loads.iter().sum::<u64>() as f64 / n as f64;
    let max = *loads.iter().max().unwrap_or(&0) as f64;
    let pmax = *plain.iter().max().unwrap_or(&0) as f64;
    (
        (max / mean, c as f64 / 1000.0 + max_w as f64 / mean),
        pmax / mean,
        ok,
    )
}
