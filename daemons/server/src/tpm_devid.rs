//! The `tpm_devid` trust anchors: the DevID and endorsement CA bundles named in the
//! configuration, read at each attestation so replacing a file takes effect without a
//! restart. The dialogue itself is `trustdeck_attest::server`.

use tonic::{Code, Status};
use trustdeck_attest::server::TpmAnchors;
use trustdeck_attest::{Method, Refusal};
use trustdeck_proto::node::Reason;
use trustdeck_proto::reason::reason_status;
use trustdeck_tpm::verify::Bundle;

use crate::config::TpmDevIdConfig;

/// Reads the PEM bundle `what` at `path`; refuses an unreadable or empty one.
pub async fn read_bundle(what: &str, path: &std::path::Path) -> Result<Vec<Vec<u8>>, Status> {
    read_certs(what, path)
        .await
        .map_err(|msg| reason_status(Code::FailedPrecondition, Reason::MethodUnavailable, msg))
}

/// The certificates of the bundle `what` at `path`, or what is wrong with it (naming the
/// path: for the server's log, never for the agent).
async fn read_certs(what: &str, path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("tpm_devid: {what} {} unreadable: {e}", path.display()))?;
    let certs = trustdeck_spiffe::pem::decode_certs(&text)
        .map_err(|e| format!("tpm_devid: {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tpm_devid: {what} {} holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Both bundles, with the paths errors name them by.
pub struct TpmBundles {
    devid_name: String,
    devid: Vec<Vec<u8>>,
    endorsement_name: String,
    endorsement: Vec<Vec<u8>>,
}

impl TpmBundles {
    /// Reads the bundles of `config`; refuses when `tpm_devid` is not configured or a bundle
    /// cannot be read.
    pub async fn read(config: Option<&TpmDevIdConfig>) -> Result<TpmBundles, Refusal> {
        let Some(c) = config else {
            return Err(Refusal::Disabled(Method::TpmDevid));
        };
        let anchors = |detail| Refusal::Anchors(Method::TpmDevid, detail);
        Ok(TpmBundles {
            devid: read_certs("devid_ca_bundle_path", &c.devid_ca_bundle_path)
                .await
                .map_err(anchors)?,
            endorsement: read_certs("endorsement_ca_bundle_path", &c.endorsement_ca_bundle_path)
                .await
                .map_err(anchors)?,
            devid_name: c.devid_ca_bundle_path.display().to_string(),
            endorsement_name: c.endorsement_ca_bundle_path.display().to_string(),
        })
    }

    /// The anchors the dialogue verifies against.
    pub fn anchors(&self) -> TpmAnchors<'_> {
        TpmAnchors {
            devid: Bundle {
                name: &self.devid_name,
                certs: &self.devid,
            },
            endorsement: Bundle {
                name: &self.endorsement_name,
                certs: &self.endorsement,
            },
        }
    }
}
