//! The control socket (DESIGN §7): a Unix socket on every relay, speaking
//! newline-delimited JSON (`protocol.rs`, documented in docs/CONTROL.md).
//! The server runs in the relay's process (`serve`, the console); the
//! client serves the shell commands and `attach`.

pub mod client;
pub mod protocol;
pub mod server;
pub mod socket;
pub mod state;

pub use client::{ClientError, ControlClient, PROBE_TIMEOUT};
pub use protocol::{ErrorCode, ErrorReply, Hello, PROTOCOL_VERSION, Request};
pub use server::{Control, ControlServer, HandoverNotice};
pub use socket::{SocketError, StagedSocket, default_socket_path, implied_socket, socket_path};
pub use state::{ConfigCell, EventRing};
