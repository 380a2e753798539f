//! The demo's other trust domains: a federated partner (its own upstream and workload agent;
//! we fetch its bundle over `https_spiffe`, it fetches ours over `https_web`) and an isolated
//! trust domain (its own server and workload agent; bundles and receipts exchanged as signed
//! files at start, written under `carry/`). The demo's workloads federate with both.

use std::path::{Path, PathBuf};

use trustdeck_proto::admin::{
    CreateEntryRequest, CreateFederationRequest, ExportSignedBundleRequest, FederationProfile,
    FederationRequest, GetBundleRequest, ImportBundleFileRequest,
};

use super::config::{self, server_id_in};
use super::{
    Binaries, Demo, DemoError, DemoOptions, TRUST_DOMAIN, admin, admin_err, admin_socket_of, io,
};
use crate::fleetfile::ServerEntry;

/// The federated partner trust domain.
pub const PARTNER: &str = "partner.trustdeck";
/// The isolated trust domain.
pub const ISOLATED: &str = "isolated.trustdeck";

/// The demo's own Web PKI for its `https_web` bundle endpoint: a CA and a serving certificate
/// for `localhost`, as PEM files in `dir` (the key readable by its owner only).
pub struct WebPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl WebPki {
    pub fn create(dir: &Path) -> Result<WebPki, DemoError> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let failed = |e: rcgen::Error| DemoError::Io {
            what: "demo web certificate".into(),
            source: std::io::Error::other(e),
        };
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let ca_key = KeyPair::generate().map_err(failed)?;
        let mut ca = CertificateParams::new(Vec::new()).map_err(failed)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "trustdeck demo web CA");
        let ca_pem = ca.self_signed(&ca_key).map_err(failed)?.pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(failed)?;
        let leaf = CertificateParams::new(vec!["localhost".into()]).map_err(failed)?;
        let leaf_pem = leaf.signed_by(&key, &issuer).map_err(failed)?.pem();
        let pki = WebPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("web.pem"),
            key: dir.join("web.key"),
        };
        write(&pki.ca, ca_pem.as_bytes(), 0o644)?;
        write(&pki.cert, leaf_pem.as_bytes(), 0o644)?;
        write(&pki.key, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(pki)
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("write {}", path.display());
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(what()))?;
    f.write_all(bytes).map_err(io(what()))
}

/// The port a server's bundle endpoint bound, from its fleet entry's `server.json`.
fn endpoint_port(server: &ServerEntry, dir: &Path) -> Result<u16, DemoError> {
    let info = trustdeck_admin::info::ServerInfo::read(&dir.join(&server.name).join("data"))
        .map_err(|e| DemoError::Admin {
            what: format!("{}'s server.json", server.name),
            message: e.to_string(),
        })?;
    info.federation_bundle_endpoint
        .map(|a| a.port())
        .ok_or_else(|| DemoError::Admin {
            what: format!("{}'s bundle endpoint", server.name),
            message: "server.json names none".into(),
        })
}

/// `server` federates with `req.trust_domain` and fetches its bundle at once.
async fn federate(server: &ServerEntry, req: CreateFederationRequest) -> Result<(), DemoError> {
    let mut adm = admin(&admin_socket_of(server)).await?;
    let td = req.trust_domain.clone();
    adm.create_federation(req)
        .await
        .map_err(admin_err("create a federation relationship"))?;
    adm.refresh_federation(FederationRequest { trust_domain: td })
        .await
        .map_err(admin_err("refresh a federation relationship"))?;
    Ok(())
}

/// One workload entry of `td` under `agent_id` for this user, federating with `with`.
async fn workload_entry(
    server: &ServerEntry,
    id: String,
    agent_id: &str,
    with: &[&str],
) -> Result<(), DemoError> {
    let uid = trustdeck_admin::effective_uid().unwrap_or(0);
    admin(&admin_socket_of(server))
        .await?
        .create_entry(CreateEntryRequest {
            spiffe_id: id,
            parent_id: agent_id.to_string(),
            selectors: vec![format!("unix:uid:{uid}")],
            federates_with: with.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
        .map_err(admin_err("create a workload entry"))?;
    Ok(())
}

impl Demo {
    /// The partner trust domain: its upstream (an `https_spiffe` bundle endpoint) and a
    /// workload agent; each side federates with the other.
    pub(super) async fn start_partner(
        &mut self,
        bins: &Binaries,
        upstream: &ServerEntry,
        web: &WebPki,
        opts: &DemoOptions,
    ) -> Result<(), DemoError> {
        let base = &opts.dir;
        let mut file = config::upstream_in(PARTNER, "partner", &base.join("partner"), opts);
        file.federation.bundle_endpoint = Some(config::bundle_endpoint(None));
        let partner = self
            .start_server(&bins.server, "upstream", file, base)
            .await?;
        self.fleet.servers.push(partner.clone());
        // The partner fetches ours over https_web (our demo CA); we fetch theirs over
        // https_spiffe, their bundle as the bootstrap.
        federate(
            &partner,
            CreateFederationRequest {
                trust_domain: TRUST_DOMAIN.into(),
                endpoint_url: format!("https://localhost:{}/", endpoint_port(upstream, base)?),
                profile: FederationProfile::HttpsWeb as i32,
                ca_file: web.ca.display().to_string(),
                ..Default::default()
            },
        )
        .await?;
        let bootstrap = admin(&admin_socket_of(&partner))
            .await?
            .get_bundle(GetBundleRequest {})
            .await
            .map_err(admin_err("get the partner's bundle"))?
            .into_inner();
        federate(
            upstream,
            CreateFederationRequest {
                trust_domain: PARTNER.into(),
                endpoint_url: format!("https://127.0.0.1:{}/", endpoint_port(&partner, base)?),
                profile: FederationProfile::HttpsSpiffe as i32,
                endpoint_spiffe_id: server_id_in(PARTNER, "partner"),
                bootstrap_bundle: bootstrap.spiffe_json.into_bytes(),
                ..Default::default()
            },
        )
        .await?;
        let (agent_id, agent) = self
            .start_agent(
                &bins.agent,
                "partner-workloads",
                "partner",
                "workloads",
                &partner,
                base,
            )
            .await?;
        let id = format!("spiffe://{PARTNER}/prod/partner/payments/api");
        workload_entry(&partner, id, &agent_id, &[TRUST_DOMAIN]).await?;
        self.fleet.agents.push(agent);
        Ok(())
    }

    /// The isolated trust domain: its server and a workload agent, never connected to ours;
    /// signed bundles and receipts exchanged as files under `carry/`, both ways.
    pub(super) async fn start_isolated(
        &mut self,
        bins: &Binaries,
        upstream: &ServerEntry,
        opts: &DemoOptions,
    ) -> Result<(), DemoError> {
        let base = &opts.dir;
        let file = config::upstream_in(ISOLATED, "isolated", &base.join("isolated"), opts);
        let isolated = self
            .start_server(&bins.server, "upstream", file, base)
            .await?;
        self.fleet.servers.push(isolated.clone());
        let carry = base.join("carry");
        std::fs::create_dir_all(&carry).map_err(io(format!("create {}", carry.display())))?;
        let theirs = carry_bundle(&isolated, upstream, ISOLATED, &carry).await?;
        let ours = carry_bundle(upstream, &isolated, TRUST_DOMAIN, &carry).await?;
        import(upstream, ISOLATED, ours, None).await?;
        import(&isolated, TRUST_DOMAIN, theirs, None).await?;
        let (agent_id, agent) = self
            .start_agent(
                &bins.agent,
                "isolated-workloads",
                "isolated",
                "workloads",
                &isolated,
                base,
            )
            .await?;
        let id = format!("spiffe://{ISOLATED}/prod/isolated/plant/scada");
        workload_entry(&isolated, id, &agent_id, &[TRUST_DOMAIN]).await?;
        self.fleet.agents.push(agent);
        Ok(())
    }
}

/// `from`'s signed bundle, written to `carry/` and imported at `to` (its root confirmed by
/// the fingerprint the export printed); the receipt `to` wrote, to be carried back.
async fn carry_bundle(
    from: &ServerEntry,
    to: &ServerEntry,
    td: &str,
    carry: &Path,
) -> Result<Vec<u8>, DemoError> {
    let export = admin(&admin_socket_of(from))
        .await?
        .export_signed_bundle(ExportSignedBundleRequest {})
        .await
        .map_err(admin_err("export a signed bundle"))?
        .into_inner();
    write(&carry.join(format!("{td}.bundle")), &export.file, 0o644)?;
    let signs = export
        .roots
        .iter()
        .find(|r| r.signs)
        .map(|r| r.sha256.clone())
        .unwrap_or_default();
    let receipt = import(to, td, export.file, Some(signs)).await?;
    write(&carry.join(format!("{td}.bundle.receipt")), &receipt, 0o644)?;
    Ok(receipt)
}

/// `bundle import` of `file` (a bundle of `td`, or a receipt from peer `td`) at `server`;
/// the receipt it wrote, for a bundle.
async fn import(
    server: &ServerEntry,
    td: &str,
    file: Vec<u8>,
    fingerprint: Option<String>,
) -> Result<Vec<u8>, DemoError> {
    Ok(admin(&admin_socket_of(server))
        .await?
        .import_bundle_file(ImportBundleFileRequest {
            file,
            trust_domain: td.into(),
            fingerprint: fingerprint.unwrap_or_default(),
        })
        .await
        .map_err(admin_err("import a signed bundle file"))?
        .into_inner()
        .receipt)
}
