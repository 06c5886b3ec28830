//! When a running relay should take a config file change (README, "Configuration").
//!
//! Editors, `cat > file`, config management and Kubernetes all change a
//! file in steps: truncate then write, write a temporary file then rename,
//! swap a `..data` symlink. A relay that applied whatever it saw first
//! would, on a truncation, load an empty file — a valid config with no
//! domains — and close every live session. So a change is taken only when:
//! - its *content* differs from what is in force (not only mtime and size:
//!   a same-size rewrite with the old mtime restored is still a change),
//! - the content has stayed the same for [`QUIET_PERIOD`],
//! - it is not empty (refused, the old config stays in force);
//!
//! and the text that was read is the text that is parsed and applied —
//! nothing is stat'ed or read again after it.
//!
//! Reading the whole file on every poll is deliberate: a config is a few
//! kilobytes, and only content comparison sees every change, including a
//! ConfigMap's symlink swap (the path resolves to a new file).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ConfigFile;

/// How long new content must stay unchanged before it is applied.
pub const QUIET_PERIOD: Duration = Duration::from_millis(300);
/// How often a watcher should [`poll`](ConfigWatch::poll).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What a reload decided.
#[derive(Debug)]
pub enum Reload {
    /// A valid new config: put it in force (then call [`ConfigWatch::applied`]).
    Apply(Box<ConfigFile>),
    /// The file was refused; the config in force stays. One line, with how to fix it.
    Refused(String),
}

/// Follows one config file's content for a running relay.
#[derive(Debug)]
pub struct ConfigWatch {
    path: PathBuf,
    /// The text of the config in force.
    in_force: String,
    /// Content that differs from `in_force`, and since when it has been seen.
    settling: Option<(Result<String, String>, Instant)>,
    /// The last content (or read error) that was refused, so it is reported once.
    refused: Option<Result<String, String>>,
}

impl ConfigWatch {
    /// Watches `path`, whose text `in_force` is the config in force.
    pub fn new(path: &Path, in_force: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            in_force: in_force.to_string(),
            settling: None,
            refused: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and decides: `None` while nothing changed, while a
    /// change is still settling, or when the same refused content is seen again.
    pub fn poll(&mut self, now: Instant) -> Option<Reload> {
        let seen = read(&self.path);
        if seen.as_ref().is_ok_and(|text| *text == self.in_force) {
            // Back to what is in force (an editor's temporary state passed).
            self.settling = None;
            self.refused = None;
            return None;
        }
        if self.refused.as_ref() == Some(&seen) {
            return None;
        }
        match &self.settling {
            Some((settling, since)) if *settling == seen => {
                if now.saturating_duration_since(*since) < QUIET_PERIOD {
                    return None;
                }
            }
            _ => {
                self.settling = Some((seen, now));
                return None;
            }
        }
        self.settling = None;
        Some(self.decide(seen))
    }

    /// Whether a change was seen that is not decided yet: poll again
    /// within [`QUIET_PERIOD`] to take it.
    pub fn settling(&self) -> bool {
        self.settling.is_some()
    }

    /// Reads and decides at once, without the quiet period (SIGHUP: the
    /// operator says the file is ready). Unchanged content is applied again.
    pub fn reload_now(&mut self) -> Reload {
        self.settling = None;
        self.decide(read(&self.path))
    }

    /// The text of `file` is now in force. Telling it the text already in
    /// force changes nothing: a refused file stays refused (reported once).
    pub fn applied(&mut self, file: &ConfigFile) {
        if self.in_force != file.text() {
            self.in_force = file.text().to_string();
            self.refused = None;
        }
    }

    fn decide(&mut self, seen: Result<String, String>) -> Reload {
        let outcome = match &seen {
            Err(error) => Reload::Refused(error.clone()),
            Ok(text) if text.trim().is_empty() => Reload::Refused(format!(
                "{} is empty; an empty file is refused on reload, so that an editor or \
                 `cat > file` that truncates first cannot drop every session (write the \
                 whole config, or remove every [[domain]] on purpose)",
                self.path.display()
            )),
            Ok(text) => match ConfigFile::from_text(&self.path, text.clone()) {
                Ok(file) => return Reload::Apply(Box::new(file)),
                Err(error) => Reload::Refused(error.one_line()),
            },
        };
        self.refused = Some(seen);
        outcome
    }
}

fn read(path: &Path) -> Result<String, String> {
    super::store::read_text(path).map_err(|e| read_error(path, &e))
}

fn read_error(path: &Path, e: &io::Error) -> String {
    format!("cannot read {}: {e}", path.display())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    const GOOD: &str = "[relay]\nlisten = \"127.0.0.1:0\"\n";
    const OTHER: &str = "[relay]\nlisten = \"127.0.0.1:1\"\n";

    fn setup() -> (tempfile::TempDir, PathBuf, ConfigWatch) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, GOOD).unwrap();
        let watch = ConfigWatch::new(&path, GOOD);
        (dir, path, watch)
    }

    fn applied_text(reload: Option<Reload>) -> String {
        match reload {
            Some(Reload::Apply(file)) => file.text().to_string(),
            other => panic!("expected a config to apply, got {other:?}"),
        }
    }

    #[test]
    fn a_change_is_applied_only_after_the_quiet_period() {
        let (_dir, path, mut watch) = setup();
        let t0 = Instant::now();
        assert!(watch.poll(t0).is_none());
        std::fs::write(&path, OTHER).unwrap();
        assert!(watch.poll(t0).is_none(), "just seen: settling");
        assert!(watch.settling());
        assert!(watch.poll(t0 + QUIET_PERIOD / 2).is_none());
        assert_eq!(applied_text(watch.poll(t0 + QUIET_PERIOD)), OTHER);
        assert!(!watch.settling());
    }

    fn refused(reload: Option<Reload>) -> String {
        match reload {
            Some(Reload::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A FIFO put at the path is refused at once: a read would block the
    /// relay's main thread until some writer came.
    #[test]
    fn a_fifo_at_the_path_is_refused_without_blocking() {
        let (_dir, path, mut watch) = setup();
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t0 = Instant::now();
        assert!(watch.poll(t0).is_none(), "settling");
        let why = refused(watch.poll(t0 + QUIET_PERIOD));
        assert!(why.contains("a FIFO, socket or device"), "{why}");
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_file_far_larger_than_any_config_is_refused() {
        let (_dir, path, mut watch) = setup();
        let file = std::fs::File::options().append(true).open(&path).unwrap();
        file.set_len(super::super::store::MAX_CONFIG_BYTES + 1)
            .unwrap();
        let t0 = Instant::now();
        assert!(watch.poll(t0).is_none(), "settling");
        let why = refused(watch.poll(t0 + QUIET_PERIOD));
        assert!(why.contains("larger than 16 MiB"), "{why}");
    }

    #[test]
    fn a_truncation_followed_by_a_write_never_applies_the_empty_file() {
        let (_dir, path, mut watch) = setup();
        let t0 = Instant::now();
        std::fs::write(&path, "").unwrap(); // open(f, "w")
        assert!(watch.poll(t0).is_none());
        std::fs::write(&path, OTHER).unwrap(); // ...and the write, before the quiet period ends
        assert!(
            watch.poll(t0 + QUIET_PERIOD / 2).is_none(),
            "restarts settling"
        );
        assert_eq!(applied_text(watch.poll(t0 + QUIET_PERIOD * 2)), OTHER);
    }

    #[test]
    fn an_empty_file_is_refused_once_and_the_config_stays() {
        let (_dir, path, mut watch) = setup();
        let t0 = Instant::now();
        std::fs::write(&path, "\n  \n").unwrap();
        assert!(watch.poll(t0).is_none());
        match watch.poll(t0 + QUIET_PERIOD) {
            Some(Reload::Refused(why)) => assert!(why.contains("is empty"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(watch.poll(t0 + QUIET_PERIOD * 3).is_none(), "reported once");
        assert!(
            matches!(watch.reload_now(), Reload::Refused(_)),
            "SIGHUP too"
        );
    }

    #[test]
    fn a_same_size_rewrite_with_the_old_mtime_is_seen() {
        let (_dir, path, mut watch) = setup();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let same_size = GOOD.replace("0\"", "9\"");
        assert_eq!(same_size.len(), GOOD.len());
        std::fs::write(&path, &same_size).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let t0 = Instant::now();
        assert!(watch.poll(t0).is_none());
        assert_eq!(applied_text(watch.poll(t0 + QUIET_PERIOD)), same_size);
    }

    #[test]
    fn content_back_to_the_config_in_force_is_not_a_change() {
        let (_dir, path, mut watch) = setup();
        let t0 = Instant::now();
        std::fs::write(&path, OTHER).unwrap();
        assert!(watch.poll(t0).is_none());
        std::fs::write(&path, GOOD).unwrap();
        assert!(watch.poll(t0 + QUIET_PERIOD).is_none());
        assert!(watch.poll(t0 + QUIET_PERIOD * 2).is_none());
    }

    #[test]
    fn a_bad_file_is_refused_once_and_a_fixed_one_applied() {
        let (_dir, path, mut watch) = setup();
        let t0 = Instant::now();
        std::fs::write(&path, "[relay]\nlisten = 5\n").unwrap();
        watch.poll(t0);
        assert!(matches!(
            watch.poll(t0 + QUIET_PERIOD),
            Some(Reload::Refused(_))
        ));
        assert!(watch.poll(t0 + QUIET_PERIOD * 2).is_none());
        std::fs::write(&path, OTHER).unwrap();
        watch.poll(t0 + QUIET_PERIOD * 3);
        assert_eq!(applied_text(watch.poll(t0 + QUIET_PERIOD * 4)), OTHER);
    }

    #[test]
    fn a_configmap_symlink_swap_is_picked_up() {
        // Kubernetes: relay.toml -> ..data/relay.toml, ..data -> ..2026_v1;
        // an update writes ..2026_v2 and renames a new ..data link over the old.
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("relay.toml"), GOOD).unwrap();
        std::fs::write(v2.join("relay.toml"), OTHER).unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("..v1", &data).unwrap();
        let path = dir.path().join("relay.toml");
        std::os::unix::fs::symlink("..data/relay.toml", &path).unwrap();
        let mut watch = ConfigWatch::new(&path, GOOD);
        let t0 = Instant::now();
        assert!(watch.poll(t0).is_none());
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("..v2", &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        assert!(watch.poll(t0).is_none());
        assert_eq!(applied_text(watch.poll(t0 + QUIET_PERIOD)), OTHER);
    }
}
