//! Drives one execution against the live fleet: keeps a [`Fleet`] current from the `Watch`
//! streams, polls `ShowAuthorities` (and `ProbeKeys` when the step asks) every
//! [`POLL`], loops [`Execution::advance`], performs the calls it asks for, asks the operator
//! through a [`Confirmer`], records the journal on every step and phase change, and hands every
//! [`StepEvent`] to a sink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::{
    BeginRunbookRequest, KeyProbeResult, RecordRunbookRequest, RunbookRefusal,
};
use trustdeck_runbook::ServerReads;
use trustdeck_runbook::exec::{Mismatch, Phase};
use trustdeck_runbook::{Confirmation, Execution, Next, Observation, Outcome, StepEvent};
use trustdeck_topology::ttl::Thresholds;
use trustdeck_topology::{DaemonConn, Fleet};

use super::io::{IoError, RunbookIo, StepTag};
use crate::client::{ClientError, Update, Watcher};
use crate::status;

/// How often the admin API is polled while an execution waits.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the first snapshots may take before a silent daemon counts as unreachable.
pub const SETTLE: Duration = Duration::from_secs(5);
/// How often the journal hears from an execution waiting for the operator (well inside the
/// server's hold of 30 s, after which another session may claim it).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Where an execution stands in the journal.
#[derive(Debug, Clone)]
pub enum Journal {
    /// Begun: its id.
    Begun(String),
    /// Not yet: the journal's server did not answer when it began. Steps that make no admin
    /// call (a manual instruction, such as "start the server on the new token") go ahead; it
    /// is begun as soon as the server answers, and no admin call is made before.
    Pending(BeginRunbookRequest),
}

impl Journal {
    /// The execution's id, once begun.
    pub fn id(&self) -> Option<&str> {
        match self {
            Journal::Begun(id) => Some(id),
            Journal::Pending(_) => None,
        }
    }
}

/// The operator's answer to a [`Confirmation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Given beforehand (`--yes`).
    Given,
    /// What the operator typed (`yes`, or the target's name).
    Typed(String),
    /// No: the execution stops, nothing of the step done.
    Declined,
}

/// Asks the operator (a TTY prompt, `--yes`, the console's pane).
pub trait Confirmer {
    /// `retry` is the wrong answer given last time, if any.
    fn confirm(
        &mut self,
        c: &Confirmation,
        retry: Option<&Mismatch>,
    ) -> impl std::future::Future<Output = Answer> + Send;
}

/// Why a drive ended without an outcome.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The journal could not record that a step is about to act: nothing of it was done.
    #[error(
        "journal: {0}; nothing of step {1} was done: resume the execution when the upstream answers"
    )]
    Journal(IoError, String),
    /// Another session took the execution over, or it was aborted: this one stops.
    #[error("journal: {0}; this session stops here and does nothing more")]
    TakenOver(IoError),
    /// The journal, answering at last, refused to begin the execution (its target is busy).
    #[error("journal: {0}; nothing was changed through the admin API: run it again later")]
    Refused(IoError),
}

/// The live view an execution is driven against.
pub struct Driver {
    pub io: RunbookIo,
    pub fleet: Fleet,
    pub thresholds: Thresholds,
    clock: Arc<dyn Clock>,
    watcher: Watcher,
    rx: mpsc::UnboundedReceiver<Update>,
    reads: ServerReads,
    probes: BTreeMap<String, Vec<KeyProbeResult>>,
}

impl Driver {
    /// Opens the streams and waits until every daemon sent its snapshot or failed.
    pub async fn start(
        io: RunbookIo,
        thresholds: Thresholds,
        clock: Arc<dyn Clock>,
    ) -> Result<Driver, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = Watcher::start_with_clock(&io.targets, io.tls.clone(), tx, clock.clone())?;
        let fleet = status::fleet_for(&io.targets);
        let mut d = Driver {
            io,
            fleet,
            thresholds,
            clock,
            watcher,
            rx,
            reads: ServerReads::default(),
            probes: BTreeMap::new(),
        };
        d.settle().await;
        d.reads = d.io.reads().await;
        Ok(d)
    }

    async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while self
            .fleet
            .daemons
            .iter()
            .any(|d| d.conn == DaemonConn::Connecting)
        {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(u)) => self.apply(u),
                _ => break,
            }
        }
    }

    fn apply(&mut self, u: Update) {
        if let Some(d) = status::apply(&mut self.fleet, u, self.clock.now()) {
            self.watcher.resubscribe(d);
        }
    }

    /// Takes in every update that arrived, for up to `wait`.
    async fn drain(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(u)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.apply(u);
        }
        while let Ok(u) = self.rx.try_recv() {
            self.apply(u);
        }
    }

    /// Reads the admin API again (authorities, foreign bundles; key probes when the step
    /// wants them).
    async fn poll(&mut self, e: &Execution) {
        while let Ok(u) = self.rx.try_recv() {
            self.apply(u);
        }
        self.reads = self.io.reads().await;
        let wanted = e.probes_wanted();
        self.probes = if wanted.is_empty() {
            BTreeMap::new()
        } else {
            self.io.probes(&wanted).await
        };
    }

    /// Closes the streams.
    pub async fn stop(self) {
        self.watcher.stop().await;
    }

    /// Records where `e` stands; a failure is returned for the caller to weigh.
    async fn record(&self, id: &str, e: &Execution) -> Result<(), IoError> {
        let req = RecordRunbookRequest {
            session: self.io.session.clone(),
            ..e.journal_record(id)
        };
        self.io.record(req).await.map(|_| ())
    }

    /// Begins a pending journal entry if its server answers now (true when it just did); a
    /// refusal ends the drive.
    async fn try_begin(&self, j: &mut Journal) -> Result<bool, DriveError> {
        let Journal::Pending(req) = j else {
            return Ok(false);
        };
        match self.io.begin(req.clone()).await {
            Ok(b) => {
                tracing::info!(execution = %b.id, "journal begun");
                *j = Journal::Begun(b.id);
                Ok(true)
            }
            Err(err) if err.unreachable => Ok(false),
            Err(err) => Err(DriveError::Refused(err)),
        }
    }

    /// Asks the operator; the journal hears from the execution every [`HEARTBEAT`] meanwhile.
    async fn ask<C: Confirmer>(
        &self,
        j: &Journal,
        e: &Execution,
        confirmer: &mut C,
        c: &trustdeck_runbook::Confirmation,
        retry: Option<&Mismatch>,
    ) -> Answer {
        let answer = confirmer.confirm(c, retry);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                a = &mut answer => return a,
                _ = tokio::time::sleep(HEARTBEAT) => {
                    if let Journal::Begun(id) = j
                        && let Err(err) = self.record(id, e).await
                    {
                        tracing::warn!(error = %err, "journal heartbeat failed");
                    }
                }
            }
        }
    }

    /// Steps `e` (journaled as `j`) to its outcome; `sink` gets every event with the
    /// execution's id (empty until the journal has begun it).
    pub async fn run<C: Confirmer, S: FnMut(&StepEvent, DateTime<Utc>, &str)>(
        &mut self,
        j: &mut Journal,
        e: &mut Execution,
        confirmer: &mut C,
        sink: &mut S,
    ) -> Result<Outcome, DriveError> {
        let mut last = (usize::MAX, Phase::Failed);
        let mut retry: Option<Mismatch> = None;
        let mut polled = tokio::time::Instant::now();
        let mut recorded = tokio::time::Instant::now();
        loop {
            if self.try_begin(j).await? {
                // Where it stands now, at once (the steps done meanwhile were not recorded).
                last = (usize::MAX, Phase::Failed);
            }
            let now = self.clock.now();
            let next = {
                let o = Observation {
                    now,
                    fleet: &self.fleet,
                    reads: &self.reads,
                    probes: &self.probes,
                    thresholds: self.thresholds,
                };
                e.advance(&o)
            };
            let id = j.id().unwrap_or_default().to_string();
            for ev in e.take_events() {
                sink(&ev, now, &id);
            }
            let tag = StepTag {
                execution: id.clone(),
                runbook: e.runbook.name.clone(),
                step: e.current().map(|s| s.id.clone()).unwrap_or_default(),
            };
            let acting = matches!(next, Next::Act(_) | Next::Rollback(_));
            if let Journal::Pending(req) = &*j {
                // No admin call before the journal holds the execution (and its target).
                let server = self.io.journal_name().unwrap_or_default();
                let why = format!(
                    "the journal on {server} does not answer yet; {} is not begun",
                    req.runbook
                );
                match next {
                    Next::Act(_) => {
                        e.retry_later(self.clock.now(), why);
                        continue;
                    }
                    Next::Rollback(_) => {
                        e.rolled_back(Err(format!("{why}: the rollback was not made")));
                        continue;
                    }
                    _ => {}
                }
            }
            let heartbeat = recorded.elapsed() >= HEARTBEAT;
            if (e.step, e.phase) != last || acting || heartbeat || matches!(next, Next::Finished(_))
            {
                last = (e.step, e.phase);
                recorded = tokio::time::Instant::now();
                if let Journal::Begun(id) = &*j
                    && let Err(err) = self.record(id, e).await
                {
                    if matches!(
                        err.refusal,
                        Some(RunbookRefusal::NotHolder | RunbookRefusal::Finished)
                    ) {
                        return Err(DriveError::TakenOver(err));
                    }
                    if acting {
                        return Err(DriveError::Journal(err, tag.step));
                    }
                    tracing::warn!(error = %err, "journal record failed");
                }
            }
            match next {
                Next::Finished(o) => return Ok(o),
                Next::Observe => {
                    let wait = POLL.saturating_sub(polled.elapsed());
                    self.drain(wait).await;
                    self.poll(e).await;
                    polled = tokio::time::Instant::now();
                }
                Next::Confirm(c) => match self.ask(j, e, confirmer, &c, retry.as_ref()).await {
                    Answer::Given => e.confirm_given(),
                    Answer::Declined => e.decline(),
                    Answer::Typed(s) => retry = e.confirm(&s).err(),
                },
                Next::Act(call) => {
                    match self.io.perform(&call, &tag).await {
                        Err(x) if x.retry => e.retry_later(self.clock.now(), x.message),
                        r => e.acted(self.clock.now(), r.map_err(|x| x.message)),
                    }
                    self.poll(e).await;
                    polled = tokio::time::Instant::now();
                }
                Next::Rollback(call) => {
                    let r = self.io.perform(&call, &tag).await;
                    e.rolled_back(r.map(|_| ()).map_err(|x| x.message));
                }
            }
        }
    }
}
