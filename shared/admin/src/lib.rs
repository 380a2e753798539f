//! A daemon's admin surface shared by the server and the agent: who may call it
//! ([`access`]: viewer or operator, by uid over the socket or SPIFFE ID over mTLS) and the
//! read-only `Observe` service ([`observe`]) that serves a [`trustdeck_topology::Hub`] as the
//! `Watch` stream; [`refusals`] bounds how often a refused call is recorded; [`socket`]
//! gives the admin socket a mode and group the configured uids can use ([`users`]: the
//! local accounts). [`info`] is `server.json`, where a running server says it listens.
#![forbid(unsafe_code)]

pub mod access;
pub mod info;
pub mod observe;
pub mod refusals;
pub mod socket;
pub mod users;

pub use access::{
    AdminAccess, AdminSection, Caller, IssuerCheck, Role, effective_gid, effective_uid,
};
pub use observe::{ObserveService, watch_stream};
