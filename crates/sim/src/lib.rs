//! A deterministic simulation of whole alliances (ARCHITECTURE.md, "The
//! simulation"): a seed draws a configuration (organisations, quorum rule,
//! network, faults, a hostile member's behaviours) and a schedule; the run drives
//! the node's own decisions over a simulated network, clock and store, then heals
//! every fault and checks the invariants. Equal seeds give equal runs.

pub mod config;
pub mod rng;
pub mod world;

pub use config::Config;
pub use world::{Report, World};

/// Bumped whenever the generator changes what a seed draws: a seed names a run
/// only together with this version.
pub const GENERATOR: u32 = 1;

/// Runs one seed.
pub fn run(seed: u64, trace: bool) -> (Config, Report) {
    let config = Config::draw(seed);
    let mut world = World::new(seed, config.clone(), trace);
    world.run();
    (config, world.report)
}

/// The seeds `ACCORD_SIM_SEEDS` names: `N` (the first N from `base`), `A..B`, or
/// `S1,S2,...` (decimal or `0x` hex).
pub fn parse_seeds(spec: &str, base: u64) -> Result<Vec<u64>, String> {
    let number = |s: &str| -> Result<u64, String> {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .map_err(|e| format!("ACCORD_SIM_SEEDS: {s:?} is not a seed: {e}"))
    };
    if let Some((a, b)) = spec.split_once("..") {
        let (a, b) = (number(a)?, number(b)?);
        return Ok((a..b).collect());
    }
    if spec.contains(',') {
        return spec.split(',').map(number).collect();
    }
    let n = number(spec)?;
    Ok((0..n).map(|i| base.wrapping_add(i)).collect())
}
