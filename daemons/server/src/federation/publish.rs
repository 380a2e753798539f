//! What the admin `Watch` stream tells of other trust domains: every foreign trust domain the
//! server holds a bundle of or has a relationship with (source, profile, endpoint, sequence,
//! last success, root expiries, failures with their typed reason, next refresh, warnings),
//! and which sequence of our bundle each isolated peer acknowledged. Published whole
//! ([`trustdeck_topology::Hub::set_federation`], a delta only when it changed) after every
//! refresh attempt, import, relationship change and receipt, and every few refresher rounds.
//!
//! The datastore keeps a failure only as text; the typed reason and the chain the endpoint
//! presented (for "the partner signs with a root we lack") are kept in memory
//! ([`Fetches`]), so after a restart a failure reads `NOT_KNOWN` until the next attempt.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use trustdeck_datastore::{
    BundleReceipt, DatastoreError, FederationRelationship, ForeignBundle, ForeignSource,
};
use trustdeck_federation::{
    FetchFailure, PartnerState, RefreshPolicy, TransportKind, Warning, refresh_interval,
};
use trustdeck_proto::admin::{
    FederationRefusal, FetchFailureKind, ForeignBundleSource, ForeignTrustDomain, FreshnessWarning,
    PeerReceipt,
};
use trustdeck_spiffe::{Bundle, TrustDomain};

use super::refresh::{Attempt, policy, state_of};
use crate::admin_api::bundles::api_source;
use crate::admin_api::federation::{api_profile, api_refusal};
use crate::ctx::ServerCtx;

/// The refresher publishes every this many rounds (seconds) even when nothing was fetched.
pub const EVERY_ROUNDS: u32 = 10;

/// What the last fetch of a trust domain told beyond what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastFetch {
    /// Why it failed (`None`: it succeeded).
    pub failure: Option<FetchFailure>,
    /// When the failures in a row began.
    pub failing_since: Option<DateTime<Utc>>,
    /// The chain the endpoint last presented.
    pub presented_chain: Option<Vec<Vec<u8>>>,
}

/// The last fetch of each trust domain, in memory; and the turn to publish (admin calls and
/// the refresher both publish, one at a time, so an older build never replaces a newer one).
#[derive(Debug, Default)]
pub struct Fetches {
    last: Mutex<HashMap<String, LastFetch>>,
    publishing: tokio::sync::Mutex<()>,
    /// The trust domains being fetched by the refresher now.
    in_flight: std::sync::Arc<Mutex<std::collections::HashSet<String>>>,
}

/// A trust domain marked as being fetched; dropping it clears the mark.
pub struct InFlight {
    set: std::sync::Arc<Mutex<std::collections::HashSet<String>>>,
    td: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.td);
    }
}

impl Fetches {
    /// Marks `td` as being fetched, unless a fetch of it is under way already.
    pub fn start(&self, td: &str) -> Option<InFlight> {
        let mut f = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        f.insert(td.to_string()).then(|| InFlight {
            set: self.in_flight.clone(),
            td: td.to_string(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LastFetch>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops what is known of `td`'s fetches (its relationship was deleted).
    pub fn forget(&self, td: &str) {
        self.lock().remove(td);
    }

    /// Takes in an attempt.
    pub fn note(&self, a: &Attempt) {
        let mut m = self.lock();
        let last = m.entry(a.trust_domain.clone()).or_default();
        if a.presented_chain.is_some() {
            last.presented_chain = a.presented_chain.clone();
        }
        match &a.result {
            Ok(_) => {
                last.failure = None;
                last.failing_since = None;
            }
            Err(f) => {
                last.failure = Some(f.clone());
                last.failing_since.get_or_insert(a.at);
            }
        }
    }

    /// What is known of `td`'s last fetch.
    pub fn get(&self, td: &str) -> Option<LastFetch> {
        self.lock().get(td).cloned()
    }
}

/// The typed reason of a failure: its kind, the refusal and the HTTP status when it has them.
pub fn failure_kind(f: &FetchFailure) -> (FetchFailureKind, FederationRefusal, u32) {
    match f {
        FetchFailure::Refused(r) => (FetchFailureKind::Refused, api_refusal(r), 0),
        FetchFailure::Transport { kind, .. } => {
            let k = match kind {
                TransportKind::Connect => FetchFailureKind::Connect,
                TransportKind::Timeout => FetchFailureKind::Timeout,
                TransportKind::Tls => FetchFailureKind::Tls,
                TransportKind::HttpStatus(_) => FetchFailureKind::HttpStatus,
                TransportKind::TooLarge => FetchFailureKind::TooLarge,
                TransportKind::Malformed => FetchFailureKind::Malformed,
                TransportKind::Setup => FetchFailureKind::Setup,
                _ => FetchFailureKind::Unspecified,
            };
            let status = match kind {
                TransportKind::HttpStatus(s) => u32::from(*s),
                _ => 0,
            };
            (k, FederationRefusal::Unspecified, status)
        }
        _ => (
            FetchFailureKind::Unspecified,
            FederationRefusal::Unspecified,
            0,
        ),
    }
}

/// A stored bundle, parsed, at its stored sequence.
fn parsed(rec: &ForeignBundle) -> Option<Bundle> {
    let td = TrustDomain::parse(&rec.trust_domain).ok()?;
    let mut b = Bundle::from_json(&td, rec.document.as_bytes()).ok()?;
    b.sequence = rec.sequence;
    Some(b)
}

/// The earliest and latest notAfter among a bundle's X.509 roots (0: none readable).
fn root_expiries(b: &Bundle) -> (i64, i64) {
    let ends: Vec<i64> = b
        .x509_authorities
        .iter()
        .filter_map(|der| trustdeck_spiffe::x509::cert_validity(der).ok())
        .map(|(_, na)| na.timestamp())
        .collect();
    (
        ends.iter().copied().min().unwrap_or(0),
        ends.iter().copied().max().unwrap_or(0),
    )
}

fn secs(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(0, |t| t.timestamp())
}

/// One foreign trust domain: its relationship (when federated), its stored bundle and the
/// last fetch, at `now`.
pub fn foreign_trust_domain(
    td: &str,
    rel: Option<&FederationRelationship>,
    stored: Option<&ForeignBundle>,
    last: Option<&LastFetch>,
    policy: &RefreshPolicy,
    now: DateTime<Utc>,
) -> ForeignTrustDomain {
    let held = stored.and_then(parsed);
    let (earliest, latest) = held.as_ref().map_or((0, 0), root_expiries);
    let mut out = ForeignTrustDomain {
        trust_domain: td.to_string(),
        sequence: stored.map_or(0, |s| s.sequence),
        has_bundle: stored.is_some(),
        earliest_root_expiry: earliest,
        latest_root_expiry: latest,
        ..Default::default()
    };
    let Some(rel) = rel else {
        out.source =
            stored.map_or(ForeignBundleSource::Unspecified, |s| api_source(s.source)) as i32;
        out.last_success_at = stored.map_or(0, |s| s.updated_at);
        if stored.is_some_and(|s| s.source == ForeignSource::Federation) {
            out.warnings.push(FreshnessWarning::NoRelationship as i32);
        }
        return out;
    };
    let mut state: PartnerState = state_of(rel, held.clone());
    if rel.refresh.failures > 0 {
        let since = last.and_then(|l| l.failing_since);
        state.failing_since = since.or(state.last_attempt);
    }
    state.presented_chain = last.and_then(|l| l.presented_chain.clone());
    let fresh = state.freshness(policy, now);
    out.source = ForeignBundleSource::Federation as i32;
    out.profile = api_profile(rel.profile) as i32;
    out.endpoint_url = rel.endpoint_url.clone();
    out.from_bootstrap = stored.is_some() && rel.refresh.last_success_at.is_none();
    out.last_success_at = secs(fresh.last_success);
    out.consecutive_failures = fresh.consecutive_failures;
    out.failing_since = if fresh.consecutive_failures > 0 {
        secs(state.failing_since)
    } else {
        0
    };
    if fresh.consecutive_failures > 0 {
        let (kind, refusal, status) = match last.and_then(|l| l.failure.as_ref()) {
            Some(f) => failure_kind(f),
            None => (
                FetchFailureKind::NotKnown,
                FederationRefusal::Unspecified,
                0,
            ),
        };
        out.last_failure = kind as i32;
        out.last_refusal = refusal as i32;
        out.last_http_status = status;
        out.last_error = rel.refresh.last_error.clone().unwrap_or_default();
    }
    out.next_refresh_at = fresh.next_refresh.timestamp();
    out.refresh_interval_seconds = refresh_interval(held.as_ref(), policy).every.num_seconds();
    for w in &fresh.warnings {
        match w {
            Warning::MissingSigningRoot(m) => {
                out.warnings
                    .push(FreshnessWarning::MissingSigningRoot as i32);
                out.missing_root_issuer = m.issuer.clone();
            }
            Warning::RefreshesFailing { .. } => {
                out.warnings.push(FreshnessWarning::RefreshesFailing as i32);
            }
            _ => {}
        }
    }
    out
}

/// Every foreign trust domain (by name) and every receipt, from what is stored.
pub fn federation(
    rels: &[FederationRelationship],
    bundles: &[ForeignBundle],
    receipts: &[BundleReceipt],
    own_sequence: u64,
    last: impl Fn(&str) -> Option<LastFetch>,
    policy: &RefreshPolicy,
    now: DateTime<Utc>,
) -> trustdeck_proto::admin::Federation {
    let mut names: Vec<&str> = rels
        .iter()
        .map(|r| r.trust_domain.as_str())
        .chain(bundles.iter().map(|b| b.trust_domain.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let trust_domains = names
        .into_iter()
        .map(|td| {
            let rel = rels.iter().find(|r| r.trust_domain == td);
            let stored = bundles.iter().find(|b| b.trust_domain == td);
            foreign_trust_domain(td, rel, stored, last(td).as_ref(), policy, now)
        })
        .collect();
    let mut receipts: Vec<PeerReceipt> = receipts
        .iter()
        .map(|r| PeerReceipt {
            peer_trust_domain: r.peer_trust_domain.clone(),
            sequence: r.sequence,
            received_at: r.received_at,
        })
        .collect();
    receipts.sort_by(|a, b| a.peer_trust_domain.cmp(&b.peer_trust_domain));
    trustdeck_proto::admin::Federation {
        trust_domains,
        receipts,
        own_sequence,
    }
}

async fn build(ctx: &ServerCtx) -> Result<trustdeck_proto::admin::Federation, DatastoreError> {
    let rels = ctx.ds.list_federations().await?;
    let bundles = ctx.ds.list_foreign_bundles().await?;
    let receipts = ctx.ds.list_bundle_receipts().await?;
    Ok(federation(
        &rels,
        &bundles,
        &receipts,
        ctx.ca.bundle().sequence,
        |td| ctx.fetches.get(td),
        &policy(ctx),
        ctx.clock.now(),
    ))
}

/// Publishes our bundle's current sequence with what was last published (a CA change moves
/// it without any federation event). Skipped while a publish is under way (it would be
/// overwritten, or overwrite a newer one): the next publish reads the sequence anyway.
pub fn own_sequence(ctx: &ServerCtx, now: DateTime<Utc>) {
    let Ok(_turn) = ctx.fetches.publishing.try_lock() else {
        return;
    };
    if let Some(mut f) = ctx.hub.federation() {
        f.own_sequence = ctx.ca.bundle().sequence;
        ctx.hub.set_federation(f, now);
    }
}

/// Publishes what is held now on the hub (a delta only when it changed); a datastore error is
/// logged and the last published state stays.
pub async fn publish(ctx: &ServerCtx) {
    let _turn = ctx.fetches.publishing.lock().await;
    match build(ctx).await {
        Ok(f) => {
            ctx.hub.set_federation(f, ctx.clock.now());
        }
        Err(e) => tracing::warn!(error = %e, "foreign trust domains not published; will retry"),
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
