//! Where CA keys must live: the root CA key (tier 0) in an HSM (critical otherwise), the
//! intermediates (tier 1) preferably (a warning otherwise).

use std::fmt;

use trustdeck_proto::admin::{DaemonRole, KeyBackend, Node, NodeKind, NodeState};
use trustdeck_proto::vocab::Wire;

use crate::ttl::Level;

/// A signing authority whose key is outside an HSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicyBreach {
    /// Critical for the root CA, warning for an intermediate.
    pub level: Level,
    /// 0 for the root CA, 1 for an intermediate.
    pub tier: u8,
    /// The authority's state (active or prepared).
    pub state: NodeState,
    /// The authority's label.
    pub label: String,
    /// Where its key is (`unknown` when the daemon did not say).
    pub backend: &'static str,
}

impl fmt::Display for KeyPolicyBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tier {} {} {} key is in {}, not an HSM",
            self.tier, self.state, self.label, self.backend
        )
    }
}

/// The breach of node `n`, published by a daemon with `role`, if it is a signing X.509
/// authority (active or prepared) whose key is not in a PKCS#11 token.
pub fn key_policy(role: Wire<DaemonRole>, n: &Node) -> Option<KeyPolicyBreach> {
    if n.kind_wire() != NodeKind::X509Authority {
        return None;
    }
    let state = n
        .state_wire()
        .known()
        .filter(|s| matches!(s, NodeState::Active | NodeState::Prepared))?;
    let backend = n.key_storage.as_ref().map(|k| k.backend_wire());
    if backend == Some(Wire::Known(KeyBackend::Pkcs11)) {
        return None;
    }
    let (level, tier) = match role.known()? {
        DaemonRole::Upstream => (Level::Critical, 0),
        DaemonRole::Downstream => (Level::Warning, 1),
        DaemonRole::Agent | DaemonRole::Unspecified => return None,
    };
    Some(KeyPolicyBreach {
        level,
        tier,
        state,
        label: n.label.clone(),
        backend: backend.map_or("unknown", |b| b.as_str()),
    })
}
