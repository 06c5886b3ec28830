//! Where the API keys come from (README, "Tencent Cloud"): the environment, else tccli's
//! credential file. A key is never printed, logged, put in an error or
//! saved: [`Credentials`] has no `Display`, and its `Debug` redacts.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const ENV_SECRET_ID: &str = "TENCENTCLOUD_SECRET_ID";
pub const ENV_SECRET_KEY: &str = "TENCENTCLOUD_SECRET_KEY";
pub const ENV_SESSION_TOKEN: &str = "TENCENTCLOUD_SESSION_TOKEN";
/// tccli's profile when `--profile` names none.
pub const DEFAULT_PROFILE: &str = "default";

/// An API key pair, and a session token for temporary keys.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) secret_id: String,
    pub(crate) secret_key: String,
    pub(crate) token: Option<String>,
    /// Where they were found, for messages (never the values).
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("source", &self.source)
            .finish()
    }
}

/// Why no usable credentials were found. The messages name both sources
/// and how to fill one; they quote no key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no Tencent Cloud credentials: set {ENV_SECRET_ID} and {ENV_SECRET_KEY} \
         (and {ENV_SESSION_TOKEN} for temporary keys), or create {file} \
         (`tccli configure --profile {profile}`)"
    )]
    Missing { file: String, profile: String },
    #[error(
        "incomplete Tencent Cloud credentials in the environment: {missing} is not set \
         (set both {ENV_SECRET_ID} and {ENV_SECRET_KEY}, or unset both to use {file})"
    )]
    HalfSet { missing: &'static str, file: String },
    #[error("cannot read Tencent Cloud credentials from {file}: {reason}")]
    BadFile { file: String, reason: String },
}

/// tccli's `~/.tccli/<profile>.credential`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TccliFile {
    #[serde(default)]
    secret_id: String,
    #[serde(default)]
    secret_key: String,
    #[serde(default)]
    token: Option<String>,
}

/// The credential file of a profile under `home`.
pub fn tccli_file(home: &Path, profile: &str) -> PathBuf {
    home.join(".tccli").join(format!("{profile}.credential"))
}

/// The environment first (as the SDKs and tccli do), else the profile's file.
pub fn load(profile: Option<&str>) -> Result<Credentials, CredentialsError> {
    let profile = profile.unwrap_or(DEFAULT_PROFILE);
    let file = dirs::home_dir()
        .map(|home| tccli_file(&home, profile))
        .unwrap_or_else(|| PathBuf::from(format!("~/.tccli/{profile}.credential")));
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (env(ENV_SECRET_ID), env(ENV_SECRET_KEY)) {
        (Some(secret_id), Some(secret_key)) => Ok(Credentials {
            secret_id,
            secret_key,
            token: env(ENV_SESSION_TOKEN),
            source: "environment".into(),
        }),
        (Some(_), None) => Err(CredentialsError::HalfSet {
            missing: ENV_SECRET_KEY,
            file: file.display().to_string(),
        }),
        (None, Some(_)) => Err(CredentialsError::HalfSet {
            missing: ENV_SECRET_ID,
            file: file.display().to_string(),
        }),
        (None, None) => from_file(&file, profile),
    }
}

fn from_file(file: &Path, profile: &str) -> Result<Credentials, CredentialsError> {
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CredentialsError::Missing {
                file: shown,
                profile: profile.into(),
            });
        }
        Err(e) => {
            return Err(CredentialsError::BadFile {
                file: shown,
                reason: e.to_string(),
            });
        }
    };
    // serde_json's messages quote no values, only positions and field
    // names, so a malformed file cannot leak a key through the error.
    let parsed: TccliFile = serde_json::from_str(&text).map_err(|e| CredentialsError::BadFile {
        file: shown.clone(),
        reason: format!(
            "not tccli's JSON format (line {}, column {})",
            e.line(),
            e.column()
        ),
    })?;
    if parsed.secret_id.is_empty() || parsed.secret_key.is_empty() {
        return Err(CredentialsError::BadFile {
            file: shown,
            reason: "secretId or secretKey is empty (run `tccli configure`)".into(),
        });
    }
    Ok(Credentials {
        secret_id: parsed.secret_id,
        secret_key: parsed.secret_key,
        token: parsed.token.filter(|t| !t.is_empty()),
        source: shown,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn debug_never_shows_a_key() {
        let c = Credentials {
            secret_id: "AKIDsecretid".into(),
            secret_key: "verysecretkey".into(),
            token: Some("tokenvalue".into()),
            source: "environment".into(),
        };
        let shown = format!("{c:?}");
        for secret in ["AKIDsecretid", "verysecretkey", "tokenvalue"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("environment"));
    }

    #[test]
    fn a_tccli_file_gives_keys_and_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = tccli_file(dir.path(), "work");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            r#"{"secretId": "AKIDx", "secretKey": "k", "token": "t"}"#,
        )
        .unwrap();
        let c = from_file(&file, "work").unwrap();
        assert_eq!(
            (c.secret_id.as_str(), c.secret_key.as_str()),
            ("AKIDx", "k")
        );
        assert_eq!(c.token.as_deref(), Some("t"));
    }

    #[test]
    fn a_malformed_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.credential");
        std::fs::write(&file, "secretKey = topsecret").unwrap();
        let e = from_file(&file, "x").unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(e.contains("x.credential"), "{e}");
    }

    #[test]
    fn a_missing_file_names_both_sources() {
        let e = from_file(Path::new("/nonexistent/.tccli/p.credential"), "p")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ENV_SECRET_ID) && e.contains(ENV_SECRET_KEY),
            "{e}"
        );
        assert!(e.contains("/nonexistent/.tccli/p.credential"), "{e}");
    }
}
