//! The words of the federation view and of `status`'s FEDERATION section: where a foreign
//! bundle comes from, how old it is, when its roots expire, what the server warns of, and
//! which sequence of ours each isolated peer holds.

use trustdeck_proto::admin::{ForeignTrustDomain, PeerReceipt};
use trustdeck_topology::fleet::federation::{Assessment, failure_words, is_federated};
use trustdeck_topology::ttl::fmt_secs;

/// `federation https_spiffe` or `import`.
pub fn source(td: &ForeignTrustDomain) -> String {
    if is_federated(td) {
        format!("{} {}", td.source_wire(), td.profile_wire())
    } else {
        td.source_wire().to_string()
    }
}

/// The sequence held, `-` when none.
pub fn sequence(td: &ForeignTrustDomain) -> String {
    if td.has_bundle {
        let boot = if td.from_bootstrap {
            " (bootstrap)"
        } else {
            ""
        };
        format!("{}{boot}", td.sequence)
    } else {
        "-".to_string()
    }
}

/// `12s ago`, or `never`.
pub fn age(a: &Assessment) -> String {
    a.age
        .map_or_else(|| "never".to_string(), |s| format!("{} ago", fmt_secs(s)))
}

/// When the earliest root expires: `in 29d 23h`, `expired`, or `-`.
pub fn expiry(a: &Assessment) -> String {
    match a.earliest_expiry_in {
        None => "-".to_string(),
        Some(s) if s <= 0 => "expired".to_string(),
        Some(s) => format!("in {}", fmt_secs(s)),
    }
}

/// Failures in a row, with the last one's words.
pub fn failures(td: &ForeignTrustDomain) -> String {
    if td.consecutive_failures == 0 {
        "0".to_string()
    } else {
        format!("{} ({})", td.consecutive_failures, failure_words(td))
    }
}

/// The server's warnings, comma-separated (empty: none).
pub fn warnings(td: &ForeignTrustDomain) -> String {
    td.warnings_wire()
        .iter()
        .map(|w| w.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `iso.test holds 3 (ours: 4, behind)`.
pub fn receipt(r: &PeerReceipt, own_sequence: u64) -> String {
    let behind = if r.sequence < own_sequence {
        ", behind"
    } else {
        ""
    };
    format!(
        "{} holds {} (ours: {own_sequence}{behind})",
        r.peer_trust_domain, r.sequence
    )
}
