//! Where the control socket lives and how it is bound: directory 0700,
//! socket 0600, a stale socket of a dead relay replaced, a live one refused.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "another relay already answers on the control socket {path}; stop it \
         (`ecdn-console stop --socket {path}`), attach to it (`ecdn-console attach`), \
         or set a different [relay] control-socket"
    )]
    Live { path: PathBuf },
    #[error(
        "{path} exists and is not a socket; remove it, or set a different [relay] control-socket"
    )]
    NotASocket { path: PathBuf },
    #[error(
        "the control socket's directory {path} belongs to uid {owner}, not to this user ({me}); \
         remove it or set [relay] control-socket elsewhere"
    )]
    ForeignDir { path: PathBuf, owner: u32, me: u32 },
    #[error("cannot set up the control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The directory of default sockets: `$XDG_RUNTIME_DIR/ecdn-console`, else
/// `/tmp/ecdn-console-<uid>`.
pub fn default_socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("ecdn-console"),
        None => PathBuf::from(format!(
            "/tmp/ecdn-console-{}",
            nix::unistd::geteuid().as_raw()
        )),
    }
}

/// The default socket of a relay listening on `listen`, e.g.
/// `relay-127.0.0.1-8080.sock`.
pub fn default_socket_path(listen: SocketAddr) -> PathBuf {
    default_socket_dir().join(format!("relay-{}-{}.sock", listen.ip(), listen.port()))
}

/// The socket of a relay running `config` and listening on `listen` (its
/// actual address when the config says port 0).
pub fn socket_path(config: &Config, listen: SocketAddr) -> PathBuf {
    config
        .relay
        .control_socket
        .clone()
        .unwrap_or_else(|| default_socket_path(listen))
}

/// The socket a relay running `config` answers on, when the config alone
/// says where: `listen = ":0"` without a `control-socket` key names no
/// relay (its port, and so its default socket, is known only once it runs).
pub fn implied_socket(config: &Config) -> Option<PathBuf> {
    let named = config.relay.listen.port() != 0 || config.relay.control_socket.is_some();
    named.then(|| socket_path(config, config.relay.listen))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the socket at `path` (non-blocking, ready for tokio).
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_dir(dir, dir == default_socket_dir())?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            // Someone answers: a live relay. Never take its socket away.
            Ok(_) => {
                return Err(SocketError::Live {
                    path: path.to_path_buf(),
                });
            }
            // Nobody listens: a relay that died without cleaning up.
            Err(_) => fs::remove_file(path).map_err(io_error(path))?,
        },
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_error(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
    listener.set_nonblocking(true).map_err(io_error(path))?;
    Ok(listener)
}

/// Creates the directory 0700. The default directory (in /tmp, where
/// anyone may create it first) must be ours and is kept at 0700.
fn prepare_dir(dir: &Path, ours_only: bool) -> Result<(), SocketError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    if ours_only {
        let meta = fs::metadata(dir).map_err(io_error(dir))?;
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(SocketError::ForeignDir {
                path: dir.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        if meta.mode() & 0o777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
        }
    }
    Ok(())
}

/// `PATH.<pid>`: this process's own name for a control socket whose path
/// changes hands in a hand-over. The old process keeps its socket there
/// for the sessions that stay (TLS); the new one binds there first and
/// moves onto `PATH` once the hand-over has committed.
pub fn own_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}", std::process::id()));
    PathBuf::from(name)
}

/// The control socket of a process taking a relay over, bound before the
/// hand-over at [`own_path`] and moved onto the shared path
/// ([`StagedSocket::publish`]) right after it commits. A rename replaces
/// the old process's name at once, so the path never stops answering.
/// Dropped unpublished (the hand-over was refused), it removes its file.
#[derive(Debug)]
pub struct StagedSocket {
    listener: UnixListener,
    file: StagedFile,
}

/// The staged socket's file: removed on drop unless published or handed on.
#[derive(Debug)]
struct StagedFile {
    staged: PathBuf,
    path: PathBuf,
    keep: bool,
}

impl StagedSocket {
    /// Binds the staging name of `path` (see [`bind`]).
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let staged = own_path(path);
        let listener = bind(&staged)?;
        Ok(Self {
            listener,
            file: StagedFile {
                staged,
                path: path.to_path_buf(),
                keep: false,
            },
        })
    }

    /// Moves the socket onto the shared path, in place of the old
    /// process's name there.
    pub fn publish(&mut self) -> Result<(), SocketError> {
        let file = &mut self.file;
        fs::rename(&file.staged, &file.path).map_err(io_error(&file.path))?;
        file.staged.clone_from(&file.path);
        file.keep = true;
        Ok(())
    }

    /// The listener and where it can be reached now (the shared path once
    /// published). From here its file is the caller's to remove.
    pub fn into_listener(self) -> (UnixListener, PathBuf) {
        let Self { listener, mut file } = self;
        file.keep = true;
        (listener, file.staged.clone())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.staged);
        }
    }
}

/// Whether a process other than the one listening at `own` now answers
/// at `path` (a hand-over's new process has moved its socket there).
pub fn taken_over(path: &Path, own: &Path) -> bool {
    let identity = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (identity(path), identity(own)) {
        (Some(theirs), Some(ours)) => theirs != ours,
        (Some(_), None) => true,
        (None, _) => false,
    }
}
