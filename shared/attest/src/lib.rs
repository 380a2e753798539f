//! Node attestation dialogues, both sides, without I/O: the server's ([`server`]) and the
//! agent's ([`agent`]) halves of `join_token`, `x509pop` and `tpm_devid` are state machines
//! that take node-API messages in and give messages out. Time (`now`, the deadline) and the
//! server's random challenge are passed in; verification goes through the pure checks of
//! `trustdeck-pki` (x509pop) and `trustdeck-tpm` (DevID evidence and proofs). The daemons
//! only pump messages between these machines and their gRPC streams, read files and drive the
//! TPM, so every dialogue, refusals included, is tested here without sockets.
//!
//! The dialogues:
//! - `join_token`: params (the token) → result.
//! - `x509pop`: params (node certificate chain) → nonce → signature → result.
//! - `tpm_devid`: params (DevID chain), evidence (EK certificate, public areas) → nonce and
//!   credential for the EK → signature and activated secret → result.
#![forbid(unsafe_code)]

pub mod agent;
mod method;
mod refusal;
pub mod server;

pub use method::Method;
pub use refusal::Refusal;
