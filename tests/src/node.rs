//! Talking to a server as an agent over the node API.

use super::*;

/// The server's SPIFFE ID in the test trust domain.
pub fn server_id() -> SpiffeId {
    trustdeck_transport::connect::default_server_id(&td())
}

/// An agent's session with a server over the node API.
pub struct AgentSession {
    /// Agent SPIFFE ID.
    pub id: SpiffeId,
    pub svid: Vec<Vec<u8>>,
    /// Node API client with the agent SVID.
    pub client: NodeClient<tonic::transport::Channel>,
    pub addr: String,
    pub roots: SharedRoots,
    pub identity: SharedIdentity,
}

/// A node API client without a client certificate (for attestation).
pub fn anonymous_client(addr: &str, roots: &[Vec<u8>]) -> NodeClient<tonic::transport::Channel> {
    let roots = SharedRoots::new(roots).expect("roots");
    let cfg = trustdeck_transport::tls::client_config(SharedIdentity::new(), roots, server_id())
        .expect("tls");
    NodeClient::new(trustdeck_transport::connect::mtls_channel(addr, cfg).expect("channel"))
}

/// Makes a CSR for `id` with a fresh key; returns (CSR DER, key).
pub fn csr_for(id: &str) -> (Vec<u8>, Arc<dyn SigningKey>) {
    let key: Arc<dyn SigningKey> = Arc::new(SoftwareKey::ephemeral().expect("key").0);
    let id = SpiffeId::parse(id).expect("id");
    (
        trustdeck_pki::csr::make_csr(&key, Some(&id)).expect("csr"),
        key,
    )
}

/// Runs an attestation dialogue; `answer` signs x509pop challenges.
pub async fn attest(
    client: &mut NodeClient<tonic::transport::Channel>,
    kind: &str,
    payload: Vec<Vec<u8>>,
    csr: Vec<u8>,
    answer: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<AttestResult, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            attestation_type: kind.into(),
            payload,
            csr,
        })),
    })
    .await
    .expect("send");
    let mut inbound = client
        .attest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(msg) = inbound.next().await {
        match msg?.step {
            Some(attest_response::Step::Challenge(nonce)) => {
                tx.send(AttestRequest {
                    step: Some(attest_request::Step::ChallengeResponse(answer(&nonce))),
                })
                .await
                .expect("send");
            }
            Some(attest_response::Step::Result(r)) => return Ok(r),
            None => {}
        }
    }
    Err(tonic::Status::unknown(
        "attestation stream ended without a result",
    ))
}

impl AgentSession {
    /// Attests with a join token and opens an authenticated session.
    pub async fn join(addr: &str, roots: &[Vec<u8>], token: &str) -> Result<Self, tonic::Status> {
        let mut anon = anonymous_client(addr, roots);
        let (key, pkcs8) = SoftwareKey::ephemeral().expect("key");
        let key: Arc<dyn SigningKey> = Arc::new(key);
        let csr = trustdeck_pki::csr::make_csr(&key, None).expect("csr");
        let r = attest(
            &mut anon,
            "join_token",
            vec![token.as_bytes().to_vec()],
            csr,
            |_| vec![],
        )
        .await?;
        Ok(Self::from_result(addr, roots, r, &pkcs8))
    }

    /// An authenticated session from an attestation result and the agent key.
    pub fn from_result(addr: &str, roots: &[Vec<u8>], r: AttestResult, pkcs8: &[u8]) -> Self {
        let identity = SharedIdentity::new();
        identity.set(r.svid_chain.clone(), pkcs8).expect("identity");
        let roots = SharedRoots::new(roots).expect("roots");
        let cfg =
            trustdeck_transport::tls::client_config(identity.clone(), roots.clone(), server_id())
                .expect("tls");
        let client = NodeClient::new(
            trustdeck_transport::connect::mtls_channel(addr, cfg).expect("channel"),
        );
        Self {
            id: SpiffeId::parse(&r.spiffe_id).expect("agent id"),
            svid: r.svid_chain,
            client,
            addr: addr.to_string(),
            roots,
            identity,
        }
    }

    /// Signs one workload CSR.
    pub async fn sign(
        &mut self,
        entry_id: &str,
        csr: Vec<u8>,
    ) -> Result<SvidResult, tonic::Status> {
        let mut r = self
            .client
            .sign_x509_svids(SignX509SvidsRequest {
                csrs: vec![SvidCsr {
                    entry_id: entry_id.into(),
                    csr,
                }],
            })
            .await?
            .into_inner();
        Ok(r.results.remove(0))
    }

    pub async fn entries(&mut self) -> Result<Vec<Entry>, tonic::Status> {
        Ok(self
            .client
            .sync_entries(SyncEntriesRequest::default())
            .await?
            .into_inner()
            .entries)
    }
}

/// The test trust domain.
pub fn td() -> TrustDomain {
    TrustDomain::parse("example.org").expect("td")
}
