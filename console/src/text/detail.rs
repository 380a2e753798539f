//! The detail popup's document: every field of the node once, in one format (the tree's node,
//! then what only its certificate says, from the daemon's `GetNode` answer), the CLI command
//! that shows it, and its issuer path up to a root.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{Node, NodeKind};
use trustdeck_spiffe::x509::{CertSummary, summarize};
use trustdeck_topology::fleet::{Level, counts_for_health};
use trustdeck_topology::ttl::{fmt_secs, fmt_time, remaining_fraction};

use crate::app::{App, DetailState};

use super::chain::{End, Hop, issuer_path};
use super::format::{bar, kind_name, kind_tag, level_word, stale_marker};
use super::glyphs::Glyphs;
use super::{Role, TextLine};

/// Width of the label column; a value starts two columns after it.
const LABEL: usize = 11;

/// The detail document of the open popup (empty when none is open).
pub fn lines(app: &App, now: DateTime<Utc>) -> Vec<TextLine> {
    let Some(d) = &app.detail else {
        return Vec::new();
    };
    let chain = certificates(d);
    let mut out = Fields::default();
    node_fields(app, d, now, &mut out);
    out.0.push(TextLine::blank());
    if d.node.kind_wire().known() == Some(NodeKind::JwtAuthority) {
        out.add(
            "certificate",
            "none: a JWT signing key has no certificate and no issuer".to_string(),
            Role::Dim,
        );
        return out.0;
    }
    certificate(app, d, chain.first(), &mut out);
    let path = issuer_path(app.tree(), &d.node, &chain);
    out.0.push(TextLine::blank());
    out.0
        .push(TextLine::one(" Issuer path (nearest first)", Role::Title));
    for h in &path.hops {
        hop(app, h, now, &mut out);
    }
    out.0.extend(end_lines(app, &path.end, path.hops.last(), d));
    out.0
}

/// The certificates of the daemon's answer, leaf first, up to the first it could not parse.
fn certificates(d: &DetailState) -> Vec<CertSummary> {
    match &d.fetched {
        Some(Ok(nd)) => nd
            .chain_der
            .iter()
            .map_while(|der| summarize(der).ok())
            .collect(),
        _ => Vec::new(),
    }
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
    TextLine::pair(format!(" {name:<LABEL$}  "), Role::Dim, value, role)
}

/// `2026-11-24 07:16:13Z  (in 4m 10s)`, `(55m 50s ago)` or `(expired 3m ago)`, `dnow` being
/// the clock the time was written on.
fn when(secs: i64, dnow: DateTime<Utc>, expiry: bool) -> String {
    let d = secs - dnow.timestamp();
    let rel = match (d > 0, expiry) {
        (true, _) => format!("in {}", fmt_secs(d)),
        (false, true) => format!("expired {} ago", fmt_secs(-d)),
        (false, false) => format!("{} ago", fmt_secs(-d)),
    };
    format!("{}  ({rel})", fmt_time(secs))
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
    out.add("name", app.fleet.node_name(n).to_string(), Role::Title);
    if app.fleet.node_name(n) != n.label {
        out.add("label", n.label.clone(), Role::Plain);
    }
    out.add("id", n.id.clone(), Role::Plain);
    out.add("SPIFFE ID", n.spiffe_id.clone(), Role::Plain);
    out.add("state", n.state_wire().to_string(), Role::Plain);
    out.add("segment", n.segment.clone(), Role::Plain);
    let parent = idx.and_then(|i| tree.nodes[i].parent);
    let parent = match parent {
        Some(p) => app.fleet.node_name(&tree.nodes[p].node).to_string(),
        None => n.parent.clone(),
    };
    out.add("parent", parent, Role::Plain);
    if let Some(ds) = app.fleet.daemons.get(d.daemon) {
        let (txt, role) = match stale_marker(app, d.daemon, now) {
            Some(s) => (format!("{}, last-known ({s})", ds.name), Role::Stale),
            None => (format!("{}, live", ds.name), Role::Plain),
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
    out.add("entry id", n.entry_id.clone(), Role::Plain);
    out.add("selectors", n.selectors.join(", "), Role::Plain);
    if let Some(i) = idx {
        let c = tree.nodes[i].children.len();
        if c > 0 {
            out.add("children", c.to_string(), Role::Plain);
        }
        out.add("CLI", app.node_command(i).unwrap_or_default(), Role::Plain);
    }
}

/// `not before`, `not after` and `lifetime`, on the reporting daemon's clock `dnow`.
fn lifetime(n: &Node, dnow: DateTime<Utc>, lvl: Level, g: &Glyphs, out: &mut Fields) {
    let left = n.not_after - dnow.timestamp();
    out.add("not before", when(n.not_before, dnow, false), Role::Plain);
    out.add(
        "not after",
        when(n.not_after, dnow, true),
        Role::Countdown(lvl),
    );
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

/// The certificate's own fields (what the node does not already say), or why there are none.
fn certificate(app: &App, d: &DetailState, leaf: Option<&CertSummary>, out: &mut Fields) {
    let n = &d.node;
    let from = app
        .fleet
        .daemons
        .get(d.daemon)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    let g = app.charset.glyphs();
    let status = match (&d.fetched, leaf) {
        (None, _) => format!("fetching it from {from}{}", g.ellipsis),
        (Some(Err(e)), _) => {
            out.add(
                "certificate",
                format!("{} not fetched from {from}: {e}", g.critical),
                Role::Level(Level::Critical),
            );
            return;
        }
        (Some(Ok(nd)), Some(_)) => match nd.chain_der.len() {
            1 => format!("from {from}, chain of 1"),
            c => format!("from {from}, chain of {c} (leaf first)"),
        },
        (Some(Ok(nd)), None) if nd.chain_der.is_empty() => format!("none ({from} holds no chain)"),
        (Some(Ok(_)), None) => format!("unreadable; {from} says:"),
    };
    out.add("certificate", status, Role::Dim);
    match (leaf, &d.fetched) {
        (Some(c), _) => cert_fields(n, c, out),
        (None, Some(Ok(nd))) => {
            for f in &nd.fields {
                let (k, v) = f.split_once(": ").unwrap_or(("", f.as_str()));
                out.add(k, v.to_string(), Role::Plain);
            }
        }
        _ => out.add("issuer key", n.issuer_key_id.clone(), Role::Plain),
    }
}

fn cert_fields(n: &Node, c: &CertSummary, out: &mut Fields) {
    let or = |node: &str, cert: &str| if node.is_empty() { cert } else { node }.to_string();
    out.add("subject", or(&n.subject, &c.subject), Role::Plain);
    out.add("issuer", c.issuer.clone(), Role::Plain);
    out.add("serial", or(&n.serial, &c.serial_hex), Role::Plain);
    if n.not_after <= 0 {
        out.add(
            "not before",
            fmt_time(c.not_before.timestamp()),
            Role::Plain,
        );
        out.add("not after", fmt_time(c.not_after.timestamp()), Role::Plain);
    }
    out.add("key type", c.key_type.to_string(), Role::Plain);
    out.add(
        "key id",
        c.subject_key_id.clone().unwrap_or_default(),
        Role::Plain,
    );
    let aki = c.authority_key_id.clone().unwrap_or_default();
    out.add("issuer key", or(&n.issuer_key_id, &aki), Role::Plain);
    for u in c.uri_sans.iter().filter(|u| **u != n.spiffe_id) {
        out.add("URI SAN", u.clone(), Role::Plain);
    }
    for d in &c.dns_sans {
        out.add("DNS SAN", d.clone(), Role::Plain);
    }
    if let Some((ca, path_len)) = c.ca {
        let v = match (ca, path_len) {
            (true, Some(p)) => format!("yes, path length {p}"),
            (true, None) => "yes".to_string(),
            (false, _) => "no".to_string(),
        };
        out.add("CA", v, Role::Plain);
    }
    out.add(
        "key usage",
        c.key_usage.clone().unwrap_or_default(),
        Role::Plain,
    );
}

/// One issuer: its name and where the console has it from, then subject, key id, not after.
fn hop(app: &App, h: &Hop<'_>, now: DateTime<Utc>, out: &mut Fields) {
    let tree = app.tree();
    let (tag, name, from, role, subject, not_after, dnow) = match h.node {
        Some(i) => {
            let t = &tree.nodes[i];
            let ds = &app.fleet.daemons[t.source];
            let (from, role) = match stale_marker(app, t.source, now) {
                Some(s) => (format!("{}, last-known ({s})", ds.name), Role::Stale),
                None => (format!("{}, live", ds.name), Role::Dim),
            };
            let subject = h.cert.map(|c| c.subject.as_str()).unwrap_or_default();
            (
                kind_tag(tree, i),
                app.fleet.node_name(&t.node).to_string(),
                from,
                role,
                if t.node.subject.is_empty() {
                    subject
                } else {
                    &t.node.subject
                }
                .to_string(),
                t.node.not_after,
                app.fleet.daemon_now(t.source, now),
            )
        }
        None => {
            let c = h.cert;
            (
                "CA",
                c.map(|c| c.subject.clone()).unwrap_or_default(),
                "only in the chain, no daemon reports it".to_string(),
                Role::Stale,
                String::new(),
                c.map(|c| c.not_after.timestamp()).unwrap_or(0),
                now,
            )
        }
    };
    out.0.push(TextLine {
        spans: vec![
            (format!("  {tag:<4} ").into(), Role::Tag),
            (name.into(), Role::Title),
            ("  ".into(), Role::Plain),
            (from.into(), role),
        ],
    });
    let mut sub = |k: &str, v: String| {
        if !v.is_empty() {
            out.0.push(TextLine::pair(
                format!("{:7}{k:<10} ", ""),
                Role::Dim,
                v,
                Role::Plain,
            ));
        }
    };
    sub("subject", subject);
    sub("key id", h.key_id.clone());
    if not_after > 0 {
        sub("not after", when(not_after, dnow, true));
    }
}

/// Where the path ends, in words (a line each, so that nothing wraps under the margin).
fn end_lines(app: &App, end: &End, last: Option<&Hop<'_>>, d: &DetailState) -> Vec<TextLine> {
    let tree = app.tree();
    let last_name = match last.and_then(|h| h.node) {
        Some(i) => app.fleet.node_name(&tree.nodes[i].node).to_string(),
        None if last.is_none() => app.fleet.node_name(&d.node).to_string(),
        None => "the last certificate".to_string(),
    };
    let g = app.charset.glyphs();
    let (text, role): (Vec<String>, Role) = match end {
        End::Root => (
            vec![format!(
                "  {} {last_name} is a root: it names no other issuer",
                g.ok
            )],
            Role::Dim,
        ),
        End::NoIssuer if d.fetched.is_none() => (
            vec![format!("  {} waiting for the certificate", g.ellipsis)],
            Role::Dim,
        ),
        End::NoIssuer if matches!(d.fetched, Some(Err(_))) => (
            vec!["  ? issuer not known: the certificate could not be fetched".to_string()],
            Role::Stale,
        ),
        End::NoIssuer => (
            vec!["  ? issuer not known: neither the node nor a certificate names it".to_string()],
            Role::Stale,
        ),
        End::Unknown(k) => (
            vec![
                format!("  {} the path leaves what the console knows:", g.warning),
                format!("    {last_name} is signed by key id {k},"),
                "    which no daemon reports and the chain does not hold".to_string(),
            ],
            Role::Level(Level::Warning),
        ),
        End::Loop(k) => (
            vec![format!(
                "  {} the issuers name each other in a loop at key id {k}",
                g.critical
            )],
            Role::Level(Level::Critical),
        ),
    };
    text.into_iter().map(|t| TextLine::one(t, role)).collect()
}
