//! What goes into [`update`](super::update) and what comes out of it.

use crossterm::event::{KeyEvent, MouseEvent};
use trustdeck_proto::admin::{NodeDetail, WatchMessage};
use trustdeck_topology::fleet::DaemonConn;

pub use super::rbmsg::{RunbookEffect, RunbookMsg};

/// A message into [`update`](super::update). None carries time: `update` takes `now`.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A message from daemon `daemon`'s `Watch` stream.
    Stream {
        /// Index of the daemon in the fleet.
        daemon: usize,
        /// The stream message.
        msg: WatchMessage,
    },
    /// The console's connection to daemon `daemon` changed.
    Conn {
        /// Index of the daemon in the fleet.
        daemon: usize,
        /// The new state.
        conn: DaemonConn,
    },
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (only delivered when mouse capture is on).
    Mouse(MouseEvent),
    /// The terminal is now `width × height`.
    Resize(u16, u16),
    /// One second passed (countdowns move).
    Tick,
    /// The answer to [`Effect::Dump`]: the file written and its size, or why not.
    Dumped(Result<(std::path::PathBuf, u64), String>),
    /// The answer to [`Effect::FetchDetail`].
    Detail {
        /// The node asked about.
        node_id: String,
        /// The detail, or why it could not be fetched.
        result: Result<NodeDetail, DetailError>,
    },
    /// The answer to an [`Effect::Runbook`].
    Runbook(RunbookMsg),
}

/// Why a node's detail could not be fetched (shown in the detail popup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    /// The daemon did not answer in time.
    #[error("no answer within {secs} s")]
    Timeout {
        /// How long the console waited.
        secs: u64,
    },
    /// The daemon refused or the call failed; the gRPC status, described with its cause.
    #[error("{0}")]
    Rpc(String),
}

/// What [`update`](super::update) asks the outside world to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Leave the console.
    Quit,
    /// Reopen daemon `n`'s `Watch` stream (a revision gap was seen).
    Resubscribe(usize),
    /// Fetch one node's detail from the daemon that reported it; answer with [`Msg::Detail`].
    FetchDetail {
        /// Index of the daemon.
        daemon: usize,
        node_id: String,
    },
    /// Put `text` into the terminal's clipboard (OSC 52).
    Copy {
        /// What it is ("serial"), for the log.
        what: String,
        text: String,
    },
    /// Write `contents` to `path` (relative to the console's working directory) atomically;
    /// an existing file only when `overwrite`. Answer with [`Msg::Dumped`].
    Dump {
        path: std::path::PathBuf,
        contents: String,
        overwrite: bool,
    },
    /// Runbook I/O (admin call, observation, journal); answer with [`Msg::Runbook`].
    Runbook(RunbookEffect),
    /// Something visible changed: draw a frame.
    Redraw,
}
