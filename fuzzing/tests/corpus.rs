//! Every fuzz target over its seeds, its corpus (`fuzz/corpus/<target>`) and the inputs of past
//! findings (`fuzz/regressions/<target>`), then over random mutations of them for a few
//! seconds (`QUILLDB_FUZZ_SECONDS`, default 3): the short fuzz run of the test command. The
//! long runs are libFuzzer's (`scripts/fuzz.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// One random change of `input`, libFuzzer-style: flip, set, insert, delete, duplicate or
/// splice from another input.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let len = out.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = *[0u8, 1, 0x7f, 0x80, 0xff, b'(', b'\'', b'0']
                    .get(rng.random_range(0..8))
                    .unwrap();
            }
            2 => {
                let i = rng.random_range(0..=len);
                out.insert(i, rng.random());
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(32));
                let chunk: Vec<u8> = out[i..i + n].to_vec();
                out.splice(i..i, chunk);
            }
            5 if !other.is_empty() => {
                let i = rng.random_range(0..=len);
                let j = rng.random_range(0..other.len());
                let n = rng.random_range(1..=(other.len() - j).min(32));
                out.splice(i..i, other[j..j + n].iter().copied());
            }
            _ if len > 1 => {
                out.truncate(rng.random_range(0..len));
            }
            _ => out.push(rng.random()),
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_its_findings_and_mutations_of_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let seconds: u64 = std::env::var("QUILLDB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("QUILLDB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("mutation seed {seed} (QUILLDB_FUZZ_SEED repeats a run)");
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, target) in quilldb_fuzzing::TARGETS {
        let mut inputs: Vec<Vec<u8>> = quilldb_fuzzing::seeds::seeds(name);
        for dir in ["corpus", "regressions"] {
            for (path, bytes) in files(&root.join(dir).join(name)) {
                let run = std::panic::catch_unwind(|| target(&bytes));
                assert!(run.is_ok(), "{name} failed on {}", path.display());
                inputs.push(bytes);
            }
        }
        assert!(!inputs.is_empty(), "{name} has no inputs");
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let a = &inputs[rng.random_range(0..inputs.len())];
            let b = &inputs[rng.random_range(0..inputs.len())];
            let input = mutate(&mut rng, a, b);
            let run = std::panic::catch_unwind(|| target(&input));
            if run.is_err() {
                let path =
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}-{seed}"));
                std::fs::write(&path, &input).unwrap();
                panic!(
                    "{name} failed on a mutation (seed {seed}), kept in {}: add it to \
                     fuzz/regressions/{name}/ with the fix",
                    path.display()
                );
            }
            runs += 1;
        }
        println!(
            "{name}: {} inputs, {runs} mutations in {seconds} s",
            inputs.len()
        );
    }
}
