//! Replays the fuzzers' seed corpus (`fuzz/corpus/`) and any saved crash
//! inputs (`fuzz/regressions/`) through the same code the fuzz targets run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use ecdn_console::fuzz_targets;

fn replay(target: &str, run: fn(&[u8])) {
    let mut count = 0;
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "no corpus for {target}");
}

#[test]
fn handshake_corpus() {
    replay("handshake", fuzz_targets::handshake);
}

#[test]
fn config_corpus() {
    replay("config", fuzz_targets::config);
}

#[test]
fn frames_corpus() {
    replay("frames", fuzz_targets::frames);
}

#[test]
fn keys_corpus() {
    replay("keys", fuzz_targets::keys);
}
