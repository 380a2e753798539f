//! `trustdeck-server authority x509|jwt show|prepare|activate|taint|revoke`: authority
//! operations over the admin socket. A refused operation exits non-zero naming the rule it
//! would break (the server's [`AuthorityRefusal`], never its message text).

use anyhow::Result;
use clap::Subcommand;
use trustdeck_proto::admin::*;
use trustdeck_proto::refusal::refusal_of;

use crate::{Output, Target, client, rfc3339};

/// Which kind of authority.
#[derive(Subcommand)]
pub enum KindCmd {
    /// X.509 CAs (on a downstream: its intermediates).
    X509 {
        #[command(subcommand)]
        op: OpCmd,
    },
    /// JWT signing keys (the root server only).
    Jwt {
        #[command(subcommand)]
        op: OpCmd,
    },
}

/// The operation.
#[derive(Subcommand)]
pub enum OpCmd {
    /// List the authorities: active, prepared, old, tainted, revoked.
    Show {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Mint a new authority into the prepared slot, published in the bundle before it signs.
    Prepare {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Make the prepared authority sign; the active one becomes old.
    Activate {
        /// The authority's id (subject key id, or kid), as `show` lists it.
        #[arg(long)]
        id: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Distrust an authority (never the active one): it stays in the bundle, never signs, and
    /// what chains to it is re-issued.
    Taint {
        #[arg(long)]
        id: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove a tainted authority from the bundle; refused while live SVIDs still chain to it.
    Revoke {
        #[arg(long)]
        id: Option<String>,
        /// Revoke even while live SVIDs still chain to it.
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// Runs the command.
pub async fn run(kind: KindCmd, target: &Target) -> Result<()> {
    let (kind, op) = match kind {
        KindCmd::X509 { op } => (AuthorityKind::X509, op),
        KindCmd::Jwt { op } => (AuthorityKind::Jwt, op),
    };
    let mut c = client(target).await?;
    let req = |id: Option<String>, force: bool| AuthorityRequest {
        kind: kind.into(),
        id: id.unwrap_or_default(),
        force,
    };
    let (r, output) = match op {
        OpCmd::Show { output } => {
            let r = c
                .show_authorities(ShowAuthoritiesRequest { kind: kind.into() })
                .await
                .map_err(refused)?
                .into_inner();
            print_show(&r, output);
            return Ok(());
        }
        OpCmd::Prepare { output } => (c.prepare_authority(req(None, false)).await, output),
        OpCmd::Activate { id, output } => (c.activate_authority(req(id, false)).await, output),
        OpCmd::Taint { id, output } => (c.taint_authority(req(id, false)).await, output),
        OpCmd::Revoke { id, force, output } => (c.revoke_authority(req(id, force)).await, output),
    };
    let r = r.map_err(refused)?.into_inner();
    if output == Output::Json {
        let v = serde_json::json!({
            "authority": r.authority.as_ref().map(info_json),
            "bundle_sequence": r.bundle_sequence,
        });
        trustdeck_process::outln!("{v}");
    } else if let Some(a) = &r.authority {
        trustdeck_process::outln!(
            "{} authority {} is {} (bundle sequence {})",
            a.kind_wire(),
            a.id,
            a.status_wire(),
            r.bundle_sequence
        );
    }
    Ok(())
}

/// A refusal names its rule; any other error its status.
fn refused(s: tonic::Status) -> anyhow::Error {
    match refusal_of(&s) {
        Some(rule) => anyhow::anyhow!("refused: {rule}: {}", s.message()),
        None => anyhow::anyhow!("{} ({:?})", s.message(), s.code()),
    }
}

fn storage(a: &AuthorityInfo) -> String {
    a.key_storage
        .as_ref()
        .map(|k| k.backend_wire().to_string())
        .unwrap_or_default()
}

/// An authority as JSON, enums as their text.
pub fn info_json(a: &AuthorityInfo) -> serde_json::Value {
    serde_json::json!({
        "kind": a.kind_wire().as_str(),
        "id": a.id,
        "status": a.status_wire().as_str(),
        "not_before": a.not_before,
        "not_after": a.not_after,
        "key_storage": storage(a),
        "key_storage_detail": a.key_storage.as_ref().map(|k| k.detail.clone()).unwrap_or_default(),
        "signed_by": a.signed_by,
        "tier": a.tier,
        "live_svids": a.live_svids,
        "in_bundle": a.in_bundle,
    })
}

fn print_show(r: &ShowAuthoritiesResponse, output: Output) {
    if output == Output::Json {
        let v = serde_json::json!({
            "bundle_sequence": r.bundle_sequence,
            "authorities": r.authorities.iter().map(info_json).collect::<Vec<_>>(),
        });
        trustdeck_process::outln!("{v}");
        return;
    }
    trustdeck_process::outln!("bundle sequence {}", r.bundle_sequence);
    trustdeck_process::outln!(
        "{:<40} {:<9} {:<25} {:<8} {:<40} {:>4} {:>5} {:<9}",
        "ID",
        "STATUS",
        "NOT AFTER",
        "KEY",
        "SIGNED BY",
        "TIER",
        "LIVE",
        "IN BUNDLE"
    );
    for a in &r.authorities {
        trustdeck_process::outln!(
            "{:<40} {:<9} {:<25} {:<8} {:<40} {:>4} {:>5} {:<9}",
            a.id,
            a.status_wire(),
            rfc3339(a.not_after),
            storage(a),
            if a.signed_by.is_empty() {
                "-"
            } else {
                &a.signed_by
            },
            a.tier,
            a.live_svids,
            if a.in_bundle { "yes" } else { "no" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::refusal::refusal_status;

    #[test]
    fn a_refusal_names_its_rule() {
        let e = refused(refusal_status(
            AuthorityRefusal::IsActive,
            "taint never ...",
        ));
        assert_eq!(
            e.to_string(),
            "refused: taint never takes the active authority: taint never ..."
        );
        let e = refused(tonic::Status::unavailable("datastore down"));
        assert_eq!(e.to_string(), "datastore down (Unavailable)");
    }
}
