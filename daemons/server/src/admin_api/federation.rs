//! Federation relationships on the admin API: create (with the partner's bootstrap bundle,
//! stored as its first foreign bundle), list, show, update, delete, and refresh at once. The
//! fetching and storing are [`crate::federation::refresh`]'s; here are the checks of the
//! operator's settings, each refusal typed ([`FederationRefusal`]).

use std::path::Path;

use tonic::Status;
use trustdeck_datastore::{
    AuditedChange, DatastoreError, FederationProfile as Stored, FederationRelationship,
    ForeignBundle, ForeignSource, RefreshState,
};
use trustdeck_federation::{Accepted, FetchFailure, Partner, Refusal, accept};
use trustdeck_proto::admin::{
    CreateFederationRequest, FederationInfo, FederationProfile, FederationRefusal,
    ListFederationsResponse, RefreshFederationResponse, RefreshOutcome,
};
use trustdeck_proto::refusal::federation_refusal_status;
use trustdeck_spiffe::{Bundle, TrustDomain};

use super::audit::{Audit, Operator, audited};
use crate::ctx::{ServerCtx, ds_status};
use crate::federation::fetch::parse_url;
use crate::federation::refresh::{self, Unusable, held_bundle, partner_of};

fn refused(r: FederationRefusal, message: impl Into<String>) -> Status {
    federation_refusal_status(r, message)
}

fn invalid(message: impl Into<String>) -> Status {
    refused(FederationRefusal::Invalid, message)
}

/// The wire refusal of a rule's.
pub fn api_refusal(r: &Refusal) -> FederationRefusal {
    match r {
        Refusal::NotABundle(_) => FederationRefusal::NotABundle,
        Refusal::Empty { .. } => FederationRefusal::Empty,
        Refusal::SequenceBackwards { .. } => FederationRefusal::SequenceBackwards,
        Refusal::SequenceReused { .. } => FederationRefusal::SequenceReused,
        Refusal::ForeignAuthority { .. } => FederationRefusal::ForeignAuthority,
        Refusal::NotAnAuthority { .. } => FederationRefusal::NotAnAuthority,
        Refusal::EndpointOutsideTrustDomain { .. } => FederationRefusal::EndpointOutsideTrustDomain,
        Refusal::UnexpectedEndpointId { .. } => FederationRefusal::UnexpectedEndpointId,
        Refusal::EndpointRootUnknown { .. } => FederationRefusal::EndpointRootUnknown,
        _ => FederationRefusal::Unspecified,
    }
}

fn unusable(e: Unusable) -> Status {
    match e {
        Unusable::Refused(r) => refused(api_refusal(&r), r.to_string()),
        other => invalid(other.to_string()),
    }
}

/// The relationship `req` describes, checked; `created_at` and the refresh state are the
/// caller's to set.
fn settings(
    ctx: &ServerCtx,
    req: &CreateFederationRequest,
) -> Result<(FederationRelationship, Partner), Status> {
    let td = TrustDomain::parse(&req.trust_domain)
        .map_err(|e| invalid(format!("--trust-domain {:?}: {e}", req.trust_domain)))?;
    if td == ctx.config.trust_domain {
        return Err(refused(
            FederationRefusal::OwnTrustDomain,
            format!("{td} is this server's own trust domain; federate with other trust domains"),
        ));
    }
    parse_url(&req.endpoint_url).map_err(|e| invalid(format!("--endpoint-url: {e}")))?;
    let opt = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    let (id, ca_file) = (opt(&req.endpoint_spiffe_id), opt(&req.ca_file));
    let profile = match req.profile() {
        FederationProfile::HttpsWeb if id.is_some() => {
            return Err(invalid(
                "--endpoint-spiffe-id belongs to https_spiffe; an https_web endpoint is checked by DNS name",
            ));
        }
        FederationProfile::HttpsWeb => Stored::HttpsWeb,
        FederationProfile::HttpsSpiffe if ca_file.is_some() => {
            return Err(invalid(
                "--ca-file belongs to https_web; an https_spiffe endpoint is checked against the partner's bundle",
            ));
        }
        FederationProfile::HttpsSpiffe if id.is_none() => {
            return Err(invalid("https_spiffe needs --endpoint-spiffe-id"));
        }
        FederationProfile::HttpsSpiffe => Stored::HttpsSpiffe,
        FederationProfile::Unspecified => {
            return Err(invalid("--profile: https_web or https_spiffe"));
        }
    };
    if let Some(f) = &ca_file
        && !Path::new(f).is_absolute()
    {
        return Err(invalid(format!(
            "--ca-file {f:?}: give an absolute path on the server"
        )));
    }
    let now = ctx.clock.now().timestamp();
    let rel = FederationRelationship {
        trust_domain: td.to_string(),
        endpoint_url: req.endpoint_url.clone(),
        profile,
        endpoint_spiffe_id: id,
        ca_file,
        created_at: now,
        updated_at: now,
        refresh: RefreshState::default(),
    };
    let partner = partner_of(&rel).map_err(unusable)?;
    Ok((rel, partner))
}

/// The bootstrap bundle (PEM roots or SPIFFE JSON), judged by the rules as a first fetch.
fn bootstrap(partner: &Partner, file: &[u8]) -> Result<Bundle, Status> {
    let td = partner.trust_domain();
    let text = std::str::from_utf8(file).map_err(|_| {
        refused(
            FederationRefusal::NotABundle,
            "--bootstrap-bundle is not text (PEM or SPIFFE JSON)",
        )
    })?;
    let json = if text.trim_start().starts_with("-----BEGIN") {
        Bundle::from_pem_x509(td, text)
            .map_err(|e| {
                refused(
                    FederationRefusal::NotABundle,
                    format!("--bootstrap-bundle: {e}"),
                )
            })?
            .to_json()
    } else {
        text.to_string()
    };
    let accepted = accept(partner, None, json.as_bytes())
        .map_err(|r| refused(api_refusal(&r), format!("--bootstrap-bundle: {r}")))?;
    Ok(accepted.into_bundle())
}

/// The wire form of a stored profile.
pub(crate) fn api_profile(p: Stored) -> FederationProfile {
    match p {
        Stored::HttpsWeb => FederationProfile::HttpsWeb,
        Stored::HttpsSpiffe => FederationProfile::HttpsSpiffe,
    }
}

/// What is shown of `rel`: its settings, refresh state, the bundle held, the next refresh.
pub async fn info(ctx: &ServerCtx, rel: &FederationRelationship) -> Result<FederationInfo, Status> {
    let held = match TrustDomain::parse(&rel.trust_domain) {
        Ok(td) => held_bundle(ctx, &td).await.map_err(ds_status)?,
        Err(_) => None,
    };
    let next =
        refresh::state_of(rel, held.clone()).next_refresh(&refresh::policy(ctx), ctx.clock.now());
    let r = &rel.refresh;
    Ok(FederationInfo {
        trust_domain: rel.trust_domain.clone(),
        endpoint_url: rel.endpoint_url.clone(),
        profile: api_profile(rel.profile).into(),
        endpoint_spiffe_id: rel.endpoint_spiffe_id.clone().unwrap_or_default(),
        ca_file: rel.ca_file.clone().unwrap_or_default(),
        created_at: rel.created_at,
        updated_at: rel.updated_at,
        last_attempt_at: r.last_attempt_at.unwrap_or(0),
        last_success_at: r.last_success_at.unwrap_or(0),
        last_error: r.last_error.clone().unwrap_or_default(),
        failures: r.failures,
        sequence: held.as_ref().map_or(0, |b| b.sequence),
        roots: held
            .as_ref()
            .map(trustdeck_bundlefile::root_fingerprints)
            .unwrap_or_default(),
        next_refresh_at: next.timestamp(),
    })
}

async fn existing(ctx: &ServerCtx, td: &str) -> Result<FederationRelationship, Status> {
    ctx.ds
        .get_federation(td)
        .await
        .map_err(ds_status)?
        .ok_or_else(|| unknown(td))
}

fn unknown(td: &str) -> Status {
    refused(
        FederationRefusal::UnknownTrustDomain,
        format!("no federation relationship with {td:?}"),
    )
}

fn create_err(e: DatastoreError, td: &str) -> Status {
    match e {
        DatastoreError::AlreadyExists { .. } => refused(
            FederationRefusal::AlreadyExists,
            format!("a federation relationship with {td} exists; use `federation update`"),
        ),
        other => ds_status(other),
    }
}

/// `federation create`.
pub async fn create(
    ctx: &ServerCtx,
    op: &Operator,
    req: CreateFederationRequest,
) -> Result<FederationInfo, Status> {
    let audit = Audit {
        action: "federation.create".into(),
        target: req.trust_domain.clone(),
        detail: String::new(),
    };
    let rel = audited(ctx, op, audit, async |tx, audit| {
        let (rel, partner) = settings(ctx, &req)?;
        let held = held_bundle(ctx, partner.trust_domain()).await.map_err(ds_status)?;
        let boot = match (&held, req.bootstrap_bundle.is_empty()) {
            (Some(h), false) => {
                return Err(invalid(format!(
                    "a bundle of {} is held already (sequence {}); create without --bootstrap-bundle to start from it",
                    rel.trust_domain, h.sequence
                )));
            }
            (None, true) if rel.profile == Stored::HttpsSpiffe => {
                return Err(refused(
                    FederationRefusal::BootstrapRequired,
                    format!(
                        "https_spiffe checks the endpoint against {}'s bundle, and none is held: give --bootstrap-bundle",
                        rel.trust_domain
                    ),
                ));
            }
            (_, true) => None,
            (None, false) => Some(bootstrap(&partner, &req.bootstrap_bundle)?),
        };
        tx.create_federation(&rel).await.map_err(|e| create_err(e, &rel.trust_domain))?;
        store_bootstrap(tx, &rel, boot.as_ref()).await?;
        audit.detail = format!(
            "endpoint={} profile={} endpoint_id={} bootstrap_sequence={}",
            rel.endpoint_url,
            rel.profile,
            rel.endpoint_spiffe_id.as_deref().unwrap_or("-"),
            boot.as_ref().map_or("-".to_string(), |b| b.sequence.to_string())
        );
        Ok(rel)
    })
    .await?;
    info(ctx, &rel).await
}

async fn store_bootstrap(
    tx: &mut AuditedChange,
    rel: &FederationRelationship,
    boot: Option<&Bundle>,
) -> Result<(), Status> {
    let Some(b) = boot else { return Ok(()) };
    let rec = ForeignBundle {
        trust_domain: rel.trust_domain.clone(),
        document: b.to_json(),
        sequence: b.sequence,
        source: ForeignSource::Federation,
        updated_at: rel.created_at,
    };
    tx.put_foreign_bundle(&rec, None).await.map_err(ds_status)
}

/// `federation update`: every setting replaced; the refresh state and bundle are kept.
pub async fn update(
    ctx: &ServerCtx,
    op: &Operator,
    req: CreateFederationRequest,
) -> Result<FederationInfo, Status> {
    let audit = Audit {
        action: "federation.update".into(),
        target: req.trust_domain.clone(),
        detail: String::new(),
    };
    let rel = audited(ctx, op, audit, async |tx, audit| {
        if !req.bootstrap_bundle.is_empty() {
            return Err(invalid(
                "update takes no --bootstrap-bundle: the bundle held is kept (import a new one with `bundle import`)",
            ));
        }
        let old = existing(ctx, &req.trust_domain).await?;
        let (mut rel, _) = settings(ctx, &req)?;
        rel.created_at = old.created_at;
        rel.refresh = old.refresh;
        if !tx.update_federation(&rel).await.map_err(ds_status)? {
            return Err(unknown(&rel.trust_domain));
        }
        audit.detail = format!(
            "endpoint={} profile={} endpoint_id={}",
            rel.endpoint_url,
            rel.profile,
            rel.endpoint_spiffe_id.as_deref().unwrap_or("-")
        );
        Ok(rel)
    })
    .await?;
    info(ctx, &rel).await
}

/// `federation delete`: the relationship goes; the bundle held stays (see `bundle list`).
pub async fn delete(ctx: &ServerCtx, op: &Operator, td: &str) -> Result<FederationInfo, Status> {
    let audit = Audit {
        action: "federation.delete".into(),
        target: td.to_string(),
        detail: String::new(),
    };
    let rel = audited(ctx, op, audit, async |tx, _| {
        tx.delete_federation(td)
            .await
            .map_err(ds_status)?
            .ok_or_else(|| unknown(td))
    })
    .await?;
    info(ctx, &rel).await
}

/// `federation list`.
pub async fn list(ctx: &ServerCtx) -> Result<ListFederationsResponse, Status> {
    let mut federations = Vec::new();
    for rel in ctx.ds.list_federations().await.map_err(ds_status)? {
        federations.push(info(ctx, &rel).await?);
    }
    Ok(ListFederationsResponse { federations })
}

/// `federation show`.
pub async fn show(ctx: &ServerCtx, td: &str) -> Result<FederationInfo, Status> {
    info(ctx, &existing(ctx, td).await?).await
}

fn outcome(result: &Result<Accepted, FetchFailure>) -> (RefreshOutcome, FederationRefusal) {
    match result {
        Ok(Accepted::First(_)) => (RefreshOutcome::First, FederationRefusal::Unspecified),
        Ok(Accepted::Updated { .. }) => (RefreshOutcome::Updated, FederationRefusal::Unspecified),
        Ok(Accepted::Unchanged(_)) => (RefreshOutcome::Unchanged, FederationRefusal::Unspecified),
        Err(FetchFailure::Refused(r)) => (RefreshOutcome::Refused, api_refusal(r)),
        Err(_) => (RefreshOutcome::Failed, FederationRefusal::Unspecified),
    }
}

/// How long `federation refresh` waits for the refresher's fetch of the same trust domain
/// (longer than a fetch may take).
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `federation refresh`: one fetch now; its outcome is the answer (a refused or failed fetch
/// keeps the last good bundle and is recorded in the relationship). When the refresher or an
/// import stored a bundle meanwhile (a conflict), the fetch is made once more against it.
pub async fn refresh_now(
    ctx: &ServerCtx,
    op: &Operator,
    td: &str,
) -> Result<RefreshFederationResponse, Status> {
    // One fetch of a trust domain at a time: wait for the refresher's, if it is fetching.
    let waited = std::time::Instant::now();
    let _mark = loop {
        if let Some(mark) = ctx.fetches.start(td) {
            break mark;
        }
        if waited.elapsed() > IN_FLIGHT_WAIT {
            return Err(Status::unavailable(format!(
                "a refresh of {td} has been under way for {}s; try again",
                IN_FLIGHT_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let mut tries = 0;
    let a = loop {
        tries += 1;
        let rel = existing(ctx, td).await?;
        let a = refresh::attempt(ctx, &rel).await.map_err(ds_status)?;
        ctx.fetches.note(&a);
        let audit = Audit {
            action: refresh::REFRESH_ACTION.into(),
            target: td.to_string(),
            detail: a.detail(),
        };
        let stored = audited(ctx, op, audit, async |tx, _| {
            refresh::store(tx, &a).await.map_err(ds_status)
        })
        .await;
        match stored {
            Ok(()) => break a,
            // A conflict (another writer since the read; recorded as failed): once more.
            Err(s) if s.code() == tonic::Code::Aborted && tries < 2 => continue,
            Err(s) => return Err(s),
        }
    };
    let (outcome, refusal) = outcome(&a.result);
    let rel = existing(ctx, td).await?;
    Ok(RefreshFederationResponse {
        outcome: outcome.into(),
        refusal: refusal.into(),
        error: a
            .result
            .as_ref()
            .err()
            .map(|f| f.to_string())
            .unwrap_or_default(),
        previous_sequence: a.read.unwrap_or(0),
        sequence: a
            .result
            .as_ref()
            .map(|b| b.bundle().sequence)
            .unwrap_or(a.read.unwrap_or(0)),
        federation: Some(info(ctx, &rel).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::vocab::Vocabulary;
    use trustdeck_spiffe::SpiffeId;

    #[test]
    fn every_rule_has_its_own_wire_value() {
        let td = TrustDomain::parse("p.test").expect("td");
        let id = SpiffeId::parse("spiffe://p.test/x").expect("id");
        let all = [
            Refusal::NotABundle(Bundle::from_json(&td, b"nope").expect_err("not json")),
            Refusal::Empty {
                trust_domain: td.clone(),
            },
            Refusal::SequenceBackwards {
                trust_domain: td.clone(),
                held: 2,
                served: 1,
            },
            Refusal::SequenceReused {
                trust_domain: td.clone(),
                sequence: 1,
            },
            Refusal::ForeignAuthority {
                expected: td.clone(),
                found: TrustDomain::parse("q.test").expect("td"),
                index: 0,
            },
            Refusal::NotAnAuthority {
                index: 0,
                reason: "not a CA".into(),
            },
            Refusal::EndpointOutsideTrustDomain {
                trust_domain: td.clone(),
                endpoint_id: id.clone(),
            },
            Refusal::UnexpectedEndpointId {
                expected: id.clone(),
                presented: id,
            },
            Refusal::EndpointRootUnknown {
                trust_domain: td,
                missing: None,
            },
        ];
        let wire: std::collections::HashSet<_> = all.iter().map(api_refusal).collect();
        assert_eq!(wire.len(), all.len());
        assert!(!wire.contains(&FederationRefusal::Unspecified));
        // The rest are the server's own rules about the settings.
        assert_eq!(FederationRefusal::ALL.len(), all.len() + 6);
    }
}
