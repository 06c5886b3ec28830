//! `ecdn-console`: a terminal console for CDN WebSocket idle-timeout
//! settings, with a real WebSocket relay running in the same process.
//!
//! `config` knows nothing else of ours; `relay` knows only `config`; `app`
//! and `ui` never touch a terminal; `tui` owns it.

pub mod app;
pub mod config;
pub mod relay;
pub mod ui;
