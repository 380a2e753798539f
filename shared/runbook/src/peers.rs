//! Isolated peers: the foreign trust domains whose bundle a server holds from a signed file
//! carried by hand, and the receipts they sent back for ours. What `peers_hold` reads, from
//! the server's `ListForeignBundles` in the [`Observation`].

use trustdeck_proto::admin::{ForeignBundleSource, ListForeignBundlesResponse};

use crate::check::{CheckResult, Observation, counted};
use crate::inputs::Vars;
use crate::model::Check;
use crate::param::ParamError;

/// Where one isolated peer stands: the sequence of our bundle it acknowledged, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStanding {
    pub trust_domain: String,
    pub acknowledged: Option<u64>,
}

/// Every isolated peer of a server's answer, in trust domain order.
pub fn standings(r: &ListForeignBundlesResponse) -> Vec<PeerStanding> {
    let mut out: Vec<PeerStanding> = r
        .bundles
        .iter()
        .filter(|b| b.source_wire() == ForeignBundleSource::Import)
        .map(|b| PeerStanding {
            trust_domain: b.trust_domain.clone(),
            acknowledged: r
                .receipts
                .iter()
                .find(|x| x.peer_trust_domain == b.trust_domain)
                .map(|x| x.sequence),
        })
        .collect();
    out.sort_by(|a, b| a.trust_domain.cmp(&b.trust_domain));
    out
}

/// The peer checks; `None` for another check.
pub(crate) fn eval(
    c: &Check,
    v: &Vars,
    o: &Observation,
    what: &str,
) -> Result<Option<CheckResult>, ParamError> {
    let Check::PeersHold { server, sequence } = c else {
        return Ok(None);
    };
    let (server, want) = (server.resolve(v)?, sequence.resolve(v)?);
    let answer = o
        .reads
        .foreign
        .get(&server)
        .ok_or_else(|| ParamError::Invalid {
            value: server.clone(),
            why: "its foreign bundles could not be read (unreachable?)".into(),
        })?;
    let peers = standings(answer);
    let behind: Vec<String> = peers
        .iter()
        .filter(|p| p.acknowledged.is_none_or(|s| s < want))
        .map(|p| match p.acknowledged {
            Some(s) => format!("{} (holds {s})", p.trust_domain),
            None => format!("{} (no receipt yet)", p.trust_domain),
        })
        .collect();
    let detail = if peers.is_empty() {
        format!("{server} has no isolated peer: import a peer's signed bundle first")
    } else if behind.is_empty() {
        "all".into()
    } else {
        format!("behind: {}", behind.join(", "))
    };
    let n = peers.len() as u64;
    let mut r = counted(what.to_string(), n - behind.len() as u64, n, detail.clone());
    r.detail = detail;
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{ServerReads, evaluate};
    use crate::param::Param;
    use std::collections::BTreeMap;
    use trustdeck_proto::admin::{BundleReceiptInfo, ForeignBundleInfo};
    use trustdeck_topology::ttl::Thresholds;

    fn bundle(td: &str, source: ForeignBundleSource) -> ForeignBundleInfo {
        ForeignBundleInfo {
            trust_domain: td.into(),
            source: source as i32,
            ..Default::default()
        }
    }

    fn receipt(td: &str, sequence: u64) -> BundleReceiptInfo {
        BundleReceiptInfo {
            peer_trust_domain: td.into(),
            sequence,
            ..Default::default()
        }
    }

    fn check(reads: &ServerReads, want: u64) -> CheckResult {
        let fleet = trustdeck_topology::Fleet::default();
        let o = Observation {
            now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            fleet: &fleet,
            reads,
            probes: &BTreeMap::new(),
            thresholds: Thresholds::default(),
        };
        let c = Check::PeersHold {
            server: Param::lit("up"),
            sequence: Param::lit(&want.to_string()),
        };
        evaluate(&c, &Vars::new(), &o)
    }

    #[test]
    fn every_imported_peer_must_acknowledge_the_sequence() {
        let mut reads = ServerReads::default();
        let r = check(&reads, 3);
        assert!(!r.ok && r.detail.contains("could not be read"), "{r:?}");
        reads
            .foreign
            .insert("up".into(), ListForeignBundlesResponse::default());
        let r = check(&reads, 3);
        assert!(!r.ok && r.detail.contains("no isolated peer"), "{r:?}");
        reads.foreign.insert(
            "up".into(),
            ListForeignBundlesResponse {
                bundles: vec![
                    bundle("a.test", ForeignBundleSource::Import),
                    bundle("b.test", ForeignBundleSource::Import),
                    bundle("fed.test", ForeignBundleSource::Federation),
                ],
                receipts: vec![receipt("a.test", 3), receipt("fed.test", 1)],
            },
        );
        let r = check(&reads, 3);
        assert!(!r.ok, "{r:?}");
        assert_eq!(r.progress, Some((1, 2)));
        assert_eq!(r.detail, "behind: b.test (no receipt yet)");
        let answer = reads.foreign.get_mut("up").unwrap();
        answer.receipts.push(receipt("b.test", 2));
        assert_eq!(check(&reads, 3).detail, "behind: b.test (holds 2)");
        reads.foreign.get_mut("up").unwrap().receipts[2].sequence = 4;
        let r = check(&reads, 3);
        assert!(r.ok && r.progress == Some((2, 2)), "{r:?}");
    }
}
