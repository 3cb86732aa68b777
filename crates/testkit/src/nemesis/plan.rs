//! Random fault schedules from a seed. Pure: the same seed and settings give the same plan on
//! every machine (the generator is our own SplitMix64, not a library RNG whose stream may
//! change between versions), so a failing run replays exactly.

use std::fmt;
use std::time::Duration;

/// One kind of fault, applied to one node for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// The proxy holds all bytes both ways.
    Blackhole,
    /// The proxy delays every chunk.
    Latency,
    /// The proxy resets the open connections and refuses new ones.
    Reset,
    /// Requests to the node are held, replies flow.
    CutToNode,
    /// Replies from the node are held, requests flow.
    CutFromNode,
    /// Open connections hang, then close.
    SlowClose,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGKILL, then a restart on the same data directory (durable with appendfsync always).
    Kill,
    /// SIGKILL, then a restart with no data: the only kind that loses data on a node.
    RestartEmpty,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Blackhole,
        FaultKind::Latency,
        FaultKind::Reset,
        FaultKind::CutToNode,
        FaultKind::CutFromNode,
        FaultKind::SlowClose,
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::RestartEmpty,
    ];

    /// Network faults act on the proxy; the others on the process.
    pub fn is_network(self) -> bool {
        !matches!(
            self,
            FaultKind::Pause | FaultKind::Kill | FaultKind::RestartEmpty
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Blackhole => "blackhole",
            FaultKind::Latency => "latency",
            FaultKind::Reset => "reset",
            FaultKind::CutToNode => "cut-to-node",
            FaultKind::CutFromNode => "cut-from-node",
            FaultKind::SlowClose => "slow-close",
            FaultKind::Pause => "pause",
            FaultKind::Kill => "kill",
            FaultKind::RestartEmpty => "restart-empty",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scheduled fault: starts at `at` (from the start of the run), ends `hold` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub node: usize,
    pub kind: FaultKind,
    pub hold: Duration,
    /// For `Latency`: the added delay per chunk.
    pub latency: Duration,
}

impl Step {
    pub fn end(&self) -> Duration {
        self.at + self.hold
    }
}

/// What a plan may contain.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub nodes: usize,
    /// Faults start within this time; the last may end a little after it.
    pub duration: Duration,
    pub kinds: Vec<FaultKind>,
    /// Nodes faulty at the same time; at most a minority, so a majority always survives.
    pub max_concurrent: usize,
    /// Data-losing faults (`RestartEmpty`) per plan. One keeps "a majority survived" true
    /// whatever else overlaps; two could wipe the only copies of a write.
    pub max_wipes: usize,
    pub gap: (Duration, Duration),
    pub hold: (Duration, Duration),
    pub latency: (Duration, Duration),
}

impl PlanSettings {
    pub fn new(nodes: usize, duration: Duration, kinds: &[FaultKind]) -> PlanSettings {
        PlanSettings {
            nodes,
            duration,
            kinds: kinds.to_vec(),
            max_concurrent: nodes.saturating_sub(1) / 2,
            max_wipes: 1,
            gap: (Duration::from_millis(100), Duration::from_millis(700)),
            hold: (Duration::from_millis(200), Duration::from_millis(1500)),
            latency: (Duration::from_millis(5), Duration::from_millis(150)),
        }
    }
}

/// A seeded schedule of faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn generate(seed: u64, s: &PlanSettings) -> Plan {
        let mut rng = SplitMix64(seed);
        let mut steps: Vec<Step> = Vec::new();
        let mut wipes = 0;
        let mut t = Duration::ZERO;
        if s.nodes == 0 || s.kinds.is_empty() || s.max_concurrent == 0 {
            return Plan { seed, steps };
        }
        loop {
            t += rng.between(s.gap.0, s.gap.1);
            if t >= s.duration {
                break;
            }
            let busy: Vec<usize> = steps
                .iter()
                .filter(|p| p.at <= t && t < p.end())
                .map(|p| p.node)
                .collect();
            if busy.len() >= s.max_concurrent {
                continue;
            }
            let free: Vec<usize> = (0..s.nodes).filter(|n| !busy.contains(n)).collect();
            let node = free[rng.below(free.len() as u64) as usize];
            let allowed: Vec<FaultKind> = s
                .kinds
                .iter()
                .copied()
                .filter(|k| *k != FaultKind::RestartEmpty || wipes < s.max_wipes)
                .collect();
            if allowed.is_empty() {
                continue;
            }
            let kind = allowed[rng.below(allowed.len() as u64) as usize];
            wipes += usize::from(kind == FaultKind::RestartEmpty);
            let hold = rng.between(s.hold.0, s.hold.1);
            let latency = if kind == FaultKind::Latency {
                rng.between(s.latency.0, s.latency.1)
            } else {
                Duration::ZERO
            };
            steps.push(Step {
                at: t,
                node,
                kind,
                hold,
                latency,
            });
        }
        Plan { seed, steps }
    }

    /// The most nodes faulty at any one time.
    pub fn peak_concurrency(&self) -> usize {
        self.steps
            .iter()
            .map(|a| {
                self.steps
                    .iter()
                    .filter(|b| b.at <= a.at && a.at < b.end())
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant at these sizes.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(nodes: usize) -> PlanSettings {
        PlanSettings::new(nodes, Duration::from_secs(20), &FaultKind::ALL)
    }

    #[test]
    fn same_seed_same_plan_and_different_seeds_differ() {
        let s = settings(3);
        assert_eq!(Plan::generate(7, &s), Plan::generate(7, &s));
        assert_ne!(Plan::generate(7, &s), Plan::generate(8, &s));
    }

    #[test]
    fn a_majority_is_never_faulty_at_once() {
        for nodes in [3, 5] {
            for seed in 0..200 {
                let plan = Plan::generate(seed, &settings(nodes));
                assert!(
                    plan.peak_concurrency() <= (nodes - 1) / 2,
                    "seed {seed}: {} of {nodes} faulty at once",
                    plan.peak_concurrency()
                );
                // One node never has two overlapping faults.
                for (i, a) in plan.steps.iter().enumerate() {
                    for b in &plan.steps[i + 1..] {
                        assert!(a.node != b.node || b.at >= a.end() || a.at >= b.end());
                    }
                }
            }
        }
    }

    #[test]
    fn at_most_one_wipe_and_every_kind_shows_up_across_seeds() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let plan = Plan::generate(seed, &settings(3));
            let wipes = plan
                .steps
                .iter()
                .filter(|s| s.kind == FaultKind::RestartEmpty)
                .count();
            assert!(wipes <= 1, "seed {seed}: {wipes} wipes");
            seen.extend(plan.steps.iter().map(|s| s.kind));
            assert!(plan.steps.iter().all(|s| s.at < Duration::from_secs(20)));
        }
        assert_eq!(seen.len(), FaultKind::ALL.len());
    }

    #[test]
    fn one_node_or_no_kinds_gives_an_empty_plan() {
        assert!(Plan::generate(1, &settings(1)).steps.is_empty());
        let mut s = settings(3);
        s.kinds.clear();
        assert!(Plan::generate(1, &s).steps.is_empty());
    }

    #[test]
    fn latency_is_set_only_for_latency_steps_and_within_bounds() {
        let s = settings(5);
        for seed in 0..20 {
            for step in Plan::generate(seed, &s).steps {
                if step.kind == FaultKind::Latency {
                    assert!(step.latency >= s.latency.0 && step.latency <= s.latency.1);
                } else {
                    assert_eq!(step.latency, Duration::ZERO);
                }
            }
        }
    }
}
