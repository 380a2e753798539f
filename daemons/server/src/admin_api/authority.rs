//! Authority operations on the admin API: `ShowAuthorities` for viewers, `Prepare`,
//! `Activate`, `Taint` and `Revoke` for operators. A done operation's audit record commits
//! with the CA change ([`CaManager::operate`]); a refused or failed one is recorded on its
//! own, and its status carries the rule ([`refusal_status`]). Each outcome is an event on the
//! `Watch` stream.

use chrono::{DateTime, Utc};
use tonic::{Code, Status};
use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_proto::admin::{
    AuthorityInfo, AuthorityKind, AuthorityRefusal, AuthorityRequest, AuthorityResponse,
    AuthorityStatus, KeyBackend, KeyProbe, KeyStorage, ShowAuthoritiesResponse,
};
use trustdeck_proto::node::KeyKind;
use trustdeck_proto::refusal::refusal_status;
use trustdeck_spiffe::bundle::Bundle;

use super::audit::{Audit, Operator, Outcome, log, record};
use crate::ca::operations::{AuthorityOp, OpRequest, kind_here};
use crate::ca::ops::OpError;
use crate::ca::taint::record_key_id;
use crate::ctx::ServerCtx;

/// The journal's kind for the API's; `None` for unspecified.
pub fn ca_kind(kind: AuthorityKind) -> Option<CaKind> {
    match kind {
        AuthorityKind::X509 => Some(CaKind::X509),
        AuthorityKind::Jwt => Some(CaKind::Jwt),
        AuthorityKind::Unspecified => None,
    }
}

pub(crate) fn api_kind(kind: CaKind) -> AuthorityKind {
    match kind {
        CaKind::X509 => AuthorityKind::X509,
        CaKind::Jwt => AuthorityKind::Jwt,
    }
}

fn key_kind(kind: CaKind) -> KeyKind {
    match kind {
        CaKind::X509 => KeyKind::X509,
        CaKind::Jwt => KeyKind::Jwt,
    }
}

pub(crate) fn api_status(s: CaStatus) -> AuthorityStatus {
    match s {
        CaStatus::Prepared => AuthorityStatus::Prepared,
        CaStatus::Active => AuthorityStatus::Active,
        CaStatus::Old => AuthorityStatus::Old,
        CaStatus::Tainted => AuthorityStatus::Tainted,
        CaStatus::Revoked => AuthorityStatus::Revoked,
    }
}

/// Where the key is, from the journal's `key_backend` (`memory`, `disk:…`, `pkcs11:…`).
pub(crate) fn key_storage(backend: &str) -> KeyStorage {
    let kind = backend.split(':').next().unwrap_or_default();
    let b = match kind {
        "memory" => KeyBackend::Memory,
        "disk" => KeyBackend::Disk,
        "pkcs11" => KeyBackend::Pkcs11,
        "tpm" => KeyBackend::Tpm,
        _ => KeyBackend::Unspecified,
    };
    KeyStorage {
        backend: b.into(),
        detail: backend.into(),
        ..Default::default()
    }
}

/// Who signed an X.509 authority and at which tier: its chain (own certificate first, the
/// upstream's chain after) says. A root is tier 0, signed by nobody.
fn signer(r: &CaJournalRecord) -> (String, u32) {
    let chain = r
        .certificate_chain_pem
        .as_deref()
        .and_then(|p| trustdeck_spiffe::pem::decode_certs(p).ok())
        .unwrap_or_default();
    if chain.len() < 2 {
        return (String::new(), 0);
    }
    let by = trustdeck_spiffe::x509::chain_key_ids(&chain)
        .ok()
        .and_then(|ids| ids.into_iter().next())
        .unwrap_or_default();
    (by, u32::try_from(chain.len() - 1).unwrap_or(u32::MAX))
}

fn in_bundle(r: &CaJournalRecord, bundle: &Bundle) -> bool {
    match r.kind {
        CaKind::X509 => r
            .certificate_chain_pem
            .as_deref()
            .and_then(|p| trustdeck_spiffe::pem::decode_certs(p).ok())
            .and_then(|c| c.into_iter().next())
            .is_some_and(|own| bundle.x509_authorities.contains(&own)),
        CaKind::Jwt => r
            .kid
            .as_ref()
            .is_some_and(|k| bundle.jwt_authorities.iter().any(|a| &a.key_id == k)),
    }
}

/// One journal record as `show` lists it.
pub fn authority_info(
    ctx: &ServerCtx,
    r: &CaJournalRecord,
    bundle: &Bundle,
    now: DateTime<Utc>,
) -> AuthorityInfo {
    let id = record_key_id(r);
    let (signed_by, tier) = match r.kind {
        CaKind::X509 => signer(r),
        CaKind::Jwt => (String::new(), 0),
    };
    AuthorityInfo {
        kind: api_kind(r.kind).into(),
        live_svids: ctx.census.live_chaining_to(key_kind(r.kind), &id, now),
        id,
        status: api_status(r.status).into(),
        not_before: r.not_before,
        not_after: r.not_after,
        key_storage: Some(key_storage(&r.key_backend)),
        signed_by,
        tier,
        in_bundle: in_bundle(r, bundle),
    }
}

/// Every authority of `kind` (both kinds when unspecified) this server holds.
pub fn show(ctx: &ServerCtx, kind: AuthorityKind) -> Result<ShowAuthoritiesResponse, Status> {
    let want = ca_kind(kind);
    if let Some(k) = want {
        kind_here(k, ctx.ca.is_downstream()).map_err(|r| refusal_status(r.refusal, r.message))?;
    }
    let st = ctx.ca.snapshot();
    let now = ctx.clock.now();
    // In the datastore's order (creation time, then id), so that a listing is the same
    // before and after a restart (the journal in memory is in insertion order).
    let mut records: Vec<&CaJournalRecord> = st
        .journal
        .iter()
        .filter(|r| want.is_none_or(|k| r.kind == k))
        .collect();
    records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(ShowAuthoritiesResponse {
        authorities: records
            .into_iter()
            .map(|r| authority_info(ctx, r, &st.bundle, now))
            .collect(),
        bundle_sequence: st.bundle.sequence,
    })
}

/// How long after its start a server's census may still miss reporters: agents report with
/// every sync (every 0.5 s by default, longer while they back off after losing the server),
/// downstreams with every bundle fetch. Until then a revoke that finds nothing chaining to
/// the authority is refused (`CensusIncomplete`) unless forced.
pub const CENSUS_WARMUP: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs an operation for an operator (`actor`), audits and publishes its outcome.
/// `slots`: the server's probe slots (an activation probes the prepared key first).
pub async fn operate(
    ctx: &ServerCtx,
    slots: &super::probe::ProbeSlots,
    caller: &Operator,
    op: AuthorityOp,
    req: AuthorityRequest,
) -> Result<AuthorityResponse, Status> {
    let kind = req.kind();
    let mut audit = Audit {
        action: format!("authority.{}.{}", kind, op.as_str()),
        target: req.id.clone(),
        detail: if req.force {
            "forced".into()
        } else {
            String::new()
        },
    };
    let actor = caller.actor.as_str();
    let result = run(ctx, slots, caller, op, &req, &mut audit).await;
    if let Err(status) = &result {
        let rec = record(
            ctx.clock.as_ref(),
            actor,
            &caller.note(&audit),
            &Outcome::Failed(status.message().into()),
        );
        if let Err(e) = ctx.ds.append_audit(&rec).await {
            tracing::error!(error = %e, action = %audit.action, "could not record a failed authority operation");
        }
        log(&rec);
    }
    result
}

/// Before an activation: the prepared key `id` signs (a token lost since `prepare` would
/// leave the trust domain with an active authority that cannot sign). Anything else is left to
/// the operation's rules.
async fn prepared_key_answers(
    ctx: &ServerCtx,
    slots: &super::probe::ProbeSlots,
    kind: CaKind,
    id: &str,
) -> Result<(), Status> {
    let st = ctx.ca.snapshot();
    let Some(r) = st
        .journal
        .iter()
        .find(|r| r.kind == kind && r.status == CaStatus::Prepared && record_key_id(r) == id)
    else {
        return Ok(());
    };
    let p =
        super::probe::probe_one(slots, ctx.ca.key_manager(), r, super::probe::PROBE_TIMEOUT).await;
    if p.probe() == KeyProbe::Ok {
        return Ok(());
    }
    Err(refusal_status(
        AuthorityRefusal::KeyUnreachable,
        format!(
            "the prepared {kind} authority {id} does not answer ({}: {}); nothing changed: \
             bring its token back (restart the server if its PKCS#11 library does not see the \
             token again; ProbeKeys tells when the key answers), then activate",
            p.probe().as_str_name(),
            p.detail
        ),
    ))
}

async fn run(
    ctx: &ServerCtx,
    slots: &super::probe::ProbeSlots,
    caller: &Operator,
    op: AuthorityOp,
    req: &AuthorityRequest,
    audit: &mut Audit,
) -> Result<AuthorityResponse, Status> {
    let kind = ca_kind(req.kind()).ok_or_else(|| {
        Status::invalid_argument("kind required: x509 or jwt (AUTHORITY_KIND_UNSPECIFIED)")
    })?;
    let op_req = OpRequest {
        kind,
        op,
        id: req.id.clone(),
        force: req.force,
        census_complete: ctx.origin.elapsed() >= CENSUS_WARMUP,
        step: caller.step.clone(),
    };
    if op == AuthorityOp::Activate {
        prepared_key_answers(ctx, slots, kind, &req.id).await?;
    }
    let actor = caller.actor.as_str();
    let now = ctx.clock.now();
    let kk = key_kind(kind);
    let live = |id: &str| ctx.census.live_chaining_to(kk, id, now);
    let done = ctx
        .ca
        .operate(&op_req, actor, &live, now)
        .await
        .map_err(|e| match e {
            OpError::Refused(r) => refusal_status(r.refusal, r.message),
            OpError::Failed(e) => Status::new(Code::Unavailable, e.to_string()),
        })?;
    // The record committed with the change; tell the log and the stream.
    let id = record_key_id(&done.record);
    audit.target = id;
    log(&record(
        ctx.clock.as_ref(),
        actor,
        &caller.note(audit),
        &Outcome::Ok,
    ));
    for e in done.events {
        tracing::info!(kind = %e.kind, "{}", e.message);
        ctx.hub
            .event(e.severity(), e.kind, e.message, &e.node_id, now);
    }
    let st = ctx.ca.snapshot();
    Ok(AuthorityResponse {
        authority: Some(authority_info(ctx, &done.record, &st.bundle, now)),
        bundle_sequence: done.sequence.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_storage_is_read_from_the_journal() {
        let s = key_storage("pkcs11:token=t;label=l");
        assert_eq!(s.backend_wire(), KeyBackend::Pkcs11);
        assert_eq!(s.detail, "pkcs11:token=t;label=l");
        assert_eq!(key_storage("disk:/x").backend_wire(), KeyBackend::Disk);
        assert_eq!(key_storage("memory").backend_wire(), KeyBackend::Memory);
        assert_eq!(key_storage("?").backend_wire(), KeyBackend::Unspecified);
    }

    #[test]
    fn kinds_map_both_ways() {
        assert_eq!(ca_kind(AuthorityKind::Unspecified), None);
        for k in [CaKind::X509, CaKind::Jwt] {
            assert_eq!(ca_kind(api_kind(k)), Some(k));
        }
    }
}
