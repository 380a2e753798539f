//! The CA and, for a downstream server, the upstream it depends on.

use std::sync::Arc;
use std::time::Duration;

use trustdeck_admin::IssuerCheck;
use trustdeck_datastore::Datastore;
use trustdeck_pki::KeyManager;
use trustdeck_process::clock::Clock;

use super::RunError;
use crate::ca::{CaEvent, CaManager, CaSettings};
use crate::config::Config;
use crate::upstream::{Upstream, UpstreamSettings};

/// How long a downstream server waits for its own SVID from the local agent.
const LOCAL_SVID_WAIT: Duration = Duration::from_secs(120);

/// How long to wait between attempts while the upstream cannot help yet.
const UPSTREAM_RETRY: Duration = Duration::from_secs(1);

/// Connects a downstream server to its upstream; `None` for the root.
pub(super) async fn connect_upstream(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<Option<Arc<Upstream>>, RunError> {
    let Some(u) = &config.upstream else {
        return Ok(None);
    };
    let settings = UpstreamSettings {
        address: u.address.clone(),
        upstream_spiffe_id: u.spiffe_id.clone(),
        workload_api_socket: u.workload_api_socket.clone(),
        own_spiffe_id: u.own_spiffe_id.clone(),
        trust_domain: config.trust_domain.clone(),
    };
    let up = Upstream::start(settings, LOCAL_SVID_WAIT, clock.clone()).await?;
    // What an earlier run learnt, for a restart with the upstream down.
    up.namespaces.load(&config.data_dir);
    up.relayed.load(&config.data_dir);
    Ok(Some(up))
}

/// Loads the CA and brings it up to date. A downstream server without a usable intermediate
/// needs its upstream: it keeps asking.
pub(super) async fn load_ca(
    config: &Config,
    ds: &Datastore,
    km: &Arc<dyn KeyManager>,
    upstream: &Option<Arc<Upstream>>,
    claimed: super::owner::Claimed,
    clock: &dyn Clock,
) -> Result<(Arc<CaManager>, Vec<CaEvent>), RunError> {
    let settings = CaSettings {
        trust_domain: config.trust_domain.clone(),
        ca_ttl: config.ca_ttl,
        ca_common_name: config.ca_common_name.clone(),
        jwt_key_ttl: config.jwt_key_ttl,
        upstream: upstream.clone(),
        owner_session: claimed.session,
        took_over: claimed.took_over,
        replace_lost_keys: config
            .replace_lost_keys
            .then(|| super::storage::operator(config)),
        actor: crate::observe::server_node_id(config.server_spiffe_id.as_str()),
    };
    loop {
        match CaManager::load(settings.clone(), ds.clone(), km.clone(), clock.now()).await {
            Ok(loaded) => return Ok(loaded),
            Err(e) if upstream.is_some() && !e.needs_operator() => {
                tracing::warn!(error = %e, "no intermediate CA yet; retrying");
                tokio::time::sleep(UPSTREAM_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A downstream server's bundle is its upstream's: fetched before serving. A stored one will
/// do while the upstream is unreachable; without one, it waits.
pub(super) async fn adopt_upstream_bundle(
    up: &Upstream,
    ca: &CaManager,
    clock: &dyn Clock,
) -> Result<(), RunError> {
    loop {
        match up.fetch_bundle(Default::default()).await {
            Ok((b, tainted)) => {
                ca.set_upstream_tainted(tainted);
                ca.set_upstream_bundle(b, clock.now()).await?;
                return Ok(());
            }
            Err(e) if !ca.bundle().x509_authorities.is_empty() => {
                tracing::warn!(error = %e.message(), "upstream unreachable; serving the stored bundle");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e.message(), "waiting for the upstream's bundle");
                tokio::time::sleep(UPSTREAM_RETRY).await;
            }
        }
    }
}

/// Admin callers over mTLS must hold an SVID issued by one of this server's own CAs.
pub(super) fn own_ca_issuer_check(ca: &Arc<CaManager>) -> IssuerCheck {
    let ca = ca.clone();
    IssuerCheck(Arc::new(move |leaf| {
        crate::observe::issued_by_own_ca(&ca.snapshot(), leaf).map_err(Into::into)
    }))
}
