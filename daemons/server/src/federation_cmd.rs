//! `trustdeck-server federation create|list|show|update|delete|refresh`: relationships with
//! partner trust domains whose bundle this server fetches from their bundle endpoint. A
//! refused call exits non-zero naming the rule (the server's [`FederationRefusal`], never its
//! message text); a refused or failed `refresh` prints its outcome and exits non-zero.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use trustdeck_proto::admin::*;
use trustdeck_proto::refusal::federation_refusal_of;

use crate::{Output, Target, client, rfc3339, status_err};

#[derive(Clone, Copy, ValueEnum)]
pub enum Profile {
    #[value(name = "https_web")]
    HttpsWeb,
    #[value(name = "https_spiffe")]
    HttpsSpiffe,
}

/// The settings of a relationship.
#[derive(Args)]
pub struct Settings {
    #[arg(long)]
    trust_domain: String,
    /// The partner's bundle endpoint, `https://host[:port][/path]`.
    #[arg(long)]
    endpoint_url: String,
    #[arg(long, value_enum)]
    profile: Profile,
    /// https_spiffe: the SPIFFE ID the endpoint must present.
    #[arg(long)]
    endpoint_spiffe_id: Option<String>,
    /// https_spiffe (create): the partner's bundle to start from (PEM or SPIFFE JSON).
    #[arg(long)]
    bootstrap_bundle: Option<PathBuf>,
    /// https_web: a PEM CA file on the server to trust instead of the system's CAs.
    #[arg(long)]
    ca_file: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Subcommand)]
pub enum FederationCmd {
    /// Create a relationship (https_spiffe: with the partner's bootstrap bundle).
    Create(Settings),
    /// Every relationship, with how its refreshes go.
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// One relationship.
    Show {
        #[arg(long)]
        trust_domain: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Replace a relationship's settings (the bundle held and the refresh state are kept).
    Update(Settings),
    /// Delete a relationship (the bundle held stays; see `bundle foreign`).
    Delete {
        #[arg(long)]
        trust_domain: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Fetch the partner's bundle now and print the outcome.
    Refresh {
        #[arg(long)]
        trust_domain: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

fn request(s: &Settings) -> Result<CreateFederationRequest> {
    let bootstrap_bundle = match &s.bootstrap_bundle {
        Some(p) => std::fs::read(p).with_context(|| format!("read {}", p.display()))?,
        None => Vec::new(),
    };
    let profile = match s.profile {
        Profile::HttpsWeb => FederationProfile::HttpsWeb,
        Profile::HttpsSpiffe => FederationProfile::HttpsSpiffe,
    };
    Ok(CreateFederationRequest {
        trust_domain: s.trust_domain.clone(),
        endpoint_url: s.endpoint_url.clone(),
        profile: profile.into(),
        endpoint_spiffe_id: s.endpoint_spiffe_id.clone().unwrap_or_default(),
        bootstrap_bundle,
        ca_file: s.ca_file.clone().unwrap_or_default(),
    })
}

/// A refusal names its rule and the reason; any other error its status.
fn refused(s: tonic::Status) -> anyhow::Error {
    match federation_refusal_of(&s) {
        Some(rule) => anyhow::anyhow!("refused: {rule}: {}", s.message()),
        None => status_err(s),
    }
}

/// Runs the command.
pub async fn run(cmd: FederationCmd, target: &Target) -> Result<()> {
    let mut c = client(target).await?;
    match cmd {
        FederationCmd::Create(s) => {
            let r = c.create_federation(request(&s)?).await.map_err(refused)?;
            print_one(&r.into_inner(), s.output);
        }
        FederationCmd::Update(s) => {
            let r = c.update_federation(request(&s)?).await.map_err(refused)?;
            print_one(&r.into_inner(), s.output);
        }
        FederationCmd::List { output } => {
            let r = c
                .list_federations(ListFederationsRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            if output == Output::Json {
                let all: Vec<_> = r.federations.iter().map(json).collect();
                trustdeck_process::outln!("{}", serde_json::json!({ "federations": all }));
            } else {
                for f in &r.federations {
                    print_text(f);
                }
            }
        }
        FederationCmd::Show {
            trust_domain,
            output,
        } => {
            let r = c.show_federation(FederationRequest { trust_domain }).await;
            print_one(&r.map_err(refused)?.into_inner(), output);
        }
        FederationCmd::Delete {
            trust_domain,
            output,
        } => {
            let r = c
                .delete_federation(FederationRequest { trust_domain })
                .await;
            print_one(&r.map_err(refused)?.into_inner(), output);
        }
        FederationCmd::Refresh {
            trust_domain,
            output,
        } => {
            let r = c
                .refresh_federation(FederationRequest { trust_domain })
                .await;
            return refreshed(&r.map_err(refused)?.into_inner(), output);
        }
    }
    Ok(())
}

fn at(secs: i64) -> serde_json::Value {
    if secs == 0 {
        serde_json::Value::Null
    } else {
        rfc3339(secs).into()
    }
}

fn json(f: &FederationInfo) -> serde_json::Value {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    serde_json::json!({
        "trust_domain": f.trust_domain, "endpoint_url": f.endpoint_url,
        "profile": f.profile_wire().as_str(),
        "endpoint_spiffe_id": opt(&f.endpoint_spiffe_id), "ca_file": opt(&f.ca_file),
        "created_at": at(f.created_at), "updated_at": at(f.updated_at),
        "last_attempt_at": at(f.last_attempt_at), "last_success_at": at(f.last_success_at),
        "last_error": opt(&f.last_error), "failures": f.failures,
        "sequence": f.sequence, "roots": f.roots, "next_refresh_at": at(f.next_refresh_at),
    })
}

fn print_one(f: &FederationInfo, output: Output) {
    if output == Output::Json {
        trustdeck_process::outln!("{}", json(f));
    } else {
        print_text(f);
    }
}

fn print_text(f: &FederationInfo) {
    let never = |t: i64| if t == 0 { "never".into() } else { rfc3339(t) };
    trustdeck_process::outln!("{} ({})", f.trust_domain, f.profile_wire());
    trustdeck_process::outln!("  endpoint      : {}", f.endpoint_url);
    if !f.endpoint_spiffe_id.is_empty() {
        trustdeck_process::outln!("  endpoint ID   : {}", f.endpoint_spiffe_id);
    }
    if !f.ca_file.is_empty() {
        trustdeck_process::outln!("  CA file       : {}", f.ca_file);
    }
    trustdeck_process::outln!(
        "  bundle held   : sequence {} roots: {}",
        f.sequence,
        f.roots.join(", ")
    );
    trustdeck_process::outln!("  last success  : {}", never(f.last_success_at));
    trustdeck_process::outln!("  last attempt  : {}", never(f.last_attempt_at));
    if f.failures > 0 {
        trustdeck_process::outln!("  failures      : {} ({})", f.failures, f.last_error);
    }
    trustdeck_process::outln!("  next refresh  : {}", rfc3339(f.next_refresh_at));
}

fn refreshed(r: &RefreshFederationResponse, output: Output) -> Result<()> {
    let outcome = r.outcome_wire();
    let ok = [
        RefreshOutcome::First,
        RefreshOutcome::Updated,
        RefreshOutcome::Unchanged,
    ]
    .into_iter()
    .any(|o| outcome == o);
    if output == Output::Json {
        let v = serde_json::json!({
            "outcome": outcome.as_str(),
            "refusal": (!ok).then(|| r.refusal_wire().as_str().to_string()).filter(|s| !s.is_empty()),
            "error": (!r.error.is_empty()).then(|| r.error.clone()),
            "previous_sequence": r.previous_sequence, "sequence": r.sequence,
            "federation": r.federation.as_ref().map(json),
        });
        trustdeck_process::outln!("{v}");
    } else if ok {
        trustdeck_process::outln!(
            "refreshed: {} (sequence {} -> {})",
            outcome,
            r.previous_sequence,
            r.sequence
        );
    }
    if !ok {
        let rule = r.refusal_wire();
        bail!(
            "refresh {outcome}: {rule}: {} (the last good bundle, sequence {}, is kept)",
            r.error,
            r.sequence
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::refusal::federation_refusal_status;

    #[test]
    fn a_refusal_names_its_rule_and_reason() {
        let e = refused(federation_refusal_status(
            FederationRefusal::BootstrapRequired,
            "give --bootstrap-bundle",
        ));
        assert_eq!(
            e.to_string(),
            "refused: bootstrap required: give --bootstrap-bundle"
        );
    }
}
