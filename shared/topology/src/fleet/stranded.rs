//! A stranded link: an agent whose server refuses its join token for good (used, expired,
//! unknown), so that only a new token helps. The words and the recovery that `status`, the
//! console and the agent's own log give.

use serde::Serialize;
use trustdeck_proto::admin::{Connectivity, ConnectivityState, StrandedReason};
use trustdeck_proto::vocab::Wire;

/// What a stranded agent needs, as every view says it.
pub const NEEDS: &str = "stranded: needs a new join token";

/// What the operator does for a stranded agent.
pub const RECOVERY: &str = "trustdeck-server token generate --ttl 10m; put the new token in \
the agent's [node_attestation] token (or its token_path file, read again at the next attempt) \
and restart it (trustdeck-agent run --config FILE); entries parented to its old ID \
(spiffe://<td>/trustdeck/agent/join_token/<old token>) need the new one as parent";

/// Why `u` is stranded, when its state is stranded.
pub fn reason(u: &Connectivity) -> Option<Wire<StrandedReason>> {
    (u.state_wire() == ConnectivityState::Stranded).then(|| u.stranded_reason_wire())
}

/// The status report's view of a stranded link (keys in alphabetical order).
#[derive(Debug, Clone, Serialize)]
pub struct StrandedReport {
    /// What it needs: [`NEEDS`].
    pub needs: &'static str,
    /// `token used`, `token expired`, `token unknown` (empty: not said, `unknown`: from a
    /// newer agent).
    pub reason: &'static str,
    /// What the operator does: [`RECOVERY`].
    pub recovery: &'static str,
}

/// The report of `u`, when it is stranded.
pub fn report(u: &Connectivity) -> Option<StrandedReport> {
    reason(u).map(|r| StrandedReport {
        needs: NEEDS,
        reason: r.as_str(),
        recovery: RECOVERY,
    })
}

/// The health reason of agent `name` stranded with `reason` by `peer` (`server <name>`).
pub fn health_reason(name: &str, reason: Wire<StrandedReason>, peer: &str) -> String {
    let why = match reason.as_str() {
        "" => String::new(),
        r => format!("{r}, "),
    };
    format!("{name}: {NEEDS} ({why}{peer}); recover: {RECOVERY}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(state: ConnectivityState, reason: i32) -> Connectivity {
        Connectivity {
            configured: true,
            state: state.into(),
            stranded_reason: reason,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_stranded_link_has_a_stranded_report() {
        let used = StrandedReason::TokenUsed as i32;
        assert!(report(&link(ConnectivityState::Lost, used)).is_none());
        let r = report(&link(ConnectivityState::Stranded, used)).unwrap();
        assert_eq!((r.needs, r.reason), (NEEDS, "token used"));
        assert!(r.recovery.starts_with("trustdeck-server token generate"));
        let newer = report(&link(ConnectivityState::Stranded, 77)).unwrap();
        assert_eq!(newer.reason, "unknown");
    }

    #[test]
    fn the_health_reason_says_what_is_needed_and_the_recovery() {
        let s = health_reason(
            "a1",
            Wire::Known(StrandedReason::TokenExpired),
            "server upstream",
        );
        assert!(
            s.starts_with("a1: stranded: needs a new join token (token expired, server upstream); recover: trustdeck-server token generate"),
            "{s}"
        );
    }

    /// A server and its stranded agent: the fleet is critical (not unreachable, and the
    /// server not counted lost by its agents), with the words and the recovery.
    #[test]
    fn a_stranded_agent_is_critical_with_its_recovery() {
        use crate::fleet::tests::{at, n, snap};
        use crate::fleet::{Fleet, FleetHealth, Thresholds};
        use trustdeck_proto::admin::{DaemonRole, NodeKind, NodeState, watch_message::Body};

        let mut f = Fleet::new([
            (
                "up".into(),
                "unix:///up".into(),
                DaemonRole::Upstream,
                "root".into(),
            ),
            (
                "a1".into(),
                "unix:///a1".into(),
                DaemonRole::Agent,
                "root".into(),
            ),
        ]);
        let server = n(
            "server:spiffe://td/up",
            "",
            NodeKind::Server,
            NodeState::Serving,
            0,
            90_000,
        );
        let up = snap(
            1,
            DaemonRole::Upstream,
            "up",
            "spiffe://td/up",
            vec![server],
            None,
        );
        f.apply(0, up, at(1000)).unwrap();
        let agent = n(
            "agent:a1",
            "server:spiffe://td/up",
            NodeKind::Agent,
            NodeState::Attested,
            0,
            90_000,
        );
        let mut msg = snap(
            1,
            DaemonRole::Agent,
            "a1",
            "spiffe://td/a1",
            vec![agent],
            Some(ConnectivityState::Stranded),
        );
        if let Some(Body::Snapshot(s)) = msg.body.as_mut() {
            let u = s.upstream.as_mut().unwrap();
            u.stranded_reason = StrandedReason::TokenUsed.into();
            u.peer_spiffe_id = "spiffe://td/up".into();
        }
        f.apply(1, msg, at(1000)).unwrap();
        let t = f.tree();
        let h = f.health(&t, at(1000), &Thresholds::default());
        assert_eq!(h.state(), FleetHealth::Critical, "{:?}", h.reasons);
        let why = h.reasons.iter().find(|r| r.starts_with("a1: ")).unwrap();
        assert!(why.starts_with("a1: stranded: needs a new join token (token used, server up); recover: trustdeck-server token generate"), "{why}");
        let w = f.windows(&t, at(1000));
        assert!(w.iter().all(|w| w.agents.lost == 0 && !w.server_lost()));
        let r = f.status_report(at(1000), &Thresholds::default());
        let json = serde_json::to_value(&r).unwrap();
        let a1 = &json["daemons"][1]["upstream"];
        assert_eq!(a1["state"], "stranded");
        assert_eq!(a1["stranded"]["reason"], "token used");
        assert_eq!(a1["stranded"]["needs"], NEEDS);
        assert_eq!(json["exit_code"], 2);
    }
}
