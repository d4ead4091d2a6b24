//! Long-run fuzzing of the loaders: `cargo run --release -p beit-benches --bin fuzz --
//! --seconds 3600 [--target NAME] [--seed S]`. Loops the cases of `beit_benches::fuzz`
//! (the proptest suite's generators) with random case numbers, catching panics, and reports
//! per target how many cases loaded, how many were clean errors, and the case number of
//! every panic or hang (`--replay CASE --target NAME` runs one case again, panic and all).

use beit_benches::fuzz::{Fuzzer, Target, TARGETS};
use clap::Parser;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Total seconds, split evenly between the targets.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target (safetensors, config, preprocessor, image, tokenizer).
    #[arg(long)]
    target: Option<String>,
    /// Seed of the case numbers (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this one case of `--target` and print its outcome.
    #[arg(long, requires = "target")]
    replay: Option<u64>,
    /// A case running longer than this many seconds is reported as a hang (and ends the run).
    #[arg(long, default_value_t = 60)]
    hang_seconds: u64,
}

/// What one case ended in.
enum Outcome {
    Ok,
    Err,
    Panic(String),
}

fn run_case(fuzzer: &Fuzzer, case: u64) -> Outcome {
    let (seed, mutations) = fuzzer.case(case);
    match catch_unwind(AssertUnwindSafe(|| fuzzer.run(seed, &mutations))) {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(_)) => Outcome::Err,
        Err(payload) => {
            let msg = payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
            Outcome::Panic(msg.unwrap_or_else(|| "(no message)".into()))
        }
    }
}

#[derive(Default)]
struct Counts {
    cases: u64,
    ok: u64,
    err: u64,
    panics: Vec<(u64, String)>,
    slowest: (Duration, u64),
}

/// Run `target` for `budget`; `None` when a case hung (already reported).
fn fuzz(target: Target, budget: Duration, base: u64, hang: Duration) -> Option<Counts> {
    let (cases_tx, cases_rx) = mpsc::channel::<u64>();
    let (done_tx, done_rx) = mpsc::channel::<(u64, Outcome, Duration)>();
    std::thread::spawn(move || {
        let fuzzer = Fuzzer::new(target);
        for case in cases_rx {
            let t = Instant::now();
            let outcome = run_case(&fuzzer, case);
            if done_tx.send((case, outcome, t.elapsed())).is_err() {
                break;
            }
        }
    });
    let mut counts = Counts::default();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < budget {
        let case = beit::engine::rng::mix64(base ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        i += 1;
        cases_tx.send(case).expect("the worker is alive");
        // The first case also builds the seeds.
        let Ok((case, outcome, took)) = done_rx.recv_timeout(hang + Duration::from_secs(if i == 1 { 60 } else { 0 })) else {
            println!("HANG  {:<13} case {case} ran over {} s (replay: --target {} --replay {case})", target.name(), hang.as_secs(), target.name());
            return None;
        };
        counts.cases += 1;
        counts.slowest = counts.slowest.max((took, case));
        match outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Err => counts.err += 1,
            Outcome::Panic(msg) => {
                println!("PANIC {:<13} case {case}: {msg} (replay: --target {} --replay {case})", target.name(), target.name());
                counts.panics.push((case, msg));
            }
        }
    }
    Some(counts)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let targets: Vec<Target> = match &args.target {
        Some(name) => match Target::from_name(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("error: unknown target `{name}` (one of: {})", TARGETS.map(Target::name).join(", "));
                return std::process::ExitCode::FAILURE;
            }
        },
        None => TARGETS.to_vec(),
    };
    if let Some(case) = args.replay {
        let fuzzer = Fuzzer::new(targets[0]);
        let (seed, mutations) = fuzzer.case(case);
        println!("seed {:?}, mutations {mutations:?}", fuzzer.seed_label(seed));
        println!("{:?}", fuzzer.run(seed, &mutations).map_err(|e| e.to_string()));
        return std::process::ExitCode::SUCCESS;
    }
    // Panics are counted and reported below; the default hook would print each one too.
    std::panic::set_hook(Box::new(|_| {}));
    let base = args.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    let budget = Duration::from_secs(args.seconds) / targets.len() as u32;
    println!("fuzz: seed {base}, {} s per target", budget.as_secs_f64());
    let mut failed = false;
    println!("{:<13} {:>8} {:>8} {:>8} {:>7} {:>12}  slowest case", "target", "cases", "ok", "err", "panics", "slowest ms");
    for target in targets {
        let Some(c) = fuzz(target, budget, base ^ target as u64, Duration::from_secs(args.hang_seconds)) else {
            return std::process::ExitCode::FAILURE;
        };
        failed |= !c.panics.is_empty();
        println!("{:<13} {:>8} {:>8} {:>8} {:>7} {:>12.1}  {}", target.name(), c.cases, c.ok, c.err, c.panics.len(), c.slowest.0.as_secs_f64() * 1e3, c.slowest.1);
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
