//! The demo daemons' configuration files, built from the daemons' own file types and written
//! as TOML.

use std::path::Path;

use chrono::Duration;
use serde::Serialize;
use trustdeck_agent::config::{ConfigFile as AgentFile, NodeAttestation};
use trustdeck_server::config::{
    BundleEndpointConfig, BundleEndpointProfileName, ConfigFile as ServerFile, UpstreamConfig,
};

use super::{DemoError, DemoOptions, TRUST_DOMAIN, io};
use crate::fleetfile::ServerEntry;

/// How often the demo servers check for rotation (the demo's lifetimes are short).
const ROTATION_CHECK: Duration = Duration::seconds(1);

/// The SPIFFE ID of demo server `name`.
pub fn server_id(name: &str) -> String {
    server_id_in(TRUST_DOMAIN, name)
}

/// The SPIFFE ID of demo server `name` of trust domain `td`.
pub fn server_id_in(td: &str, name: &str) -> String {
    format!("spiffe://{td}/trustdeck/server/{name}")
}

/// How often the demo's servers may fetch a partner's bundle, and the hint they serve: short,
/// so freshness moves on screen.
const REFRESH_MINIMUM: Duration = Duration::seconds(5);
const REFRESH_HINT: Duration = Duration::seconds(10);

/// A bundle endpoint on a free port (written back once bound): `https_web` with `web`'s
/// certificate and key, else `https_spiffe`.
pub fn bundle_endpoint(web: Option<(&Path, &Path)>) -> BundleEndpointConfig {
    BundleEndpointConfig {
        bind_address: "127.0.0.1:0".into(),
        profile: match web {
            Some(_) => BundleEndpointProfileName::HttpsWeb,
            None => BundleEndpointProfileName::HttpsSpiffe,
        },
        certificate_path: web.map(|w| w.0.to_path_buf()),
        key_path: web.map(|w| w.1.to_path_buf()),
        refresh_hint: Some(REFRESH_HINT),
    }
}

/// The keys every demo server shares: names, directories, a free port (written back as the
/// port it bound once it serves, so a restart comes back there), a fast rotation check. The
/// key manager is added by the caller.
fn server_base(td: &str, name: &str, segment: &str, dir: &Path) -> ServerFile {
    let mut f = ServerFile::new(td, dir.join("data"));
    f.name = Some(name.into());
    f.segment = Some(segment.into());
    f.admin_socket = Some(dir.join("admin.sock"));
    f.bind_address = "127.0.0.1:0".into();
    f.rotation_check_interval = ROTATION_CHECK;
    f.server_spiffe_id = Some(server_id_in(td, name));
    f.federation.refresh_minimum = Some(REFRESH_MINIMUM);
    f
}

/// The upstream (root of trust): a day-long root CA, a JWT key rotated twice a day.
pub fn upstream(dir: &Path, opts: &DemoOptions) -> ServerFile {
    upstream_in(TRUST_DOMAIN, "upstream", dir, opts)
}

/// The upstream `name` of trust domain `td`, as [`upstream`]; another trust domain's is its
/// own segment, named as the server.
pub fn upstream_in(td: &str, name: &str, dir: &Path, opts: &DemoOptions) -> ServerFile {
    let segment = if td == TRUST_DOMAIN { "root" } else { name };
    let mut f = server_base(td, name, segment, dir);
    f.ca_ttl = Duration::hours(24);
    f.jwt_key_ttl = Some(Duration::hours(12));
    f.default_x509_svid_ttl = opts.svid_ttl;
    f.agent_svid_ttl = Some(Duration::minutes(30));
    f
}

/// The downstream server of `segment`: its intermediate from `upstream`, its identity
/// (`own_id`) from the node agent serving `node_agent_socket`.
pub fn downstream(
    segment: &str,
    dir: &Path,
    opts: &DemoOptions,
    upstream: &ServerEntry,
    node_agent_socket: &str,
    own_id: &str,
) -> ServerFile {
    let mut f = server_base(TRUST_DOMAIN, segment, segment, dir);
    f.ca_ttl = opts.intermediate_ttl;
    f.default_x509_svid_ttl = opts.svid_ttl;
    // An agent SVID never outlives the intermediate that signs it: a third of a short one.
    f.agent_svid_ttl = Some(Duration::minutes(10).min(opts.intermediate_ttl / 3));
    f.upstream = Some(UpstreamConfig {
        address: upstream.node_api.clone().unwrap_or_default(),
        spiffe_id: Some(server_id(&upstream.name)),
        workload_api_socket: node_agent_socket.into(),
        own_spiffe_id: Some(own_id.into()),
        bundle_poll_interval: None,
    });
    f
}

/// Files an agent is started with: the server's bundle, a join token, and its sockets.
pub struct AgentPaths<'a> {
    pub dir: &'a Path,
    pub bundle: &'a Path,
    pub token: &'a Path,
    pub workload_socket: &'a Path,
    pub admin_socket: &'a Path,
}

/// Agent `name` of `segment`, attested to `server` (of its trust domain) with a join token.
pub fn agent(name: &str, segment: &str, server: &ServerEntry, p: &AgentPaths<'_>) -> AgentFile {
    let mut f = AgentFile::new(
        server.trust_domain.as_deref().unwrap_or(TRUST_DOMAIN),
        server.node_api.clone().unwrap_or_default(),
        p.bundle,
        p.dir.join("data"),
        NodeAttestation::JoinToken {
            token: None,
            token_path: Some(p.token.into()),
        },
    );
    f.name = Some(name.into());
    f.segment = Some(segment.into());
    f.server_spiffe_id = server.spiffe_id.clone();
    f.socket_path = Some(p.workload_socket.into());
    f.admin_socket = Some(p.admin_socket.into());
    f
}

/// Writes `file` as TOML to `path` at once (through a temporary file beside it), so a daemon
/// never reads half of it.
pub fn write(path: &Path, file: &impl Serialize) -> Result<(), DemoError> {
    let text = toml::to_string(file).map_err(|source| DemoError::Config {
        path: path.display().to_string(),
        source,
    })?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ServerEntry {
        ServerEntry {
            name: name.into(),
            role: "upstream".into(),
            segment: "root".into(),
            admin: "unix:///tmp/d/upstream/admin.sock".into(),
            spiffe_id: Some(server_id(name)),
            pid: None,
            node_api: Some("127.0.0.1:4000".into()),
            trust_domain: None,
        }
    }

    #[test]
    fn the_daemons_read_what_the_demo_writes() {
        let opts = DemoOptions::default();
        let text = toml::to_string(&upstream(Path::new("/tmp/d/upstream"), &opts)).unwrap();
        let up = trustdeck_server::config::Config::parse(&text, "up").unwrap();
        assert_eq!(
            (up.name.as_str(), up.segment.as_str()),
            ("upstream", "root")
        );
        assert_eq!(up.jwt_key_ttl, Duration::hours(12));
        assert_eq!(up.default_x509_svid_ttl, opts.svid_ttl);
        assert_eq!(up.agent_svid_ttl, Duration::minutes(30));
        assert_eq!(up.rotation_check_interval, Duration::seconds(1));
        assert_eq!(up.bind_address.port(), 0);

        let ds = downstream(
            "gcp",
            Path::new("/tmp/d/gcp"),
            &opts,
            &entry("upstream"),
            "/tmp/d/gcp-node/workload.sock",
            "spiffe://demo.trustdeck/prod/gcp/platform/trustdeck-server",
        );
        let ds =
            trustdeck_server::config::Config::parse(&toml::to_string(&ds).unwrap(), "ds").unwrap();
        assert_eq!(ds.ca_ttl, opts.intermediate_ttl);
        assert_eq!(ds.server_spiffe_id.to_string(), server_id("gcp"));
        let link = ds.upstream.expect("an upstream link");
        assert_eq!(link.address, "127.0.0.1:4000");
        assert_eq!(link.spiffe_id.to_string(), server_id("upstream"));

        let dir = Path::new("/tmp/d/gcp-node");
        let paths = AgentPaths {
            dir,
            bundle: &dir.join("bootstrap-bundle.pem"),
            token: &dir.join("join-token"),
            workload_socket: &dir.join("workload.sock"),
            admin_socket: &dir.join("admin.sock"),
        };
        let a = agent("gcp-node", "gcp", &entry("upstream"), &paths);
        let a = trustdeck_agent::config::Config::parse(&toml::to_string(&a).unwrap(), "a").unwrap();
        assert_eq!(a.server_address, "127.0.0.1:4000");
        assert_eq!(a.socket_path, dir.join("workload.sock"));
        assert!(matches!(
            a.node_attestation,
            NodeAttestation::JoinToken {
                token: None,
                token_path: Some(_)
            }
        ));
    }
}
