//! The tree view: servers, CAs, agents and workload SVIDs, indented, with each node's state,
//! level, countdown, lifetime bar, expiry and key storage.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::style::Style;
use trustdeck_topology::Row;
use trustdeck_topology::fleet::key_policy;
use trustdeck_topology::ttl::fmt_time;

use super::columns::{Column, Step, Table, Widths};
use super::theme::Theme;
use crate::app::App;
use crate::text::format::{bar, kind_tag, left_text, level_word, node_ttl, short_time, state_cell};
use crate::text::{fit_middle, width};

/// Columns the name keeps before optional columns are shown (80 columns keep the expiry
/// beside a state as wide as `renewal overdue`).
const NAME_KEEP: u16 = 31;

const EXPIRES: usize = 5;

/// NAME STATE LEVEL LEFT TTL EXPIRES KEY. As the terminal widens: the expiry time, the
/// lifetime bar, the expiry date, the key storage.
pub static TABLE: Table = Table {
    columns: &[
        Column::fill("NAME", 10),
        Column::fixed("STATE", 15),
        Column::fixed("LEVEL", 10),
        Column::fixed("LEFT", 8).right(),
        Column::grows("TTL", 0, &[Step::new(2, 8, NAME_KEEP)]),
        Column::grows(
            "EXPIRES",
            0,
            &[Step::new(1, 10, NAME_KEEP), Step::new(3, 20, NAME_KEEP)],
        ),
        Column::grows("KEY", 0, &[Step::new(4, 10, NAME_KEEP)]),
    ],
    right_pad: 0,
};

/// Draws tree row `row` at line `y`.
pub fn row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    (x0, y): (u16, u16),
    row: Row,
    now: DateTime<Utc>,
    th: Theme,
) {
    let t = &app.tree().nodes[row.idx];
    let n = &t.node;
    let mut cells = cols.row(buf, x0, y, th);
    cells.parts(&name(app, row, cols.get(0), th));
    let (state, role) = state_cell(app, row.idx, now);
    cells.text(&state, th.style(role));
    match node_ttl(app, row.idx, now) {
        Some(ttl) => {
            let (word, lst) = if ttl.counts {
                (level_word(ttl.level, ttl.left, th.g), th.level(ttl.level))
            } else {
                (th.g.not_counted.to_string(), th.dim())
            };
            let left_st = if ttl.counts {
                th.left(ttl.level)
            } else {
                th.dim()
            };
            cells.text(&word, lst);
            cells.text(&left_text(ttl.left), left_st);
            cells.text(&bar(ttl.frac, 8, th.g), lst);
            let exp = match cols.get(EXPIRES) {
                20 => fmt_time(n.not_after),
                10 => short_time(n.not_after, now),
                _ => String::new(),
            };
            cells.text(&exp, Style::new());
        }
        None => {
            cells.text("", Style::new());
            cells.text(th.g.none, th.dim());
            cells.text("", Style::new());
            cells.text("", Style::new());
        }
    }
    let key = n
        .key_storage
        .as_ref()
        .map(|k| k.backend_wire().as_str())
        .unwrap_or("");
    // A CA key outside an HSM breaches the key policy: say so in the row, not only in colour.
    let breach = app
        .thresholds
        .key_policy
        .then(|| key_policy(app.fleet.daemons[t.source].role(), n))
        .flatten();
    match breach {
        Some(b) => cells.text(
            &format!("{key} {}", th.sym(b.level)),
            th.level_strong(b.level),
        ),
        None => cells.text(key, th.dim()),
    }
}

/// The name cell: indent, expand marker, kind tag, label, and the SPIFFE ID when it fits.
fn name<'a>(app: &'a App, row: Row, w: u16, th: Theme) -> Vec<(Cow<'a, str>, Style)> {
    let tree = app.tree();
    let n = &tree.nodes[row.idx].node;
    let marker = match (row.has_children, row.expanded) {
        (true, true) => th.g.expanded,
        (true, false) => th.g.collapsed,
        _ => " ",
    };
    let tag = kind_tag(tree, row.idx);
    let label = app.fleet.node_name(n);
    // Names cut in the middle: two SVIDs that differ at the end stay apart.
    let indent = usize::from(row.depth) * 2 + 7;
    let room = usize::from(w).saturating_sub(indent);
    let shown = fit_middle(label, room, th.g.ellipsis);
    let rest = room.saturating_sub(width(&shown) + 2);
    let mut name = vec![
        (
            Cow::Owned("  ".repeat(usize::from(row.depth))),
            Style::new(),
        ),
        (Cow::Owned(format!("{marker} ")), th.dim()),
        (Cow::Owned(format!("{tag:<4} ")), th.tag()),
        (shown, Style::new()),
    ];
    if !n.spiffe_id.is_empty() && n.spiffe_id != label && rest >= width(&n.spiffe_id).min(24) {
        name.push((Cow::Borrowed("  "), Style::new()));
        name.push((fit_middle(&n.spiffe_id, rest, th.g.ellipsis), th.dim()));
    }
    name
}
