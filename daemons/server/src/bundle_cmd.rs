//! `trustdeck-server bundle show|export|import|foreign|receipt|forget`: the trust bundle, and bundles moved
//! by hand between isolated trust domains as signed files. A refused import exits non-zero
//! naming the rule (the server's [`BundleFileRefusal`], never its message text) and the
//! reason; nothing is stored.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use trustdeck_proto::admin::*;
use trustdeck_proto::refusal::bundle_refusal_of;

use crate::{Output, Target, client, rfc3339, status_err};

#[derive(Clone, Copy, ValueEnum)]
pub enum BundleFormat {
    Pem,
    Spiffe,
}

#[derive(Subcommand)]
pub enum BundleCmd {
    /// Print the trust bundle.
    Show {
        #[arg(long, value_enum, default_value = "pem")]
        format: BundleFormat,
    },
    /// Write the trust bundle as a file signed by the active X.509 authority, for an isolated
    /// trust domain; prints the SHA-256 fingerprints of its roots, which the importing side
    /// confirms on its first import.
    Export {
        /// Sign the export (the only form there is; required so the command says what it does).
        #[arg(long, required = true)]
        signed: bool,
        /// Where to write the file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Import a signed bundle file of another trust domain (then write the signed receipt to
    /// carry back), or a receipt a peer sent back for ours.
    Import {
        /// A bundle: the trust domain it must be for. A receipt: the peer that sent it.
        #[arg(long)]
        trust_domain: String,
        /// First import of a trust domain: the SHA-256 fingerprint of its root, as the
        /// exporting side printed it.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Where to write the receipt (default: next to FILE, with `.receipt` appended).
        #[arg(long)]
        receipt_out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// The signed bundle file or receipt.
        file: PathBuf,
    },
    /// The bundles held for other trust domains, and the receipts peers sent back for ours.
    Foreign {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Write a fresh receipt for the bundle held of an isolated peer (the first one was lost
    /// on its way back).
    Receipt {
        /// The peer's trust domain.
        #[arg(long)]
        trust_domain: String,
        /// Where to write the receipt.
        #[arg(long)]
        out: PathBuf,
    },
    /// Forget the bundle held of a foreign trust domain (a peer decommissioned) and the
    /// receipt recorded from it. Refused while a federation relationship keeps it or an entry
    /// federates with it.
    Forget {
        #[arg(long)]
        trust_domain: String,
    },
}

/// Runs the command.
pub async fn run(cmd: BundleCmd, target: &Target) -> Result<()> {
    match cmd {
        BundleCmd::Show { format } => {
            let r = client(target)
                .await?
                .get_bundle(GetBundleRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            match format {
                BundleFormat::Pem => trustdeck_process::out!("{}", r.pem),
                BundleFormat::Spiffe => trustdeck_process::outln!("{}", r.spiffe_json),
            }
            Ok(())
        }
        BundleCmd::Export { out, output, .. } => export(target, &out, output).await,
        BundleCmd::Import {
            trust_domain,
            fingerprint,
            receipt_out,
            output,
            file,
        } => {
            let req = ImportBundleFileRequest {
                file: std::fs::read(&file).with_context(|| format!("read {}", file.display()))?,
                trust_domain,
                fingerprint: fingerprint.unwrap_or_default(),
            };
            let r = client(target)
                .await?
                .import_bundle_file(req)
                .await
                .map_err(refused)?
                .into_inner();
            imported(&r, &file, receipt_out, output)
        }
        BundleCmd::Foreign { output } => {
            let r = client(target)
                .await?
                .list_foreign_bundles(ListForeignBundlesRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            print_foreign(&r, output);
            Ok(())
        }
        BundleCmd::Receipt { trust_domain, out } => {
            let r = client(target)
                .await?
                .reissue_receipt(ForeignBundleRequest { trust_domain })
                .await
                .map_err(refused)?
                .into_inner();
            write_file(&out, &r.receipt)?;
            trustdeck_process::outln!(
                "wrote a receipt for sequence {} (roots: {}) to {}: carry it back and import it there",
                r.sequence,
                r.roots.join(", "),
                out.display()
            );
            Ok(())
        }
        BundleCmd::Forget { trust_domain } => {
            let r = client(target)
                .await?
                .forget_foreign_bundle(ForeignBundleRequest { trust_domain })
                .await
                .map_err(refused)?
                .into_inner();
            trustdeck_process::outln!(
                "forgot the bundle of {} (sequence {}) and any receipt it sent",
                r.trust_domain,
                r.sequence
            );
            Ok(())
        }
    }
}

/// A refusal names its rule and the reason; any other error its status.
fn refused(s: tonic::Status) -> anyhow::Error {
    match bundle_refusal_of(&s) {
        Some(rule) => anyhow::anyhow!("refused: {rule}: {}", s.message()),
        None => status_err(s),
    }
}

/// Writes `bytes` to `path` whole or not at all (a temporary file beside it, renamed).
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

async fn export(target: &Target, out: &Path, output: Output) -> Result<()> {
    let r = client(target)
        .await?
        .export_signed_bundle(ExportSignedBundleRequest {})
        .await
        .map_err(status_err)?
        .into_inner();
    if r.file.is_empty() {
        bail!("the server returned an empty file");
    }
    write_file(out, &r.file)?;
    if output == Output::Json {
        let roots: Vec<_> = r
            .roots
            .iter()
            .map(|x| {
                serde_json::json!({
                    "sha256": x.sha256, "subject": x.subject,
                    "not_after": rfc3339(x.not_after), "signs": x.signs,
                })
            })
            .collect();
        let v = serde_json::json!({
            "file": out.display().to_string(), "trust_domain": r.trust_domain,
            "sequence": r.sequence, "issued_at": rfc3339(r.issued_at), "roots": roots,
        });
        trustdeck_process::outln!("{v}");
        return Ok(());
    }
    trustdeck_process::outln!(
        "wrote the signed bundle of {} (sequence {}) to {}",
        r.trust_domain,
        r.sequence,
        out.display()
    );
    trustdeck_process::outln!(
        "root fingerprints (SHA-256): the importing side confirms the signing one with \
         --fingerprint on its first import"
    );
    for x in &r.roots {
        let signs = if x.signs { "  (signs this file)" } else { "" };
        trustdeck_process::outln!(
            "  {}  {} until {}{signs}",
            x.sha256,
            x.subject,
            rfc3339(x.not_after)
        );
    }
    Ok(())
}

fn receipt_path(file: &Path, receipt_out: Option<PathBuf>) -> PathBuf {
    receipt_out.unwrap_or_else(|| {
        let mut p = file.as_os_str().to_owned();
        p.push(".receipt");
        PathBuf::from(p)
    })
}

fn imported(
    r: &ImportBundleFileResponse,
    file: &Path,
    receipt_out: Option<PathBuf>,
    output: Output,
) -> Result<()> {
    let kind = r.kind_wire();
    let receipt = if kind == BundleFileKind::Bundle {
        let path = receipt_path(file, receipt_out);
        write_file(&path, &r.receipt).with_context(|| {
            format!(
                "the bundle of {} is imported, but its receipt could not be written",
                r.trust_domain
            )
        })?;
        Some(path)
    } else {
        None
    };
    if output == Output::Json {
        let v = serde_json::json!({
            "kind": kind.as_str(), "trust_domain": r.trust_domain, "sequence": r.sequence,
            "previous_sequence": r.previous_sequence, "bootstrap": r.bootstrap,
            "roots": r.roots, "receipt": receipt.as_ref().map(|p| p.display().to_string()),
        });
        trustdeck_process::outln!("{v}");
        return Ok(());
    }
    match receipt {
        Some(path) => {
            let how = if r.bootstrap {
                "first import, root confirmed"
            } else {
                "signed by a root already held"
            };
            trustdeck_process::outln!(
                "imported the bundle of {} (sequence {}, {how}); roots: {}",
                r.trust_domain,
                r.sequence,
                r.roots.join(", ")
            );
            trustdeck_process::outln!(
                "wrote the signed receipt to {}: carry it back to {} and import it there",
                path.display(),
                r.trust_domain
            );
        }
        None => trustdeck_process::outln!(
            "recorded the receipt of {}: it holds sequence {} of our bundle, roots: {}",
            r.trust_domain,
            r.sequence,
            r.roots.join(", ")
        ),
    }
    Ok(())
}

fn print_foreign(r: &ListForeignBundlesResponse, output: Output) {
    if output == Output::Json {
        let bundles: Vec<_> = r
            .bundles
            .iter()
            .map(|b| {
                serde_json::json!({
                    "trust_domain": b.trust_domain, "sequence": b.sequence,
                    "source": b.source_wire().as_str(), "updated_at": rfc3339(b.updated_at),
                    "roots": b.roots, "spiffe_json": b.spiffe_json,
                })
            })
            .collect();
        let receipts: Vec<_> = r
            .receipts
            .iter()
            .map(|x| {
                serde_json::json!({
                    "peer_trust_domain": x.peer_trust_domain, "sequence": x.sequence,
                    "roots": x.roots, "received_at": rfc3339(x.received_at),
                })
            })
            .collect();
        let v = serde_json::json!({ "bundles": bundles, "receipts": receipts });
        trustdeck_process::outln!("{v}");
        return;
    }
    trustdeck_process::outln!("foreign bundles:");
    for b in &r.bundles {
        trustdeck_process::outln!(
            "  {} sequence {} ({}, {}) roots: {}",
            b.trust_domain,
            b.sequence,
            b.source_wire(),
            rfc3339(b.updated_at),
            b.roots.join(", ")
        );
    }
    trustdeck_process::outln!("receipts for our bundle:");
    for x in &r.receipts {
        trustdeck_process::outln!(
            "  {} holds sequence {} ({}) roots: {}",
            x.peer_trust_domain,
            x.sequence,
            rfc3339(x.received_at),
            x.roots.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::refusal::bundle_refusal_status;

    #[test]
    fn a_refusal_names_its_rule_and_reason() {
        let e = refused(bundle_refusal_status(
            BundleFileRefusal::NotNewer,
            "the file holds sequence 3",
        ));
        assert_eq!(
            e.to_string(),
            "refused: not newer than the bundle held: the file holds sequence 3"
        );
    }

    #[test]
    fn the_receipt_goes_next_to_the_file_unless_told() {
        let f = Path::new("/carry/a.test.bundle");
        assert_eq!(
            receipt_path(f, None),
            PathBuf::from("/carry/a.test.bundle.receipt")
        );
        assert_eq!(receipt_path(f, Some("/x/r".into())), PathBuf::from("/x/r"));
    }
}
