//! trustdeck-agent: attests its node to a server, keeps workload SVIDs fresh in a cache, and
//! serves them over the SPIFFE Workload API on a Unix socket.
//!
//! - [`config`]: TOML configuration, checked without I/O.
//! - [`agent`]: the engine (attestation, agent SVID renewal, sync, rotation, JWT-SVIDs).
//! - [`credentials`]: the node's attestation credentials (files, TPM) and the TPM's answers.
//! - [`cache`]: immutable cache snapshots published to Workload API streams.
//! - [`attestor`]: workload attestation `unix`; [`peer`]: the caller pinned at accept.
//! - [`workload_api`]: the Workload API server; [`limits`]: what one request may ask for.
//! - [`state`]: what the agent persists in its data directory.
//! - [`observe`]: what the admin `Watch` stream publishes.
//! - [`tpm`]: `trustdeck-agent tpm provision|show` (DevID keys for `tpm_devid`).
//! - [`start`]: wiring of the above (Workload API socket, admin socket).
#![forbid(unsafe_code)]

pub mod agent;
pub mod attestor;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod limits;
pub mod observe;
pub mod peer;
pub mod start;
pub mod state;
pub mod tpm;
pub mod workload_api;
