//! `trustdeck-agent`: run the agent, or use its Workload API as a workload would.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_stream::StreamExt;
use trustdeck_agent::config::Config;
use trustdeck_proto::workload::*;
use trustdeck_spiffe::pem;
use trustdeck_transport::workload_client::{self, WorkloadClient};

/// The trustdeck agent.
#[derive(Parser)]
#[command(name = "trustdeck-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Target {
    /// Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET, or the config's socket_path).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Read socket_path from this agent config.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Trust the bundle at `trust_bundle_path` instead of the one stored in `data_dir`
        /// until the server sends its own: after the server's root was replaced
        /// (`trustdeck-server run --replace-lost-keys`), put its new bundle there
        /// (`trustdeck-server bundle show`). The stored SVID is kept.
        #[arg(long)]
        rebootstrap_bundle: bool,
    },
    /// Use the Workload API.
    Api {
        #[command(subcommand)]
        cmd: ApiCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Exit 0 when the agent answers on its Workload API socket.
    Healthcheck {
        #[command(flatten)]
        target: Target,
    },
    /// TPM 2.0 DevID keys for `tpm_devid` node attestation.
    Tpm {
        #[command(subcommand)]
        cmd: TpmCmd,
    },
}

#[derive(Subcommand)]
enum TpmCmd {
    /// Create a DevID key in the TPM; write its blobs, a CSR signed by it, and the EK
    /// certificate.
    Provision {
        /// TCTI (default: $TPM2TOOLS_TCTI, $TCTI, else device:/dev/tpmrm0).
        #[arg(long)]
        tcti: Option<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Subject common name of the CSR (default: the host name).
        #[arg(long)]
        cn: Option<String>,
        /// Replace an existing devid.key.
        #[arg(long)]
        force: bool,
    },
    /// Show the EK certificate and whether a DevID key loads in this TPM.
    Show {
        /// TCTI (default: $TPM2TOOLS_TCTI, $TCTI, else device:/dev/tpmrm0).
        #[arg(long)]
        tcti: Option<String>,
        /// A DevID key file to try.
        #[arg(long)]
        devid_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApiCmd {
    /// Fetch SVIDs or JWT-SVIDs.
    Fetch {
        #[command(subcommand)]
        what: FetchCmd,
    },
    /// Validate a JWT-SVID.
    Validate {
        #[command(subcommand)]
        what: ValidateCmd,
    },
}

#[derive(Subcommand)]
enum FetchCmd {
    /// The X.509 context: SVIDs, keys and bundle.
    X509 {
        /// Write svid.N.pem, svid.N.key and bundle.0.pem into this directory.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// JWT-SVIDs for an audience.
    Jwt {
        #[arg(long, required = true)]
        audience: Vec<String>,
        #[arg(long)]
        spiffe_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum ValidateCmd {
    /// Validate a JWT-SVID through the agent.
    Jwt {
        #[arg(long)]
        audience: String,
        #[arg(long)]
        svid: String,
    },
}

fn socket(t: &Target) -> Result<PathBuf> {
    if let Some(s) = &t.socket {
        return Ok(s.clone());
    }
    if let Some(c) = &t.config {
        return Ok(Config::load(c)?.socket_path);
    }
    workload_client::socket_from_env()
        .context("no Workload API socket: pass --socket, --config, or set SPIFFE_ENDPOINT_SOCKET")
}

fn client(t: &Target) -> Result<WorkloadClient> {
    let path = socket(t)?;
    if !path.exists() {
        bail!(
            "Workload API socket {} does not exist: is the agent running?",
            path.display()
        );
    }
    Ok(workload_client::connect(&path)?)
}

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}

fn write_file(path: &Path, data: &str, mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

async fn fetch_x509(t: &Target, write: Option<PathBuf>) -> Result<()> {
    let mut stream = client(t)?
        .fetch_x509svid(X509svidRequest {})
        .await
        .map_err(status_err)?
        .into_inner();
    let resp = stream
        .next()
        .await
        .context("stream ended without a response")?
        .map_err(status_err)?;
    for (i, s) in resp.svids.iter().enumerate() {
        let chain = pem::split_der(&s.x509_svid)?;
        let info = trustdeck_spiffe::x509::check_leaf(&chain[0])?;
        trustdeck_process::outln!("SPIFFE ID:        {}", s.spiffe_id);
        trustdeck_process::outln!("SVID valid after: {}", info.not_before.to_rfc3339());
        trustdeck_process::outln!("SVID valid until: {}", info.not_after.to_rfc3339());
        trustdeck_process::outln!("Chain length:     {}", chain.len());
        if let Some(dir) = &write {
            std::fs::create_dir_all(dir)?;
            write_file(
                &dir.join(format!("svid.{i}.pem")),
                &pem::encode_certs(&chain),
                0o644,
            )?;
            write_file(
                &dir.join(format!("svid.{i}.key")),
                &pem::encode("PRIVATE KEY", &s.x509_svid_key),
                0o600,
            )?;
            if i == 0 {
                write_file(
                    &dir.join("bundle.0.pem"),
                    &pem::encode_certs(&pem::split_der(&s.bundle)?),
                    0o644,
                )?;
            }
        }
        trustdeck_process::outln!();
    }
    if let Some(dir) = &write {
        trustdeck_process::outln!("Wrote {} SVID(s) to {}", resp.svids.len(), dir.display());
    }
    Ok(())
}

async fn run_agent(config: &Path, rebootstrap_bundle: bool) -> Result<()> {
    let mut config = Config::load(config)?;
    config.rebootstrap_bundle = rebootstrap_bundle;
    let mut agent = trustdeck_agent::start::start(config, trustdeck_process::clock::system())
        .await
        .context("trustdeck-agent failed to start")?;
    trustdeck_process::until_terminated(agent.wait(), "agent").await?;
    trustdeck_process::shutdown_within_grace(agent.shutdown()).await;
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            rebootstrap_bundle,
        } => {
            trustdeck_process::init_logging();
            run_agent(&config, rebootstrap_bundle).await
        }
        Command::Api { cmd, target } => match cmd {
            ApiCmd::Fetch {
                what: FetchCmd::X509 { write },
            } => fetch_x509(&target, write).await,
            ApiCmd::Fetch {
                what:
                    FetchCmd::Jwt {
                        audience,
                        spiffe_id,
                    },
            } => {
                let r = client(&target)?
                    .fetch_jwtsvid(JwtsvidRequest {
                        audience,
                        spiffe_id: spiffe_id.unwrap_or_default(),
                    })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                for s in r.svids {
                    trustdeck_process::outln!("token({}):\n{}", s.spiffe_id, s.svid);
                }
                Ok(())
            }
            ApiCmd::Validate {
                what: ValidateCmd::Jwt { audience, svid },
            } => {
                let r = client(&target)?
                    .validate_jwtsvid(ValidateJwtsvidRequest { audience, svid })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                trustdeck_process::outln!("SVID is valid.");
                trustdeck_process::outln!("SPIFFE ID : {}", r.spiffe_id);
                if let Some(c) = r.claims {
                    let mut keys: Vec<_> = c.fields.keys().cloned().collect();
                    keys.sort();
                    trustdeck_process::outln!("Claims    : {}", keys.join(", "));
                }
                Ok(())
            }
        },
        Command::Tpm { cmd } => {
            let report = tokio::task::spawn_blocking(move || match cmd {
                TpmCmd::Provision {
                    tcti,
                    out,
                    cn,
                    force,
                } => {
                    let cn = cn
                        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "trustdeck-node".into());
                    trustdeck_agent::tpm::provision(tcti, &out, &cn, force)
                }
                TpmCmd::Show { tcti, devid_key } => {
                    trustdeck_agent::tpm::show(tcti, devid_key.as_deref())
                }
            })
            .await??;
            trustdeck_process::out!("{report}");
            Ok(())
        }
        Command::Healthcheck { target } => {
            let r = client(&target)?
                .fetch_jwt_bundles(JwtBundlesRequest {})
                .await;
            let first = match r {
                Ok(s) => s.into_inner().next().await.transpose(),
                Err(e) => Err(e),
            };
            match first {
                // PermissionDenied means the agent answered but this caller has no identity.
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::PermissionDenied => {}
                Err(e) => return Err(status_err(e).context("agent is not healthy")),
            }
            trustdeck_process::outln!("Agent is healthy.");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
