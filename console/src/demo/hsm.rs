//! Where a demo server keeps its CA keys: a private SoftHSM2 token when SoftHSM2 is installed
//! (HSM-backed, as the key policy wants), disk otherwise (the console then shows the policy
//! breach).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use trustdeck_lab::{SOFTHSM2_MODULE, init_softhsm2_token};
use trustdeck_server::config::KeyManagerConfig;

use super::{DemoError, io};

/// The key manager of server `name` and the environment it needs: a token in its own
/// directory under `dir`, with its own config and a random PIN in a 0600 file.
pub fn key_manager(
    name: &str,
    dir: &Path,
) -> Result<(KeyManagerConfig, Vec<(String, String)>), DemoError> {
    let util = std::process::Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !util || !Path::new(SOFTHSM2_MODULE).exists() {
        tracing::warn!(
            server = name,
            "SoftHSM2 not installed: CA keys on disk (a key-policy breach)"
        );
        return Ok((KeyManagerConfig::Disk { dir: None }, Vec::new()));
    }
    let hsm = dir.join("hsm");
    std::fs::create_dir_all(&hsm).map_err(io(format!("create {}", hsm.display())))?;
    std::fs::set_permissions(&hsm, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", hsm.display())))?;
    let pin = random_pin()?;
    let pin_file = hsm.join("pin");
    std::fs::write(&pin_file, format!("{pin}\n"))
        .map_err(io(format!("write {}", pin_file.display())))?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("chmod {}", pin_file.display())))?;
    let label = format!("trustdeck-{name}");
    let conf = init_softhsm2_token(&hsm, &label, &pin, &pin).map_err(|source| DemoError::Hsm {
        name: name.into(),
        dir: hsm.display().to_string(),
        source,
    })?;
    let km = KeyManagerConfig::Pkcs11 {
        module: SOFTHSM2_MODULE.into(),
        token_label: Some(label),
        slot: None,
        key_label_prefix: "ca-".into(),
        pin_file: Some(pin_file),
        pin_env: None,
        pin: None,
        // The config alone restarts the server: it carries the token's SoftHSM2 config.
        environment: [("SOFTHSM2_CONF".to_string(), conf.display().to_string())].into(),
    };
    Ok((
        km,
        vec![("SOFTHSM2_CONF".into(), conf.display().to_string())],
    ))
}

/// 24 hex digits from the system's random source.
fn random_pin() -> Result<String, DemoError> {
    let mut pin = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut pin))
        .map_err(io("read /dev/urandom"))?;
    Ok(pin.iter().map(|b| format!("{b:02x}")).collect())
}
