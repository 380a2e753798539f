//! The trustdeck console: model-update-view over the fleet's admin streams.
//!
//! - [`app`]: UI state, messages, `update`, the key map.
//! - [`view`]: renders the state (no I/O, no state changes).
//! - [`term`]: the terminal: raw mode, panic restore, the event loop.
//! - [`client`]: admin streams from every daemon of the fleet (the only network code).
//! - [`fleetfile`]: the fleet file.
//! - [`status`]: `trustdeck status` and `trustdeck watch`.
//! - [`demo`]: `trustdeck demo`, the embedded default topology.
#![forbid(unsafe_code)]

pub mod app;
pub mod client;
pub mod demo;
pub mod fleetfile;
pub mod status;
pub mod term;
pub mod view;
