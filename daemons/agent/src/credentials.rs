//! The node's attestation credentials, read for each attestation from the files named in the
//! configuration (with `tokio::fs`) and from the TPM (blocking, off the runtime's threads),
//! and the TPM's answer to a `tpm_devid` challenge.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trustdeck_attest::agent::Credentials;
use trustdeck_proto::node::{TpmDevidChallenge, TpmDevidEvidence, TpmDevidProof};
use trustdeck_spiffe::PemError;
use trustdeck_tpm::device::{DevIdKey, DeviceError, Tpm};

use crate::config::NodeAttestation;

/// Why the node's credentials could not be read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Neither `token` nor `token_path` is set.
    #[error("no join token configured")]
    NoToken,
    /// A credential file could not be read.
    #[error("{what} {}: {source}", path.display())]
    Read {
        /// Which setting names the file (`join token file`, `x509pop key_path`, ...).
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate file does not decode.
    #[error("{what} {}: {source}", path.display())]
    Pem {
        /// Which setting names the file.
        what: &'static str,
        path: PathBuf,
        source: PemError,
    },
    /// A certificate file is neither DER nor PEM text.
    #[error("{what} {}: neither DER nor PEM", path.display())]
    NotDerOrPem {
        /// Which setting names the file.
        what: &'static str,
        path: PathBuf,
    },
    /// A certificate file holds no certificate.
    #[error("{what} {}: no certificate", path.display())]
    NoCertificate {
        /// Which setting names the file.
        what: &'static str,
        path: PathBuf,
    },
    /// The x509pop key does not parse.
    #[error("x509pop key_path {}: {source}", path.display())]
    Key { path: PathBuf, source: rcgen::Error },
    /// A TPM operation (or reading the DevID key blobs) failed. Its text says it all: not a
    /// `source` too, or `{:#}` would tell it twice.
    #[error("tpm_devid: {0}")]
    Tpm(DeviceError),
    /// The blocking TPM task did not finish.
    #[error("tpm_devid: TPM task failed: {0}")]
    TpmTask(#[from] tokio::task::JoinError),
}

/// What answers a `tpm_devid` challenge: the TPM and the DevID key blobs.
#[derive(Clone)]
pub struct TpmProver {
    tcti: String,
    key: Arc<DevIdKey>,
}

impl CredentialError {
    /// The TPM no longer loads the DevID key (cleared or replaced): the node needs a new
    /// DevID, which only the operator can give it.
    pub fn devid_not_loadable(&self) -> bool {
        matches!(
            self,
            CredentialError::Tpm(DeviceError::DevIdNotLoadable { .. })
        )
    }
}

impl From<DeviceError> for CredentialError {
    fn from(e: DeviceError) -> Self {
        CredentialError::Tpm(e)
    }
}

/// Reads the credentials of the configured method; for `tpm_devid` also what will answer
/// the server's challenge.
pub async fn load(
    method: &NodeAttestation,
) -> Result<(Credentials, Option<TpmProver>), CredentialError> {
    match method {
        NodeAttestation::JoinToken { token, token_path } => {
            let token = match (token, token_path) {
                (Some(t), _) => t.clone(),
                (None, Some(p)) => read_text("join token file", p).await?.trim().to_string(),
                (None, None) => return Err(CredentialError::NoToken),
            };
            Ok((Credentials::JoinToken(token), None))
        }
        NodeAttestation::X509pop {
            cert_path,
            key_path,
        } => Ok((x509pop(cert_path, key_path).await?, None)),
        NodeAttestation::TpmDevid {
            tcti,
            devid_cert_path,
            devid_key_path,
            ek_cert_path,
        } => {
            let tcti = tcti
                .clone()
                .unwrap_or_else(trustdeck_tpm::device::default_tcti);
            let chain = read_der_or_pem("tpm_devid devid_cert_path", devid_cert_path).await?;
            let ek_cert = match ek_cert_path {
                Some(p) => Some(
                    read_der_or_pem("tpm_devid ek_cert_path", p)
                        .await?
                        .remove(0),
                ),
                None => None,
            };
            let (key, evidence) =
                tpm_evidence(tcti.clone(), devid_key_path.clone(), ek_cert).await?;
            let creds = Credentials::TpmDevid { chain, evidence };
            Ok((creds, Some(TpmProver { tcti, key })))
        }
    }
}

async fn read_text(what: &'static str, path: &Path) -> Result<String, CredentialError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| CredentialError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
}

async fn x509pop(cert_path: &Path, key_path: &Path) -> Result<Credentials, CredentialError> {
    const CERT: &str = "x509pop cert_path";
    let chain = trustdeck_spiffe::pem::decode_certs(&read_text(CERT, cert_path).await?).map_err(
        |source| CredentialError::Pem {
            what: CERT,
            path: cert_path.to_path_buf(),
            source,
        },
    )?;
    let key = rcgen::KeyPair::from_pem(&read_text("x509pop key_path", key_path).await?).map_err(
        |source| CredentialError::Key {
            path: key_path.to_path_buf(),
            source,
        },
    )?;
    Ok(Credentials::X509pop {
        chain,
        key: Box::new(key),
    })
}

/// Certificates from a DER file (one) or a PEM file (one or more).
async fn read_der_or_pem(what: &'static str, path: &Path) -> Result<Vec<Vec<u8>>, CredentialError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| CredentialError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes]);
    }
    let path = path.to_path_buf();
    let text = String::from_utf8(bytes).map_err(|_| CredentialError::NotDerOrPem {
        what,
        path: path.clone(),
    })?;
    let certs =
        trustdeck_spiffe::pem::decode_certs(&text).map_err(|source| CredentialError::Pem {
            what,
            path: path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CredentialError::NoCertificate { what, path });
    }
    Ok(certs)
}

/// Reads the DevID key blobs and asks the TPM for the EK certificate (from NV unless one is
/// configured) and the public areas.
async fn tpm_evidence(
    tcti: String,
    key_path: PathBuf,
    ek_cert: Option<Vec<u8>>,
) -> Result<(Arc<DevIdKey>, TpmDevidEvidence), CredentialError> {
    tokio::task::spawn_blocking(move || {
        let key = DevIdKey::read(&key_path)?;
        let mut tpm = Tpm::open(&tcti)?;
        let ek_cert = match ek_cert {
            Some(c) => c,
            None => tpm.ek_certificate()?,
        };
        let evidence = TpmDevidEvidence {
            ek_cert,
            ek_public: tpm.ek_public()?,
            devid_public: key.public.clone(),
        };
        Ok((Arc::new(key), evidence))
    })
    .await?
}

impl TpmProver {
    /// Signs the nonce with the DevID key and activates the credential.
    pub async fn answer(&self, ch: TpmDevidChallenge) -> Result<TpmDevidProof, CredentialError> {
        let (tcti, key) = (self.tcti.clone(), self.key.clone());
        tokio::task::spawn_blocking(move || {
            let mut tpm = Tpm::open(&tcti)?;
            let (signature, activated_secret) =
                tpm.answer_challenge(&key, &ch.nonce, &ch.credential_blob, &ch.encrypted_secret)?;
            Ok(TpmDevidProof {
                signature,
                activated_secret,
            })
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tpm_failure_is_told_once_in_an_error_chain() {
        let e = CredentialError::from(DeviceError::DevIdNotLoadable {
            reason: "integrity check failed".into(),
        });
        let told = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(told.matches("integrity check failed").count(), 1, "{told}");
        assert!(
            told.starts_with("tpm_devid: TPM load of the DevID key failed"),
            "{told}"
        );
    }
}
