//! A headless `trustdeck demo` child process.

use super::*;

/// A headless `trustdeck demo --no-console` child process and its fleet file.
pub struct DemoProc {
    /// The demo directory.
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// The fleet file's content.
    pub fleet: serde_json::Value,
}

impl DemoProc {
    /// Starts the demo of one trust domain (`--no-partners`: the tests of the main tree see
    /// only its daemons) and waits (up to 120 s) for `demo.json`.
    pub fn start(extra_args: &[&str]) -> DemoProc {
        Self::start_full(&[&["--no-partners"][..], extra_args].concat())
    }

    /// Starts the demo as `trustdeck demo` does by default (with the federated partner and
    /// the isolated trust domains) and waits (up to 120 s) for `demo.json`.
    pub fn start_full(extra_args: &[&str]) -> DemoProc {
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
