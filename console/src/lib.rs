//! The trustdeck console: model-update-view over the fleet's admin streams.
//!
//! - [`app`]: the state, the messages, `update`, the key map and the `:` commands (pure);
//! - [`layout`]: where everything goes on a terminal of a given size (pure);
//! - [`text`]: what the console says, as data: words, and the help and detail documents;
//! - [`view`]: draws the state (no I/O, no state changes);
//! - [`termcaps`]: what the terminal can show (Unicode or ASCII, colour depth), decided once;
//! - [`term`]: the terminal: raw mode, panic restore, the event loop (reads the clock);
//! - [`client`]: admin streams from every daemon of the fleet (the only network code);
//! - [`fleetfile`]: the fleet file;
//! - [`status`]: `trustdeck status` and `trustdeck watch`;
//! - [`demo`]: `trustdeck demo`, the embedded default topology.
#![forbid(unsafe_code)]

pub mod app;
pub mod client;
pub mod clipboard;
pub mod demo;
pub mod dump;
pub mod fleetfile;
pub mod layout;
pub mod runbook;
pub mod status;
pub mod term;
pub mod termcaps;
pub mod text;
pub mod view;
