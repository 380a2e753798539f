//! The server's own TLS identity: an X509-SVID from its own CA, re-issued at half life or
//! when the signing CA changes, and the bundle's roots for verifying clients.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use trustdeck_pki::keys::SoftwareKey;
use trustdeck_pki::{SigningKey, X509Authority};
use trustdeck_spiffe::SpiffeId;
use trustdeck_spiffe::bundle::Bundle;
use trustdeck_transport::{SharedIdentity, SharedRoots};

use super::RunError;
use crate::ctx::ServerCtx;

/// What the server presents and trusts on its TLS endpoints, kept current by the rotation
/// loop.
pub(super) struct OwnTls {
    svid: ServerSvid,
    roots: SharedRoots,
    bundle_rx: watch::Receiver<Arc<Bundle>>,
}

/// The server's own X509-SVID.
struct ServerSvid {
    identity: SharedIdentity,
    id: SpiffeId,
    ttl: Duration,
    /// The CA certificate that issued the current SVID.
    issued_by: Vec<u8>,
    renew_at: DateTime<Utc>,
}

/// Issues the server's SVID and builds the TLS configuration all its listeners share.
pub(super) fn server_tls(ctx: &ServerCtx) -> Result<(OwnTls, Arc<rustls::ServerConfig>), RunError> {
    let now = ctx.clock.now();
    let identity = SharedIdentity::new();
    let mut svid = ServerSvid {
        identity: identity.clone(),
        id: ctx.server_id.clone(),
        ttl: ctx.config.agent_svid_ttl,
        issued_by: Vec::new(),
        renew_at: now,
    };
    svid.issue(ctx.ca.x509_ca()?.as_ref(), now)?;
    let bundle_rx = ctx.ca.subscribe_bundle();
    let roots = SharedRoots::new(&ctx.ca.bundle().x509_authorities)?;
    let config = trustdeck_transport::tls::server_config(identity, roots.clone())?;
    let own = OwnTls {
        svid,
        roots,
        bundle_rx,
    };
    Ok((own, config))
}

impl OwnTls {
    /// The server's own X509-SVID as a TLS identity, renewed in place.
    pub(super) fn identity(&self) -> SharedIdentity {
        self.svid.identity.clone()
    }

    /// Takes in a changed bundle's roots and renews the SVID when due; failures are logged
    /// (the current identity and roots stay).
    pub(super) fn refresh(&mut self, ctx: &ServerCtx, now: DateTime<Utc>) {
        if self.bundle_rx.has_changed().unwrap_or(false) {
            let b = self.bundle_rx.borrow_and_update().clone();
            if let Err(e) = self.roots.set(&b.x509_authorities) {
                tracing::error!(error = %e, "could not update TLS roots");
            }
        }
        if let Ok(ca) = ctx.ca.x509_ca()
            && self.svid.due(&ca, now)
            && let Err(e) = self.svid.issue(&ca, now)
        {
            tracing::error!(error = %e, "server SVID renewal failed");
        }
    }
}

impl ServerSvid {
    /// Whether the SVID should be re-issued: half its life has passed, or `ca` did not
    /// issue it.
    fn due(&self, ca: &X509Authority, now: DateTime<Utc>) -> bool {
        now >= self.renew_at || self.issued_by != ca.cert_der()
    }

    fn issue(&mut self, ca: &X509Authority, now: DateTime<Utc>) -> Result<(), RunError> {
        let (key, pkcs8) = SoftwareKey::ephemeral()?;
        let key: Arc<dyn SigningKey> = Arc::new(key);
        let csr =
            trustdeck_pki::csr::verify_csr(&trustdeck_pki::csr::make_csr(&key, Some(&self.id))?)?;
        let svid = ca
            .issue_x509_svid(&csr, &self.id, &[], self.ttl, now)
            .map_err(RunError::ServerSvid)?;
        self.identity.set(svid.chain, &pkcs8)?;
        self.issued_by = ca.cert_der().to_vec();
        self.renew_at = trustdeck_pki::rotation::renew_at(now, svid.not_after);
        Ok(())
    }
}
