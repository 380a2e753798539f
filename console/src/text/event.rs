//! The event detail popup's document: the whole message (wrapped, never cut), when (on the
//! clock of the daemon or of the console, whichever recorded it) and how long ago, severity, kind, the daemon, and the node it is about.

use chrono::{DateTime, Utc};
use trustdeck_topology::fleet::{Level, Recorder};
use trustdeck_topology::ttl::{fmt_secs, fmt_time};
use trustdeck_topology::{Severity, Wire};

use crate::app::App;

use super::format::{kind_name, stale_marker};
use super::glyphs::Glyphs;
use super::{Role, TextLine};

/// A severity as a symbol and a word, and its level (none for information).
pub fn severity_word(s: Wire<Severity>, g: &Glyphs) -> (String, Option<Level>) {
    let (sym, word, lvl) = match s.known() {
        Some(Severity::Error) => (g.critical, "error", Some(Level::Critical)),
        Some(Severity::Warning) => (g.warning, "warning", Some(Level::Warning)),
        Some(Severity::Info | Severity::Unspecified) => (g.info, "info", None),
        None => (g.info, "unknown", None),
    };
    (format!("{sym} {word}"), lvl)
}

fn field(name: &str, value: String, role: Role) -> TextLine {
    TextLine::pair(format!(" {name:<10} "), Role::Dim, value, role)
}

/// The document of the open event detail (empty when none is open).
pub fn lines(app: &App, now: DateTime<Utc>) -> Vec<TextLine> {
    let Some(d) = &app.event_detail else {
        return Vec::new();
    };
    let fe = &d.event;
    let e = &fe.event;
    let daemon = app.fleet.daemons.iter().position(|x| x.name == fe.daemon);
    let secs = e.at_ms.div_euclid(1000);
    // An event is on the clock of whoever recorded it; its age on that clock.
    let (clock, then) = match (fe.recorder, daemon) {
        (Recorder::Daemon, Some(i)) => ("daemon", app.fleet.daemon_now(i, now)),
        (Recorder::Daemon, None) => ("daemon", now),
        (Recorder::Console, _) => ("console", now),
    };
    let age = (then.timestamp() - secs).max(0);
    let mut out = vec![field(
        "time",
        format!("{} ({clock} clock), {} ago", fmt_time(secs), fmt_secs(age)),
        Role::Plain,
    )];
    let (sev, lvl) = severity_word(e.severity_wire(), app.charset.glyphs());
    out.push(field("severity", sev, lvl.map_or(Role::Dim, Role::Level)));
    out.push(field("kind", e.kind_wire().as_str().to_string(), Role::Tag));
    if e.audit_seq != 0 {
        out.push(field(
            "audit record",
            format!("#{} (trustdeck-server audit list shows it)", e.audit_seq),
            Role::Plain,
        ));
    }
    let seg = daemon.map(|i| app.fleet.daemons[i].segment().to_string());
    let mut who = match seg.filter(|s| !s.is_empty()) {
        Some(s) => format!("{} (segment {s})", fe.daemon),
        None => fe.daemon.clone(),
    };
    let stale = daemon.and_then(|i| stale_marker(app, i, now));
    if let Some(s) = &stale {
        who = format!("{who}, last-known ({s})");
    }
    out.push(field(
        "daemon",
        who,
        if stale.is_some() {
            Role::Stale
        } else {
            Role::Title
        },
    ));
    if let Some(c) = daemon.and_then(|i| app.fleet.daemons[i].upstream.as_ref())
        && !c.peer.is_empty()
        && app.event_message(fe) != e.message.as_str()
    {
        let name = app.fleet.peer_name(c).unwrap_or("?");
        out.push(field("peer", format!("{name} at {}", c.peer), Role::Plain));
    }
    node_lines(app, fe, &mut out);
    out.push(TextLine::blank());
    out.push(TextLine::one(" message", Role::Dim));
    out.push(TextLine::one(format!("   {}", e.message), Role::Plain));
    out
}

/// The node the event is about: its name and kind, or that it has none.
fn node_lines(app: &App, fe: &trustdeck_topology::fleet::FleetEvent, out: &mut Vec<TextLine>) {
    let id = &fe.event.node_id;
    match app.event_node(fe) {
        Some(i) => {
            let n = &app.tree().nodes[i].node;
            out.push(field(
                "node",
                format!(
                    "{} ({}), t shows it in the tree",
                    app.fleet.node_name(n),
                    kind_name(n.kind)
                ),
                Role::Title,
            ));
            out.push(field("node id", id.clone(), Role::Plain));
        }
        None if !id.is_empty() => {
            out.push(field(
                "node id",
                format!("{id} (not in the tree now)"),
                Role::Plain,
            ));
        }
        None => out.push(field(
            "node",
            "none: this event is about no node".to_string(),
            Role::Dim,
        )),
    }
}
