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
use trustdeck_topology::fleet::{FleetEvent, FleetHealth, Reach, Tree};
use trustdeck_topology::ttl::{Level, Thresholds, fmt_secs, fmt_time};
use trustdeck_topology::{DaemonConn, DaemonState, Fleet, Health, SegmentWindow};

use crate::client::{ClientError, ClientTls, Update, Watcher};
use crate::fleetfile::Target;
use crate::text::glyphs::{Glyphs, UNICODE};
use crate::text::window::{self, Words};

/// Writes a line to stdout; false when stdout is gone (a closed pipe ends `watch` quietly).
pub fn out(line: &str) -> bool {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}").and_then(|()| o.flush()).is_ok()
}

/// A fleet model for these targets, with the SPIFFE IDs their entries pin.
pub fn fleet_for(targets: &[Target]) -> Fleet {
    let mut f = Fleet::new(
        targets
            .iter()
            .map(|t| (t.name.clone(), t.admin.clone(), t.role, t.segment.clone())),
    );
    for (d, t) in targets.iter().enumerate() {
        if let Some(id) = &t.spiffe_id {
            f.pin_spiffe_id(d, id.as_str());
        }
        if let Some(td) = &t.trust_domain {
            f.set_trust_domain(d, td.as_str());
        }
    }
    f
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

/// The console's link to daemon `ds`, in words.
fn conn_words(ds: &DaemonState, now: DateTime<Utc>) -> String {
    match &ds.conn {
        DaemonConn::Live => "reachable".to_string(),
        DaemonConn::Connecting => "no answer".to_string(),
        DaemonConn::Lost { since, error } => format!(
            "UNREACHABLE since {} ({} ago; {error})",
            fmt_time(since.timestamp()),
            fmt_secs((now - *since).num_seconds().max(0))
        ),
        DaemonConn::NeverReached {
            first_failure,
            error,
        } => format!(
            "NEVER REACHED (first attempt failed at {}: {error})",
            fmt_time(first_failure.timestamp())
        ),
    }
}

/// The `status --output table` text, with Unicode symbols.
pub fn table(fleet: &Fleet, now: DateTime<Utc>, th: &Thresholds) -> String {
    table_with(fleet, now, th, &UNICODE)
}

/// The `status --output table` text, with the symbols of `g` (ASCII on a jump host).
pub fn table_with(fleet: &Fleet, now: DateTime<Utc>, th: &Thresholds, g: &Glyphs) -> String {
    let tree = fleet.tree();
    let health = fleet.health(&tree, now, th);
    let state = health.state();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FLEET  {}   at {}",
        g.tagged(g.level(state.level()), &state.as_str().to_uppercase()),
        fmt_time(now.timestamp())
    );
    for r in &health.reasons {
        let _ = writeln!(out, "  - {r}");
    }
    let _ = writeln!(out, "\nDAEMONS");
    for d in &fleet.daemons {
        let up = d
            .upstream
            .as_ref()
            .map(|u| {
                let state = u.state_wire();
                let last_known = if d.is_live() { "" } else { "last known: " };
                format!(
                    "  upstream {last_known}{state} since {}{}",
                    fmt_time(u.since),
                    if u.last_error.is_empty() || state == ConnectivityState::Connected {
                        String::new()
                    } else {
                        format!(" ({})", u.last_error)
                    }
                )
            })
            .unwrap_or_default();
        let td = d
            .trust_domain
            .as_ref()
            .map(|t| format!("  [{t}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<20} {:<10} {:<8} {}{up}{td}",
            d.name,
            d.role(),
            d.segment(),
            conn_words(d, now)
        );
    }
    federation_block(&mut out, fleet, now, g);
    let _ = writeln!(out, "\nAUTONOMOUS WINDOWS");
    for w in fleet.windows(&tree, now) {
        windows_block(&mut out, &w, now, g);
    }
    let _ = writeln!(out, "\nTIERS");
    tiers_block(&mut out, fleet, &tree, now, (th, g));
    let _ = writeln!(out, "\nEXPIRES NEXT");
    for i in fleet.expiring(&tree, 10) {
        let n = &tree.nodes[i].node;
        let _ = writeln!(
            out,
            "  {:>9}  {}  {:<8} {} {}",
            fmt_secs(n.not_after - now.timestamp()),
            fmt_time(n.not_after),
            tree.nodes[i].segment,
            fleet.node_name(n),
            if n.spiffe_id.is_empty() {
                &n.id
            } else {
                &n.spiffe_id
            }
        );
    }
    out
}

/// FEDERATION: each foreign trust domain every server holds, with its level and warnings,
/// and the receipts of isolated peers; nothing when no server holds any.
fn federation_block(out: &mut String, fleet: &Fleet, now: DateTime<Utc>, g: &Glyphs) {
    use crate::text::federation as words;
    let foreign = fleet.foreign();
    let receipts = fleet.receipts();
    if foreign.is_empty() && receipts.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nFEDERATION");
    for r in &foreign {
        let a = fleet.assess_foreign(r, now);
        let td = r.td;
        let _ = writeln!(
            out,
            "  {:<20} {:<24} {}  seq {}  last success {}  failures {}  roots expire {}  {}",
            td.trust_domain,
            words::source(td),
            fleet.daemons[r.daemon].name,
            words::sequence(td),
            words::age(&a),
            words::failures(td),
            words::expiry(&a),
            g.tagged(
                g.level(a.level),
                if a.stale { "stale" } else { a.level.as_str() }
            )
        );
        if !td.endpoint_url.is_empty() {
            let _ = writeln!(out, "    endpoint {}", td.endpoint_url);
        }
        for reason in &a.reasons {
            let _ = writeln!(out, "    - {reason}");
        }
    }
    for r in &receipts {
        let _ = writeln!(
            out,
            "  receipt  {}: {}",
            fleet.daemons[r.daemon].name,
            words::receipt(r.receipt, r.own_sequence)
        );
    }
}

/// One segment's window: a title (marked when its server is not live), the upstream link,
/// and what each loss means or has meant.
fn windows_block(out: &mut String, w: &SegmentWindow, now: DateTime<Utc>, g: &Glyphs) {
    let marker = match &w.reach {
        Reach::Lost { since, .. } => format!(
            "  [LAST KNOWN as of {}, unreachable for {}]",
            fmt_time(*since),
            fmt_secs((now.timestamp() - since).max(0))
        ),
        Reach::NeverReached { .. } if w.is_downstream() => {
            "  [NEVER REACHED: its upstream's and agents' records]".to_string()
        }
        Reach::NeverReached { .. } => "  [NEVER REACHED: its agents' records]".to_string(),
        Reach::Live | Reach::Connecting => String::new(),
    };
    let _ = writeln!(
        out,
        "  segment {} ({}, server {}){marker}",
        w.segment, w.role, w.server
    );
    let (up, _) = window::upstream_state(w, now, Words::Full, g);
    let _ = writeln!(out, "    upstream {up}");
    if w.is_downstream() {
        let _ = writeln!(
            out,
            "    {}",
            window::plain(&window::upstream_sentence(w, now, Words::Full, g))
        );
    }
    let _ = writeln!(
        out,
        "    {} [{} SVIDs]",
        window::plain(&window::server_sentence(w, now, Words::Full, g)),
        w.workloads
    );
}

/// Servers, authorities and agents (not workload SVIDs), indented, with level and state.
fn tiers_block(
    out: &mut String,
    fleet: &Fleet,
    tree: &Tree,
    now: DateTime<Utc>,
    (th, g): (&Thresholds, &Glyphs),
) {
    for r in tree.rows(&Default::default(), "") {
        let t = &tree.nodes[r.idx];
        let n = &t.node;
        if n.kind_wire() == NodeKind::WorkloadSvid {
            continue;
        }
        let lvl = fleet.node_level(tree, r.idx, now, th);
        let left = if n.not_after > 0 {
            format!(
                "{:>9} left, expires {}",
                fmt_secs(n.not_after - now.timestamp()),
                fmt_time(n.not_after)
            )
        } else {
            String::new()
        };
        let state = match fleet.node_alert(tree, r.idx, now) {
            Some(a) => a.as_str(),
            None => n.state_wire().as_str(),
        };
        let last_known = match fleet.daemons[t.source].lost_since() {
            Some(s) => format!(" (last known as of {})", fmt_time(s.timestamp())),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} {:indent$}{} {} [{state}]{last_known} {left}",
            g.level(lvl),
            "",
            fleet.node_name(n),
            if n.spiffe_id.is_empty() {
                &n.subject
            } else {
                &n.spiffe_id
            },
            indent = r.depth as usize * 2
        );
    }
}

/// A `trustdeck watch` line about an event. Fields in alphabetical order: the line has always
/// listed its keys sorted, and scripts read it.
#[derive(Serialize)]
pub struct EventLine<'a> {
    /// RFC 3339, on the clock of `clock`.
    at: Option<String>,
    /// Whose clock `at` is on: `daemon`, or `console` for the events the console records
    /// itself.
    clock: &'static str,
    daemon: &'a str,
    /// A stable dedupe key: the same event has the same key across `watch` restarts.
    key: &'a str,
    kind: &'static str,
    message: &'a str,
    /// The node the event is about ("" when none).
    node: &'a str,
    /// History the daemon sent when first reached by this `watch` (it happened before), as
    /// opposed to what happened while watched.
    replayed: bool,
    severity: &'static str,
    /// Always `event`.
    r#type: &'static str,
}

/// A `trustdeck watch` line about a change of the fleet's health (fields sorted, as above).
#[derive(Serialize)]
struct HealthLine<'a> {
    /// RFC 3339, console clock.
    at: String,
    /// From `health`: 0 ok, 1 warning, 2 critical, 3 unreachable.
    exit_code: i32,
    /// The fleet's state, in the words of `status`: `ok`, `warning`, `critical`,
    /// `unreachable`.
    health: FleetHealth,
    /// Deprecated alias of `health` (same value), kept for one release.
    level: FleetHealth,
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
        clock: e.recorder.as_str(),
        daemon: &e.daemon,
        key: &e.key,
        kind: e.event.kind_wire().as_str(),
        message: &e.event.message,
        node: &e.event.node_id,
        replayed: e.replayed,
        severity: e.event.severity_wire().as_str(),
        r#type: "event",
    }
}

/// The JSON line `watch` prints when the fleet's health becomes `h`.
pub fn health_line(h: &Health, now: DateTime<Utc>) -> String {
    json_line(&HealthLine {
        at: now.to_rfc3339(),
        exit_code: h.exit_code(),
        health: h.state(),
        level: h.state(),
        reasons: &h.reasons,
        r#type: "health",
        unreachable: &h.unreachable,
    })
}

/// When `watch` prints a health line: when the state changes, and also, under the same state,
/// when the worst level under it or the set of unreachable daemons does (a second daemon lost,
/// or an unreachable fleet turning critical, is news to an alerting pipeline).
#[derive(Debug, Default)]
pub struct HealthLines {
    last: Option<(FleetHealth, Level, Vec<String>)>,
}

impl HealthLines {
    /// The line to print for `h` at `now`, when it says something new.
    pub fn next(&mut self, h: &Health, now: DateTime<Utc>) -> Option<String> {
        let key = (h.state(), h.level, h.unreachable.clone());
        if self.last.as_ref() == Some(&key) {
            return None;
        }
        self.last = Some(key);
        Some(health_line(h, now))
    }
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
    let mut health_lines = HealthLines::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let ticked = tokio::select! {
            u = rx.recv() => {
                let Some(u) = u else { break };
                if let Some(d) = apply(&mut fleet, u, clock.now()) {
                    watcher.resubscribe(d);
                }
                false
            }
            _ = tick.tick() => true,
            _ = trustdeck_process::terminated() => break,
        };
        let health = settled(&fleet).then(|| {
            let now = clock.now();
            let tree = fleet.tree();
            if ticked {
                fleet.derive_events(&tree, now);
            }
            (fleet.health(&tree, now, &th), now)
        });
        let (lines, n) = event_lines(&fleet, next);
        next = n;
        for l in lines {
            if !out(&l) {
                watcher.stop().await;
                return Ok(());
            }
        }
        if let Some(line) = health.and_then(|(h, now)| health_lines.next(&h, now))
            && !out(&line)
        {
            break;
        }
    }
    watcher.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(level: Level, unreachable: &[&str]) -> Health {
        Health {
            level,
            unreachable: unreachable.iter().map(|s| s.to_string()).collect(),
            reasons: Vec::new(),
        }
    }

    #[test]
    fn watch_says_when_more_goes_wrong_under_the_same_state() {
        let now = DateTime::from_timestamp(1000, 0).unwrap_or_default();
        let mut lines = HealthLines::default();
        let said = |l: Option<String>| {
            l.map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
                (v["health"].to_string(), v["unreachable"].to_string())
            })
        };
        assert!(lines.next(&health(Level::Warning, &["dmz"]), now).is_some());
        assert_eq!(
            lines.next(&health(Level::Warning, &["dmz"]), now),
            None,
            "nothing new"
        );
        // The upstream is lost too: still unreachable, but news.
        assert_eq!(
            said(lines.next(&health(Level::Warning, &["dmz", "upstream"]), now)),
            Some((r#""unreachable""#.into(), r#"["dmz","upstream"]"#.into()))
        );
        // SVIDs expire meanwhile: still unreachable, but news.
        assert!(
            lines
                .next(&health(Level::Critical, &["dmz", "upstream"]), now)
                .is_some()
        );
        assert!(lines.next(&health(Level::Ok, &[]), now).is_some());
        assert_eq!(lines.next(&health(Level::Ok, &[]), now), None);
    }
}
