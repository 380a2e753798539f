//! SPIFFE trust bundles and their JSON (JWK Set) and PEM forms.
//!
//! The JSON form follows the SPIFFE Trust Domain and Bundle standard:
//!
//! ```json
//! {"keys": [
//!    {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "..", "y": "..", "x5c": ["<std base64 DER>"]},
//!    {"use": "jwt-svid", "kty": "EC", "crv": "P-256", "kid": "..", "x": "..", "y": ".."}],
//!  "spiffe_sequence": 1, "spiffe_refresh_hint": 300}
//! ```
//!
//! Keys with an unknown `use`, `kty` or `crv` are skipped when parsing.
//! The optional `expires_at` of a [`JwtAuthority`] is not part of the
//! standard format and is not written to JSON (it parses back as `None`).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::der::{self, Curve, PublicKey};
use crate::id::TrustDomain;
use crate::pem::{self, PemError};

/// Standard-alphabet base64 decoder, padding optional.
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe base64 decoder, padding optional.
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `use` value of X.509 authorities.
pub const USE_X509_SVID: &str = "x509-svid";
/// `use` value of JWT authorities.
pub const USE_JWT_SVID: &str = "jwt-svid";

/// The largest SPIFFE bundle document of a foreign trust domain that servers fetch by default,
/// hand on to downstream servers and agents, and that agents take.
pub const MAX_FOREIGN_BUNDLE_BYTES: usize = 1 << 20;

/// A SPIFFE bundle could not be parsed or serialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The document is larger than [`MAX_FOREIGN_BUNDLE_BYTES`].
    #[error(
        "SPIFFE bundle for {trust_domain:?}: {bytes} bytes, more than {MAX_FOREIGN_BUNDLE_BYTES}"
    )]
    TooLarge {
        /// The trust domain being parsed.
        trust_domain: String,
        /// The document's size.
        bytes: usize,
    },
    /// The document is not valid JSON.
    #[error("SPIFFE bundle for {trust_domain:?}: invalid JSON: {reason}")]
    InvalidJson {
        /// The trust domain being parsed.
        trust_domain: String,
        /// The JSON parser's message.
        reason: String,
    },
    /// A top-level member is missing or has the wrong type.
    #[error("SPIFFE bundle for {trust_domain:?}: member {field:?} {reason}")]
    InvalidField {
        /// The trust domain being parsed.
        trust_domain: String,
        /// The member name (or `(document)` for the top level).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A key entry is malformed (wrong type, missing parameter, bad length).
    #[error("SPIFFE bundle for {trust_domain:?}: key #{index}: {reason}")]
    InvalidKey {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the key in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `jwt-svid` key has no `kid`.
    #[error(
        "SPIFFE bundle for {trust_domain:?}: key #{index} (use \"jwt-svid\") has no \"kid\"; JWT authorities must carry a key ID"
    )]
    MissingKeyId {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the key.
        index: usize,
    },
    /// Two `jwt-svid` keys share a `kid`.
    #[error("SPIFFE bundle for {trust_domain:?}: key #{index} repeats kid {kid:?}")]
    DuplicateKeyId {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the second key.
        index: usize,
        /// The repeated key ID.
        kid: String,
    },
    /// An `x509-svid` key does not have exactly one `x5c` entry.
    #[error(
        "SPIFFE bundle for {trust_domain:?}: key #{index} (use \"x509-svid\") must have exactly one certificate in \"x5c\", found {count}"
    )]
    X5cCount {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the key.
        index: usize,
        /// Number of entries found.
        count: usize,
    },
    /// A base64 member could not be decoded.
    #[error(
        "SPIFFE bundle for {trust_domain:?}: key #{index}: member {field:?} is not valid {encoding}: {reason}"
    )]
    BadBase64 {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the key.
        index: usize,
        /// The member name.
        field: &'static str,
        /// Expected encoding (base64 or base64url).
        encoding: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// An X.509 authority is not a parseable certificate.
    #[error(
        "SPIFFE bundle for {trust_domain:?}: certificate #{index} is not valid X.509 DER: {reason}"
    )]
    BadCertificate {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the key or certificate.
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// An `x509-svid` key's JWK parameters differ from its certificate's key.
    #[error(
        "SPIFFE bundle for {trust_domain:?}: key #{index}: JWK public key parameters do not match the key of the certificate in \"x5c\""
    )]
    KeyMismatch {
        /// The trust domain being parsed.
        trust_domain: String,
        /// Zero-based index of the key.
        index: usize,
    },
    /// The PEM text could not be decoded.
    #[error("SPIFFE bundle for {trust_domain:?}: {source}")]
    Pem {
        /// The trust domain being parsed.
        trust_domain: String,
        /// The PEM error.
        source: PemError,
    },
    /// An authority's key cannot be written as a JWK.
    #[error("SPIFFE bundle for {trust_domain:?}: {what} cannot be written as a JWK: {reason}")]
    Unrepresentable {
        /// The bundle's trust domain.
        trust_domain: String,
        /// Which authority (e.g. `x509 authority #0`, `JWT authority "kid"`).
        what: String,
        /// Why.
        reason: String,
    },
}

/// A JWT signing authority: a key ID and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    /// The key ID (`kid`).
    pub key_id: String,
    /// DER SubjectPublicKeyInfo of the public key.
    pub public_key_spki_der: Vec<u8>,
    /// When the key stops being used, if known (not part of the JSON form).
    pub expires_at: Option<DateTime<Utc>>,
}

/// The trust bundle of one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The trust domain the bundle belongs to.
    pub trust_domain: TrustDomain,
    /// X.509 authorities, DER certificates, in order.
    pub x509_authorities: Vec<Vec<u8>>,
    /// JWT authorities, in order.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// `spiffe_sequence`.
    pub sequence: u64,
    /// `spiffe_refresh_hint` in seconds.
    pub refresh_hint_secs: Option<u64>,
}

fn b64url(data: &[u8]) -> Value {
    Value::String(URL_SAFE_NO_PAD.encode(data))
}

/// The JWK members describing a public key (kty and its parameters).
fn jwk_params(spki: &[u8]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    match der::parse_spki(spki)? {
        PublicKey::Ec { curve, point } => {
            let n = curve.coordinate_len();
            m.insert("kty".into(), "EC".into());
            m.insert("crv".into(), curve.jwk_name().into());
            m.insert("x".into(), b64url(&point[1..=n]));
            m.insert("y".into(), b64url(&point[1 + n..]));
        }
        PublicKey::Rsa { n, e, .. } => {
            m.insert("kty".into(), "RSA".into());
            m.insert("n".into(), b64url(&n));
            m.insert("e".into(), b64url(&e));
        }
    }
    Ok(m)
}

impl Bundle {
    /// An empty bundle (sequence 0, no refresh hint).
    pub fn new(trust_domain: TrustDomain) -> Bundle {
        Bundle {
            trust_domain,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            sequence: 0,
            refresh_hint_secs: None,
        }
    }

    /// Adds an X.509 authority unless the same DER is already present;
    /// returns whether it was added.
    pub fn add_x509_authority(&mut self, der: Vec<u8>) -> bool {
        if self.x509_authorities.contains(&der) {
            return false;
        }
        self.x509_authorities.push(der);
        true
    }

    /// Adds or replaces (by key ID) a JWT authority.
    pub fn set_jwt_authority(&mut self, authority: JwtAuthority) {
        match self
            .jwt_authorities
            .iter_mut()
            .find(|a| a.key_id == authority.key_id)
        {
            Some(existing) => *existing = authority,
            None => self.jwt_authorities.push(authority),
        }
    }

    /// The JWT authority with this key ID.
    pub fn jwt_authority(&self, key_id: &str) -> Option<&JwtAuthority> {
        self.jwt_authorities.iter().find(|a| a.key_id == key_id)
    }

    fn unrepresentable(&self, what: String, reason: String) -> BundleError {
        BundleError::Unrepresentable {
            trust_domain: self.trust_domain.to_string(),
            what,
            reason,
        }
    }

    fn x509_jwk(&self, index: usize, cert: &[u8]) -> Result<Value, BundleError> {
        let what = || format!("x509 authority #{index}");
        let spki = crate::x509::public_key_of(cert)
            .map_err(|e| self.unrepresentable(what(), e.to_string()))?;
        let mut jwk = jwk_params(&spki).map_err(|e| self.unrepresentable(what(), e))?;
        jwk.insert("use".into(), USE_X509_SVID.into());
        jwk.insert(
            "x5c".into(),
            Value::Array(vec![Value::String(STANDARD.encode(cert))]),
        );
        Ok(Value::Object(jwk))
    }

    fn jwt_jwk(&self, authority: &JwtAuthority) -> Result<Value, BundleError> {
        let what = || format!("JWT authority {:?}", authority.key_id);
        if authority.key_id.is_empty() {
            return Err(self.unrepresentable(what(), "empty key ID".into()));
        }
        let mut jwk = jwk_params(&authority.public_key_spki_der)
            .map_err(|e| self.unrepresentable(what(), e))?;
        jwk.insert("use".into(), USE_JWT_SVID.into());
        jwk.insert("kid".into(), authority.key_id.clone().into());
        Ok(Value::Object(jwk))
    }

    /// All keys as JWKs; with `strict`, the first unrepresentable key is an
    /// error, otherwise such keys are left out.
    fn keys_json(&self, strict: bool, x509: bool) -> Result<Vec<Value>, BundleError> {
        let mut keys = Vec::new();
        let x509_iter = self
            .x509_authorities
            .iter()
            .enumerate()
            .filter(|_| x509)
            .map(|(i, c)| self.x509_jwk(i, c));
        let jwt_iter = self.jwt_authorities.iter().map(|a| self.jwt_jwk(a));
        for key in x509_iter.chain(jwt_iter) {
            match key {
                Ok(k) => keys.push(k),
                Err(e) if strict => return Err(e),
                Err(_) => {}
            }
        }
        Ok(keys)
    }

    fn document(&self, keys: Vec<Value>) -> String {
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        doc.insert("spiffe_sequence".into(), self.sequence.into());
        if let Some(hint) = self.refresh_hint_secs {
            doc.insert("spiffe_refresh_hint".into(), hint.into());
        }
        Value::Object(doc).to_string()
    }

    /// Serializes the bundle as SPIFFE bundle JSON, failing if an authority's
    /// key cannot be expressed as a JWK (unsupported key type, unparsable
    /// certificate, empty kid).
    pub fn try_to_json(&self) -> Result<String, BundleError> {
        Ok(self.document(self.keys_json(true, true)?))
    }

    /// Serializes the bundle as SPIFFE bundle JSON (compact). X.509
    /// authorities come first, then JWT authorities, each in stored order.
    ///
    /// Authorities whose key cannot be expressed as a JWK (only EC P-256,
    /// P-384 and RSA can) are left out; use [`Bundle::try_to_json`] to get
    /// an error instead.
    pub fn to_json(&self) -> String {
        self.document(self.keys_json(false, true).unwrap_or_default())
    }

    /// A JWK Set holding only the JWT authorities (for the Workload API's
    /// FetchJWTBundles). Keys that cannot be expressed as a JWK are left out.
    pub fn jwks_json(&self) -> String {
        let mut doc = Map::new();
        let keys = self.keys_json(false, false).unwrap_or_default();
        doc.insert("keys".into(), Value::Array(keys));
        Value::Object(doc).to_string()
    }

    /// The X.509 authorities as concatenated CERTIFICATE PEM blocks.
    pub fn to_pem(&self) -> String {
        pem::encode_certs(&self.x509_authorities)
    }

    /// The X.509 authorities' DER, concatenated (Workload API form).
    pub fn x509_authorities_der_concat(&self) -> Vec<u8> {
        self.x509_authorities.concat()
    }

    /// A bundle holding the CERTIFICATE blocks of `pem_text` as X.509
    /// authorities (each must parse as X.509).
    pub fn from_pem_x509(td: &TrustDomain, pem_text: &str) -> Result<Bundle, BundleError> {
        let certs = pem::decode_certs(pem_text).map_err(|source| BundleError::Pem {
            trust_domain: td.to_string(),
            source,
        })?;
        for (index, cert) in certs.iter().enumerate() {
            check_cert(td, index, cert)?;
        }
        let mut bundle = Bundle::new(td.clone());
        bundle.x509_authorities = certs;
        Ok(bundle)
    }

    /// [`Bundle::from_json`] of a foreign trust domain's document handed on, refused above
    /// [`MAX_FOREIGN_BUNDLE_BYTES`] before it is parsed.
    pub fn from_foreign_json(td: &TrustDomain, json: &[u8]) -> Result<Bundle, BundleError> {
        if json.len() > MAX_FOREIGN_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                trust_domain: td.to_string(),
                bytes: json.len(),
            });
        }
        Self::from_json(td, json)
    }

    /// Parses SPIFFE bundle JSON for trust domain `td`.
    pub fn from_json(td: &TrustDomain, json: &[u8]) -> Result<Bundle, BundleError> {
        let tdn = || td.to_string();
        let doc: Value = serde_json::from_slice(json).map_err(|e| BundleError::InvalidJson {
            trust_domain: tdn(),
            reason: e.to_string(),
        })?;
        let Value::Object(doc) = doc else {
            return Err(BundleError::InvalidField {
                trust_domain: tdn(),
                field: "(document)",
                reason: "must be a JSON object".into(),
            });
        };
        let field_err = |field: &'static str, reason: &str| BundleError::InvalidField {
            trust_domain: tdn(),
            field,
            reason: reason.to_string(),
        };
        let keys = match doc.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(field_err("keys", "must be an array")),
            None => return Err(field_err("keys", "is missing")),
        };
        let read_u64 = |field: &'static str| -> Result<Option<u64>, BundleError> {
            match doc.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    field_err(field, &format!("must be a non-negative integer, got {v}"))
                }),
            }
        };
        let sequence = read_u64("spiffe_sequence")?.unwrap_or(0);
        let refresh_hint_secs = read_u64("spiffe_refresh_hint")?;

        let mut bundle = Bundle::new(td.clone());
        bundle.sequence = sequence;
        bundle.refresh_hint_secs = refresh_hint_secs;
        for (index, key) in keys.iter().enumerate() {
            let ctx = KeyCtx { td, index };
            let Value::Object(key) = key else {
                return Err(ctx.invalid("must be a JSON object"));
            };
            let use_ = match key.get("use") {
                Some(Value::String(u)) => u.as_str(),
                _ => continue, // unknown or absent use: skipped
            };
            if use_ != USE_X509_SVID && use_ != USE_JWT_SVID {
                continue;
            }
            let Some(params) = ctx.key_params(key)? else {
                continue; // unknown kty or crv: skipped
            };
            if use_ == USE_X509_SVID {
                let x5c = match key.get("x5c") {
                    Some(Value::Array(a)) => a,
                    Some(_) => return Err(ctx.invalid("\"x5c\" must be an array of strings")),
                    None => {
                        return Err(BundleError::X5cCount {
                            trust_domain: tdn(),
                            index,
                            count: 0,
                        });
                    }
                };
                if x5c.len() != 1 {
                    return Err(BundleError::X5cCount {
                        trust_domain: tdn(),
                        index,
                        count: x5c.len(),
                    });
                }
                let Value::String(cert_b64) = &x5c[0] else {
                    return Err(ctx.invalid("\"x5c\" entries must be strings"));
                };
                let cert = STD_LENIENT
                    .decode(cert_b64)
                    .map_err(|e| ctx.base64("x5c", "base64", e))?;
                let spki = check_cert(td, index, &cert)?;
                let cert_key = der::parse_spki(&spki)
                    .map_err(|e| ctx.invalid(&format!("certificate key is not supported: {e}")))?;
                if !same_key(&cert_key, &params) {
                    return Err(BundleError::KeyMismatch {
                        trust_domain: tdn(),
                        index,
                    });
                }
                bundle.x509_authorities.push(cert);
            } else {
                let kid = match key.get("kid") {
                    Some(Value::String(k)) if !k.is_empty() => k.clone(),
                    Some(Value::String(_)) | None | Some(Value::Null) => {
                        return Err(BundleError::MissingKeyId {
                            trust_domain: tdn(),
                            index,
                        });
                    }
                    Some(_) => return Err(ctx.invalid("\"kid\" must be a string")),
                };
                if bundle.jwt_authority(&kid).is_some() {
                    return Err(BundleError::DuplicateKeyId {
                        trust_domain: tdn(),
                        index,
                        kid,
                    });
                }
                let spki = match &params {
                    PublicKey::Ec { curve, point } => der::ec_spki(*curve, point),
                    PublicKey::Rsa { n, e, .. } => der::rsa_spki(n, e),
                };
                bundle.jwt_authorities.push(JwtAuthority {
                    key_id: kid,
                    public_key_spki_der: spki,
                    expires_at: None,
                });
            }
        }
        Ok(bundle)
    }
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    match (a, b) {
        (
            PublicKey::Ec {
                curve: ca,
                point: pa,
            },
            PublicKey::Ec {
                curve: cb,
                point: pb,
            },
        ) => ca == cb && pa == pb,
        (PublicKey::Rsa { n: na, e: ea, .. }, PublicKey::Rsa { n: nb, e: eb, .. }) => {
            na == nb && ea == eb
        }
        _ => false,
    }
}

/// Checks that `cert` is a single parseable X.509 certificate; returns its SPKI.
fn check_cert(td: &TrustDomain, index: usize, cert: &[u8]) -> Result<Vec<u8>, BundleError> {
    let bad = |reason: String| BundleError::BadCertificate {
        trust_domain: td.to_string(),
        index,
        reason,
    };
    let (rest, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(parsed.public_key().raw.to_vec())
}

/// Context for errors about key #index.
struct KeyCtx<'a> {
    td: &'a TrustDomain,
    index: usize,
}

impl KeyCtx<'_> {
    fn invalid(&self, reason: &str) -> BundleError {
        BundleError::InvalidKey {
            trust_domain: self.td.to_string(),
            index: self.index,
            reason: reason.to_string(),
        }
    }

    fn base64(&self, field: &'static str, encoding: &'static str, e: impl ToString) -> BundleError {
        BundleError::BadBase64 {
            trust_domain: self.td.to_string(),
            index: self.index,
            field,
            encoding,
            reason: e.to_string(),
        }
    }

    fn b64url_member(
        &self,
        key: &Map<String, Value>,
        field: &'static str,
    ) -> Result<Vec<u8>, BundleError> {
        match key.get(field) {
            Some(Value::String(s)) => {
                if s.contains(['+', '/']) {
                    return Err(self.base64(
                        field,
                        "base64url",
                        "uses the standard alphabet ('+' or '/'), base64url is required",
                    ));
                }
                URL_LENIENT
                    .decode(s)
                    .map_err(|e| self.base64(field, "base64url", e))
            }
            Some(_) => Err(self.invalid(&format!("{field:?} must be a string"))),
            None => Err(self.invalid(&format!("{field:?} is missing"))),
        }
    }

    /// The public key described by the JWK members, or None for an unknown
    /// kty or curve.
    fn key_params(&self, key: &Map<String, Value>) -> Result<Option<PublicKey>, BundleError> {
        let kty = match key.get("kty") {
            Some(Value::String(k)) => k.as_str(),
            _ => return Ok(None),
        };
        match kty {
            "EC" => {
                let curve = match key.get("crv").and_then(Value::as_str) {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    _ => return Ok(None),
                };
                let x = self.b64url_member(key, "x")?;
                let y = self.b64url_member(key, "y")?;
                let n = curve.coordinate_len();
                if x.len() != n || y.len() != n {
                    return Err(self.invalid(&format!(
                        "{} coordinates must be {n} bytes each, got x={} y={}",
                        curve.jwk_name(),
                        x.len(),
                        y.len()
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * n);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(Some(PublicKey::Ec { curve, point }))
            }
            "RSA" => {
                let n = self.b64url_member(key, "n")?;
                let e = self.b64url_member(key, "e")?;
                let n = der::strip_leading_zeros(&n).to_vec();
                let e = der::strip_leading_zeros(&e).to_vec();
                if n.iter().all(|&b| b == 0) || e.iter().all(|&b| b == 0) {
                    return Err(self.invalid("RSA \"n\" and \"e\" must be positive"));
                }
                Ok(Some(PublicKey::Rsa {
                    der: Vec::new(),
                    n,
                    e,
                }))
            }
            _ => Ok(None),
        }
    }
}
