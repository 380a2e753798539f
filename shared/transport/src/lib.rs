//! Transport plumbing shared by every daemon and the console.
//!
//! - [`tls`]: rustls configurations whose identity and trust roots can change at run time
//!   (SVID renewal, bundle rotation), verifying peers as SPIFFE IDs.
//! - [`serve`]: an mTLS accept loop feeding tonic, with the peer's certificates in each request.
//! - [`limits`]: timeouts and caps for connections without a client identity.
//! - [`connect`]: tonic channels over mTLS TCP or a Unix socket.
//! - [`workload_client`]: a SPIFFE Workload API client.
#![forbid(unsafe_code)]

pub mod connect;
pub mod limits;
pub mod serve;
pub mod tls;
pub mod unix;
pub mod workload_client;

pub use limits::ConnectionLimits;
pub use serve::{PeerInfo, peer_spiffe_id};
pub use tls::{SharedIdentity, SharedRoots, TlsError};
