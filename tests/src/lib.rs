//! Harness for end-to-end tests: starts real daemons as child processes in private temp dirs
//! (port 0, own sockets) and talks to them as agents and operators would.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use trustdeck_admin::info::ServerInfo;
use trustdeck_pki::SigningKey;
use trustdeck_pki::keys::SoftwareKey;
use trustdeck_proto::node::node_client::NodeClient;
use trustdeck_proto::node::*;
use trustdeck_spiffe::{SpiffeId, TrustDomain};
use trustdeck_transport::{SharedIdentity, SharedRoots};

pub mod hsm;
pub mod tpm;

/// Directory holding the workspace's built binaries (next to the test executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TRUSTDECK_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A running `trustdeck-server` child process.
pub struct ServerProc {
    /// Private directory (config, data, logs).
    pub dir: tempfile::TempDir,
    /// Config file.
    pub config: PathBuf,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Child process.
    pub child: Option<Child>,
    /// Contents of `server.json` once the server serves.
    pub info: Option<ServerInfo>,
    /// Extra environment of the process.
    pub env: Vec<(String, String)>,
}

/// The config text for a test server in `dir`; `extra` is appended.
pub fn server_config(dir: &Path, extra: &str) -> String {
    // Keys the test sets in `extra` replace the defaults below.
    let mut base = String::new();
    for (key, value) in [
        ("bind_address", "\"127.0.0.1:0\""),
        ("ca_ttl", "\"1h\""),
        ("default_x509_svid_ttl", "\"10m\""),
        ("rotation_check_interval", "\"1s\""),
    ] {
        // Only top-level keys override: those before the first `[table]` of `extra`.
        if !extra
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .any(|l| l.trim_start().starts_with(&format!("{key} ")))
        {
            base.push_str(&format!("{key} = {value}\n"));
        }
    }
    format!(
        r#"trust_domain = "example.org"
data_dir = "{data}"
{base}{extra}
"#,
        data = dir.join("data").display(),
    )
}

impl ServerProc {
    /// Starts a server with the default test config plus `extra` TOML.
    pub fn start(extra: &str) -> ServerProc {
        Self::start_with_env(extra, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables for the process (e.g.
    /// `SOFTHSM2_CONF`).
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> ServerProc {
        let dir = tempfile::Builder::new()
            .prefix("td-e2e-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let config = dir.path().join("server.toml");
        std::fs::write(&config, server_config(dir.path(), extra)).expect("write config");
        let data_dir = dir.path().join("data");
        let mut s = ServerProc {
            dir,
            config,
            data_dir,
            child: None,
            info: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    /// `trustdeck-server run` with this config and environment, logging to `server.log`.
    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut c = Command::new(bin("trustdeck-server"));
        c.arg("run")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log);
        c
    }

    /// (Re)starts the process with the same config and data.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(ServerInfo::path(&self.data_dir));
        self.child = Some(self.command().spawn().expect("spawn trustdeck-server"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(info) = ServerInfo::read(&self.data_dir) {
                self.info = Some(info);
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("server exited with {status} during start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start within 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (Re)starts the process expecting it to refuse to start: waits (up to 30 s) for it to
    /// exit with a failure, and checks it never wrote `server.json`.
    pub fn spawn_expect_failure(&mut self) {
        let _ = std::fs::remove_file(ServerInfo::path(&self.data_dir));
        let mut child = self.command().spawn().expect("spawn trustdeck-server");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    !status.success(),
                    "the server must refuse to start:\n{}",
                    self.log()
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server kept running instead of refusing:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !ServerInfo::path(&self.data_dir).exists(),
            "it never served"
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// What the server wrote to `server.json` (it has started).
    pub fn info(&self) -> &ServerInfo {
        self.info.as_ref().expect("the server has started")
    }

    /// The SPIFFE ID this server presents.
    pub fn server_spiffe_id(&self) -> String {
        self.info().spiffe_id.to_string()
    }

    /// Node API address.
    pub fn addr(&self) -> String {
        self.info().node_api.to_string()
    }

    /// Runs `trustdeck-server <args> --config <config>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("trustdeck-server"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run trustdeck-server CLI")
    }

    /// Runs the CLI and returns stdout, panicking with stderr on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "trustdeck-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates an entry for `spiffe_id` parented to `parent_id` (selector `unix:uid:1000`)
    /// and returns its id.
    pub fn create_entry(&self, parent_id: &str, spiffe_id: &str) -> String {
        let out = self.cli_ok(&[
            "entry",
            "create",
            "--spiffe-id",
            spiffe_id,
            "--parent-id",
            parent_id,
            "--selector",
            "unix:uid:1000",
            "--output",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("entry json");
        v["id"].as_str().expect("id").to_string()
    }

    /// Generates a join token with `ttl` and returns it.
    pub fn token(&self, ttl: &str) -> String {
        let out = self.cli_ok(&["token", "generate", "--ttl", ttl]);
        out.lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .expect("token line")
            .trim()
            .to_string()
    }

    /// The bundle's X.509 authorities (DER) from `bundle show --format pem`.
    pub fn bundle_roots(&self) -> Vec<Vec<u8>> {
        trustdeck_spiffe::pem::decode_certs(&self.cli_ok(&["bundle", "show", "--format", "pem"]))
            .expect("bundle PEM")
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (for servers that must come back on the same address).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `trustdeck-agent` child process.
pub struct AgentProc {
    /// Private directory.
    pub dir: tempfile::TempDir,
    /// Config file.
    pub config: PathBuf,
    /// Workload API socket.
    pub socket: PathBuf,
    /// Child process.
    pub child: Option<Child>,
}

impl AgentProc {
    /// Starts an agent for `server` with the given `[node_attestation]` body and extra
    /// top-level TOML; waits until its Workload API socket exists.
    pub fn start(server: &ServerProc, attestation: &str, extra: &str) -> AgentProc {
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
                r#"trust_domain = "example.org"
server_address = "{addr}"
trust_bundle_path = "{bundle}"
data_dir = "{data}"
max_backoff = "1s"
{extra}
[node_attestation]
{attestation}
"#,
                addr = server.addr(),
                bundle = bundle.display(),
                data = dir.path().join("data").display(),
            ),
        )
        .expect("config");
        let socket = dir.path().join("data").join("workload.sock");
        let mut a = AgentProc {
            dir,
            config,
            socket,
            child: None,
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
    /// (top-level keys only).
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

/// Creates an entry on `server` for processes of this test's uid.
pub fn entry_for_me(server: &ServerProc, parent: &str, spiffe_id: &str, ttl: &str) {
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        parent,
        "--selector",
        &format!("unix:uid:{}", my_uid()),
        "--x509-ttl",
        ttl,
    ]);
}

/// Splits concatenated DER certificates (Workload API wire form).
pub fn split_der(der: &[u8]) -> Vec<Vec<u8>> {
    trustdeck_spiffe::pem::split_der(der).expect("certificates")
}

/// A fresh PostgreSQL database on the test cluster (`TRUSTDECK_TEST_POSTGRES_URL`), dropped
/// when this guard is dropped.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Connection URL of the new database.
    pub url: String,
}

impl PgDatabase {
    /// Creates one, or returns `None` (after saying so) when no cluster is configured; panics
    /// when `TRUSTDECK_REQUIRE_POSTGRES` is set but the cluster is not.
    pub fn create(prefix: &str) -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("TRUSTDECK_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("TRUSTDECK_REQUIRE_POSTGRES").is_err(),
                "TRUSTDECK_REQUIRE_POSTGRES is set but TRUSTDECK_TEST_POSTGRES_URL is not"
            );
            eprintln!("SKIP: TRUSTDECK_TEST_POSTGRES_URL not set");
            return None;
        };
        let mut rnd = [0u8; 6];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd).expect("rng");
        let name = format!("td_{prefix}_{}", hex_lower(&rnd));
        let out = Command::new("psql")
            .args([&admin_url, "-qc", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = format!("{}/{name}", admin_url.rsplit_once('/').expect("url").0);
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// The server config line that uses this database.
    pub fn config_line(&self) -> String {
        format!("datastore = \"{}\"\n", self.url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The uid of this test process.
pub fn my_uid() -> u32 {
    trustdeck_admin::effective_uid().expect("uid from /proc/self/status")
}

/// Runs the py-spiffe client script (`tests/python/workload_client.py`) and parses its JSON.
pub fn py_spiffe(socket: &Path, args: &[&str]) -> serde_json::Value {
    let venv = std::env::var_os("TRUSTDECK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/trustdeck/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "py-spiffe virtualenv missing at {}: run ./scripts/setup.sh",
        venv.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/workload_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(socket)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "py-spiffe client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "py-spiffe output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `secs` with `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's SPIFFE ID in the test trust domain.
pub fn server_id() -> SpiffeId {
    trustdeck_transport::connect::default_server_id(&td())
}

/// An agent's session with a server over the node API.
pub struct AgentSession {
    /// Agent SPIFFE ID.
    pub id: SpiffeId,
    /// SVID chain.
    pub svid: Vec<Vec<u8>>,
    /// Node API client with the agent SVID.
    pub client: NodeClient<tonic::transport::Channel>,
    /// Server address.
    pub addr: String,
    /// Trust roots.
    pub roots: SharedRoots,
    /// Identity presented.
    pub identity: SharedIdentity,
}

/// A node API client without a client certificate (for attestation).
pub fn anonymous_client(addr: &str, roots: &[Vec<u8>]) -> NodeClient<tonic::transport::Channel> {
    let roots = SharedRoots::new(roots).expect("roots");
    let cfg = trustdeck_transport::tls::client_config(SharedIdentity::new(), roots, server_id())
        .expect("tls");
    NodeClient::new(trustdeck_transport::connect::mtls_channel(addr, cfg).expect("channel"))
}

/// Makes a CSR for `id` with a fresh key; returns (CSR DER, key).
pub fn csr_for(id: &str) -> (Vec<u8>, Arc<dyn SigningKey>) {
    let key: Arc<dyn SigningKey> = Arc::new(SoftwareKey::ephemeral().expect("key").0);
    let id = SpiffeId::parse(id).expect("id");
    (
        trustdeck_pki::csr::make_csr(&key, Some(&id)).expect("csr"),
        key,
    )
}

/// Runs an attestation dialogue; `answer` signs x509pop challenges.
pub async fn attest(
    client: &mut NodeClient<tonic::transport::Channel>,
    kind: &str,
    payload: Vec<Vec<u8>>,
    csr: Vec<u8>,
    answer: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<AttestResult, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            attestation_type: kind.into(),
            payload,
            csr,
        })),
    })
    .await
    .expect("send");
    let mut inbound = client
        .attest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(msg) = inbound.next().await {
        match msg?.step {
            Some(attest_response::Step::Challenge(nonce)) => {
                tx.send(AttestRequest {
                    step: Some(attest_request::Step::ChallengeResponse(answer(&nonce))),
                })
                .await
                .expect("send");
            }
            Some(attest_response::Step::Result(r)) => return Ok(r),
            None => {}
        }
    }
    Err(tonic::Status::unknown(
        "attestation stream ended without a result",
    ))
}

impl AgentSession {
    /// Attests with a join token and opens an authenticated session.
    pub async fn join(addr: &str, roots: &[Vec<u8>], token: &str) -> Result<Self, tonic::Status> {
        let mut anon = anonymous_client(addr, roots);
        let (key, pkcs8) = SoftwareKey::ephemeral().expect("key");
        let key: Arc<dyn SigningKey> = Arc::new(key);
        let csr = trustdeck_pki::csr::make_csr(&key, None).expect("csr");
        let r = attest(
            &mut anon,
            "join_token",
            vec![token.as_bytes().to_vec()],
            csr,
            |_| vec![],
        )
        .await?;
        Ok(Self::from_result(addr, roots, r, &pkcs8))
    }

    /// An authenticated session from an attestation result and the agent key.
    pub fn from_result(addr: &str, roots: &[Vec<u8>], r: AttestResult, pkcs8: &[u8]) -> Self {
        let identity = SharedIdentity::new();
        identity.set(r.svid_chain.clone(), pkcs8).expect("identity");
        let roots = SharedRoots::new(roots).expect("roots");
        let cfg =
            trustdeck_transport::tls::client_config(identity.clone(), roots.clone(), server_id())
                .expect("tls");
        let client = NodeClient::new(
            trustdeck_transport::connect::mtls_channel(addr, cfg).expect("channel"),
        );
        Self {
            id: SpiffeId::parse(&r.spiffe_id).expect("agent id"),
            svid: r.svid_chain,
            client,
            addr: addr.to_string(),
            roots,
            identity,
        }
    }

    /// Signs one workload CSR.
    pub async fn sign(
        &mut self,
        entry_id: &str,
        csr: Vec<u8>,
    ) -> Result<SvidResult, tonic::Status> {
        let mut r = self
            .client
            .sign_x509_svids(SignX509SvidsRequest {
                csrs: vec![SvidCsr {
                    entry_id: entry_id.into(),
                    csr,
                }],
            })
            .await?
            .into_inner();
        Ok(r.results.remove(0))
    }

    /// Authorised entries.
    pub async fn entries(&mut self) -> Result<Vec<Entry>, tonic::Status> {
        Ok(self
            .client
            .sync_entries(SyncEntriesRequest {})
            .await?
            .into_inner()
            .entries)
    }
}

/// The test trust domain.
pub fn td() -> TrustDomain {
    TrustDomain::parse("example.org").expect("td")
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

/// A headless `trustdeck demo --no-console` child process and its fleet file.
pub struct DemoProc {
    /// The demo directory.
    pub dir: tempfile::TempDir,
    /// The child.
    pub child: Option<Child>,
    /// The fleet file's content.
    pub fleet: serde_json::Value,
}

impl DemoProc {
    /// Starts the demo and waits (up to 120 s) for `demo.json`.
    pub fn start(extra_args: &[&str]) -> DemoProc {
        let dir = tempfile::Builder::new()
            .prefix("td-demo-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let log = std::fs::File::create(dir.path().join("demo.log")).expect("log");
        let child = Command::new(bin("trustdeck"))
            .arg("demo")
            .arg("--dir")
            .arg(dir.path())
            .arg("--no-console")
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn trustdeck demo");
        let mut d = DemoProc {
            dir,
            child: Some(child),
            fleet: serde_json::Value::Null,
        };
        let path = d.fleet_path();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !path.exists() {
            if let Some(Ok(Some(status))) = d.child.as_mut().map(|c| c.try_wait()) {
                panic!("demo exited with {status} during start:\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "demo did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d.fleet = serde_json::from_str(&std::fs::read_to_string(&path).expect("read demo.json"))
            .expect("demo.json is JSON");
        d
    }

    /// `DIR/demo.json`.
    pub fn fleet_path(&self) -> PathBuf {
        self.dir.path().join("demo.json")
    }

    /// The demo's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("demo.log")).unwrap_or_default()
    }

    /// One daemon's log, by name.
    pub fn daemon_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name).join("log")).unwrap_or_default()
    }

    /// The pid of a server or agent, by name.
    pub fn pid(&self, name: &str) -> u32 {
        for list in ["servers", "agents"] {
            for d in self.fleet[list].as_array().into_iter().flatten() {
                if d["name"] == name {
                    return d["pid"].as_u64().expect("pid") as u32;
                }
            }
        }
        panic!("no daemon {name} in {}", self.fleet)
    }

    /// Runs `trustdeck <args> --fleet DIR/demo.json`; returns (exit code, stdout).
    pub fn trustdeck(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(bin("trustdeck"))
            .args(args)
            .arg("--fleet")
            .arg(self.fleet_path())
            .output()
            .expect("run trustdeck");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// `trustdeck status --output json`: (exit code, report).
    pub fn status(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["status", "--output", "json"];
        args.extend_from_slice(extra);
        let out = Command::new(bin("trustdeck"))
            .args(&args)
            .arg("--fleet")
            .arg(self.fleet_path())
            .output()
            .expect("run trustdeck status");
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status output is not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, v)
    }

    /// Sends SIGTERM and waits (up to 10 s); returns whether it exited in time.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for DemoProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`) with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}
