//! The I/O of a runbook execution, over the fleet's admin endpoints: the admin calls a step
//! makes ([`RunbookIo::perform`], each carrying the `trustdeck-runbook` header), what a check
//! needs beyond the `Watch` streams ([`RunbookIo::authorities`], [`RunbookIo::probes`]), and the
//! execution journal on the fleet's upstream server.
//!
//! The CLI (`trustdeck runbook`) and the console's runbook pane both call these.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::{
    AgentRequest, AuthorityRefusal, AuthorityRequest, BeginRunbookRequest, ClaimRunbookRequest,
    CreateEntryRequest, CreateJoinTokenRequest, DaemonRole, DeleteEntryRequest, EntryInfo,
    ExportSignedBundleRequest, KeyProbeResult, ListEntriesRequest, ListForeignBundlesRequest,
    ListRunbooksRequest, ProbeKeysRequest, RecordRunbookRequest, RunbookExecution,
    ShowAuthoritiesRequest,
};
use trustdeck_proto::refusal::{RUNBOOK_STEP_HEADER, refusal_of, runbook_refusal_of};
use trustdeck_runbook::ServerReads;
use trustdeck_runbook::exec::Call;
use trustdeck_runbook::model::AuthKind;

use crate::client::{ClientTls, channel, describe};
use crate::fleetfile::Target;

/// How long one admin call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most entries one `MoveEntries` moves.
pub const MAX_MOVED: usize = 10_000;

/// Why a runbook call failed, for people (the typed refusal when the server sent one).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct IoError {
    pub message: String,
    /// The journal's refusal, when it refused.
    pub refusal: Option<trustdeck_proto::admin::RunbookRefusal>,
    /// Refused for now, not for good: asking again shortly may work (a server whose census
    /// is still warming up after a start).
    pub retry: bool,
    /// The server did not answer (down, stopped, unreachable): nothing was decided.
    pub unreachable: bool,
}

impl IoError {
    fn plain(message: impl Into<String>) -> IoError {
        IoError {
            message: message.into(),
            refusal: None,
            retry: false,
            unreachable: false,
        }
    }

    /// From a failed call to `server`: the authority or journal refusal, in words.
    fn status(server: &str, what: &str, s: &tonic::Status) -> IoError {
        let mut message = format!("{server}: {what}: {}", describe(s));
        let authority = refusal_of(s);
        if let Some(r) = authority {
            message.push_str(&format!(" (refused: {})", r.as_str_name()));
        }
        let retry = authority == Some(AuthorityRefusal::CensusIncomplete);
        let refusal = runbook_refusal_of(s).map(|d| {
            let r = d.refusal();
            if !d.holder.is_empty() {
                message.push_str(&format!(" (held by {})", d.holder));
            }
            r
        });
        // Down, or hung: the call's own deadline ends as Cancelled on the client.
        let unreachable = matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        );
        IoError {
            message,
            refusal,
            retry,
            unreachable,
        }
    }
}

/// Which execution and step an admin call is made for (the `trustdeck-runbook` header).
#[derive(Debug, Clone)]
pub struct StepTag {
    pub execution: String,
    pub runbook: String,
    pub step: String,
}

impl StepTag {
    /// The header's value: `<execution id>/<runbook>/<step id>`.
    pub fn value(&self) -> String {
        format!("{}/{}/{}", self.execution, self.runbook, self.step)
    }
}

/// The fleet's admin endpoints, for one session (a random id per console or CLI run).
#[derive(Clone)]
pub struct RunbookIo {
    pub targets: Vec<Target>,
    pub tls: Option<Arc<ClientTls>>,
    pub session: String,
}

fn is_server(t: &Target) -> bool {
    matches!(t.role, DaemonRole::Upstream | DaemonRole::Downstream)
}

/// `msg` as a request carrying `tag` (when given) and the call timeout.
fn tagged<T>(msg: T, tag: Option<&StepTag>) -> Result<tonic::Request<T>, IoError> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(CALL_TIMEOUT);
    if let Some(tag) = tag {
        let v: MetadataValue<tonic::metadata::Ascii> = tag.value().parse().map_err(|_| {
            IoError::plain(format!("step tag {:?} is not printable ASCII", tag.value()))
        })?;
        req.metadata_mut().insert(RUNBOOK_STEP_HEADER, v);
    }
    Ok(req)
}

/// A random session id (16 bytes of the OS's randomness, hex).
pub fn new_session() -> String {
    let mut b = [0u8; 16];
    if urandom_fill(&mut b).is_err() {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{n:x}{:x}", std::process::id());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn urandom_fill(b: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(b)
}

impl RunbookIo {
    /// A client of the server target named `name`.
    fn client(&self, name: &str) -> Result<ServerAdminClient<Channel>, IoError> {
        let t = self
            .targets
            .iter()
            .find(|t| t.name == name && is_server(t))
            .ok_or_else(|| {
                IoError::plain(format!("{name}: no server of that name in the fleet"))
            })?;
        let ch = channel(&t.endpoint, self.tls.as_deref())
            .map_err(|e| IoError::plain(format!("{name}: {e}")))?;
        Ok(ServerAdminClient::new(ch).max_decoding_message_size(crate::client::MAX_MESSAGE))
    }

    /// The fleet name of the server the journal lives on (the fleet's upstream).
    pub fn journal_name(&self) -> Option<String> {
        self.targets
            .iter()
            .find(|t| t.role == DaemonRole::Upstream)
            .map(|t| t.name.clone())
    }

    /// The fleet's upstream server, where the journal lives.
    fn upstream(&self) -> Result<(String, ServerAdminClient<Channel>), IoError> {
        let name = self.journal_name().ok_or_else(|| {
            IoError::plain("the fleet has no upstream server (the journal lives there)")
        })?;
        let c = self.client(&name)?;
        Ok((name, c))
    }

    /// The admin call of a step; returns what it saves (see `trustdeck_runbook::model::Action`).
    pub async fn perform(
        &self,
        call: &Call,
        tag: &StepTag,
    ) -> Result<BTreeMap<String, String>, IoError> {
        let mut saved = BTreeMap::new();
        match call {
            Call::Prepare { server, kind, save } => {
                let r = self
                    .authority(server, "prepare", *kind, "", false, tag)
                    .await?;
                let id = r.authority.map(|a| a.id).unwrap_or_default();
                if id.is_empty() {
                    return Err(IoError::plain(format!(
                        "{server}: prepare answered without the prepared authority"
                    )));
                }
                saved.insert(save.clone(), id);
                saved.insert(format!("{save}_sequence"), r.bundle_sequence.to_string());
            }
            Call::Activate { server, kind, id } => {
                self.authority(server, "activate", *kind, id, false, tag)
                    .await?;
            }
            Call::Taint {
                server,
                kind,
                id,
                save,
            } => {
                let r = self
                    .authority(server, "taint", *kind, id, false, tag)
                    .await?;
                if let Some(save) = save {
                    saved.insert(format!("{save}_sequence"), r.bundle_sequence.to_string());
                }
            }
            Call::Revoke {
                server,
                kind,
                id,
                force,
            } => {
                self.authority(server, "revoke", *kind, id, *force, tag)
                    .await?;
            }
            Call::CreateJoinToken { server, save } => {
                let mut c = self.client(server)?;
                let r = c
                    .create_join_token(tagged(CreateJoinTokenRequest { ttl_secs: 0 }, Some(tag))?)
                    .await
                    .map_err(|s| IoError::status(server, "create join token", &s))?
                    .into_inner();
                saved.insert(save.clone(), r.token);
                saved.insert(format!("{save}_agent"), r.agent_spiffe_id);
            }
            Call::EvictAgent { server, agent } => {
                let mut c = self.client(server)?;
                c.evict_agent(tagged(
                    AgentRequest {
                        spiffe_id: agent.clone(),
                    },
                    Some(tag),
                )?)
                .await
                .map_err(|s| IoError::status(server, "evict agent", &s))?;
            }
            Call::MoveEntries {
                server,
                from,
                to,
                save,
            } => {
                let moved = self.move_entries(server, from, to, tag).await?;
                if let Some(save) = save {
                    saved.insert(save.clone(), moved.join(","));
                }
            }
            Call::ExportBundle { server, dir, save } => {
                let (path, sequence) = self.export_bundle(server, dir, tag).await?;
                saved.insert(save.clone(), path);
                saved.insert(format!("{save}_sequence"), sequence.to_string());
            }
        }
        Ok(saved)
    }

    /// `ExportSignedBundle` of `server`, written as a new file in `dir` (never over one):
    /// its path and bundle sequence.
    async fn export_bundle(
        &self,
        server: &str,
        dir: &str,
        tag: &StepTag,
    ) -> Result<(String, u64), IoError> {
        let mut c = self.client(server)?;
        let r = c
            .export_signed_bundle(tagged(ExportSignedBundleRequest {}, Some(tag))?)
            .await
            .map_err(|s| IoError::status(server, "export bundle", &s))?
            .into_inner();
        let td = trustdeck_spiffe::TrustDomain::parse(&r.trust_domain).map_err(|e| {
            IoError::plain(format!("{server}: export names a bad trust domain: {e}"))
        })?;
        let name = format!("{}-bundle-{}-{}.json", td.as_str(), r.sequence, r.issued_at);
        let path = std::path::Path::new(dir).join(name);
        write_new(&path, &r.file)
            .map_err(|e| IoError::plain(format!("{server}: write {}: {e}", path.display())))?;
        Ok((path.display().to_string(), r.sequence))
    }

    async fn authority(
        &self,
        server: &str,
        op: &str,
        kind: AuthKind,
        id: &str,
        force: bool,
        tag: &StepTag,
    ) -> Result<trustdeck_proto::admin::AuthorityResponse, IoError> {
        let mut c = self.client(server)?;
        let req = tagged(
            AuthorityRequest {
                kind: kind.proto() as i32,
                id: id.to_string(),
                force,
            },
            Some(tag),
        )?;
        let r = match op {
            "prepare" => c.prepare_authority(req).await,
            "activate" => c.activate_authority(req).await,
            "taint" => c.taint_authority(req).await,
            _ => c.revoke_authority(req).await,
        };
        r.map(tonic::Response::into_inner)
            .map_err(|s| IoError::status(server, op, &s))
    }

    /// The entries whose parent is `parent` (at most [`MAX_MOVED`]).
    async fn entries_under(
        &self,
        c: &mut ServerAdminClient<Channel>,
        server: &str,
        parent: &str,
        tag: &StepTag,
    ) -> Result<Vec<trustdeck_proto::admin::EntryInfo>, IoError> {
        let req = ListEntriesRequest {
            parent_id: parent.to_string(),
            ..Default::default()
        };
        let list = c
            .list_entries(tagged(req, Some(tag))?)
            .await
            .map_err(|s| IoError::status(server, "list entries", &s))?
            .into_inner()
            .entries;
        if list.len() > MAX_MOVED {
            return Err(IoError::plain(format!(
                "{server}: {} entries under {parent}, more than {MAX_MOVED}: nothing moved",
                list.len()
            )));
        }
        Ok(list.into_iter().filter(|e| e.parent_id == parent).collect())
    }

    /// Every entry whose parent is `from` re-created under `to`, then deleted; returns their
    /// SPIFFE IDs. Asked again (a resume after a drop half-way), an entry already re-created
    /// is not made twice.
    async fn move_entries(
        &self,
        server: &str,
        from: &str,
        to: &str,
        tag: &StepTag,
    ) -> Result<Vec<String>, IoError> {
        if from == to {
            return Err(IoError::plain(format!(
                "{server}: move entries from {from} to itself: nothing moved"
            )));
        }
        let mut c = self.client(server)?;
        let list = self.entries_under(&mut c, server, from, tag).await?;
        let there = self.entries_under(&mut c, server, to, tag).await?;
        let mut moved = Vec::with_capacity(list.len());
        for e in list {
            let already = there.iter().any(|t| same_entry(t, &e));
            if !already {
                let positive = |v: i64| (v > 0).then_some(v);
                let req = CreateEntryRequest {
                    spiffe_id: e.spiffe_id.clone(),
                    parent_id: to.to_string(),
                    selectors: e.selectors.clone(),
                    x509_ttl_secs: positive(e.x509_ttl_secs),
                    jwt_ttl_secs: positive(e.jwt_ttl_secs),
                    downstream: e.downstream,
                    dns_names: e.dns_names.clone(),
                    namespaces: e.namespaces.clone(),
                    federates_with: e.federates_with.clone(),
                };
                c.create_entry(tagged(req, Some(tag))?)
                    .await
                    .map_err(|s| IoError::status(server, "create entry", &s))?;
            }
            c.delete_entry(tagged(DeleteEntryRequest { id: e.id.clone() }, Some(tag))?)
                .await
                .map_err(|s| IoError::status(server, "delete entry", &s))?;
            moved.push(e.spiffe_id);
        }
        Ok(moved)
    }

    /// `ShowAuthorities` and `ListForeignBundles` of every server target that answers, by
    /// fleet name.
    pub async fn reads(&self) -> ServerReads {
        let mut out = ServerReads::default();
        for t in self.targets.iter().filter(|t| is_server(t)) {
            let Ok(mut c) = self.client(&t.name) else {
                continue;
            };
            let Ok(req) = tagged(ShowAuthoritiesRequest { kind: 0 }, None) else {
                continue;
            };
            match c.show_authorities(req).await {
                Ok(r) => {
                    out.authorities
                        .insert(t.name.clone(), r.into_inner().authorities);
                }
                Err(s) => {
                    tracing::debug!(server = %t.name, error = %describe(&s), "show authorities");
                    continue;
                }
            }
            let Ok(req) = tagged(ListForeignBundlesRequest {}, None) else {
                continue;
            };
            match c.list_foreign_bundles(req).await {
                Ok(r) => {
                    out.foreign.insert(t.name.clone(), r.into_inner());
                }
                Err(s) => {
                    tracing::debug!(server = %t.name, error = %describe(&s), "list foreign bundles")
                }
            }
        }
        out
    }

    /// `ProbeKeys` of these servers (fleet names), by fleet name; one that fails is absent.
    pub async fn probes(&self, servers: &[String]) -> BTreeMap<String, Vec<KeyProbeResult>> {
        let mut out = BTreeMap::new();
        for name in servers {
            if out.contains_key(name) {
                continue;
            }
            let Ok(mut c) = self.client(name) else {
                continue;
            };
            let Ok(req) = tagged(ProbeKeysRequest {}, None) else {
                continue;
            };
            match c.probe_keys(req).await {
                Ok(r) => {
                    out.insert(name.clone(), r.into_inner().keys);
                }
                Err(s) => tracing::debug!(server = %name, error = %describe(&s), "probe keys"),
            }
        }
        out
    }

    /// Begins an execution in the journal of the fleet's upstream server.
    pub async fn begin(&self, req: BeginRunbookRequest) -> Result<RunbookExecution, IoError> {
        let (name, mut c) = self.upstream()?;
        c.begin_runbook(tagged(req, None)?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| IoError::status(&name, "begin runbook", &s))
    }

    /// Takes an execution over for this session (resume).
    pub async fn claim(&self, id: &str) -> Result<RunbookExecution, IoError> {
        let (name, mut c) = self.upstream()?;
        let req = ClaimRunbookRequest {
            id: id.to_string(),
            session: self.session.clone(),
        };
        c.claim_runbook(tagged(req, None)?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| IoError::status(&name, "claim runbook", &s))
    }

    /// Records progress (or, with state ABORTED, an abort).
    pub async fn record(&self, req: RecordRunbookRequest) -> Result<RunbookExecution, IoError> {
        let (name, mut c) = self.upstream()?;
        c.record_runbook(tagged(req, None)?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| IoError::status(&name, "record runbook", &s))
    }

    /// Executions in the journal (running and stopped; with `finished`, the newest others).
    pub async fn list(&self, finished: bool) -> Result<Vec<RunbookExecution>, IoError> {
        let (name, mut c) = self.upstream()?;
        let req = ListRunbooksRequest {
            include_finished: finished,
            id: String::new(),
        };
        c.list_runbooks(tagged(req, None)?)
            .await
            .map(|r| r.into_inner().executions)
            .map_err(|s| IoError::status(&name, "list runbooks", &s))
    }
}

/// Whether two entries select the same workloads (selectors in any order).
/// Whether `a` is `b` re-created: the same SPIFFE ID, selectors, federated trust domains, DNS
/// names, namespaces, downstream flag and TTLs (one that differs is not taken as done:
/// creating it is refused, the original kept).
fn same_entry(a: &EntryInfo, b: &EntryInfo) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    a.spiffe_id == b.spiffe_id
        && sorted(&a.selectors) == sorted(&b.selectors)
        && sorted(&a.federates_with) == sorted(&b.federates_with)
        && a.dns_names == b.dns_names
        && a.namespaces == b.namespaces
        && a.downstream == b.downstream
        && (a.x509_ttl_secs, a.jwt_ttl_secs) == (b.x509_ttl_secs, b.jwt_ttl_secs)
}

/// Writes `bytes` to a new file at `path` (readable by all: a bundle is public), synced;
/// an existing file is an error, never overwritten, and one that could not be written whole
/// is removed.
fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if bytes.is_empty() {
        return Err(std::io::Error::other("the server answered an empty file"));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_call_carries_the_runbook_header() {
        let tag = StepTag {
            execution: "e1".into(),
            runbook: "rotate-root-ca".into(),
            step: "prepare".into(),
        };
        let r = tagged(ProbeKeysRequest {}, Some(&tag)).expect("tagged");
        let v = r.metadata().get(RUNBOOK_STEP_HEADER).expect("header");
        assert_eq!(v.to_str().expect("ascii"), "e1/rotate-root-ca/prepare");
        assert!(
            tagged(ProbeKeysRequest {}, None)
                .expect("untagged")
                .metadata()
                .get(RUNBOOK_STEP_HEADER)
                .is_none()
        );
    }

    #[test]
    fn a_tag_that_is_not_ascii_is_refused_before_any_call() {
        let tag = StepTag {
            execution: "e1".into(),
            runbook: "r\u{e9}".into(),
            step: "s\n".into(),
        };
        assert!(tagged(ProbeKeysRequest {}, Some(&tag)).is_err());
    }

    #[test]
    fn an_entry_already_moved_is_recognised_by_id_selectors_and_federation() {
        let e = |id: &str, sel: &[&str]| EntryInfo {
            spiffe_id: id.into(),
            selectors: sel.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let a = e("spiffe://td/a", &["unix:uid:0", "unix:gid:0"]);
        assert!(same_entry(
            &a,
            &e("spiffe://td/a", &["unix:gid:0", "unix:uid:0"])
        ));
        assert!(!same_entry(&a, &e("spiffe://td/a", &["unix:uid:0"])));
        assert!(!same_entry(
            &a,
            &e("spiffe://td/b", &["unix:uid:0", "unix:gid:0"])
        ));
        let federated = EntryInfo {
            federates_with: vec!["p.test".into()],
            ..a.clone()
        };
        assert!(!same_entry(&a, &federated), "federates_with counts");
    }

    #[test]
    fn sessions_differ() {
        assert_ne!(new_session(), new_session());
        assert_eq!(new_session().len(), 32);
    }
}
