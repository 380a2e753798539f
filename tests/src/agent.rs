//! A `trustdeck-agent` child process, and a downstream server with the agent beside it.

use super::*;

/// A running `trustdeck-agent` child process.
pub struct AgentProc {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Workload API socket.
    pub socket: PathBuf,
    pub child: Option<Child>,
    /// Extra environment of the process.
    pub env: Vec<(String, String)>,
    /// Extra arguments of `run` (e.g. `--rebootstrap-bundle`).
    pub run_args: Vec<String>,
}

/// Starts an agent attested to `server` (of any trust domain) with a join token; returns it
/// with its SPIFFE ID.
pub fn join_agent(server: &ServerProc) -> (AgentProc, String) {
    let token = server.token("10m");
    let td = server.info().trust_domain.as_str().to_string();
    let agent = AgentProc::start(
        server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        &format!("server_spiffe_id = \"{}\"\n", server.server_spiffe_id()),
    );
    (
        agent,
        format!("spiffe://{td}/trustdeck/agent/join_token/{token}"),
    )
}

impl AgentProc {
    /// Starts an agent for `server` with the given `[node_attestation]` body and extra
    /// top-level TOML; waits until its Workload API socket exists.
    pub fn start(server: &ServerProc, attestation: &str, extra: &str) -> AgentProc {
        Self::start_with_env(server, attestation, extra, &[])
    }

    /// [`start`](Self::start) with extra environment variables (e.g. the agent's debug-build
    /// fault injection).
    pub fn start_with_env(
        server: &ServerProc,
        attestation: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> AgentProc {
        let dir = tempfile::Builder::new()
            .prefix("td-agent-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let bundle = dir.path().join("bootstrap.pem");
        std::fs::write(
            &bundle,
            server.cli_ok(&["bundle", "show", "--format", "pem"]),
        )
        .expect("bundle");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"trust_domain = "{td}"
server_address = "{addr}"
trust_bundle_path = "{bundle}"
data_dir = "{data}"
{backoff}{extra}
[node_attestation]
{attestation}
"#,
                td = server.info().trust_domain.as_str(),
                addr = server.addr(),
                bundle = bundle.display(),
                data = dir.path().join("data").display(),
                // Tests want quick retries unless they set their own.
                backoff = if extra.contains("max_backoff") {
                    ""
                } else {
                    "max_backoff = \"1s\"\n"
                },
            ),
        )
        .expect("config");
        let socket = dir.path().join("data").join("workload.sock");
        let mut a = AgentProc {
            dir,
            config,
            socket,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            run_args: Vec::new(),
        };
        a.spawn();
        a
    }

    /// Starts the process.
    pub fn spawn(&mut self) {
        // A killed agent leaves its socket file behind; wait for the new one.
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log");
        self.child = Some(
            Command::new(bin("trustdeck-agent"))
                .arg("run")
                .arg("--config")
                .arg(&self.config)
                .args(&self.run_args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn trustdeck-agent"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket.exists() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("agent exited with {status} during start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process as a service manager would (SIGTERM, then SIGKILL after 10 s) and
    /// waits for it: a TPM operation under way finishes and flushes its objects (a swtpm has
    /// no resource manager to flush what a killed agent loaded).
    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Its admin socket (the default, under `data_dir`).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.sock")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// A Workload API client that sends the security header.
    pub fn client(&self) -> trustdeck_transport::workload_client::WorkloadClient {
        trustdeck_transport::workload_client::connect(&self.socket).expect("client")
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A downstream server and the local agent beside it that gives it its identity.
pub struct Downstream {
    /// The agent that attests this node to the parent server.
    pub local_agent: AgentProc,
    /// The downstream server.
    pub server: ServerProc,
    /// Its SPIFFE ID upstream (the `downstream` entry).
    pub spiffe_id: String,
    /// The SPIFFE ID of its TLS SVID (what its agents expect).
    pub server_spiffe_id: String,
}

impl Downstream {
    /// Starts a downstream server for segment `name` under `parent`: registers a
    /// `downstream` entry on the parent for a local agent, starts that agent, then the
    /// server with `[upstream]` pointing at the parent. `extra` is added to the server config
    /// (top-level keys only). Its ID is `spiffe://example.org/<name>/trustdeck-server`: under a
    /// downstream `parent`, `name` must lie in the parent's namespace (e.g. `prod/eu/plant`
    /// under a parent named `eu`), and the new downstream's default namespace follows from it.
    pub fn start(parent: &ServerProc, name: &str, extra: &str) -> Downstream {
        let token = parent.token("10m");
        let local_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
        let spiffe_id = format!("spiffe://example.org/{name}/trustdeck-server");
        parent.cli_ok(&[
            "entry",
            "create",
            "--spiffe-id",
            &spiffe_id,
            "--parent-id",
            &local_id,
            "--selector",
            &format!("unix:uid:{}", my_uid()),
            "--downstream",
        ]);
        let local_agent = AgentProc::start(
            parent,
            &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
            &format!("server_spiffe_id = \"{}\"\n", parent.server_spiffe_id()),
        );
        let server_spiffe_id = format!("spiffe://example.org/{name}/trustdeck/server");
        let server = ServerProc::start(&format!(
            "server_spiffe_id = \"{server_spiffe_id}\"\n{extra}\n[upstream]\naddress = \"{addr}\"\nspiffe_id = \"{up}\"\nworkload_api_socket = \"{sock}\"\nown_spiffe_id = \"{spiffe_id}\"\n",
            addr = parent.addr(),
            up = parent.server_spiffe_id(),
            sock = local_agent.socket.display(),
        ));
        Downstream {
            local_agent,
            server,
            spiffe_id,
            server_spiffe_id,
        }
    }

    /// Starts a workload agent attested to this downstream server with a join token; returns
    /// it with its SPIFFE ID.
    pub fn workload_agent(&self) -> (AgentProc, String) {
        let token = self.server.token("10m");
        let id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
        (
            self.agent_with(&format!("type = \"join_token\"\ntoken = \"{token}\"\n")),
            id,
        )
    }

    /// Starts a workload agent attested to this downstream server with the given
    /// `[node_attestation]` body.
    pub fn agent_with(&self, attestation: &str) -> AgentProc {
        AgentProc::start(
            &self.server,
            attestation,
            &format!("server_spiffe_id = \"{}\"\n", self.server_spiffe_id),
        )
    }
}

/// An `x509pop` node: a node CA and a certificate for one node it issued, as an internal PKI
/// would issue at build time, as files.
pub struct PopNode {
    /// The node CA (what the server trusts), PEM.
    pub ca_path: PathBuf,
    /// The node's certificate, PEM.
    pub cert_path: PathBuf,
    /// Its key, PEM.
    pub key_path: PathBuf,
    /// Its certificate's common name.
    pub cn: String,
}

impl PopNode {
    /// A node CA and a certificate for `cn` (DNS name `<cn>.example.org`), written in `dir`.
    pub fn write(dir: &Path, cn: &str) -> PopNode {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(vec![]).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "node CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca, ca_key);
        let mut node = CertificateParams::new(vec![format!("{cn}.example.org")]).expect("params");
        node.distinguished_name.push(DnType::CommonName, cn);
        let node_key = KeyPair::generate().expect("key");
        let node_cert = node.signed_by(&node_key, &issuer).expect("cert");
        let p = PopNode {
            cn: cn.to_string(),
            ca_path: dir.join(format!("{cn}-ca.pem")),
            cert_path: dir.join(format!("{cn}.pem")),
            key_path: dir.join(format!("{cn}.key")),
        };
        std::fs::write(&p.ca_path, ca_cert.pem()).expect("write");
        std::fs::write(&p.cert_path, node_cert.pem()).expect("write");
        std::fs::write(&p.key_path, node_key.serialize_pem()).expect("write");
        p
    }

    /// The server config section trusting its CA.
    pub fn server_section(&self) -> String {
        format!(
            "[node_attestation.x509pop]\nca_bundle_path = \"{}\"\n",
            self.ca_path.display()
        )
    }

    /// Registers on `server` the node alias `alias` (parent `parent`, the server's SPIFFE ID)
    /// for this node's certificate, so entries parented to it follow whatever ID it attests as.
    pub fn register_alias(&self, server: &ServerProc, parent: &str, alias: &str) {
        server.cli_ok(&[
            "entry",
            "create",
            "--spiffe-id",
            alias,
            "--parent-id",
            parent,
            "--selector",
            &format!("x509pop:subject:cn:{}", self.cn),
        ]);
    }

    /// The agent's `[node_attestation]` body.
    pub fn agent_attestation(&self) -> String {
        format!(
            "type = \"x509pop\"\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
            self.cert_path.display(),
            self.key_path.display()
        )
    }
}
