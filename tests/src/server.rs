//! A `trustdeck-server` child process, its config and its files.

use super::*;

/// A running `trustdeck-server` child process.
pub struct ServerProc {
    /// Private directory (config, data, logs).
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    /// Contents of `server.json` once the server serves.
    pub info: Option<ServerInfo>,
    /// Extra environment of the process.
    pub env: Vec<(String, String)>,
    /// Extra arguments of `run` (e.g. `--reinitialize`).
    pub run_args: Vec<String>,
    /// A command the server runs under (e.g. `prlimit --nofile=128:128 --`); it must exec.
    pub wrapper: Vec<String>,
}

/// The config text for a test server in `dir`; `extra` is appended (a top-level key of
/// `extra`, `trust_domain` included, replaces its default).
pub fn server_config(dir: &Path, extra: &str) -> String {
    // Keys the test sets in `extra` replace the defaults below.
    let mut base = String::new();
    for (key, value) in [
        ("trust_domain", "\"example.org\""),
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
        r#"data_dir = "{data}"
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
        Self::start_wrapped(extra, env, &[])
    }

    /// Like [`start_with_env`](Self::start_with_env), run under `wrapper` (a command that
    /// execs its arguments, e.g. `prlimit --nofile=128:128 --`).
    pub fn start_wrapped(extra: &str, env: &[(&str, &str)], wrapper: &[&str]) -> ServerProc {
        let mut s = Self::prepare(extra, env, wrapper);
        s.spawn();
        s
    }

    /// Starts a server of trust domain `td` (the default config says example.org) with
    /// `extra` TOML.
    pub fn start_in(td: &str, extra: &str) -> ServerProc {
        let mut s = Self::prepare(extra, &[], &[]);
        let text = std::fs::read_to_string(&s.config).expect("config");
        let text = text.replacen(
            "trust_domain = \"example.org\"",
            &format!("trust_domain = \"{td}\""),
            1,
        );
        std::fs::write(&s.config, text).expect("write config");
        s.spawn();
        s
    }

    /// Its bundle's sequence (`authority x509 show`).
    pub fn bundle_sequence(&self) -> u64 {
        let out = self.cli_ok(&["authority", "x509", "show", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["bundle_sequence"].as_u64().expect("sequence")
    }

    /// The port of its federation bundle endpoint (from `server.json`).
    pub fn bundle_endpoint_port(&self) -> u16 {
        self.info()
            .federation_bundle_endpoint
            .expect("server.json names the bundle endpoint")
            .port()
    }

    /// A server's directory and config, not started (for a test that expects a refusal).
    pub fn prepare(extra: &str, env: &[(&str, &str)], wrapper: &[&str]) -> ServerProc {
        let dir = tempfile::Builder::new()
            .prefix("td-e2e-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let config = dir.path().join("server.toml");
        std::fs::write(&config, server_config(dir.path(), extra)).expect("write config");
        let data_dir = dir.path().join("data");
        ServerProc {
            dir,
            config,
            data_dir,
            child: None,
            info: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            run_args: Vec::new(),
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
        }
    }

    /// `trustdeck-server run` with this config and environment, logging to `server.log`.
    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut c = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("trustdeck-server"));
                c
            }
            None => Command::new(bin("trustdeck-server")),
        };
        c.arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(&self.run_args)
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

    /// The newest 1000 audit records, as `actor|action|outcome|detail`
    /// (`trustdeck-server audit list`).
    pub fn audit_log(&self) -> Vec<String> {
        let out = self.cli_ok(&["audit", "list", "--limit", "1000", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("audit json");
        let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        v.as_array()
            .expect("an array")
            .iter()
            .map(|r| {
                ["actor", "action", "outcome", "detail"]
                    .map(|k| field(r, k))
                    .join("|")
            })
            .collect()
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
