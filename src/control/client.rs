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

/// A connection to a relay's control socket.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    write: OwnedWriteHalf,
    pub hello: Hello,
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
        };
        let first = client.read_value().await?;
        if first.get("ok") == Some(&serde_json::Value::Bool(false)) {
            return Err(client.refusal(first));
        }
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
        client.hello = client.decode(first)?;
        Ok(client)
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
        let value = self.read_value().await?;
        if value.get("ok") != Some(&serde_json::Value::Bool(true)) {
            return Err(self.refusal(value));
        }
        self.decode(value)
    }

    /// The next event of a followed stream (after an `events` request with
    /// `follow`); `None` when the relay ends the stream.
    pub async fn next_event(&mut self) -> Result<Option<RelayEvent>, ClientError> {
        let value = match self.read_value().await {
            Ok(v) => v,
            Err(ClientError::Closed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if value.get("ok") == Some(&serde_json::Value::Bool(false)) {
            return Err(self.refusal(value));
        }
        let line: EventLine = self.decode(value)?;
        Ok(Some(line.event))
    }

    async fn read_value(&mut self) -> Result<serde_json::Value, ClientError> {
        match self.lines.next().await {
            Some(Ok(line)) => serde_json::from_str(&line).map_err(|e| self.protocol(e)),
            Some(Err(e)) => Err(self.protocol(e)),
            None => Err(ClientError::Closed {
                path: self.path.clone(),
            }),
        }
    }

    fn decode<T: DeserializeOwned>(&self, value: serde_json::Value) -> Result<T, ClientError> {
        serde_json::from_value(value).map_err(|e| self.protocol(e))
    }

    fn refusal(&self, value: serde_json::Value) -> ClientError {
        match serde_json::from_value::<ErrorReply>(value) {
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
