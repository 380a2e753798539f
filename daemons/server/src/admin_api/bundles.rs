//! Isolated trust domains on the admin API: a signed export of our bundle, the import of a
//! peer's signed bundle file (which answers with a signed receipt to carry back) or of a
//! peer's receipt, and the listing of what is held. The rules are `trustdeck_bundlefile`'s;
//! here are the keys (the active X.509 authority signs through the key manager, so an HSM
//! key signs where it lives), the datastore and the audit log. A refused import is recorded
//! as failed, carries its [`BundleFileRefusal`], and stores nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tonic::Status;
use trustdeck_bundlefile::{FileKind, Policy, Receipt, Refusal, decide};
use trustdeck_datastore::{BundleReceipt, ForeignBundle, ForeignSource};
use trustdeck_pki::X509Authority;
use trustdeck_proto::admin::{
    BundleFileKind, BundleFileRefusal, BundleReceiptInfo, ExportSignedBundleResponse,
    ForeignBundleInfo, ForeignBundleSource, ImportBundleFileRequest, ImportBundleFileResponse,
    ListForeignBundlesResponse, ReissueReceiptResponse, RootFingerprint,
};
use trustdeck_proto::refusal::bundle_refusal_status;
use trustdeck_spiffe::{Bundle, TrustDomain};

use super::audit::{Audit, Operator, audited};
use crate::ctx::{ServerCtx, ds_status};

/// The wire refusal of a decision's.
pub fn api_refusal(r: &Refusal) -> BundleFileRefusal {
    match r {
        Refusal::Truncated => BundleFileRefusal::Truncated,
        Refusal::Malformed(_) => BundleFileRefusal::Malformed,
        Refusal::UnsupportedFormat { .. } => BundleFileRefusal::UnsupportedFormat,
        Refusal::Tampered(_) => BundleFileRefusal::Tampered,
        Refusal::BrokenChain(_) => BundleFileRefusal::BrokenChain,
        Refusal::WrongKind { .. } => BundleFileRefusal::WrongKind,
        Refusal::WrongTrustDomain { .. } => BundleFileRefusal::WrongTrustDomain,
        Refusal::UnknownSigner { .. } => BundleFileRefusal::UnknownSigner,
        Refusal::SignerNotValid(_) => BundleFileRefusal::SignerNotValid,
        Refusal::NotNewer { .. } => BundleFileRefusal::NotNewer,
        Refusal::TooOld { .. } => BundleFileRefusal::TooOld,
        Refusal::IssuedInFuture { .. } => BundleFileRefusal::IssuedInFuture,
        Refusal::FingerprintRequired { .. } => BundleFileRefusal::FingerprintRequired,
        Refusal::FingerprintMismatch { .. } => BundleFileRefusal::FingerprintMismatch,
        Refusal::InvalidContent(_) => BundleFileRefusal::InvalidContent,
        Refusal::NotAboutUs { .. } => BundleFileRefusal::NotAboutUs,
        Refusal::NoPeerBundle { .. } => BundleFileRefusal::NoPeerBundle,
    }
}

fn refused(r: Refusal) -> Status {
    bundle_refusal_status(api_refusal(&r), r.to_string())
}

/// The signing authority's signature over `payload`, and its chain (itself first, then the
/// certificates above it). The key manager signs off the async threads (an HSM may be slow).
async fn sign(ca: Arc<X509Authority>, payload: Vec<u8>) -> Result<Vec<u8>, Status> {
    let signed = tokio::task::spawn_blocking(move || {
        let sig = ca.key().sign(&payload)?;
        let mut chain = vec![ca.cert_der().to_vec()];
        chain.extend(ca.upstream_chain().iter().cloned());
        Ok::<_, trustdeck_pki::KeyError>(trustdeck_bundlefile::seal(&payload, &sig, &chain))
    })
    .await
    .map_err(|e| Status::internal(format!("signing task failed: {e}")))?;
    signed.map_err(|e| Status::unavailable(format!("the X.509 authority's key did not sign: {e}")))
}

fn active_ca(ctx: &ServerCtx) -> Result<Arc<X509Authority>, Status> {
    ctx.ca
        .x509_ca()
        .map_err(|e| Status::unavailable(format!("no X.509 authority signs: {e}")))
}

fn root_info(der: &[u8], signs: bool) -> RootFingerprint {
    let (subject, not_after) = match trustdeck_spiffe::x509::check_ca(der) {
        Ok(info) => (info.subject, info.not_after.timestamp()),
        Err(_) => (String::new(), 0),
    };
    RootFingerprint {
        sha256: trustdeck_bundlefile::fingerprint(der),
        subject,
        not_after,
        signs,
    }
}

/// `bundle export --signed`: our bundle, signed by the active X.509 authority.
pub async fn export(ctx: &ServerCtx, op: &Operator) -> Result<ExportSignedBundleResponse, Status> {
    let bundle = ctx.ca.bundle();
    let audit = Audit {
        action: "bundle.export".into(),
        target: bundle.trust_domain.to_string(),
        detail: format!("sequence={}", bundle.sequence),
    };
    let now = ctx.clock.now();
    audited(ctx, op, audit, async |_, audit| {
        let ca = active_ca(ctx)?;
        let payload = trustdeck_bundlefile::bundle_payload(&bundle, now)
            .map_err(|e| Status::internal(format!("the bundle cannot be exported: {e}")))?;
        let mut chain = vec![ca.cert_der().to_vec()];
        chain.extend(ca.upstream_chain().iter().cloned());
        let file = sign(ca, payload).await?;
        let anchor = trustdeck_bundlefile::chain_root(&chain, &bundle.x509_authorities);
        let roots: Vec<RootFingerprint> = bundle
            .x509_authorities
            .iter()
            .map(|r| root_info(r, anchor == Some(r)))
            .collect();
        let fps: Vec<&str> = roots.iter().map(|r| r.sha256.as_str()).collect();
        audit.detail = format!("sequence={} roots={fps:?}", bundle.sequence);
        Ok(ExportSignedBundleResponse {
            file,
            trust_domain: bundle.trust_domain.to_string(),
            sequence: bundle.sequence,
            issued_at: now.timestamp(),
            roots,
        })
    })
    .await
}

fn policy(ctx: &ServerCtx, now: DateTime<Utc>) -> Policy {
    Policy {
        now,
        max_age: ctx.config.bundle_import_max_age,
    }
}

/// What is held for a trust domain before an import: read before the import's transaction
/// opens (a datastore of one connection would wait on itself); the write is a compare-and-set
/// on the sequence read, so a change in between is refused, not overwritten.
#[derive(Default)]
struct Held {
    /// The bundle (its stored sequence kept) and where it came from.
    bundle: Option<(Bundle, ForeignSource)>,
    /// The sequence of the peer's last receipt.
    receipt: Option<u64>,
}

impl Held {
    fn bundle(&self) -> Option<&Bundle> {
        self.bundle.as_ref().map(|(b, _)| b)
    }
}

/// What is held for `td`; the peer's last receipt only when importing a receipt.
async fn held(ctx: &ServerCtx, td: &TrustDomain, receipt: bool) -> Result<Held, Status> {
    let bundle = match ctx
        .ds
        .get_foreign_bundle(td.as_str())
        .await
        .map_err(ds_status)?
    {
        None => None,
        Some(rec) => {
            let mut b = Bundle::from_json(td, rec.document.as_bytes()).map_err(|e| {
                Status::internal(format!("the stored bundle of {td} does not parse: {e}"))
            })?;
            b.sequence = rec.sequence;
            Some((b, rec.source))
        }
    };
    let receipt = if receipt {
        ctx.ds
            .get_bundle_receipt(td.as_str())
            .await
            .map_err(ds_status)?
            .map(|r| r.sequence)
    } else {
        None
    };
    Ok(Held { bundle, receipt })
}

/// `bundle import`: a peer's signed bundle file, or its receipt for ours.
pub async fn import(
    ctx: &ServerCtx,
    op: &Operator,
    req: ImportBundleFileRequest,
) -> Result<ImportBundleFileResponse, Status> {
    let kind = trustdeck_bundlefile::kind_of(&req.file);
    let action = match kind {
        Ok(FileKind::Receipt) => "bundle.receipt",
        _ => "bundle.import",
    };
    let audit = Audit {
        action: action.into(),
        target: req.trust_domain.clone(),
        detail: String::new(),
    };
    let before = match TrustDomain::parse(&req.trust_domain) {
        Ok(td) => held(ctx, &td, matches!(kind, Ok(FileKind::Receipt))).await?,
        Err(_) => Held::default(),
    };
    audited(ctx, op, audit, async |tx, audit| {
        let td = TrustDomain::parse(&req.trust_domain)
            .map_err(|e| Status::invalid_argument(format!("--trust-domain: {e}")))?;
        match kind.map_err(refused)? {
            FileKind::Bundle => import_bundle(ctx, tx, audit, &td, &req, &before).await,
            FileKind::Receipt => import_receipt(ctx, tx, audit, &td, &req, &before).await,
        }
    })
    .await
}

async fn import_bundle(
    ctx: &ServerCtx,
    tx: &mut trustdeck_datastore::AuditedChange,
    audit: &mut Audit,
    td: &TrustDomain,
    req: &ImportBundleFileRequest,
    before: &Held,
) -> Result<ImportBundleFileResponse, Status> {
    let own = &ctx.config.trust_domain;
    if td == own {
        return Err(bundle_refusal_status(
            BundleFileRefusal::OwnTrustDomain,
            format!(
                "{td} is this server's own trust domain; import bundles of other trust domains"
            ),
        ));
    }
    if let Some((_, ForeignSource::Federation)) = &before.bundle {
        return Err(bundle_refusal_status(
            BundleFileRefusal::Federated,
            format!(
                "{td}'s bundle is kept by a federation relationship (its endpoint refreshes it); \
                 `trustdeck-server federation delete --trust-domain {td}` first to move it by file"
            ),
        ));
    }
    let now = ctx.clock.now();
    let held = before.bundle();
    let fingerprint = Some(req.fingerprint.as_str()).filter(|f| !f.is_empty());
    let accepted =
        decide::bundle(&req.file, td, held, fingerprint, &policy(ctx, now)).map_err(refused)?;
    let b = &accepted.bundle;
    // The receipt is signed before anything is stored: both, or neither.
    let receipt = Receipt::new(own, b, now);
    let receipt_file = sign(
        active_ca(ctx)?,
        trustdeck_bundlefile::receipt_payload(&receipt),
    )
    .await?;
    let rec = ForeignBundle {
        trust_domain: td.to_string(),
        document: b.to_json(),
        sequence: b.sequence,
        source: ForeignSource::Import,
        updated_at: now.timestamp(),
    };
    let previous = held.as_ref().map(|h| h.sequence);
    tx.put_foreign_bundle(&rec, previous)
        .await
        .map_err(ds_status)?;
    audit.detail = format!(
        "sequence={} previous={} bootstrap={} signed_by_root={} roots={:?}",
        b.sequence,
        previous.unwrap_or(0),
        accepted.bootstrap,
        accepted.anchor_fingerprint,
        receipt.roots
    );
    Ok(ImportBundleFileResponse {
        kind: BundleFileKind::Bundle.into(),
        trust_domain: td.to_string(),
        sequence: b.sequence,
        roots: receipt.roots,
        bootstrap: accepted.bootstrap,
        receipt: receipt_file,
        previous_sequence: previous.unwrap_or(0),
    })
}

async fn import_receipt(
    ctx: &ServerCtx,
    tx: &mut trustdeck_datastore::AuditedChange,
    audit: &mut Audit,
    peer: &TrustDomain,
    req: &ImportBundleFileRequest,
    before: &Held,
) -> Result<ImportBundleFileResponse, Status> {
    let now = ctx.clock.now();
    let (peer_bundle, last) = (before.bundle(), before.receipt);
    let own = &ctx.config.trust_domain;
    let r = decide::receipt(&req.file, peer, own, peer_bundle, last, &policy(ctx, now))
        .map_err(refused)?;
    let rec = BundleReceipt {
        peer_trust_domain: peer.to_string(),
        sequence: r.sequence,
        roots: r.roots.clone(),
        received_at: now.timestamp(),
    };
    tx.put_bundle_receipt(&rec, last).await.map_err(ds_status)?;
    audit.detail = format!("sequence={} roots={:?}", r.sequence, r.roots);
    Ok(ImportBundleFileResponse {
        kind: BundleFileKind::Receipt.into(),
        trust_domain: peer.to_string(),
        sequence: r.sequence,
        roots: r.roots,
        ..Default::default()
    })
}

/// The wire form of a stored source.
pub(crate) fn api_source(s: ForeignSource) -> ForeignBundleSource {
    match s {
        ForeignSource::Import => ForeignBundleSource::Import,
        ForeignSource::Federation => ForeignBundleSource::Federation,
    }
}

fn bundle_info(f: &ForeignBundle) -> ForeignBundleInfo {
    let roots = TrustDomain::parse(&f.trust_domain)
        .ok()
        .and_then(|td| Bundle::from_json(&td, f.document.as_bytes()).ok())
        .map(|b| trustdeck_bundlefile::root_fingerprints(&b))
        .unwrap_or_default();
    ForeignBundleInfo {
        trust_domain: f.trust_domain.clone(),
        sequence: f.sequence,
        source: api_source(f.source).into(),
        updated_at: f.updated_at,
        roots,
        spiffe_json: f.document.clone(),
    }
}

fn trust_domain(td: &str) -> Result<TrustDomain, Status> {
    TrustDomain::parse(td).map_err(|e| Status::invalid_argument(format!("trust_domain: {e}")))
}

/// `bundle receipt`: a receipt for the bundle held of isolated peer `td`, signed afresh, for
/// when the first one was lost on its way back.
pub async fn reissue_receipt(
    ctx: &ServerCtx,
    op: &Operator,
    td: &str,
) -> Result<ReissueReceiptResponse, Status> {
    let td = trust_domain(td)?;
    let held = ctx
        .ds
        .get_foreign_bundle(td.as_str())
        .await
        .map_err(ds_status)?;
    let f = match held {
        Some(f) if f.source == ForeignSource::Import => f,
        Some(_) => {
            return Err(bundle_refusal_status(
                BundleFileRefusal::Federated,
                format!(
                    "{td}'s bundle was fetched from its endpoint, not imported: no receipt is due"
                ),
            ));
        }
        None => {
            return Err(Status::not_found(format!(
                "no bundle of {td} was imported: nothing to acknowledge"
            )));
        }
    };
    let b = Bundle::from_json(&td, f.document.as_bytes())
        .map_err(|e| Status::internal(format!("the stored bundle of {td} does not parse: {e}")))?;
    let audit = Audit {
        action: "bundle.receipt.reissue".into(),
        target: td.to_string(),
        detail: format!("sequence={}", b.sequence),
    };
    let now = ctx.clock.now();
    audited(ctx, op, audit, async |_, audit| {
        let receipt = Receipt::new(&ctx.config.trust_domain, &b, now);
        let file = sign(
            active_ca(ctx)?,
            trustdeck_bundlefile::receipt_payload(&receipt),
        )
        .await?;
        audit.detail = format!("sequence={} roots={:?}", b.sequence, receipt.roots);
        Ok(ReissueReceiptResponse {
            receipt: file,
            sequence: b.sequence,
            roots: receipt.roots,
        })
    })
    .await
}

/// `bundle forget`: the bundle held of `td` and the receipt recorded from it, deleted; refused
/// while a federation relationship keeps it or an entry federates with it.
pub async fn forget(ctx: &ServerCtx, op: &Operator, td: &str) -> Result<ForeignBundleInfo, Status> {
    let td = trust_domain(td)?;
    if ctx
        .ds
        .get_federation(td.as_str())
        .await
        .map_err(ds_status)?
        .is_some()
    {
        return Err(bundle_refusal_status(
            BundleFileRefusal::Federated,
            format!(
                "{td}'s bundle is kept by a federation relationship: \
                 `trustdeck-server federation delete --trust-domain {td}` first"
            ),
        ));
    }
    let users: Vec<String> = ctx
        .ds
        .list_entries()
        .await
        .map_err(ds_status)?
        .into_iter()
        .filter(|e| e.federates_with.iter().any(|t| t == td.as_str()))
        .map(|e| e.spiffe_id)
        .collect();
    if !users.is_empty() {
        return Err(bundle_refusal_status(
            BundleFileRefusal::InUse,
            format!(
                "{} entries federate with {td} (e.g. {}): delete them or create them without it first",
                users.len(),
                users[0]
            ),
        ));
    }
    let audit = Audit {
        action: "bundle.forget".into(),
        target: td.to_string(),
        detail: String::new(),
    };
    audited(ctx, op, audit, async |tx, audit| {
        let gone = tx
            .delete_foreign_bundle(td.as_str())
            .await
            .map_err(ds_status)?
            .ok_or_else(|| Status::not_found(format!("no bundle of {td} is held")))?;
        let receipt = tx
            .delete_bundle_receipt(td.as_str())
            .await
            .map_err(ds_status)?;
        audit.detail = format!(
            "sequence={} source={} receipt_sequence={}",
            gone.sequence,
            gone.source.as_str(),
            receipt.map_or(0, |r| r.sequence)
        );
        Ok(bundle_info(&gone))
    })
    .await
}

/// Every foreign bundle held and every receipt recorded.
pub async fn list(ctx: &ServerCtx) -> Result<ListForeignBundlesResponse, Status> {
    let bundles = ctx.ds.list_foreign_bundles().await.map_err(ds_status)?;
    let receipts = ctx.ds.list_bundle_receipts().await.map_err(ds_status)?;
    Ok(ListForeignBundlesResponse {
        bundles: bundles.iter().map(bundle_info).collect(),
        receipts: receipts
            .into_iter()
            .map(|r| BundleReceiptInfo {
                peer_trust_domain: r.peer_trust_domain,
                sequence: r.sequence,
                roots: r.roots,
                received_at: r.received_at,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::vocab::Vocabulary;

    #[test]
    fn every_refusal_has_its_own_wire_value() {
        let all = [
            Refusal::Truncated,
            Refusal::Malformed(String::new()),
            Refusal::UnsupportedFormat { found: "x".into() },
            Refusal::Tampered(String::new()),
            Refusal::BrokenChain(String::new()),
            Refusal::WrongKind {
                expected: FileKind::Bundle,
                found: FileKind::Receipt,
            },
            Refusal::WrongTrustDomain {
                asked: "a".into(),
                found: "b".into(),
            },
            Refusal::UnknownSigner {
                trust_domain: "a".into(),
                reason: String::new(),
            },
            Refusal::SignerNotValid(String::new()),
            Refusal::NotNewer {
                trust_domain: "a".into(),
                held: 2,
                offered: 1,
            },
            Refusal::TooOld {
                issued_at: 0,
                age_secs: 0,
                max_age_secs: 0,
            },
            Refusal::IssuedInFuture {
                issued_at: 0,
                ahead_secs: 0,
            },
            Refusal::FingerprintRequired {
                trust_domain: "a".into(),
            },
            Refusal::FingerprintMismatch {
                trust_domain: "a".into(),
                given: String::new(),
            },
            Refusal::InvalidContent(String::new()),
            Refusal::NotAboutUs {
                ours: "a".into(),
                about: "b".into(),
            },
            Refusal::NoPeerBundle { peer: "b".into() },
        ];
        let wire: std::collections::HashSet<_> = all.iter().map(api_refusal).collect();
        assert_eq!(wire.len(), all.len());
        assert!(!wire.contains(&BundleFileRefusal::Unspecified));
        for own in [
            BundleFileRefusal::OwnTrustDomain,
            BundleFileRefusal::Federated,
            BundleFileRefusal::InUse,
        ] {
            assert!(!wire.contains(&own), "the server's own rule: {own:?}");
        }
        // Besides the file's rules: Unspecified and the server's three.
        assert_eq!(BundleFileRefusal::ALL.len(), all.len() + 4);
    }
}
