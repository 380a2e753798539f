//! The continuous validator: a py-spiffe client (`workload_client.py watch`) that holds what a
//! workload holds and validates it against what it holds, over and over, until stopped.

use super::*;

/// How a [`Validator`] runs.
#[derive(Debug, Clone)]
pub struct ValidatorOptions {
    /// Between two rounds of X.509 validation.
    pub interval: Duration,
    /// Between two JWT-SVID fetch-and-validate rounds (`None`: no JWT-SVIDs).
    pub jwt_interval: Option<Duration>,
    pub audience: String,
    /// PEM roots to validate against instead of the bundle the client holds (a negative
    /// control: the validator must then fail).
    pub bundle_override: Option<PathBuf>,
    /// How long [`Validator::start`] waits for the first validated X.509 context.
    pub ready_within: Duration,
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            jwt_interval: Some(Duration::from_secs(1)),
            audience: "trustdeck-tiers".into(),
            bundle_override: None,
            ready_within: Duration::from_secs(30),
        }
    }
}

/// One failed validation, as the validator recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at_ms: i64,
    /// `x509`, `jwt`, or `watch` (the validator itself could not do its job).
    pub what: String,
    pub spiffe_id: String,
    pub serial: String,
    pub reason: String,
}

/// What a validator saw between its start and [`Validator::finish`].
#[derive(Debug, Clone)]
pub struct Summary {
    /// X.509-SVID validations done (one per SVID per round).
    pub validations: u64,
    pub jwt_validations: u64,
    pub failures: Vec<Failure>,
    /// Stream errors py-spiffe reported (it reconnects by itself); not failures by themselves.
    pub stream_errors: Vec<String>,
    /// Serials (hex) seen per SPIFFE ID, in order.
    pub serials: BTreeMap<String, Vec<String>>,
    /// Key ids (hex) of the direct issuer of every held X.509-SVID, in order: the CA of the
    /// tier that signed it, so two or more means that CA rotated under the validator.
    pub issuers: Vec<String>,
    /// Key ids (hex) of every X.509 authority seen in a held bundle, in order.
    pub bundle_roots: Vec<String>,
    /// JWT key ids seen in the held JWT bundles.
    pub jwt_kids: Vec<String>,
    /// Key ids of the X.509 authorities in the bundle held at the last round.
    pub held_roots: Vec<String>,
    /// The keys each SVID held at the last round chains to (`chain_key_ids`), by SPIFFE ID.
    pub held_chains: BTreeMap<String, Vec<String>>,
    /// The kids of the JWT bundle held at the last JWT round.
    pub held_kids: Vec<String>,
    /// The raw JSON, for messages.
    pub raw: serde_json::Value,
}

impl Summary {
    /// Parses the validator's JSON summary.
    pub fn parse(v: serde_json::Value) -> Result<Summary, String> {
        let strings = |x: &serde_json::Value| -> Vec<String> {
            x.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |x: &serde_json::Value, k: &str| x[k].as_str().unwrap_or_default().to_string();
        let failures = v["failures"]
            .as_array()
            .ok_or("no failures array")?
            .iter()
            .map(|f| Failure {
                at_ms: f["at_ms"].as_i64().unwrap_or_default(),
                what: text(f, "what"),
                spiffe_id: text(f, "spiffe_id"),
                serial: text(f, "serial"),
                reason: text(f, "reason"),
            })
            .collect();
        let serials = v["serials"]
            .as_object()
            .ok_or("no serials object")?
            .iter()
            .map(|(k, s)| (k.clone(), strings(s)))
            .collect();
        Ok(Summary {
            validations: v["validations"].as_u64().ok_or("no validations count")?,
            jwt_validations: v["jwt_validations"].as_u64().unwrap_or_default(),
            failures,
            stream_errors: v["stream_errors"]
                .as_array()
                .map(|a| a.iter().map(|e| text(e, "error")).collect())
                .unwrap_or_default(),
            serials,
            issuers: strings(&v["issuers"]),
            bundle_roots: strings(&v["bundle_roots"]),
            jwt_kids: strings(&v["jwt_kids"]),
            held_roots: strings(&v["held_roots"]),
            held_chains: v["held_chains"]
                .as_object()
                .map(|o| o.iter().map(|(k, c)| (k.clone(), strings(c))).collect())
                .unwrap_or_default(),
            held_kids: strings(&v["held_kids"]),
            raw: v,
        })
    }

    /// Panics (naming the validator) unless it validated something and never failed.
    pub fn assert_clean(&self, name: &str) {
        assert!(
            self.validations > 0,
            "{name}: the validator validated nothing: {}",
            self.raw
        );
        assert!(
            self.failures.is_empty(),
            "{name}: {} failed validation(s), first: {:?}\nsummary: {}",
            self.failures.len(),
            self.failures.first(),
            self.raw
        );
    }

    /// The distinct serials seen for `spiffe_id`.
    pub fn serials_of(&self, spiffe_id: &str) -> &[String] {
        self.serials
            .get(spiffe_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// A running continuous validator; stopped (and its summary read) by [`finish`](Self::finish),
/// killed on drop.
pub struct Validator {
    name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Validator {
    /// Starts a validator on `agent`'s Workload API socket and waits until it has validated
    /// its first X.509 context (the agent must already serve an SVID for this process).
    pub fn start(agent: &AgentProc, name: &str, opts: &ValidatorOptions) -> Validator {
        Self::start_on(&agent.socket, name, opts)
    }

    /// Like [`start`](Self::start), on a Workload API socket.
    pub fn start_on(socket: &Path, name: &str, opts: &ValidatorOptions) -> Validator {
        let dir = tempfile::Builder::new()
            .prefix("td-validator-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let ready = dir.path().join("ready");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/workload_client.py");
        let mut c = Command::new(venv_python());
        c.arg(script)
            .arg(socket)
            .arg("watch")
            .arg("--interval-ms")
            .arg(opts.interval.as_millis().to_string())
            .arg("--jwt-interval-ms")
            .arg(opts.jwt_interval.map_or(0, |d| d.as_millis()).to_string())
            .arg("--audience")
            .arg(&opts.audience)
            .arg("--stop-file")
            .arg(dir.path().join("stop"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--status-file")
            .arg(dir.path().join("status.json"))
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(b) = &opts.bundle_override {
            c.arg("--bundle-override").arg(b);
        }
        let mut v = Validator {
            name: name.into(),
            child: Some(c.spawn().expect("spawn the validator")),
            dir,
        };
        let deadline = Instant::now() + opts.ready_within;
        while !ready.exists() {
            if let Some(Ok(Some(status))) = v.child.as_mut().map(|c| c.try_wait()) {
                panic!("validator {name} exited with {status}:\n{}", v.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "validator {name} validated nothing within {:?}:\n{}",
                opts.ready_within,
                v.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    }

    /// What it has seen so far (rewritten by the validator twice a second).
    pub fn status(&self) -> Option<Summary> {
        let text = std::fs::read_to_string(self.dir.path().join("status.json")).ok()?;
        Summary::parse(serde_json::from_str(&text).ok()?).ok()
    }

    /// Its name (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Stops the validator (stop file, then up to 15 s) and returns what it saw.
    pub fn finish(mut self) -> Summary {
        std::fs::write(self.dir.path().join("stop"), b"stop\n").expect("stop file");
        let child = self.child.take().expect("running");
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(out) => out.expect("validator output"),
            Err(_) => {
                signal(pid, "KILL");
                panic!("validator {} did not stop:\n{}", self.name, self.stderr());
            }
        };
        assert!(
            out.status.success(),
            "validator {} failed ({}):\n{}",
            self.name,
            out.status,
            self.stderr()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "validator {} printed no JSON ({e}): {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        });
        Summary::parse(v).unwrap_or_else(|e| panic!("validator {}: {e}", self.name))
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the chain check's self-test (`workload_client.py selftest`): case name to the failure
/// reason (`None`: the chain verified).
pub fn validator_self_test() -> BTreeMap<String, Option<String>> {
    let v = py_spiffe(Path::new("/nonexistent"), &["selftest"]);
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, r)| (k.clone(), r.as_str().map(str::to_string)))
        .collect()
}
