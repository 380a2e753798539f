//! A sync round (agent SVID due? entries and bundle, workload SVIDs missing or due) and the
//! loop that runs rounds with backoff.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::watch;
use trustdeck_proto::node::{SignX509SvidsRequest, SvidCsr, SvidResult, SyncEntriesRequest};
use trustdeck_spiffe::Bundle;
use trustdeck_topology::fleet::stranded;

use super::federated;
use super::retry::{Decision, Log, Retry, Round};
use super::svid::{jittered_renew_at, key_and_csr, leaf_window};
use super::{Agent, AgentError};
use crate::cache::{Cache, LocalEntry, WorkloadSvid, local_entries};

/// Most CSRs sent in one call.
const BATCH: usize = 100;

/// What the agent SVID needs before a round.
enum Step {
    Attest,
    Renew,
    Nothing,
}

impl Agent {
    /// One round: renew the agent SVID if due, sync entries and bundle, sign what is missing
    /// or due for rotation.
    pub async fn sync_once(&self, now: DateTime<Utc>) -> Result<(), AgentError> {
        match self.agent_svid_step(now) {
            Step::Attest => {
                self.present_no_svid()?;
                self.attest().await?
            }
            Step::Renew => self.renew_agent_svid().await?,
            Step::Nothing => {}
        }
        let resp = self
            .client()
            .sync_entries(SyncEntriesRequest {
                held: Some(self.held(now)),
            })
            .await
            .map_err(|s| AgentError::from_status(&self.config.server_address, s))?
            .into_inner();
        if let Ok(b) = Bundle::from_json(&self.config.trust_domain, &resp.bundle) {
            self.apply_bundle(b).await;
        }
        self.take_tainted(resp.tainted.unwrap_or_default(), now);
        self.renew_if_tainted(now).await?;
        let entries = local_entries(&resp.entries);
        let cache = self.cache();
        let federated = federated::from_answer(&resp.federated_bundles, &entries, &cache.federated);
        let federated_changed = !federated::same(&cache.federated, &federated);
        let tainted = self.taint_due(&cache, now);
        let needs = needs_signing(&entries, &cache, &tainted, now);
        let (fresh, sign_error) = self.sign_batches(&needs, now).await?;
        self.taint_reissued(
            &cache,
            &tainted,
            &fresh,
            |id| entries.iter().any(|e| e.id == id),
            now,
        );
        let entries_changed = cache.entries != entries;
        // SVIDs of deleted entries, and expired ones (never served), leave the cache.
        let stale: Vec<String> = cache
            .svids
            .iter()
            .filter(|(id, s)| s.not_after <= now || !entries.iter().any(|e| &e.id == *id))
            .map(|(id, _)| id.clone())
            .collect();
        let changed = entries_changed || federated_changed;
        if changed || !fresh.is_empty() || !stale.is_empty() || !cache.synced {
            if !fresh.is_empty() {
                tracing::info!(count = fresh.len(), "workload SVIDs issued or rotated");
            }
            if federated_changed {
                let held: Vec<_> = federated
                    .iter()
                    .map(|(td, b)| format!("{}#{}", td.as_str(), b.bundle.sequence))
                    .collect();
                tracing::info!(?held, "federated bundles changed");
            }
            self.publish(|c| {
                c.entries = entries;
                c.federated = federated;
                for id in &stale {
                    c.svids.remove(id);
                }
                for s in fresh {
                    c.svids.insert(s.entry_id.clone(), s);
                }
                c.synced = true;
            });
        }
        match sign_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn agent_svid_step(&self, now: DateTime<Utc>) -> Step {
        match self.svid.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            None => Step::Attest,
            Some(s) if now >= s.not_after => Step::Attest,
            Some(s) if now >= s.renew_at => Step::Renew,
            Some(_) => Step::Nothing,
        }
    }

    /// Workload SVIDs for `needs`, [`BATCH`] CSRs a call. A failed call (rate limited, server
    /// gone) ends the signing but keeps what earlier calls got; its error comes second.
    async fn sign_batches(
        &self,
        needs: &[&LocalEntry],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Arc<WorkloadSvid>>, Option<AgentError>), AgentError> {
        let mut fresh = Vec::new();
        for chunk in needs.chunks(BATCH) {
            let mut keys = Vec::with_capacity(chunk.len());
            let mut csrs = Vec::with_capacity(chunk.len());
            for e in chunk {
                let (pkcs8, csr) = key_and_csr(Some(&e.spiffe_id))?;
                keys.push(pkcs8);
                csrs.push(SvidCsr {
                    entry_id: e.id.clone(),
                    csr,
                });
            }
            let results = match self
                .client()
                .sign_x509_svids(SignX509SvidsRequest { csrs })
                .await
            {
                Ok(r) => r.into_inner().results,
                Err(s) => {
                    let e = AgentError::from_status(&self.config.server_address, s);
                    return Ok((fresh, Some(e)));
                }
            };
            for (r, key) in results.into_iter().zip(keys) {
                fresh.extend(workload_svid(r, key, now));
            }
        }
        Ok((fresh, None))
    }

    /// Runs sync rounds until `shutdown` turns true; the server being unreachable only slows
    /// the rounds down (exponential backoff): cached SVIDs keep being served. A join token
    /// the server refuses for good strands the agent (`retry`): a long backoff, one error.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let base = self
            .config
            .sync_interval
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(1));
        let max = self
            .config
            .max_backoff
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(30));
        let mut retry = Retry::new(base, max);
        loop {
            let result = self.sync_once(self.clock.now()).await;
            let round = match &result {
                Ok(()) => Round::Ok,
                Err(e) if e.rate_limited() => Round::RateLimited,
                Err(e) if e.server_datastore_down() => Round::DatastoreDown,
                Err(e) => e.stranded_reason().map_or(Round::Failed, Round::Stranded),
            };
            let d = retry.after(round, self.clock.now());
            let err = result.err();
            self.round_logged(&d, err.as_ref()).await;
            self.set_status(d.state, err.map(|e| e.to_string()), retry.stranded());
            // Wake early when an SVID falls due before the next round (only after a good
            // round: while failing, the backoff decides).
            let due = self
                .next_due()
                .and_then(|t| (t - self.clock.now()).to_std().ok())
                .map(|d| d.max(std::time::Duration::from_millis(20)));
            let sleep = match due {
                Some(due) if due < d.wait && retry.at_base() => due,
                _ => d.wait,
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Logs a round as `d` says; an agent no longer attested drops its SVID to attest again.
    async fn round_logged(&self, d: &Decision, e: Option<&AgentError>) {
        let next = d.next_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match (d.log, e) {
            (Log::RateLimited, Some(e)) => tracing::info!(
                error = %e,
                "server rate limit reached; the rest is signed at the next round"
            ),
            (Log::Recovered, _) => {
                tracing::info!("attested with a new join token; no longer stranded")
            }
            (Log::Stranded, Some(e)) => tracing::error!(
                error = %e,
                recovery = stranded::RECOVERY,
                next_attempt = %next,
                "{}; cached SVIDs are served until they expire",
                stranded::NEEDS
            ),
            (Log::StillStranded, Some(e)) => {
                tracing::warn!(error = %e, next_attempt = %next, "still {}", stranded::NEEDS)
            }
            (_, Some(AgentError::NotAttested(m))) => {
                tracing::warn!(reason = %m, "agent no longer attested; attesting again");
                self.drop_svid().await;
            }
            (_, Some(AgentError::SvidSuperseded(m))) => {
                tracing::error!(reason = %m, "the server accepts only a newer SVID of this agent; attesting again");
                self.drop_svid().await;
            }
            (_, Some(e @ (AgentError::AttestationRefused { .. } | AgentError::Banned(_)))) => {
                tracing::error!(error = %e, "the server refuses this agent; cached SVIDs are served until they expire");
            }
            (_, Some(e)) => tracing::warn!(error = %e, retry_in = ?d.wait, "sync failed"),
            (_, None) => {}
        }
    }

    /// The earliest renewal due: the agent SVID's, a workload SVID's, or the retry of one
    /// re-issued still tainted.
    /// Past-due ones are left out: they are retried on the normal schedule.
    fn next_due(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let agent = self
            .svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.renew_at)
            .filter(|t| *t > now);
        let workloads = self
            .cache()
            .svids
            .values()
            .map(|s| s.renew_at)
            .filter(|t| *t > now)
            .min();
        let taint = self.next_taint_retry().filter(|t| *t > now);
        [agent, workloads, taint].into_iter().flatten().min()
    }
}

/// The entries to sign for this round, in order: those without an SVID, those whose SVID
/// chains to a tainted key (`tainted`), those due for rotation or renamed.
fn needs_signing<'a>(
    entries: &'a [LocalEntry],
    cache: &Cache,
    tainted: &HashSet<String>,
    now: DateTime<Utc>,
) -> Vec<&'a LocalEntry> {
    let rank = |e: &LocalEntry| match cache.svids.get(&e.id) {
        None => Some(0),
        Some(_) if tainted.contains(&e.id) => Some(1),
        Some(s) if now >= s.renew_at || s.spiffe_id != e.spiffe_id => Some(2),
        Some(_) => None,
    };
    let mut needs: Vec<(u8, &LocalEntry)> = entries
        .iter()
        .filter_map(|e| rank(e).map(|r| (r, e)))
        .collect();
    needs.sort_by_key(|(r, _)| *r);
    needs.into_iter().map(|(_, e)| e).collect()
}

/// The workload SVID in a signing result, or `None` (logged) when it was refused or is
/// unusable.
fn workload_svid(r: SvidResult, key: Vec<u8>, now: DateTime<Utc>) -> Option<Arc<WorkloadSvid>> {
    if r.error_code != 0 {
        tracing::warn!(entry = %r.entry_id, error = %r.error_message, "workload SVID refused");
        return None;
    }
    let (id, nb, na) = match leaf_window(&r.chain) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(entry = %r.entry_id, error = %e, "server returned a bad SVID");
            return None;
        }
    };
    let key_ids = trustdeck_spiffe::x509::chain_key_ids(&r.chain).unwrap_or_default();
    Some(Arc::new(WorkloadSvid {
        entry_id: r.entry_id,
        key_ids,
        spiffe_id: id,
        chain_der: r.chain.concat(),
        chain: r.chain,
        key_pkcs8: key,
        not_before: nb,
        not_after: na,
        renew_at: jittered_renew_at(std::cmp::max(nb, now), na, rand::rng().random::<f64>()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use trustdeck_spiffe::{SpiffeId, TrustDomain};

    fn entry(id: &str) -> LocalEntry {
        LocalEntry {
            id: id.into(),
            spiffe_id: SpiffeId::parse(&format!("spiffe://td/{id}")).unwrap(),
            selectors: vec![],
            x509_ttl_secs: 0,
            jwt_ttl_secs: 0,
            dns_names: vec![],
            federates_with: vec![],
        }
    }

    fn svid(id: &str, renew_at: DateTime<Utc>) -> Arc<WorkloadSvid> {
        Arc::new(WorkloadSvid {
            entry_id: id.into(),
            spiffe_id: SpiffeId::parse(&format!("spiffe://td/{id}")).unwrap(),
            chain: vec![],
            chain_der: vec![],
            key_pkcs8: vec![],
            not_before: renew_at - Duration::minutes(5),
            not_after: renew_at + Duration::minutes(5),
            renew_at,
            key_ids: vec![],
        })
    }

    #[test]
    fn missing_svids_come_first_then_tainted_then_due_and_fresh_ones_are_left() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let td = TrustDomain::parse("td").unwrap();
        let mut cache = Cache::new(Arc::new(Bundle::new(td)));
        let later = now + Duration::minutes(1);
        for (id, renew) in [("due", now), ("fresh", later), ("tainted", later)] {
            cache.svids.insert(id.into(), svid(id, renew));
        }
        let entries: Vec<LocalEntry> = ["due", "fresh", "new", "tainted"]
            .into_iter()
            .map(entry)
            .collect();
        let tainted: HashSet<String> = ["tainted".to_string()].into();
        let got: Vec<&str> = needs_signing(&entries, &cache, &tainted, now)
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(got, ["new", "tainted", "due"]);
    }
}
