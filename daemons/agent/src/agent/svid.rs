//! The agent SVID: taken up from disk at start, installed (and persisted) after attestation
//! and renewal, renewed at half life; and the trust bundle the server hands out.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use trustdeck_pki::SigningKey;
use trustdeck_pki::keys::SoftwareKey;
use trustdeck_proto::node::RenewAgentRequest;
use trustdeck_spiffe::{Bundle, SpiffeId, x509};

use super::{Agent, AgentError};
use crate::cache::Cache;
use crate::state;

pub(super) struct AgentSvid {
    pub(super) id: SpiffeId,
    pub(super) not_before: DateTime<Utc>,
    pub(super) not_after: DateTime<Utc>,
    pub(super) renew_at: DateTime<Utc>,
    /// The keys its chain depends on (`chain_key_ids`).
    pub(super) key_ids: Vec<String>,
}

/// The SPIFFE ID and validity of the leaf of an SVID chain.
pub(super) fn leaf_window(
    chain: &[Vec<u8>],
) -> Result<(SpiffeId, DateTime<Utc>, DateTime<Utc>), AgentError> {
    let leaf = chain.first().ok_or(AgentError::EmptySvidChain)?;
    let info = x509::check_leaf(leaf).map_err(AgentError::Svid)?;
    Ok((info.spiffe_id, info.not_before, info.not_after))
}

/// Renewal instant: half the lifetime, minus up to a tenth of it as jitter so many SVIDs issued
/// together do not all renew at once.
pub fn jittered_renew_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    jitter: f64,
) -> DateTime<Utc> {
    let life = not_after - not_before;
    let half = trustdeck_pki::rotation::renew_at(not_before, not_after);
    let j = (life.num_milliseconds() as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as i64;
    half - Duration::milliseconds(j)
}

/// A fresh key and a CSR for it (no SPIFFE ID for the agent SVID: the server decides).
pub(super) fn key_and_csr(id: Option<&SpiffeId>) -> Result<(Vec<u8>, Vec<u8>), AgentError> {
    let (key, pkcs8) = SoftwareKey::ephemeral()?;
    let key: Arc<dyn SigningKey> = Arc::new(key);
    let csr = trustdeck_pki::csr::make_csr(&key, id)?;
    Ok((pkcs8, csr))
}

impl Agent {
    pub(super) fn load_stored_svid(&self) {
        match state::load_svid(&self.config.data_dir) {
            Ok(Some(s)) => match self.take_up_svid(&s.chain, &s.key_pkcs8) {
                Ok(()) => tracing::info!("loaded stored agent SVID"),
                Err(e) => {
                    // Expired (only): not presented, but still who this node was until it
                    // attests again, so the console and the runbooks can name it (as at run
                    // time). Anything else unusable (another trust domain, a key that does
                    // not match) names no one.
                    if let Ok((id, _, na)) = leaf_window(&s.chain)
                        && na <= self.clock.now()
                        && id.trust_domain() == &self.config.trust_domain
                    {
                        self.hub.set_spiffe_id(id.as_str(), self.clock.now());
                    }
                    tracing::warn!(error = %e, "stored agent SVID unusable; will attest")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "stored agent SVID unreadable; will attest"),
        }
    }

    /// Installs a new agent SVID and persists it (off the runtime's threads).
    pub(super) async fn install_svid(
        &self,
        chain: &[Vec<u8>],
        key: &[u8],
    ) -> Result<(), AgentError> {
        // Stored before it is presented: once the server sees the new serial it refuses the
        // old one (serial binding), so an agent killed right after must restart with this one.
        self.usable_window(chain)?;
        let (dir, owned_chain, owned_key) =
            (self.config.data_dir.clone(), chain.to_vec(), key.to_vec());
        tokio::task::spawn_blocking(move || state::save_svid(&dir, &owned_chain, &owned_key))
            .await??;
        self.take_up_svid(chain, key)
    }

    /// The SVID's SPIFFE ID and validity; refuses an expired one.
    fn usable_window(
        &self,
        chain: &[Vec<u8>],
    ) -> Result<(SpiffeId, DateTime<Utc>, DateTime<Utc>), AgentError> {
        let (id, nb, na) = leaf_window(chain)?;
        if na <= self.clock.now() {
            return Err(AgentError::NotAttested(format!(
                "agent SVID expired at {na}"
            )));
        }
        Ok((id, nb, na))
    }

    /// Presents `chain` from now on and schedules its renewal; refuses an expired one.
    fn take_up_svid(&self, chain: &[Vec<u8>], key: &[u8]) -> Result<(), AgentError> {
        let (id, nb, na) = self.usable_window(chain)?;
        let now = self.clock.now();
        self.identity
            .set(chain.to_vec(), key)
            .map_err(AgentError::Tls)?;
        // Half life counts from when the SVID was received, not from its backdated not_before.
        let received = std::cmp::max(nb, now);
        *self.svid.lock().unwrap_or_else(|p| p.into_inner()) = Some(AgentSvid {
            id,
            not_before: nb,
            not_after: na,
            renew_at: trustdeck_pki::rotation::renew_at(received, na),
            key_ids: x509::chain_key_ids(chain).unwrap_or_default(),
        });
        self.reconnect()
    }

    /// Forgets the agent SVID (evicted): the next round attests again.
    pub(super) async fn drop_svid(&self) {
        let dir = self.config.data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || state::clear_svid(&dir)).await;
        *self.svid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.identity.clear();
    }

    /// Stops presenting the agent SVID (expired: the server would refuse the TLS handshake
    /// that carries it), on a fresh connection, so the agent can attest again. The SVID stays
    /// published (as expired) until a new one replaces it.
    pub(super) fn present_no_svid(&self) -> Result<(), AgentError> {
        if self.identity.current().is_none() {
            return Ok(());
        }
        self.identity.clear();
        self.reconnect()
    }

    pub(super) async fn renew_agent_svid(&self) -> Result<(), AgentError> {
        let (pkcs8, csr) = key_and_csr(None)?;
        let r = self
            .client()
            .renew_agent(RenewAgentRequest { csr })
            .await
            .map_err(|s| AgentError::from_status(&self.config.server_address, s))?
            .into_inner();
        if super::fault::drop_renewal_answer() {
            tracing::warn!("fault injected: agent SVID renewal answer dropped");
            return Err(AgentError::Unreachable {
                addr: self.config.server_address.clone(),
                code: tonic::Code::Unavailable,
                reason: trustdeck_proto::node::Reason::Unspecified,
                message: "renewal answer lost (fault injected)".into(),
            });
        }
        self.install_svid(&r.svid_chain, &pkcs8).await?;
        tracing::info!("agent SVID renewed");
        Ok(())
    }

    /// Takes up a bundle from the server (unless it is the one held) and persists it.
    pub(super) async fn apply_bundle(&self, b: Bundle) {
        let cur = self.cache();
        if cur.bundle.sequence == b.sequence && cur.bundle.x509_authorities == b.x509_authorities {
            return;
        }
        if let Err(e) = self.roots.set(&b.x509_authorities) {
            tracing::error!(error = %e, "bundle has no usable X.509 authority; keeping the old one");
            return;
        }
        let b = Arc::new(b);
        let (dir, saved) = (self.config.data_dir.clone(), b.clone());
        match tokio::task::spawn_blocking(move || state::save_bundle(&dir, &saved)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not persist bundle"),
            Err(e) => tracing::warn!(error = %e, "could not persist bundle"),
        }
        tracing::info!(sequence = b.sequence, "trust bundle updated");
        self.publish(|c| c.bundle = b);
    }

    /// Publishes the next cache revision, changed by `f`.
    pub(super) fn publish(&self, f: impl FnOnce(&mut Cache)) {
        let mut next = self.cache().next_revision();
        f(&mut next);
        next.reindex();
        self.cache_tx.send_replace(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_or_before_half_life() {
        let nb = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let na = nb + Duration::seconds(3600);
        assert_eq!(jittered_renew_at(nb, na, 0.0), nb + Duration::seconds(1800));
        assert_eq!(jittered_renew_at(nb, na, 1.0), nb + Duration::seconds(1440));
        let mid = jittered_renew_at(nb, na, 0.5);
        assert!(mid < nb + Duration::seconds(1800) && mid > nb + Duration::seconds(1440));
    }

    /// The console's "renewal overdue" leaves this schedule room for a sync round: an SVID
    /// received when issued (its `not_before` set back by the CA's backdate) is renewed, at the
    /// latest, a few seconds before the console calls it overdue, whatever its lifetime.
    #[test]
    fn the_latest_renewal_is_before_the_console_calls_it_overdue() {
        use trustdeck_topology::fleet::renewal::{CERT_BACKDATE_SECS, overdue_at};
        assert_eq!(
            trustdeck_pki::ca::BACKDATE.num_seconds(),
            CERT_BACKDATE_SECS
        );
        let received = DateTime::from_timestamp(1_000_000, 0).unwrap();
        for ttl in [30, 60, 300, 3600, 86_400] {
            let nb = received - trustdeck_pki::ca::BACKDATE;
            let na = received + Duration::seconds(ttl);
            let latest = jittered_renew_at(std::cmp::max(nb, received), na, 0.0);
            let overdue = overdue_at(nb.timestamp(), na.timestamp());
            assert!(
                overdue - latest.timestamp() >= 5,
                "ttl {ttl}s: renews at {latest}, overdue at {overdue}"
            );
        }
    }
}
