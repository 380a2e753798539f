//! The console's state and how it changes, with no I/O and no terminal:
//!
//! - [`screen`]: the views and modes;
//! - [`model`]: the state ([`App`]) and its derived caches;
//! - [`msg`]: what comes in ([`Msg`]) and what goes out ([`Effect`]);
//! - [`update`](mod@update): `update(&mut App, Msg, now) -> Vec<Effect>`;
//! - [`keymap`] and `bindings`: the key map as data, from which the help and the footer hints
//!   are generated;
//! - [`commands`]: the `:` commands;
//! - [`runbooks`] and `rbdrive`: operator mode, the runbook list, pane and confirmations,
//!   and the execution driven from `update` (its I/O leaves as effects);
//! - [`history`]: the timeline's bounded history of health per segment and daemon.

mod bindings;
pub mod commands;
pub mod copy;
pub mod events;
pub mod history;
pub mod keymap;
pub mod model;
pub mod msg;
mod rbdrive;
mod rbmsg;
pub mod runbooks;
pub mod screen;
pub mod update;

pub use commands::{COMMANDS, Cmd, CommandSpec};
pub use keymap::{Action, BINDINGS, Binding, Context, Key, contexts, help_sections, keymap};
pub use model::{App, DetailState, EXPIRING_LIMIT, LARGE_REBUILD_SECS, LARGE_TREE, Status};
pub use msg::{DetailError, Effect, Msg, RunbookEffect, RunbookMsg};
pub use rbdrive::event_line;
pub use screen::{Mode, View};
pub use update::{update, update_many};
