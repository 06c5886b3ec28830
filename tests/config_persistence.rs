//! Saving through the API: comments and untouched lines survive byte for
//! byte; a save is atomic; a file changed on disk is never overwritten; an
//! invalid edit never reaches the disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ecdn_console::config::{
    Acceleration, Area, ConfigError, ConfigFile, Edit, NewDomain, OriginProtocol, Status, Switch,
};
use tempfile::TempDir;

/// Every way of writing the websocket settings, each with comments around
/// and after the values an edit will touch.
const COMMENTED: &str = r#"# Operator's header comment.
# Second line of it.

[relay]
listen = "127.0.0.1:8080"   # loopback only
idle-close = "close-frame"  # keep the handshake

# Inline-table style.
[[domain]]
name = "inline.example.com"   # the main site
acceleration = "full-site"
status = "online"             # status comment
origins = ["127.0.0.1:9001"]  # origin comment
websocket = { switch = "off", timeout = 60 }   # inline trailing comment

# Sub-table style.
[[domain]]
name = "table.example.com"
acceleration = "full-site"
origins = ["127.0.0.1:9002"]

[domain.websocket]
switch = "on"     # switch comment
timeout = 100     # table trailing comment

# Dotted-key style.
[[domain]]
name = "dotted.example.com"
acceleration = "full-site"
origins = ["127.0.0.1:9003"]
websocket.switch = "on"
websocket.timeout = 20  # dotted trailing comment

# This domain gets deleted.
[[domain]]
name = "old.example.com"
acceleration = "dynamic"
origins = ["127.0.0.1:9004"]

# Dynamic: the switch cannot be turned on.
[[domain]]
name = "api.example.com"
acceleration = "dynamic"
origins = ["127.0.0.1:9005"]

# Trailing comment at the end of the file.
"#;

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecdn-console.toml");
        fs::write(&path, text).unwrap();
        Self { _dir: dir, path }
    }

    fn load(&self) -> ConfigFile {
        ConfigFile::load(&self.path).unwrap()
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap()
    }

    /// Names in the directory other than the config: leftover temp files.
    fn strays(&self) -> Vec<String> {
        let dir = self.path.parent().unwrap();
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "ecdn-console.toml")
            .collect()
    }
}

/// Applies one edit to a fresh copy of [`COMMENTED`], returns the saved text.
fn edited(edit: &Edit) -> String {
    let fixture = Fixture::new(COMMENTED);
    fixture.load().apply(edit).unwrap();
    fixture.text()
}

/// The lines that differ, as `(line number, old, new)`, for edits that
/// replace lines in place (same line count).
fn replaced_lines<'a>(old: &'a str, new: &'a str) -> Vec<(usize, &'a str, &'a str)> {
    let (old_lines, new_lines): (Vec<&str>, Vec<&str>) =
        (old.split('\n').collect(), new.split('\n').collect());
    assert_eq!(
        old_lines.len(),
        new_lines.len(),
        "the edit added or removed lines:\n{new}"
    );
    old_lines
        .into_iter()
        .zip(new_lines)
        .enumerate()
        .filter(|(_, (o, n))| o != n)
        .map(|(i, (o, n))| (i + 1, o, n))
        .collect()
}

fn set_websocket(domain: &str, switch: Option<Switch>, timeout: Option<u16>) -> Edit {
    Edit::SetWebSocket {
        domain: domain.into(),
        switch,
        timeout,
    }
}

#[test]
fn inline_table_edit_keeps_the_trailing_comment_and_every_other_line() {
    let new = edited(&set_websocket(
        "inline.example.com",
        Some(Switch::On),
        Some(30),
    ));
    assert_eq!(
        replaced_lines(COMMENTED, &new),
        [(
            14,
            r#"websocket = { switch = "off", timeout = 60 }   # inline trailing comment"#,
            r#"websocket = { switch = "on", timeout = 30 }   # inline trailing comment"#
        )]
    );
}

#[test]
fn sub_table_edit_keeps_the_trailing_comment_and_every_other_line() {
    let new = edited(&set_websocket("table.example.com", None, Some(45)));
    assert_eq!(
        replaced_lines(COMMENTED, &new),
        [(
            24,
            "timeout = 100     # table trailing comment",
            "timeout = 45     # table trailing comment"
        )]
    );
}

#[test]
fn dotted_key_edit_keeps_the_trailing_comment_and_every_other_line() {
    let new = edited(&set_websocket(
        "DOTTED.example.com",
        Some(Switch::Off),
        Some(0),
    ));
    assert_eq!(
        replaced_lines(COMMENTED, &new),
        [
            (
                31,
                r#"websocket.switch = "on""#,
                r#"websocket.switch = "off""#
            ),
            (
                32,
                "websocket.timeout = 20  # dotted trailing comment",
                "websocket.timeout = 0  # dotted trailing comment"
            ),
        ]
    );
}

#[test]
fn status_edit_changes_only_the_status_value() {
    let new = edited(&Edit::SetStatus {
        domain: "inline.example.com".into(),
        status: Status::Offline,
    });
    assert_eq!(
        replaced_lines(COMMENTED, &new),
        [(
            12,
            r#"status = "online"             # status comment"#,
            r#"status = "offline"             # status comment"#
        )]
    );
}

#[test]
fn origins_edit_keeps_the_comment_and_adds_the_new_keys_to_that_domain_only() {
    let new = edited(&Edit::SetOrigins {
        domain: "inline.example.com".into(),
        origins: vec!["10.0.0.1:80:70".into(), "10.0.0.2:80:30".into()],
        server_name: Some("origin.example.com".into()),
        origin_protocol: OriginProtocol::Https,
    });
    let old_lines: Vec<&str> = COMMENTED.split('\n').collect();
    let new_lines: Vec<&str> = new.split('\n').collect();
    // Lines 1-12 and 14-end are untouched; line 13 is replaced and the two
    // new keys come right after the domain's existing keys.
    assert_eq!(new_lines[..12], old_lines[..12]);
    assert_eq!(
        new_lines[12],
        r#"origins = ["10.0.0.1:80:70", "10.0.0.2:80:30"]  # origin comment"#
    );
    assert_eq!(new_lines[13], old_lines[13]);
    assert_eq!(
        new_lines[14..16],
        [
            r#"server-name = "origin.example.com""#,
            r#"origin-protocol = "https""#
        ]
    );
    assert_eq!(new_lines[16..], old_lines[14..]);
}

#[test]
fn add_domain_appends_and_leaves_the_whole_file_before_it_alone() {
    let new = edited(&Edit::AddDomain(NewDomain {
        name: "new.example.com".into(),
        acceleration: Acceleration::FullSite,
        area: Area::Overseas,
        origins: vec!["127.0.0.1:9010".into()],
        server_name: None,
        origin_protocol: OriginProtocol::Http,
    }));
    let body = COMMENTED.trim_end_matches("\n# Trailing comment at the end of the file.\n");
    assert!(
        new.starts_with(body),
        "text before the new domain changed:\n{new}"
    );
    assert!(new.contains("# Trailing comment at the end of the file."));
    let added = &new[body.len()..];
    for line in [
        "[[domain]]",
        r#"name = "new.example.com""#,
        r#"area = "overseas""#,
        r#"websocket = { switch = "off", timeout = 60 }"#,
    ] {
        assert!(added.contains(line), "added block lacks {line:?}:\n{added}");
    }
}

#[test]
fn remove_domain_removes_exactly_its_block() {
    let new = edited(&Edit::RemoveDomain {
        domain: "old.example.com".into(),
    });
    let block = "# This domain gets deleted.\n\
                 [[domain]]\n\
                 name = \"old.example.com\"\n\
                 acceleration = \"dynamic\"\n\
                 origins = [\"127.0.0.1:9004\"]\n\n";
    assert!(COMMENTED.contains(block));
    assert_eq!(new, COMMENTED.replacen(block, "", 1));
}

#[test]
fn a_series_of_edits_keeps_every_comment_outside_the_deleted_domain() {
    let fixture = Fixture::new(COMMENTED);
    let mut file = fixture.load();
    for edit in [
        set_websocket("inline.example.com", Some(Switch::On), Some(30)),
        set_websocket("table.example.com", Some(Switch::Off), Some(200)),
        Edit::SetStatus {
            domain: "table.example.com".into(),
            status: Status::Offline,
        },
        Edit::RemoveDomain {
            domain: "old.example.com".into(),
        },
    ] {
        file.apply(&edit).unwrap();
    }
    let saved = fixture.text();
    let comments = COMMENTED
        .lines()
        .filter_map(|l| l.find('#').map(|i| &l[i..]))
        .filter(|c| *c != "# This domain gets deleted.");
    for comment in comments {
        assert!(saved.contains(comment), "lost {comment:?}:\n{saved}");
    }
    let reloaded = ConfigFile::load(&fixture.path).unwrap();
    assert_eq!(reloaded.config(), file.config());
}

#[test]
fn an_interrupted_save_leaves_the_old_file_and_no_temp_file() {
    let fixture = Fixture::new(COMMENTED);
    let mut file = fixture.load();
    let edit = set_websocket("inline.example.com", Some(Switch::On), Some(30));
    let mut temp_text = String::new();
    let result = file.apply_with(&edit, |temp: &Path| {
        // The new content is written and synced; only the rename is missing.
        temp_text = fs::read_to_string(temp)?;
        Err(io::Error::other("power cut before rename"))
    });
    let error = result.unwrap_err();
    assert!(matches!(error, ConfigError::Write { .. }), "{error}");
    assert!(error.to_string().contains("power cut before rename"));
    assert!(temp_text.contains(r#"switch = "on", timeout = 30"#));
    assert_eq!(fixture.text(), COMMENTED);
    assert_eq!(fixture.strays(), Vec::<String>::new());

    // Nothing was half-applied in memory either: the same edit now succeeds.
    let inline = file.config().domain("inline.example.com").unwrap();
    assert_eq!(inline.websocket.switch, Switch::Off);
    file.apply(&edit).unwrap();
    assert!(fixture.text().contains(r#"switch = "on", timeout = 30"#));
}

#[test]
fn a_file_changed_on_disk_is_not_overwritten_until_reloaded() {
    let fixture = Fixture::new(COMMENTED);
    let mut file = fixture.load();
    let theirs = COMMENTED.replace("# loopback only", "# someone else's edit");
    fs::write(&fixture.path, &theirs).unwrap();

    let edit = set_websocket("table.example.com", None, Some(45));
    let error = file.apply(&edit).unwrap_err();
    assert!(matches!(error, ConfigError::Conflict { .. }), "{error}");
    assert!(!error.is_bad_input());
    assert!(error.to_string().contains("changed on disk"));
    assert_eq!(fixture.text(), theirs);

    file.reload().unwrap();
    file.apply(&edit).unwrap();
    let saved = fixture.text();
    assert!(saved.contains("# someone else's edit"));
    assert!(saved.contains("timeout = 45     # table trailing comment"));
}

#[test]
fn invalid_edits_leave_the_file_byte_for_byte_unchanged() {
    let fixture = Fixture::new(COMMENTED);
    let mut file = fixture.load();
    let cases = [
        (
            set_websocket("inline.example.com", Some(Switch::On), Some(301)),
            "websocket timeout 301 is out of range",
        ),
        (
            set_websocket("api.example.com", Some(Switch::On), None),
            "can only be configured for full-site acceleration domains",
        ),
        (
            set_websocket("api.example.com", None, Some(30)),
            "can only be configured for full-site acceleration domains",
        ),
        (
            set_websocket("nope.example.com", Some(Switch::On), None),
            "known domains: inline.example.com",
        ),
        (
            Edit::SetOrigins {
                domain: "inline.example.com".into(),
                origins: vec!["10.0.0.1:80".into(), "origin.example.com:80".into()],
                server_name: None,
                origin_protocol: OriginProtocol::Http,
            },
            "origins mix IP addresses and host names",
        ),
    ];
    for (edit, message) in cases {
        let error = file.apply(&edit).unwrap_err();
        assert!(error.is_bad_input(), "{error}");
        assert!(error.to_string().contains(message), "{error}");
        assert_eq!(fixture.text(), COMMENTED);
        assert_eq!(fixture.strays(), Vec::<String>::new());
    }
}

#[cfg(unix)]
#[test]
fn a_save_keeps_the_file_permissions() {
    use std::os::unix::fs::PermissionsExt;

    let fixture = Fixture::new(COMMENTED);
    fs::set_permissions(&fixture.path, fs::Permissions::from_mode(0o600)).unwrap();
    let mut file = fixture.load();
    file.apply(&set_websocket("table.example.com", None, Some(45)))
        .unwrap();
    let mode = fs::metadata(&fixture.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_missing_file_is_created_from_the_default_and_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/config.toml");
    let (file, created) =
        ConfigFile::load_or_create(&path, ecdn_console::config::DEFAULT_CONFIG).unwrap();
    assert!(created);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        ecdn_console::config::DEFAULT_CONFIG
    );
    assert_eq!(file.config().domains.len(), 2);
    let (_, created_again) =
        ConfigFile::load_or_create(&path, ecdn_console::config::DEFAULT_CONFIG).unwrap();
    assert!(!created_again);
}

#[test]
fn a_save_clears_temporary_files_left_by_killed_saves_but_not_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, ecdn_console::config::DEFAULT_CONFIG).unwrap();
    let stale = dir.path().join(".ecdn-console-save-old.tmp");
    let fresh = dir.path().join(".ecdn-console-save-now.tmp");
    std::fs::write(&stale, "half a file").unwrap();
    std::fs::write(&fresh, "a save in progress").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let mut file = ecdn_console::config::ConfigFile::load(&path).unwrap();
    file.apply(&ecdn_console::config::Edit::SetWebSocket {
        domain: "cloud.tencent.com".into(),
        switch: None,
        timeout: Some(30),
    })
    .unwrap();
    assert!(
        !stale.exists(),
        "a temporary file from a killed save is removed"
    );
    assert!(
        fresh.exists(),
        "a recent one may belong to a save in progress"
    );
}

/// A config kept elsewhere and linked in (a dotfiles repository): a save
/// writes the file the link points to, and the link stays a link. Before,
/// the rename replaced the link with a copy and left the kept file old.
#[test]
fn a_save_through_a_symlink_writes_its_target_and_keeps_the_link() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("dotfiles")).unwrap();
    let kept = dir.path().join("dotfiles/ecdn.toml");
    fs::write(&kept, COMMENTED).unwrap();
    let link = dir.path().join("ecdn-console.toml");
    std::os::unix::fs::symlink("dotfiles/ecdn.toml", &link).unwrap();

    let mut file = ConfigFile::load(&link).unwrap();
    file.apply(&set_websocket("inline.example.com", None, Some(42)))
        .unwrap();

    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let saved = fs::read_to_string(&kept).unwrap();
    assert!(saved.contains("timeout = 42 }"), "{saved}");
    assert!(saved.contains("# Operator's header comment."), "{saved}");
    // The next save through the link sees its own text: no conflict.
    file.apply(&set_websocket("inline.example.com", None, Some(43)))
        .unwrap();
    assert!(
        fs::read_to_string(&kept)
            .unwrap()
            .contains("timeout = 43 }")
    );
    let strays: Vec<_> = fs::read_dir(dir.path().join("dotfiles"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(strays.len(), 1, "no temporary file left: {strays:?}");
}

/// A save keeps the file's owner and group, not only its mode: a root
/// shell saving a `0640 root:relay` file must not leave it `root:root`,
/// which the relay's group could no longer read. Changing a file's owner
/// needs root; skips otherwise.
#[test]
fn a_save_keeps_the_files_owner_and_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fixture = Fixture::new(COMMENTED);
    const NOBODY: u32 = 65534;
    if std::os::unix::fs::chown(&fixture.path, Some(NOBODY), Some(NOBODY)).is_err() {
        eprintln!("note: cannot change a file's owner (not root); skipping");
        return;
    }
    fs::set_permissions(&fixture.path, fs::Permissions::from_mode(0o640)).unwrap();
    let mut file = fixture.load();
    file.apply(&set_websocket("inline.example.com", None, Some(42)))
        .unwrap();
    let meta = fs::metadata(&fixture.path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert!(fixture.text().contains("timeout = 42 }"));
}
