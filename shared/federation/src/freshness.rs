//! What is known of one partner ([`PartnerState`]) and what the console and `status` show
//! about it ([`Freshness`]).
//!
//! Seed 004 warns that federation breaks when a partner's CA rotates before our copy of its
//! bundle does, so besides the last success, its age, the sequence and the earliest root
//! expiry, two warnings: our copy lacks a root the partner already signs with (seen in a chain
//! the partner presented), and refreshes keep failing.

use chrono::{DateTime, Duration, Utc};
use trustdeck_spiffe::Bundle;
use x509_parser::extensions::ParsedExtension;

use crate::accept::{Accepted, FetchFailure};
use crate::schedule::{RefreshPolicy, refresh_interval, retry_delay};

/// The result of one fetch, as the fetching side reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The accepted bundle, or why there is none.
    pub result: Result<Accepted, FetchFailure>,
    /// The certificate chain the endpoint presented (DER, leaf first), when it is an
    /// `https_spiffe` endpoint that got as far as presenting one.
    pub presented_chain: Option<Vec<Vec<u8>>>,
}

/// A root the partner signs with that our copy of its bundle lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRoot {
    /// The issuer of the chain's topmost certificate (the missing root's subject).
    pub issuer: String,
    /// The missing root's key identifier (lowercase hex), when the chain names it.
    pub key_id: Option<String>,
}

/// A warning about a partner's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The partner signs with a root our copy lacks: its SVIDs do not validate here.
    MissingSigningRoot(MissingRoot),
    /// The last `failures` refreshes failed, the first of them at `since`.
    RefreshesFailing {
        /// Failures in a row.
        failures: u32,
        /// When the first of them happened.
        since: DateTime<Utc>,
    },
}

/// Everything known of one partner: the bundles held and how the fetches went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartnerState {
    /// The bundle configured by hand before the first fetch (trusted for `https_spiffe`).
    pub bootstrap: Option<Bundle>,
    /// The last bundle accepted from the endpoint.
    pub last_good: Option<Bundle>,
    /// When a fetch last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When a fetch was last tried.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Failed fetches since the last success.
    pub consecutive_failures: u32,
    /// When the first of those failures happened.
    pub failing_since: Option<DateTime<Utc>>,
    /// Why the last fetch failed, if it did.
    pub last_failure: Option<FetchFailure>,
    /// The chain the endpoint last presented.
    pub presented_chain: Option<Vec<Vec<u8>>>,
}

/// The facts shown for a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// When a fetch last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// How long ago that was.
    pub age: Option<Duration>,
    /// The sequence of the bundle held.
    pub sequence: Option<u64>,
    /// Whether the bundle held is still the bootstrap one.
    pub from_bootstrap: bool,
    /// The earliest notAfter among the held bundle's X.509 authorities.
    pub earliest_root_expiry: Option<DateTime<Utc>>,
    /// Failed fetches since the last success.
    pub consecutive_failures: u32,
    /// Why the last fetch failed, if it did.
    pub last_failure: Option<FetchFailure>,
    /// When the next fetch is due.
    pub next_refresh: DateTime<Utc>,
    /// What needs the operator's attention.
    pub warnings: Vec<Warning>,
}

impl PartnerState {
    /// A partner not fetched yet, trusting `bootstrap` until then.
    pub fn new(bootstrap: Option<Bundle>) -> PartnerState {
        PartnerState {
            bootstrap,
            ..PartnerState::default()
        }
    }

    /// The bundle we hold: the last good one, else the bootstrap one. An `https_spiffe`
    /// endpoint's SVID is checked against it.
    pub fn held(&self) -> Option<&Bundle> {
        self.last_good.as_ref().or(self.bootstrap.as_ref())
    }

    /// Takes in a fetch made at `now`: an accepted bundle replaces the last good one; on a
    /// failure the last good bundle stays.
    pub fn record(&mut self, fetched: Fetched, now: DateTime<Utc>) {
        self.last_attempt = Some(now);
        if fetched.presented_chain.is_some() {
            self.presented_chain = fetched.presented_chain;
        }
        match fetched.result {
            Ok(accepted) => {
                self.last_good = Some(accepted.into_bundle());
                self.last_success = Some(now);
                self.consecutive_failures = 0;
                self.failing_since = None;
                self.last_failure = None;
            }
            Err(failure) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.failing_since.get_or_insert(now);
                self.last_failure = Some(failure);
            }
        }
    }

    /// When the next fetch is due: right away if never tried, after the retry delay if the
    /// last one failed, else after the refresh interval of the bundle held.
    pub fn next_refresh(&self, policy: &RefreshPolicy, now: DateTime<Utc>) -> DateTime<Utc> {
        let Some(last) = self.last_attempt else {
            return now;
        };
        let every = refresh_interval(self.held(), policy).every;
        let wait = if self.consecutive_failures > 0 {
            retry_delay(self.consecutive_failures, every, policy)
        } else {
            every
        };
        last.checked_add_signed(wait)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The facts shown at `now`.
    pub fn freshness(&self, policy: &RefreshPolicy, now: DateTime<Utc>) -> Freshness {
        let held = self.held();
        let mut warnings = Vec::new();
        if let (Some(b), Some(chain)) = (held, &self.presented_chain)
            && let Some(m) = missing_signing_root(b, chain)
        {
            warnings.push(Warning::MissingSigningRoot(m));
        }
        if self.consecutive_failures >= policy.failing_after.max(1)
            && let Some(since) = self.failing_since
        {
            warnings.push(Warning::RefreshesFailing {
                failures: self.consecutive_failures,
                since,
            });
        }
        Freshness {
            last_success: self.last_success,
            age: self.last_success.map(|t| now - t),
            sequence: held.map(|b| b.sequence),
            from_bootstrap: self.last_good.is_none() && self.bootstrap.is_some(),
            earliest_root_expiry: held.and_then(earliest_root_expiry),
            consecutive_failures: self.consecutive_failures,
            last_failure: self.last_failure.clone(),
            next_refresh: self.next_refresh(policy, now),
            warnings,
        }
    }
}

/// The earliest notAfter among a bundle's X.509 authorities.
pub fn earliest_root_expiry(b: &Bundle) -> Option<DateTime<Utc>> {
    b.x509_authorities
        .iter()
        .filter_map(|der| trustdeck_spiffe::x509::cert_validity(der).ok())
        .map(|(_, na)| na)
        .min()
}

/// The issuer and authority key id of a DER certificate.
fn issuer_of(der: &[u8]) -> Option<(String, Option<Vec<u8>>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    Some((cert.issuer().to_string(), aki))
}

/// Whether a certificate is `root` or is issued by it (by key identifier, else by name).
fn anchored_by(root: &[u8], der: &[u8], issuer: &str, aki: Option<&[u8]>) -> bool {
    if root == der {
        return true;
    }
    let Ok(info) = trustdeck_spiffe::x509::check_ca(root) else {
        return false;
    };
    match (aki, info.subject_key_id.as_deref()) {
        (Some(aki), Some(ski)) => aki == ski,
        _ => info.subject == issuer,
    }
}

/// The root a chain the partner presented (DER, leaf first) is signed with, when `held`
/// lacks it; `None` when some root of `held` anchors the chain, or the chain cannot be read.
pub fn missing_signing_root(held: &Bundle, chain: &[Vec<u8>]) -> Option<MissingRoot> {
    for der in chain {
        let (issuer, aki) = issuer_of(der)?;
        if held
            .x509_authorities
            .iter()
            .any(|r| anchored_by(r, der, &issuer, aki.as_deref()))
        {
            return None;
        }
    }
    let (issuer, aki) = issuer_of(chain.last()?)?;
    Some(MissingRoot {
        issuer,
        key_id: aki.map(hex::encode),
    })
}

#[cfg(test)]
#[path = "freshness_tests.rs"]
mod tests;
