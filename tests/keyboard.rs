//! No key sequence panics the console (Standards: no panic is reachable
//! from the keyboard): seeded random sequences through the `keys` fuzz
//! target's body — every screen, dialog and form, each key's effects
//! carried out on a real file, a draw after each at sizes that change.
//! `ECDN_KEY_SEEDS=5000 cargo test --release --test keyboard` runs more;
//! `cargo fuzz run keys` (fuzz/) searches further. What either finds goes
//! in fuzz/regressions/keys/, replayed by tests/fuzz_corpus.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ecdn_console::fuzz_targets;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn random_key_sequences_never_panic() {
    let seeds: u64 = std::env::var("ECDN_KEY_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let len = rng.random_range(50..400);
        let keys: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let run = std::panic::catch_unwind(|| fuzz_targets::keys(&keys));
        if run.is_err() {
            let saved = std::env::temp_dir().join(format!("ecdn-keys-seed-{seed}"));
            std::fs::write(&saved, &keys).unwrap();
            panic!(
                "seed {seed} panicked the console; its keys are in {} (copy it to \
                 fuzz/regressions/keys/ once fixed)",
                saved.display()
            );
        }
    }
}
