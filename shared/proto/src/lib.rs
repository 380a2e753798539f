//! gRPC definitions shared by the daemons and the console.
//!
//! - [`workload`]: the SPIFFE Workload API, wire-exact (no protobuf package).
//! - [`node`]: the node API agents and downstream servers call on their server.
//! - [`admin`]: the server's local administration API.
//! - [`reason`]: machine-readable reasons on node-API errors.
#![forbid(unsafe_code)]
#![allow(clippy::all)]

/// The SPIFFE Workload API (`/SpiffeWorkloadAPI/...`).
pub mod workload {
    tonic::include_proto!("_");
}

/// The node API (`trustdeck.node.v1`).
pub mod node {
    tonic::include_proto!("trustdeck.node.v1");
}

/// The administration APIs (`trustdeck.admin.v1`): `ServerAdmin` (operators) and
/// `Observe` (read-only `Watch` stream, served by every daemon).
pub mod admin {
    tonic::include_proto!("trustdeck.admin.v1");
}

pub mod reason;

/// The gRPC metadata key every Workload API call must carry, with the value `true`.
pub const WORKLOAD_HEADER: &str = "workload.spiffe.io";
