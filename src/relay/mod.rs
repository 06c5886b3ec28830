//! The WebSocket relay: listener, handshakes and routing, the frame-level
//! session pump, idle deadlines. Knows `config` and nothing else of ours —
//! no screen, no terminal.

pub mod event;
pub mod registry;

pub use event::{CloseCause, CloseInfo, RelayEvent};
pub use registry::{
    Direction, FlowSnapshot, FrameKind, MessageGaps, NewSession, RecentFrame, Registry,
    SessionGuard, SessionId, SessionSnapshot, SessionStats,
};
