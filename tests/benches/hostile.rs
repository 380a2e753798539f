//! Hostile load against real daemons, beside normal traffic (issue 12).
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p trustdeck-e2e --bench hostile [-- SECONDS]
//! ```
//!
//! A server and an agent run with 1,024 open files each (systemd's default). Normal traffic (a
//! workload's X509-SVID and JWT-SVID calls, a workload connecting anew, an agent's sync and
//! bundle calls, an agent opening a new mTLS connection) is measured for SECONDS (default 10)
//! alone, then for SECONDS while an attacker process of another uid (under `setpriv`, sharing
//! neither a runtime nor a uid with the normal traffic) runs, bounded in count:
//! - on the agent: up to 2,560 response streams it never reads, then up to 3,000 idle
//!   Workload API connections, and oversized and over-limit JWT-SVID requests;
//! - on the server: up to 1,500 TLS connections without a certificate to the node API
//!   (reopening each one the server closes 5 s later) and 3 MB attestation messages.
//!
//! Twice alternated. Reported: p50/p99 and errors of the normal traffic in each phase, what the
//! attack achieved, and the daemons' peak RSS (`VmHWM`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_stream::StreamExt;
use trustdeck_e2e::measure::{cpu_secs, ms, peak_rss_kib, percentile, rss_kib};
use trustdeck_e2e::*;
use trustdeck_proto::node::FetchBundleRequest;
use trustdeck_proto::node::SyncEntriesRequest;
use trustdeck_proto::workload::{JwtsvidRequest, X509svidRequest};
use trustdeck_transport::{SharedIdentity, SharedRoots};

const HOSTILE_UID: u32 = 65534;
const DAEMON_NOFILE: u32 = 1024;
const IDLE_WORKLOAD_CONNECTIONS: usize = 3000;
const SLOW_READER_CONNECTIONS: usize = 40;
const STREAMS_PER_CONNECTION: usize = 64;
const IDLE_TLS_CONNECTIONS: usize = 1500;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Latencies and failures of one kind of normal call.
#[derive(Default)]
struct Series {
    ok: Vec<Duration>,
    errors: u64,
}

impl Series {
    fn record<T, E>(
        &mut self,
        started: Instant,
        r: Result<Result<T, E>, tokio::time::error::Elapsed>,
    ) {
        match r {
            Ok(Ok(_)) => self.ok.push(started.elapsed()),
            _ => self.errors += 1,
        }
    }

    fn line(mut self, name: &str) -> String {
        self.ok.sort();
        let calls = self.ok.len() as u64 + self.errors;
        format!(
            "{name:<34} {calls:>6} calls  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            ms(percentile(&self.ok, 0.50)),
            ms(percentile(&self.ok, 0.99)),
            self.errors
        )
    }
}

/// What normal traffic reaches: the agent's socket and an attested node session.
#[derive(Clone)]
struct Normal {
    socket: PathBuf,
    addr: String,
    identity: SharedIdentity,
    roots: SharedRoots,
    node: trustdeck_proto::node::node_client::NodeClient<tonic::transport::Channel>,
}

/// Repeats `call` every `pause` until `until`, recording each outcome.
async fn repeat<F, Fut, T, E>(until: Instant, pause: Duration, mut call: F) -> Series
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut s = Series::default();
    while Instant::now() < until {
        let t = Instant::now();
        s.record(t, tokio::time::timeout(CALL_TIMEOUT, call()).await);
        tokio::time::sleep(pause).await;
    }
    s
}

async fn first_x509(
    mut c: trustdeck_transport::workload_client::WorkloadClient,
) -> Result<(), tonic::Status> {
    let mut st = c.fetch_x509svid(X509svidRequest {}).await?.into_inner();
    match st.next().await {
        Some(m) => m.map(|_| ()),
        None => Err(tonic::Status::unknown("stream ended")),
    }
}

/// Normal traffic for `d`; one line per kind of call.
async fn normal_traffic(n: &Normal, d: Duration) -> Vec<String> {
    let until = Instant::now() + d;
    let pause = Duration::from_millis(10);
    let client = trustdeck_transport::workload_client::connect(&n.socket).expect("client");
    let (c1, c2, s1) = (client.clone(), client.clone(), n.socket.clone());
    let x509 = tokio::spawn(repeat(until, pause, move || first_x509(c1.clone())));
    let jwt = tokio::spawn(repeat(until, pause, move || {
        let mut c = c2.clone();
        async move {
            c.fetch_jwtsvid(JwtsvidRequest {
                audience: vec!["bench".into()],
                spiffe_id: String::new(),
            })
            .await
        }
    }));
    let fresh = tokio::spawn(repeat(until, pause * 5, move || {
        let s = s1.clone();
        async move {
            let c = trustdeck_transport::workload_client::connect(&s)
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            first_x509(c).await
        }
    }));
    let node = n.node.clone();
    let sync = tokio::spawn(repeat(until, pause, move || {
        let mut c = node.clone();
        async move {
            c.sync_entries(SyncEntriesRequest::default()).await?;
            c.fetch_bundle(FetchBundleRequest::default()).await
        }
    }));
    let n2 = n.clone();
    let mtls = tokio::spawn(repeat(until, pause * 10, move || {
        let n = n2.clone();
        async move {
            let cfg = trustdeck_transport::tls::client_config(
                n.identity.clone(),
                n.roots.clone(),
                server_id(),
            )
            .expect("tls");
            let ch = trustdeck_transport::connect::mtls_channel(&n.addr, cfg).expect("channel");
            trustdeck_proto::node::node_client::NodeClient::new(ch)
                .fetch_bundle(FetchBundleRequest::default())
                .await
        }
    }));
    vec![
        x509.await.expect("task").line("workload FetchX509SVID"),
        jwt.await.expect("task").line("workload FetchJWTSVID"),
        fresh.await.expect("task").line("workload, new connection"),
        sync.await
            .expect("task")
            .line("agent SyncEntries+FetchBundle"),
        mtls.await.expect("task").line("agent, new mTLS connection"),
    ]
}

/// Normal traffic for `d`, and the CPU the agent and the server spent meanwhile.
async fn measured(n: &Normal, d: Duration, [agent, server]: [u32; 2]) -> Vec<String> {
    let (a0, s0, t0) = (cpu_secs(agent), cpu_secs(server), Instant::now());
    let mut lines = normal_traffic(n, d).await;
    let wall = t0.elapsed().as_secs_f64();
    lines.push(format!(
        "CPU: agent {:.0} %, server {:.0} % of one core",
        (cpu_secs(agent) - a0) * 100.0 / wall,
        (cpu_secs(server) - s0) * 100.0 / wall
    ));
    lines
}

/// Counters of what the node-side attack achieved.
#[derive(Default)]
struct NodeAttack {
    handshakes: AtomicU64,
    closed_by_server: AtomicU64,
    big_refused: AtomicU64,
}

/// Holds up to `IDLE_TLS_CONNECTIONS` TLS connections without a certificate, reopening each
/// one the server closes, and sends 3 MB attestation messages; until aborted.
fn node_attack(addr: &str, roots: &[Vec<u8>], counters: Arc<NodeAttack>, tasks: &mut JoinSet<()>) {
    let tls = trustdeck_transport::tls::client_config(
        SharedIdentity::new(),
        SharedRoots::new(roots).expect("roots"),
        server_id(),
    )
    .expect("client TLS");
    let connector = TlsConnector::from(tls);
    for _ in 0..IDLE_TLS_CONNECTIONS {
        let (addr, connector, c) = (addr.to_string(), connector.clone(), counters.clone());
        tasks.spawn(async move {
            loop {
                hold_idle_tls(&addr, &connector, &c).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    let (addr, roots, c) = (addr.to_string(), roots.to_vec(), counters);
    tasks.spawn(async move {
        loop {
            let mut anon = anonymous_client(&addr, &roots);
            let garbage = vec![vec![0x5a; 3 << 20]];
            let r = tokio::time::timeout(
                CALL_TIMEOUT,
                attest(&mut anon, "join_token", garbage, vec![], |_| vec![]),
            )
            .await;
            if !matches!(r, Ok(Ok(_))) {
                c.big_refused.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

async fn hold_idle_tls(addr: &str, connector: &TlsConnector, c: &NodeAttack) {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from("localhost") else {
        return;
    };
    let Ok(Ok(mut s)) = tokio::time::timeout(CALL_TIMEOUT, connector.connect(name, tcp)).await
    else {
        return;
    };
    c.handshakes.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    c.closed_by_server.fetch_add(1, Ordering::Relaxed);
}

/// The attacker (run as uid 65534 by `setpriv`, so it shares neither a runtime nor a uid with
/// the normal traffic): the node-side and the workload-side attacks for `secs`.
async fn hostile(socket: PathBuf, addr: String, roots_pem: PathBuf, secs: u64) {
    let pem = std::fs::read_to_string(roots_pem).expect("roots file");
    let roots = trustdeck_spiffe::pem::decode_certs(&pem).expect("roots PEM");
    let counters = Arc::new(NodeAttack::default());
    let mut attack = JoinSet::new();
    node_attack(&addr, &roots, counters.clone(), &mut attack);
    hostile_workload(socket, secs).await;
    attack.shutdown().await;
    println!(
        "  node attack: {} TLS handshakes without a certificate, {} closed by the server; {} oversized attestations refused",
        counters.handshakes.load(Ordering::Relaxed),
        counters.closed_by_server.load(Ordering::Relaxed),
        counters.big_refused.load(Ordering::Relaxed),
    );
}

/// The hostile workload: holds unread streams and idle connections, floods JWT-SVID requests
/// over the limits, for `secs`; prints what it achieved.
async fn hostile_workload(socket: PathBuf, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    let (held, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut streams = Vec::new();
    for _ in 0..SLOW_READER_CONNECTIONS {
        let Ok(c) = trustdeck_transport::workload_client::connect(&socket) else {
            continue;
        };
        for _ in 0..STREAMS_PER_CONNECTION {
            let mut c = c.clone();
            match tokio::time::timeout(CALL_TIMEOUT, c.fetch_x509svid(X509svidRequest {})).await {
                Ok(Ok(st)) => {
                    held.fetch_add(1, Ordering::Relaxed);
                    streams.push(st.into_inner());
                }
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let mut idle = Vec::new();
    for _ in 0..IDLE_WORKLOAD_CONNECTIONS {
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    let c = trustdeck_transport::workload_client::connect(&socket).expect("client");
    let (mut flood_ok, mut flood_refused) = (0u64, 0u64);
    let requests = [
        vec!["a".repeat(100); 2000], // 200 KB body: over the request size
        (0..5000).map(|i| i.to_string()).collect(), // too many audiences
    ];
    while Instant::now() < until {
        for audience in &requests {
            let r = c
                .clone()
                .fetch_jwtsvid(JwtsvidRequest {
                    audience: audience.clone(),
                    spiffe_id: String::new(),
                })
                .await;
            match r {
                Ok(_) => flood_ok += 1,
                Err(_) => flood_refused += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "  hostile workload: {} idle connections accepted of {IDLE_WORKLOAD_CONNECTIONS}; unread streams {} held, {} refused; over-limit JWT requests {flood_refused} refused, {flood_ok} answered",
        idle.len(),
        held.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    drop(streams);
}

/// Sets this process's soft open-file limit, which the daemons it starts inherit.
fn soft_file_limit(soft: &str) {
    let ok = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={soft}:"),
        ])
        .status()
        .expect("prlimit")
        .success();
    assert!(ok, "prlimit --nofile={soft}: failed");
}

/// A copy of this benchmark binary the hostile uid may execute.
fn hostile_exe(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join("hostile");
    std::fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy exe");
    for p in [dir, exe.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    exe
}

fn spawn_hostile(exe: &Path, socket: &Path, server: &ServerProc, secs: u64) -> Child {
    let roots = exe.with_file_name("roots.pem");
    std::fs::write(
        &roots,
        server.cli_ok(&["bundle", "show", "--format", "pem"]),
    )
    .expect("roots");
    Command::new("setpriv")
        .args([
            &format!("--reuid={HOSTILE_UID}"),
            &format!("--regid={HOSTILE_UID}"),
            "--clear-groups",
        ])
        .arg(exe)
        .arg("--hostile")
        .arg(socket)
        .arg(server.addr())
        .arg(roots)
        .arg(secs.to_string())
        .spawn()
        .expect("spawn hostile workload")
}

/// Lets the hostile uid reach the agent's socket through its private directories.
fn open_socket_path(socket: &Path, up_to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut d = socket.parent();
    while let Some(dir) = d {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        if dir == up_to {
            break;
        }
        d = dir.parent();
    }
}

fn create_entry(server: &ServerProc, parent: &str, id: &str, uid: u32) {
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        id,
        "--parent-id",
        parent,
        "--selector",
        &format!("unix:uid:{uid}"),
        "--x509-ttl",
        "10m",
    ]);
}

fn rss_line(name: &str, pid: u32) -> String {
    format!(
        "{name}: RSS now {:.1} MiB, peak {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0,
        peak_rss_kib(pid) as f64 / 1024.0
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, socket, addr, roots, secs] = &args[..]
        && flag == "--hostile"
    {
        let secs = secs.parse().expect("seconds");
        return hostile(socket.into(), addr.clone(), roots.into(), secs).await;
    }
    let secs: u64 = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let phase = Duration::from_secs(secs);
    if !bin_dir().ends_with("release") {
        eprintln!(
            "note: binaries from {} (build with --release for figures)",
            bin_dir().display()
        );
    }
    // The daemons start with 1,024 open files (their caps follow it); this process has more.
    let hard = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("ulimit");
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    soft_file_limit(&DAEMON_NOFILE.to_string());
    let server = ServerProc::start("");
    let server_pid = server.child.as_ref().expect("child").id();
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    create_entry(
        &server,
        &agent_id,
        "spiffe://example.org/bench/normal",
        my_uid(),
    );
    create_entry(
        &server,
        &agent_id,
        "spiffe://example.org/bench/hostile",
        HOSTILE_UID,
    );
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    let agent_pid = agent.child.as_ref().expect("child").id();
    soft_file_limit(&hard);
    open_socket_path(&agent.socket, agent.dir.path());
    let exe_dir = tempfile::tempdir().expect("tempdir");
    let exe = hostile_exe(exe_dir.path());

    let roots = server.bundle_roots();
    let session = AgentSession::join(&server.addr(), &roots, &server.token("10m"))
        .await
        .expect("node session");
    let normal = Normal {
        socket: agent.socket.clone(),
        addr: server.addr(),
        identity: session.identity.clone(),
        roots: session.roots.clone(),
        node: session.client.clone(),
    };
    let client = agent.client();
    wait_for(60, "the normal workload's SVID", || {
        block_on_ok(first_x509(client.clone()))
    });

    for round in 1..=2 {
        println!("round {round}, {secs} s per phase");
        for l in measured(&normal, phase, [agent_pid, server_pid]).await {
            println!("  alone        {l}");
        }
        let mut attacker = spawn_hostile(&exe, &agent.socket, &server, secs + 10);
        // The attacker opens its connections and streams first.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for l in measured(&normal, phase, [agent_pid, server_pid]).await {
            println!("  under attack {l}");
        }
        println!("  {}", rss_line("agent", agent_pid));
        println!("  {}", rss_line("server", server_pid));
        let attacker_cpu = cpu_secs(attacker.id());
        println!("  attacker: {attacker_cpu:.1} s of CPU so far");
        let _ = attacker.wait();
    }
    println!("{}", rss_line("agent", agent_pid));
    println!("{}", rss_line("server", server_pid));
}

/// Runs a future to completion from a synchronous poll loop (`wait_for`).
fn block_on_ok<F: std::future::Future<Output = Result<(), tonic::Status>>>(f: F) -> Option<()> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).ok()
}
