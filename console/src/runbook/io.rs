//! The I/O of a runbook execution, over the fleet's admin endpoints: the admin calls a step
//! makes ([`RunbookIo::perform`], each carrying the `trustdeck-runbook` header), what a check
//! needs beyond the `Watch` streams ([`RunbookIo::authorities`], [`RunbookIo::probes`]), and the
//! execution journal on the fleet's upstream server.
//!
//! Interface agreed for issue 14: the CLI (`trustdeck runbook`) and the console pane call
//! these; bodies are being written (branch i14-cli).

use std::collections::BTreeMap;
use std::sync::Arc;

use trustdeck_proto::admin::{
    AuthorityInfo, BeginRunbookRequest, KeyProbeResult, RecordRunbookRequest, RunbookExecution,
};
use trustdeck_runbook::exec::Call;

use crate::client::ClientTls;
use crate::fleetfile::Target;

/// Why a runbook call failed, for people (the typed refusal when the server sent one).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct IoError {
    pub message: String,
    /// The journal's refusal, when it refused.
    pub refusal: Option<trustdeck_proto::admin::RunbookRefusal>,
}

/// Which execution and step an admin call is made for (the `trustdeck-runbook` header).
#[derive(Debug, Clone)]
pub struct StepTag {
    pub execution: String,
    pub runbook: String,
    pub step: String,
}

/// The fleet's admin endpoints, for one session (a random id per console or CLI run).
#[derive(Clone)]
pub struct RunbookIo {
    pub targets: Vec<Target>,
    pub tls: Option<Arc<ClientTls>>,
    pub session: String,
}

impl RunbookIo {
    /// The admin call of a step; returns what it saves (see `trustdeck_runbook::model::Action`).
    pub async fn perform(
        &self,
        call: &Call,
        tag: &StepTag,
    ) -> Result<BTreeMap<String, String>, IoError> {
        let _ = (call, tag);
        Err(self.pending("perform"))
    }

    /// `ShowAuthorities` of every server target that answers, by fleet name.
    pub async fn authorities(&self) -> BTreeMap<String, Vec<AuthorityInfo>> {
        BTreeMap::new()
    }

    /// `ProbeKeys` of these servers (fleet names), by fleet name; one that fails is absent.
    pub async fn probes(&self, servers: &[String]) -> BTreeMap<String, Vec<KeyProbeResult>> {
        let _ = servers;
        BTreeMap::new()
    }

    /// Begins an execution in the journal of the fleet's upstream server.
    pub async fn begin(&self, req: BeginRunbookRequest) -> Result<RunbookExecution, IoError> {
        let _ = req;
        Err(self.pending("begin"))
    }

    /// Takes an execution over for this session (resume).
    pub async fn claim(&self, id: &str) -> Result<RunbookExecution, IoError> {
        let _ = id;
        Err(self.pending("claim"))
    }

    /// Records progress (or, with state ABORTED, an abort).
    pub async fn record(&self, req: RecordRunbookRequest) -> Result<RunbookExecution, IoError> {
        let _ = req;
        Err(self.pending("record"))
    }

    /// Executions in the journal (running and stopped; with `finished`, the newest others).
    pub async fn list(&self, finished: bool) -> Result<Vec<RunbookExecution>, IoError> {
        let _ = finished;
        Err(self.pending("list"))
    }

    fn pending(&self, what: &str) -> IoError {
        IoError {
            message: format!("runbook I/O {what}: not built yet"),
            refusal: None,
        }
    }
}
