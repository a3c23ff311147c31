//! Runs the simulation over many seeds: `ACCORD_SIM_SEEDS` (default 1000) names
//! them, `ACCORD_SIM_JOBS` the threads (default: the cores), `ACCORD_SIM_TRACE=1`
//! prints every event of the seeds run. A failure prints its seed and the one line
//! that replays it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[test]
fn alliances() {
    let spec = std::env::var("ACCORD_SIM_SEEDS").unwrap_or_else(|_| "1000".into());
    let seeds = accord_sim::parse_seeds(&spec, 0).expect("seeds");
    let trace = std::env::var("ACCORD_SIM_TRACE").is_ok_and(|v| v == "1");
    let jobs = std::env::var("ACCORD_SIM_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    let t = Instant::now();
                    let (config, report) = accord_sim::run(seed, trace);
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    results.lock().unwrap().push((i, seed, config, report, ms));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    // Determinism itself: the first seeds again give the same runs.
    for (_, seed, _, report, _) in results.iter().take(10) {
        let (_, again) = accord_sim::run(*seed, false);
        assert_eq!(
            again.trace_hash, report.trace_hash,
            "seed {seed:#x} ran differently twice: the simulation is not deterministic"
        );
    }
    let mut times: Vec<f64> = results.iter().map(|r| r.4).collect();
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let p99 = times.get(times.len() * 99 / 100).copied().unwrap_or(0.0);
    let mut probes = std::collections::BTreeMap::<&str, usize>::new();
    let (mut events, mut entries) = (0u64, 0u64);
    for (_, _, _, report, _) in &results {
        events += report.events;
        entries += report.entries;
        for p in &report.probes {
            *probes.entry(p).or_default() += 1;
        }
    }
    println!(
        "{} seeds in {:.1} s ({} threads): mean {mean:.1} ms, p99 {p99:.1} ms per seed; {events} events, {entries} entries committed",
        results.len(),
        started.elapsed().as_secs_f64(),
        jobs
    );
    for (probe, n) in &probes {
        println!("  probe {probe:<32} {n} seeds");
    }
    // The invariant the node does not meet yet (issue 22, still open): a proposal's
    // final fate can still change when entries arrive later (defects 1 and 2, and
    // concurrent conflicting proposals). Seeds that break only this are reported,
    // and fail the run with ACCORD_SIM_STRICT=1.
    let strict = std::env::var("ACCORD_SIM_STRICT").is_ok_and(|v| v == "1");
    let known_open = |v: &String| v.starts_with("proposal ");
    let open: Vec<_> = results
        .iter()
        .filter(|r| !r.3.violations.is_empty() && r.3.violations.iter().all(known_open))
        .collect();
    if !open.is_empty() {
        let seeds: Vec<String> = open.iter().take(8).map(|r| format!("{:#x}", r.1)).collect();
        println!(
            "\nknown open (issue 22: final fates that change): {} seeds, e.g. {}",
            open.len(),
            seeds.join(",")
        );
        if let Some((_, _, _, report, _)) = open.first() {
            println!("  {}", report.violations[0]);
        }
    }
    let failed: Vec<_> = results
        .iter()
        .filter(|r| {
            !r.3.violations.is_empty() && (strict || !r.3.violations.iter().all(known_open))
        })
        .collect();
    for (_, seed, config, report, _) in &failed {
        println!(
            "\nseed {seed:#x} (generator {}) failed: {}",
            accord_sim::GENERATOR,
            config.describe()
        );
        for v in &report.violations {
            println!("  {v}");
        }
        println!(
            "  replay: ACCORD_SIM_SEEDS={seed:#x},{seed:#x} ACCORD_SIM_TRACE=1 cargo test --release -p accord-sim -- --nocapture"
        );
    }
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed",
        failed.len(),
        results.len()
    );
}
