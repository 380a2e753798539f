//! gRPC definitions shared by the daemons and the console.
//!
//! - [`workload`]: the SPIFFE Workload API, wire-exact (no protobuf package).
//! - [`node`]: the node API agents and downstream servers call on their server.
//! - [`admin`]: the server's local administration API and every daemon's `Observe` stream.
//! - [`codec`]: the Workload API's codec (undecodable bodies are `InvalidArgument`).
//! - [`held`]: held-SVID reports kept within a message budget.
//! - [`reason`]: machine-readable reasons on node-API errors.
//! - [`refusal`]: the rule that refused an authority operation, on admin-API errors.
//! - [`vocab`]: the text of the admin enums, and values from newer daemons.
#![forbid(unsafe_code)]

pub mod codec;
pub mod held;
pub mod reason;
pub mod refusal;
pub mod vocab;

/// The SPIFFE Workload API (`/SpiffeWorkloadAPI/...`).
#[allow(clippy::all)]
pub mod workload {
    tonic::include_proto!("_");
}

/// The node API (`trustdeck.node.v1`).
#[allow(clippy::all)]
pub mod node {
    tonic::include_proto!("trustdeck.node.v1");
}

/// The administration APIs (`trustdeck.admin.v1`): `ServerAdmin` (operators) and
/// `Observe` (read-only `Watch` stream, served by every daemon).
#[allow(clippy::all)]
pub mod admin {
    tonic::include_proto!("trustdeck.admin.v1");
}

/// The gRPC metadata key every Workload API call must carry, with the value `true`.
pub const WORKLOAD_HEADER: &str = "workload.spiffe.io";
