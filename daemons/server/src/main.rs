//! `trustdeck-server`: run the server, or administer a running one over its admin socket.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::*;
use trustdeck_server::config::{Config, parse_duration};

mod audit_cmd;
mod authority_cmd;
mod bundle_cmd;
mod federation_cmd;

/// The trustdeck SPIFFE server.
#[derive(Parser)]
#[command(name = "trustdeck-server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Target {
    /// Admin socket of the running server.
    #[arg(long, env = "TRUSTDECK_SERVER_SOCKET", global = true)]
    socket: Option<PathBuf>,
    /// Read the admin socket path from this server config.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Run {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Start on an empty datastore although CA keys of an earlier initialisation remain:
        /// mints a new CA and trust anchor (audited). Only after the datastore is known lost.
        #[arg(long)]
        reinitialize: bool,
        /// Take the CA journal over from another server that is gone for good (its lease run
        /// out): its CA stays trusted until it expires, and a new CA, JWT key and bundle are
        /// minted (audited). Never while the other server runs.
        #[arg(long)]
        take_over_ca: bool,
        /// The key manager (e.g. a replaced HSM token) no longer holds CA keys the journal
        /// names, and they are lost for good: their authorities are tainted (trusted until
        /// re-issued, never signing), new ones are minted in the key manager and activated
        /// (audited as `server.replace_lost_keys`). Refused when no key is lost.
        #[arg(long)]
        replace_lost_keys: bool,
    },
    /// Check a config file and print its warnings.
    CheckConfig {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Say what `run --replace-lost-keys` would do (opens the key manager, reads the CA
        /// journal; changes nothing).
        #[arg(long)]
        replace_lost_keys: bool,
    },
    /// Join tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Registration entries.
    Entry {
        #[command(subcommand)]
        cmd: EntryCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Attested agents.
    Agent {
        #[command(subcommand)]
        cmd: AgentCmd,
        #[command(flatten)]
        target: Target,
    },
    /// The audit log: changes, failed calls and refused callers.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Authority operations: show, prepare, activate, taint, revoke (X.509 CAs, JWT keys).
    Authority {
        #[command(subcommand)]
        kind: authority_cmd::KindCmd,
        #[command(flatten)]
        target: Target,
    },
    /// The trust bundle; signed bundle files and receipts for isolated trust domains.
    Bundle {
        #[command(subcommand)]
        cmd: bundle_cmd::BundleCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Federation relationships: partners whose bundle this server fetches.
    Federation {
        #[command(subcommand)]
        cmd: federation_cmd::FederationCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Exit 0 when the server is serving with a valid CA.
    Healthcheck {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Generate a single-use join token.
    Generate {
        /// Lifetime, e.g. 10m.
        #[arg(long, default_value = "10m")]
        ttl: String,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum EntryCmd {
    /// Create a registration entry.
    Create {
        /// SPIFFE ID of the workload, e.g. spiffe://example.org/prod/gcp/payments/api.
        #[arg(long)]
        spiffe_id: String,
        /// Parent: an agent's SPIFFE ID or a node alias.
        #[arg(long)]
        parent_id: String,
        /// Selector `type:value`, repeatable (all must match).
        #[arg(long = "selector", required = true)]
        selectors: Vec<String>,
        /// X509-SVID TTL (default: the server's).
        #[arg(long)]
        x509_ttl: Option<String>,
        /// JWT-SVID TTL (default: the server's).
        #[arg(long)]
        jwt_ttl: Option<String>,
        /// The entry identifies a downstream server (may get an intermediate CA).
        #[arg(long)]
        downstream: bool,
        /// DNS SAN, repeatable.
        #[arg(long = "dns")]
        dns_names: Vec<String>,
        /// Downstream entries only: a SPIFFE ID path prefix its server may issue under, e.g.
        /// /prod/gcp/; repeatable. Default: the platform path named by the SPIFFE ID.
        #[arg(long = "namespace", requires = "downstream")]
        namespaces: Vec<String>,
        /// A foreign trust domain whose bundle the workloads receive, e.g. partner.example;
        /// repeatable. The server must hold its bundle (`federation create` or
        /// `bundle import`).
        #[arg(long = "federates-with")]
        federates_with: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show entries (all, or filtered).
    Show {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        spiffe_id: Option<String>,
        #[arg(long)]
        parent_id: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Delete an entry.
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// List the newest records of the audit log, newest first.
    List {
        /// How many records (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Check the audit log's hash chain in the datastore of `-c CONFIG` (read directly, so the
    /// server may be stopped): exits 0 when intact, non-zero naming the first bad record.
    Verify {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// List attested agents.
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Evict an agent: it must attest again.
    Evict {
        #[arg(long)]
        spiffe_id: String,
    },
    /// Ban an agent: it cannot renew or attest again until evicted.
    Ban {
        #[arg(long)]
        spiffe_id: String,
    },
}

const DEFAULT_SOCKET: &str = "/tmp/trustdeck-server/admin.sock";

fn socket_path(t: &Target) -> Result<PathBuf> {
    if let Some(s) = &t.socket {
        return Ok(s.clone());
    }
    if let Some(c) = &t.config {
        return Ok(Config::load(c)?.admin_socket);
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

async fn client(t: &Target) -> Result<ServerAdminClient<tonic::transport::Channel>> {
    let path = socket_path(t)?;
    // Tried once here so that a socket this user may not open says so, not "transport error".
    if let Err(e) = trustdeck_admin::socket::probe(&path) {
        let uid = trustdeck_admin::effective_uid().unwrap_or(u32::MAX);
        match e.kind() {
            std::io::ErrorKind::NotFound => bail!(
                "admin socket {} does not exist: is the server running? (use --socket or --config)",
                path.display()
            ),
            std::io::ErrorKind::PermissionDenied => bail!(
                "permission denied opening admin socket {} as uid {uid}: the server lets in \
                 root, its own uid, admin_allowed_uids and [admin] viewer_uids (with \
                 [admin] socket_group, only that group's members can open it)",
                path.display()
            ),
            std::io::ErrorKind::ConnectionRefused => bail!(
                "nothing answers on admin socket {}: is the server running?",
                path.display()
            ),
            _ => bail!("admin socket {}: {e}", path.display()),
        }
    }
    let ch = trustdeck_transport::connect::uds_channel(&path)?;
    Ok(ServerAdminClient::new(ch))
}

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}

/// A TTL option in whole seconds (`None`: the server's default). The range is the server's
/// to check, so an explicit `0s` reaches it and is refused there.
fn ttl_secs(s: &Option<String>, what: &str) -> Result<Option<i64>> {
    let Some(s) = s else { return Ok(None) };
    let d = parse_duration(s).map_err(|e| anyhow::anyhow!("--{what}: {e}"))?;
    if d.subsec_nanos() != 0 {
        anyhow::bail!("--{what} {s}: SVID lifetimes are whole seconds");
    }
    Ok(Some(d.num_seconds()))
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| secs.to_string())
}

fn print_entry(e: &EntryInfo) {
    trustdeck_process::outln!("Entry ID      : {}", e.id);
    trustdeck_process::outln!("SPIFFE ID     : {}", e.spiffe_id);
    trustdeck_process::outln!("Parent ID     : {}", e.parent_id);
    for s in &e.selectors {
        trustdeck_process::outln!("Selector      : {s}");
    }
    trustdeck_process::outln!("X509-SVID TTL : {}", ttl_text(e.x509_ttl_secs));
    trustdeck_process::outln!("JWT-SVID TTL  : {}", ttl_text(e.jwt_ttl_secs));
    if e.downstream {
        trustdeck_process::outln!("Downstream    : true");
    }
    for d in &e.dns_names {
        trustdeck_process::outln!("DNS name      : {d}");
    }
    for n in &e.namespaces {
        trustdeck_process::outln!("Namespace     : {n}");
    }
    for t in &e.federates_with {
        trustdeck_process::outln!("FederatesWith : {t}");
    }
    trustdeck_process::outln!();
}

fn ttl_text(s: i64) -> String {
    if s == 0 {
        "default".into()
    } else {
        format!("{s}s")
    }
}

fn print_audit(records: &[AuditRecordInfo], output: Output) {
    if output == Output::Json {
        let v: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "at": rfc3339(r.at), "actor": r.actor, "action": r.action,
                    "target": r.target, "detail": r.detail, "outcome": r.outcome,
                    "seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash,
                })
            })
            .collect();
        trustdeck_process::outln!("{}", serde_json::Value::Array(v));
        return;
    }
    for r in records {
        let what = match r.target.as_str() {
            "" => r.action.clone(),
            t => format!("{} {t}", r.action),
        };
        trustdeck_process::outln!(
            "{} {} {what} [{}] {}",
            rfc3339(r.at),
            r.actor,
            r.outcome,
            r.detail
        );
    }
}

fn entry_json(e: &EntryInfo) -> serde_json::Value {
    serde_json::json!({
        "id": e.id, "spiffe_id": e.spiffe_id, "parent_id": e.parent_id,
        "selectors": e.selectors, "x509_ttl_secs": e.x509_ttl_secs,
        "jwt_ttl_secs": e.jwt_ttl_secs, "downstream": e.downstream,
        "dns_names": e.dns_names, "namespaces": e.namespaces,
        "federates_with": e.federates_with,
        "created_at": rfc3339(e.created_at),
    })
}

/// The operator's flags of `run`.
struct RunFlags {
    reinitialize: bool,
    take_over_ca: bool,
    replace_lost_keys: bool,
}

async fn run_server(config: &Path, flags: RunFlags) -> Result<()> {
    let mut config = Config::load(config)?;
    config.reinitialize = flags.reinitialize;
    config.take_over_ca = flags.take_over_ca;
    config.replace_lost_keys = flags.replace_lost_keys;
    let mut server = trustdeck_server::start::start(config)
        .await
        .context("trustdeck-server failed to start")?;
    let mut stopped = None;
    let ended = async { stopped = server.wait().await };
    trustdeck_process::until_terminated(ended, "server").await?;
    trustdeck_process::shutdown_within_grace(server.shutdown()).await;
    match stopped {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            reinitialize,
            take_over_ca,
            replace_lost_keys,
        } => {
            trustdeck_process::init_logging();
            let flags = RunFlags {
                reinitialize,
                take_over_ca,
                replace_lost_keys,
            };
            run_server(&config, flags).await
        }
        Command::CheckConfig {
            config,
            replace_lost_keys,
        } => {
            let c = Config::load(&config)?;
            for w in &c.warnings {
                trustdeck_process::outln!("warning: {w}");
            }
            // Reads the datastore (read-only) and the disk key files (public keys compared as `run`
            // does); writes nothing.
            trustdeck_server::federation::endpoint::check_files(c.bundle_endpoint.as_ref())?;
            trustdeck_server::start::check_earlier_state(&c).await?;
            if let Some(w) = trustdeck_server::start::check_ca_owner(&c).await? {
                trustdeck_process::outln!("warning: {w}");
            }
            if replace_lost_keys {
                for line in trustdeck_server::start::check_lost_keys(&c).await? {
                    trustdeck_process::outln!("{line}");
                }
            }
            trustdeck_process::outln!("config {} is valid", config.display());
            Ok(())
        }
        Command::Token { cmd, target } => match cmd {
            TokenCmd::Generate { ttl } => {
                let ttl = parse_duration(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
                let r = client(&target)
                    .await?
                    .create_join_token(CreateJoinTokenRequest {
                        ttl_secs: ttl.num_seconds(),
                    })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                trustdeck_process::outln!("Token: {}", r.token);
                trustdeck_process::outln!("Agent SPIFFE ID: {}", r.agent_spiffe_id);
                trustdeck_process::outln!("Expires: {}", rfc3339(r.expires_at));
                Ok(())
            }
        },
        Command::Entry { cmd, target } => {
            let mut c = client(&target).await?;
            match cmd {
                EntryCmd::Create {
                    spiffe_id,
                    parent_id,
                    selectors,
                    x509_ttl,
                    jwt_ttl,
                    downstream,
                    dns_names,
                    namespaces,
                    federates_with,
                    output,
                } => {
                    let e = c
                        .create_entry(CreateEntryRequest {
                            spiffe_id,
                            parent_id,
                            selectors,
                            x509_ttl_secs: ttl_secs(&x509_ttl, "x509-ttl")?,
                            jwt_ttl_secs: ttl_secs(&jwt_ttl, "jwt-ttl")?,
                            downstream,
                            dns_names,
                            namespaces,
                            federates_with,
                        })
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    if output == Output::Json {
                        trustdeck_process::outln!("{}", entry_json(&e));
                    } else {
                        print_entry(&e);
                    }
                    Ok(())
                }
                EntryCmd::Show {
                    id,
                    spiffe_id,
                    parent_id,
                    output,
                } => {
                    let r = c
                        .list_entries(ListEntriesRequest {
                            id: id.unwrap_or_default(),
                            spiffe_id: spiffe_id.unwrap_or_default(),
                            parent_id: parent_id.unwrap_or_default(),
                        })
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    if output == Output::Json {
                        let v: Vec<_> = r.entries.iter().map(entry_json).collect();
                        trustdeck_process::outln!("{}", serde_json::Value::Array(v));
                    } else {
                        trustdeck_process::outln!("Found {} entries", r.entries.len());
                        for e in &r.entries {
                            print_entry(e);
                        }
                    }
                    Ok(())
                }
                EntryCmd::Delete { id } => {
                    let r = c
                        .delete_entry(DeleteEntryRequest { id })
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    if let Some(e) = r.deleted {
                        trustdeck_process::outln!("Deleted entry {} ({})", e.id, e.spiffe_id);
                    }
                    Ok(())
                }
            }
        }
        Command::Authority { kind, target } => authority_cmd::run(kind, &target).await,
        Command::Audit {
            cmd: AuditCmd::List { limit, output },
            target,
        } => {
            let r = client(&target)
                .await?
                .list_audit(ListAuditRequest { limit })
                .await
                .map_err(status_err)?
                .into_inner();
            print_audit(&r.records, output);
            Ok(())
        }
        Command::Audit {
            cmd: AuditCmd::Verify { output },
            target,
        } => match &target.config {
            Some(config) => audit_cmd::verify(config, output).await,
            None => bail!("audit verify reads the datastore directly: give the server's -c CONFIG"),
        },
        Command::Agent { cmd, target } => {
            let mut c = client(&target).await?;
            match cmd {
                AgentCmd::List { output } => {
                    let r = c
                        .list_agents(ListAgentsRequest {})
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    if output == Output::Json {
                        let v: Vec<_> = r
                            .agents
                            .iter()
                            .map(|a| {
                                serde_json::json!({
                                    "spiffe_id": a.spiffe_id, "attestation_type": a.attestation_type,
                                    "cert_serial": a.cert_serial, "cert_not_after": rfc3339(a.cert_not_after),
                                    "banned": a.banned, "selectors": a.selectors,
                                })
                            })
                            .collect();
                        trustdeck_process::outln!("{}", serde_json::Value::Array(v));
                    } else {
                        trustdeck_process::outln!("Found {} attested agents", r.agents.len());
                        for a in &r.agents {
                            trustdeck_process::outln!("SPIFFE ID   : {}", a.spiffe_id);
                            trustdeck_process::outln!("Attestation : {}", a.attestation_type);
                            trustdeck_process::outln!(
                                "SVID expiry : {}",
                                rfc3339(a.cert_not_after)
                            );
                            trustdeck_process::outln!("Banned      : {}", a.banned);
                            trustdeck_process::outln!();
                        }
                    }
                    Ok(())
                }
                AgentCmd::Evict { spiffe_id } => {
                    c.evict_agent(AgentRequest {
                        spiffe_id: spiffe_id.clone(),
                    })
                    .await
                    .map_err(status_err)?;
                    trustdeck_process::outln!("Agent {spiffe_id} evicted");
                    Ok(())
                }
                AgentCmd::Ban { spiffe_id } => {
                    c.ban_agent(AgentRequest {
                        spiffe_id: spiffe_id.clone(),
                    })
                    .await
                    .map_err(status_err)?;
                    trustdeck_process::outln!("Agent {spiffe_id} banned");
                    Ok(())
                }
            }
        }
        Command::Bundle { cmd, target } => bundle_cmd::run(cmd, &target).await,
        Command::Federation { cmd, target } => federation_cmd::run(cmd, &target).await,
        Command::Healthcheck { target } => {
            let r = client(&target)
                .await?
                .health(HealthRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            if !r.serving && !r.datastore_reachable {
                bail!("server is not healthy: datastore unreachable");
            }
            if !r.serving {
                bail!("server is not healthy");
            }
            trustdeck_process::outln!(
                "Server is healthy (trust domain {}, CA valid until {}, bundle sequence {})",
                r.trust_domain,
                rfc3339(r.active_x509_not_after),
                r.bundle_sequence
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = with_module_environment(&cli).and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?
            .block_on(run(cli))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// For `run` with a PKCS#11 `environment` this process lacks: starts the same command again
/// with it set (the module reads it when it loads; this process cannot set its own
/// environment safely), before any thread exists. Returns only when nothing is missing, or
/// with the error of a config that does not load (which `run` reports itself).
fn with_module_environment(cli: &Cli) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let Command::Run { config, .. } = &cli.command else {
        return Ok(());
    };
    let Ok(c) = Config::load(config) else {
        return Ok(());
    };
    let trustdeck_server::config::KeyManagerConfig::Pkcs11 { environment, .. } = &c.key_manager
    else {
        return Ok(());
    };
    let missing = environment
        .iter()
        .find(|(k, v)| std::env::var_os(k).as_deref() != Some(std::ffi::OsStr::new(v)));
    let Some((name, _)) = missing else {
        return Ok(());
    };
    // Started again once already: the loader dropped the variable (e.g. `LD_*` for a binary
    // with file capabilities); another start would loop.
    const AGAIN: &str = "TRUSTDECK_SERVER_ENVIRONMENT_SET";
    // exec keeps the pid: the marker is ours only when it names this process.
    let me = std::process::id().to_string();
    if std::env::var_os(AGAIN).is_some_and(|v| v == me.as_str()) {
        anyhow::bail!(
            "key_manager.environment: {name} is still not set after starting again with it \
             (the system drops it for this binary); set it in the service's environment instead"
        );
    }
    let exe = std::env::current_exe()
        .context("locate trustdeck-server to set key_manager.environment")?;
    let e = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(environment)
        .env(AGAIN, &me)
        .exec();
    Err(e).context("start trustdeck-server again with key_manager.environment")
}
