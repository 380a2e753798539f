//! Refreshing partners' bundles: for each federation relationship, at
//! [`PartnerState::next_refresh`] (the partner bundle's refresh hint, SPIRE's rule), fetch
//! its bundle ([`fetch_bundle`]); an accepted one is stored as the trust domain's foreign
//! bundle (source `federation`) at the sequence read, so a concurrent import or refresh is a
//! conflict, not an overwrite. A refused or failed fetch keeps the last good bundle and
//! records the error, the failure count and the attempt time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use trustdeck_datastore::{
    AuditedChange, DatastoreError, FederationProfile, FederationRelationship, ForeignBundle,
    ForeignSource, RefreshState,
};
use trustdeck_federation::{
    Accepted, EndpointProfile, FetchFailure, Partner, PartnerState, RefreshPolicy, Refusal,
};
use trustdeck_spiffe::{Bundle, SpiffeId, TrustDomain};

use super::fetch::{Endpoint, fetch_bundle};
use crate::admin_api::audit::{Audit, Outcome, record};
use crate::ctx::ServerCtx;

/// The audit action of a refresh that stored a bundle.
pub const REFRESH_ACTION: &str = "federation.refresh";

/// Why a relationship's settings cannot be used as they are stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("trust domain {0:?}: {1}")]
    TrustDomain(String, String),
    #[error("endpoint SPIFFE ID {0:?}: {1}")]
    EndpointId(String, String),
    #[error("https_spiffe needs an endpoint SPIFFE ID")]
    NoEndpointId,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The rules' view of `rel`.
pub fn partner_of(rel: &FederationRelationship) -> Result<Partner, Unusable> {
    let td = TrustDomain::parse(&rel.trust_domain)
        .map_err(|e| Unusable::TrustDomain(rel.trust_domain.clone(), e.to_string()))?;
    let profile = match rel.profile {
        FederationProfile::HttpsWeb => EndpointProfile::HttpsWeb,
        FederationProfile::HttpsSpiffe => {
            let id = rel
                .endpoint_spiffe_id
                .as_deref()
                .ok_or(Unusable::NoEndpointId)?;
            let endpoint_id = SpiffeId::parse(id)
                .map_err(|e| Unusable::EndpointId(id.to_string(), e.to_string()))?;
            EndpointProfile::HttpsSpiffe { endpoint_id }
        }
    };
    Ok(Partner::new(td, profile)?)
}

/// The bundle held for `td` with its stored sequence, if any (a stored document that no
/// longer parses counts as none, so a fetch can replace it).
pub async fn held_bundle(
    ctx: &ServerCtx,
    td: &TrustDomain,
) -> Result<Option<Bundle>, DatastoreError> {
    let Some(rec) = ctx.ds.get_foreign_bundle(td.as_str()).await? else {
        return Ok(None);
    };
    Ok(Bundle::from_json(td, rec.document.as_bytes())
        .ok()
        .map(|mut b| {
            b.sequence = rec.sequence;
            b
        }))
}

/// What is known of `rel` for the rules: the bundle held and how the last fetches went.
pub fn state_of(rel: &FederationRelationship, held: Option<Bundle>) -> PartnerState {
    let at = |t: Option<i64>| t.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    PartnerState {
        last_good: held,
        last_success: at(rel.refresh.last_success_at),
        last_attempt: at(rel.refresh.last_attempt_at),
        consecutive_failures: rel.refresh.failures,
        ..PartnerState::default()
    }
}

/// The schedule's knobs, from the config.
pub fn policy(ctx: &ServerCtx) -> RefreshPolicy {
    RefreshPolicy {
        minimum: ctx.config.federation_refresh_minimum,
        ..RefreshPolicy::default()
    }
}

/// One fetch, before anything is stored.
#[derive(Debug)]
pub struct Attempt {
    pub trust_domain: String,
    /// The sequence of the bundle held when the fetch began (`None`: none held).
    pub read: Option<u64>,
    pub result: Result<Accepted, FetchFailure>,
    /// The chain an `https_spiffe` endpoint presented, when it got that far.
    pub presented_chain: Option<Vec<Vec<u8>>>,
    pub at: DateTime<Utc>,
    /// The refresh state before.
    pub before: RefreshState,
}

impl Attempt {
    /// The refresh state after it.
    pub fn state(&self) -> RefreshState {
        let at = Some(self.at.timestamp());
        match &self.result {
            Ok(_) => RefreshState {
                last_attempt_at: at,
                last_success_at: at,
                last_error: None,
                failures: 0,
            },
            Err(f) => RefreshState {
                last_attempt_at: at,
                last_success_at: self.before.last_success_at,
                last_error: Some(f.to_string()),
                failures: self.before.failures.saturating_add(1),
            },
        }
    }

    /// The bundle to store: an accepted one that differs from the one held.
    pub fn to_store(&self) -> Option<ForeignBundle> {
        match &self.result {
            Ok(Accepted::Unchanged(_)) | Err(_) => None,
            Ok(a) => Some(ForeignBundle {
                trust_domain: self.trust_domain.clone(),
                document: a.bundle().to_json(),
                sequence: a.bundle().sequence,
                source: ForeignSource::Federation,
                updated_at: self.at.timestamp(),
            }),
        }
    }

    /// The audit detail of a stored refresh.
    pub fn detail(&self) -> String {
        match &self.result {
            Ok(a) => format!(
                "sequence={} previous={} roots={:?}",
                a.bundle().sequence,
                self.read.unwrap_or(0),
                trustdeck_bundlefile::root_fingerprints(a.bundle())
            ),
            Err(f) => format!("failed: {f}"),
        }
    }
}

/// Fetches `rel`'s bundle now; an unusable relationship is a failed attempt.
pub async fn attempt(
    ctx: &ServerCtx,
    rel: &FederationRelationship,
) -> Result<Attempt, DatastoreError> {
    let partner = partner_of(rel);
    let (read, result, presented_chain) = match partner {
        Err(e) => {
            let failure = match e {
                Unusable::Refused(r) => FetchFailure::Refused(r),
                other => FetchFailure::Transport {
                    kind: trustdeck_federation::TransportKind::Setup,
                    detail: other.to_string(),
                },
            };
            (None, Err(failure), None)
        }
        Ok(partner) => {
            let held = held_bundle(ctx, partner.trust_domain()).await?;
            let read = held.as_ref().map(|b| b.sequence);
            let state = state_of(rel, held);
            let endpoint = Endpoint {
                ca_file: rel.ca_file.as_ref().map(PathBuf::from),
                ..Endpoint::new(rel.endpoint_url.clone())
            };
            let fetched = fetch_bundle(&partner, &endpoint, &state).await;
            (read, fetched.result, fetched.presented_chain)
        }
    };
    Ok(Attempt {
        trust_domain: rel.trust_domain.clone(),
        read,
        result,
        presented_chain,
        at: ctx.clock.now(),
        before: rel.refresh.clone(),
    })
}

/// Stores what `a` brought with the change `tx`: the bundle (at the sequence read) and the
/// refresh state. A conflict (another writer since the read) stores nothing.
pub async fn store(tx: &mut AuditedChange, a: &Attempt) -> Result<(), DatastoreError> {
    // The relationship first: one deleted while its fetch was under way stores nothing.
    if !tx
        .record_federation_refresh(&a.trust_domain, &a.state())
        .await?
    {
        return Err(DatastoreError::Conflict {
            what: format!(
                "the federation relationship of {} was deleted during its refresh; nothing stored",
                a.trust_domain
            ),
        });
    }
    if let Some(rec) = a.to_store() {
        tx.put_foreign_bundle(&rec, a.read).await?;
    }
    Ok(())
}

/// Records `a` on the server's own account: a stored bundle with an audit record, the rest
/// (an unchanged bundle, a failure) as refresh state only.
async fn record_attempt(ctx: &ServerCtx, a: &Attempt) -> Result<(), DatastoreError> {
    if a.to_store().is_none() {
        ctx.ds
            .record_federation_refresh(&a.trust_domain, &a.state())
            .await?;
        return Ok(());
    }
    let mut tx = ctx.ds.begin_audited().await?;
    store(&mut tx, a).await?;
    let audit = Audit {
        action: REFRESH_ACTION.into(),
        target: a.trust_domain.clone(),
        detail: a.detail(),
    };
    let rec = record(
        ctx.clock.as_ref(),
        ctx.server_id.as_str(),
        &audit,
        &Outcome::Ok,
    );
    tx.commit(&rec).await
}

/// When `rel` is due next.
pub async fn next_refresh(
    ctx: &ServerCtx,
    rel: &FederationRelationship,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, DatastoreError> {
    let held = match TrustDomain::parse(&rel.trust_domain) {
        Ok(td) => held_bundle(ctx, &td).await?,
        Err(_) => None,
    };
    Ok(state_of(rel, held).next_refresh(&policy(ctx), now))
}

/// Most partners fetched at once.
pub const PARALLEL_FETCHES: usize = 8;

/// One round: every relationship that is due and not being fetched already is fetched and
/// recorded, each in a task of its own in `tasks` (at most [`PARALLEL_FETCHES`] at once), so
/// a partner that stalls until the fetch timeout delays no other.
async fn round(
    ctx: &Arc<ServerCtx>,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
) -> Result<(), DatastoreError> {
    for rel in ctx.ds.list_federations().await? {
        let now = ctx.clock.now();
        if next_refresh(ctx, &rel, now).await? > now {
            continue;
        }
        let Some(mark) = ctx.fetches.start(&rel.trust_domain) else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            return Ok(());
        };
        let ctx = ctx.clone();
        tasks.spawn(async move {
            refresh_one(&ctx, &rel.trust_domain).await;
            drop((slot, mark));
        });
    }
    Ok(())
}

/// Fetches `td`'s bundle as its relationship stands now (read again: the round's copy may be
/// older than a fetch that just ended), records the attempt and publishes what is held.
async fn refresh_one(ctx: &ServerCtx, td: &str) {
    let rel = match ctx.ds.get_federation(td).await {
        Ok(Some(rel)) => rel,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(trust_domain = %td, error = %e, "federation refresh not attempted");
            return;
        }
    };
    let rel = &rel;
    let a = match attempt(ctx, rel).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(trust_domain = %rel.trust_domain, error = %e, "federation refresh not attempted");
            return;
        }
    };
    if let Err(f) = &a.result {
        tracing::warn!(trust_domain = %rel.trust_domain, error = %f, "federation refresh failed; the last good bundle is kept");
    }
    if let Err(e) = record_attempt(ctx, &a).await {
        tracing::warn!(trust_domain = %rel.trust_domain, error = %e, "federation refresh not recorded");
    }
    ctx.fetches.note(&a);
    super::publish::publish(ctx).await;
}

/// Refreshes every partner when due, until shutdown (checked every second). What is held
/// is published at the start and every [`super::publish::EVERY_ROUNDS`] rounds besides every
/// attempt (another server on the datastore, or time, may have changed it).
pub async fn run(ctx: Arc<ServerCtx>, mut shutdown: watch::Receiver<bool>) {
    let mut rounds: u32 = 0;
    let slots = Arc::new(Semaphore::new(PARALLEL_FETCHES));
    let mut tasks = JoinSet::new();
    loop {
        if rounds.is_multiple_of(super::publish::EVERY_ROUNDS) {
            super::publish::publish(&ctx).await;
        }
        rounds = rounds.wrapping_add(1);
        let stop = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => true,
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        };
        if stop {
            // No fetch outlives the server.
            tasks.shutdown().await;
            return;
        }
        while tasks.try_join_next().is_some() {}
        if let Err(e) = round(&ctx, &slots, &mut tasks).await {
            tracing::warn!(error = %e, "federation refresh round failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(result: Result<Accepted, FetchFailure>) -> Attempt {
        Attempt {
            trust_domain: "p.test".into(),
            read: Some(3),
            result,
            presented_chain: None,
            at: DateTime::<Utc>::from_timestamp(1_000, 0).expect("time"),
            before: RefreshState {
                last_attempt_at: Some(900),
                last_success_at: Some(800),
                last_error: Some("earlier".into()),
                failures: 2,
            },
        }
    }

    fn bundle(sequence: u64) -> Bundle {
        let mut b = Bundle::new(TrustDomain::parse("p.test").expect("td"));
        b.sequence = sequence;
        b
    }

    #[test]
    fn a_failure_keeps_the_last_success_and_counts() {
        let a = attempt(Err(FetchFailure::Transport {
            kind: trustdeck_federation::TransportKind::Connect,
            detail: "refused".into(),
        }));
        assert_eq!(
            a.state(),
            RefreshState {
                last_attempt_at: Some(1_000),
                last_success_at: Some(800),
                last_error: Some("refused".into()),
                failures: 3,
            }
        );
        assert_eq!(a.to_store(), None, "the last good bundle is kept");
    }

    #[test]
    fn a_success_resets_and_stores_only_a_change() {
        let a = attempt(Ok(Accepted::Updated {
            bundle: bundle(4),
            previous_sequence: 3,
            added_roots: 1,
            removed_roots: 0,
        }));
        assert_eq!(
            a.state(),
            RefreshState {
                last_attempt_at: Some(1_000),
                last_success_at: Some(1_000),
                last_error: None,
                failures: 0,
            }
        );
        let stored = a.to_store().expect("stored");
        assert_eq!(
            (stored.sequence, stored.source, stored.updated_at),
            (4, ForeignSource::Federation, 1_000)
        );
        assert_eq!(attempt(Ok(Accepted::Unchanged(bundle(3)))).to_store(), None);
    }
}
