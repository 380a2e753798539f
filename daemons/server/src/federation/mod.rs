//! Federation with other trust domains (seed 004): the I/O around the pure rules of
//! `trustdeck-federation`.
//!
//! - [`deliver`]: handing foreign bundles down to agents and downstream servers.
//! - [`endpoint`]: this server's bundle endpoint (`https_web` or `https_spiffe`), configured by
//!   `[federation.bundle_endpoint]`.
//! - [`fetch`]: fetching a partner's bundle from its endpoint ([`fetch::fetch_bundle`]).
//! - [`http`]: the little HTTP/1.1 both need (pure parsing).
//! - [`publish`]: what the admin `Watch` stream tells of foreign trust domains and receipts.
//! - [`refresh`]: refreshing federation relationships' bundles into the datastore.

pub mod deliver;
pub mod endpoint;
pub mod fetch;
pub mod http;
pub mod publish;
pub mod refresh;
