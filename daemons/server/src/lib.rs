//! trustdeck-server: a SPIFFE server, either the upstream (self-signed root CA, JWT keys) or a
//! downstream (intermediate CA minted by its upstream, JWT-SVIDs forwarded upstream), with
//! registration entries, node attestation (join_token, x509pop, tpm_devid) and SVID signing for agents.
//!
//! - [`config`]: TOML configuration, checked without I/O.
//! - [`ca`]: X.509 CA and JWT key through one slot lifecycle, the CA journal and the bundle.
//! - [`node_api`]: the node API (mTLS) agents and downstream servers call; attestation pumps
//!   the dialogues of `trustdeck-attest`.
//! - [`tpm_devid`]: the `tpm_devid` trust anchors, read from their files.
//! - [`entry`]: what makes a registration entry acceptable (pure).
//! - [`federation`]: the bundle endpoint served to other trust domains, and fetching theirs.
//! - [`admin_api`]: the admin API (Unix socket, and mTLS TCP when configured), used by the CLI.
//! - [`observe`]: what the admin `Watch` stream publishes (nodes, connectivity, events).
//! - [`audit_feed`]: every appended audit record, as an event naming its seq.
//! - [`authz`], [`ratelimit`]: pure policy pieces.
//! - [`upstream`]: a downstream server's link to its upstream (identity from the local agent).
//! - [`start`]: everything a running server consists of (listeners, loops), and its stop.
#![forbid(unsafe_code)]

pub mod admin_api;
pub mod audit_feed;
pub mod authz;
pub mod ca;
pub mod census;
pub mod config;
pub mod ctx;
pub mod entry;
pub mod federation;
pub mod namespace;
pub mod node_api;
pub mod observe;
pub mod ratelimit;
pub mod runbook_journal;
pub mod start;
pub mod tpm_devid;
pub mod upstream;
