//! The topology model shared by the daemons and the console. It does no I/O.
//!
//! - [`hub`]: what a daemon publishes on its admin `Watch` stream: a node map with a revision,
//!   turned into ordered deltas.
//! - [`fleet`]: what the console builds from every daemon's stream: one merged tree, the tiers'
//!   remaining TTL, what expires next, the autonomous window per segment and fleet health.
//! - [`ttl`]: thresholds and duration formatting.
#![forbid(unsafe_code)]

pub mod fleet;
pub mod hub;
pub mod ttl;

pub use fleet::{DaemonConn, DaemonState, Fleet, Health, Level, Row, SegmentWindow};
pub use hub::Hub;
pub use trustdeck_proto::admin::{
    Connectivity, DaemonIdentity, Delta, Event, KeyStorage, Node, NodeKind, Snapshot, WatchMessage,
    watch_message::Body,
};
