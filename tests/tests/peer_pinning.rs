//! End-to-end (defect 11): the Workload API caller is the process that connected. A
//! connection whose process exited (held on by a forked child) or `exec`ed another binary
//! before its request is refused; a caller that stays what it was gets its SVID.
//! `tests/python/handoff.py` makes the connections; the test's gRPC client speaks through it
//! only once the caller is gone or replaced, so nothing depends on timing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::X509svidRequest;

const ID: &str = "spiffe://example.org/prod/pinned";

/// The first X509-SVID's SPIFFE ID the Workload API at `socket` sends, or its refusal.
async fn fetch(socket: &Path) -> Result<String, tonic::Status> {
    let mut c = trustdeck_transport::workload_client::connect(socket).expect("client");
    let mut s = c.fetch_x509svid(X509svidRequest {}).await?.into_inner();
    let m = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer"))?
        .ok_or_else(|| tonic::Status::aborted("stream ended"))??;
    Ok(m.svids
        .first()
        .map(|s| s.spiffe_id.clone())
        .unwrap_or_default())
}

/// Runs `handoff.py MODE` against `agent` and asks for an SVID through it once the caller is
/// gone (fork: its process exited and was reaped) or replaced (exec).
async fn through_handoff(agent: &AgentProc, mode: &str) -> Result<String, tonic::Status> {
    let dir = tempfile::tempdir_in("/tmp").expect("tmp");
    let proxy = dir.path().join("proxy.sock");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/handoff.py");
    let mut cmd = Command::new(venv_python());
    cmd.arg(&script).arg(mode).arg(&agent.socket).arg(&proxy);
    if mode == "exec" {
        // Another executable: a copy of the interpreter (another inode).
        let real = std::fs::canonicalize(venv_python()).expect("python");
        let other = dir.path().join("other-python");
        std::fs::copy(&real, &other).expect("copy python");
        cmd.arg(&other);
    }
    let log = std::fs::File::create(dir.path().join("handoff.log")).expect("log");
    let mut caller: Child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("python");
    if mode == "fork" {
        // The process that connected exits and is reaped before anything is sent.
        let status = caller.wait().expect("wait");
        assert!(status.success(), "{status}");
    }
    wait_for(20, "the handoff's relay", || proxy.exists().then_some(()));
    let r = fetch(&proxy).await;
    let _ = caller.kill();
    let _ = caller.wait();
    if let Err(e) = &r
        && e.code() != tonic::Code::PermissionDenied
    {
        panic!(
            "{mode}: {e:?}\n{}",
            std::fs::read_to_string(dir.path().join("handoff.log")).unwrap_or_default()
        );
    }
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_handed_to_another_process_is_refused() {
    let server = ServerProc::start("");
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    entry_for_me(&server, &agent_id, ID, "10m");
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\""),
        "",
    );
    // This process (it stays what it was) gets its SVID once the agent has it.
    let mut own = None;
    for _ in 0..100 {
        if let Ok(id) = fetch(&agent.socket).await {
            own = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(own.as_deref(), Some(ID), "{}", agent.log());

    // The relay itself, staying the caller: served (the relay is not what is refused).
    assert_eq!(through_handoff(&agent, "stay").await.expect("stay"), ID);
    // The caller exited (pinned at accept: it waited for the agent's first bytes); its child
    // holds the connection.
    let e = through_handoff(&agent, "fork").await.expect_err("fork");
    assert!(e.message().contains("exited during attestation"), "{e:?}");
    // The caller became another executable.
    let e = through_handoff(&agent, "exec").await.expect_err("exec");
    assert!(e.message().contains("another executable"), "{e:?}");
    // And the agent still serves a normal caller.
    assert_eq!(fetch(&agent.socket).await.expect("a normal caller"), ID);
}
