//! trustdeck-server: a SPIFFE server. This scope is the upstream role: a self-signed
//! root CA, registration entries, node attestation (join_token, x509pop) and workload SVID
//! signing for agents over mTLS.
//!
//! - [`config`]: TOML configuration, checked without I/O.
//! - [`ca_manager`]: X.509 CA and JWT key, rotation, CA journal and bundle.
//! - [`node_api`]: the agent-facing API (mTLS).
//! - [`admin_api`]: the local admin API (Unix socket), used by the CLI.
//! - [`authz`], [`ratelimit`]: pure policy pieces.
//! - [`runtime`]: wiring and the rotation loop.
#![forbid(unsafe_code)]

pub mod admin_api;
pub mod authz;
pub mod ca_manager;
pub mod config;
pub mod ctx;
pub mod node_api;
pub mod ratelimit;
pub mod runtime;
