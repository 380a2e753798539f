//! The server's side of `tpm_devid` node attestation: evidence check, challenge (nonce and a
//! credential made in software for the node's EK) and the check of the answer. The server
//! needs no TPM. Verification itself is pure, in `trustdeck_tpm::verify`.

use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use trustdeck_proto::node::{
    AttestRequest, AttestResponse, TpmDevidChallenge, TpmDevidEvidence, TpmDevidProof,
    attest_request,
};
use trustdeck_spiffe::SpiffeId;
use trustdeck_tpm::verify::{self, Bundle, Evidence};

use crate::config::TpmDevIdConfig;
use crate::ctx::ServerCtx;

/// How long the node may take for each of its two messages after the parameters.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A node that passed `tpm_devid` attestation.
#[derive(Debug, Clone)]
pub struct TpmAttested {
    /// `spiffe://<td>/trustdeck/agent/tpm_devid/<sha256 of the DevID certificate>`.
    pub id: SpiffeId,
    /// `tpm_devid:*` selectors.
    pub selectors: Vec<String>,
}

/// Reads a PEM bundle named in the configuration (read at each attestation, so replacing
/// the file takes effect without a restart).
pub async fn read_bundle(what: &str, path: &std::path::Path) -> Result<Vec<Vec<u8>>, Status> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        Status::failed_precondition(format!(
            "tpm_devid: {what} {} unreadable: {e}",
            path.display()
        ))
    })?;
    let certs = trustdeck_spiffe::pem::decode_certs(&text).map_err(|e| {
        Status::failed_precondition(format!("tpm_devid: {what} {}: {e}", path.display()))
    })?;
    if certs.is_empty() {
        return Err(Status::failed_precondition(format!(
            "tpm_devid: {what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

async fn next_step(
    inbound: &mut Streaming<AttestRequest>,
    what: &str,
) -> Result<attest_request::Step, Status> {
    tokio::time::timeout(STEP_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "tpm_devid: no {what} within {}s",
                STEP_TIMEOUT.as_secs()
            ))
        })??
        .and_then(|m| m.step)
        .ok_or_else(|| {
            Status::invalid_argument(format!("tpm_devid: stream closed before the {what}"))
        })
}

fn random<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], Status> {
    let mut b = [0u8; N];
    rng.fill(&mut b)
        .map_err(|_| Status::internal("random number generator failed"))?;
    Ok(b)
}

/// Runs the `tpm_devid` dialogue after `AttestParams` (whose payload is the DevID chain).
/// Nothing is stored here; the caller issues the SVID and records the node.
pub async fn attest(
    ctx: &ServerCtx,
    devid_chain: &[Vec<u8>],
    inbound: &mut Streaming<AttestRequest>,
    tx: &mpsc::Sender<Result<AttestResponse, Status>>,
) -> Result<TpmAttested, Status> {
    let Some(TpmDevIdConfig {
        devid_ca_bundle_path,
        endorsement_ca_bundle_path,
    }) = &ctx.config.node_attestation.tpm_devid
    else {
        return Err(Status::failed_precondition(
            "tpm_devid attestation is not enabled on this server",
        ));
    };
    let devid_cas = read_bundle("devid_ca_bundle_path", devid_ca_bundle_path).await?;
    let ek_cas = read_bundle("endorsement_ca_bundle_path", endorsement_ca_bundle_path).await?;

    let attest_request::Step::TpmDevidEvidence(TpmDevidEvidence {
        ek_cert,
        ek_public,
        devid_public,
    }) = next_step(inbound, "TPM evidence").await?
    else {
        return Err(Status::invalid_argument(
            "tpm_devid: expected TpmDevidEvidence after AttestParams",
        ));
    };
    let devid_name = devid_ca_bundle_path.display().to_string();
    let ek_name = endorsement_ca_bundle_path.display().to_string();
    let device = verify::verify_evidence(
        Evidence {
            devid_chain,
            ek_cert: &ek_cert,
            ek_public: &ek_public,
            devid_public: &devid_public,
        },
        Bundle {
            name: &devid_name,
            certs: &devid_cas,
        },
        Bundle {
            name: &ek_name,
            certs: &ek_cas,
        },
        ctx.clock.now(),
    )
    .map_err(|e| Status::permission_denied(e.to_string()))?;

    // Fresh for this dialogue only: a response from any other dialogue cannot match.
    let rng = SystemRandom::new();
    let nonce: [u8; 32] = random(&rng)?;
    let secret: [u8; 32] = random(&rng)?;
    let credential =
        trustdeck_tpm::credential::make_credential(&device.ek, &device.devid_name, &secret)
            .map_err(|e| Status::permission_denied(format!("tpm_devid: {e}")))?;
    tx.send(Ok(AttestResponse {
        step: None,
        tpm_devid_challenge: Some(TpmDevidChallenge {
            nonce: nonce.to_vec(),
            credential_blob: credential.id_object,
            encrypted_secret: credential.encrypted_secret,
        }),
    }))
    .await
    .map_err(|_| Status::cancelled("agent went away"))?;

    let attest_request::Step::TpmDevidProof(TpmDevidProof {
        signature,
        activated_secret,
    }) = next_step(inbound, "challenge response").await?
    else {
        return Err(Status::invalid_argument(
            "tpm_devid: expected TpmDevidProof in answer to the challenge",
        ));
    };
    verify::verify_proof(&device.devid_spki, &nonce, &signature)
        .map_err(|e| Status::permission_denied(e.to_string()))?;
    verify::verify_secret(&secret, &activated_secret)
        .map_err(|e| Status::permission_denied(e.to_string()))?;
    let id = SpiffeId::from_segments(
        &ctx.config.trust_domain,
        &["trustdeck", "agent", "tpm_devid", &device.fingerprint],
    )
    .map_err(|e| Status::internal(e.to_string()))?;
    Ok(TpmAttested {
        id,
        selectors: device.selectors,
    })
}
