//! A daemon's admin surface shared by the server and the agent: who may call it
//! ([`access`]: viewer or operator, by uid over the socket or SPIFFE ID over mTLS) and the
//! read-only `Observe` service ([`observe`]) that serves a [`trustdeck_topology::Hub`] as the
//! `Watch` stream. [`info`] is `server.json`, where a running server says it listens.
#![forbid(unsafe_code)]

pub mod access;
pub mod info;
pub mod observe;

pub use access::{
    AdminAccess, AdminSection, Caller, IssuerCheck, Role, effective_gid, effective_uid,
};
pub use observe::{ObserveService, watch_stream};
