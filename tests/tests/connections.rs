//! Connections that never present an identity cannot exhaust a server (issue 12, defect 1).

use std::process::Command;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use trustdeck_e2e::*;
use trustdeck_proto::node::FetchBundleRequest;
use trustdeck_transport::{SharedIdentity, SharedRoots};

const IDLE_CONNECTIONS: usize = 150;

/// Opens a TCP connection and completes a TLS handshake without a client certificate; `None`
/// when the server refuses or does not answer.
async fn idle_tls(addr: String, connector: TlsConnector) -> Option<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(&addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    tokio::time::timeout(Duration::from_secs(20), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()
}

/// Whether the server has closed `s`: a read ends (EOF or error) instead of waiting.
async fn closed_by_server(s: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_tls_connections_without_identity_are_capped_closed_and_starve_nothing() {
    let server = ServerProc::start_wrapped(
        "[connections]\nidle_timeout = \"3s\"\n",
        &[],
        &["prlimit", "--nofile=128:128", "--"],
    );
    let roots = server.bundle_roots();
    let addr = server.addr();
    // An agent attested before the flood; its mTLS connection is opened during it.
    let mut agent = tokio::time::timeout(
        Duration::from_secs(30),
        AgentSession::join(&addr, &roots, &server.token("10m")),
    )
    .await
    .expect("attestation did not finish within 30s")
    .expect("attestation");

    let tls = trustdeck_transport::tls::client_config(
        SharedIdentity::new(),
        SharedRoots::new(&roots).expect("roots"),
        server_id(),
    )
    .expect("client TLS");
    let connector = TlsConnector::from(tls);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..IDLE_CONNECTIONS {
        opening.spawn(idle_tls(addr.clone(), connector.clone()));
    }
    let mut idle = Vec::new();
    while let Some(c) = opening.join_next().await {
        idle.extend(c.expect("task"));
    }
    assert!(
        idle.len() >= 8,
        "only {} idle connections completed the handshake: the test proves nothing",
        idle.len()
    );

    // The admin socket answers while they are open.
    let health = Command::new("timeout")
        .arg("30")
        .arg(bin("trustdeck-server"))
        .args(["healthcheck", "--config"])
        .arg(&server.config)
        .output()
        .expect("healthcheck");
    assert!(
        health.status.success(),
        "healthcheck with {} idle connections open: {}\n{}",
        idle.len(),
        String::from_utf8_lossy(&health.stderr),
        server.log()
    );

    // The agent fetches the bundle over a new connection with its SVID.
    let bundle = tokio::time::timeout(
        Duration::from_secs(30),
        agent.client.fetch_bundle(FetchBundleRequest::default()),
    )
    .await
    .expect("bundle fetch did not finish within 30s")
    .expect("bundle fetch");
    assert!(!bundle.into_inner().bundle.is_empty(), "an empty bundle");

    // The server closes every idle connection by itself.
    for (i, c) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(c).await,
            "idle connection {i} still open after 60s:\n{}",
            server.log()
        );
    }
    // The slots of connections without an identity are free again: a new agent attests.
    tokio::time::timeout(
        Duration::from_secs(30),
        AgentSession::join(&addr, &roots, &server.token("10m")),
    )
    .await
    .expect("attestation after the flood did not finish within 30s")
    .expect("attestation after the flood");
}
