//! Both halves of each attestation dialogue driven against each other, without sockets:
//! what the server admits, and what it refuses (wrong nonce, replay, wrong order, deadline).

use chrono::{DateTime, Duration, Utc};
use rcgen::KeyPair;
use tonic::Code;
use trustdeck_attest::agent::{AgentDialogue, Credentials, DialogueError, Next};
use trustdeck_attest::server::{self, Attested, Fresh, Policy, ServerDialogue, TpmAnchors, Turn};
use trustdeck_attest::{Method, Refusal};
use trustdeck_proto::node::{
    AttestRequest, AttestResponse, Reason, TpmDevidEvidence, TpmDevidProof, attest_request,
};
use trustdeck_spiffe::TrustDomain;
use trustdeck_tpm::soft::{Lab, ca, leaf};
use trustdeck_tpm::verify::Bundle;

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").expect("trust domain")
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn csr() -> Vec<u8> {
    let (key, _) = trustdeck_pki::keys::SoftwareKey::ephemeral().expect("key");
    let key: std::sync::Arc<dyn trustdeck_pki::SigningKey> = std::sync::Arc::new(key);
    trustdeck_pki::csr::make_csr(&key, None).expect("csr")
}

fn fresh(n: u8) -> Fresh {
    Fresh {
        nonce: [n; 32],
        secret: [n ^ 0x5a; 32],
    }
}

/// Runs a whole dialogue: the agent's opening messages, then messages back and forth until
/// one side stops; `tpm` answers TPM challenges. The server's refusal, or what it admitted.
fn run(
    creds: Credentials,
    policy: Policy<'_>,
    fresh: Fresh,
    tpm: Option<&Lab>,
) -> Result<Attested, Refusal> {
    let at = now();
    let (mut agent, opening) = AgentDialogue::new(creds, csr());
    let mut inbox: std::collections::VecDeque<AttestRequest> = opening.into();
    let first = inbox.pop_front().expect("params");
    let (mut server, mut turn) = ServerDialogue::start(
        server::open(first)?,
        policy,
        fresh,
        at + Duration::seconds(30),
        at,
    )?;
    loop {
        match turn {
            Turn::Done(a) => {
                let next = agent
                    .receive(result_message(&a))
                    .expect("agent takes the result");
                assert!(matches!(next, Next::Done(_)));
                return Ok(*a);
            }
            Turn::Send(msg) => match agent.receive(*msg).expect("agent answers") {
                Next::Send(m) => inbox.push_back(m),
                Next::AnswerTpm(ch) => {
                    let lab = tpm.expect("a TPM");
                    let (signature, activated_secret) = lab
                        .answer(&ch.nonce, &ch.credential_blob, &ch.encrypted_secret)
                        .unwrap_or_default();
                    inbox.push_back(
                        agent
                            .answered(TpmDevidProof {
                                signature,
                                activated_secret,
                            })
                            .expect("proof"),
                    );
                }
                other => panic!("agent stalled: {other:?}"),
            },
            Turn::Wait => {}
        }
        let msg = inbox.pop_front().expect("agent has something to say");
        turn = server.receive(msg, now())?;
    }
}

fn result_message(a: &Attested) -> AttestResponse {
    AttestResponse {
        step: Some(trustdeck_proto::node::attest_response::Step::Result(
            trustdeck_proto::node::AttestResult {
                spiffe_id: a.id.to_string(),
                ..Default::default()
            },
        )),
        tpm_devid_challenge: None,
    }
}

fn open_policy(td: &TrustDomain) -> Policy<'_> {
    Policy {
        trust_domain: td,
        x509pop_cas: &[],
        tpm: None,
    }
}

struct X509Node {
    ca: Vec<u8>,
    chain: Vec<Vec<u8>>,
    key_pem: String,
}

fn x509_node() -> X509Node {
    let (ca, issuer) = ca("node CA");
    let key = KeyPair::generate().expect("key");
    X509Node {
        ca,
        chain: vec![leaf(&issuer, "node-1", &key)],
        key_pem: key.serialize_pem(),
    }
}

fn x509_policy<'a>(td: &'a TrustDomain, n: &'a X509Node) -> Policy<'a> {
    Policy {
        x509pop_cas: std::slice::from_ref(&n.ca),
        ..open_policy(td)
    }
}

fn x509_creds(n: &X509Node) -> Credentials {
    Credentials::X509pop {
        chain: n.chain.clone(),
        key: Box::new(KeyPair::from_pem(&n.key_pem).expect("key")),
    }
}

fn tpm_policy<'a>(td: &'a TrustDomain, lab: &'a Lab) -> Policy<'a> {
    Policy {
        trust_domain: td,
        x509pop_cas: &[],
        tpm: Some(TpmAnchors {
            devid: Bundle {
                name: "devid-ca.pem",
                certs: std::slice::from_ref(&lab.devid_ca),
            },
            endorsement: Bundle {
                name: "ek-ca.pem",
                certs: std::slice::from_ref(&lab.ek_ca),
            },
        }),
    }
}

fn tpm_creds(lab: &Lab) -> Credentials {
    Credentials::TpmDevid {
        chain: vec![lab.devid_cert.clone()],
        evidence: TpmDevidEvidence {
            ek_cert: lab.ek_cert.clone(),
            ek_public: lab.ek_public.clone(),
            devid_public: lab.devid_public.clone(),
        },
    }
}

fn refused(r: &Refusal, code: Code, reason: Reason, text: &str) {
    assert_eq!((r.code(), r.reason()), (code, reason), "{r}");
    assert!(r.to_string().contains(text), "{r}");
    let status = tonic::Status::from(r.clone());
    assert_eq!(trustdeck_proto::reason::reason_of(&status), reason);
    assert_eq!(status.message(), r.wire_message());
}

/// What reaches the agent names neither the server's trust anchors nor the certificates it
/// checked: only the method and the reason. The detail stays in `Display` (the server log).
fn generic_on_the_wire(r: &Refusal, secrets: &[&str]) {
    let status = tonic::Status::from(r.clone());
    for secret in secrets {
        assert!(r.to_string().contains(secret), "detail lost: {r}");
        assert!(
            !status.message().contains(secret),
            "{secret:?} sent to the agent: {}",
            status.message()
        );
    }
    assert!(status.message().contains("log"), "{}", status.message());
}

#[test]
fn evidence_refusals_send_a_generic_reason_and_keep_the_detail() {
    let td = td();
    // x509pop: a chain from a CA the server does not trust.
    let trusted = x509_node();
    let (_, other_ca) = ca("Other CA");
    let key = KeyPair::generate().expect("key");
    let stranger = X509Node {
        ca: trusted.ca.clone(),
        chain: vec![leaf(&other_ca, "node-9", &key)],
        key_pem: key.serialize_pem(),
    };
    let e = run(
        x509_creds(&stranger),
        x509_policy(&td, &trusted),
        fresh(20),
        None,
    )
    .unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "x509pop",
    );
    generic_on_the_wire(&e, &["node-9"]);

    // tpm_devid: a DevID from another TPM lab; the bundle's name is a path.
    let lab = Lab::new();
    let stranger = Lab::new();
    let e = run(
        tpm_creds(&stranger),
        tpm_policy(&td, &lab),
        fresh(21),
        Some(&stranger),
    )
    .unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "tpm_devid",
    );
    generic_on_the_wire(&e, &["devid-ca.pem", "CN=node-7"]);

    // Unreadable anchors: the path stays on the server.
    let e = Refusal::Anchors(Method::TpmDevid, "/etc/trustdeck/ek-ca.pem: denied".into());
    refused(
        &e,
        Code::FailedPrecondition,
        Reason::MethodUnavailable,
        "tpm_devid",
    );
    generic_on_the_wire(&e, &["/etc/trustdeck/ek-ca.pem"]);
}

#[test]
fn join_token_attests_in_one_message() {
    let td = td();
    let a = run(
        Credentials::JoinToken("tok-1".into()),
        open_policy(&td),
        fresh(1),
        None,
    )
    .expect("attested");
    assert_eq!(a.method, Method::JoinToken);
    assert_eq!(
        a.id.as_str(),
        "spiffe://example.org/trustdeck/agent/join_token/tok-1"
    );
    assert_eq!(a.join_token.as_deref(), Some("tok-1"));
    for (token, text) in [("  ", "empty token"), ("a/b", "outside [A-Za-z0-9_-]")] {
        let e = run(
            Credentials::JoinToken(token.into()),
            open_policy(&td),
            fresh(1),
            None,
        )
        .unwrap_err();
        refused(&e, Code::InvalidArgument, Reason::TokenUnknown, text);
    }
}

#[test]
fn x509pop_attests_with_a_signed_nonce() {
    let td = td();
    let n = x509_node();
    let policy = x509_policy(&td, &n);
    let a = run(x509_creds(&n), policy, fresh(2), None).expect("attested");
    assert_eq!(a.method, Method::X509pop);
    assert!(
        a.id.as_str()
            .starts_with("spiffe://example.org/trustdeck/agent/x509pop/"),
        "{}",
        a.id
    );
    assert!(
        a.selectors
            .contains(&"x509pop:subject:cn:node-1".to_string())
    );
    assert_eq!(a.join_token, None);
}

/// A server dialogue opened by an agent with `creds`: its first turn, and the agent's
/// opening messages after the params.
fn server_for<'a>(
    creds: Credentials,
    policy: Policy<'a>,
    f: Fresh,
) -> (ServerDialogue<'a>, Turn, std::vec::IntoIter<AttestRequest>) {
    let (_, opening) = AgentDialogue::new(creds, csr());
    let mut opening = opening.into_iter();
    let first = opening.next().expect("params");
    let at = now();
    let (server, turn) = ServerDialogue::start(
        server::open(first).expect("open"),
        policy,
        f,
        at + Duration::seconds(30),
        at,
    )
    .expect("start");
    (server, turn, opening)
}

/// The server's x509pop dialogue up to its challenge.
fn x509_server<'a>(n: &X509Node, policy: Policy<'a>, f: Fresh) -> ServerDialogue<'a> {
    let (server, turn, _) = server_for(x509_creds(n), policy, f);
    assert!(matches!(turn, Turn::Send(_)));
    server
}

fn signed(n: &X509Node, nonce: &[u8]) -> AttestRequest {
    let key = KeyPair::from_pem(&n.key_pem).expect("key");
    let sig = rcgen::SigningKey::sign(&key, &trustdeck_pki::x509pop::challenge_message(nonce))
        .expect("sign");
    AttestRequest {
        step: Some(attest_request::Step::ChallengeResponse(sig)),
    }
}

#[test]
fn x509pop_refuses_a_wrong_nonce_a_replay_and_a_late_answer() {
    let td = td();
    let n = x509_node();
    let policy = x509_policy(&td, &n);
    // A signature over another nonce.
    let mut s = x509_server(&n, policy, fresh(3));
    let e = s.receive(signed(&n, &[4; 32]), now()).unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "proof of possession",
    );
    // The answer that worked in one dialogue does not work in the next.
    let answer = signed(&n, &[5; 32]);
    let mut first = x509_server(&n, policy, fresh(5));
    assert!(matches!(
        first.receive(answer.clone(), now()),
        Ok(Turn::Done(_))
    ));
    let mut second = x509_server(&n, policy, fresh(6));
    let e = second.receive(answer, now()).unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "proof of possession",
    );
    // A right answer after the deadline.
    let mut late = x509_server(&n, policy, fresh(7));
    let e = late
        .receive(signed(&n, &[7; 32]), late.deadline())
        .unwrap_err();
    refused(
        &e,
        Code::DeadlineExceeded,
        Reason::DeadlineExceeded,
        "not completed within 30s",
    );
}

#[test]
fn messages_out_of_order_are_refused_on_both_sides() {
    let td = td();
    let n = x509_node();
    let policy = x509_policy(&td, &n);
    // The server wants the signature, not TPM evidence; nor a second answer once done.
    let mut s = x509_server(&n, policy, fresh(8));
    let evidence = AttestRequest {
        step: Some(attest_request::Step::TpmDevidEvidence(Default::default())),
    };
    let e = s.receive(evidence, now()).unwrap_err();
    refused(
        &e,
        Code::InvalidArgument,
        Reason::ProtocolViolation,
        "x509pop: expected a challenge response",
    );
    let e = s.receive(signed(&n, &[8; 32]), now()).unwrap_err();
    refused(&e, Code::InvalidArgument, Reason::ProtocolViolation, "over");
    // A dialogue must open with the params.
    let e = server::open(signed(&n, &[8; 32])).unwrap_err();
    refused(
        &e,
        Code::InvalidArgument,
        Reason::ProtocolViolation,
        "AttestParams",
    );
    // Closing early names what was due.
    let s = x509_server(&n, policy, fresh(9));
    assert_eq!(
        s.closed().to_string(),
        "x509pop: stream closed before the challenge response"
    );
    // A join-token agent takes no challenge; an x509pop agent no TPM challenge.
    let (mut agent, _) = AgentDialogue::new(Credentials::JoinToken("t".into()), csr());
    let challenge = AttestResponse {
        step: Some(trustdeck_proto::node::attest_response::Step::Challenge(
            vec![1; 32],
        )),
        tpm_devid_challenge: None,
    };
    let e = agent.receive(challenge.clone()).unwrap_err();
    assert!(matches!(e, DialogueError::UnexpectedChallenge { .. }));
    assert_eq!(
        e.to_string(),
        "server sent an x509pop challenge for join_token attestation"
    );
    let (mut agent, _) = AgentDialogue::new(x509_creds(&n), csr());
    let tpm = AttestResponse {
        step: None,
        tpm_devid_challenge: Some(Default::default()),
    };
    let e = agent.receive(tpm).unwrap_err();
    assert_eq!(
        e.to_string(),
        "server sent a TPM challenge for x509pop attestation"
    );
    // An x509pop agent answers one challenge only.
    let (mut agent, _) = AgentDialogue::new(x509_creds(&n), csr());
    assert!(matches!(
        agent.receive(challenge.clone()),
        Ok(Next::Send(_))
    ));
    assert!(agent.receive(challenge).is_err());
    assert!(matches!(
        agent.answered(TpmDevidProof::default()),
        Err(DialogueError::NoPendingChallenge)
    ));
}

#[test]
fn unknown_disabled_and_malformed_openings_are_refused() {
    let td = td();
    let params = |kind: &str, csr: Vec<u8>| AttestRequest {
        step: Some(attest_request::Step::Params(
            trustdeck_proto::node::AttestParams {
                attestation_type: kind.into(),
                payload: vec![b"tok".to_vec()],
                csr,
            },
        )),
    };
    let e = server::open(params("aws_iid", csr())).unwrap_err();
    refused(
        &e,
        Code::InvalidArgument,
        Reason::MethodUnavailable,
        "unknown attestation type \"aws_iid\"",
    );
    let e = server::open(params("join_token", vec![1, 2, 3])).unwrap_err();
    refused(
        &e,
        Code::InvalidArgument,
        Reason::ProtocolViolation,
        "agent CSR",
    );
    for kind in ["x509pop", "tpm_devid"] {
        let at = now();
        let opening = server::open(params(kind, csr())).expect("open");
        let e = ServerDialogue::start(opening, open_policy(&td), fresh(1), at, at)
            .err()
            .expect("disabled");
        refused(
            &e,
            Code::FailedPrecondition,
            Reason::MethodUnavailable,
            &format!("{kind} attestation is not enabled on this server"),
        );
    }
}

#[test]
fn tpm_devid_attests_a_tpm_resident_key_and_refuses_another_tpm() {
    let td = td();
    let lab = Lab::new();
    let a = run(
        tpm_creds(&lab),
        tpm_policy(&td, &lab),
        fresh(10),
        Some(&lab),
    )
    .expect("attested");
    assert_eq!(a.method, Method::TpmDevid);
    assert!(
        a.id.as_str()
            .starts_with("spiffe://example.org/trustdeck/agent/tpm_devid/"),
        "{}",
        a.id
    );
    assert!(
        a.selectors
            .contains(&"tpm_devid:subject:cn:node-7".to_string())
    );

    // Another TPM's EK cannot release the credential made for this one's: the evidence of
    // `lab` answered by a TPM whose EK differs.
    let mut other = Lab::new();
    other.devid_key = KeyPair::from_pem(&lab.devid_key.serialize_pem()).expect("key");
    other.devid_public = lab.devid_public.clone();
    let e = run(
        tpm_creds(&lab),
        tpm_policy(&td, &lab),
        fresh(11),
        Some(&other),
    )
    .unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "tpm_devid",
    );

    // Evidence from a TPM the endorsement CA does not know.
    let stranger = Lab::new();
    let e = run(
        tpm_creds(&stranger),
        tpm_policy(&td, &lab),
        fresh(12),
        Some(&stranger),
    )
    .unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "does not chain",
    );
}

#[test]
fn tpm_devid_refuses_a_replayed_proof_and_a_proof_before_the_evidence() {
    let td = td();
    let lab = Lab::new();
    let policy = tpm_policy(&td, &lab);
    let start = |f: Fresh| {
        let (mut s, turn, mut rest) = server_for(tpm_creds(&lab), policy, f);
        assert!(matches!(turn, Turn::Wait));
        (s.receive(rest.next().expect("evidence"), now()), s)
    };
    let (Ok(Turn::Send(first_challenge)), mut first) = start(fresh(13)) else {
        panic!("no challenge")
    };
    let ch = first_challenge.tpm_devid_challenge.expect("challenge");
    let (signature, activated_secret) = lab
        .answer(&ch.nonce, &ch.credential_blob, &ch.encrypted_secret)
        .expect("answer");
    let proof = AttestRequest {
        step: Some(attest_request::Step::TpmDevidProof(TpmDevidProof {
            signature,
            activated_secret,
        })),
    };
    assert!(matches!(
        first.receive(proof.clone(), now()),
        Ok(Turn::Done(_))
    ));
    let (Ok(Turn::Send(_)), mut second) = start(fresh(14)) else {
        panic!("no challenge")
    };
    let e = second.receive(proof.clone(), now()).unwrap_err();
    refused(
        &e,
        Code::PermissionDenied,
        Reason::EvidenceRefused,
        "tpm_devid",
    );

    // The proof where the evidence is due.
    let (mut s, _, _) = server_for(tpm_creds(&lab), policy, fresh(15));
    assert_eq!(
        s.closed().to_string(),
        "tpm_devid: stream closed before the TPM evidence"
    );
    let e = s.receive(proof, now()).unwrap_err();
    refused(
        &e,
        Code::InvalidArgument,
        Reason::ProtocolViolation,
        "expected TpmDevidEvidence",
    );
}
