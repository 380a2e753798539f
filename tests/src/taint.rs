//! Helpers for the taint tests: authority operations through the CLI, what a workload holds
//! (through the Workload API), and the key ids chains and bundles depend on.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use trustdeck_proto::workload::{JwtBundlesRequest, X509svidRequest};

use super::*;

/// `trustdeck-server authority <kind> <op> [--id ID] --output json` on `server`, which must
/// succeed; returns its JSON.
pub fn authority(server: &ServerProc, kind: &str, op: &str, id: Option<&str>) -> serde_json::Value {
    let mut args = vec!["authority", kind, op, "--output", "json"];
    if let Some(id) = id {
        args.extend(["--id", id]);
    }
    let out = server.cli_ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("authority {kind} {op}: {e}: {out}"))
}

/// The ids of the authorities in `status` (`active`, `prepared`, `old`, `tainted`,
/// `revoked`) in the JSON of `authority x509|jwt show`.
pub fn with_status(show: &serde_json::Value, status: &str) -> Vec<String> {
    show["authorities"]
        .as_array()
        .expect("authorities")
        .iter()
        .filter(|a| a["status"] == status)
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

/// The subject key id (hex) of a CA certificate.
pub fn ski(der: &[u8]) -> String {
    let info = trustdeck_spiffe::x509::check_ca(der).expect("CA certificate");
    info.subject_key_id
        .map(|k| k.iter().map(|b| format!("{b:02x}")).collect())
        .expect("subject key id")
}

/// The subject key ids of a bundle's roots.
pub fn root_key_ids(roots: &[Vec<u8>]) -> Vec<String> {
    roots.iter().map(|r| ski(r)).collect()
}

/// The keys an SVID chain depends on (issuers' subject key ids up to the root).
pub fn chain_keys(chain: &[Vec<u8>]) -> Vec<String> {
    trustdeck_spiffe::x509::chain_key_ids(chain).expect("chain key ids")
}

/// One X509-SVID response of `agent` for this process: (SPIFFE ID, chain, bundle) per SVID.
pub async fn x509_svids(agent: &AgentProc) -> Option<Vec<(String, Vec<Vec<u8>>, Vec<Vec<u8>>)>> {
    let mut c = agent.client();
    let mut s = tokio::time::timeout(Duration::from_secs(3), c.fetch_x509svid(X509svidRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    let m = tokio::time::timeout(Duration::from_secs(3), s.next())
        .await
        .ok()??
        .ok()?;
    Some(
        m.svids
            .iter()
            .map(|s| {
                (
                    s.spiffe_id.clone(),
                    split_der(&s.x509_svid),
                    split_der(&s.bundle),
                )
            })
            .collect(),
    )
}

/// Waits until every SVID `agent` serves for this process avoids `key` and there are `n` of
/// them; returns them.
pub async fn all_clean(
    agent: &AgentProc,
    n: usize,
    key: &str,
    secs: u64,
) -> Vec<(String, Vec<Vec<u8>>, Vec<Vec<u8>>)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(svids) = x509_svids(agent).await
            && svids.len() == n
            && svids.iter().all(|(_, c, b)| {
                let _ = b;
                !chain_keys(c).iter().any(|k| k == key)
            })
        {
            return svids;
        }
        assert!(
            Instant::now() < deadline,
            "SVIDs still chaining to {key} after {secs}s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kids of the JWT bundle of `agent`'s trust domain.
pub async fn jwt_kids(agent: &AgentProc) -> Vec<String> {
    let mut c = agent.client();
    let mut s = c
        .fetch_jwt_bundles(JwtBundlesRequest {})
        .await
        .expect("FetchJWTBundles")
        .into_inner();
    let m = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("JWT bundles in time")
        .expect("a message")
        .expect("JWT bundles");
    let mut kids = Vec::new();
    for jwks in m.bundles.values() {
        let v: serde_json::Value = serde_json::from_slice(jwks).expect("JWKS");
        for k in v["keys"].as_array().into_iter().flatten() {
            if let Some(kid) = k["kid"].as_str() {
                kids.push(kid.to_string());
            }
        }
    }
    kids
}

/// The kid in a JWT's header.
pub fn jwt_kid(token: &str) -> String {
    let (h, _) = trustdeck_spiffe::jwt::decode_unverified(token).expect("JWT");
    h.kid.expect("kid")
}

/// The agent's own SVID chain as it persisted it.
pub fn agent_own_chain(agent: &AgentProc) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(agent.dir.path().join("data").join("agent_svid.pem"))
        .expect("agent SVID file");
    trustdeck_spiffe::pem::decode_certs(&text).expect("agent SVID")
}
