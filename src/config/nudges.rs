//! When a running relay (`serve`, or the console's own) should look at its
//! config file again (README, "Configuration").
//!
//! Reading the file every 100 ms (what [`ConfigWatch`] needs to see every
//! change) would make an idle relay wake ten times a second to read a file
//! nobody touched. Instead the kernel says when something happened where
//! the file lives (inotify): in the directory of the path as given — where
//! an editor's rename-over, `cat >` and a Kubernetes ConfigMap's `..data`
//! symlink swap happen — and in the directory of the file it resolves to
//! (a symlink's target written in place). Between nudges the relay reads the
//! file only while a change is settling, and once every
//! [`RECHECK_WITH_NUDGES`] in case a change came in a way inotify does not
//! see (a network filesystem changed from another host). Where inotify is
//! not available at all, it reads the file every [`POLL_INTERVAL`], as
//! before.
//!
//! What wakes it: a file closed after writing, renamed, created, deleted or
//! re-permissioned — not each `write` (`IN_MODIFY`), so a log file kept open
//! beside the config (`serve > ./serve.log`) costs nothing, and a writer
//! that holds the file open is looked at once it closes it.
//!
//! [`ConfigWatch`]: crate::config::ConfigWatch

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

use super::watch::POLL_INTERVAL;

/// How often the file is read anyway while inotify watches it.
pub const RECHECK_WITH_NUDGES: Duration = Duration::from_secs(5);

/// What happens in a watched directory that may have changed the config.
fn interesting() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// `AsyncFd` wants `AsRawFd`; nix's `Inotify` offers `AsFd`.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Tells a relay when its config file may have changed.
pub struct Nudges {
    path: PathBuf,
    /// `None` where inotify could not be set up: then [`recheck_every`]
    /// is the poll interval and [`changed`] never resolves.
    ///
    /// [`recheck_every`]: Self::recheck_every
    /// [`changed`]: Self::changed
    inotify: Option<AsyncFd<InotifyFd>>,
    watched: HashMap<PathBuf, WatchDescriptor>,
}

impl Nudges {
    /// Watches where `path` lives. If inotify cannot be used (no such
    /// support, or out of inotify instances or watches), says so on the
    /// returned line and falls back to polling.
    pub fn new(path: &Path) -> (Self, Option<String>) {
        let mut nudges = Self {
            path: path.to_path_buf(),
            inotify: None,
            watched: HashMap::new(),
        };
        let fallback = |e: &dyn std::fmt::Display| {
            format!(
                "cannot watch {} for changes ({e}); reading it every {} ms instead",
                path.display(),
                POLL_INTERVAL.as_millis()
            )
        };
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(inotify) => inotify,
            Err(e) => return (nudges, Some(fallback(&e))),
        };
        // SAFETY: the `Inotify` owns its descriptor (an `OwnedFd`) until it
        // is dropped with the `AsyncFd`, and `as_raw_fd` always returns it.
        match unsafe { AsyncFd::register(InotifyFd(inotify)) } {
            Ok(fd) => nudges.inotify = Some(fd),
            Err(e) => return (nudges, Some(fallback(&e))),
        }
        if let Err(e) = nudges.follow() {
            nudges.inotify = None;
            return (nudges, Some(fallback(&e)));
        }
        (nudges, None)
    }

    /// How long a relay may go without reading the file when nothing
    /// nudged it and no change is settling.
    pub fn recheck_every(&self) -> Duration {
        if self.inotify.is_some() {
            RECHECK_WITH_NUDGES
        } else {
            POLL_INTERVAL
        }
    }

    /// Resolves when something happened where the file lives (pending for
    /// ever without inotify). Cancel-safe: the events are read only once
    /// the descriptor is readable, and read all at once.
    pub async fn changed(&mut self) {
        loop {
            let Some(fd) = &self.inotify else {
                return std::future::pending().await;
            };
            let read = match fd.readable().await {
                Ok(mut ready) => {
                    match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                        Ok(read) => read,
                        // Nothing to read after all (EAGAIN): wait again.
                        Err(_would_block) => continue,
                    }
                }
                Err(e) => Err(e),
            };
            match read {
                Ok(events) if events.is_empty() => continue,
                Ok(_) => break,
                // A descriptor that fails will not recover: from now on
                // the file is polled (`recheck_every` says how often).
                Err(_) => {
                    self.inotify = None;
                    return;
                }
            }
        }
        // The file may now resolve elsewhere (a new symlink target):
        // watch where it lives now.
        self.follow_now();
    }

    /// Watches the directories the path lives in now (a directory removed
    /// and made again is watched again). The follower calls it on every
    /// recheck too, so a directory that was missing is watched once it
    /// is back.
    pub fn follow_now(&mut self) {
        if self.follow().is_err() {
            self.inotify = None;
        }
    }

    /// Watches the directories the path lives in now, and only those.
    fn follow(&mut self) -> Result<(), Errno> {
        let Some(fd) = &self.inotify else {
            return Ok(());
        };
        let inotify = &fd.get_ref().0;
        let mut now = HashMap::new();
        for dir in directories_of(&self.path) {
            // The kernel gives back the same descriptor for a directory
            // already watched, and a new one for one made again.
            match inotify.add_watch(&dir, interesting()) {
                Ok(wd) => {
                    now.insert(dir, wd);
                }
                // Gone for now (the file's directory removed): the
                // recheck reads the file, says it cannot, and follows again.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) => {}
                Err(e) => return Err(e),
            }
        }
        for (_, wd) in self.watched.drain() {
            if !now.values().any(|kept| *kept == wd) {
                // Already gone when its directory was: nothing to undo.
                let _ = inotify.rm_watch(wd);
            }
        }
        self.watched = now;
        Ok(())
    }
}

/// The directory of `path` as given, and of the file it resolves to.
fn directories_of(path: &Path) -> Vec<PathBuf> {
    let given = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![given];
    if let Some(resolved) = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let same = std::fs::canonicalize(&dirs[0]).is_ok_and(|d| d == resolved);
        if !same {
            dirs.push(resolved);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use tokio::time::timeout;

    const SOON: Duration = Duration::from_secs(2);
    const NOT_YET: Duration = Duration::from_millis(150);

    fn watching(path: &Path) -> Nudges {
        let (nudges, fallback) = Nudges::new(path);
        assert!(fallback.is_none(), "{fallback:?}");
        nudges
    }

    /// Waits for a nudge, failing the test with `what` if none comes.
    async fn nudged(nudges: &mut Nudges, what: &str) {
        timeout(SOON, nudges.changed())
            .await
            .unwrap_or_else(|_| panic!("no nudge: {what}"));
    }

    /// Whether a nudge comes within a short while.
    async fn nudged_soon(nudges: &mut Nudges) -> bool {
        timeout(NOT_YET, nudges.changed()).await.is_ok()
    }

    /// Takes the nudges of what a test just did, until none comes.
    async fn settle(nudges: &mut Nudges) {
        while nudged_soon(nudges).await {}
    }

    #[tokio::test]
    async fn a_rename_over_the_file_nudges_and_a_log_written_beside_it_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "a").unwrap();
        let mut nudges = watching(&path);
        assert_eq!(nudges.recheck_every(), RECHECK_WITH_NUDGES);

        // `serve > serve.log` in the config's directory: writes on a file
        // kept open are not changes to look at.
        let mut log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        settle(&mut nudges).await;
        for _ in 0..20 {
            std::io::Write::write_all(&mut log, b"opened ...\n").unwrap();
        }
        assert!(
            !nudged_soon(&mut nudges).await,
            "a log file's writes nudged the watcher"
        );

        std::fs::write(dir.path().join("relay.toml.tmp"), "b").unwrap();
        settle(&mut nudges).await;
        std::fs::rename(dir.path().join("relay.toml.tmp"), &path).unwrap();
        nudged(&mut nudges, "an editor's rename over the file nudges").await;
    }

    #[tokio::test]
    async fn a_symlink_target_in_another_directory_written_in_place_nudges() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let target = dir.path().join("conf/relay.toml");
        std::fs::write(&target, "a").unwrap();
        let path = dir.path().join("etc/relay.toml");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut nudges = watching(&path);

        std::fs::write(&target, "b").unwrap();
        nudged(&mut nudges, "a write to the symlink's target nudges").await;
    }

    #[tokio::test]
    async fn a_directory_removed_and_made_again_is_watched_again_after_a_recheck() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("relay.toml"), "a").unwrap();
        let mut nudges = watching(&conf.join("relay.toml"));

        std::fs::remove_dir_all(&conf).unwrap();
        nudged(&mut nudges, "the directory's removal nudges").await;
        settle(&mut nudges).await;
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("relay.toml"), "b").unwrap();
        assert!(
            !nudged_soon(&mut nudges).await,
            "a directory that was gone is not watched until a recheck"
        );

        nudges.follow_now();
        std::fs::write(conf.join("relay.toml"), "c").unwrap();
        nudged(
            &mut nudges,
            "after the recheck, the directory made again is watched",
        )
        .await;
    }

    #[tokio::test]
    async fn a_configmap_data_swap_nudges_and_the_new_target_is_watched() {
        // What the kubelet does: `..data` → `..v1`, the config a symlink
        // through it; an update writes `..v2` and renames `..data_tmp`
        // (→ `..v2`) over `..data`.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/relay.toml"), "a").unwrap();
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/relay.toml", root.join("relay.toml")).unwrap();
        let mut nudges = watching(&root.join("relay.toml"));

        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/relay.toml"), "b").unwrap();
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        nudged(&mut nudges, "the ..data swap nudges").await;
        settle(&mut nudges).await;
        assert!(
            nudges
                .watched
                .contains_key(&root.join("..v2").canonicalize().unwrap()),
            "watches {:?}",
            nudges.watched.keys()
        );

        std::fs::write(root.join("..v2/relay.toml"), "c").unwrap();
        nudged(&mut nudges, "the new target written in place nudges").await;
    }
}
