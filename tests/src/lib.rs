//! Harness for end-to-end tests: starts real daemons as child processes in private temp dirs
//! (port 0, own sockets) and talks to them as agents and operators would.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
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

mod agent;
mod demo;
mod federation;
pub mod measure;
mod node;
mod pg;
mod pg_own;
pub mod runbook;
mod server;
mod sql;
mod taint;
mod tiers;
pub mod tmux;
mod validator;
mod verify;

pub use agent::*;
pub use demo::*;
pub use federation::*;
pub use node::*;
pub use pg::*;
pub use pg_own::*;
pub use server::*;
pub use sql::*;
pub use taint::*;
pub use tiers::*;
pub use validator::*;
pub use verify::*;

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

/// Lower-case hex of `b`.
pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The uid of this test process.
pub fn my_uid() -> u32 {
    trustdeck_admin::effective_uid().expect("uid from /proc/self/status")
}

/// The test virtualenv's Python (`TRUSTDECK_VENV`, else `~/.cache/trustdeck/venv`).
pub fn venv_python() -> PathBuf {
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
    python
}

/// Runs the py-spiffe client script (`tests/python/workload_client.py`) and parses its JSON.
pub fn py_spiffe(socket: &Path, args: &[&str]) -> serde_json::Value {
    try_py_spiffe(socket, args).unwrap_or_else(|e| panic!("{e}"))
}

/// [`py_spiffe`], its failure returned (an agent that has no entry for the caller yet
/// answers PERMISSION_DENIED at once: poll with this).
pub fn try_py_spiffe(socket: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let python = venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/workload_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(socket)
        .args(args)
        .output()
        .expect("run python");
    if !out.status.success() {
        return Err(format!(
            "py-spiffe client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
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
