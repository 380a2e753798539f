//! The trust anchors of node attestation, checked before serving.

use super::{RunError, io};
use crate::config::Config;

/// The CAs x509pop agents' certificates must chain to (empty: x509pop disabled).
pub(super) fn x509pop_cas(config: &Config) -> Result<Vec<Vec<u8>>, RunError> {
    let Some(x) = &config.node_attestation.x509pop else {
        return Ok(Vec::new());
    };
    let path = &x.ca_bundle_path;
    let text = std::fs::read_to_string(path)
        .map_err(io(format!("x509pop ca_bundle_path {}", path.display())))?;
    trustdeck_spiffe::pem::decode_certs(&text).map_err(|source| RunError::X509popBundle {
        path: path.clone(),
        source,
    })
}

/// tpm_devid bundles are re-read at each attestation (so they can be replaced without a
/// restart), but a server whose bundles are unusable right now must not start.
pub(super) async fn check_tpm_devid_bundles(config: &Config) -> Result<(), RunError> {
    let Some(t) = &config.node_attestation.tpm_devid else {
        return Ok(());
    };
    for (what, path) in [
        ("devid_ca_bundle_path", &t.devid_ca_bundle_path),
        ("endorsement_ca_bundle_path", &t.endorsement_ca_bundle_path),
    ] {
        crate::tpm_devid::read_bundle(what, path)
            .await
            .map_err(|s| RunError::TpmDevidBundle(Box::new(s)))?;
    }
    Ok(())
}
