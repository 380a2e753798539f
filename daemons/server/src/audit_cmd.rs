//! `trustdeck-server audit verify`: checks the audit hash chain in the datastore itself.
//!
//! It reads the datastore named by `-c CONFIG` directly, not through the admin socket: the
//! verdict does not rest on the word of the server whose log it checks, and it works while
//! that server is stopped. The chain is checked first, then every signed checkpoint against
//! the keys of the CA certificates in the CA journal.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use trustdeck_datastore::chain::{ChainBreak, Checkpoint, CheckpointBreak, verify_checkpoints};
use trustdeck_datastore::{CaKind, Contents, Datastore};
use trustdeck_pki::keys::p256_spki_from_point;
use trustdeck_server::config::Config;

use crate::Output;

/// Verifies the chain; `Ok` when intact, an error naming the first bad record otherwise.
pub async fn verify(config: &Path, output: Output) -> Result<()> {
    let c = Config::load(config)?;
    // An empty or missing datastore has no log to vouch for: saying "intact" there would hide
    // a lost database, and opening it would create the file.
    let contents = Datastore::inspect(&c.datastore)
        .await
        .with_context(|| format!("inspect the datastore of {}", config.display()))?;
    if contents != Contents::Initialised {
        bail!(
            "the datastore of {} holds no server state (missing, empty or in memory): there is \
             no audit log to verify",
            config.display()
        );
    }
    let ds = Datastore::open_with(&c.datastore, c.datastore_timeout)
        .await
        .with_context(|| format!("open the datastore of {}", config.display()))?;
    let verdict = check(&ds).await;
    ds.close().await;
    let verdict = verdict.context("read the audit log")?;
    if output == Output::Json {
        let v = match &verdict {
            Ok((n, cps)) => serde_json::json!({ "intact": true, "records": n, "checkpoints": cps }),
            Err(Broken::Chain(b)) => serde_json::json!({
                "intact": false, "first_bad_seq": b.seq(), "problem": b.to_string(),
            }),
            Err(Broken::Checkpoint(b)) => serde_json::json!({
                "intact": false, "bad_checkpoint": b.seq(), "problem": b.to_string(),
            }),
        };
        trustdeck_process::outln!("{v}");
    }
    match verdict {
        Ok((n, cps)) => {
            if output == Output::Text {
                trustdeck_process::outln!(
                    "audit log intact: {n} records chained, {cps} signed checkpoints hold"
                );
            }
            Ok(())
        }
        Err(Broken::Chain(b)) => bail!("audit log broken at record {}: {b}", b.seq()),
        Err(Broken::Checkpoint(b)) => bail!("audit log broken: {b}"),
    }
}

/// The first problem found: in the chain, or (the chain being intact) at a checkpoint.
enum Broken {
    Chain(ChainBreak),
    Checkpoint(CheckpointBreak),
}

/// How many records and checkpoints hold, or the first problem.
async fn check(ds: &Datastore) -> Result<Result<(i64, usize), Broken>> {
    let (records, head) = ds.audit_chain().await?;
    let n = match trustdeck_datastore::chain::verify(&records, &head) {
        Ok(n) => n,
        Err(b) => return Ok(Err(Broken::Chain(b))),
    };
    let checkpoints = ds.audit_checkpoints().await?;
    let keys = ca_keys(ds).await?;
    let signed_by_a_ca = |cp: &Checkpoint| {
        keys.contains(&cp.signer) && signature_holds(&cp.signer, &cp.signed_bytes(), &cp.signature)
    };
    Ok(verify_checkpoints(&records, &checkpoints, signed_by_a_ca)
        .map(|cps| (n, cps))
        .map_err(Broken::Checkpoint))
}

/// The public keys (SubjectPublicKeyInfo DER) of every X.509 CA in the CA journal, whatever
/// its status: a checkpoint signed by a CA since rotated out still holds.
async fn ca_keys(ds: &Datastore) -> Result<Vec<Vec<u8>>> {
    let journal = ds.list_ca_journal().await?;
    Ok(journal
        .iter()
        .filter(|r| r.kind == CaKind::X509)
        .filter_map(|r| r.certificate_chain_pem.as_deref())
        .filter_map(|pem| trustdeck_spiffe::pem::decode_certs(pem).ok())
        .filter_map(|certs| certs.into_iter().next())
        .filter_map(|der| trustdeck_spiffe::x509::public_key_of(&der).ok())
        .collect())
}

/// ECDSA P-256 with SHA-256 by the key `spki` (a P-256 SubjectPublicKeyInfo) over `msg`.
fn signature_holds(spki: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    const POINT: usize = 65;
    let Some(point) = spki.len().checked_sub(POINT).map(|at| &spki[at..]) else {
        return false;
    };
    p256_spki_from_point(point) == spki
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(msg, sig)
            .is_ok()
}
