//! `trustdeck demo`: the embedded default topology, on loopback with SQLite and no root.
//!
//! One upstream (root CA); per segment (`gcp`, `dmz` by default) a node agent attested to the
//! upstream, a downstream server that takes its identity from that agent and its intermediate
//! from the upstream, and workload agents attested to the downstream. Entries follow seed
//! 001's `spiffe://<td>/<env>/<platform>/<team>/<workload>` and match the invoking user's uid,
//! so any SPIFFE client the user runs gets SVIDs from any workload agent's socket. The fleet
//! file `demo.json` is written once every workload agent serves an SVID.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tonic::transport::Channel;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::{CreateEntryRequest, CreateJoinTokenRequest, GetBundleRequest};

use crate::fleetfile::{AgentEntry, FleetFile, ServerEntry};

/// The demo's trust domain.
pub const TRUST_DOMAIN: &str = "demo.trustdeck";
/// How long to wait for a daemon to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A daemon binary is missing.
    #[error("{0} not found next to {1} or on PATH: build it with `cargo build --release --bins`")]
    MissingBinary(String, String),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A daemon did not come up.
    #[error("{name} did not start: {message} (log: {log})")]
    Start {
        /// Daemon name.
        name: String,
        /// Why.
        message: String,
        /// Its log file.
        log: String,
    },
    /// An admin call failed.
    #[error("{what}: {message}")]
    Admin {
        /// What was being done.
        what: String,
        /// The server's answer.
        message: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where everything lives (sockets, data, logs, demo.json).
    pub dir: PathBuf,
    /// Segment names (one downstream server each).
    pub segments: Vec<String>,
    /// Workload agents per segment.
    pub workload_agents: usize,
    /// Intermediate CA lifetime.
    pub intermediate_ttl: String,
    /// Workload X509-SVID lifetime.
    pub svid_ttl: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            segments: vec!["gcp".into(), "dmz".into()],
            workload_agents: 1,
            intermediate_ttl: "1h".into(),
            svid_ttl: "5m".into(),
        }
    }
}

struct Proc {
    name: String,
    child: Child,
}

/// The running topology.
pub struct Demo {
    /// The fleet file's content.
    pub fleet: FleetFile,
    /// Where `demo.json` was written.
    pub fleet_path: PathBuf,
    procs: Vec<Proc>,
}

fn binary(name: &str) -> Result<PathBuf, DemoError> {
    let exe = std::env::current_exe().map_err(io("locate the trustdeck binary"))?;
    if let Some(dir) = exe.parent() {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(DemoError::MissingBinary(
        name.into(),
        exe.display().to_string(),
    ))
}

async fn admin(socket: &Path) -> Result<ServerAdminClient<Channel>, DemoError> {
    let ch = trustdeck_transport::connect::uds_channel(socket.to_path_buf()).map_err(|e| {
        DemoError::Admin {
            what: format!("admin socket {}", socket.display()),
            message: e.to_string(),
        }
    })?;
    Ok(ServerAdminClient::new(ch))
}

fn admin_err(what: &str) -> impl FnOnce(tonic::Status) -> DemoError {
    let what = what.to_string();
    move |s| DemoError::Admin {
        what,
        message: s.message().to_string(),
    }
}

impl Demo {
    async fn spawn(
        &mut self,
        name: &str,
        bin: &Path,
        args: &[&str],
        dir: &Path,
        env: &[(String, String)],
    ) -> Result<u32, DemoError> {
        let log = dir.join("log");
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io("log file"))?;
        let child = Command::new(bin)
            .args(args)
            .env("TRUSTDECK_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let pid = child.id().unwrap_or(0);
        self.procs.push(Proc {
            name: name.into(),
            child,
        });
        Ok(pid)
    }

    async fn wait_for(
        &mut self,
        name: &str,
        log: &Path,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), DemoError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(p) = self.procs.iter_mut().find(|p| p.name == name)
                && let Ok(Some(status)) = p.child.try_wait()
            {
                return Err(DemoError::Start {
                    name: name.into(),
                    message: format!("exited with {status}"),
                    log: log.display().to_string(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DemoError::Start {
                    name: name.into(),
                    message: format!("not ready within {} s", START_TIMEOUT.as_secs()),
                    log: log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_server(
        &mut self,
        bin: &Path,
        name: &str,
        role: &str,
        segment: &str,
        config_body: &str,
        base: &Path,
    ) -> Result<(ServerEntry, serde_json::Value), DemoError> {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let data = dir.join("data");
        let config = dir.join("server.toml");
        let (key_manager, env) = hsm_for(name, &dir)?;
        let text = format!(
            "trust_domain = \"{TRUST_DOMAIN}\"\nname = \"{name}\"\nsegment = \"{segment}\"\ndata_dir = \"{}\"\nadmin_socket = \"{}\"\nbind_address = \"127.0.0.1:0\"\nrotation_check_interval = \"1s\"\n{config_body}{key_manager}",
            data.display(),
            dir.join("admin.sock").display(),
        );
        std::fs::write(&config, text).map_err(io(format!("write {}", config.display())))?;
        let endpoints = data.join("server.json");
        let _ = std::fs::remove_file(&endpoints);
        let pid = self
            .spawn(
                name,
                bin,
                &["run", "--config", &config.display().to_string()],
                &dir,
                &env,
            )
            .await?;
        self.wait_for(name, &dir.join("log"), || endpoints.exists())
            .await?;
        let text = std::fs::read_to_string(&endpoints)
            .map_err(io(format!("read {}", endpoints.display())))?;
        let ep: serde_json::Value = serde_json::from_str(&text).map_err(|e| DemoError::Start {
            name: name.into(),
            message: format!("{}: {e}", endpoints.display()),
            log: dir.join("log").display().to_string(),
        })?;
        Ok((
            ServerEntry {
                name: name.into(),
                role: role.into(),
                segment: segment.into(),
                admin: format!("unix://{}", dir.join("admin.sock").display()),
                spiffe_id: ep["spiffe_id"].as_str().map(str::to_string),
                pid: Some(pid),
                node_api: ep["node_api"].as_str().map(str::to_string),
            },
            ep,
        ))
    }

    /// Creates a join token on `server`, starts an agent with it and returns the agent's
    /// SPIFFE ID and fleet entry.
    #[allow(clippy::too_many_arguments)]
    async fn start_agent(
        &mut self,
        bin: &Path,
        name: &str,
        segment: &str,
        serves: &str,
        server: &ServerEntry,
        base: &Path,
    ) -> Result<(String, AgentEntry), DemoError> {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let socket = admin_socket_of(server);
        let mut adm = admin(&socket).await?;
        let bundle = adm
            .get_bundle(GetBundleRequest {})
            .await
            .map_err(admin_err("get bundle"))?
            .into_inner();
        let bundle_path = dir.join("bootstrap-bundle.pem");
        std::fs::write(&bundle_path, bundle.pem)
            .map_err(io(format!("write {}", bundle_path.display())))?;
        let token = adm
            .create_join_token(CreateJoinTokenRequest { ttl_secs: 600 })
            .await
            .map_err(admin_err("create join token"))?
            .into_inner();
        let token_path = dir.join("join-token");
        std::fs::write(&token_path, &token.token)
            .map_err(io(format!("write {}", token_path.display())))?;
        let workload_socket = dir.join("workload.sock");
        let admin_sock = dir.join("admin.sock");
        let config = dir.join("agent.toml");
        let text = format!(
            "trust_domain = \"{TRUST_DOMAIN}\"\nname = \"{name}\"\nsegment = \"{segment}\"\nserver_address = \"{addr}\"\nserver_spiffe_id = \"{sid}\"\ntrust_bundle_path = \"{bundle}\"\ndata_dir = \"{data}\"\nsocket_path = \"{ws}\"\nadmin_socket = \"{adm}\"\n\n[node_attestation]\ntype = \"join_token\"\ntoken_path = \"{tok}\"\n",
            addr = server.node_api.clone().unwrap_or_default(),
            sid = server.spiffe_id.clone().unwrap_or_default(),
            bundle = bundle_path.display(),
            data = dir.join("data").display(),
            ws = workload_socket.display(),
            adm = admin_sock.display(),
            tok = token_path.display(),
        );
        std::fs::write(&config, text).map_err(io(format!("write {}", config.display())))?;
        let pid = self
            .spawn(
                name,
                bin,
                &["run", "--config", &config.display().to_string()],
                &dir,
                &[],
            )
            .await?;
        let (ws, asock) = (workload_socket.clone(), admin_sock.clone());
        self.wait_for(name, &dir.join("log"), || ws.exists() && asock.exists())
            .await?;
        Ok((
            token.agent_spiffe_id,
            AgentEntry {
                name: name.into(),
                segment: segment.into(),
                serves: serves.into(),
                workload_socket: workload_socket.display().to_string(),
                admin: format!("unix://{}", admin_sock.display()),
                spiffe_id: None,
                pid: Some(pid),
            },
        ))
    }

    /// Starts the whole topology and writes `demo.json`.
    pub async fn start(opts: &DemoOptions) -> Result<Demo, DemoError> {
        let server_bin = binary("trustdeck-server")?;
        let agent_bin = binary("trustdeck-agent")?;
        let base = &opts.dir;
        std::fs::create_dir_all(base).map_err(io(format!("create {}", base.display())))?;
        let uid = trustdeck_admin::effective_uid().unwrap_or(0);
        let gid = trustdeck_admin::effective_gid().unwrap_or(0);
        let mut demo = Demo {
            fleet: FleetFile {
                trust_domain: TRUST_DOMAIN.into(),
                ..Default::default()
            },
            fleet_path: base.join("demo.json"),
            procs: Vec::new(),
        };
        let _ = std::fs::remove_file(&demo.fleet_path);
        let up_id = format!("spiffe://{TRUST_DOMAIN}/trustdeck/server/upstream");
        let (upstream, _) = demo
            .start_server(
                &server_bin,
                "upstream",
                "upstream",
                "root",
                &format!(
                    "server_spiffe_id = \"{up_id}\"\nca_ttl = \"24h\"\njwt_key_ttl = \"12h\"\ndefault_x509_svid_ttl = \"{}\"\nagent_svid_ttl = \"30m\"\n",
                    opts.svid_ttl
                ),
                base,
            )
            .await?;
        demo.fleet.servers.push(upstream.clone());
        for seg in &opts.segments {
            // The node agent that gives the downstream server its identity.
            let node_name = format!("{seg}-node");
            let (node_agent_id, node_agent) = demo
                .start_agent(&agent_bin, &node_name, seg, "server", &upstream, base)
                .await?;
            let ds_workload_id =
                format!("spiffe://{TRUST_DOMAIN}/prod/{seg}/platform/trustdeck-server");
            admin(&admin_socket_of(&upstream))
                .await?
                .create_entry(CreateEntryRequest {
                    spiffe_id: ds_workload_id.clone(),
                    parent_id: node_agent_id.clone(),
                    selectors: vec![format!("unix:uid:{uid}")],
                    downstream: true,
                    ..Default::default()
                })
                .await
                .map_err(admin_err("create the downstream entry"))?;
            demo.fleet.agents.push(node_agent.clone());
            let ds_id = format!("spiffe://{TRUST_DOMAIN}/trustdeck/server/{seg}");
            let (downstream, _) = demo
                .start_server(
                    &server_bin,
                    seg,
                    "downstream",
                    seg,
                    &format!(
                        "server_spiffe_id = \"{ds_id}\"\nca_ttl = \"{}\"\ndefault_x509_svid_ttl = \"{}\"\nagent_svid_ttl = \"10m\"\n\n[upstream]\naddress = \"{}\"\nspiffe_id = \"{up_id}\"\nworkload_api_socket = \"{}\"\nown_spiffe_id = \"{ds_workload_id}\"\n",
                        opts.intermediate_ttl,
                        opts.svid_ttl,
                        upstream.node_api.clone().unwrap_or_default(),
                        node_agent.workload_socket,
                    ),
                    base,
                )
                .await?;
            demo.fleet.servers.push(downstream.clone());
            for i in 1..=opts.workload_agents {
                let name = format!("{seg}-workloads-{i}");
                let (agent_id, entry) = demo
                    .start_agent(&agent_bin, &name, seg, "workloads", &downstream, base)
                    .await?;
                let mut adm = admin(&admin_socket_of(&downstream)).await?;
                for (team, workload, extra) in [
                    ("payments", "api", None),
                    ("payments", "ledger", Some(format!("unix:gid:{gid}"))),
                    ("identity", "demo-client", None),
                ] {
                    let mut selectors = vec![format!("unix:uid:{uid}")];
                    selectors.extend(extra);
                    adm.create_entry(CreateEntryRequest {
                        spiffe_id: format!("spiffe://{TRUST_DOMAIN}/prod/{seg}/{team}/{workload}"),
                        parent_id: agent_id.clone(),
                        selectors,
                        ..Default::default()
                    })
                    .await
                    .map_err(admin_err("create a workload entry"))?;
                }
                demo.fleet.agents.push(entry);
            }
        }
        // Ready means every workload agent serves an SVID to this user.
        for a in demo.fleet.agents.clone() {
            if a.serves != "workloads" {
                continue;
            }
            let sock = PathBuf::from(&a.workload_socket);
            let log = opts.dir.join(&a.name).join("log");
            let deadline = tokio::time::Instant::now() + START_TIMEOUT;
            loop {
                if first_svid(&sock).await.is_ok() {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(DemoError::Start {
                        name: a.name.clone(),
                        message: "no SVID served within 60 s".into(),
                        log: log.display().to_string(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let json = serde_json::to_string_pretty(&demo.fleet).map_err(|e| DemoError::Io {
            what: "fleet file".into(),
            source: std::io::Error::other(e),
        })?;
        let tmp = base.join(".demo.json.tmp");
        std::fs::write(&tmp, json).map_err(io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &demo.fleet_path)
            .map_err(io(format!("write {}", demo.fleet_path.display())))?;
        Ok(demo)
    }

    /// Stops every daemon: SIGTERM in reverse start order, SIGKILL after 3 s.
    pub async fn stop(mut self) {
        for p in self.procs.iter().rev() {
            if let Some(pid) = p.child.id() {
                // A stopped (kill -STOP) daemon must be continued to see the SIGTERM.
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(pid.to_string())
                    .status()
                    .await;
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
        }
        for p in self.procs.iter_mut().rev() {
            match tokio::time::timeout(Duration::from_secs(3), p.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(daemon = %p.name, "did not stop within 3 s; killing");
                    let _ = p.child.kill().await;
                }
            }
        }
        let _ = std::fs::remove_file(&self.fleet_path);
    }
}

/// A `[key_manager]` section and the environment for one server: a private SoftHSM2 token
/// (its own directory, config and random PIN in a 0600 file) when SoftHSM2 is installed, so
/// the demo's CA keys are HSM-backed as the key policy wants; disk keys otherwise (the console
/// then shows the policy breach).
fn hsm_for(name: &str, dir: &Path) -> Result<(String, Vec<(String, String)>), DemoError> {
    use std::os::unix::fs::PermissionsExt;
    let util = std::process::Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !util || !Path::new(trustdeck_lab::SOFTHSM2_MODULE).exists() {
        tracing::warn!(
            server = name,
            "SoftHSM2 not installed: CA keys on disk (a key-policy breach)"
        );
        return Ok(("\n[key_manager]\ntype = \"disk\"\n".into(), Vec::new()));
    }
    let hsm = dir.join("hsm");
    std::fs::create_dir_all(&hsm).map_err(io(format!("create {}", hsm.display())))?;
    std::fs::set_permissions(&hsm, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", hsm.display())))?;
    let mut pin = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut pin))
        .map_err(io("read /dev/urandom"))?;
    let pin: String = pin.iter().map(|b| format!("{b:02x}")).collect();
    let pin_file = hsm.join("pin");
    std::fs::write(&pin_file, format!("{pin}\n"))
        .map_err(io(format!("write {}", pin_file.display())))?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("chmod {}", pin_file.display())))?;
    let label = format!("trustdeck-{name}");
    let conf = trustdeck_lab::init_softhsm2_token(&hsm, &label, &pin, &pin).map_err(|e| {
        DemoError::Start {
            name: name.into(),
            message: e.to_string(),
            log: hsm.display().to_string(),
        }
    })?;
    Ok((
        format!(
            "\n[key_manager]\ntype = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{label}\"\nkey_label_prefix = \"ca-\"\npin_file = \"{}\"\n",
            trustdeck_lab::SOFTHSM2_MODULE,
            pin_file.display()
        ),
        vec![("SOFTHSM2_CONF".into(), conf.display().to_string())],
    ))
}

fn admin_socket_of(s: &ServerEntry) -> PathBuf {
    PathBuf::from(s.admin.trim_start_matches("unix://"))
}

async fn first_svid(socket: &Path) -> Result<(), String> {
    let mut c = trustdeck_transport::workload_client::connect(socket).map_err(|e| e.to_string())?;
    let mut s = c
        .fetch_x509svid(trustdeck_proto::workload::X509svidRequest {})
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(2), s.message()).await {
        Ok(Ok(Some(r))) if !r.svids.is_empty() => Ok(()),
        _ => Err("no SVID yet".into()),
    }
}
