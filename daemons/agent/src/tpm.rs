//! `trustdeck-agent tpm ...`: DevID provisioning for labs and a look at the TPM.

use std::path::Path;

use anyhow::{Context, Result, bail};
use trustdeck_spiffe::pem;
use trustdeck_tpm::device::{DevIdKey, Tpm, default_tcti};
use x509_parser::prelude::*;

/// File names `provision` writes in its output directory.
pub const KEY_FILE: &str = "devid.key";
/// The CSR for the DevID CA.
pub const CSR_FILE: &str = "devid.csr.pem";
/// The TPM's EK certificate, for reference.
pub const EK_FILE: &str = "ek.pem";

fn describe_cert(der: &[u8]) -> String {
    match parse_x509_certificate(der) {
        Ok((_, c)) => format!(
            "subject \"{}\", issuer \"{}\", valid until {}",
            c.subject(),
            c.issuer(),
            c.validity().not_after
        ),
        Err(e) => format!("unparsable ({e})"),
    }
}

/// Creates a DevID key in the TPM at `tcti` and writes, under `out`, the key blobs
/// ([`KEY_FILE`], mode 0600), a PKCS#10 request signed by the TPM key ([`CSR_FILE`]) and the
/// EK certificate ([`EK_FILE`], when the TPM has one). Returns what to tell the operator.
pub fn provision(tcti: Option<String>, out: &Path, cn: &str, force: bool) -> Result<String> {
    let tcti = tcti.unwrap_or_else(default_tcti);
    if cn.is_empty() {
        bail!("--cn must not be empty");
    }
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let key_path = out.join(KEY_FILE);
    if key_path.exists() && !force {
        bail!(
            "{} exists: a node keeps its DevID key; pass --force to create a new one",
            key_path.display()
        );
    }
    let mut tpm = Tpm::open(&tcti)?;
    let key = tpm.create_devid()?;
    let csr = tpm.csr(&key, cn)?;
    key.write(&key_path)?;
    let csr_path = out.join(CSR_FILE);
    std::fs::write(&csr_path, pem::encode("CERTIFICATE REQUEST", &csr))
        .with_context(|| format!("write {}", csr_path.display()))?;
    let ek = match tpm.ek_certificate() {
        Ok(der) => {
            let p = out.join(EK_FILE);
            std::fs::write(&p, pem::encode("CERTIFICATE", &der))
                .with_context(|| format!("write {}", p.display()))?;
            format!("{} ({})", p.display(), describe_cert(&der))
        }
        Err(e) => format!(
            "none in the TPM ({e}); set ek_cert_path in the agent config to a file holding it"
        ),
    };
    let dir = out.display();
    Ok(format!(
        "DevID key created in the TPM at {tcti} (ECC P-256, fixedTPM, fixedParent).\n\
         Key blobs:        {key} (the private part is wrapped by the TPM, useless elsewhere)\n\
         CSR (TPM-signed): {csr} (CN={cn})\n\
         EK certificate:   {ek}\n\
         \n\
         Next:\n\
         1. Have the DevID CA sign the CSR, for example\n\
         \x20  openssl x509 -req -in {csr} -CA devid-ca.pem -CAkey devid-ca.key -days 365 -out {dir}/devid.pem\n\
         2. Agent config:\n\
         \x20  [node_attestation]\n\
         \x20  type = \"tpm_devid\"\n\
         \x20  tcti = \"{tcti}\"\n\
         \x20  devid_cert_path = \"{dir}/devid.pem\"\n\
         \x20  devid_key_path = \"{key}\"\n\
         3. Server config:\n\
         \x20  [node_attestation.tpm_devid]\n\
         \x20  devid_ca_bundle_path = \"devid-ca.pem\"\n\
         \x20  endorsement_ca_bundle_path = \"<the EK certificate's issuer CA(s), PEM>\"\n",
        key = key_path.display(),
        csr = csr_path.display(),
    ))
}

/// Describes the TPM at `tcti`: its EK certificate and, when given, whether the DevID key
/// loads and signs.
pub fn show(tcti: Option<String>, devid_key: Option<&Path>) -> Result<String> {
    let tcti = tcti.unwrap_or_else(default_tcti);
    let mut tpm = Tpm::open(&tcti)?;
    let mut out = format!("TPM:            {tcti}\n");
    match tpm.ek_certificate() {
        Ok(der) => out.push_str(&format!("EK certificate: {}\n", describe_cert(&der))),
        Err(e) => out.push_str(&format!("EK certificate: none ({e})\n")),
    }
    let ek = tpm.ek_public()?;
    let name = trustdeck_tpm::public::PublicArea::from_tpm2b(&ek)
        .ok()
        .and_then(|a| a.name())
        .map(hex::encode)
        .unwrap_or_default();
    out.push_str(&format!("EK name:        {name}\n"));
    if let Some(p) = devid_key {
        let key = DevIdKey::read(p)?;
        let area = key.area()?;
        let loads = tpm.sign(&key, b"trustdeck tpm show").map(|_| ());
        out.push_str(&format!(
            "DevID key:      {} (name {}, attributes {}): {}\n",
            p.display(),
            area.name().map(hex::encode).unwrap_or_default(),
            trustdeck_tpm::public::attr::describe(area.attributes),
            match loads {
                Ok(()) => "loads and signs in this TPM".to_string(),
                Err(e) => format!("NOT usable here: {e}"),
            }
        ));
    }
    Ok(out)
}
