//! Property tests of the loaders: mutated valid files and random bytes (the generators of
//! `beit_benches::fuzz`, shared with the long-run `fuzz` binary) load or fail with a clean
//! error, never a panic. A short budget: 128 cases per target.

use beit_benches::fuzz::{Fuzzer, Mutation, Target};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;

const CASES: u32 = 128;

/// The seeds load as they are; then `CASES` mutated cases end in `Ok` or an error (a panic
/// fails the run with the shrunk case).
fn check(target: Target) {
    let fuzzer = Fuzzer::new(target);
    for seed in 0..fuzzer.num_seeds() {
        let loaded = fuzzer.run(seed, &[]);
        assert!(loaded.is_ok(), "{target:?} seed {}: {loaded:?}", fuzzer.seed_label(seed));
    }
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let parts = vec((any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()), 1..5);
    let (ok, err) = (Cell::new(0u32), Cell::new(0u32));
    runner
        .run(&(any::<usize>(), parts), |(seed, parts)| {
            let focus = fuzzer.focus(seed);
            let mutations: Vec<Mutation> = parts.iter().map(|&(k, a, b, c)| Mutation::from_parts(k, a, b, c, focus)).collect();
            match fuzzer.run(seed, &mutations) {
                Ok(()) => ok.set(ok.get() + 1),
                Err(_) => err.set(err.get() + 1),
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target:?}: {e}"));
    println!("{target:?}: {} ok, {} clean errors", ok.get(), err.get());
    assert!(ok.get() + err.get() >= CASES && err.get() > 0, "{target:?}: {} ok, {} errors", ok.get(), err.get());
}

#[test]
fn safetensors_reader() {
    check(Target::Safetensors);
}

#[test]
fn model_configs_and_folders() {
    check(Target::Config);
}

#[test]
fn preprocessor_configs() {
    check(Target::Preprocessor);
}

#[test]
fn image_loader() {
    check(Target::Image);
}

#[test]
fn tokenizer_folders() {
    check(Target::Tokenizer);
}
