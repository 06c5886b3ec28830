//! The control socket's client: the shell commands and `attach` use it.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::relay::RelayEvent;

use super::protocol::{ErrorReply, EventLine, Hello, PROTOCOL, PROTOCOL_VERSION, Request};

/// Answers can be large (thousands of sessions); this bounds one line.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no relay answers on {path} ({source}); start one with `ecdn-console serve --config FILE`, \
         or point at its socket with --socket PATH or --config FILE"
    )]
    NoRelay {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} speaks control protocol {theirs}, this ecdn-console speaks {ours}; \
         use the ecdn-console binary of the same version as the relay"
    )]
    Version {
        path: PathBuf,
        theirs: String,
        ours: u32,
    },
    #[error("{}", .0.message)]
    Refused(ErrorReply),
    #[error("the relay at {path} closed the connection")]
    Closed { path: PathBuf },
    #[error("bad answer from the relay at {path}: {detail}")]
    Protocol { path: PathBuf, detail: String },
}

impl ClientError {
    /// Whether the relay was not there at all (exit 3).
    pub fn no_relay(&self) -> bool {
        matches!(self, Self::NoRelay { .. })
    }
}

/// How long a command waits for a running relay's hello before concluding
/// there is none (`ecdn-console --config F` then starts its own relay).
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// A connection to a relay's control socket.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    write: OwnedWriteHalf,
    pub hello: Hello,
    /// The relay's pid as this process sees it (`SO_PEERCRED`), which
    /// differs from `hello.pid` when the relay runs in another PID namespace.
    local_pid: Option<u32>,
}

impl ControlClient {
    /// Connects and reads the relay's hello.
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::NoRelay {
                path: path.to_path_buf(),
                source,
            })?;
        // The kernel gives the peer's pid in this process's namespace; 0
        // (here `None`) when that namespace cannot see it.
        let local_pid = stream
            .peer_cred()
            .ok()
            .and_then(|cred| cred.pid())
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid != 0);
        let (read, write) = stream.into_split();
        let mut client = Self {
            path: path.to_path_buf(),
            lines: FramedRead::new(read, LinesCodec::new_with_max_length(MAX_ANSWER_BYTES)),
            write,
            hello: Hello {
                hello: String::new(),
                version: 0,
                build: String::new(),
                pid: 0,
                listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                config: PathBuf::new(),
                config_version: 0,
                mode: String::new(),
            },
            local_pid,
        };
        let line = client.read_line().await?;
        if answer_ok(&line) == Some(false) {
            return Err(client.refusal(&line));
        }
        let first: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| client.protocol(e))?;
        let theirs = first.get("version").map(ToString::to_string);
        if first.get("hello").and_then(|h| h.as_str()) != Some(PROTOCOL)
            || first.get("version").and_then(|v| v.as_u64()) != Some(PROTOCOL_VERSION.into())
        {
            return Err(ClientError::Version {
                path: path.to_path_buf(),
                theirs: theirs.unwrap_or_else(|| "(none)".into()),
                ours: PROTOCOL_VERSION,
            });
        }
        client.hello = serde_json::from_value(first).map_err(|e| client.protocol(e))?;
        Ok(client)
    }

    /// The relay answering on `path`, if one says hello within
    /// [`PROBE_TIMEOUT`]; `None` otherwise.
    pub async fn probe(path: &Path) -> Option<Self> {
        tokio::time::timeout(PROBE_TIMEOUT, Self::connect(path))
            .await
            .ok()?
            .ok()
    }

    /// The relay's pid in this process's PID namespace: what `/proc`, `kill`
    /// and `top` here go by. `hello.pid` is the relay's own view, the same
    /// unless it runs in a container; `None` when this namespace cannot see
    /// the relay at all.
    pub fn relay_pid(&self) -> Option<u32> {
        self.local_pid
    }

    /// The relay's pid to tell an operator: the one `kill` takes here (its
    /// own when this namespace cannot see it).
    pub fn pid_to_show(&self) -> u32 {
        self.local_pid.unwrap_or(self.hello.pid)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and decodes its answer into `T`.
    pub async fn request<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<T, ClientError> {
        let mut line = serde_json::to_string(request).map_err(|e| self.protocol(e))?;
        line.push('\n');
        self.write
            .write_all(line.as_bytes())
            .await
            .map_err(|_| ClientError::Closed {
                path: self.path.clone(),
            })?;
        let line = self.read_line().await?;
        if answer_ok(&line) != Some(true) {
            return Err(self.refusal(&line));
        }
        // Straight into `T`: no `serde_json::Value` tree of a 9,000-session
        // answer on the way.
        serde_json::from_str(&line).map_err(|e| self.protocol(e))
    }

    /// The next event of a followed stream (after an `events` request with
    /// `follow`); `None` when the relay ends the stream.
    pub async fn next_event(&mut self) -> Result<Option<RelayEvent>, ClientError> {
        let line = match self.read_line().await {
            Ok(line) => line,
            Err(ClientError::Closed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if answer_ok(&line) == Some(false) {
            return Err(self.refusal(&line));
        }
        let line: EventLine = serde_json::from_str(&line).map_err(|e| self.protocol(e))?;
        Ok(Some(line.event))
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        match self.lines.next().await {
            Some(Ok(line)) => Ok(line),
            Some(Err(e)) => Err(self.protocol(e)),
            None => Err(ClientError::Closed {
                path: self.path.clone(),
            }),
        }
    }

    fn refusal(&self, line: &str) -> ClientError {
        match serde_json::from_str::<ErrorReply>(line) {
            Ok(e) => ClientError::Refused(e),
            Err(e) => self.protocol(e),
        }
    }

    fn protocol(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }
}

/// An answer's `ok`, read without decoding the rest (`None`: not an
/// object, or no boolean `ok`).
fn answer_ok(line: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Status {
        ok: Option<bool>,
    }
    serde_json::from_str::<Status>(line).ok()?.ok
}
