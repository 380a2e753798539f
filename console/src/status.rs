//! The console's non-interactive twins: `trustdeck status` (one report, exit code from the
//! thresholds) and `trustdeck watch` (one JSON line per event and per health change).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use trustdeck_proto::admin::NodeKind;
use trustdeck_topology::ttl::{Thresholds, fmt_secs, fmt_time};
use trustdeck_topology::{DaemonConn, Fleet};

use crate::client::{ClientError, ClientTls, Update, Watcher};
use crate::fleetfile::Target;

/// Writes a line to stdout; false when stdout is gone (a closed pipe ends `watch` quietly).
pub fn out(line: &str) -> bool {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}").and_then(|()| o.flush()).is_ok()
}

/// A fleet model for these targets.
pub fn fleet_for(targets: &[Target]) -> Fleet {
    Fleet::new(targets.iter().map(|t| {
        (
            t.name.clone(),
            t.admin.clone(),
            t.role.clone(),
            t.segment.clone(),
        )
    }))
}

/// Applies one update to the fleet; returns a daemon whose stream must be reopened.
pub fn apply(fleet: &mut Fleet, u: Update, now: DateTime<Utc>) -> Option<usize> {
    match u {
        Update::Stream(d, m) => match fleet.apply(d, m, now) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(daemon = d, error = %e, "resubscribing");
                Some(d)
            }
        },
        Update::Conn(d, c) => {
            fleet.set_conn(d, c, now);
            None
        }
        Update::Detail(..) => None,
    }
}

fn settled(f: &Fleet) -> bool {
    f.daemons.iter().all(|d| d.conn != DaemonConn::Connecting)
}

/// Connects to every daemon and waits until each has sent its snapshot or failed (at most
/// `timeout`; daemons still silent then count as unreachable).
pub async fn collect(
    targets: &[Target],
    tls: Option<Arc<ClientTls>>,
    timeout: Duration,
) -> Result<Fleet, ClientError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = Watcher::start(targets, tls, tx)?;
    let mut fleet = fleet_for(targets);
    let deadline = tokio::time::Instant::now() + timeout;
    while !settled(&fleet) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(u)) => {
                if let Some(d) = apply(&mut fleet, u, Utc::now()) {
                    watcher.resubscribe(d);
                }
            }
            Ok(None) => break,
            Err(_) => {
                for d in 0..fleet.daemons.len() {
                    if fleet.daemons[d].conn == DaemonConn::Connecting {
                        fleet.set_conn(
                            d,
                            DaemonConn::Lost {
                                since: Utc::now(),
                                error: format!("no snapshot within {} s", timeout.as_secs()),
                            },
                            Utc::now(),
                        );
                    }
                }
                break;
            }
        }
    }
    watcher.stop().await;
    Ok(fleet)
}

/// The `status --output table` text.
pub fn table(fleet: &Fleet, now: DateTime<Utc>, th: &Thresholds) -> String {
    let tree = fleet.tree();
    let health = fleet.health(&tree, now, th);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FLEET  {} {}   at {}",
        health.level.symbol(),
        health.level.as_str().to_uppercase(),
        fmt_time(now.timestamp())
    );
    for r in &health.reasons {
        let _ = writeln!(out, "  - {r}");
    }
    let _ = writeln!(out, "\nDAEMONS");
    for d in &fleet.daemons {
        let conn = match &d.conn {
            DaemonConn::Live => "reachable".to_string(),
            DaemonConn::Connecting => "no answer".to_string(),
            DaemonConn::Lost { since, error } => format!(
                "UNREACHABLE since {} ({error})",
                fmt_time(since.timestamp())
            ),
        };
        let up = d
            .upstream
            .as_ref()
            .map(|u| {
                format!(
                    "  upstream {} since {}{}",
                    u.state,
                    fmt_time(u.since),
                    if u.last_error.is_empty() || u.state == "connected" {
                        String::new()
                    } else {
                        format!(" ({})", u.last_error)
                    }
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<20} {:<10} {:<8} {conn}{up}",
            d.name,
            d.role(),
            d.segment()
        );
    }
    let _ = writeln!(out, "\nAUTONOMOUS WINDOWS");
    for w in fleet.windows(&tree, now) {
        let stale = w
            .stale_secs
            .map(|s| format!("  [STALE: last heard {} ago]", fmt_secs(s.max(0))))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  segment {} ({}, server {}){stale}",
            w.segment, w.role, w.server
        );
        if w.role == "downstream" {
            let x = w
                .x509_until
                .map(|t| format!("{} (in {})", fmt_time(t), fmt_secs(t - now.timestamp())))
                .unwrap_or_else(|| "unknown (no intermediate seen)".into());
            let _ = writeln!(
                out,
                "    upstream lost now -> X.509 continues until {x}; JWT stops now"
            );
        }
        let f = w
            .workloads_fail_at
            .map(|t| {
                format!(
                    "workloads start failing at {} (in {})",
                    fmt_time(t),
                    fmt_secs(t - now.timestamp())
                )
            })
            .unwrap_or_else(|| "no workload SVIDs".into());
        let _ = writeln!(out, "    server lost now   -> {f} [{} SVIDs]", w.workloads);
    }
    let _ = writeln!(out, "\nTIERS");
    let rows = tree.rows(&Default::default(), "");
    for r in rows {
        let t = &tree.nodes[r.idx];
        let n = &t.node;
        if n.kind == NodeKind::WorkloadSvid as i32 {
            continue;
        }
        let lvl = fleet.node_level(&tree, r.idx, now, th);
        let left = if n.not_after > 0 {
            format!(
                "{:>9} left, expires {}",
                fmt_secs(n.not_after - now.timestamp()),
                fmt_time(n.not_after)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} {:indent$}{} {} [{}] {left}",
            lvl.symbol(),
            "",
            n.label,
            if n.spiffe_id.is_empty() {
                &n.subject
            } else {
                &n.spiffe_id
            },
            n.state,
            indent = r.depth as usize * 2
        );
    }
    let _ = writeln!(out, "\nEXPIRES NEXT");
    for i in fleet.expiring(&tree, 10) {
        let n = &tree.nodes[i].node;
        let _ = writeln!(
            out,
            "  {:>9}  {}  {} {}",
            fmt_secs(n.not_after - now.timestamp()),
            fmt_time(n.not_after),
            n.label,
            if n.spiffe_id.is_empty() {
                &n.id
            } else {
                &n.spiffe_id
            }
        );
    }
    out
}

/// One JSON line per fleet event from number `from` on; returns the next number.
pub fn event_lines(fleet: &Fleet, from: u64) -> (Vec<String>, u64) {
    let first = fleet.events_total - fleet.events.len() as u64;
    let mut out = Vec::new();
    for (i, e) in fleet.events.iter().enumerate() {
        if first + i as u64 >= from {
            out.push(
                serde_json::json!({
                    "type": "event",
                    "at": DateTime::from_timestamp_millis(e.event.at_ms).map(|t| t.to_rfc3339()),
                    "daemon": e.daemon,
                    "severity": e.event.severity,
                    "kind": e.event.kind,
                    "message": e.event.message,
                    "node": e.event.node_id,
                })
                .to_string(),
            );
        }
    }
    (out, fleet.events_total)
}

/// `trustdeck watch`: prints events and health changes as JSON lines until interrupted.
pub async fn watch(
    targets: &[Target],
    tls: Option<Arc<ClientTls>>,
    th: Thresholds,
) -> Result<(), ClientError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = Watcher::start(targets, tls, tx)?;
    let mut fleet = fleet_for(targets);
    let mut next = 0;
    let mut last_health: Option<(String, i32)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            u = rx.recv() => {
                let Some(u) = u else { break };
                if let Some(d) = apply(&mut fleet, u, Utc::now()) {
                    watcher.resubscribe(d);
                }
            }
            _ = tick.tick() => {}
            _ = trustdeck_process::terminated() => break,
        }
        let (lines, n) = event_lines(&fleet, next);
        next = n;
        for l in lines {
            if !out(&l) {
                watcher.stop().await;
                return Ok(());
            }
        }
        if settled(&fleet) {
            let now = Utc::now();
            let tree = fleet.tree();
            let h = fleet.health(&tree, now, &th);
            let key = (h.level.as_str().to_string(), h.exit_code());
            if last_health.as_ref() != Some(&key) {
                let line = serde_json::json!({
                    "type": "health",
                    "at": now.to_rfc3339(),
                    "level": h.level,
                    "exit_code": h.exit_code(),
                    "unreachable": h.unreachable,
                    "reasons": h.reasons,
                })
                .to_string();
                if !out(&line) {
                    break;
                }
                last_health = Some(key);
            }
        }
    }
    watcher.stop().await;
    Ok(())
}
