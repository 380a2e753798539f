//! End-to-end: real server and agent processes, and real SPIFFE clients on the agent's
//! Workload API socket (py-spiffe, plus a raw gRPC client for the protocol edge cases).

use std::time::Duration;

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use trustdeck_proto::workload::*;

fn join_attestation(server: &ServerProc) -> (String, String) {
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    (
        format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        agent_id,
    )
}

fn entry_for_me(server: &ServerProc, agent_id: &str, spiffe_id: &str, ttl: &str) -> String {
    let uid = my_uid().to_string();
    let out = server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        agent_id,
        "--selector",
        &format!("unix:uid:{uid}"),
        "--x509-ttl",
        ttl,
        "--output",
        "json",
    ]);
    serde_json::from_str::<serde_json::Value>(&out).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn full_py_spiffe_flow(server_extra: &str) {
    let server = ServerProc::start(server_extra);
    let (attestation, agent_id) = join_attestation(&server);
    let id = "spiffe://example.org/prod/gcp/payments/api-server";
    entry_for_me(&server, &agent_id, id, "6s");
    let agent = AgentProc::start(&server, &attestation, "");

    let r = py_spiffe(
        &agent.socket,
        &["full", "--rotations", "1", "--timeout", "30"],
    );
    let x509 = &r["x509"][0];
    assert_eq!(x509["spiffe_id"], id, "{r}");
    assert_eq!(r["jwt"]["spiffe_id"], id);
    assert_eq!(r["validated_spiffe_id"], id);
    assert_eq!(r["locally_validated_spiffe_id"], id);
    let kids = r["jwt_bundles"]["example.org"].as_array().expect("kids");
    assert!(!kids.is_empty(), "JWT bundle has no keys: {r}");
    // The chain py-spiffe received verifies with openssl against the bundle it received.
    let chain = trustdeck_spiffe::pem::decode_certs(x509["chain_pem"].as_str().expect("pem"))
        .expect("chain");
    let roots = trustdeck_spiffe::pem::decode_certs(x509["bundle_pem"].as_str().expect("pem"))
        .expect("bundle");
    let (ok, text) = openssl_verify(agent.dir.path(), &roots, &chain);
    assert!(ok, "openssl verify: {text}");
    // A rotated SVID arrived on the stream, without the client asking.
    let stream = r["stream"].as_array().expect("stream");
    assert!(stream.len() >= 2, "no rotation seen on the stream: {r}");
    assert_ne!(stream[0]["serial"], stream[1]["serial"]);
    assert!(
        r["stream_errors"].as_array().is_some_and(|e| e.is_empty()),
        "{r}"
    );
}

#[test]
fn py_spiffe_fetches_validates_and_receives_rotations() {
    full_py_spiffe_flow("");
}

#[test]
fn py_spiffe_flow_with_postgresql_datastore() {
    if let Some(db) = PgDatabase::create("wl") {
        full_py_spiffe_flow(&db.config_line());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_follow_the_spec() {
    status_codes(String::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_follow_the_spec_on_postgresql() {
    if let Some(db) = PgDatabase::create("sc") {
        status_codes(db.config_line()).await;
    }
}

async fn status_codes(server_extra: String) {
    let server = ServerProc::start(&server_extra);
    let (attestation, agent_id) = join_attestation(&server);
    let agent = AgentProc::start(&server, &attestation, "");

    // No security header: InvalidArgument.
    let ch = trustdeck_transport::connect::uds_channel(&agent.socket).expect("channel");
    let mut raw = SpiffeWorkloadApiClient::new(ch);
    let e = raw
        .fetch_x509svid(X509svidRequest {})
        .await
        .expect_err("call without header accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("workload.spiffe.io"),
        "{}",
        e.message()
    );

    // An entry that does not match this process: PermissionDenied, for py-spiffe too.
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/other",
        "--parent-id",
        &agent_id,
        "--selector",
        "unix:uid:4242424",
    ]);
    let mut c = agent.client();
    let e = wait_for(10, "PermissionDenied for a process with no entry", || {
        let r = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                match c.fetch_x509svid(X509svidRequest {}).await {
                    Ok(mut s) => s.get_mut().next().await.and_then(|m| m.err()),
                    Err(e) => Some(e),
                }
            })
        });
        r.filter(|e| e.code() != tonic::Code::Unavailable)
    });
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let py = py_spiffe(
        &agent.socket,
        &["error", "--call", "x509", "--timeout", "15"],
    );
    assert_eq!(py["error"], "PERMISSION_DENIED", "{py}");

    // Empty audience: InvalidArgument.
    let e = c
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        })
        .await
        .expect_err("empty audience accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: String::new(),
            svid: "x".into(),
        })
        .await
        .expect_err("empty audience accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A garbage token is refused with InvalidArgument, naming the problem.
    let e = c
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "not.a.jwt".into(),
        })
        .await
        .expect_err("garbage token accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_outage_serves_cache_and_rotation_resumes() {
    server_outage(String::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_outage_serves_cache_and_rotation_resumes_on_postgresql() {
    if let Some(db) = PgDatabase::create("so") {
        server_outage(db.config_line()).await;
    }
}

async fn server_outage(server_extra: String) {
    let port = free_port();
    let mut server = ServerProc::start(&format!(
        "bind_address = \"127.0.0.1:{port}\"\n{server_extra}"
    ));
    let (attestation, agent_id) = join_attestation(&server);
    let id = "spiffe://example.org/prod/onprem/data/postgres-primary";
    entry_for_me(&server, &agent_id, id, "8s");
    let agent = AgentProc::start(&server, &attestation, "");
    let mut c = agent.client();
    let first = async |c: &mut trustdeck_transport::workload_client::WorkloadClient| {
        let mut s = c
            .fetch_x509svid(X509svidRequest {})
            .await
            .expect("fetch")
            .into_inner();
        let m = s.next().await.expect("message").expect("ok");
        let leaf = split_der(&m.svids[0].x509_svid).remove(0);
        trustdeck_spiffe::x509::check_leaf(&leaf).expect("leaf")
    };
    let before = first(&mut c).await;
    assert_eq!(before.spiffe_id.as_str(), id);

    server.stop();
    // Cached SVID still served while it is valid; JWT-SVIDs need the server: Unavailable.
    let during = first(&mut c).await;
    assert!(during.not_after > chrono::Utc::now());
    let e = c
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["db".into()],
            spiffe_id: String::new(),
        })
        .await
        .expect_err("JWT-SVID without server");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // Wait past the SVID's expiry: the expired SVID is not handed out.
    let until = before.not_after.max(during.not_after);
    let wait = (until - chrono::Utc::now()).num_milliseconds().max(0) as u64 + 500;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let mut s = c
        .fetch_x509svid(X509svidRequest {})
        .await
        .expect("fetch")
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(2), s.next()).await;
    assert!(got.is_err(), "an expired SVID was served: {got:?}");
    drop(s);

    // Server back on the same address: the same agent (not restarted) rotates again.
    server.spawn();
    let after = wait_for_async(&mut c, 20).await;
    assert!(
        after.not_after > until,
        "no fresh SVID after the server came back"
    );
    assert!(agent.child.is_some());
}

async fn wait_for_async(
    c: &mut trustdeck_transport::workload_client::WorkloadClient,
    secs: u64,
) -> trustdeck_spiffe::LeafInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), c.fetch_x509svid(X509svidRequest {})).await
            && let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(2), s.get_mut().next()).await
        {
            let leaf = split_der(&m.svids[0].x509_svid).remove(0);
            let info = trustdeck_spiffe::x509::check_leaf(&leaf).expect("leaf");
            if info.not_after > chrono::Utc::now() {
                return info;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no valid SVID within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An agent with an entry for this process, ready to mint JWT-SVIDs; the server signs as
/// fast as it is asked.
async fn agent_with_identity() -> (ServerProc, AgentProc) {
    let server = ServerProc::start("[rate_limit]\nsigns_per_second = 100000.0\nburst = 100000.0\n");
    let (attestation, agent_id) = join_attestation(&server);
    entry_for_me(&server, &agent_id, "spiffe://example.org/hostile", "10m");
    let agent = AgentProc::start(&server, &attestation, "");
    let mut c = agent.client();
    let _ = wait_for_async(&mut c, 20).await;
    (server, agent)
}

fn jwt_request(audience: Vec<String>) -> JwtsvidRequest {
    JwtsvidRequest {
        audience,
        spiffe_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_audience_lists_are_invalid_arguments() {
    let (_server, agent) = agent_with_identity().await;
    let mut c = agent.client();
    c.fetch_jwtsvid(jwt_request(vec!["db".into()]))
        .await
        .expect("a normal audience is served");
    let many: Vec<String> = (0..1000).map(|i| format!("aud-{i}")).collect();
    let long = vec!["x".repeat(10_000)];
    let heavy: Vec<String> = (0..40).map(|i| format!("{i:0>1000}")).collect();
    for (what, audience) in [("count", many), ("length", long), ("bytes", heavy)] {
        let Err(e) = c.fetch_jwtsvid(jwt_request(audience)).await else {
            panic!("an audience list too large by {what} was served");
        };
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains("audience"), "{what}: {}", e.message());
    }
}

/// The resident set of a process, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audience_flood_does_not_grow_the_agent() {
    let (_server, agent) = agent_with_identity().await;
    let pid = agent.child.as_ref().expect("child").id();
    let mut c = agent.client();
    c.fetch_jwtsvid(jwt_request(vec!["warm-up".into()]))
        .await
        .expect("warm-up");
    let before = rss_kib(pid);
    let grown_mib = || rss_kib(pid).saturating_sub(before) / 1024;
    // Many lists each within the limits: served, but the cache keeps only so many bytes.
    // Unbounded, 4,000 tokens for 4 KiB of audiences each hold more than 40 MiB.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let mut c = agent.client();
        tasks.spawn(async move {
            for call in 0..500 {
                let audience = (0..8)
                    .map(|i| format!("{worker}-{call}-{i}-{}", "y".repeat(500)))
                    .collect();
                let r = c.fetch_jwtsvid(jwt_request(audience)).await;
                assert!(r.is_ok(), "a list within the limits: {:?}", r.err());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("flood task");
    }
    let grown = grown_mib();
    assert!(
        grown < 24,
        "distinct audiences grew the agent by {grown} MiB"
    );
    // The reported attack: huge lists of distinct audiences, all refused.
    for call in 0..30 {
        let audience = (0..100_000).map(|i| format!("a{call}-{i}")).collect();
        let r = c.fetch_jwtsvid(jwt_request(audience)).await;
        assert!(r.is_err(), "a 100,000-audience list was served");
    }
    let grown = grown_mib();
    assert!(
        grown < 24,
        "huge audience lists grew the agent by {grown} MiB"
    );
}

/// A codec that sends bytes as they are, to put bodies no client library would on the wire.
#[derive(Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_does_not_decode_is_an_invalid_argument() {
    let (_server, agent) = agent_with_identity().await;
    let ch = trustdeck_transport::connect::uds_channel(&agent.socket).expect("channel");
    let mut grpc = tonic::client::Grpc::new(ch);
    // An invalid wire type, a truncated length-delimited field, an endless varint.
    for body in [
        vec![0x0f, 0xff],
        vec![0x0a, 0x10, 0x01],
        vec![0x08, 0xff, 0xff, 0xff],
    ] {
        grpc.ready().await.expect("ready");
        let mut req = tonic::Request::new(body.clone());
        req.metadata_mut()
            .insert("workload.spiffe.io", "true".parse().expect("header"));
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/SpiffeWorkloadAPI/FetchX509SVID",
        );
        let e = match grpc.server_streaming(req, path, RawCodec).await {
            Ok(mut s) => s.get_mut().message().await.expect_err("garbage decoded"),
            Err(e) => e,
        };
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{body:?}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_uid_holds_a_bounded_number_of_streams() {
    // The agent's MAX_STREAMS_PER_UID, opened over several connections (each of which the
    // agent allows 64 streams).
    const MAX: usize = 1024;
    let (_server, agent) = agent_with_identity().await;
    let mut clients: Vec<_> = (0..MAX / 32 + 1).map(|_| agent.client()).collect();
    let mut held = Vec::new();
    for i in 0..MAX {
        let c = &mut clients[i / 32];
        let mut s = c
            .fetch_x509_bundles(X509BundlesRequest {})
            .await
            .expect("a stream within the limit")
            .into_inner();
        s.next().await.expect("message").expect("bundles");
        held.push(s);
    }
    let c = clients.last_mut().expect("client");
    let e = match c.fetch_x509svid(X509svidRequest {}).await {
        Ok(mut s) => s.get_mut().next().await.and_then(|m| m.err()),
        Err(e) => Some(e),
    }
    .expect("a stream past the limit was served");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("streams"), "{}", e.message());
    // A closed stream frees its place.
    drop(held.pop());
    let freed = wait_for_async(c, 10).await;
    assert_eq!(freed.spiffe_id.as_str(), "spiffe://example.org/hostile");
}
