//! SPIFFE building blocks for trustdeck: SPIFFE IDs and trust domains,
//! workload selectors, X509-SVID and signing-certificate profiles,
//! JWT-SVIDs, SPIFFE bundles and PEM helpers.
//!
//! The crate is pure: it performs no I/O and never reads the clock. Every
//! function that needs the current time takes it as a parameter.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audience;
pub mod bundle;
mod der;
pub mod id;
pub mod jwt;
pub mod pem;
pub mod selector;
pub mod x509;

pub use bundle::{Bundle, BundleError, JwtAuthority};
pub use id::{IdError, SpiffeId, TrustDomain};
pub use jwt::{JwtClaims, JwtError, JwtHeader, ValidatedJwt};
pub use pem::{PemBlock, PemError};
pub use selector::{Selector, SelectorError, UnixRule};
pub use x509::{CaInfo, LeafInfo, ProfileError};
