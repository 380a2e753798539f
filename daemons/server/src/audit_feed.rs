//! Every audit record reaches the `Watch` stream: one follower reads the chained records after
//! the last one it published and publishes each as an event naming its seq (so a console user
//! finds it in `audit list`). It is woken by this process's appends (any writer through
//! [`Datastore`](trustdeck_datastore::Datastore) that calls `note_audit_appended` after its
//! commit) and otherwise polls every [`POLL`], so records written by another process on the
//! same datastore (a CLI run with `-c`, a peer server) arrive too. Nothing publishes an audit
//! event anywhere else: a record is told once, after it committed, and never one that did not.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use trustdeck_datastore::ListedAudit;
use trustdeck_proto::admin::EventKind;
use trustdeck_topology::hub::Severity;

use crate::admin_api::audit::{AGENT_ACTIONS, Outcome};
use crate::ctx::ServerCtx;
use crate::runbook_journal;

/// How often the follower reads without being woken.
pub const POLL: Duration = Duration::from_secs(1);
/// Records published per read; a longer backlog is read in several.
const BATCH: i64 = 100;
/// Longest detail an event repeats (the record keeps all of it).
const MAX_DETAIL: usize = 200;

/// What the event of one audit record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub seq: u64,
    /// `Runbook` for the runbook journal's actions, else `OperatorAction`.
    pub kind: EventKind,
    pub severity: Severity,
    pub text: String,
    /// The node it is attached to (an agent the action was about), or empty.
    pub node: String,
}

/// The event of one audit record, or `None` for a record outside the chain (no seq).
pub fn event_of(l: &ListedAudit) -> Option<AuditEvent> {
    let seq = u64::try_from(l.seq?).ok()?;
    let r = &l.record;
    let kind = if runbook_journal::ACTIONS.contains(&r.action.as_str()) {
        EventKind::Runbook
    } else {
        EventKind::OperatorAction
    };
    let severity = if Outcome::is_ok(&r.outcome) {
        Severity::Info
    } else {
        Severity::Warning
    };
    let mut text = format!("audit #{seq} {}: {}", r.actor, r.action);
    if !r.target.is_empty() {
        text.push(' ');
        text.push_str(&r.target);
    }
    text.push_str(&format!(" ({})", r.outcome));
    if !r.detail.is_empty() {
        text.push_str(" — ");
        text.extend(r.detail.chars().take(MAX_DETAIL));
        if r.detail.chars().count() > MAX_DETAIL {
            text.push('…');
        }
    }
    let node = if AGENT_ACTIONS.contains(&r.action.as_str()) {
        crate::observe::agent_node_id(&r.target)
    } else {
        String::new()
    };
    Some(AuditEvent {
        seq,
        kind,
        severity,
        text,
        node,
    })
}

/// Publishes every record after `after_seq` as it is appended, until shutdown.
pub async fn run(ctx: Arc<ServerCtx>, mut after_seq: i64, mut shutdown: watch::Receiver<bool>) {
    let mut appended = ctx.ds.audit_appended();
    loop {
        match ctx.ds.audit_after(after_seq, BATCH).await {
            Ok(records) => {
                let full = records.len() as i64 == BATCH;
                for l in &records {
                    if let Some(seq) = l.seq {
                        after_seq = after_seq.max(seq);
                    }
                    if let Some(e) = event_of(l) {
                        let now = ctx.clock.now();
                        ctx.hub
                            .audit_event(e.seq, e.kind, e.severity, e.text, &e.node, now);
                    }
                }
                if full {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read new audit records; will retry"),
        }
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use trustdeck_datastore::AuditRecord;

    use super::*;

    fn listed(seq: Option<i64>, action: &str, target: &str, outcome: &str) -> ListedAudit {
        ListedAudit {
            record: AuditRecord {
                id: "r".into(),
                at: 1,
                actor: "uid:1000".into(),
                action: action.into(),
                target: target.into(),
                detail: "x".repeat(300),
                outcome: outcome.into(),
            },
            seq,
            prev_hash: None,
            hash: None,
        }
    }

    #[test]
    fn an_event_names_its_record() {
        let AuditEvent {
            seq,
            kind,
            severity: sev,
            text,
            node,
        } = event_of(&listed(Some(7), "entry.create", "e1", "ok")).expect("chained");
        assert_eq!(seq, 7);
        assert_eq!(kind, EventKind::OperatorAction);
        assert_eq!(sev, Severity::Info);
        assert!(
            text.starts_with("audit #7 uid:1000: entry.create e1 (ok) — xxx"),
            "{text}"
        );
        assert!(text.chars().count() < 300, "the detail is bounded: {text}");
        assert_eq!(node, "");
    }

    #[test]
    fn refusals_and_failures_warn_and_agent_actions_attach_to_the_agent() {
        let a = "spiffe://example.org/trustdeck/agent/join_token/t";
        let e = event_of(&listed(Some(1), "agent.evict", a, "failed: not found")).expect("chained");
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.node, crate::observe::agent_node_id(a));
        let e = event_of(&listed(Some(2), "CreateEntry", "", "refused")).expect("x");
        assert_eq!(e.severity, Severity::Warning);
    }

    #[test]
    fn runbook_records_are_runbook_events() {
        for action in runbook_journal::ACTIONS {
            let e = event_of(&listed(Some(3), action, "root", "ok")).expect("chained");
            assert_eq!(e.kind, EventKind::Runbook, "{action}");
            assert!(
                e.text.contains(action) && e.text.contains("root"),
                "{}",
                e.text
            );
        }
        // Decided by the action, not by what the text says.
        let e = event_of(&listed(Some(4), "runbook.other", "root", "ok")).expect("chained");
        assert_eq!(e.kind, EventKind::OperatorAction);
    }

    #[test]
    fn a_record_outside_the_chain_is_not_told() {
        assert!(event_of(&listed(None, "entry.create", "e", "ok")).is_none());
    }
}
