//! Every file under `tests/configs/valid` must load; every file under
//! `tests/configs/invalid` must be refused with a message containing each
//! line of its sibling `NAME.expected` (position `:line:col:`, the value,
//! the fix). Adding a case is adding two files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use ecdn_console::config::{Config, ConfigError, DEFAULT_CONFIG, DEMO_CONFIG};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn every_valid_fixture_loads() {
    for path in fixtures("valid") {
        let text = fs::read_to_string(&path).unwrap();
        if let Err(e) = Config::parse(&text, &path) {
            panic!("{} should be valid:\n{e}", path.display());
        }
    }
}

#[test]
fn the_shipped_configs_load() {
    for (name, text) in [("default.toml", DEFAULT_CONFIG), ("demo.toml", DEMO_CONFIG)] {
        if let Err(e) = Config::parse(text, Path::new(name)) {
            panic!("assets/{name} should be valid:\n{e}");
        }
    }
}

#[test]
fn every_invalid_fixture_is_refused_with_its_expected_message() {
    for path in fixtures("invalid") {
        let expected = expected_fragments(&path);
        let text = fs::read_to_string(&path).unwrap();
        let message = match Config::parse(&text, &path) {
            Ok(_) => panic!("{} should be refused", path.display()),
            Err(e @ ConfigError::Invalid(_)) => e.to_string(),
            Err(other) => panic!("{}: not a located error: {other}", path.display()),
        };
        assert!(
            message.starts_with(&format!("{} is not a valid configuration", path.display())),
            "{}: the message must name the file:\n{message}",
            path.display()
        );
        for fragment in &expected {
            assert!(
                message.contains(fragment.as_str()),
                "{}: message lacks {fragment:?}:\n{message}",
                path.display()
            );
        }
    }
}

/// The `.expected` lines; the first must be the `:line:column:` position,
/// so no fixture can forget to pin where the problem is.
fn expected_fragments(fixture: &Path) -> Vec<String> {
    let path = fixture.with_extension("expected");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} needs {}: {e}", fixture.display(), path.display()));
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let position = lines.first().map(String::as_str).unwrap_or_default();
    let is_position = position.starts_with(':')
        && position.ends_with(':')
        && position
            .trim_matches(':')
            .split(':')
            .all(|n| n.parse::<usize>().is_ok());
    assert!(
        is_position,
        "{}: the first line must be the position, like :7:40:",
        path.display()
    );
    assert!(
        lines.len() >= 2,
        "{}: also name the offending value",
        path.display()
    );
    lines
}

#[test]
fn no_expected_file_is_orphaned() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/invalid");
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "expected") {
            assert!(
                path.with_extension("toml").exists(),
                "{} has no .toml beside it",
                path.display()
            );
        }
    }
}
