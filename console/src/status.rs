//! The console's non-interactive twins: `trustdeck status` (one report, exit code from the
//! thresholds) and `trustdeck watch` (one JSON line per event and per health change).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::{ConnectivityState, NodeKind};
use trustdeck_topology::fleet::FleetEvent;
use trustdeck_topology::ttl::{Level, Thresholds, fmt_secs, fmt_time};
use trustdeck_topology::{DaemonConn, Fleet, Health};

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
    Fleet::new(
        targets
            .iter()
            .map(|t| (t.name.clone(), t.admin.clone(), t.role, t.segment.clone())),
    )
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
    clock: &dyn Clock,
) -> Result<Fleet, ClientError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = Watcher::start(targets, tls, tx)?;
    let mut fleet = fleet_for(targets);
    let deadline = tokio::time::Instant::now() + timeout;
    while !settled(&fleet) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(u)) => {
                if let Some(d) = apply(&mut fleet, u, clock.now()) {
                    watcher.resubscribe(d);
                }
            }
            Ok(None) => break,
            Err(_) => {
                let now = clock.now();
                for d in 0..fleet.daemons.len() {
                    if fleet.daemons[d].conn == DaemonConn::Connecting {
                        fleet.set_conn(
                            d,
                            DaemonConn::Lost {
                                since: now,
                                error: format!("no snapshot within {} s", timeout.as_secs()),
                            },
                            now,
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
                let state = u.state_wire();
                format!(
                    "  upstream {state} since {}{}",
                    fmt_time(u.since),
                    if u.last_error.is_empty() || state == ConnectivityState::Connected {
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
        if w.is_downstream() {
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
        if n.kind_wire() == NodeKind::WorkloadSvid {
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
            n.state_wire(),
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

/// A `trustdeck watch` line about an event. Fields in alphabetical order: the line has always
/// listed its keys sorted, and scripts read it.
#[derive(Serialize)]
pub struct EventLine<'a> {
    /// RFC 3339, daemon clock.
    at: Option<String>,
    daemon: &'a str,
    kind: &'static str,
    message: &'a str,
    /// The node the event is about ("" when none).
    node: &'a str,
    severity: &'static str,
    /// Always `event`.
    r#type: &'static str,
}

/// A `trustdeck watch` line about a change of the fleet's health (fields sorted, as above).
#[derive(Serialize)]
struct HealthLine<'a> {
    /// RFC 3339, console clock.
    at: String,
    exit_code: i32,
    level: Level,
    reasons: &'a [String],
    /// Always `health`.
    r#type: &'static str,
    unreachable: &'a [String],
}

/// One JSON line per fleet event from number `from` on; returns the next number.
pub fn event_lines(fleet: &Fleet, from: u64) -> (Vec<String>, u64) {
    let first = fleet.events_total - fleet.events.len() as u64;
    let mut out = Vec::new();
    for (i, e) in fleet.events.iter().enumerate() {
        if first + i as u64 >= from {
            out.push(json_line(&event_line(e)));
        }
    }
    (out, fleet.events_total)
}

/// The `watch` line of one event (also what `:dump` writes per event).
pub fn event_line(e: &FleetEvent) -> EventLine<'_> {
    EventLine {
        at: DateTime::from_timestamp_millis(e.event.at_ms).map(|t| t.to_rfc3339()),
        daemon: &e.daemon,
        kind: e.event.kind_wire().as_str(),
        message: &e.event.message,
        node: &e.event.node_id,
        severity: e.event.severity_wire().as_str(),
        r#type: "event",
    }
}

/// The JSON line `watch` prints when the fleet's health becomes `h`.
pub fn health_line(h: &Health, now: DateTime<Utc>) -> String {
    json_line(&HealthLine {
        at: now.to_rfc3339(),
        exit_code: h.exit_code(),
        level: h.level,
        reasons: &h.reasons,
        r#type: "health",
        unreachable: &h.unreachable,
    })
}

fn json_line(v: &impl Serialize) -> String {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_string(v).unwrap_or_default()
}

/// `trustdeck watch`: prints events and health changes as JSON lines until interrupted.
pub async fn watch(
    targets: &[Target],
    tls: Option<Arc<ClientTls>>,
    th: Thresholds,
    clock: &dyn Clock,
) -> Result<(), ClientError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = Watcher::start(targets, tls, tx)?;
    let mut fleet = fleet_for(targets);
    let mut next = 0;
    let mut last_health: Option<(Level, i32)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            u = rx.recv() => {
                let Some(u) = u else { break };
                if let Some(d) = apply(&mut fleet, u, clock.now()) {
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
            let now = clock.now();
            let tree = fleet.tree();
            let h = fleet.health(&tree, now, &th);
            let key = (h.level, h.exit_code());
            if last_health != Some(key) {
                if !out(&health_line(&h, now)) {
                    break;
                }
                last_health = Some(key);
            }
        }
    }
    watcher.stop().await;
    Ok(())
}
