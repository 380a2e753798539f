//! What `Health` answers: whether the server can issue SVIDs now (a valid active CA, a valid
//! JWT key unless its upstream signs JWT-SVIDs, a datastore that answers) and warnings that
//! say why not.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{ConnectivityState, HealthResponse};

use crate::ca::CaState;
use crate::ctx::ServerCtx;

/// How long `Health` waits for the datastore before calling it unreachable.
const HEALTH_PING: std::time::Duration = std::time::Duration::from_secs(3);

/// The server's health at the clock's `now`.
pub(super) async fn health(ctx: &ServerCtx) -> HealthResponse {
    let st = ctx.ca.snapshot();
    let now = ctx.clock.now();
    let mut warnings = ctx.config.warnings.clone();
    warnings.extend(upstream_warning(ctx));
    let violations = ctx.findings.total();
    if violations > 0 {
        warnings.push(format!(
            "{violations} X.509-SVID(s) reported outside the namespace of the intermediate that signed them (events: NamespaceViolation)"
        ));
    }
    let authorities = authorities_valid(ctx, &st, now);
    if !authorities {
        warnings.push("no valid active CA: issuance is failing".into());
    }
    let datastore_reachable = match ping(ctx).await {
        Ok(()) => true,
        Err(why) => {
            warnings.push(why);
            false
        }
    };
    let x509 = st.x509.active.as_ref();
    HealthResponse {
        serving: authorities && datastore_reachable,
        trust_domain: ctx.config.trust_domain.to_string(),
        active_x509_authority: x509.map(|a| a.subject().to_string()).unwrap_or_default(),
        active_x509_not_after: x509.map(|a| a.window().not_after.timestamp()).unwrap_or(0),
        active_jwt_not_after: st
            .jwt
            .active
            .as_ref()
            .map(|k| k.window.not_after.timestamp())
            .unwrap_or(0),
        bundle_sequence: st.bundle.sequence,
        warnings,
        datastore_reachable,
    }
}

/// Whether the active X.509 CA, and the JWT key on a server that signs JWT-SVIDs itself, are
/// valid at `now`.
fn authorities_valid(ctx: &ServerCtx, st: &CaState, now: DateTime<Utc>) -> bool {
    let x509 = st
        .x509
        .active
        .as_ref()
        .is_some_and(|a| a.window().contains(now));
    let jwt = ctx.upstream.is_some()
        || st
            .jwt
            .active
            .as_ref()
            .is_some_and(|k| k.window.contains(now));
    x509 && jwt
}

/// A downstream's link to its upstream, when it is not connected.
fn upstream_warning(ctx: &ServerCtx) -> Option<String> {
    let s = ctx.upstream.as_ref()?.status();
    (s.state != ConnectivityState::Connected).then(|| {
        format!(
            "upstream {} since {}: {}",
            s.state,
            s.since.to_rfc3339(),
            s.last_error.unwrap_or_default()
        )
    })
}

/// The datastore answers within [`HEALTH_PING`]; else the warning saying how it failed.
async fn ping(ctx: &ServerCtx) -> Result<(), String> {
    match tokio::time::timeout(HEALTH_PING, ctx.ds.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("datastore: {e}")),
        Err(_) => Err(format!(
            "datastore: no answer within {} s",
            HEALTH_PING.as_secs()
        )),
    }
}
