//! TPM 2.0 DevID node attestation (`tpm_devid`), after SPIRE's `tpm_devid` plugin.
//!
//! A node proves three things to its server:
//! 1. its DevID certificate chains to a configured DevID CA ([`verify`]);
//! 2. it holds the DevID private key: it signs a fresh nonce with it ([`verify::verify_proof`]);
//! 3. that key lives in a TPM whose endorsement key (EK) is certified by a configured
//!    endorsement CA: the server encrypts a fresh secret to the EK bound to the DevID key's
//!    TPM name ([`credential::make_credential`], in software: servers have no TPM), and only
//!    that TPM can release it with `TPM2_ActivateCredential`.
//!
//! - [`public`]: TPM2B_PUBLIC parsing and object names, pure.
//! - [`verify`]: chains, public-area checks, selectors and the proof of possession, pure.
//! - [`credential`]: software `TPM2_MakeCredential` for RSA-2048 EKs.
//! - `soft` (feature `soft`, and in tests): a TPM in software, so both sides of the dialogue
//!   run in tests without a device.
//! - `device` (feature `device`, links libtss2): the agent's TPM operations through tss-esapi.
#![forbid(unsafe_code)]

pub mod credential;
#[cfg(feature = "device")]
pub mod device;
pub mod public;
#[cfg(any(test, feature = "soft"))]
pub mod soft;
pub mod verify;

pub use verify::{TpmDevIdError, VerifiedDevice};
