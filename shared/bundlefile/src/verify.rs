//! The signature over the payload, the chain above the signer, and the root it leads to.

use chrono::{DateTime, Utc};
use ring::signature::{self, UnparsedPublicKey};
use x509_parser::certificate::X509Certificate;
use x509_parser::parse_x509_certificate;

use crate::envelope::Opened;
use crate::refusal::Refusal;

/// One DER TLV: its tag, content and what follows; `None` unless the length is definite and
/// minimal (DER) and the content fits.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n || rest[0] == 0 {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The parts of a certificate its signature does not cover (the outer SEQUENCE, the
/// signature algorithm, the BIT STRING around the signature) are exactly DER: a parser
/// lenient about them would let a changed byte through.
fn strict_outer(der: &[u8]) -> bool {
    let Some((0x30, body, [])) = tlv(der) else {
        return false;
    };
    let Some((0x30, _tbs, rest)) = tlv(body) else {
        return false;
    };
    let Some((0x30, alg, rest)) = tlv(rest) else {
        return false;
    };
    let Some((0x03, sig, [])) = tlv(rest) else {
        return false;
    };
    let Some((0x06, _oid, params)) = tlv(alg) else {
        return false;
    };
    sig.first() == Some(&0) && (params.is_empty() || params == [0x05, 0x00])
}

fn parse(index: usize, der: &[u8]) -> Result<X509Certificate<'_>, Refusal> {
    if !strict_outer(der) {
        return Err(Refusal::BrokenChain(format!(
            "certificate #{index} is not strict DER"
        )));
    }
    let (rest, c) = parse_x509_certificate(der)
        .map_err(|e| Refusal::BrokenChain(format!("certificate #{index} does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(Refusal::BrokenChain(format!(
            "certificate #{index} has trailing bytes"
        )));
    }
    Ok(c)
}

/// Checks the signature over the payload with the signing CA's key, and that each
/// certificate of the chain is a CA signed by the next one.
pub(crate) fn signature_and_chain(opened: &Opened) -> Result<(), Refusal> {
    let certs: Vec<X509Certificate<'_>> = opened
        .chain
        .iter()
        .enumerate()
        .map(|(i, d)| parse(i, d))
        .collect::<Result<_, _>>()?;
    let signer = certs
        .first()
        .ok_or_else(|| Refusal::BrokenChain("it carries no certificate".into()))?;
    let key = signer.public_key().subject_public_key.data.as_ref();
    let algs: [&'static dyn signature::VerificationAlgorithm; 2] = [
        &signature::ECDSA_P256_SHA256_ASN1,
        &signature::ECDSA_P384_SHA384_ASN1,
    ];
    let signed = algs.iter().any(|a| {
        UnparsedPublicKey::new(*a, key)
            .verify(&opened.payload, &opened.signature)
            .is_ok()
    });
    if !signed {
        return Err(Refusal::Tampered(format!(
            "the signature does not verify against the key of its signer ({})",
            signer.subject()
        )));
    }
    for (i, der) in opened.chain.iter().enumerate() {
        trustdeck_spiffe::x509::check_ca(der).map_err(|e| {
            Refusal::BrokenChain(format!("certificate #{i} is not a SPIFFE signing CA: {e}"))
        })?;
    }
    for pair in certs.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|e| {
                Refusal::BrokenChain(format!(
                    "{} is not signed by {}: {e}",
                    pair[0].subject(),
                    pair[1].subject()
                ))
            })?;
    }
    Ok(())
}

/// Every certificate of the chain is valid at `now`.
pub(crate) fn valid_at(opened: &Opened, now: DateTime<Utc>) -> Result<(), Refusal> {
    for der in &opened.chain {
        let (nb, na) = trustdeck_spiffe::x509::cert_validity(der)
            .map_err(|e| Refusal::BrokenChain(e.to_string()))?;
        if now < nb || now > na {
            return Err(Refusal::SignerNotValid(format!(
                "a certificate of its chain is valid from {nb} to {na}, and now is {now}"
            )));
        }
    }
    Ok(())
}

/// The root among `roots` the chain leads to: the chain's last certificate itself, or the
/// root that signed it.
pub(crate) fn anchor<'r>(opened: &Opened, roots: &'r [Vec<u8>]) -> Option<&'r Vec<u8>> {
    chain_root(&opened.chain, roots)
}

/// The root among `roots` a chain (DER, the signing CA first) leads to: its last certificate
/// itself, or the root that signed that one.
pub fn chain_root<'r>(chain: &[Vec<u8>], roots: &'r [Vec<u8>]) -> Option<&'r Vec<u8>> {
    let top_der = chain.last()?;
    let (_, top) = parse_x509_certificate(top_der).ok()?;
    roots.iter().find(|r| {
        if r.as_slice() == top_der.as_slice() {
            return true;
        }
        let Ok((_, root)) = parse_x509_certificate(r) else {
            return false;
        };
        root.subject() == top.issuer() && top.verify_signature(Some(root.public_key())).is_ok()
    })
}
