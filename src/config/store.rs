//! Loading and saving the file: comment-preserving, atomic, and never over
//! someone else's edit.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use toml_edit::DocumentMut;

use super::edit::Edit;
use super::error::{ConfigError, Problem, Problems};
use super::model::Config;

/// The starter configuration written when no file exists.
pub const DEFAULT_CONFIG: &str = include_str!("../../assets/default.toml");
/// The configuration `ecdn-console demo` runs on (a temporary copy).
pub const DEMO_CONFIG: &str = include_str!("../../assets/demo.toml");

/// A configuration file as loaded: its validated [`Config`], the document it
/// came from (with comments), and the exact text read, so a save can tell
/// whether someone else changed the file in between.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    disk_text: String,
    doc: DocumentMut,
    config: Config,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_text(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(path, text)
    }

    /// Loads `path`, first creating it from `default_text` if it does not
    /// exist. Returns whether it was created.
    pub fn load_or_create(path: &Path, default_text: &str) -> Result<(Self, bool), ConfigError> {
        if path.exists() {
            return Self::load(path).map(|f| (f, false));
        }
        // Validate before writing: never write a file that would not load.
        Config::parse(default_text, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
        write_atomic(path, default_text.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Self::load(path).map(|f| (f, true))
    }

    /// A file whose text is already in hand (read from disk at `path`).
    pub fn from_text(path: &Path, text: String) -> Result<Self, ConfigError> {
        let config = Config::parse(&text, path)?;
        let doc = text.parse::<DocumentMut>().map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::Invalid(Problems {
                path: path.to_path_buf(),
                problems: vec![Problem::at(
                    &text,
                    offset,
                    e.message().to_string(),
                    super::schema::SYNTAX_FIX.into(),
                )],
            })
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            disk_text: text,
            doc,
            config,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The text as last read or written.
    pub fn text(&self) -> &str {
        &self.disk_text
    }

    /// Applies `edit`, validates the result as a whole file, and saves it
    /// atomically. On any error nothing changes, in memory or on disk.
    pub fn apply(&mut self, edit: &Edit) -> Result<&Config, ConfigError> {
        self.apply_with(edit, |_| Ok(()))
    }

    /// [`apply`](Self::apply) with a hook run after the temporary file is
    /// written and synced, just before the rename — lets tests interrupt a
    /// save at its most delicate moment.
    pub fn apply_with(
        &mut self,
        edit: &Edit,
        before_rename: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<&Config, ConfigError> {
        let mut doc = self.doc.clone();
        edit.apply(&self.config, &mut doc)?;
        let text = doc.to_string();
        let config = Config::parse(&text, &self.path)?;
        self.check_unchanged_on_disk()?;
        write_atomic_with(&self.path, text.as_bytes(), before_rename).map_err(|source| {
            ConfigError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        self.doc = doc;
        self.disk_text = text;
        self.config = config;
        Ok(&self.config)
    }

    /// Re-reads the file from disk (after a conflict, or a change made by
    /// another program).
    pub fn reload(&mut self) -> Result<&Config, ConfigError> {
        *self = Self::load(&self.path)?;
        Ok(&self.config)
    }

    /// Whether the file on disk differs from what was loaded.
    pub fn changed_on_disk(&self) -> bool {
        self.check_unchanged_on_disk().is_err()
    }

    fn check_unchanged_on_disk(&self) -> Result<(), ConfigError> {
        match read_text(&self.path) {
            Ok(now) if now == self.disk_text => Ok(()),
            _ => Err(ConfigError::Conflict {
                path: self.path.clone(),
            }),
        }
    }
}

/// The most a config file may hold. A config is a few kilobytes (10,000
/// domains fit in a few megabytes); past this the path is not a config.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a config file's text, as [`read_regular_file`] does.
pub fn read_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular_file(path, MAX_CONFIG_BYTES)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (the byte at offset {} is not valid UTF-8); save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Reads a file the config names (itself, a certificate): only a regular
/// file (a FIFO would block the reader until some writer came,
/// `/dev/zero` would never end), at most `limit` bytes. Opened without
/// blocking and checked on the opened file, so what is checked is what is
/// read.
pub fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    let mut bytes = Vec::new();
    // Bounded as read too: the file may grow after its size was looked at.
    if meta.len() <= limit {
        file.take(limit + 1).read_to_end(&mut bytes)?;
    }
    if meta.len() > limit || bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is larger than {} MiB, far more than such a file holds; is it the right file?",
                limit / (1024 * 1024)
            ),
        ));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` so that readers see the old file or the new one,
/// never a mix: a temporary file in the same directory, fsync, rename, fsync
/// of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, bytes, |_| Ok(()))
}

/// [`write_atomic`] with a hook between the synced temporary file and the
/// rename. If the hook fails the temporary file is removed and `path` is
/// untouched.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let target = through_symlinks(path);
    let path = target.as_path();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_temp_files(dir);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    if let Ok(meta) = fs::metadata(path) {
        // Keep the operator's permissions (e.g. 0600) rather than the temp file's.
        temp.as_file().set_permissions(meta.permissions())?;
        // And its owner and group where this process may (root may; an
        // owner may keep a group it is in): a root shell's save must not
        // leave a 0640 root:root file the relay's group can no longer read.
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid()), Some(meta.gid()));
    }
    temp.as_file().sync_all()?;
    before_rename(temp.path())?;
    temp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is on disk.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The file a save must replace: `path` itself, or the file a symlink at
/// `path` points to. Renaming over the symlink would turn it into a copy
/// and leave its target — the file the operator keeps, in a dotfiles
/// repository say — with the old text.
fn through_symlinks(path: &Path) -> PathBuf {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return path.to_path_buf();
    }
    fs::canonicalize(path).unwrap_or_else(|_| {
        // A link to a file not made yet: the file it names.
        match fs::read_link(path) {
            Ok(target) if target.is_relative() => {
                path.parent().unwrap_or(Path::new(".")).join(target)
            }
            Ok(target) => target,
            Err(_) => path.to_path_buf(),
        }
    })
}

const TEMP_PREFIX: &str = ".ecdn-console-save-";
const TEMP_SUFFIX: &str = ".tmp";
/// A temporary file this old belongs to no save in progress.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes temporary files left by saves that were killed before their
/// rename (the config itself is intact then; only the debris is cleared).
/// Recent ones are left alone: another process may be saving right now.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Where the console's config lives when `--config` is not given:
/// `./ecdn-console.toml` if present, else the user's config directory.
pub fn default_config_path() -> PathBuf {
    let local = PathBuf::from("ecdn-console.toml");
    if local.exists() {
        return local;
    }
    match dirs::config_dir() {
        Some(dir) => dir.join("ecdn-console").join("config.toml"),
        None => local,
    }
}
