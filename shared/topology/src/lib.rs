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

pub use fleet::{
    DaemonConn, DaemonState, Fleet, FleetHealth, Health, Level, Row, SegmentWindow, StatusReport,
};
pub use hub::Hub;

/// How a workload SVID is named in the tree, by every daemon alike: its SPIFFE ID's path
/// (`/prod/gcp/payments/api`), which is what tells workloads apart within a trust domain.
pub fn workload_label(spiffe_id: &str) -> String {
    spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| spiffe_id.to_string())
}

pub use trustdeck_proto::admin::{
    Connectivity, ConnectivityState, DaemonIdentity, DaemonRole, Delta, Event, EventKind,
    KeyBackend, KeyStorage, Node, NodeKind, NodeState, Severity, Snapshot, WatchMessage,
    watch_message::Body,
};
pub use trustdeck_proto::vocab::{Vocabulary, Wire};

#[cfg(test)]
mod tests {
    #[test]
    fn workloads_are_named_by_their_path() {
        assert_eq!(
            super::workload_label("spiffe://td.example/prod/gcp/payments/api"),
            "/prod/gcp/payments/api"
        );
        assert_eq!(
            super::workload_label("spiffe://td.example"),
            "spiffe://td.example"
        );
    }
}
