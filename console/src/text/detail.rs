//! The detail popup's document: every field of the node as the tree has it, its lifetime on
//! its daemon's clock, then what the daemon answered to `GetNode` (chain and certificate
//! fields).

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::Node;
use trustdeck_topology::fleet::{Level, counts_for_health};
use trustdeck_topology::ttl::{fmt_secs, fmt_time, remaining_fraction};

use crate::app::{App, DetailState};

use super::format::{bar, kind_name, kind_tag, level_word, stale_marker};
use super::glyphs::Glyphs;
use super::{Role, TextLine};

/// The detail document of the open popup (empty when none is open).
pub fn lines(app: &App, now: DateTime<Utc>) -> Vec<TextLine> {
    let Some(d) = &app.detail else {
        return Vec::new();
    };
    let mut out = Fields::default();
    node_fields(app, d, now, &mut out);
    let mut out = out.0;
    out.push(TextLine::blank());
    fetched(app, d, &mut out);
    out
}

/// Field lines; empty values are left out.
#[derive(Default)]
struct Fields(Vec<TextLine>);

impl Fields {
    fn add(&mut self, name: &str, value: String, role: Role) {
        if !value.is_empty() {
            self.0.push(field(name, value, role));
        }
    }
}

fn field(name: &str, value: String, role: Role) -> TextLine {
    TextLine::pair(format!(" {name:<13}"), Role::Dim, value, role)
}

fn node_fields(app: &App, d: &DetailState, now: DateTime<Utc>, out: &mut Fields) {
    let n = &d.node;
    let tree = app.tree();
    let idx = tree.by_id.get(&n.id).copied();
    let tag = idx.map(|i| kind_tag(tree, i)).unwrap_or("?");
    out.add(
        "kind",
        format!("{} ({tag})", kind_name(n.kind)),
        Role::Plain,
    );
    out.add("label", n.label.clone(), Role::Title);
    out.add("id", n.id.clone(), Role::Plain);
    out.add("SPIFFE ID", n.spiffe_id.clone(), Role::Plain);
    out.add("subject", n.subject.clone(), Role::Plain);
    out.add("state", n.state_wire().to_string(), Role::Plain);
    out.add("segment", n.segment.clone(), Role::Plain);
    out.add("parent", n.parent.clone(), Role::Plain);
    if let Some(ds) = app.fleet.daemons.get(d.daemon) {
        let (txt, role) = match stale_marker(app, d.daemon, now) {
            Some(s) => (format!("{} ({s})", ds.name), Role::Stale),
            None => (format!("{} (live)", ds.name), Role::Plain),
        };
        out.add("reported by", txt, role);
    }
    if n.not_after > 0 {
        let lvl = idx
            .map(|i| app.fleet.node_level(tree, i, now, &app.thresholds))
            .unwrap_or(Level::Ok);
        lifetime(
            n,
            app.fleet.daemon_now(d.daemon, now),
            lvl,
            app.charset.glyphs(),
            out,
        );
    }
    if let Some(k) = &n.key_storage {
        let v = if k.detail.is_empty() {
            k.backend_wire().to_string()
        } else {
            format!("{} ({})", k.backend_wire(), k.detail)
        };
        out.add("key storage", v, Role::Plain);
    }
    out.add("serial", n.serial.clone(), Role::Plain);
    out.add("issuer key id", n.issuer_key_id.clone(), Role::Plain);
    out.add("entry id", n.entry_id.clone(), Role::Plain);
    out.add("selectors", n.selectors.join(", "), Role::Plain);
    if let Some(i) = idx {
        let c = tree.nodes[i].children.len();
        if c > 0 {
            out.add("children", c.to_string(), Role::Plain);
        }
    }
}

/// `not before`, `not after` and `lifetime`, on the reporting daemon's clock `dnow`.
fn lifetime(n: &Node, dnow: DateTime<Utc>, lvl: Level, g: &Glyphs, out: &mut Fields) {
    let left = n.not_after - dnow.timestamp();
    out.add("not before", fmt_time(n.not_before), Role::Plain);
    let when = if left <= 0 {
        format!(
            "{}  (expired {} ago)",
            fmt_time(n.not_after),
            fmt_secs(-left)
        )
    } else {
        format!("{}  (in {})", fmt_time(n.not_after), fmt_secs(left))
    };
    out.add("not after", when, Role::Countdown(lvl));
    let frac = remaining_fraction(n.not_before, n.not_after, dnow);
    let word = if counts_for_health(n) {
        level_word(lvl, left, g)
    } else {
        format!("{} not counted", g.not_counted)
    };
    out.add(
        "lifetime",
        format!(
            "{}, {:.0}% left  {}  {word}",
            fmt_secs(n.not_after - n.not_before),
            frac * 100.0,
            bar(frac, 10, g),
        ),
        Role::Level(lvl),
    );
}

/// The daemon's `GetNode` answer: loading, failed, or the chain and certificate fields.
fn fetched(app: &App, d: &DetailState, out: &mut Vec<TextLine>) {
    let from = app
        .fleet
        .daemons
        .get(d.daemon)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    let g = app.charset.glyphs();
    match &d.fetched {
        None => out.push(TextLine::one(
            format!(" fetching the certificate detail from {from}{}", g.ellipsis),
            Role::Dim,
        )),
        Some(Err(e)) => out.push(TextLine::one(
            format!(
                " {} could not fetch the detail from {from}: {e}",
                g.critical
            ),
            Role::Level(Level::Critical),
        )),
        Some(Ok(nd)) => {
            out.push(TextLine::one(format!(" From {from}:"), Role::Title));
            let chain = match nd.chain_der.len() {
                0 => "no certificate chain".to_string(),
                1 => "1 certificate".to_string(),
                c => format!("{c} certificates (leaf first)"),
            };
            out.push(field("chain", chain, Role::Plain));
            for f in &nd.fields {
                let (k, v) = f.split_once(": ").unwrap_or(("", f.as_str()));
                out.push(field(k, v.to_string(), Role::Plain));
            }
        }
    }
}
