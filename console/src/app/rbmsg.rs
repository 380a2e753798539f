//! The runbook I/O `update` asks for ([`RunbookEffect`]) and its answers ([`RunbookMsg`]):
//! the terminal's edge performs them with [`RunbookIo`](crate::runbook::io::RunbookIo).

use std::collections::BTreeMap;

use trustdeck_proto::admin::{
    BeginRunbookRequest, KeyProbeResult, RecordRunbookRequest, RunbookExecution,
};
use trustdeck_runbook::ServerReads;
use trustdeck_runbook::exec::Call;

/// What the edge does for the runbook pane and the journal banner. Requests are sent with
/// the session filled in by the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum RunbookEffect {
    /// An admin call of a step (`rollback`: of its rollback), made for `execution`/`step`,
    /// once `journal` (where the execution stands now) is recorded: a call the journal did
    /// not hear of first is never made.
    Perform {
        call: Call,
        execution: String,
        runbook: String,
        step: String,
        rollback: bool,
        journal: Box<RecordRunbookRequest>,
    },
    /// Fetch every server's authorities and the key probes of `probes`.
    Observe {
        probes: Vec<String>,
    },
    Begin(BeginRunbookRequest),
    Record(RecordRunbookRequest),
    Claim(String),
    /// The journal's running and stopped executions.
    List,
}

/// The answer to a [`RunbookEffect`]; errors are words for people.
#[derive(Debug, Clone)]
pub enum RunbookMsg {
    Performed {
        rollback: bool,
        result: Result<BTreeMap<String, String>, String>,
        /// Refused for now (asked again shortly), not for good.
        retry: bool,
    },
    Observed {
        reads: ServerReads,
        probes: BTreeMap<String, Vec<KeyProbeResult>>,
    },
    Begun(Result<RunbookExecution, String>),
    Recorded(Result<RunbookExecution, String>),
    Claimed(Result<RunbookExecution, String>),
    /// The claim of execution `id` refused for now: another session recorded into it within
    /// the journal's hold (it may have dropped; asking again later may work).
    Held {
        id: String,
        why: String,
    },
    Listed(Result<Vec<RunbookExecution>, String>),
    /// The journal's server did not answer a begin (down, stopped): nothing was decided.
    JournalDown(String),
    /// A record of execution `id` refused because another session holds it now, or it is
    /// finished (aborted): this console stops driving it.
    TakenOver {
        id: String,
        why: String,
    },
}
