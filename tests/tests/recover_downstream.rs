//! End-to-end: a downstream server that was down longer than its own X509-SVID and its
//! intermediate CA (SPIRE issue 5796: such a server refuses to start) comes back on its own,
//! with real processes and short TTLs: it takes a fresh SVID from its local agent's socket
//! and a fresh intermediate from its upstream, and its segment's agent (x509pop, so it can
//! attest again by itself) and workloads renew onto the new intermediate. Twice: after a
//! restart of a killed server, and after a frozen one (SIGSTOP) is let go.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::X509svidRequest;

/// Lifetime of the downstream's intermediate.
const CA_TTL_SECS: u64 = 12;
/// Lifetime of the downstream's own SVID (the root's default).
const SVID_TTL_SECS: u64 = 15;

/// The SVID `spiffe_id` of `agent` (chain), once it no longer chains to `stale` and is valid
/// now.
async fn fresh_svid(agent: &AgentProc, spiffe_id: &str, stale: &str, secs: u64) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut c = agent.client();
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(3), c.fetch_x509svid(X509svidRequest {})).await
            && let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(3), s.get_mut().next()).await
            && let Some(svid) = m.svids.iter().find(|s| s.spiffe_id == spiffe_id)
        {
            let chain = split_der(&svid.x509_svid);
            let valid = x509_parser::parse_x509_certificate(&chain[0])
                .is_ok_and(|(_, c)| c.validity().is_valid());
            if valid && !chain_keys(&chain).iter().any(|k| k == stale) {
                return chain;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no fresh SVID {spiffe_id} (not chaining to {stale}) within {secs}s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The downstream's intermediate in `chain` (the key the leaf's issuer names).
fn intermediate(chain: &[Vec<u8>]) -> String {
    chain_keys(chain).first().expect("issuer key").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downstream_down_longer_than_its_identity_comes_back_by_itself() {
    let dir = tempfile::tempdir().expect("tmp");
    let pop = PopNode::write(dir.path(), "node-9");
    let root = ServerProc::start(&format!("default_x509_svid_ttl = \"{SVID_TTL_SECS}s\"\n"));
    let mut mid = Downstream::start(
        &root,
        "mid",
        &format!(
            "bind_address = \"127.0.0.1:{}\"\nca_ttl = \"{CA_TTL_SECS}s\"\n\
             default_x509_svid_ttl = \"6s\"\n{}",
            free_port(),
            pop.server_section()
        ),
    );
    let alias = "spiffe://example.org/prod/mid/node/node-9";
    let wid = "spiffe://example.org/prod/mid/db";
    pop.register_alias(&mid.server, &mid.server_spiffe_id, alias);
    entry_for_me(&mid.server, alias, wid, "6s");
    let agent = AgentProc::start(
        &mid.server,
        &pop.agent_attestation(),
        &format!("server_spiffe_id = \"{}\"\n", mid.server_spiffe_id),
    );
    let mut stale = intermediate(&fresh_svid(&agent, wid, "none", 30).await);

    // 1. Killed, and started again after its SVID and intermediate expired.
    mid.server.stop();
    std::thread::sleep(Duration::from_secs(SVID_TTL_SECS + 2));
    mid.server.spawn();
    let chain = fresh_svid(&agent, wid, &stale, 60).await;
    let (ok, text) = openssl_verify(agent.dir.path(), &root.bundle_roots(), &chain);
    assert!(ok, "after the restart: {text}");
    stale = intermediate(&chain);

    // 2. Frozen for as long, then let go: the running process recovers as well.
    let pid = mid.server.child.as_ref().expect("running").id();
    signal(pid, "STOP");
    std::thread::sleep(Duration::from_secs(SVID_TTL_SECS + 2));
    signal(pid, "CONT");
    let chain = fresh_svid(&agent, wid, &stale, 60).await;
    let (ok, text) = openssl_verify(agent.dir.path(), &root.bundle_roots(), &chain);
    assert!(ok, "after the freeze: {text}");
    assert!(
        !mid.server.log().contains("panicked"),
        "{}",
        mid.server.log()
    );
}
