//! The WebSocket vocabulary the relay and `probe` both speak: frame headers
//! and their rules (`frame`), close codes and what they mean (`close`), and
//! the upgrade's key, accept value and 101 checks (`upgrade`). Imports
//! nothing of ours.

pub mod close;
pub mod frame;
pub mod upgrade;

pub use close::CloseInfo;
pub use frame::{FrameKind, FrameScanner, MAX_HEADER, Scan, SeenFrame, Violation, close_frame};
pub use upgrade::MAX_HEADER_BYTES;
