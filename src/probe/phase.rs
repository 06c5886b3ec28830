//! Where a connection attempt failed, which decides the exit code.

use serde::Serialize;

use super::Outcome;

/// The phase of getting to an open WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Dns,
    Tcp,
    Tls,
    Upgrade,
}

impl Phase {
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Dns | Self::Tcp => Outcome::ConnectFailed,
            Self::Tls => Outcome::TlsFailed,
            Self::Upgrade => Outcome::HandshakeRefused,
        }
    }
}

/// A failed attempt; already reported as a step.
#[derive(Debug, Clone)]
pub struct Failure {
    pub phase: Phase,
    /// The HTTP status when the server answered the upgrade with something else than 101.
    pub status: Option<u16>,
}
