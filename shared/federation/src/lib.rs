//! Federation with other trust domains (seed 004): the rules, without I/O. Every time is a
//! parameter; the fetching and serving live in `trustdeck-server` (`federation`).
//!
//! - [`accept`]: a partner relationship ([`Partner`]), whether a fetched bundle replaces the
//!   last good one ([`accept()`](accept::accept)), and every typed reason to refuse it
//!   ([`Refusal`]) or to fail a fetch ([`FetchFailure`]).
//! - [`schedule`]: when the next fetch is due: the bundle's `spiffe_refresh_hint`, else SPIRE's
//!   rule (a tenth of the shortest X.509 authority lifetime, at least a minute), and a backoff
//!   after failures.
//! - [`freshness`]: what is known of a partner ([`PartnerState`]) and the facts the console and
//!   `status` show ([`Freshness`]): last success and its age, sequence, earliest root expiry,
//!   a root the partner signs with that our copy lacks, refreshes that keep failing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accept;
pub mod freshness;
pub mod schedule;
#[cfg(test)]
mod testutil;

pub use accept::{
    Accepted, EndpointProfile, FetchFailure, Partner, Refusal, TransportKind, accept,
};
pub use freshness::{Fetched, Freshness, MissingRoot, PartnerState, Warning, missing_signing_root};
pub use schedule::{
    Interval, IntervalSource, RefreshPolicy, SPIRE_MINIMUM_REFRESH, refresh_interval, retry_delay,
};
