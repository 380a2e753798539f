//! The certificate chains of the evidence: parsing, the length cap, the signature-algorithm
//! allow-list and the path to a bundle certificate.

use x509_parser::prelude::*;

use super::*;

pub(super) fn parse<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, TpmDevIdError> {
    let malformed = |reason: String| TpmDevIdError::Malformed {
        what: what.to_string(),
        reason,
    };
    let (rest, c) = parse_x509_certificate(der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(c)
}

/// Longest chain accepted from a node (leaf and intermediates); longer ones are refused before
/// any signature is checked.
pub const MAX_CHAIN: usize = 5;

/// Signature algorithms accepted in DevID and EK chains: ECDSA and RSA (PKCS#1 v1.5 or PSS)
/// with SHA-256 or stronger. SHA-1 is refused.
pub(super) const ALLOWED_SIGNATURE_ALGORITHMS: [&str; 7] = [
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
    "1.2.840.10045.4.3.4",
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    "1.2.840.113549.1.1.10",
];

pub(super) fn signature_algorithm_ok(c: &X509Certificate<'_>) -> Result<(), String> {
    let outer = c.signature_algorithm.algorithm.to_id_string();
    if c.signature_algorithm != c.tbs_certificate.signature {
        return Err(format!(
            "{}: signature algorithm differs inside and outside the signed part",
            c.subject()
        ));
    }
    if !ALLOWED_SIGNATURE_ALGORITHMS.contains(&outer.as_str()) {
        return Err(format!(
            "{} is signed with algorithm {outer}, which is not accepted (SHA-256 or stronger ECDSA/RSA)",
            c.subject()
        ));
    }
    Ok(())
}

/// Checks validity at `now` and signatures along `certs` (leaf first) and finds the bundle
/// certificate that issued the last one (or is it). Returns the anchor's DER, or why not.
pub(super) fn chain_to<'b>(
    certs: &[X509Certificate<'_>],
    ders: &[&[u8]],
    bundle: &'b [Vec<u8>],
    now: ASN1Time,
) -> Result<&'b [u8], String> {
    if certs.len() > MAX_CHAIN {
        return Err(format!(
            "chain of {} certificates is longer than {MAX_CHAIN}",
            certs.len()
        ));
    }
    for c in certs {
        signature_algorithm_ok(c)?;
    }
    for pair in certs.windows(2) {
        if !pair[1].is_ca() {
            return Err(format!("intermediate {} is not a CA", pair[1].subject()));
        }
        if let Ok(Some(ku)) = pair[1].key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(format!(
                "intermediate {} may not sign certificates (no keyCertSign)",
                pair[1].subject()
            ));
        }
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|e| {
                format!(
                    "{} is not signed by {}: {e}",
                    pair[0].subject(),
                    pair[1].subject()
                )
            })?;
    }
    let (top, top_der) = match (certs.last(), ders.last()) {
        (Some(t), Some(d)) => (t, *d),
        _ => return Err("empty chain".into()),
    };
    let mut saw_issuer_name = false;
    for der in bundle {
        let Ok((_, ca)) = parse_x509_certificate(der) else {
            continue;
        };
        if der.as_slice() == top_der {
            return Ok(der);
        }
        if ca.subject() != top.issuer() {
            continue;
        }
        saw_issuer_name = true;
        if !ca.validity().is_valid_at(now) {
            continue;
        }
        if top.verify_signature(Some(ca.public_key())).is_ok() {
            return Ok(der);
        }
    }
    Err(if saw_issuer_name {
        format!(
            "a certificate named {} is in the bundle but did not sign {} (or has expired)",
            top.issuer(),
            top.subject()
        )
    } else {
        format!("its issuer {} is not in the bundle", top.issuer())
    })
}

pub(super) fn common_names(name: &X509Name<'_>) -> Vec<String> {
    name.iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect()
}
