//! Whether a bundle fetched from a partner's endpoint replaces the last good one.
//!
//! The endpoint's answer is, by construction, the bundle of the relationship's trust domain:
//! the document names no trust domain, so what ties it to one is the endpoint. An
//! `https_spiffe` endpoint must present exactly the configured SPIFFE ID, which must be in the
//! relationship's trust domain ([`Partner::new`], [`Partner::check_endpoint_id`]); an
//! `https_web` endpoint is tied by its DNS name (checked by TLS). On top of that:
//!
//! - the body must parse as a SPIFFE bundle and hold at least one authority;
//! - an X.509 authority naming a trust domain (its URI SAN) must name the partner's;
//! - the sequence never goes backwards (SPIRE does not check this; trustdeck does);
//! - the same sequence must carry the same authorities (a reused sequence is refused).

use std::collections::BTreeSet;

use trustdeck_spiffe::{Bundle, BundleError, SpiffeId, TrustDomain};

/// How a partner's bundle endpoint proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// A Web PKI server certificate, checked by DNS name against the system's or a
    /// configured CA.
    HttpsWeb,
    /// The endpoint's X509-SVID, checked against our copy of the partner's bundle (the
    /// bootstrap bundle until a fetch succeeds); it must be exactly this SPIFFE ID.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint must present.
        endpoint_id: SpiffeId,
    },
}

impl EndpointProfile {
    /// The profile's name in configs and on screen (`https_web`, `https_spiffe`).
    pub fn name(&self) -> &'static str {
        match self {
            EndpointProfile::HttpsWeb => "https_web",
            EndpointProfile::HttpsSpiffe { .. } => "https_spiffe",
        }
    }
}

/// One federation relationship, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    trust_domain: TrustDomain,
    profile: EndpointProfile,
}

impl Partner {
    /// A relationship with `trust_domain`; an `https_spiffe` endpoint ID outside it is refused.
    pub fn new(trust_domain: TrustDomain, profile: EndpointProfile) -> Result<Partner, Refusal> {
        if let EndpointProfile::HttpsSpiffe { endpoint_id } = &profile
            && endpoint_id.trust_domain() != &trust_domain
        {
            return Err(Refusal::EndpointOutsideTrustDomain {
                trust_domain,
                endpoint_id: endpoint_id.clone(),
            });
        }
        Ok(Partner {
            trust_domain,
            profile,
        })
    }

    /// The partner's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// How its endpoint is checked.
    pub fn profile(&self) -> &EndpointProfile {
        &self.profile
    }

    /// Whether an endpoint presenting `presented` (its X509-SVID's ID) may serve this
    /// partner's bundle: for `https_spiffe` it must be the configured ID; `https_web`
    /// endpoints present no SPIFFE ID, so any is refused.
    pub fn check_endpoint_id(&self, presented: &SpiffeId) -> Result<(), Refusal> {
        match &self.profile {
            EndpointProfile::HttpsSpiffe { endpoint_id } if endpoint_id == presented => Ok(()),
            EndpointProfile::HttpsSpiffe { endpoint_id } => Err(Refusal::UnexpectedEndpointId {
                expected: endpoint_id.clone(),
                presented: presented.clone(),
            }),
            EndpointProfile::HttpsWeb => Err(Refusal::UnexpectedEndpointId {
                expected: self.trust_domain.id(),
                presented: presented.clone(),
            }),
        }
    }
}

/// A fetched bundle the rules accept; each carries the bundle to keep as the last good one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The first bundle fetched from this endpoint.
    First(Bundle),
    /// A newer sequence.
    Updated {
        /// The new bundle.
        bundle: Bundle,
        /// The sequence we held.
        previous_sequence: u64,
        /// X.509 authorities it adds.
        added_roots: usize,
        /// X.509 authorities it drops.
        removed_roots: usize,
    },
    /// The same sequence and authorities (the refresh hint may have changed).
    Unchanged(Bundle),
}

impl Accepted {
    /// The bundle to keep.
    pub fn bundle(&self) -> &Bundle {
        match self {
            Accepted::First(b) | Accepted::Unchanged(b) => b,
            Accepted::Updated { bundle, .. } => bundle,
        }
    }

    /// Takes the bundle to keep.
    pub fn into_bundle(self) -> Bundle {
        match self {
            Accepted::First(b) | Accepted::Unchanged(b) => b,
            Accepted::Updated { bundle, .. } => bundle,
        }
    }
}

/// Why the rules refuse an endpoint or its bundle (the last good bundle is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is not a SPIFFE bundle.
    #[error("the endpoint's answer is not a SPIFFE bundle: {0}")]
    NotABundle(BundleError),
    /// The bundle holds no authority at all.
    #[error("the endpoint served an empty bundle for {trust_domain} (no X.509 or JWT authority)")]
    Empty {
        /// The partner's trust domain.
        trust_domain: TrustDomain,
    },
    /// The sequence went backwards.
    #[error(
        "the endpoint served {trust_domain}'s bundle at sequence {served}, older than the \
         sequence {held} we hold (a replayed or rolled-back bundle)"
    )]
    SequenceBackwards {
        /// The partner's trust domain.
        trust_domain: TrustDomain,
        /// The sequence of the last good bundle.
        held: u64,
        /// The sequence served.
        served: u64,
    },
    /// The same sequence with other authorities.
    #[error(
        "the endpoint served {trust_domain}'s bundle at sequence {sequence} with other \
         authorities than the bundle we hold at that sequence"
    )]
    SequenceReused {
        /// The partner's trust domain.
        trust_domain: TrustDomain,
        /// The sequence.
        sequence: u64,
    },
    /// An X.509 authority names another trust domain.
    #[error("X.509 authority #{index} of the served bundle belongs to {found}, not {expected}")]
    ForeignAuthority {
        /// The partner's trust domain.
        expected: TrustDomain,
        /// The trust domain in the authority's URI SAN.
        found: TrustDomain,
        /// Its index among the bundle's X.509 authorities.
        index: usize,
    },
    /// An X.509 authority that is no CA certificate a trust domain's root could be (it would
    /// become a trusted root for the next `https_spiffe` handshake).
    #[error("X.509 authority #{index} of the served bundle is not a usable CA: {reason}")]
    NotAnAuthority {
        /// Its index among the bundle's X.509 authorities.
        index: usize,
        /// Why, in words.
        reason: String,
    },
    /// The configured `https_spiffe` endpoint ID is not in the partner's trust domain.
    #[error(
        "endpoint SPIFFE ID {endpoint_id} is not in trust domain {trust_domain}: the endpoint \
         serving a trust domain's bundle must be one of its own servers"
    )]
    EndpointOutsideTrustDomain {
        /// The partner's trust domain.
        trust_domain: TrustDomain,
        /// The configured endpoint ID.
        endpoint_id: SpiffeId,
    },
    /// The endpoint presented another SPIFFE ID than the configured one.
    #[error("the bundle endpoint presented {presented}, expected {expected}")]
    UnexpectedEndpointId {
        /// What was expected.
        expected: SpiffeId,
        /// What the endpoint presented.
        presented: SpiffeId,
    },
    /// The endpoint's X509-SVID chains to no root of our copy of the partner's bundle.
    #[error(
        "the bundle endpoint's certificate chains to no root of our copy of {trust_domain}'s \
         bundle (the partner signs with a root we lack{}): load its current bundle by hand",
        .missing.as_ref().map(|m| format!(", issuer {}", m.issuer)).unwrap_or_default()
    )]
    EndpointRootUnknown {
        /// The partner's trust domain.
        trust_domain: TrustDomain,
        /// The root it signs with, when the chain tells.
        missing: Option<crate::freshness::MissingRoot>,
    },
}

/// What kind of transport failure ended a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The address could not be resolved or connected to.
    Connect,
    /// The fetch took longer than allowed.
    Timeout,
    /// The TLS handshake failed (certificate, name, protocol).
    Tls,
    /// The endpoint answered with a status other than 200.
    HttpStatus(u16),
    /// The answer is larger than allowed.
    TooLarge,
    /// The answer is not HTTP/1.1 as expected.
    Malformed,
    /// The endpoint URL or local settings (CA file) are unusable.
    Setup,
}

/// Why a fetch brought no acceptable bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The rules refused the endpoint or its bundle.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The fetch itself failed.
    #[error("{detail}")]
    Transport {
        /// What kind of failure.
        kind: TransportKind,
        /// What happened, for the operator.
        detail: String,
    },
}

/// The X.509 and JWT authorities of a bundle as a set (order plays no part).
fn authorities(b: &Bundle) -> BTreeSet<Vec<u8>> {
    let jwt = b.jwt_authorities.iter().map(|a| {
        let mut k = b"jwt:".to_vec();
        k.extend_from_slice(a.key_id.as_bytes());
        k.push(0);
        k.extend_from_slice(&a.public_key_spki_der);
        k
    });
    b.x509_authorities.iter().cloned().chain(jwt).collect()
}

/// Checks a fetched `body` against the rules and the last good bundle fetched from this
/// partner's endpoint (`None` before the first success; a bootstrap bundle is not one).
pub fn accept(
    partner: &Partner,
    last_good: Option<&Bundle>,
    body: &[u8],
) -> Result<Accepted, Refusal> {
    let td = &partner.trust_domain;
    let bundle = Bundle::from_json(td, body).map_err(Refusal::NotABundle)?;
    if bundle.x509_authorities.is_empty() && bundle.jwt_authorities.is_empty() {
        return Err(Refusal::Empty {
            trust_domain: td.clone(),
        });
    }
    for (index, der) in bundle.x509_authorities.iter().enumerate() {
        let info = trustdeck_spiffe::x509::check_ca(der).map_err(|e| Refusal::NotAnAuthority {
            index,
            reason: e.to_string(),
        })?;
        if let Some(found) = info.trust_domain
            && &found != td
        {
            return Err(Refusal::ForeignAuthority {
                expected: td.clone(),
                found,
                index,
            });
        }
    }
    let Some(held) = last_good else {
        return Ok(Accepted::First(bundle));
    };
    if bundle.sequence < held.sequence {
        return Err(Refusal::SequenceBackwards {
            trust_domain: td.clone(),
            held: held.sequence,
            served: bundle.sequence,
        });
    }
    if bundle.sequence == held.sequence {
        if authorities(&bundle) != authorities(held) {
            return Err(Refusal::SequenceReused {
                trust_domain: td.clone(),
                sequence: bundle.sequence,
            });
        }
        // The same authorities: unchanged, unless the partner's refresh hint changed (a
        // bootstrap bundle's hint is ours, not the endpoint's: keep the one it serves).
        if bundle.refresh_hint_secs == held.refresh_hint_secs {
            return Ok(Accepted::Unchanged(bundle));
        }
    }
    let count = |from: &Bundle, to: &Bundle| {
        from.x509_authorities
            .iter()
            .filter(|r| !to.x509_authorities.contains(r))
            .count()
    };
    Ok(Accepted::Updated {
        added_roots: count(&bundle, held),
        removed_roots: count(held, &bundle),
        previous_sequence: held.sequence,
        bundle,
    })
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
