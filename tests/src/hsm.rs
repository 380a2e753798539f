//! A throwaway SoftHSM2 token per test: its own token directory and config file (pointed to by
//! `SOFTHSM2_CONF`), initialised with `softhsm2-util`, inspected with `pkcs11-tool` (OpenSC) in
//! child processes, so no PKCS#11 context lives in the test process.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SoftHSM2 module installed by `scripts/setup.sh` (Debian 12).
pub const MODULE: &str = trustdeck_lab::SOFTHSM2_MODULE;

/// A SoftHSM2 token in a private directory.
pub struct SoftHsm {
    /// The directory (config, tokens, PIN file).
    pub dir: tempfile::TempDir,
    /// The `SOFTHSM2_CONF` file.
    pub conf: PathBuf,
    pub label: String,
    pub pin: String,
}

impl SoftHsm {
    /// Creates and initialises a token labelled `label` with user PIN `pin`.
    pub fn new(label: &str, pin: &str) -> SoftHsm {
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} missing: run scripts/setup.sh (installs softhsm2)"
        );
        let dir = tempfile::Builder::new()
            .prefix("td-hsm-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let conf = trustdeck_lab::init_softhsm2_token(dir.path(), label, "so-5678", pin)
            .expect("SoftHSM2 token");
        SoftHsm {
            dir,
            conf,
            label: label.into(),
            pin: pin.into(),
        }
    }

    /// A command with `SOFTHSM2_CONF` set.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// Writes the PIN to a 0600 file and returns its path.
    pub fn pin_file(&self, pin: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(format!("pin-{}", pin.len()));
        std::fs::write(&p, format!("{pin}\n")).expect("pin file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    }

    /// The `[key_manager]` TOML for this token, the PIN read from `pin_file`.
    pub fn key_manager_toml(&self, pin_file: &Path) -> String {
        format!(
            "[key_manager]\ntype = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"{}\"\nkey_label_prefix = \"td-\"\npin_file = \"{}\"\n",
            self.label,
            pin_file.display()
        )
    }

    /// The environment a server using this token needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SOFTHSM2_CONF", self.conf.display().to_string())]
    }

    /// Runs `pkcs11-tool` logged in to this token with `args`.
    fn pkcs11_tool(&self, args: &[&str]) -> std::process::Output {
        self.cmd("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                &self.pin,
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool (install opensc)")
    }

    /// `pkcs11-tool --list-objects` output for this token.
    pub fn list_objects(&self) -> String {
        let out = self.pkcs11_tool(&["--list-objects"]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Deletes the private key labelled `label`.
    pub fn delete_private_key(&self, label: &str) {
        let out = self.pkcs11_tool(&["--delete-object", "--type", "privkey", "--label", label]);
        assert!(
            out.status.success(),
            "delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Two tokens for a server whose token is replaced: it starts on `a`; `switch_to_b` points its
/// config and environment at `b`, an empty token (every key of `a` lost to it).
pub struct TwoTokens {
    pub a: SoftHsm,
    pub b: SoftHsm,
    pin_a: PathBuf,
    pin_b: PathBuf,
}

impl TwoTokens {
    pub fn new(pin: &str) -> TwoTokens {
        let (a, b) = (
            SoftHsm::new("td-token-a", pin),
            SoftHsm::new("td-token-b", pin),
        );
        let (pin_a, pin_b) = (a.pin_file(pin), b.pin_file(pin));
        TwoTokens { a, b, pin_a, pin_b }
    }

    /// A root server on token `a`, on a fixed port: agents and downstreams find it again
    /// after its restarts.
    pub fn root_on_a(&self) -> crate::ServerProc {
        let extra = format!(
            "bind_address = \"127.0.0.1:{}\"\n{}",
            crate::free_port(),
            self.a.key_manager_toml(&self.pin_a)
        );
        let env = self.a.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::ServerProc::start_with_env(&extra, &env)
    }

    /// Points `server` (stopped) at token `b`.
    pub fn switch_to_b(&self, server: &mut crate::ServerProc) {
        let config = std::fs::read_to_string(&server.config).expect("config");
        let config = config.replace(&self.a.label, &self.b.label).replace(
            &self.pin_a.display().to_string(),
            &self.pin_b.display().to_string(),
        );
        std::fs::write(&server.config, config).expect("config");
        server.env = self
            .b
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    }
}
