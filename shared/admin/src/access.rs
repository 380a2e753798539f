//! Who may call a daemon's admin APIs.
//!
//! A caller is an *operator* (may change things) or a *viewer* (may only read). Over the
//! admin Unix socket the peer's uid decides; over mTLS TCP the SPIFFE ID of its client
//! certificate does. Anyone else is refused, and a viewer calling a mutating method is refused
//! with `PermissionDenied`.

use std::sync::Arc;

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};
use trustdeck_spiffe::SpiffeId;

use crate::refusals::{Refusal, RefusalSink, UNAUTHENTICATED_TCP};
use crate::socket::{SocketAccess, SocketGroupError, outsiders, socket_access, unreachable};
use crate::users::Accounts;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read-only: `Watch`, `GetNode`, listings, health.
    Viewer,
    /// Everything, audited.
    Operator,
}

/// Decides whether a TCP caller's leaf certificate (DER) was issued by an authority this daemon
/// accepts for administration; `Err` says why not.
#[derive(Clone)]
pub struct IssuerCheck(pub Arc<IssuerFn>);

/// The function an [`IssuerCheck`] wraps.
pub type IssuerFn = dyn Fn(&[u8]) -> Result<(), NotIssuedHere> + Send + Sync;

/// Why an [`IssuerCheck`] refused a caller's certificate (the daemon's own error, boxed).
pub type NotIssuedHere = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for IssuerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuerCheck")
    }
}

/// Who may call the admin APIs.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// The daemon's own effective uid (an operator over the socket, as is root).
    pub own_uid: u32,
    /// More operator uids (socket).
    pub operator_uids: Vec<u32>,
    /// Viewer uids (socket).
    pub viewer_uids: Vec<u32>,
    /// Operator SPIFFE IDs (mTLS).
    pub operator_ids: Vec<SpiffeId>,
    /// Viewer SPIFFE IDs (mTLS).
    pub viewer_ids: Vec<SpiffeId>,
    /// Over mTLS, also require the caller's SVID to come from one of this daemon's own
    /// authorities: any CA of the trust domain can issue any ID (a downstream's intermediate
    /// is not name-constrained), so an ID alone must not make an operator.
    pub tcp_issuers: Option<IssuerCheck>,
    /// Told about every refused call (a server audits them).
    pub refusals: Option<RefusalSink>,
}

/// An authenticated admin caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `uid:1000` or a SPIFFE ID, for audit records.
    pub actor: String,
    /// What it may do.
    pub role: Role,
}

/// This process's effective uid, from `/proc/self/status` (the owner of `/proc/self` is root
/// for non-dumpable processes, e.g. binaries with file capabilities).
pub fn effective_uid() -> Option<u32> {
    effective_id("Uid:")
}

/// This process's effective gid, from `/proc/self/status`.
pub fn effective_gid() -> Option<u32> {
    effective_id("Gid:")
}

/// The effective (second) id of a `Uid:`/`Gid:` line of `/proc/self/status`.
fn effective_id(field: &str) -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

impl AdminAccess {
    /// Who is calling `method`, and with which role; a refused caller gets a message naming
    /// why, and the refusal goes to [`refusals`](Self::refusals).
    pub fn caller<T>(&self, req: &Request<T>, method: &str) -> Result<Caller, Status> {
        self.identify(req).map_err(|(actor, status)| {
            let why = match req
                .extensions()
                .get::<trustdeck_transport::serve::PeerInfo>()
                .and_then(|p| p.addr)
            {
                Some(addr) if actor == UNAUTHENTICATED_TCP => {
                    format!("{} (from {})", status.message(), addr.ip())
                }
                _ => status.message().to_string(),
            };
            self.refused(actor, method, why, status)
        })
    }

    /// Like [`caller`](Self::caller), and refuses viewers: for methods that change state.
    pub fn operator<T>(&self, req: &Request<T>, method: &str) -> Result<Caller, Status> {
        let c = self.caller(req, method)?;
        if c.role < Role::Operator {
            let status = Status::permission_denied(format!(
                "{} is a viewer: {method} needs an operator (viewers may only watch and read)",
                c.actor
            ));
            let why = status.message().to_string();
            return Err(self.refused(c.actor, method, why, status));
        }
        Ok(c)
    }

    /// Tells the sink about a refusal (`why`: the message, and what else the record needs).
    fn refused(&self, actor: String, method: &str, why: String, status: Status) -> Status {
        if let Some(sink) = &self.refusals {
            (sink.0)(Refusal {
                actor,
                method: method.to_string(),
                why,
            });
        }
        status
    }

    /// The caller, or who it seems to be and why it is refused.
    fn identify<T>(&self, req: &Request<T>) -> Result<Caller, (String, Status)> {
        if let Some(info) = req.extensions().get::<UdsConnectInfo>() {
            let Some(uid) = info.peer_cred.map(|c| c.uid()) else {
                let why = "admin API: peer credentials unavailable";
                return Err(("uid:unknown".into(), Status::unauthenticated(why)));
            };
            let actor = format!("uid:{uid}");
            let role = if uid == 0 || uid == self.own_uid || self.operator_uids.contains(&uid) {
                Role::Operator
            } else if self.viewer_uids.contains(&uid) {
                Role::Viewer
            } else {
                let why = format!(
                    "uid {uid} may not use this admin socket (operators: root, uid {} and the configured operator uids; viewers: the configured viewer uids)",
                    self.own_uid
                );
                return Err((actor, Status::permission_denied(why)));
            };
            return Ok(Caller { actor, role });
        }
        let Some(id) = trustdeck_transport::serve::peer_spiffe_id(req) else {
            // One actor for all of them, so many source addresses make no more records.
            let why = "admin API over TCP needs a client X509-SVID (mTLS)";
            return Err((UNAUTHENTICATED_TCP.into(), Status::unauthenticated(why)));
        };
        if let Some(check) = &self.tcp_issuers {
            let certs = trustdeck_transport::serve::peer_certs(req).unwrap_or_default();
            let leaf = certs.first().map(|c| c.as_ref()).unwrap_or_default();
            if let Err(why) = (check.0)(leaf) {
                let why = format!("{id} may not use this admin API: {why}");
                return Err((id.to_string(), Status::permission_denied(why)));
            }
        }
        let role = if self.operator_ids.contains(&id) {
            Role::Operator
        } else if self.viewer_ids.contains(&id) {
            Role::Viewer
        } else {
            let why = format!("{id} is neither an admin viewer nor an operator of this daemon");
            return Err((id.to_string(), Status::permission_denied(why)));
        };
        Ok(Caller {
            actor: id.to_string(),
            role,
        })
    }
}

/// The `[admin]` table of a daemon's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Serve the admin APIs on mTLS TCP too (e.g. `127.0.0.1:0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<std::net::SocketAddr>,
    /// Uids that may watch over the socket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub viewer_uids: Vec<u32>,
    /// SPIFFE IDs that may operate over mTLS.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
    /// SPIFFE IDs that may watch over mTLS.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub viewers: Vec<String>,
    /// The admin socket's group (a name or a gid; mode `0660`). Without one, a socket that
    /// configured uids must reach is `0666`, and the uid check lets in only them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
}

/// An `[admin]` table names a SPIFFE ID that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("admin.{key}: {source}")]
pub struct BadAdminId {
    /// `operators` or `viewers`.
    pub key: &'static str,
    pub source: trustdeck_spiffe::IdError,
}

impl AdminSection {
    /// The access rules, with every SPIFFE ID checked; errors name the bad value.
    pub fn access(&self, operator_uids: &[u32]) -> Result<AdminAccess, BadAdminId> {
        let ids = |key: &'static str, v: &[String]| -> Result<Vec<SpiffeId>, BadAdminId> {
            v.iter()
                .map(|s| SpiffeId::parse(s).map_err(|source| BadAdminId { key, source }))
                .collect()
        };
        Ok(AdminAccess {
            own_uid: effective_uid().unwrap_or(0),
            operator_uids: operator_uids.to_vec(),
            viewer_uids: self.viewer_uids.clone(),
            operator_ids: ids("operators", &self.operators)?,
            viewer_ids: ids("viewers", &self.viewers)?,
            tcp_issuers: None,
            refusals: None,
        })
    }

    /// The admin socket's mode and group for the uids of `access`, and why any of them could
    /// not reach it at `path` (warnings); `data_dir` is kept `0700` by the daemon. Reads
    /// `/etc/passwd` and `/etc/group` when a group or uids are configured.
    pub fn socket(
        &self,
        access: &AdminAccess,
        path: &std::path::Path,
        data_dir: &std::path::Path,
    ) -> Result<(SocketAccess, Vec<String>), SocketGroupError> {
        let outsiders = outsiders(access.own_uid, &access.operator_uids, &access.viewer_uids);
        if self.socket_group.is_none() && outsiders.is_empty() {
            return Ok((SocketAccess::default(), Vec::new()));
        }
        let accounts = Accounts::load()?;
        let socket = socket_access(self.socket_group.as_deref(), &outsiders, &accounts)?;
        let warnings = unreachable(path, &socket, &outsiders, data_dir, &accounts);
        Ok((socket, warnings))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use trustdeck_transport::serve::PeerInfo;

    use super::*;

    #[test]
    fn tcp_callers_without_a_certificate_share_one_actor_with_their_address_in_the_detail() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let access = AdminAccess {
            refusals: Some(RefusalSink(Arc::new(move |r| {
                sink.lock().expect("lock").push(r)
            }))),
            ..AdminAccess::default()
        };
        for addr in ["192.0.2.1:4000", "198.51.100.7:4001"] {
            let mut req = Request::new(());
            req.extensions_mut().insert(PeerInfo {
                addr: Some(addr.parse().expect("addr")),
                certs: None,
            });
            let status = access.caller(&req, "Watch").expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
        }
        let seen = seen.lock().expect("lock");
        let actors: Vec<_> = seen.iter().map(|r| r.actor.as_str()).collect();
        assert_eq!(actors, [UNAUTHENTICATED_TCP, UNAUTHENTICATED_TCP]);
        assert!(seen[0].why.ends_with("(from 192.0.2.1)"), "{}", seen[0].why);
        assert!(
            seen[1].why.ends_with("(from 198.51.100.7)"),
            "{}",
            seen[1].why
        );
    }
}
