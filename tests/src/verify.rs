//! Checking chains: x509-parser, `openssl verify`, PEM and DER helpers.

use super::*;

/// Verifies `chain` (leaf first) up to one of `roots` at `now` with x509-parser: every
/// signature and every validity window.
pub fn verify_chain(chain: &[Vec<u8>], roots: &[Vec<u8>], now: i64) -> Result<(), String> {
    use x509_parser::prelude::*;
    let at = ASN1Time::from_timestamp(now).map_err(|e| e.to_string())?;
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .map(|d| {
            parse_x509_certificate(d)
                .map(|x| x.1)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    for (i, c) in parsed.iter().enumerate() {
        if !c.validity().is_valid_at(at) {
            return Err(format!(
                "certificate {i} ({}) not valid at {now}",
                c.subject()
            ));
        }
        if let Some(issuer) = parsed.get(i + 1) {
            c.verify_signature(Some(issuer.public_key()))
                .map_err(|e| format!("certificate {i} not signed by {}: {e}", issuer.subject()))?;
        }
    }
    let top = parsed.last().ok_or("empty chain")?;
    for r in roots {
        let Ok((_, root)) = parse_x509_certificate(r) else {
            continue;
        };
        if root.validity().is_valid_at(at) && top.verify_signature(Some(root.public_key())).is_ok()
        {
            return Ok(());
        }
    }
    Err(format!(
        "{} does not chain to any root in the bundle",
        top.subject()
    ))
}

/// Splits concatenated DER certificates (Workload API wire form).
pub fn split_der(der: &[u8]) -> Vec<Vec<u8>> {
    trustdeck_spiffe::pem::split_der(der).expect("certificates")
}

/// Writes DER certificates as one PEM file.
pub fn write_pem(path: &Path, ders: &[Vec<u8>]) {
    std::fs::write(path, trustdeck_spiffe::pem::encode_certs(ders)).expect("write pem");
}

/// `openssl verify -CAfile bundle [-untrusted chain] leaf`; returns (success, output).
pub fn openssl_verify(dir: &Path, roots: &[Vec<u8>], chain: &[Vec<u8>]) -> (bool, String) {
    openssl_verify_at(dir, roots, chain, None)
}

/// `openssl verify` as of `at` (Unix seconds), or now.
pub fn openssl_verify_at(
    dir: &Path,
    roots: &[Vec<u8>],
    chain: &[Vec<u8>],
    at: Option<i64>,
) -> (bool, String) {
    let ca = dir.join("verify-bundle.pem");
    let leaf = dir.join("verify-leaf.pem");
    let inter = dir.join("verify-intermediates.pem");
    write_pem(&ca, roots);
    write_pem(&leaf, &chain[..1]);
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(&ca);
    if let Some(t) = at {
        cmd.arg("-attime").arg(t.to_string());
    }
    if chain.len() > 1 {
        write_pem(&inter, &chain[1..]);
        cmd.arg("-untrusted").arg(&inter);
    }
    let out = cmd.arg(&leaf).output().expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An attestation evidence refusal as the agent sees it: the typed reason, and none of
/// `details` (those are for the server's log).
pub fn assert_evidence_refused(e: &tonic::Status, details: &[&str]) {
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(
        trustdeck_proto::reason::reason_of(e),
        Reason::EvidenceRefused
    );
    for d in details {
        assert!(
            !e.message().contains(d),
            "{d:?} sent to the agent: {}",
            e.message()
        );
    }
}
