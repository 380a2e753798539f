//! TPM 2.0 harness: a private swtpm with EK certificates (from `swtpm_setup` with its own
//! local CA under a temp dir: nothing lands in /var/lib), DevID provisioning through
//! `trustdeck-agent tpm provision`, a test DevID CA, and a `tpm_devid` attestation dialogue
//! driven through the TPM from the test itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_stream::StreamExt;
use trustdeck_proto::node::node_client::NodeClient;
use trustdeck_proto::node::*;
use trustdeck_tpm::device::{DevIdKey, Tpm};

use crate::{bin, free_port};

/// A running swtpm (TPM 2.0) with an RSA-2048 EK certificate at NV 0x01c00002.
pub struct Swtpm {
    /// State, local CA and config files.
    pub dir: tempfile::TempDir,
    /// The TPM command port (control is `port + 1`).
    pub port: u16,
    child: Option<Child>,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Swtpm {
    /// Manufactures a TPM state with EK certificates and starts swtpm on two free
    /// consecutive ports (retrying on a clash).
    pub fn start() -> Swtpm {
        let dir = tempfile::Builder::new()
            .prefix("td-swtpm-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        for sub in ["state", "ca"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        write(
            &d.join("swtpm-localca.conf"),
            &format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = d.join("ca").display()
            ),
        );
        write(
            &d.join("swtpm-localca.options"),
            "--platform-manufacturer trustdeck\n--platform-version 2.1\n--platform-model e2e\n",
        );
        write(
            &d.join("swtpm_setup.conf"),
            &format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                d.join("swtpm-localca.conf").display(),
                d.join("swtpm-localca.options").display()
            ),
        );
        let out = Command::new("swtpm_setup")
            .args([
                "--tpm2",
                "--create-ek-cert",
                "--create-platform-cert",
                "--overwrite",
            ])
            .arg("--tpmstate")
            .arg(d.join("state"))
            .arg("--config")
            .arg(d.join("swtpm_setup.conf"))
            .output()
            .expect("swtpm_setup (install swtpm-tools: scripts/setup.sh)");
        assert!(
            out.status.success(),
            "swtpm_setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..20 {
            let port = free_port();
            if port == u16::MAX || std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
                continue;
            }
            let log = std::fs::File::create(d.join("swtpm.log")).expect("log");
            let mut child = Command::new("swtpm")
                .arg("socket")
                .arg("--tpmstate")
                .arg(format!("dir={}", d.join("state").display()))
                .arg("--tpm2")
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn swtpm");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Swtpm {
                        dir,
                        port,
                        child: Some(child),
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("swtpm did not start on any port");
    }

    /// The TCTI string for tss-esapi and tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// PEM of the swtpm local CA that issued the EK certificate (intermediate and root).
    pub fn endorsement_ca_pem(&self) -> String {
        let ca = self.dir.path().join("ca");
        let mut pem = std::fs::read_to_string(ca.join("issuercert.pem")).expect("issuercert");
        pem.push_str(
            &std::fs::read_to_string(ca.join("swtpm-localca-rootca-cert.pem")).expect("root"),
        );
        pem
    }

    /// Clears the TPM (`tpm2_clear` with platform authority): the storage hierarchy's seed
    /// changes, so a DevID key blob made before no longer loads; the EK and its certificate
    /// stay. Nothing else may hold the TPM meanwhile.
    pub fn clear(&self) {
        let out = Command::new("tpm2_clear")
            .args(["-T", &self.tcti(), "-c", "p"])
            .env("TSS2_LOG", "all+none")
            .output()
            .expect("tpm2_clear (install tpm2-tools)");
        assert!(
            out.status.success(),
            "tpm2_clear: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Opens the TPM from the test process (swtpm serves one connection at a time).
    pub fn open(&self) -> Tpm {
        Tpm::open(&self.tcti()).expect("open swtpm")
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A test DevID CA.
pub struct DevIdCa {
    /// Its certificate, PEM.
    pub pem: String,
    /// Its private key, PEM (for `openssl x509 -req -CAkey`).
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl DevIdCa {
    /// A self-signed CA named `cn`.
    pub fn new(cn: &str) -> DevIdCa {
        let mut p = CertificateParams::new(vec![]).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        let k = KeyPair::generate().expect("key");
        let c = p.self_signed(&k).expect("ca");
        DevIdCa {
            pem: c.pem(),
            key_pem: k.serialize_pem(),
            issuer: Issuer::new(p, k),
        }
    }

    /// Signs the CSR file `csr` as an operator would, with openssl (`openssl x509 -req -CA
    /// devid-ca.pem -CAkey devid-ca.key`, the CA's files written beside `csr`), into `out`
    /// (PEM).
    pub fn sign_with_openssl(&self, csr: &Path, out: &Path) {
        let dir = csr.parent().expect("the CSR's directory");
        let (ca_pem, ca_key) = (dir.join("devid-ca.pem"), dir.join("devid-ca.key"));
        write(&ca_pem, &self.pem);
        write(&ca_key, &self.key_pem);
        let o = Command::new("openssl")
            .args(["x509", "-req", "-days", "30", "-in"])
            .arg(csr)
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-out")
            .arg(out)
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl x509 -req: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Issues a certificate for a PEM CSR (checking its signature), DER.
    pub fn sign_csr(&self, csr_pem: &str) -> Vec<u8> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("CSR");
        csr.signed_by(&self.issuer).expect("sign").der().to_vec()
    }
}

/// A node with a swtpm and a provisioned, certified DevID key.
pub struct TpmNode {
    /// The TPM (its temp dir also holds the files below).
    pub tpm: Swtpm,
    /// `devid.key` written by `tpm provision`.
    pub key_path: PathBuf,
    /// The DevID certificate, PEM.
    pub cert_path: PathBuf,
    /// The DevID certificate, DER.
    pub cert_der: Vec<u8>,
    /// The swtpm local CA (EK issuer), PEM file.
    pub ek_ca_path: PathBuf,
    /// `trustdeck-agent tpm provision` output.
    pub provision_output: String,
}

impl TpmNode {
    /// Starts a swtpm, provisions a DevID with `trustdeck-agent tpm provision --cn cn` and
    /// has `ca` certify it.
    pub fn provision(cn: &str, ca: &DevIdCa) -> TpmNode {
        let tpm = Swtpm::start();
        let out_dir = tpm.dir.path().join("node");
        let out = Command::new(bin("trustdeck-agent"))
            .args([
                "tpm",
                "provision",
                "--tcti",
                &tpm.tcti(),
                "--cn",
                cn,
                "--out",
            ])
            .arg(&out_dir)
            .env("TSS2_LOG", "all+none")
            .output()
            .expect("trustdeck-agent tpm provision");
        let provision_output = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tpm provision failed: {}{provision_output}",
            String::from_utf8_lossy(&out.stderr)
        );
        let csr = std::fs::read_to_string(out_dir.join("devid.csr.pem")).expect("csr");
        let cert_der = ca.sign_csr(&csr);
        let cert_path = out_dir.join("devid.pem");
        crate::write_pem(&cert_path, std::slice::from_ref(&cert_der));
        let ek_ca_path = tpm.dir.path().join("endorsement-ca.pem");
        write(&ek_ca_path, &tpm.endorsement_ca_pem());
        TpmNode {
            key_path: out_dir.join("devid.key"),
            cert_path,
            cert_der,
            ek_ca_path,
            provision_output,
            tpm,
        }
    }

    /// The agent's `[node_attestation]` body.
    pub fn agent_attestation(&self) -> String {
        format!(
            "type = \"tpm_devid\"\ntcti = \"{}\"\ndevid_cert_path = \"{}\"\ndevid_key_path = \"{}\"\n",
            self.tpm.tcti(),
            self.cert_path.display(),
            self.key_path.display()
        )
    }

    /// `trustdeck-agent tpm provision --force` again (the TPM was cleared): a new DevID key
    /// written over the old one and its CSR beside it, whose path is returned.
    pub fn reprovision(&self, cn: &str) -> PathBuf {
        let out_dir = self.key_path.parent().expect("the key's directory");
        let out = Command::new(bin("trustdeck-agent"))
            .args(["tpm", "provision", "--tcti", &self.tpm.tcti()])
            .args(["--cn", cn, "--force", "--out"])
            .arg(out_dir)
            .env("TSS2_LOG", "all+none")
            .output()
            .expect("tpm provision");
        assert!(
            out.status.success(),
            "tpm provision --force: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_dir.join("devid.csr.pem")
    }

    /// The agent SPIFFE ID the DevID certificate file names now (after a re-provisioning,
    /// not [`agent_id`](Self::agent_id)'s).
    pub fn current_agent_id(&self) -> String {
        let pem = std::fs::read_to_string(&self.cert_path).expect("DevID certificate");
        let der = trustdeck_spiffe::pem::decode_certs(&pem).expect("PEM");
        format!(
            "spiffe://example.org/trustdeck/agent/tpm_devid/{}",
            trustdeck_tpm::verify::sha256_hex(der.first().expect("a certificate"))
        )
    }

    /// The agent SPIFFE ID this node gets.
    pub fn agent_id(&self) -> String {
        format!(
            "spiffe://example.org/trustdeck/agent/tpm_devid/{}",
            trustdeck_tpm::verify::sha256_hex(&self.cert_der)
        )
    }

    /// The DevID key blobs.
    pub fn key(&self) -> DevIdKey {
        DevIdKey::read(&self.key_path).expect("devid key")
    }

    /// The evidence the agent would send.
    pub fn evidence(&self) -> TpmDevidEvidence {
        let mut tpm = self.tpm.open();
        TpmDevidEvidence {
            ek_cert: tpm.ek_certificate().expect("EK cert"),
            ek_public: tpm.ek_public().expect("EK public"),
            devid_public: self.key().public,
        }
    }

    /// Answers a challenge with this node's TPM.
    pub fn answer(&self, ch: &TpmDevidChallenge) -> TpmDevidProof {
        let (signature, activated_secret) = self
            .tpm
            .open()
            .answer_challenge(
                &self.key(),
                &ch.nonce,
                &ch.credential_blob,
                &ch.encrypted_secret,
            )
            .expect("TPM answer");
        TpmDevidProof {
            signature,
            activated_secret,
        }
    }
}

/// A server trusting `ca` for DevIDs and `node`'s TPM vendor for EKs; `extra` is top-level
/// TOML.
pub fn tpm_server(node: &TpmNode, ca: &DevIdCa, extra: &str) -> crate::ServerProc {
    let devid_ca = node.tpm.dir.path().join("devid-ca-bundle.pem");
    write(&devid_ca, &ca.pem);
    crate::ServerProc::start(&format!(
        "{extra}\n{}",
        server_section(&devid_ca, &node.ek_ca_path)
    ))
}

/// Server config enabling `tpm_devid` with these bundles.
pub fn server_section(devid_ca: &Path, endorsement_ca: &Path) -> String {
    format!(
        "[node_attestation.tpm_devid]\ndevid_ca_bundle_path = \"{}\"\nendorsement_ca_bundle_path = \"{}\"\n",
        devid_ca.display(),
        endorsement_ca.display()
    )
}

/// Runs a `tpm_devid` dialogue as an agent would: parameters with `chain`, `evidence`, and
/// the answer `answer` gives to the challenge (`None`: hang up instead of answering).
pub async fn tpm_attest(
    client: &mut NodeClient<tonic::transport::Channel>,
    chain: Vec<Vec<u8>>,
    evidence: TpmDevidEvidence,
    csr: Vec<u8>,
    mut answer: impl FnMut(&TpmDevidChallenge) -> Option<TpmDevidProof>,
) -> Result<AttestResult, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    for step in [
        attest_request::Step::Params(AttestParams {
            attestation_type: "tpm_devid".into(),
            payload: chain,
            csr,
        }),
        attest_request::Step::TpmDevidEvidence(evidence),
    ] {
        tx.send(AttestRequest { step: Some(step) })
            .await
            .expect("send");
    }
    let mut inbound = client
        .attest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(msg) = inbound.next().await {
        let msg = msg?;
        if let Some(ch) = &msg.tpm_devid_challenge {
            let Some(proof) = answer(ch) else {
                return Err(tonic::Status::cancelled("hung up instead of answering"));
            };
            tx.send(AttestRequest {
                step: Some(attest_request::Step::TpmDevidProof(proof)),
            })
            .await
            .expect("send");
        }
        if let Some(attest_response::Step::Result(r)) = msg.step {
            return Ok(r);
        }
    }
    Err(tonic::Status::unknown(
        "attestation stream ended without a result",
    ))
}
