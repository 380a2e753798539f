//! X.509 certificate authorities: self-signed roots and SVID issuance.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rcgen::Issuer;
use ring::rand::{SecureRandom, SystemRandom};
use trustdeck_spiffe::{SpiffeId, TrustDomain, x509};

use crate::csr::VerifiedCsr;
use crate::keys::{RcgenKey, SigningKey};
use crate::rotation::Window;

/// How far back a new certificate's `not_before` is set, for clock skew.
pub const BACKDATE: Duration = Duration::seconds(10);

/// Why issuance failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The SPIFFE ID belongs to another trust domain.
    #[error("SPIFFE ID {id} is not in trust domain {td}")]
    ForeignTrustDomain {
        /// The requested ID.
        id: String,
        /// This CA's trust domain.
        td: String,
    },
    /// The CA is not valid at `now`.
    #[error("CA {subject} is not valid at {now} (valid {not_before} to {not_after})")]
    NotValid {
        subject: String,
        now: DateTime<Utc>,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    },
    /// The stored CA certificate does not belong to the key.
    #[error("CA certificate public key does not match signing key {0:?}")]
    KeyMismatch(String),
    /// The certificate does not follow the SPIFFE profile.
    #[error(transparent)]
    Profile(#[from] x509::ProfileError),
    /// rcgen failed to build or sign.
    #[error("certificate signing failed: {0}")]
    Sign(String),
    /// TTL is zero or negative.
    #[error("TTL must be positive, got {0}s")]
    BadTtl(i64),
    /// The TTL added to the issuance time is past any representable instant.
    #[error("TTL {0}s is too long: the expiry cannot be represented")]
    TtlTooLong(i64),
}

/// A signed SVID chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSvid {
    /// DER certificates: leaf first, then the CA's intermediates (never the root).
    pub chain: Vec<Vec<u8>>,
    pub not_after: DateTime<Utc>,
    /// Leaf serial, hex.
    pub serial_hex: String,
}

/// A signing CA: its certificate, the chain above it and its key.
pub struct X509Authority {
    trust_domain: TrustDomain,
    cert_der: Vec<u8>,
    /// Certificates between this CA and the root, nearest first; empty for a root.
    upstream_chain: Vec<Vec<u8>>,
    window: Window,
    subject: String,
    self_signed: bool,
    key: Arc<dyn SigningKey>,
    issuer: Issuer<'static, RcgenKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for X509Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Authority")
            .field("subject", &self.subject)
            .field("window", &self.window)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A random positive 128-bit serial.
pub fn random_serial(rng: &SystemRandom) -> Result<Vec<u8>, CaError> {
    let mut serial = [0u8; 16];
    rng.fill(&mut serial)
        .map_err(|_| CaError::Sign("random number generator failed".into()))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial.to_vec())
}

fn to_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Rounds up to a whole second (X.509 times have second precision): a TTL is never cut short
/// by truncation.
fn ceil_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    let down = to_secs(t);
    if down < t {
        down + Duration::seconds(1)
    } else {
        down
    }
}

/// Where a CA stands in its trust domain, as its subject says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Root,
    Intermediate,
}

impl Tier {
    fn word(self) -> &'static str {
        match self {
            Tier::Root => "root",
            Tier::Intermediate => "intermediate",
        }
    }
}

/// The X.520 `serialNumber` attribute: an identifier of the subject (here its key).
const DN_SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];

/// Makes a CA's subject its own: `OU=<trust domain> <tier>` and `serialNumber=<key id>`, the
/// first 8 bytes of its subject key identifier in hex (the prefix of its `x509:<skid>` node
/// id), so errors and `openssl` output tell one CA from another.
fn distinguish(
    params: &mut rcgen::CertificateParams,
    td: &TrustDomain,
    tier: Tier,
    key: &impl rcgen::PublicKeyData,
) -> Result<(), CaError> {
    let ski = params.key_identifier(key);
    let key_id = hex::encode(&ski[..ski.len().min(8)]);
    let key_id = rcgen::string::PrintableString::try_from(key_id)
        .map_err(|e| CaError::Sign(e.to_string()))?;
    let dn = &mut params.distinguished_name;
    dn.push(
        rcgen::DnType::OrganizationalUnitName,
        format!("{td} {}", tier.word()),
    );
    dn.push(
        rcgen::DnType::CustomDnType(DN_SERIAL_NUMBER.to_vec()),
        rcgen::DnValue::PrintableString(key_id),
    );
    Ok(())
}

impl X509Authority {
    /// Mints a self-signed root CA valid from `now` for `ttl`.
    pub fn self_signed(
        td: &TrustDomain,
        key: Arc<dyn SigningKey>,
        common_name: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        if ttl <= Duration::zero() {
            return Err(CaError::BadTtl(ttl.num_seconds()));
        }
        let rng = SystemRandom::new();
        let serial = random_serial(&rng)?;
        let nb = to_secs(now);
        let na = nb
            .checked_add_signed(ttl)
            .ok_or(CaError::TtlTooLong(ttl.num_seconds()))?;
        let mut params = x509::ca_params(td, common_name, &serial, nb, na, None)?;
        let signer = RcgenKey(key.clone());
        distinguish(&mut params, td, Tier::Root, &signer)?;
        let cert = params
            .self_signed(&signer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Self::from_parts(td, cert.der().to_vec(), Vec::new(), key)
    }

    /// Rebuilds an authority from its stored certificate, the chain above it and its key
    /// (after a restart). Refuses a key that does not match the certificate.
    pub fn from_parts(
        td: &TrustDomain,
        cert_der: Vec<u8>,
        upstream_chain: Vec<Vec<u8>>,
        key: Arc<dyn SigningKey>,
    ) -> Result<Self, CaError> {
        let info = x509::check_ca(&cert_der)?;
        if info.public_key_spki_der != key.public_key_spki() {
            return Err(CaError::KeyMismatch(key.key_id().to_string()));
        }
        let signer = RcgenKey(key.clone());
        let self_signed = match x509_parser::parse_x509_certificate(&cert_der) {
            Ok((_, c)) => c.subject() == c.issuer(),
            Err(_) => false,
        };
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), signer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(Self {
            trust_domain: td.clone(),
            cert_der,
            upstream_chain,
            window: Window::new(info.not_before, info.not_after),
            subject: info.subject,
            self_signed,
            key,
            issuer,
            rng: SystemRandom::new(),
        })
    }

    /// This CA's certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Certificates between this CA and the root (empty for a root).
    pub fn upstream_chain(&self) -> &[Vec<u8>] {
        &self.upstream_chain
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Subject, for display.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The signing key.
    pub fn key(&self) -> &Arc<dyn SigningKey> {
        &self.key
    }

    /// Issues an X509-SVID for `id` over the CSR's public key, valid from `now` for `ttl`,
    /// never past this CA's own expiry.
    pub fn issue_x509_svid(
        &self,
        csr: &VerifiedCsr,
        id: &SpiffeId,
        dns_names: &[String],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<IssuedSvid, CaError> {
        if id.trust_domain() != &self.trust_domain {
            return Err(CaError::ForeignTrustDomain {
                id: id.to_string(),
                td: self.trust_domain.to_string(),
            });
        }
        let (not_before, not_after) = self.validity(ttl, now)?;
        let serial = random_serial(&self.rng)?;
        let params = x509::leaf_params(id, dns_names, &serial, not_before, not_after)?;
        let cert = params
            .signed_by(csr, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let chain = self.chain_with(cert.der().to_vec());
        Ok(IssuedSvid {
            chain,
            not_after,
            serial_hex: hex::encode(&serial),
        })
    }

    /// Signs an intermediate CA over the CSR's key for a downstream server, valid from `now`
    /// for `ttl` but never past this CA's own expiry. The chain returned is the new
    /// intermediate followed by this CA's chain up to (not including) the root.
    pub fn sign_intermediate(
        &self,
        csr: &VerifiedCsr,
        common_name: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<IssuedSvid, CaError> {
        let (not_before, not_after) = self.validity(ttl, now)?;
        let serial = random_serial(&self.rng)?;
        let mut params = x509::ca_params(
            &self.trust_domain,
            common_name,
            &serial,
            not_before,
            not_after,
            None,
        )?;
        distinguish(&mut params, &self.trust_domain, Tier::Intermediate, csr)?;
        let cert = params
            .signed_by(csr, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let chain = self.chain_with(cert.der().to_vec());
        Ok(IssuedSvid {
            chain,
            not_after,
            serial_hex: hex::encode(&serial),
        })
    }

    /// The validity of a certificate issued at `now` for `ttl`: backdated for clock skew,
    /// never before nor after this CA's own window.
    fn validity(
        &self,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), CaError> {
        if ttl <= Duration::zero() {
            return Err(CaError::BadTtl(ttl.num_seconds()));
        }
        if !self.window.contains(now) {
            return Err(CaError::NotValid {
                subject: self.subject.clone(),
                now,
                not_before: self.window.not_before,
                not_after: self.window.not_after,
            });
        }
        // A TTL too large to add is simply capped at this CA's expiry.
        let requested = now
            .checked_add_signed(ttl)
            .map(ceil_secs)
            .unwrap_or(self.window.not_after);
        Ok((
            std::cmp::max(to_secs(now) - BACKDATE, self.window.not_before),
            std::cmp::min(requested, self.window.not_after),
        ))
    }

    /// `issued` followed by this CA's chain up to (not including) the root.
    fn chain_with(&self, issued: Vec<u8>) -> Vec<Vec<u8>> {
        let mut chain = Vec::with_capacity(2 + self.upstream_chain.len());
        chain.push(issued);
        if !self.is_root() {
            chain.push(self.cert_der.clone());
            chain.extend(self.upstream_chain.iter().cloned());
        }
        chain
    }

    /// Whether this CA is a self-signed root.
    pub fn is_root(&self) -> bool {
        self.self_signed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::{make_csr, verify_csr};
    use crate::keys::SoftwareKey;
    use x509_parser::prelude::parse_x509_certificate;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn key() -> Arc<dyn SigningKey> {
        Arc::new(SoftwareKey::ephemeral().unwrap().0)
    }

    fn root() -> X509Authority {
        let td = TrustDomain::parse("example.org").unwrap();
        X509Authority::self_signed(&td, key(), "trustdeck root", now(), Duration::hours(24))
            .unwrap()
    }

    #[test]
    fn root_is_a_spiffe_ca() {
        let ca = root();
        let info = x509::check_ca(ca.cert_der()).unwrap();
        assert_eq!(info.not_before, now());
        assert_eq!(info.not_after, now() + Duration::hours(24));
        assert!(ca.is_root());
        let (_, c) = parse_x509_certificate(ca.cert_der()).unwrap();
        c.verify_signature(None).unwrap();
    }

    #[test]
    fn issued_leaf_chains_to_root_and_is_capped() {
        let ca = root();
        let wk = key();
        let id = SpiffeId::parse("spiffe://example.org/prod/gcp/payments/api").unwrap();
        let csr = verify_csr(&make_csr(&wk, Some(&id)).unwrap()).unwrap();
        let t = now() + Duration::minutes(1);
        let svid = ca
            .issue_x509_svid(&csr, &id, &[], Duration::hours(1), t)
            .unwrap();
        assert_eq!(svid.chain.len(), 1, "root-issued chains hold the leaf only");
        let leaf = x509::check_leaf(&svid.chain[0]).unwrap();
        assert_eq!(leaf.spiffe_id, id);
        assert_eq!(leaf.not_before, t - BACKDATE);
        assert_eq!(leaf.not_after, t + Duration::hours(1));
        // Backdating never reaches before the CA's own not_before.
        let early = ca
            .issue_x509_svid(&csr, &id, &[], Duration::hours(1), now())
            .unwrap();
        assert_eq!(x509::check_leaf(&early.chain[0]).unwrap().not_before, now());
        assert_eq!(leaf.public_key_spki_der, wk.public_key_spki());
        let (_, c) = parse_x509_certificate(&svid.chain[0]).unwrap();
        let (_, r) = parse_x509_certificate(ca.cert_der()).unwrap();
        c.verify_signature(Some(r.public_key())).unwrap();
        // A TTL past the CA's expiry is capped at the CA's not_after.
        let late = now() + Duration::hours(23);
        let svid = ca
            .issue_x509_svid(&csr, &id, &[], Duration::hours(5), late)
            .unwrap();
        assert_eq!(svid.not_after, now() + Duration::hours(24));
        // An expired CA issues nothing.
        let err = ca
            .issue_x509_svid(
                &csr,
                &id,
                &[],
                Duration::hours(1),
                now() + Duration::hours(25),
            )
            .unwrap_err();
        assert!(matches!(err, CaError::NotValid { .. }), "{err}");
    }

    #[test]
    fn intermediates_chain_to_the_root_and_issue_leaves() {
        let root = root();
        let td = TrustDomain::parse("example.org").unwrap();
        let ik = key();
        let csr = verify_csr(&make_csr(&ik, None).unwrap()).unwrap();
        let t = now() + Duration::minutes(1);
        // Asked for longer than the root lives: capped at the root's expiry.
        let issued = root
            .sign_intermediate(&csr, "segment CA", Duration::days(30), t)
            .unwrap();
        assert_eq!(issued.chain.len(), 1);
        assert_eq!(issued.not_after, root.window().not_after);
        let info = x509::check_ca(&issued.chain[0]).unwrap();
        assert_eq!(info.not_after, root.window().not_after);
        let (_, c) = parse_x509_certificate(&issued.chain[0]).unwrap();
        let (_, r) = parse_x509_certificate(root.cert_der()).unwrap();
        c.verify_signature(Some(r.public_key())).unwrap();
        // The intermediate issues leaves whose chain is leaf, intermediate.
        let inter = X509Authority::from_parts(&td, issued.chain[0].clone(), vec![], ik).unwrap();
        assert!(!inter.is_root());
        let wk = key();
        let id = SpiffeId::parse("spiffe://example.org/dmz/web").unwrap();
        let leaf_csr = verify_csr(&make_csr(&wk, Some(&id)).unwrap()).unwrap();
        let svid = inter
            .issue_x509_svid(&leaf_csr, &id, &[], Duration::hours(1), t)
            .unwrap();
        assert_eq!(svid.chain.len(), 2);
        assert_eq!(svid.chain[1], issued.chain[0]);
        // A second level: its chain carries both intermediates.
        let k2 = key();
        let csr2 = verify_csr(&make_csr(&k2, None).unwrap()).unwrap();
        let level2 = inter
            .sign_intermediate(&csr2, "leaf segment CA", Duration::hours(2), t)
            .unwrap();
        assert_eq!(level2.chain.len(), 2);
        assert_eq!(level2.chain[1], issued.chain[0]);
    }

    #[test]
    fn sub_second_now_never_shortens_the_ttl() {
        let ca = root();
        let wk = key();
        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let csr = verify_csr(&make_csr(&wk, Some(&id)).unwrap()).unwrap();
        let t = now() + Duration::milliseconds(60_700);
        let svid = ca
            .issue_x509_svid(&csr, &id, &[], Duration::seconds(2), t)
            .unwrap();
        assert!(
            svid.not_after >= t + Duration::seconds(2),
            "{} < {}",
            svid.not_after,
            t
        );
        assert!(svid.not_after < t + Duration::seconds(3));
    }

    /// Issue 12, defect 17: every CA had the subject `O=SPIFFE, CN=trustdeck CA`, so a chain
    /// from another CA failed as a bad signature, and nothing told the CAs apart.
    #[test]
    fn each_ca_has_a_subject_naming_trust_domain_tier_and_key() {
        let (a, b) = (root(), root());
        assert_ne!(a.subject(), b.subject());
        let ski = x509::check_ca(a.cert_der())
            .unwrap()
            .subject_key_id
            .unwrap();
        for part in ["O=SPIFFE", "example.org root", &hex::encode(&ski[..8])] {
            assert!(a.subject().contains(part), "{part}: {}", a.subject());
        }
        let csr = verify_csr(&make_csr(&key(), None).unwrap()).unwrap();
        let issued = a
            .sign_intermediate(&csr, "segment CA", Duration::hours(1), now())
            .unwrap();
        let info = x509::check_ca(&issued.chain[0]).unwrap();
        let ski = info.subject_key_id.unwrap();
        for part in [
            "segment CA",
            "example.org intermediate",
            &hex::encode(&ski[..8]),
        ] {
            assert!(info.subject.contains(part), "{part}: {}", info.subject);
        }
    }

    /// Issue 12, defect 6: a huge CA TTL panicked with "DateTime + TimeDelta overflowed".
    #[test]
    fn a_ttl_past_any_instant_is_an_error_not_a_panic() {
        let td = TrustDomain::parse("example.org").unwrap();
        for ttl in [Duration::hours(999_999_999_999), Duration::MAX] {
            let e = X509Authority::self_signed(&td, key(), "root", now(), ttl).unwrap_err();
            assert!(matches!(e, CaError::TtlTooLong(_)), "{e}");
        }
        // Representable by chrono but not by an X.509 time: a profile error, no panic.
        let e = X509Authority::self_signed(&td, key(), "root", now(), Duration::days(3_000_000))
            .unwrap_err();
        assert!(matches!(e, CaError::Profile(_)), "{e}");
    }

    #[test]
    fn refuses_foreign_trust_domain_and_mismatched_key() {
        let ca = root();
        let wk = key();
        let id = SpiffeId::parse("spiffe://other.org/x").unwrap();
        let csr = verify_csr(&make_csr(&wk, Some(&id)).unwrap()).unwrap();
        assert!(matches!(
            ca.issue_x509_svid(&csr, &id, &[], Duration::hours(1), now()),
            Err(CaError::ForeignTrustDomain { .. })
        ));
        let td = TrustDomain::parse("example.org").unwrap();
        assert!(matches!(
            X509Authority::from_parts(&td, ca.cert_der().to_vec(), vec![], key()),
            Err(CaError::KeyMismatch(_))
        ));
        // The right key is accepted and signs the same way.
        let again =
            X509Authority::from_parts(&td, ca.cert_der().to_vec(), vec![], ca.key().clone())
                .unwrap();
        assert_eq!(again.window(), ca.window());
    }
}
