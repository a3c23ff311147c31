//! Seed → configuration: the alliance, the network, the faults and the hostile
//! member's behaviours a run draws before its schedule (swarm testing: each fault
//! and each hostile behaviour is on for a seed with probability ½, so what is left
//! out lets the rest go deeper).

use accord_core::roster::QuorumRule;

use crate::rng::Rng;

/// What a hostile member does in a run.
#[derive(Debug, Clone, Default)]
pub struct Hostile {
    /// The organisation (index) that is hostile.
    pub org: usize,
    /// Two entries at one seq, one to each half of the nodes.
    pub fork_split: bool,
    /// Two entries at one seq, both to one node in one message (one writer batch).
    pub fork_one_batch: bool,
    /// A second entry at the seq of its own earlier governance entry.
    pub fork_governance: bool,
    /// Votes stamped before a deadline that has passed.
    pub backdate: bool,
    /// `seen` understated (empty) or inflated (seqs past any log).
    pub seen_lies: bool,
    /// Heads claimed far past what logs hold, honest organisations' included.
    pub inflate_heads: bool,
    /// Its clock, as its heads report it, ten minutes fast.
    pub fast_clock: bool,
    /// Announcements in bulk.
    pub flood: bool,
    /// Undecodable bytes and bad signatures.
    pub junk: bool,
    /// Votes signed after its removal, stamped before it.
    pub votes_after_removal: bool,
}

impl Hostile {
    /// The names of the behaviours on for this run, in a fixed order.
    pub fn acts(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.fork_split, "fork-split"),
            (self.fork_one_batch, "fork-one-batch"),
            (self.fork_governance, "fork-governance"),
            (self.backdate, "backdate"),
            (self.seen_lies, "seen-lies"),
            (self.inflate_heads, "inflate-heads"),
            (self.fast_clock, "fast-clock"),
            (self.flood, "flood"),
            (self.junk, "junk"),
            (self.votes_after_removal, "votes-after-removal"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Organisations, one node each: index 0 is the secretariat, the rest members.
    pub orgs: usize,
    pub hostile: Option<Hostile>,
    pub quorum: QuorumRule,
    /// Bursts of activity, separated by warps of hours or days.
    pub bursts: usize,
    /// Per-link delay: minimum and mean of the exponential part (ms).
    pub delay_min: u64,
    pub delay_mean: u64,
    /// Messages lost, percent (while faults are on).
    pub loss: u64,
    pub partitions: bool,
    pub crashes: bool,
    /// Per-node clock offsets (honest nodes within the charter's skew).
    pub clock_skew: bool,
    /// The writer's wait for more entries, stretched (buggify).
    pub long_linger: bool,
    /// Governance share of the workload, percent.
    pub governance: u64,
    pub admissions: bool,
    pub recoveries: bool,
    /// Members propose to remove the hostile member.
    pub remove_hostile: bool,
}

impl Config {
    pub fn draw(seed: u64) -> Self {
        let mut r = Rng::new(seed, "config");
        let orgs = match r.range(0, 9) {
            0..=6 => r.range(3, 7),
            7 | 8 => r.range(8, 12),
            _ => r.range(13, 20),
        } as usize;
        // About one seed in ten has no faults and no hostile member.
        let calm = r.chance(10);
        let on = |r: &mut Rng| !calm && r.chance(50);
        let hostile = on(&mut r).then(|| {
            let mut h = Hostile {
                org: r.index(orgs),
                ..Hostile::default()
            };
            h.fork_split = r.chance(50);
            h.fork_one_batch = r.chance(50);
            h.fork_governance = r.chance(50);
            h.backdate = r.chance(50);
            h.seen_lies = r.chance(50);
            h.inflate_heads = r.chance(50);
            h.fast_clock = r.chance(50);
            h.flood = r.chance(30);
            h.junk = r.chance(50);
            h.votes_after_removal = r.chance(50);
            h
        });
        let quorum = match r.range(0, 5) {
            0..=2 => QuorumRule::Majority,
            3 => QuorumRule::All,
            4 => QuorumRule::Count(r.range(1, 3) as u32),
            _ => QuorumRule::Lazy(r.range(1, 13) as u32),
        };
        Self {
            orgs,
            quorum,
            bursts: r.range(4, 10) as usize,
            delay_min: r.range(0, 30),
            delay_mean: r.range(30, 300),
            loss: if on(&mut r) { r.range(1, 20) } else { 0 },
            partitions: on(&mut r),
            crashes: on(&mut r),
            clock_skew: on(&mut r),
            long_linger: on(&mut r),
            governance: r.range(10, 30),
            admissions: r.chance(60),
            recoveries: on(&mut r),
            remove_hostile: hostile.is_some() && r.chance(50),
            hostile,
        }
    }

    /// One line: what a failing seed ran.
    pub fn describe(&self) -> String {
        let mut flags = Vec::new();
        for (on, name) in [
            (self.partitions, "partitions"),
            (self.crashes, "crashes"),
            (self.clock_skew, "skew"),
            (self.long_linger, "long-linger"),
            (self.admissions, "admissions"),
            (self.recoveries, "recoveries"),
            (self.remove_hostile, "remove-hostile"),
        ] {
            if on {
                flags.push(name.to_owned());
            }
        }
        if self.loss > 0 {
            flags.push(format!("loss {}%", self.loss));
        }
        if let Some(h) = &self.hostile {
            let acts: Vec<&str> = h.acts().collect();
            flags.push(format!("hostile org {} [{}]", h.org, acts.join(" ")));
        }
        format!(
            "{} organisations, quorum {:?}, {} bursts, delay {}+exp({}) ms, {}",
            self.orgs,
            self.quorum,
            self.bursts,
            self.delay_min,
            self.delay_mean,
            flags.join(", ")
        )
    }
}
