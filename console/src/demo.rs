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
use trustdeck_admin::info::ServerInfo;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::{CreateEntryRequest, CreateJoinTokenRequest, GetBundleRequest};

use trustdeck_server::config::ConfigFile as ServerFile;

use crate::fleetfile::{AgentEntry, FleetFile, ServerEntry};

mod config;
mod federation;
mod hsm;

pub use federation::{ISOLATED, PARTNER};

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
        source: std::io::Error,
    },
    /// A daemon's configuration could not be written as TOML.
    #[error("{path}: {source}")]
    Config {
        path: String,
        source: toml::ser::Error,
    },
    /// A server's SoftHSM2 token could not be set up.
    #[error("{name} did not start: {source} (log: {dir})")]
    Hsm {
        name: String,
        /// The token's directory.
        dir: String,
        source: trustdeck_lab::LabError,
    },
    /// A daemon did not come up.
    #[error("{name} did not start: {reason} (log: {log})")]
    Start {
        name: String,
        reason: StartFailure,
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

/// Why a daemon of the demo did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartFailure {
    #[error("exited with {0}")]
    Exited(std::process::ExitStatus),
    #[error("not ready within {} s", START_TIMEOUT.as_secs())]
    NotReady,
    /// A workload agent does not serve an SVID to the demo's user.
    #[error("no SVID served within {} s", START_TIMEOUT.as_secs())]
    NoSvid,
    /// The server's `server.json` is unreadable.
    #[error(transparent)]
    ServerInfo(trustdeck_admin::info::InfoError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// What `trustdeck demo` starts.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where everything lives (sockets, data, logs, demo.json).
    pub dir: PathBuf,
    /// Segment names (one downstream server each).
    pub segments: Vec<String>,
    /// Workload agents per segment.
    pub workload_agents: usize,
    /// Intermediate CA lifetime.
    pub intermediate_ttl: chrono::Duration,
    /// Workload X509-SVID lifetime.
    pub svid_ttl: chrono::Duration,
    /// Start the federated partner and the isolated trust domains beside the demo's.
    pub partners: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            segments: vec!["gcp".into(), "dmz".into()],
            workload_agents: 1,
            intermediate_ttl: chrono::Duration::hours(1),
            svid_ttl: chrono::Duration::minutes(5),
            partners: true,
        }
    }
}

struct Proc {
    name: String,
    child: Child,
}

/// The daemon binaries the demo runs.
struct Binaries {
    server: PathBuf,
    agent: PathBuf,
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
                    reason: StartFailure::Exited(status),
                    log: log.display().to_string(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DemoError::Start {
                    name: name.into(),
                    reason: StartFailure::NotReady,
                    log: log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes server `name`'s configuration (`file`, plus its key manager), starts it and
    /// waits for its `server.json`; returns its fleet entry.
    async fn start_server(
        &mut self,
        bin: &Path,
        role: &str,
        mut file: ServerFile,
        base: &Path,
    ) -> Result<ServerEntry, DemoError> {
        let name = file.name.clone().unwrap_or_default();
        let segment = file.segment.clone().unwrap_or_default();
        let dir = base.join(&name);
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let config = dir.join("server.toml");
        let (key_manager, env) = hsm::key_manager(&name, &dir)?;
        file.key_manager = key_manager;
        config::write(&config, &file)?;
        let info_path = ServerInfo::path(&file.data_dir);
        let _ = std::fs::remove_file(&info_path);
        let pid = self
            .spawn(
                &name,
                bin,
                &["run", "--config", &config.display().to_string()],
                &dir,
                &env,
            )
            .await?;
        self.wait_for(&name, &dir.join("log"), || info_path.exists())
            .await?;
        let info = ServerInfo::read(&file.data_dir).map_err(|e| DemoError::Start {
            name: name.clone(),
            reason: StartFailure::ServerInfo(e),
            log: dir.join("log").display().to_string(),
        })?;
        // Its clients are given these ports: a restart from its own config comes back to them.
        file.bind_address = info.node_api.to_string();
        if let (Some(e), Some(bound)) = (
            file.federation.bundle_endpoint.as_mut(),
            info.federation_bundle_endpoint,
        ) {
            e.bind_address = bound.to_string();
        }
        config::write(&config, &file)?;
        let trust_domain = (file.trust_domain != TRUST_DOMAIN).then(|| file.trust_domain.clone());
        Ok(ServerEntry {
            admin: format!("unix://{}", dir.join("admin.sock").display()),
            name,
            role: role.into(),
            segment,
            spiffe_id: Some(info.spiffe_id.to_string()),
            pid: Some(pid),
            node_api: Some(info.node_api.to_string()),
            trust_domain,
        })
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
        let (bundle, token, agent_id) = bootstrap(server, &dir).await?;
        let workload_socket = dir.join("workload.sock");
        let admin_sock = dir.join("admin.sock");
        let paths = config::AgentPaths {
            dir: &dir,
            bundle: &bundle,
            token: &token,
            workload_socket: &workload_socket,
            admin_socket: &admin_sock,
        };
        let config = dir.join("agent.toml");
        config::write(&config, &config::agent(name, segment, server, &paths))?;
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
            agent_id.clone(),
            AgentEntry {
                name: name.into(),
                segment: segment.into(),
                serves: serves.into(),
                workload_socket: workload_socket.display().to_string(),
                admin: format!("unix://{}", admin_sock.display()),
                spiffe_id: Some(agent_id),
                pid: Some(pid),
                trust_domain: server.trust_domain.clone(),
            },
        ))
    }

    /// Starts the whole topology and writes `demo.json`.
    pub async fn start(opts: &DemoOptions) -> Result<Demo, DemoError> {
        let bins = Binaries {
            server: binary("trustdeck-server")?,
            agent: binary("trustdeck-agent")?,
        };
        let base = &opts.dir;
        std::fs::create_dir_all(base).map_err(io(format!("create {}", base.display())))?;
        let mut demo = Demo {
            fleet: FleetFile {
                trust_domain: TRUST_DOMAIN.into(),
                ..Default::default()
            },
            fleet_path: base.join("demo.json"),
            procs: Vec::new(),
        };
        let _ = std::fs::remove_file(&demo.fleet_path);
        let mut up_file = config::upstream(&base.join("upstream"), opts);
        let web = match opts.partners {
            true => Some(federation::WebPki::create(&base.join("web-pki"))?),
            false => None,
        };
        if let Some(w) = &web {
            up_file.federation.bundle_endpoint =
                Some(config::bundle_endpoint(Some((&w.cert, &w.key))));
        }
        let upstream = demo
            .start_server(&bins.server, "upstream", up_file, base)
            .await?;
        demo.fleet.servers.push(upstream.clone());
        if let Some(w) = &web {
            demo.start_partner(&bins, &upstream, w, opts).await?;
            demo.start_isolated(&bins, &upstream, opts).await?;
        }
        for seg in &opts.segments {
            demo.start_segment(&bins, seg, &upstream, opts).await?;
        }
        demo.wait_for_svids(opts).await?;
        demo.write_fleet_file(base)?;
        Ok(demo)
    }

    /// Starts segment `seg`: the node agent that gives its server an identity, the
    /// downstream server, and the workload agents with their entries.
    async fn start_segment(
        &mut self,
        bins: &Binaries,
        seg: &str,
        upstream: &ServerEntry,
        opts: &DemoOptions,
    ) -> Result<(), DemoError> {
        let base = &opts.dir;
        let uid = trustdeck_admin::effective_uid().unwrap_or(0);
        let node_name = format!("{seg}-node");
        let (node_agent_id, node_agent) = self
            .start_agent(&bins.agent, &node_name, seg, "server", upstream, base)
            .await?;
        let ds_workload_id =
            format!("spiffe://{TRUST_DOMAIN}/prod/{seg}/platform/trustdeck-server");
        admin(&admin_socket_of(upstream))
            .await?
            .create_entry(CreateEntryRequest {
                spiffe_id: ds_workload_id.clone(),
                parent_id: node_agent_id,
                selectors: vec![format!("unix:uid:{uid}")],
                downstream: true,
                ..Default::default()
            })
            .await
            .map_err(admin_err("create the downstream entry"))?;
        self.fleet.agents.push(node_agent.clone());
        let file = config::downstream(
            seg,
            &base.join(seg),
            opts,
            upstream,
            &node_agent.workload_socket,
            &ds_workload_id,
        );
        let downstream = self
            .start_server(&bins.server, "downstream", file, base)
            .await?;
        self.fleet.servers.push(downstream.clone());
        for i in 1..=opts.workload_agents {
            let name = format!("{seg}-workloads-{i}");
            let (agent_id, entry) = self
                .start_agent(&bins.agent, &name, seg, "workloads", &downstream, base)
                .await?;
            create_workload_entries(&downstream, seg, &agent_id, opts.partners).await?;
            self.fleet.agents.push(entry);
        }
        Ok(())
    }

    /// Ready means every workload agent serves an SVID to this user.
    async fn wait_for_svids(&self, opts: &DemoOptions) -> Result<(), DemoError> {
        for a in &self.fleet.agents {
            if a.serves != "workloads" {
                continue;
            }
            let sock = PathBuf::from(&a.workload_socket);
            let deadline = tokio::time::Instant::now() + START_TIMEOUT;
            while !serves_an_svid(&sock).await {
                if tokio::time::Instant::now() > deadline {
                    return Err(DemoError::Start {
                        name: a.name.clone(),
                        reason: StartFailure::NoSvid,
                        log: opts.dir.join(&a.name).join("log").display().to_string(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Writes `demo.json` at once (through a temporary file).
    fn write_fleet_file(&self, base: &Path) -> Result<(), DemoError> {
        let json = serde_json::to_string_pretty(&self.fleet).map_err(|e| DemoError::Io {
            what: "fleet file".into(),
            source: std::io::Error::other(e),
        })?;
        let tmp = base.join(".demo.json.tmp");
        std::fs::write(&tmp, json).map_err(io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.fleet_path)
            .map_err(io(format!("write {}", self.fleet_path.display())))
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

fn admin_socket_of(s: &ServerEntry) -> PathBuf {
    PathBuf::from(s.admin.trim_start_matches("unix://"))
}

/// Whether the Workload API at `socket` serves an X509-SVID to this process within 2 s.
async fn serves_an_svid(socket: &Path) -> bool {
    let Ok(mut c) = trustdeck_transport::workload_client::connect(socket) else {
        return false;
    };
    let Ok(s) = c
        .fetch_x509svid(trustdeck_proto::workload::X509svidRequest {})
        .await
    else {
        return false;
    };
    let mut s = s.into_inner();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.message()).await,
        Ok(Ok(Some(r))) if !r.svids.is_empty()
    )
}

/// What an agent needs from `server` to start: the bundle (written to `dir`), a join token
/// (written to `dir`) and the SPIFFE ID the token will give it.
async fn bootstrap(
    server: &ServerEntry,
    dir: &Path,
) -> Result<(PathBuf, PathBuf, String), DemoError> {
    let mut adm = admin(&admin_socket_of(server)).await?;
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
    Ok((bundle_path, token_path, token.agent_spiffe_id))
}

/// The demo workloads of segment `seg` under workload agent `agent_id`, matching this user;
/// with `partners`, each federates with the partner and the isolated trust domains.
async fn create_workload_entries(
    server: &ServerEntry,
    seg: &str,
    agent_id: &str,
    partners: bool,
) -> Result<(), DemoError> {
    let federates_with: Vec<String> = match partners {
        true => vec![PARTNER.into(), ISOLATED.into()],
        false => Vec::new(),
    };
    let uid = trustdeck_admin::effective_uid().unwrap_or(0);
    let gid = trustdeck_admin::effective_gid().unwrap_or(0);
    let mut adm = admin(&admin_socket_of(server)).await?;
    for (team, workload, extra) in [
        ("payments", "api", None),
        ("payments", "ledger", Some(format!("unix:gid:{gid}"))),
        ("identity", "demo-client", None),
    ] {
        let mut selectors = vec![format!("unix:uid:{uid}")];
        selectors.extend(extra);
        adm.create_entry(CreateEntryRequest {
            spiffe_id: format!("spiffe://{TRUST_DOMAIN}/prod/{seg}/{team}/{workload}"),
            parent_id: agent_id.to_string(),
            selectors,
            federates_with: federates_with.clone(),
            ..Default::default()
        })
        .await
        .map_err(admin_err("create a workload entry"))?;
    }
    Ok(())
}
