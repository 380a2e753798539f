//! JWT-SVIDs: minting (ES256) and validation (ES256/ES384, RS256/384/512,
//! PS256/384/512).
//!
//! A JWT-SVID is a JWS in compact serialization. Its header has `alg`,
//! `kid` and optionally `typ` (`JWT` or `JOSE`); its claims must include
//! `sub` (a SPIFFE ID), `aud` (a string or a non-empty array of strings)
//! and `exp` (a NumericDate).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::bundle::JwtAuthority;
use crate::der::{self, Curve, PublicKey};
use crate::id::{IdError, SpiffeId};

/// Algorithms the parser accepts in a JWT-SVID header.
pub const ACCEPTED_ALGORITHMS: [&str; 9] = [
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
];

/// A JWT-SVID could not be minted or failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token string was empty.
    #[error("JWT-SVID: token is empty")]
    EmptyToken,
    /// The audience to validate against was empty.
    #[error("JWT-SVID: the expected audience must not be empty")]
    EmptyAudience,
    /// The token is not three dot-separated base64url parts.
    #[error("JWT-SVID: malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The header is not valid JSON or has wrongly typed members.
    #[error("JWT-SVID: invalid header {header:?}: {reason}")]
    InvalidHeader {
        /// The decoded header text.
        header: String,
        /// What is wrong.
        reason: String,
    },
    /// The `alg` is not allowed for JWT-SVIDs (e.g. `none`, `HS256`).
    #[error(
        "JWT-SVID: algorithm {alg:?} is not allowed (allowed: ES256/384/512, RS256/384/512, PS256/384/512)"
    )]
    UnsupportedAlgorithm {
        /// The offending algorithm.
        alg: String,
    },
    /// The `alg` is allowed by the standard but this implementation cannot verify it.
    #[error("JWT-SVID: algorithm {alg:?} is allowed but not supported for verification here")]
    UnverifiableAlgorithm {
        /// The algorithm.
        alg: String,
    },
    /// The `typ` is neither absent, `JWT` nor `JOSE`.
    #[error("JWT-SVID: header typ {typ:?} is not allowed (must be absent, \"JWT\" or \"JOSE\")")]
    InvalidType {
        /// The offending type.
        typ: String,
    },
    /// The header lists critical extensions, which are not supported.
    #[error("JWT-SVID: header has \"crit\" extensions {crit}, none are supported")]
    CriticalHeader {
        /// The `crit` value as JSON.
        crit: String,
    },
    /// The header has no `kid`.
    #[error("JWT-SVID: header has no \"kid\" (key ID is required to select the JWT authority)")]
    MissingKeyId,
    /// No authority has the token's `kid`.
    #[error("JWT-SVID: no JWT authority with kid {kid:?}")]
    UnknownKeyId {
        /// The token's key ID.
        kid: String,
    },
    /// The authority's key type does not match the token's algorithm.
    #[error("JWT-SVID: JWT authority {kid:?} has a key that cannot verify {alg}: {reason}")]
    KeyMismatch {
        /// The key ID.
        kid: String,
        /// The token's algorithm.
        alg: String,
        /// Why the key does not fit.
        reason: String,
    },
    /// The signature did not verify.
    #[error("JWT-SVID: signature verification failed with JWT authority {kid:?}")]
    BadSignature {
        /// The key ID.
        kid: String,
    },
    /// The claims are not a valid JSON object.
    #[error("JWT-SVID: invalid claims: {reason}")]
    InvalidClaims {
        /// What is wrong.
        reason: String,
    },
    /// A required claim is missing.
    #[error("JWT-SVID: required claim {claim:?} is missing")]
    MissingClaim {
        /// The claim name.
        claim: &'static str,
    },
    /// The `sub` claim is not a valid SPIFFE ID.
    #[error("JWT-SVID: claim \"sub\" {sub:?} is not a valid SPIFFE ID: {source}")]
    InvalidSubject {
        /// The `sub` value.
        sub: String,
        /// Why it is invalid.
        source: IdError,
    },
    /// The `aud` claim is empty.
    #[error("JWT-SVID: claim \"aud\" must hold at least one non-empty audience")]
    EmptyAudienceClaim,
    /// The token has expired.
    #[error("JWT-SVID: token expired: exp {exp} ({exp_time}) is not after now {now}")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// `exp` as RFC 3339 (or the raw number if out of range).
        exp_time: String,
        /// The time used for validation, RFC 3339.
        now: String,
    },
    /// The token is not yet valid (`nbf` in the future).
    #[error("JWT-SVID: token not valid before nbf {nbf}, now is {now}")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: i64,
        /// The time used for validation, RFC 3339.
        now: String,
    },
    /// The expected audience is not among the token's audiences.
    #[error("JWT-SVID: audience {expected:?} is not in the token's aud {actual:?}")]
    AudienceMismatch {
        /// The audience that was required.
        expected: String,
        /// The token's audiences.
        actual: Vec<String>,
    },
    /// The key ID given to [`mint`] is empty.
    #[error("JWT-SVID: key ID for minting must not be empty")]
    EmptyKeyId,
    /// The signer callback failed.
    #[error("JWT-SVID: signer failed: {reason}")]
    Signer {
        /// The signer's message.
        reason: String,
    },
    /// An ECDSA signature could not be converted between DER and raw form.
    #[error("JWT-SVID: invalid ECDSA signature encoding: {reason}")]
    SignatureEncoding {
        /// What is wrong.
        reason: String,
    },
}

/// The JOSE header of a JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtHeader {
    /// Signature algorithm, e.g. `ES256`.
    pub alg: String,
    /// Key ID of the signing JWT authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Token type: absent, `JWT` or `JOSE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// The claims of a JWT-SVID.
///
/// `aud` serializes as a string when it has one element and as an array
/// otherwise; both forms are accepted when parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtClaims {
    /// The subject SPIFFE ID.
    pub sub: SpiffeId,
    /// The audiences.
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued-at, seconds since the Unix epoch.
    pub iat: Option<i64>,
    /// Every other claim, kept as sent.
    pub extra: Map<String, Value>,
}

impl JwtClaims {
    /// Builds claims with no `iat` and no extra claims.
    pub fn new(sub: SpiffeId, aud: Vec<String>, exp: DateTime<Utc>) -> JwtClaims {
        JwtClaims {
            sub,
            aud,
            exp: exp.timestamp(),
            iat: None,
            extra: Map::new(),
        }
    }

    /// The claims as a JSON object.
    pub fn to_json_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("sub".into(), Value::String(self.sub.to_string()));
        let aud = if self.aud.len() == 1 {
            Value::String(self.aud[0].clone())
        } else {
            Value::Array(self.aud.iter().cloned().map(Value::String).collect())
        };
        map.insert("aud".into(), aud);
        map.insert("exp".into(), Value::from(self.exp));
        if let Some(iat) = self.iat {
            map.insert("iat".into(), Value::from(iat));
        }
        for (k, v) in &self.extra {
            if !matches!(k.as_str(), "sub" | "aud" | "exp" | "iat") {
                map.insert(k.clone(), v.clone());
            }
        }
        map
    }

    /// Reads claims from a JSON object, checking `sub`, `aud` and `exp`.
    pub fn from_json_map(map: &Map<String, Value>) -> Result<JwtClaims, JwtError> {
        let sub = match map.get("sub") {
            None => return Err(JwtError::MissingClaim { claim: "sub" }),
            Some(Value::String(s)) => {
                SpiffeId::parse(s).map_err(|source| JwtError::InvalidSubject {
                    sub: s.clone(),
                    source,
                })?
            }
            Some(other) => {
                return Err(JwtError::InvalidClaims {
                    reason: format!("\"sub\" must be a string, got {other}"),
                });
            }
        };
        let aud = match map.get("aud") {
            None => return Err(JwtError::MissingClaim { claim: "aud" }),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(JwtError::InvalidClaims {
                        reason: format!("\"aud\" entries must be strings, got {other}"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(JwtError::InvalidClaims {
                    reason: format!("\"aud\" must be a string or an array of strings, got {other}"),
                });
            }
        };
        if aud.is_empty() || aud.iter().any(String::is_empty) {
            return Err(JwtError::EmptyAudienceClaim);
        }
        let exp = match map.get("exp") {
            None => return Err(JwtError::MissingClaim { claim: "exp" }),
            Some(v) => numeric_date("exp", v)?,
        };
        let iat = map.get("iat").map(|v| numeric_date("iat", v)).transpose()?;
        let extra = map
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "sub" | "aud" | "exp" | "iat"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(JwtClaims {
            sub,
            aud,
            exp,
            iat,
            extra,
        })
    }
}

/// Reads a NumericDate (integer or finite number; fractions are truncated).
fn numeric_date(name: &str, v: &Value) -> Result<i64, JwtError> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    if let Some(f) = v.as_f64()
        && f.is_finite()
        && f.abs() < 9.0e15
    {
        return Ok(f.trunc() as i64);
    }
    Err(JwtError::InvalidClaims {
        reason: format!("{name:?} must be a numeric date, got {v}"),
    })
}

impl Serialize for JwtClaims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JwtClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        JwtClaims::from_json_map(&map).map_err(serde::de::Error::custom)
    }
}

/// A JWT-SVID that passed [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedJwt {
    /// The subject SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// All claims, as sent.
    pub claims: Map<String, Value>,
    /// The header's key ID.
    pub kid: String,
    /// The header's algorithm.
    pub alg: String,
    /// The token's audiences.
    pub audience: Vec<String>,
    /// The `exp` claim.
    pub expires_at: i64,
}

/// Converts a DER `ECDSA-Sig-Value` (SEQUENCE { r INTEGER, s INTEGER }) to
/// the fixed-size JWS form `r || s`, each left-padded to `scalar_len` bytes
/// (32 for P-256, 48 for P-384, 66 for P-521).
pub fn der_to_raw_ecdsa(der: &[u8], scalar_len: usize) -> Result<Vec<u8>, JwtError> {
    let enc = |reason: String| JwtError::SignatureEncoding { reason };
    let (seq, rest) = der::read_tlv(der, der::TAG_SEQUENCE).map_err(enc)?;
    if !rest.is_empty() {
        return Err(enc(format!(
            "{} bytes after the signature SEQUENCE",
            rest.len()
        )));
    }
    let (r, seq) = der::read_tlv(seq, der::TAG_INTEGER).map_err(enc)?;
    let (s, seq) = der::read_tlv(seq, der::TAG_INTEGER).map_err(enc)?;
    if !seq.is_empty() {
        return Err(enc("unexpected data after s".to_string()));
    }
    let mut out = Vec::with_capacity(2 * scalar_len);
    for (name, int) in [("r", r), ("s", s)] {
        if int.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(enc(format!("{name} is negative")));
        }
        let v = der::strip_leading_zeros(int);
        if v.len() > scalar_len {
            return Err(enc(format!(
                "{name} is {} bytes, more than the scalar size {scalar_len}",
                v.len()
            )));
        }
        out.resize(out.len() + scalar_len - v.len(), 0);
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// Converts a fixed-size JWS ECDSA signature `r || s` to a DER
/// `ECDSA-Sig-Value`. The input is split in two equal halves.
pub fn raw_to_der_ecdsa(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut ints = der::unsigned_integer(r);
    ints.extend(der::unsigned_integer(s));
    der::tlv(der::TAG_SEQUENCE, &ints)
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Mints an ES256 JWT-SVID.
///
/// `sign` receives the JWS signing input (`base64url(header).base64url(claims)`),
/// must hash it with SHA-256 and sign it with the P-256 key of JWT
/// authority `kid`, and return a DER `ECDSA-Sig-Value`; mint converts it to
/// the raw 64-byte JWS form. The header is `{"alg":"ES256","kid":..,"typ":"JWT"}`.
pub fn mint<E, F>(claims: &JwtClaims, kid: &str, sign: F) -> Result<String, JwtError>
where
    E: std::fmt::Display,
    F: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
{
    if kid.is_empty() {
        return Err(JwtError::EmptyKeyId);
    }
    if claims.aud.is_empty() || claims.aud.iter().any(String::is_empty) {
        return Err(JwtError::EmptyAudienceClaim);
    }
    let header = JwtHeader {
        alg: "ES256".into(),
        kid: Some(kid.to_string()),
        typ: Some("JWT".into()),
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| JwtError::InvalidHeader {
        header: format!("{header:?}"),
        reason: e.to_string(),
    })?;
    let claims_json =
        serde_json::to_vec(&claims.to_json_map()).map_err(|e| JwtError::InvalidClaims {
            reason: e.to_string(),
        })?;
    let signing_input = format!("{}.{}", b64(&header_json), b64(&claims_json));
    let der_sig = sign(signing_input.as_bytes()).map_err(|e| JwtError::Signer {
        reason: e.to_string(),
    })?;
    let raw = der_to_raw_ecdsa(&der_sig, 32)?;
    Ok(format!("{signing_input}.{}", b64(&raw)))
}

struct Parts<'a> {
    header: JwtHeader,
    claims_map: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn decode_part(token_part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(token_part)
        .map_err(|e| JwtError::Malformed {
            reason: format!("{what} is not base64url without padding: {e}"),
        })
}

fn split_token(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.is_empty() {
        return Err(JwtError::EmptyToken);
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Malformed {
            reason: format!(
                "expected 3 dot-separated parts (JWS compact serialization), found {}",
                parts.len()
            ),
        });
    }
    let header_bytes = decode_part(parts[0], "header")?;
    let header_text = String::from_utf8_lossy(&header_bytes).into_owned();
    let header_value: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|e| JwtError::InvalidHeader {
            header: header_text.clone(),
            reason: e.to_string(),
        })?;
    if let Some(crit) = header_value.get("crit") {
        return Err(JwtError::CriticalHeader {
            crit: crit.to_string(),
        });
    }
    let header: JwtHeader = serde_json::from_value(Value::Object(header_value)).map_err(|e| {
        JwtError::InvalidHeader {
            header: header_text,
            reason: e.to_string(),
        }
    })?;
    if !ACCEPTED_ALGORITHMS.contains(&header.alg.as_str()) {
        return Err(JwtError::UnsupportedAlgorithm { alg: header.alg });
    }
    if let Some(typ) = &header.typ
        && typ != "JWT"
        && typ != "JOSE"
    {
        return Err(JwtError::InvalidType { typ: typ.clone() });
    }
    let claims_bytes = decode_part(parts[1], "claims")?;
    let claims_map: Map<String, Value> =
        serde_json::from_slice(&claims_bytes).map_err(|e| JwtError::InvalidClaims {
            reason: format!("not a JSON object: {e}"),
        })?;
    let signature = decode_part(parts[2], "signature")?;
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    Ok(Parts {
        header,
        claims_map,
        signing_input,
        signature,
    })
}

/// Decodes a token's header and claims without verifying its signature or
/// times. Structure, `alg`, `typ` and the required claims are checked.
pub fn decode_unverified(token: &str) -> Result<(JwtHeader, JwtClaims), JwtError> {
    let parts = split_token(token)?;
    let claims = JwtClaims::from_json_map(&parts.claims_map)?;
    Ok((parts.header, claims))
}

fn verify_signature(
    alg: &str,
    kid: &str,
    spki: &[u8],
    message: &[u8],
    sig: &[u8],
) -> Result<(), JwtError> {
    let mismatch = |reason: String| JwtError::KeyMismatch {
        kid: kid.to_string(),
        alg: alg.to_string(),
        reason,
    };
    let key = der::parse_spki(spki).map_err(&mismatch)?;
    let (algorithm, key_bytes): (&'static dyn VerificationAlgorithm, Vec<u8>) = match (alg, key) {
        (
            "ES256",
            PublicKey::Ec {
                curve: Curve::P256,
                point,
            },
        ) => (&signature::ECDSA_P256_SHA256_FIXED, point),
        (
            "ES384",
            PublicKey::Ec {
                curve: Curve::P384,
                point,
            },
        ) => (&signature::ECDSA_P384_SHA384_FIXED, point),
        ("RS256", PublicKey::Rsa { der, .. }) => (&signature::RSA_PKCS1_2048_8192_SHA256, der),
        ("RS384", PublicKey::Rsa { der, .. }) => (&signature::RSA_PKCS1_2048_8192_SHA384, der),
        ("RS512", PublicKey::Rsa { der, .. }) => (&signature::RSA_PKCS1_2048_8192_SHA512, der),
        ("PS256", PublicKey::Rsa { der, .. }) => (&signature::RSA_PSS_2048_8192_SHA256, der),
        ("PS384", PublicKey::Rsa { der, .. }) => (&signature::RSA_PSS_2048_8192_SHA384, der),
        ("PS512", PublicKey::Rsa { der, .. }) => (&signature::RSA_PSS_2048_8192_SHA512, der),
        ("ES512", _) => {
            return Err(JwtError::UnverifiableAlgorithm {
                alg: alg.to_string(),
            });
        }
        (_, PublicKey::Ec { curve, .. }) => {
            return Err(mismatch(format!("key is EC {}", curve.jwk_name())));
        }
        (_, PublicKey::Rsa { .. }) => return Err(mismatch("key is RSA".to_string())),
    };
    UnparsedPublicKey::new(algorithm, key_bytes)
        .verify(message, sig)
        .map_err(|_| JwtError::BadSignature {
            kid: kid.to_string(),
        })
}

fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0).map_or_else(|| ts.to_string(), |t| t.to_rfc3339())
}

/// Validates a JWT-SVID: structure, `alg`/`typ`, the signature with the
/// JWT authority named by `kid`, `exp > now`, `nbf <= now` when present,
/// `audience` among `aud`, and `sub` a valid SPIFFE ID.
pub fn validate(
    token: &str,
    audience: &str,
    authorities: &[JwtAuthority],
    now: DateTime<Utc>,
) -> Result<ValidatedJwt, JwtError> {
    if token.is_empty() {
        return Err(JwtError::EmptyToken);
    }
    if audience.is_empty() {
        return Err(JwtError::EmptyAudience);
    }
    let parts = split_token(token)?;
    let kid = parts
        .header
        .kid
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or(JwtError::MissingKeyId)?;
    let authority = authorities
        .iter()
        .find(|a| a.key_id == kid)
        .ok_or_else(|| JwtError::UnknownKeyId { kid: kid.clone() })?;
    verify_signature(
        &parts.header.alg,
        &kid,
        &authority.public_key_spki_der,
        parts.signing_input.as_bytes(),
        &parts.signature,
    )?;
    let claims = JwtClaims::from_json_map(&parts.claims_map)?;
    let now_ts = now.timestamp();
    if claims.exp <= now_ts {
        return Err(JwtError::Expired {
            exp: claims.exp,
            exp_time: rfc3339(claims.exp),
            now: now.to_rfc3339(),
        });
    }
    if let Some(nbf) = parts.claims_map.get("nbf") {
        let nbf = numeric_date("nbf", nbf)?;
        if nbf > now_ts {
            return Err(JwtError::NotYetValid {
                nbf,
                now: now.to_rfc3339(),
            });
        }
    }
    if !claims.aud.iter().any(|a| a == audience) {
        return Err(JwtError::AudienceMismatch {
            expected: audience.to_string(),
            actual: claims.aud,
        });
    }
    Ok(ValidatedJwt {
        spiffe_id: claims.sub,
        claims: parts.claims_map,
        kid,
        alg: parts.header.alg,
        audience: claims.aud,
        expires_at: claims.exp,
    })
}
