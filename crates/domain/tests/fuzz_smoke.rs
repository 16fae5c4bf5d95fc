//! The fuzz targets of `fuzz/` on stable Rust, for CI: every seed of `fuzz/corpus/` and
//! thousands of deterministic mutations of them (bit flips, byte insertions and deletions,
//! truncations, splices of two seeds, interesting bytes). A panic is a failure; rejecting an
//! input with line-numbered errors is the expected outcome for most of them.
//! Longer, coverage-guided runs: `cargo +nightly fuzz run dataset_upload` in `fuzz/`.

use std::path::{Path, PathBuf};

use rankfit_domain::fuzzing;

/// xorshift64*: a fixed, reproducible stream of mutation choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\xff",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\0",
    b"\r\n",
    b"\n",
    b"\t",
    b",",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"null",
    b"-1",
    b"1e999",
    b"NaN",
    b"\"label\"",
    b"\"split\": \"test\"",
    b"\xef\xbb\xbf",
    b"\\u0000",
    b"\\ud800",
];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => out.truncate(at),
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                // Repeat a slice: long lines, many rows.
                let end = (at + rng.below(32)).min(out.len());
                let slice = out[at..end].to_vec();
                for _ in 0..rng.below(8) {
                    out.splice(at..at, slice.iter().copied());
                }
            }
        }
    }
    out
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p: &PathBuf| std::fs::read(Path::new(p)).unwrap()).collect();
    assert!(seeds.len() >= 5, "seed corpus {} has {} files", dir.display(), seeds.len());
    seeds
}

fn run(name: &str, target: fn(&[u8]), rounds: usize) {
    let seeds = corpus(name);
    for s in &seeds {
        target(s);
    }
    let mut rng = Rng(0x5eed_0000 ^ name.len() as u64);
    for round in 0..rounds {
        let (a, b) = (rng.below(seeds.len()), rng.below(seeds.len()));
        let input = mutate(&mut rng, &seeds[a], &seeds[b]);
        let result = std::panic::catch_unwind(|| target(&input));
        assert!(result.is_ok(), "{name}: round {round} panicked on input {:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn dataset_parsers_survive_mutated_uploads() {
    run("dataset_upload", fuzzing::dataset_upload, 20_000);
}

#[test]
fn run_config_decoding_and_validation_survive_mutated_configs() {
    run("run_config", fuzzing::run_config, 20_000);
}

#[test]
fn the_seeds_are_accepted_so_mutations_start_from_valid_inputs() {
    use rankfit_domain::dataset;
    let seeds = corpus("dataset_upload");
    let mut accepted = 0;
    for s in &seeds {
        let (&sel, body) = s.split_first().unwrap();
        let opts = fuzzing::upload_options(sel);
        match dataset::parse(body, &opts) {
            Ok(_) => accepted += 1,
            Err(e) => eprintln!("seed rejected ({:?}): {e}", opts.format),
        }
    }
    assert!(accepted * 10 >= seeds.len() * 8, "only {accepted} of {} seeds parse", seeds.len());
}
