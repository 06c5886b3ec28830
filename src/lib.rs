//! `ecdn-console`: a terminal console for CDN WebSocket idle-timeout
//! settings, with a real WebSocket relay running in the same process.
//!
//! `config` knows nothing else of ours; `relay` knows only `config`; `app`
//! and `ui` never touch a terminal; `tui` owns it; `cli` parses the command
//! line and runs the commands that need no terminal.

pub mod admin;
pub mod app;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod control;
pub mod demo;
#[cfg(feature = "fuzzing")]
pub mod fuzz_targets;
pub mod handover;
pub mod limits;
pub mod origin;
pub mod probe;
pub mod relay;
pub mod serve;
pub mod tui;
pub mod ui;
pub mod ws;
