//! The background loops of a running server, each ending at shutdown: CA rotation (with the
//! server's own TLS identity), agents for the admin stream and, on a downstream server, the
//! upstream's connectivity and bundle, and signed checkpoints of the audit chain.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;
use trustdeck_datastore::chain::{Checkpoint, checkpoint_bytes};
use trustdeck_datastore::{Datastore, DatastoreError};
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::EventKind;
use trustdeck_topology::Hub;
use trustdeck_topology::hub::Severity;

use super::tls::OwnTls;
use super::{AGENT_PUBLISH_INTERVAL, Stopped};
use crate::ca::CaEvent;
use crate::ca::owner::{LEASE, RENEW_EVERY};
use crate::ca::upstream_taint::RetryBackoff;
use crate::ctx::ServerCtx;
use crate::observe::CaBuiltFrom;
use crate::upstream::Upstream;

/// How often a downstream server polls its upstream's bundle unless configured.
const DEFAULT_BUNDLE_POLL: Duration = Duration::from_millis(250);

/// Logs CA events and publishes them on the admin stream.
pub(super) fn report_ca_events(hub: &Hub, events: Vec<CaEvent>, now: DateTime<Utc>) {
    for e in events {
        let severity = e.severity();
        match severity {
            Severity::Error => tracing::error!(kind = %e.kind, "{}", e.message),
            Severity::Warning => tracing::warn!(kind = %e.kind, "{}", e.message),
            _ => tracing::info!(kind = %e.kind, "{}", e.message),
        }
        hub.event(severity, e.kind, e.message, &e.node_id, now);
    }
}

/// Publishes the CA and the agents on the admin stream before serving; returns what the CA
/// nodes were built from, for the rotation loop.
pub(super) async fn publish_initial(ctx: &ServerCtx) -> CaBuiltFrom {
    let mut ca_published = None;
    crate::observe::publish_ca(ctx, &mut ca_published, ctx.clock.now());
    if let Err(e) = crate::observe::publish_agents(ctx, ctx.clock.now()).await {
        tracing::warn!(error = %e, "could not list agents for the admin stream");
    }
    ca_published
}

/// Spawns every background loop.
pub(super) fn spawn_all(
    ctx: &Arc<ServerCtx>,
    tls: OwnTls,
    ca_published: CaBuiltFrom,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(rotation(ctx.clone(), tls, ca_published, shutdown.clone()));
    tasks.spawn(agents(ctx.clone(), shutdown.clone()));
    tasks.spawn(audit_checkpoints(ctx.clone(), shutdown.clone()));
    tasks.spawn(namespace_findings(ctx.clone(), shutdown.clone()));
    if let Some(up) = ctx.upstream.clone() {
        tasks.spawn(upstream_status(ctx.clone(), up.clone(), shutdown.clone()));
        tasks.spawn(upstream_bundle(ctx.clone(), up, shutdown.clone()));
    }
}

/// The namespace finding: every few seconds, the census's X.509-SVIDs against the
/// namespaces of the intermediates this server signed; each violation once, as a warning
/// event (counted in `Health`).
async fn namespace_findings(ctx: Arc<ServerCtx>, mut shutdown: watch::Receiver<bool>) {
    while tick(Duration::from_secs(2), &mut shutdown).await {
        let now = ctx.clock.now();
        let mut live = Vec::new();
        ctx.census.each_live(now, |reporter, s| {
            live.push((reporter.to_string(), s.clone()))
        });
        let found = ctx
            .findings
            .new_violations(live.iter().map(|(r, s)| (r.as_str(), s)));
        for v in found {
            tracing::warn!(reporter = %v.reporter, spiffe_id = %v.spiffe_id, issuer = %v.issuer_key_id, "X.509-SVID outside the namespace of the intermediate that signed it");
            ctx.hub.event(
                trustdeck_topology::hub::Severity::Warning,
                trustdeck_proto::admin::EventKind::NamespaceViolation,
                format!(
                    "{} reported {}, signed by intermediate {} whose namespaces are {}",
                    v.reporter,
                    v.spiffe_id,
                    v.issuer_key_id,
                    v.namespaces.join(", ")
                ),
                &format!("x509:{}", v.issuer_key_id),
                now,
            );
        }
    }
}

/// Waits `period`; `false` once the server is shutting down.
async fn tick(period: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(period) => true,
    }
}

/// CA and JWT key rotation, CA nodes on the admin stream, and the server's own TLS roots and
/// SVID.
async fn rotation(
    ctx: Arc<ServerCtx>,
    mut tls: OwnTls,
    mut ca_published: CaBuiltFrom,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = ctx
        .config
        .rotation_check_interval
        .to_std()
        .unwrap_or(Duration::from_secs(1));
    while tick(period, &mut shutdown).await {
        let now = ctx.clock.now();
        match ctx.ca.rotate(now).await {
            Ok(events) => report_ca_events(&ctx.hub, events, now),
            Err(e) => {
                tracing::error!(error = %e, "CA rotation failed; will retry");
                ctx.hub.event(
                    Severity::Error,
                    EventKind::RotationFailed,
                    format!("CA rotation failed (will retry): {e}"),
                    &crate::observe::server_node_id(ctx.server_id.as_str()),
                    now,
                );
            }
        }
        crate::observe::publish_ca(&ctx, &mut ca_published, now);
        tls.refresh(&ctx, now);
    }
}

/// Signs a checkpoint of the audit chain with the active X.509 CA key (on a downstream, its
/// intermediate's) every `audit_checkpoint_interval`, when the chain moved since the last one.
async fn audit_checkpoints(ctx: Arc<ServerCtx>, mut shutdown: watch::Receiver<bool>) {
    let period = ctx
        .config
        .audit_checkpoint_interval
        .to_std()
        .unwrap_or(Duration::from_secs(300));
    while tick(period, &mut shutdown).await {
        if let Err(e) = checkpoint(&ctx).await {
            tracing::warn!(error = %e, "could not write an audit checkpoint; will retry");
        }
    }
}

async fn checkpoint(ctx: &ServerCtx) -> anyhow::Result<()> {
    let head = ctx.ds.audit_head().await?;
    if head.seq <= ctx.ds.last_checkpoint_seq().await? {
        return Ok(());
    }
    let key = ctx.ca.x509_ca()?.key().clone();
    let signer = key.public_key_spki();
    let at = ctx.clock.now().timestamp();
    let signature = key.sign(&checkpoint_bytes(head.seq, &head.hash, at, &signer))?;
    let cp = Checkpoint {
        seq: head.seq,
        hash: head.hash,
        at,
        signer,
        signature,
    };
    match ctx.ds.append_checkpoint(&cp).await {
        // Another server on the same datastore checkpointed this head first.
        Ok(()) | Err(DatastoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Renews the claim on the CA journal from the moment it is made (a start that waits for an
/// upstream must not let the lease run out). Ends (and with it the server) once another
/// server took the journal over: this one must not go on signing with a CA it no longer owns.
pub(super) async fn ca_lease(
    ds: Datastore,
    session: String,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
    stopped: watch::Sender<Option<Stopped>>,
) {
    let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::seconds(15));
    while tick(RENEW_EVERY, &mut shutdown).await {
        let now = clock.now();
        let until = (now + lease).timestamp();
        match ds.renew_ca_lease(&session, now.timestamp(), until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("{}", Stopped::CaTakenOver);
                stopped.send_replace(Some(Stopped::CaTakenOver));
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the CA lease; will retry"),
        }
    }
}

/// Agents (and expired SVIDs) on the admin stream, reconciled from the datastore.
async fn agents(ctx: Arc<ServerCtx>, mut shutdown: watch::Receiver<bool>) {
    while tick(AGENT_PUBLISH_INTERVAL, &mut shutdown).await {
        if let Err(e) = crate::observe::publish_agents(&ctx, ctx.clock.now()).await {
            tracing::warn!(error = %e, "could not list agents for the admin stream");
        }
    }
}

/// The upstream's connectivity on the admin stream, on every change.
async fn upstream_status(
    ctx: Arc<ServerCtx>,
    up: Arc<Upstream>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut status = up.subscribe();
    loop {
        let s = status.borrow_and_update().clone();
        ctx.hub.set_upstream(
            crate::observe::connectivity(&ctx.config, &s),
            ctx.clock.now(),
        );
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            r = status.changed() => if r.is_err() { break },
        }
    }
}

/// Replaces this downstream's intermediates chaining to tainted keys, when its backoff
/// allows (an upstream still handing out tainted chains is asked again later).
async fn replace_tainted(ctx: &ServerCtx, backoff: &mut RetryBackoff) {
    let now = ctx.clock.now();
    if !backoff.ready(now) {
        return;
    }
    match ctx.ca.replace_tainted(now).await {
        Ok(events) => {
            backoff.succeeded();
            report_ca_events(&ctx.hub, events, now);
        }
        Err(e) => {
            backoff.failed(now);
            tracing::warn!(error = %e, "could not replace an intermediate chaining to a tainted key");
        }
    }
}

/// A downstream server follows its upstream's bundle (reporting what it holds) and replaces
/// intermediates chaining to keys its upstream tainted.
async fn upstream_bundle(
    ctx: Arc<ServerCtx>,
    up: Arc<Upstream>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = ctx
        .config
        .upstream
        .as_ref()
        .and_then(|u| u.bundle_poll_interval.to_std().ok())
        .unwrap_or(DEFAULT_BUNDLE_POLL);
    let mut replace = RetryBackoff::default();
    while tick(period, &mut shutdown).await {
        let now = ctx.clock.now();
        let held = ctx.census.forward(ctx.ca.own_held(now), now);
        let (b, tainted) = match up.fetch_bundle(held).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e.message(), "upstream bundle poll failed");
                continue;
            }
        };
        if ctx.ca.set_upstream_tainted(tainted) {
            tracing::info!(tainted = ?ctx.ca.tainted_keys(), "upstream's tainted keys changed");
        }
        // The bundle first: a replacement intermediate may chain to a root only this bundle
        // holds, and agents must trust it before anything it signs reaches them.
        match ctx.ca.set_upstream_bundle(b, ctx.clock.now()).await {
            Ok(true) => tracing::info!(
                sequence = ctx.ca.bundle().sequence,
                "bundle updated from upstream"
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not store the upstream's bundle"),
        }
        replace_tainted(&ctx, &mut replace).await;
    }
}
