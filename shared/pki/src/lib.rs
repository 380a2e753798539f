//! Key managers, CSR verification, certificate authorities and rotation math.
//!
//! Private keys live behind [`keys::KeyManager`]; everything that signs goes through
//! [`keys::SigningKey`], so CA code never sees private key bytes. [`rotation`] is pure:
//! every decision is a function of `now`.
#![forbid(unsafe_code)]

pub mod bounds;
pub mod ca;
pub mod csr;
pub mod keys;
pub mod pkcs11;
pub mod rotation;
pub mod x509pop;

pub use ca::{CaError, IssuedSvid, X509Authority};
pub use csr::{CsrError, VerifiedCsr};
pub use keys::{KeyError, KeyManager, KeyStorage, SigningKey};
