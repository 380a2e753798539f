//! What expires next, fleet-wide: the expiring view, and the "expires next" pane beside the
//! windows on a large terminal.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use trustdeck_topology::fleet::Level;
use trustdeck_topology::ttl::fmt_time;

use super::columns::{Column, Step, Table, Widths};
use super::draw::pane_title;
use super::theme::Theme;
use crate::app::App;
use crate::text::format::{
    NodeTtl, kind_tag, left_text, level_word, node_ttl, short_time, stale_marker, state_cell,
};

const EXPIRES: usize = 2;

/// LEVEL LEFT EXPIRES KIND SEGMENT STATE NAME; the expiry date and the segment when there is
/// room.
pub static TABLE: Table = Table {
    columns: &[
        Column::fixed("LEVEL", 10),
        Column::fixed("LEFT", 8).right(),
        Column::grows("EXPIRES", 10, &[Step::new(1, 20, 40)]),
        Column::fixed("KIND", 4),
        Column::grows("SEGMENT", 0, &[Step::new(2, 8, 30)]),
        Column::fixed("STATE", 15),
        Column::fill("NAME", 10),
    ],
    right_pad: 0,
};

/// The "expires next" pane: level, countdown, time, kind and name (no header). The time
/// repeats the countdown, so it is shown only while the name keeps 24 columns.
static SOONEST: Table = Table {
    columns: &[
        Column::fixed("LEVEL", 10),
        Column::fixed("LEFT", 8).right(),
        Column::grows("EXPIRES", 0, &[Step::new(1, 9, 24)]),
        Column::fixed("KIND", 4),
        Column::fill("NAME", 0),
    ],
    right_pad: 1,
};

/// Level and seconds left of tree node `i` (ok and 0 when it does not expire).
fn level_left(app: &App, i: usize, now: DateTime<Utc>) -> (Level, i64) {
    match node_ttl(app, i, now) {
        Some(NodeTtl { level, left, .. }) => (level, left),
        None => (Level::Ok, 0),
    }
}

/// Draws the expiring list's row for tree node `i` at line `y`.
pub fn row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    (x0, y): (u16, u16),
    i: usize,
    now: DateTime<Utc>,
    th: Theme,
) {
    let tree = app.tree();
    let t = &tree.nodes[i];
    let n = &t.node;
    let (lvl, left) = level_left(app, i, now);
    let mut cells = cols.row(buf, x0, y, th);
    cells.text(&level_word(lvl, left, th.g), th.level(lvl));
    cells.text(&left_text(left), th.left(lvl));
    let exp = if cols.get(EXPIRES) >= 20 {
        fmt_time(n.not_after)
    } else {
        short_time(n.not_after, now)
    };
    cells.text(&exp, Style::new());
    cells.text(kind_tag(tree, i), th.tag());
    // The segment whose server it is under, as the windows count it.
    cells.text(&t.segment, Style::new());
    let (state, role) = state_cell(app, i, now);
    cells.text(&state, th.style(role));
    cells.middle("", app.fleet.node_name(n), Style::new());
}

/// The "expires next" pane of a large terminal.
pub fn soonest_pane(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    let scope = super::filtered(app, false, th.g.dot);
    pane_title(
        buf,
        r,
        "expires next",
        scope.as_deref().unwrap_or("fleet-wide"),
        th,
    );
    let tree = app.tree();
    let ids = app.expiring();
    let cols = SOONEST.solve(r.width);
    for (k, &i) in ids.iter().take(usize::from(r.height - 1)).enumerate() {
        let y = r.y + 1 + k as u16;
        let n = &tree.nodes[i].node;
        let (lvl, left) = level_left(app, i, now);
        let mut cells = cols.row(buf, r.x, y, th);
        cells.text(&level_word(lvl, left, th.g), th.level(lvl));
        cells.text(&left_text(left), th.left(lvl));
        cells.text(&short_time(n.not_after, now), Style::new());
        cells.text(kind_tag(tree, i), th.tag());
        let name = app.fleet.node_name(n);
        match stale_marker(app, tree.nodes[i].source, now) {
            Some(s) => cells.middle(&format!("{s} "), name, Style::new()),
            None => cells.middle("", name, Style::new()),
        }
    }
    if ids.is_empty() {
        buf.set_stringn(r.x + 1, r.y + 1, "nothing expires", 20, th.dim());
    }
}
